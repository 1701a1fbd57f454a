"""TF 1 SavedModels served as TF Serving serves them (issue 30, item 3): one graph in one session,
a signature called by feeding its input tensor names and fetching its output tensor names.

The models are built here in TF 1 graph mode, as TF Serving's testdata builds them:

* `half_plus_three`, like `saved_model_half_plus_two.py` (with `b` = 3, as
  `saved_model_half_plus_three`): serialized `tf.Example`s parsed by `tf.io.parse_example`,
  `classify_x_to_y` / `regress_x_to_y` (method names `tensorflow/serving/classify` and
  `.../regress`), `serving_default` taking `x`, variables of TF 1's ref kind, and a main op
  that sets `b` after the variables are restored. Like the real `saved_model_half_plus_three`
  (written by TF 1.0), its `tensorflow/serving/regress` signature declares its string input
  DT_FLOAT and no shape.
* `counter`, like `export_counter.py`: a ref variable and the stateful signatures
  `incr_counter`, `incr_counter_by` (a `delta` input), `reset_counter` and `get_counter`,
  whose outputs are `float_ref` tensors; `incr_counter_rows` also takes a batch of rows (so
  only its state keeps it from being batched or run in slices); `spin` loops `n` times.

One `genkeras serve` serves both, with batching on and `--max_execution_batch_size 2`. The
expectations are those of tensorflow/serving's `model_servers/tensorflow_model_server_test.py`
(Classify, Regress, MultiInference, their REST forms, half_plus_three's Predict) and
`servables/tensorflow/predict_impl_test.cc` (the counter's sequence).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ROOT, free_port, genkeras_server, rest_json

pytestmark = pytest.mark.slow  # exports SavedModels and starts a server

CONFIG = """model_config_list {{
  config {{ name: "half_plus_three" base_path: "{base}/half_plus_three" }}
  config {{ name: "counter" base_path: "{base}/counter" model_platform: "tensorflow" }}
}}
"""


def _save(sess, path, signatures, main_op=None) -> None:
    import tensorflow as tf

    builder = tf.compat.v1.saved_model.Builder(str(path))
    builder.add_meta_graph_and_variables(
        sess, ["serve"], signature_def_map=signatures, main_op=main_op
    )
    builder.save()


def save_half_plus_three(path) -> None:
    """`y = 0.5 x + 3` over parsed tf.Examples, as TF Serving's half_plus_two script builds it."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    tf1 = tf.compat.v1
    utils, defs = tf1.saved_model.utils, tf1.saved_model.signature_def_utils
    with tf.Graph().as_default(), tf1.Session() as sess:
        a = tf1.Variable(0.5, name="a", use_resource=False)
        b = tf1.Variable(0.0, name="b", use_resource=False)  # the main op makes it 3
        serialized = tf1.placeholder(tf.string, name="tf_example", shape=[None])
        features = {
            "x": tf1.io.FixedLenFeature([1], tf.float32),
            "x2": tf1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        }
        x = tf.identity(tf1.io.parse_example(serialized, features)["x"], name="x")
        y = tf.identity(a * x + b, name="y")
        info = utils.build_tensor_info
        old_style = meta_graph_pb2.TensorInfo(
            name=serialized.name, dtype=tf.float32.as_datatype_enum
        )
        signatures = {
            "serving_default": defs.predict_signature_def({"x": x}, {"y": y}),
            "classify_x_to_y": defs.build_signature_def(
                {"inputs": info(serialized)}, {"scores": info(y)}, "tensorflow/serving/classify"
            ),
            "regress_x_to_y": defs.build_signature_def(
                {"inputs": info(serialized)}, {"outputs": info(y)}, "tensorflow/serving/regress"
            ),
            "tensorflow/serving/regress": defs.build_signature_def(
                {"inputs": old_style}, {"outputs": info(y)}, "tensorflow/serving/regress"
            ),
        }
        sess.run(tf1.global_variables_initializer())
        _save(sess, path, signatures, main_op=tf.group(b.assign(3.0)))


def save_counter(path) -> None:
    """TF Serving's export_counter.py, plus `incr_counter_rows` and `spin`."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    info = tf1.saved_model.utils.build_tensor_info

    def signature(inputs, outputs):
        return tf1.saved_model.signature_def_utils.build_signature_def(
            {k: info(v) for k, v in inputs.items()},
            {k: info(v) for k, v in outputs.items()},
            "tensorflow/serving/predict",
        )

    with tf.Graph().as_default(), tf1.Session() as sess:
        counter = tf1.Variable(0.0, dtype=tf.float32, name="counter", use_resource=False)
        with tf.name_scope("incr_counter_op"):
            incr_counter = counter.assign_add(1.0)
        delta = tf1.placeholder(dtype=tf.float32, name="delta")
        with tf.name_scope("incr_counter_by_op"):
            incr_counter_by = counter.assign_add(delta)
        with tf.name_scope("reset_counter_op"):
            reset_counter = counter.assign(0.0)
        rows = tf1.placeholder(tf.float32, [None], name="rows")
        with tf.name_scope("incr_counter_rows_op"):
            per_row = tf.zeros_like(rows) + counter.assign_add(1.0)
        n = tf1.placeholder(tf.int64, [], name="n")
        loop = tf.while_loop(lambda i: i < n, lambda i: i + 1, [tf.constant(0, tf.int64)])[0]
        sess.run(tf1.global_variables_initializer())
        signatures = {
            "get_counter": signature({}, {"output": counter}),
            "incr_counter": signature({}, {"output": incr_counter}),
            "incr_counter_by": signature({"delta": delta}, {"output": incr_counter_by}),
            "reset_counter": signature({}, {"output": reset_counter}),
            "incr_counter_rows": signature({"rows": rows}, {"output": per_row}),
            "spin": signature({"n": n}, {"i": loop}),
        }
        _save(sess, path, signatures)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The base folder of `half_plus_three` and `counter` (version 00000123 each)."""
    base = tmp_path_factory.mktemp("tf1_models")
    save_half_plus_three(base / "half_plus_three" / "00000123")
    save_counter(base / "counter" / "00000123")
    return base


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    work = tmp_path_factory.mktemp("tf1_server")
    (work / "models.config").write_text(CONFIG.format(base=models))
    info = {"grpc": free_port(), "rest": free_port()}
    args = [
        "--model_config_file", work / "models.config", "--port", info["grpc"],
        "--rest_api_port", info["rest"], "--max_execution_batch_size", 2, "--enable_batching",
        "--batching_parameters_file", ROOT / "serving" / "batching.config",
    ]  # fmt: skip

    def ready():
        return all(
            rest(info, f"/v1/models/{name}")[1]["model_version_status"][0]["state"] == "AVAILABLE"
            for name in ("half_plus_three", "counter")
        )

    with genkeras_server(args, work, ready) as process:
        channel = grpc.insecure_channel(f"127.0.0.1:{info['grpc']}")
        info["process"], info["channel"] = process, channel
        yield info
        channel.close()


def rest(info, path, body=None):
    """`(HTTP status, parsed JSON)` of a GET (no body) or POST to the server's REST port."""
    return rest_json(info["rest"], path, body)


def stub(info):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(info["channel"])


def with_example(request, x: float = 2.0):
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([x])
    return request


def predict(info, model, signature, inputs=None, output_filter=(), timeout=60):
    """The outputs of a gRPC Predict as numpy arrays."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, value in (inputs or {}).items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    response = stub(info).Predict(request, timeout=timeout)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


# -- half_plus_three: Classify, Regress, MultiInference, Predict --------------------------------


def test_classify_as_tf_serving_tests_it(server):
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_three"
    request.model_spec.signature_name = "classify_x_to_y"
    result = stub(server).Classify(with_example(request), timeout=60)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 4.0
    assert result.model_spec.name == "half_plus_three"
    assert result.model_spec.signature_name == "classify_x_to_y"
    assert result.model_spec.version.value == 123


def test_regress_as_tf_serving_tests_it(server):
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_three"
    request.model_spec.signature_name = "regress_x_to_y"
    result = stub(server).Regress(with_example(request), timeout=60)
    assert [r.value for r in result.result.regressions] == [4.0]
    assert result.model_spec.signature_name == "regress_x_to_y"
    assert result.model_spec.version.value == 123
    # a TF 1.0 signature: its string input declared DT_FLOAT, no shape; the graph's dtype runs
    request.model_spec.signature_name = "tensorflow/serving/regress"
    with_example(request, 4.0)
    result = stub(server).Regress(request, timeout=60)
    assert [r.value for r in result.result.regressions] == [4.0, 5.0]


def test_multi_inference_as_tf_serving_tests_it(server):
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "half_plus_three"
        task.model_spec.signature_name = signature
        task.method_name = method
    result = stub(server).MultiInference(with_example(request), timeout=60)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 4.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 4.0
    for i in range(2):
        assert (
            result.results[i].model_spec.signature_name
            == request.tasks[i].model_spec.signature_name
        )
        assert result.results[i].model_spec.version.value == 123


def test_classify_and_regress_over_rest(server):
    """testClassifyREST, testRegressREST (half_plus_three answers 4 where half_plus_two says 3)."""
    path = "/v1/models/half_plus_three"
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert rest(server, path + ":classify", body) == (200, {"results": [[["", 4.0]]]})
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}
    assert rest(server, path + ":regress", body) == (200, {"results": [4.0, 5.0]})
    status, doc = rest(
        server, path + ":regress", {"signature_name": "regress_x_to_y", "examples": [{}]}
    )
    assert status == 400 and "x" in doc["error"] and "required" in doc["error"]


def test_predict_feeds_x_whatever_its_shape(server):
    """VerifyPredictRequest (testGoodModelConfig: half_plus_three answers 4.0 for x = [2.0])."""

    def y(x):
        return predict(server, "half_plus_three", "", {"x": np.array(x, np.float32)})["y"]

    assert y([2.0]).tolist() == [4.0] and y([[2.0]]).tolist() == [[4.0]]
    x = np.arange(5, dtype=np.float32).reshape(5, 1)  # 5 rows run 2 at a time
    assert np.array_equal(predict(server, "half_plus_three", "", {"x": x})["y"], x / 2 + 3)
    path = "/v1/models/half_plus_three:predict"
    assert rest(server, path, {"instances": [2.0, 4.0]}) == (200, {"predictions": [4.0, 5.0]})


def test_metadata_shows_the_signatures_as_saved(server):
    status, doc = rest(server, "/v1/models/counter/metadata")
    assert status == 200
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    assert signatures["get_counter"]["outputs"]["output"]["dtype"] == "DT_FLOAT_REF"
    status, doc = rest(server, "/v1/models/half_plus_three/metadata")
    old_style = doc["metadata"]["signature_def"]["signature_def"]["tensorflow/serving/regress"]
    assert old_style["inputs"]["inputs"]["dtype"] == "DT_FLOAT"


# -- the counter: stateful signatures ------------------------------------------------------------


def test_the_counter_as_tf_serving_tests_it(server):
    """predict_impl_test.cc's PredictionWithCustomizedSignatures, over gRPC and REST."""

    def call(signature, **inputs):
        output = predict(server, "counter", signature, inputs)["output"]
        assert output.dtype == np.float32 and output.shape == ()
        return float(output)

    assert call("reset_counter") == 0.0
    assert call("get_counter") == 0.0
    assert call("incr_counter") == 1.0
    assert call("incr_counter") == 2.0
    assert call("get_counter") == 2.0
    assert call("reset_counter") == 0.0
    assert call("get_counter") == 0.0
    assert predict(server, "counter", "incr_counter", output_filter=["output"])["output"] == 1.0
    assert call("incr_counter_by", delta=np.float32(3)) == 4.0
    assert call("get_counter") == 4.0
    path = "/v1/models/counter:predict"
    body = {"signature_name": "incr_counter_by", "inputs": {"delta": 2.5}}
    assert rest(server, path, body) == (200, {"outputs": 6.5})
    assert call("get_counter") == 6.5


def test_a_stateful_signature_runs_once_per_request(server):
    """Neither run in slices (--max_execution_batch_size 2) nor batched with other requests."""
    predict(server, "counter", "reset_counter")
    rows = np.zeros(5, np.float32)
    assert (
        predict(server, "counter", "incr_counter_rows", {"rows": rows})["output"].tolist()
        == [1.0] * 5
    )
    errors = []

    def one_row():
        try:
            predict(server, "counter", "incr_counter_rows", {"rows": np.zeros(1, np.float32)})
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=one_row) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert float(predict(server, "counter", "get_counter")["output"]) == 7.0


def test_a_session_run_stops_at_the_requests_deadline(server):
    """The deadline becomes RunOptions.timeout_in_ms: the loop stops, the server goes on."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        predict(server, "counter", "spin", {"n": np.int64(10**13)}, timeout=1.0)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 30
    before = process_cpu_seconds(server["process"].pid)
    time.sleep(1.5)
    assert process_cpu_seconds(server["process"].pid) - before < 0.75  # no loop left running
    assert predict(server, "counter", "spin", {"n": np.int64(10)})["i"] == 10


def process_cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process `pid` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- in process: the loader's choices ------------------------------------------------------------


def test_tf1_graphs_load_in_a_session_and_tf2_exports_as_functions(models, tmp_path):
    import tensorflow as tf

    from genkeras.serving.servable import Servable

    counter = Servable("counter", 123, models / "counter" / "00000123")
    assert type(counter.model).__name__ == "SessionModel"
    stateful = {key: counter.model.stateful(key) for key in counter.functions}
    assert stateful == {
        "get_counter": False, "incr_counter": True, "incr_counter_by": True,
        "reset_counter": True, "incr_counter_rows": True, "spin": False,
    }  # fmt: skip
    assert not counter.batchable("incr_counter_rows") and counter.batchable("spin") is False
    half = Servable("half_plus_three", 123, models / "half_plus_three" / "00000123")
    assert half.batchable("classify_x_to_y") and half.runs_in_slices("serving_default")

    module = tf.Module()
    module.f = tf.function(
        lambda x: {"y": x + 1}, input_signature=[tf.TensorSpec([None], tf.float32)]
    )
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.f})
    tf2 = Servable("tf2", 1, tmp_path / "1")
    assert type(tf2.model).__name__ == "FunctionModel"
    _, outputs = tf2.predict("", {"x": np.array([1.0], np.float32)})
    assert outputs["y"].tolist() == [2.0]


def test_a_saved_model_in_text_form_loads_too(models, tmp_path):
    """TF Serving reads saved_model.pbtxt where there is no saved_model.pb."""
    import shutil

    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    from genkeras.serving.servable import Servable

    path = tmp_path / "1"
    shutil.copytree(models / "half_plus_three" / "00000123", path)
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    (path / "saved_model.pbtxt").write_text(text_format.MessageToString(proto))
    (path / "saved_model.pb").unlink()
    _, outputs = Servable("text", 1, path).predict("", {"x": np.array([[2.0]], np.float32)})
    assert outputs["y"].tolist() == [[4.0]]
