"""What TF Serving's own tests assert, asked of `genkeras serve` (issue 30, "Serve what TF
Serving serves").

The models are built here, as TF Serving's testdata builds them (`saved_model_half_plus_two.py`,
TF 2 style): `half_plus_two` (`x` float32 [-1,1], `y = x / 2 + 2`) in the zero-padded version
folder `00000123`; `half_plus_two_2_versions` in `00000123` and `00000124` (the second adds 3,
so the two answer apart) with version labels; and `duplicates`, whose folders `0007` and `7`
are both version 7 (TF Serving loads `7`). Besides `serving_default` each version has
signatures that echo float32 and float64 inputs and two whose graphs refuse some shapes.
One server serves them all, over gRPC (tensorflow-serving-api's stubs) and REST (urllib).

The expectations come from tensorflow/serving: `model_servers/tensorflow_model_server_test.py`
(predictions for [1]-shaped and batched `x`, the unparsable config), `server_core.cc` (an
empty model name), `servables/tensorflow/predict_util.cc` (no shape check), `util/json_tensor.cc`
and `g3doc/api_rest.md` (JSON integers for float inputs) and
`sources/storage_path/file_system_storage_path_source.cc` (version folders).
"""

from __future__ import annotations

import subprocess
import sys

import grpc
import numpy as np
import pytest
from conftest import ROOT, free_port, genkeras_server, rest_json

MAX_EXECUTION_BATCH_SIZE = 8


def save_half_plus(path, plus: float) -> None:
    """A TF 2 SavedModel: `serving_default` is `y = x / 2 + plus`, `x` float32 [-1,1]."""
    import tensorflow as tf

    class HalfPlus(tf.Module):
        def __init__(self):
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(plus, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def predict(self, x):
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def echo(self, x):
            return {"y": tf.identity(x)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="x")])
        def echo_double(self, x):
            return {"y": tf.identity(x)}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def matmul(self, x):  # shape inference refuses another rank
            return {"y": tf.matmul(x, tf.ones([2, 1]))}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
        def pairs(self, x):  # the kernel refuses an odd number of values
            return {"y": tf.reshape(x, [-1, 2])}

    model = HalfPlus()
    signatures = {
        "serving_default": model.predict,
        "echo": model.echo,
        "echo_double": model.echo_double,
        "matmul": model.matmul,
        "pairs": model.pairs,
    }
    tf.saved_model.save(model, str(path), signatures=signatures)


CONFIG = """model_config_list {{
  config {{ name: "half_plus_two" base_path: "{base}/half_plus_two" model_platform: "tensorflow" }}
  config {{
    name: "half_plus_two_2_versions"
    base_path: "{base}/half_plus_two_2_versions"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 123 }}
    version_labels {{ key: "canary" value: 124 }}
  }}
  config {{ name: "duplicates" base_path: "{base}/duplicates" model_platform: "tensorflow" }}
}}
"""
MODELS = ("half_plus_two", "half_plus_two_2_versions", "duplicates")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tf_serving_models")
    save_half_plus(base / "half_plus_two" / "00000123", 2.0)
    save_half_plus(base / "half_plus_two_2_versions" / "00000123", 2.0)
    save_half_plus(base / "half_plus_two_2_versions" / "00000124", 3.0)
    save_half_plus(base / "duplicates" / "0007", 100.0)  # ignored: "7" wins
    save_half_plus(base / "duplicates" / "7", 7.0)
    work = tmp_path_factory.mktemp("tf_serving_server")
    (work / "models.config").write_text(CONFIG.format(base=base))
    info = {"grpc": free_port(), "rest": free_port(), "log": work / "server.log"}
    args = [
        "--model_config_file", work / "models.config", "--port", info["grpc"],
        "--rest_api_port", info["rest"], "--max_execution_batch_size", MAX_EXECUTION_BATCH_SIZE,
    ]  # fmt: skip

    def ready():
        states = [
            status["state"]
            for name in MODELS
            for status in rest(info, f"/v1/models/{name}")[1]["model_version_status"]
        ]
        return states == ["AVAILABLE"] * 4

    with genkeras_server(args, work, ready) as process:
        channel = grpc.insecure_channel(f"127.0.0.1:{info['grpc']}")
        info["process"], info["channel"] = process, channel
        yield info
        channel.close()


def rest(info, path, body=None):
    """`(HTTP status, parsed JSON)` of a GET (no body) or POST to the server's REST port."""
    return rest_json(info["rest"], path, body)


def prediction_stub(info):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(info["channel"])


def predict_request(model, x, signature="", version=None, label=None, dtype=np.float32):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.SetInParent()  # present even with an empty name
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(x, dtype)))
    return request


def predict(info, model, x, **spec):
    """`(version, y as nested lists)` of a gRPC Predict."""
    import tensorflow as tf

    response = prediction_stub(info).Predict(predict_request(model, x, **spec), timeout=60)
    return response.model_spec.version.value, tf.make_ndarray(response.outputs["y"]).tolist()


def grpc_error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=60)
    return info.value.code(), info.value.details()


# -- version folders as TF Serving names them -------------------------------------------------


def test_version_folders_are_named_by_any_non_negative_integer(tmp_path):
    from genkeras.serving.versions import version_folders

    for name in ("00000123", "001", "1", "0", "-2", "12a", "١٢", str(2**63), "0004"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    folders, warnings = version_folders(tmp_path)
    assert folders == {0: "0", 1: "1", 4: "0004", 123: "00000123"}
    assert warnings == [
        f"Duplicate version directories detected under {tmp_path}. Version 1 will be loaded "
        "from 1, 001 will be ignored."
    ]
    assert version_folders(tmp_path / "missing") is None


def test_zero_padded_version_folders_serve_as_their_number(server):
    status, doc = rest(server, "/v1/models/half_plus_two")
    assert status == 200 and doc["model_version_status"][0]["version"] == "123"
    status, doc = rest(server, "/v1/models/half_plus_two/versions/123/metadata")
    assert status == 200 and doc["model_spec"]["version"] == "123"
    assert predict(server, "half_plus_two", [[2.0]], version=123) == (123, [[3.0]])


def test_of_two_folders_with_one_number_the_last_in_sorted_order_serves(server):
    assert predict(server, "duplicates", [[2.0]]) == (7, [[8.0]])  # "7", not "0007"
    log = server["log"].read_text()
    assert "Version 7 will be loaded from 7, 0007 will be ignored." in log
    assert log.count("Duplicate version directories") == 1  # once, not on every poll


def test_two_versions_and_their_labels(server):
    status, doc = rest(server, "/v1/models/half_plus_two_2_versions")
    assert [s["version"] for s in doc["model_version_status"]] == ["124", "123"]
    assert predict(server, "half_plus_two_2_versions", [[2.0]]) == (124, [[4.0]])
    assert predict(server, "half_plus_two_2_versions", [[2.0]], label="stable") == (123, [[3.0]])
    assert predict(server, "half_plus_two_2_versions", [[2.0]], version=123) == (123, [[3.0]])
    path = "/v1/models/half_plus_two_2_versions/labels/canary:predict"
    assert rest(server, path, {"instances": [[2.0]]}) == (200, {"predictions": [[4.0]]})


# -- no shape check: the graph decides ----------------------------------------------------------


@pytest.mark.parametrize("specify_output", [True, False])
def test_verify_predict_request_as_tf_serving_sends_it(server, specify_output):
    """TensorflowModelServerTestBase.VerifyPredictRequest: `x` of shape [1], float_val 2.0."""
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    for batch_input in (False, True):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "serving_default"
        request.inputs["x"].dtype = types_pb2.DT_FLOAT
        request.inputs["x"].float_val.append(2.0)
        request.inputs["x"].tensor_shape.dim.add().size = 1
        if batch_input:
            request.inputs["x"].tensor_shape.dim.add().size = 1
        if specify_output:
            request.output_filter.append("y")
        result = prediction_stub(server).Predict(request, timeout=60)
        assert "y" in result.outputs
        assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
        assert list(result.outputs["y"].float_val) == [3.0]
        assert result.model_spec.name == "half_plus_two"
        assert result.model_spec.signature_name == "serving_default"
        assert result.model_spec.version.value == 123


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 2), (), (2, 1)])
def test_any_shape_the_graph_can_run_is_answered_elementwise(server, shape):
    x = np.arange(1, 1 + int(np.prod(shape)), dtype=np.float32).reshape(shape)
    version, y = predict(server, "half_plus_two", x)
    assert version == 123 and np.array(y).shape == shape and np.array_equal(y, x / 2 + 2)
    status, doc = rest(server, "/v1/models/half_plus_two:predict", {"inputs": x.tolist()})
    assert status == 200 and np.array_equal(np.array(doc["outputs"], np.float32), x / 2 + 2)


def test_predict_rest_as_tf_serving_tests_it(server):
    """testPredictREST and testPredictColumnarREST: three scalars for `x` [-1,1]."""
    path = "/v1/models/half_plus_two:predict"
    assert rest(server, path, {"instances": [2.0, 3.0, 4.0]}) == (
        200,
        {"predictions": [3.0, 3.5, 4.0]},
    )
    assert rest(server, path, {"inputs": [2.0, 3.0, 4.0]}) == (200, {"outputs": [3.0, 3.5, 4.0]})


def test_shapes_the_graph_refuses_answer_tensorflows_message(server):
    code, message = grpc_error(
        prediction_stub(server).Predict, predict_request("half_plus_two", [1.0, 2.0], "matmul")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("Shape must be rank 2 but is rank 1 for '{{node MatMul}}")
    status, doc = rest(
        server, "/v1/models/half_plus_two:predict", {"signature_name": "matmul", "inputs": [1.0]}
    )
    assert status == 400 and doc["error"].startswith("Shape must be rank 2 but is rank 1")
    # a declared shape the kernel refuses at run time: its message, no Python stack
    code, message = grpc_error(
        prediction_stub(server).Predict,
        predict_request("half_plus_two", np.ones([3, 3]), "pairs"),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("Input to reshape is a tensor with 9 values, but the requested")
    assert "Graph execution error" not in message and "Detected at node" not in message
    assert predict(server, "half_plus_two", [[2.0]]) == (123, [[3.0]])  # still serving
    assert server["process"].poll() is None


def test_undeclared_shapes_stay_within_one_slice_of_rows(server):
    """They run whole, so they may hold no more values than --max_execution_batch_size rows."""
    rows = MAX_EXECUTION_BATCH_SIZE + 1
    code, message = grpc_error(
        prediction_stub(server).Predict, predict_request("half_plus_two", np.ones(rows))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max_execution_batch_size" in message
    assert f"may hold at most {MAX_EXECUTION_BATCH_SIZE} values" in message
    _, y = predict(server, "half_plus_two", np.ones([rows, 1]))  # declared: runs in slices
    assert y == [[2.5]] * rows


def test_dtypes_and_input_names_are_still_checked(server):
    request = predict_request("half_plus_two", [[1.0]], dtype=np.float64)
    code, message = grpc_error(prediction_stub(server).Predict, request)
    assert (code, message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but double is provided",
    )
    request.inputs["z"].CopyFrom(request.inputs["x"])
    del request.inputs["x"]
    code, message = grpc_error(prediction_stub(server).Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input tensor alias not found" in message


# -- an empty model name -----------------------------------------------------------------------


def test_an_empty_model_name_is_invalid_argument(server):
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
    )

    stub = prediction_stub(server)
    unnamed = (grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")
    assert grpc_error(stub.Predict, predict_request("", [[1.0]])) == unnamed
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.SetInParent()
    assert grpc_error(stub.GetModelMetadata, metadata) == unnamed
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.SetInParent()
    assert grpc_error(stub.Classify, classify) == unnamed
    # GetModelStatus looks the name up without that check (get_model_status_impl.cc)
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.SetInParent()
    model_stub = model_service_pb2_grpc.ModelServiceStub(server["channel"])
    assert grpc_error(model_stub.GetModelStatus, status) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model ",
    )
    # REST paths cannot name an empty model: TF Serving's answers for them
    assert rest(server, "/v1/models/:predict", {"instances": [1.0]}) == (
        400,
        {"error": "Malformed request: POST /v1/models/:predict"},
    )
    assert rest(server, "/v1/models") == (400, {"error": "Missing model name in request."})


# -- JSON integers for float inputs --------------------------------------------------------------


def test_json_integers_for_float_inputs_become_the_nearest_float(server):
    """api_rest.md, "Floating Point Precision": 1435774380 is the float32 1435774336."""
    path = "/v1/models/half_plus_two:predict"
    status, doc = rest(server, path, {"signature_name": "echo", "inputs": [1435774380, 16777217]})
    assert status == 200 and np.array_equal(
        np.array(doc["outputs"], np.float32), np.array([1435774336, 16777216], np.float32)
    )
    status, doc = rest(server, path, {"signature_name": "echo", "instances": [1435774380] * 2000})
    assert status == 200 and set(np.array(doc["predictions"], np.float32)) == {1435774336}
    status, doc = rest(server, path, {"signature_name": "echo_double", "inputs": [2**53 + 1]})
    assert (status, doc) == (200, {"outputs": [float(2**53)]})


# -- an unparsable --model_config_file -----------------------------------------------------------


def test_an_unparsable_model_config_file_is_one_line_and_exit_status_2(tmp_path):
    bad = tmp_path / "bad_model_config.txt"
    bad.write_text("improperly formatted file")  # TF Serving's testdata/bad_model_config.txt
    result = subprocess.run(
        [sys.executable, "-m", "genkeras.cli", "serve", "--model_config_file", str(bad),
         "--port", str(free_port()), "--rest_api_port", str(free_port())],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "genkeras serve: Error parsing text-format tensorflow.serving.ModelServerConfig: "
        f'{bad}:1:1: Message type "tensorflow.serving.ModelServerConfig" has no field named '
        '"improperly".'
    ]
