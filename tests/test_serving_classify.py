"""TF Serving's Classify, Regress and MultiInference on `genkeras serve` (loopback).

One server serves a tiny conditional VAE exported here (its `classify` signature: p(y | x) by
Bayes' rule) and `toy`, a plain-TensorFlow SavedModel built here whose signatures parse
serialized `tf.Example`s: `regress` (`x` [2] summed, times `w`, 1 by default), `classify`
(softmax of `x`, classes "a", "b"), `double` (a regression that answers float64: refused) and
`predict_sum` (the regression left as a predict signature, as TF 2 writes it) and `renamed` (a
classification whose input is not called `inputs`: refused). The first two
tests talk to the server with TF Serving's own stubs and plain HTTP only.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ROOT, free_port, genkeras_server

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
DIGITS = ROOT / "genkeras" / "serving" / "explorer" / "static" / "explorer_data.json"


def build_toy(path: Path) -> None:
    """The `toy` SavedModel: plain TensorFlow, method names set in saved_model.pb."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    features = {
        "x": tf.io.FixedLenFeature([2], tf.float32),
        "w": tf.io.FixedLenFeature([1], tf.float32, default_value=[1.0]),
    }
    spec = [tf.TensorSpec([None], tf.string, name="inputs")]

    class Toy(tf.Module):
        @tf.function(input_signature=spec)
        def regress(self, inputs):
            parsed = tf.io.parse_example(inputs, features)
            return {"outputs": tf.reduce_sum(parsed["x"], 1) * parsed["w"][:, 0]}

        @tf.function(input_signature=spec)
        def classify(self, inputs):
            x = tf.io.parse_example(inputs, features)["x"]
            classes = tf.tile(tf.constant([["a", "b"]]), [tf.shape(x)[0], 1])
            return {"scores": tf.nn.softmax(x), "classes": classes}

        @tf.function(input_signature=spec)
        def double(self, inputs):
            x = tf.io.parse_example(inputs, features)["x"]
            return {"outputs": tf.cast(tf.reduce_sum(x, 1), tf.float64)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def renamed(self, examples):
            return {"scores": tf.io.parse_example(examples, features)["x"]}

    toy = Toy()
    signatures = {
        "regress": toy.regress,
        "serving_default": toy.regress,
        "classify": toy.classify,
        "double": toy.double,
        "predict_sum": toy.regress,
        "renamed": toy.renamed,
    }
    tf.saved_model.save(toy, str(path), signatures=signatures)
    methods = {"regress": REGRESS, "serving_default": REGRESS, "double": REGRESS}
    methods["classify"] = methods["renamed"] = CLASSIFY
    pb = path / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for key, method in methods.items():
            meta_graph.signature_def[key].method_name = method
    pb.write_bytes(saved_model.SerializeToString())


def export_cvae(base: Path) -> Path:
    """A tiny untrained conditional VAE exported with its `classify` signature."""
    from genkeras.export import export_model
    from genkeras.models.vae import ConditionalVAE
    from genkeras.registry import get_spec

    model = ConditionalVAE((28, 28, 1), latent_dim=2, hidden_units=(16,), log_prob_samples=8)
    model((np.zeros((1, 28, 28, 1), "float32"), np.zeros(1, "int32")))
    model.outlier_threshold = -1e9
    return export_model(model, get_spec("cvae"), base, version=1)


@pytest.fixture(scope="module")
def images():
    """Four MNIST test digits (bundled with the explorer) and one image of uniform noise."""
    digits = json.loads(DIGITS.read_text())["digits"][:4]
    pixels = [np.asarray(d["pixels"], np.float32).reshape(28, 28, 1) / 255 for d in digits]
    noise = np.random.default_rng(0).random((28, 28, 1)).astype(np.float32)
    return np.stack([*pixels, noise])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("classify")
    export_cvae(base)  # base/cvae/1
    build_toy(base / "toy" / "1")
    config = base / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "cvae" base_path: "{base / "cvae"}" model_platform: "tensorflow"\n'
        '    version_labels { key: "stable" value: 1 } }\n'
        f'  config {{ name: "toy" base_path: "{base / "toy"}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    grpc_port, rest_port = free_port(), free_port()
    args = ["--model_config_file", config, "--port", grpc_port, "--rest_api_port", rest_port]

    def ready():
        return all(rest(rest_port, "GET", f"/v1/models/{m}")[0] == 200 for m in ("cvae", "toy"))

    with genkeras_server(args, base, ready):
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        yield {
            "grpc": grpc_port,
            "rest": rest_port,
            "channel": channel,
            "toy_path": base / "toy" / "1",
        }
        channel.close()


@pytest.fixture(scope="module")
def stub(server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(server["channel"])


def rest(port, method, path, body=None):
    """`(HTTP status, parsed JSON)` of one request, with http.client only."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = None if body is None else body if isinstance(body, bytes) else json.dumps(body)
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def add_example(examples, **features):
    """Appends a `tf.Example` of float features (`name=[values]`) to a repeated field."""
    example = examples.add()
    for name, values in features.items():
        example.features.feature[name].float_list.value.extend(np.ravel(values).tolist())
    return example


def grpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=60)
    return info.value.code().name, info.value.details()


# -- the cvae's classify signature, with TF Serving's stubs and plain HTTP --------------------


def test_classify_over_grpc_equals_label_posterior(stub, images):
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, predict_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "cvae"
    request.model_spec.signature_name = "classify"
    for image in images:
        add_example(request.input.example_list.examples, images=image)
    response = stub.Classify(request, timeout=120)
    assert response.model_spec.name == "cvae" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "classify"
    rows = response.result.classifications
    assert [[c.label for c in row.classes] for row in rows] == [list("0123456789")] * 5
    scores = np.array([[c.score for c in row.classes] for row in rows])

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "cvae"
    predict.model_spec.signature_name = "label_posterior"
    predict.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    posterior = stub.Predict(predict, timeout=120)
    probabilities = tf.make_ndarray(posterior.outputs["probabilities"])
    np.testing.assert_allclose(scores, probabilities, atol=2e-6)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)

    # the same examples with a context (the pixels shared) and a version label
    request.model_spec.version_label = "stable"
    del request.input.example_list.examples[:]
    listed = request.input.example_list_with_context
    add_example(listed.examples, images=images[0])
    listed.examples.add()  # takes every feature from the context
    add_example(listed.examples, images=images[2])
    listed.context.features.feature["images"].float_list.value.extend(images[1].ravel().tolist())
    rows = stub.Classify(request, timeout=120).result.classifications
    again = np.array([[c.score for c in row.classes] for row in rows])
    # the estimate's draws depend on the batch: compare with the same three images' posterior
    predict.inputs["images"].CopyFrom(tf.make_tensor_proto(images[:3]))
    posterior = stub.Predict(predict, timeout=120)
    np.testing.assert_allclose(
        again, tf.make_ndarray(posterior.outputs["probabilities"]), atol=2e-6
    )


def test_classify_over_plain_http_equals_label_posterior(server, images):
    port = server["rest"]
    examples = [{"images": image.ravel().astype(float).tolist()} for image in images]
    status, doc = rest(
        port,
        "POST",
        "/v1/models/cvae:classify",
        {"signature_name": "classify", "examples": examples},
    )
    assert status == 200, doc
    assert list(doc) == ["results"]  # TF Serving's code writes "results" (its doc: "result")
    assert [[label for label, _ in row] for row in doc["results"]] == [list("0123456789")] * 5
    scores = np.array([[score for _, score in row] for row in doc["results"]])
    body = {"signature_name": "label_posterior", "instances": images.tolist()}
    status, posterior = rest(port, "POST", "/v1/models/cvae/versions/1:predict", body)
    assert status == 200, posterior
    probabilities = np.array([p["probabilities"] for p in posterior["predictions"]])
    np.testing.assert_allclose(scores, probabilities, atol=2e-6)
    # the label path, and a context holding the pixels for every example
    body = {"signature_name": "classify", "context": examples[3], "examples": [{}, {}]}
    status, doc = rest(port, "POST", "/v1/models/cvae/labels/stable:classify", body)
    assert status == 200, doc
    body = {"signature_name": "label_posterior", "instances": images[[3, 3]].tolist()}
    status, posterior = rest(port, "POST", "/v1/models/cvae:predict", body)
    probabilities = np.array([p["probabilities"] for p in posterior["predictions"]])
    np.testing.assert_allclose([[s for _, s in row] for row in doc["results"]], probabilities)


# -- Regress, MultiInference and the errors, on the toy model ----------------------------------


def test_regress_over_grpc_and_rest(stub, server):
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "toy"  # no signature name: serving_default, a regression
    add_example(request.input.example_list.examples, x=[1.0, 2.0])
    add_example(request.input.example_list.examples, x=[3.0, 4.5], w=[2.0])
    response = stub.Regress(request, timeout=60)
    assert [r.value for r in response.result.regressions] == [3.0, 15.0]
    assert response.model_spec.signature_name == "serving_default"
    # TF 2 writes every signature as a predict one; TF Serving (method-name check off by
    # default) runs it through Regress when its inputs and outputs are a regression's.
    request.model_spec.signature_name = "predict_sum"
    assert [r.value for r in stub.Regress(request, timeout=60).result.regressions] == [3.0, 15.0]

    body = {
        "signature_name": "regress",
        "context": {"w": 10.0, "x": [0.0, 0.0]},
        "examples": [{"x": [1.0, 2.0]}, {"x": [0.5, 0.25], "w": [-1.0]}, {}],
    }
    status, doc = rest(server["rest"], "POST", "/v1/models/toy/versions/1:regress", body)
    assert (status, doc) == (200, {"results": [30.0, -0.75, 0.0]})
    body = {"signature_name": "classify", "examples": [{"x": [0.0, 0.0]}]}
    status, doc = rest(server["rest"], "POST", "/v1/models/toy:classify", body)
    assert (status, doc) == (200, {"results": [[["a", 0.5], ["b", 0.5]]]})


def test_multi_inference(stub):
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", CLASSIFY), ("regress", REGRESS)):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "toy"
        task.model_spec.signature_name = signature
    add_example(request.input.example_list.examples, x=[0.0, 0.0])
    add_example(request.input.example_list.examples, x=[1.0, 2.0])
    response = stub.MultiInference(request, timeout=60)
    classified, regressed = response.results
    assert classified.model_spec.signature_name == "classify"
    assert classified.model_spec.version.value == 1
    rows = classified.classification_result.classifications
    assert [[c.label for c in row.classes] for row in rows] == [["a", "b"]] * 2
    expected = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose([c.score for c in rows[1].classes], expected, rtol=1e-6)
    assert [r.value for r in regressed.regression_result.regressions] == [0.0, 3.0]

    def refused(edit):
        bad = inference_pb2.MultiInferenceRequest()
        bad.CopyFrom(request)
        edit(bad)
        return grpc_error(stub.MultiInference, bad)

    def rename(r):
        r.tasks[1].model_spec.name = "cvae"

    def duplicate(r):
        r.tasks[1].model_spec.signature_name = "classify"

    def predict_task(r):
        r.tasks[1].method_name = "tensorflow/serving/predict"

    def unknown(r):
        r.tasks[1].model_spec.signature_name = "nope"

    def unnamed(r):
        r.tasks[1].model_spec.name = ""

    def classify_a_regression(r):
        r.tasks[1].method_name = CLASSIFY

    def no_examples(r):
        r.ClearField("input")

    same_model = "All ModelSpecs in a MultiInferenceRequest must access the same model name."
    assert refused(rename) == ("INVALID_ARGUMENT", same_model)
    assert refused(duplicate) == ("INVALID_ARGUMENT", "Duplicate evaluation of signature: classify")
    assert refused(predict_task) == (
        "UNIMPLEMENTED",
        "Unsupported signature method_name: tensorflow/serving/predict",
    )
    assert refused(unknown) == (
        "INVALID_ARGUMENT",
        "Requested signature not found in model graph: nope",
    )
    assert refused(unnamed) == ("INVALID_ARGUMENT", "Found ModelSpec with an empty model name.")
    code, message = refused(classify_a_regression)
    assert code == "INVALID_ARGUMENT" and message.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: inputs {'
    )
    assert refused(no_examples) == ("INVALID_ARGUMENT", "Input is empty.")
    assert refused(lambda r: r.ClearField("tasks")) == (  # the first task's spec: none
        "INVALID_ARGUMENT",
        "ModelSpec has no name specified.",
    )


def test_error_codes_over_grpc(stub, images):
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    def classify(signature, model="cvae", examples=1):
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        for image in images[:examples]:
            add_example(request.input.example_list.examples, images=image)
        return grpc_error(stub.Classify, request)

    # a predict signature through Classify: its shape is refused (no method-name check by
    # default, as TF Serving's --enable_signature_method_name_check=false)
    assert classify("label_posterior") == (
        "INVALID_ARGUMENT",
        "Expected one or two output Tensors, found 4",
    )
    assert classify("encode") == ("INVALID_ARGUMENT", "Expected one input Tensor.")  # + labels
    assert classify("nope") == ("INVALID_ARGUMENT", "No signature was found with the name: nope")
    assert classify("classify", examples=0) == ("INVALID_ARGUMENT", "Input is empty.")
    assert classify("classify", model="nope")[0] == "NOT_FOUND"
    assert grpc_error(stub.Classify, classification_pb2.ClassificationRequest()) == (
        "INVALID_ARGUMENT",
        "Missing ModelSpec",
    )
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "cvae"
    request.model_spec.signature_name = "classify"
    add_example(request.input.example_list.examples, pixels=images[0])
    code, message = grpc_error(stub.Classify, request)
    assert code == "INVALID_ARGUMENT"
    assert "Feature: images (data type: float) is required but could not be found." in message

    code, message = classify("renamed", model="toy", examples=0)  # checked before the input
    assert code == "INVALID_ARGUMENT" and message.startswith(
        'No classification inputs found in SignatureDef: inputs {\n  key: "examples"\n'
    )

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "toy"
    add_example(request.input.example_list.examples, x=[1.0, 2.0])
    for signature, expected in (
        ("classify", "Expected one output Tensor."),
        ("double", "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"),
    ):
        request.model_spec.signature_name = signature
        assert grpc_error(stub.Regress, request) == ("INVALID_ARGUMENT", expected)


def test_error_codes_over_rest(server):
    port = server["rest"]

    def post(body, path="/v1/models/toy:regress"):
        return rest(port, "POST", path, body)

    def json_value(doc):
        return json.dumps(doc, separators=(",", ":"))

    for body, message in (
        ({"signature_name": "regress"}, "When method is classify, key 'examples' is expected"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": {"x": [1.0]}}, "Expecting 'examples' value to be an list/array"),
    ):
        status, doc = post(body)
        assert status == 400 and doc["error"].startswith(f"JSON Value: {json_value(body)} ")
        assert message in doc["error"]
    for body, message in (
        (
            {"examples": [{"x": [0, 0.5]}]},
            "Unexpected element type in feature: x expecting type: int64",
        ),  # noqa: E501
        (
            {"examples": [{"x": [1.0, "a"]}]},
            "Unexpected element type in feature: x expecting type: float",
        ),  # noqa: E501
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": [[1.0]]}]}, "Feature: x has element with unexpected JSON type: Array"),
        (
            {"examples": [{"x": 2**64 - 1}]},
            "Feature: x has uint64_t element. Only int64_t is supported.",
        ),  # noqa: E501
        ({"examples": [{"x": {"b64": "%%"}}]}, "Unable to base64 decode"),
        ({"examples": [[1.0, 2.0]]}, "Example must be JSON object but got JSON Array"),
        ({"context": 3, "examples": [{}]}, "Example must be JSON object but got JSON Number"),
        ({"signature_name": 1, "examples": [{}]}, "'signature_name' key must be a string value."),
        (
            {"signature_name": "nope", "examples": [{}]},
            "No signature was found with the name: nope",
        ),  # noqa: E501
        ({"signature_name": "classify", "examples": [{}]}, "Expected one output Tensor."),
    ):
        status, doc = post(body)
        assert status == 400 and message in doc["error"], (body, doc)
    assert post(b"[1]")[0] == 400
    status, doc = post({"examples": [{"x": [1.0]}]})  # a FixedLenFeature of 2 values
    assert status == 400 and "Key: x, Index: 0.  Number of float values != expected" in doc["error"]
    status, doc = post({"examples": [{"x": [1.0, 2.0]}]}, "/v1/models/nope:classify")
    assert status == 404, doc
    status, doc = post({"examples": [{"x": [1.0, 2.0]}]}, "/v1/models/toy/labels/nope:classify")
    assert status == 400 and "Unrecognized servable version label: nope" in doc["error"]


def test_client_classify(server, images):
    from genkeras.serving.client import Client, ServingClientError

    for protocol in ("grpc", "rest"):
        with Client("127.0.0.1", server[protocol], protocol=protocol) as client:
            labels, scores = client.classify("cvae", images)
            assert labels.shape == (5, 10) and labels[0].tolist() == list("0123456789")
            posterior = client.predict("cvae", "label_posterior", {"images": images})
            np.testing.assert_allclose(scores, posterior["probabilities"], atol=2e-6)
            # tf.Examples as dicts, with a context; ints go as int64 and are refused by `x`
            labels, scores = client.classify(
                "toy", [{"x": [0.0, 0.0]}, {}], context={"x": [1.0, 2.0]}, version=1
            )
            assert labels.tolist() == [["a", "b"]] * 2
            np.testing.assert_allclose(scores[1], np.exp([1, 2]) / np.exp([1, 2]).sum(), 1e-6)
            with pytest.raises(ServingClientError) as info:
                client.classify("toy", [{"x": [0, 1]}])
            assert info.value.code == "INVALID_ARGUMENT"
            assert "Key: x, Index: 0.  Data types don't match." in info.value.message


def test_method_name_check_when_enabled(server):
    """TF Serving's --enable_signature_method_name_check: the method name alone decides."""
    from tensorflow_serving.apis import regression_pb2

    from genkeras.serving import inference
    from genkeras.serving.errors import ServingError
    from genkeras.serving.servable import Servable

    class Manager:
        servable = Servable("toy", 1, Path(server["toy_path"]))

        def get_servable(self, name, version=None, label=None):
            return self.servable

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = "predict_sum"
    add_example(request.input.example_list.examples, x=[1.0, 2.0])
    assert inference.regress(Manager(), request).result.regressions[0].value == 3.0
    with pytest.raises(ServingError) as info:
        inference.regress(Manager(), request, check_method_name=True)
    assert (info.value.code, info.value.message) == (
        "INVALID_ARGUMENT",
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict",
    )
