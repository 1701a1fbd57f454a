"""`genkeras serve` on loopback: TF Serving's REST and gRPC behaviour, the client, load and faults.

One server process (real SavedModels trained here) serves the whole module; the tests run in
file order because the later ones add versions to it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import free_port, genkeras_server, served_export

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


CONFIG = """
model_config_list {{
  config {{
    name: "conv_ae" base_path: "{base}/conv_ae" model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 1 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "pca" base_path: "{base}/pca" model_platform: "tensorflow" }}
  {extra}
}}
"""


SHIPPED_VAE = ROOT / "savedmodels" / "vae"
# the version serving/models.config serves (the only one the tree keeps): the newest of the
# folder, so the server below, with no version policy of its own, loads it
SHIPPED_VAE_VERSION = served_export("vae")
VAE_CONFIG = '  config {{{{ name: "vae" base_path: "{path}" model_platform: "tensorflow" }}}}\n'


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from genkeras.training import TrainConfig, train

    base = tmp_path_factory.mktemp("serving")
    for name in ("conv_ae", "pca"):
        train(
            TrainConfig(
                model=name,
                limit=256,
                epochs=1,
                output_dir=str(base / "runs"),
                export_dir=str(base / "models"),
                verbose=0,
            )
        )
    return base / "models"


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    work = tmp_path_factory.mktemp("server")
    config = work / "models.config"
    template = CONFIG
    if SHIPPED_VAE_VERSION and SHIPPED_VAE_VERSION.exists():  # sample / log_prob, int32 inputs
        template = CONFIG.replace("  {extra}", VAE_CONFIG.format(path=SHIPPED_VAE) + "  {extra}")
    config.write_text(template.format(base=models, extra=""))
    grpc_port, rest_port = free_port(), free_port()
    args = [
        "--model_config_file", config, "--port", grpc_port, "--rest_api_port", rest_port,
        "--model_config_file_poll_wait_seconds", 0.5, "--file_system_poll_wait_seconds", 0.3,
        "--max_request_bytes", 4000000,
    ]  # fmt: skip
    info = {
        "grpc": grpc_port,
        "rest": rest_port,
        "config": config,
        "models": models,
        "template": template,
        "log": work / "server.log",
    }

    def ready():  # the server starts listening only once its first load pass is done
        return all(rest(info, "GET", f"/v1/models/{name}")[0] == 200 for name in ("pca", "conv_ae"))

    with genkeras_server(args, work, ready) as process:
        info["process"] = process
        yield info


def rest(info, method, path, body=None, raw=False):
    connection = http.client.HTTPConnection("127.0.0.1", info["rest"], timeout=60)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data)
        response = connection.getresponse()
        text = response.read().decode()
        return response.status, (text if raw else json.loads(text))
    finally:
        connection.close()


def stubs(info):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{info['grpc']}")
    return prediction_service_pb2_grpc.PredictionServiceStub(
        channel
    ), model_service_pb2_grpc.ModelServiceStub(channel)


def images(n=2, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def direct(path, signature, **inputs):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return {
        k: v.numpy()
        for k, v in loaded.signatures[signature](
            **{k: tf.constant(v) for k, v in inputs.items()}
        ).items()
    }


# -- REST -----------------------------------------------------------------------------------------


def test_rest_status_json_is_tf_servings(server):
    expected = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    for path in (
        "/v1/models/conv_ae",
        "/v1/models/conv_ae/versions/1",
        "/v1/models/conv_ae/labels/stable",
    ):
        assert rest(server, "GET", path) == (200, expected)


def test_rest_metadata_json_is_tf_servings(server):
    status, doc = rest(server, "GET", "/v1/models/conv_ae/metadata")
    assert status == 200
    assert doc["model_spec"] == {"name": "conv_ae", "signature_name": "", "version": "1"}
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    assert {"encode", "decode", "reconstruct", "denoise", "serving_default"} <= set(signatures)
    encode = signatures["encode"]
    assert encode["method_name"] == "tensorflow/serving/predict"
    images_info = encode["inputs"]["images"]
    assert images_info["dtype"] == "DT_FLOAT"
    assert images_info["tensor_shape"] == {
        "dim": [
            {"size": "-1", "name": ""},
            {"size": "28", "name": ""},
            {"size": "28", "name": ""},
            {"size": "1", "name": ""},
        ],
        "unknown_rank": False,
    }
    assert encode["outputs"]["z"]["dtype"] == "DT_FLOAT"


def test_rest_row_and_columnar_predict_match_a_direct_call(server):
    x = images(2)
    expected = direct(server["models"] / "conv_ae" / "1", "encode", images=x)["z"]
    status, row = rest(
        server,
        "POST",
        "/v1/models/conv_ae:predict",
        {"signature_name": "encode", "instances": x.tolist()},
    )
    assert status == 200, row
    assert isinstance(row["predictions"][0], list)  # one output: unwrapped, no {"z": ...}
    status, col = rest(
        server,
        "POST",
        "/v1/models/conv_ae/versions/1:predict",
        {"signature_name": "encode", "inputs": x.tolist()},
    )
    assert status == 200, col
    assert np.array_equal(
        np.array(row["predictions"], np.float32), np.array(col["outputs"], np.float32)
    )
    assert np.allclose(np.array(col["outputs"], np.float32), expected, atol=1e-6)
    # named instances and named columnar inputs; columnar ignores extra keys
    status, named = rest(
        server,
        "POST",
        "/v1/models/conv_ae/labels/stable:predict",
        {"signature_name": "encode", "instances": [{"images": v} for v in x.tolist()]},
    )
    assert status == 200 and named["predictions"] == row["predictions"]
    status, extra = rest(
        server,
        "POST",
        "/v1/models/conv_ae:predict",
        {"signature_name": "encode", "inputs": {"images": x.tolist(), "ignored": 1}},
    )
    assert status == 200 and extra["outputs"] == col["outputs"]


def test_rest_default_signature_and_nan_tokens(server):
    x = images(1)
    x[0, 0, 0, 0] = np.nan
    body = ('{"instances": ' + json.dumps(x.tolist()) + "}").encode()
    status, text = rest(server, "POST", "/v1/models/pca:predict", body, raw=True)
    assert status == 200 and "NaN" in text  # pca's serving_default is reconstruct
    assert np.isnan(np.array(json.loads(text)["predictions"], np.float32)).any()


BAD_REQUESTS = [
    # (method, path, body, HTTP status, text in the error)
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    (
        "GET",
        "/v1/models/conv_ae/versions/9",
        None,
        404,
        "Could not find version 9 of model conv_ae",
    ),
    (
        "GET",
        "/v1/models/conv_ae/labels/nope",
        None,
        400,
        "Unrecognized servable version label: nope",
    ),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/conv_ae:predict", None, 400, "Malformed request"),
    ("POST", "/v1/models/conv_ae/metadata", b"{}", 400, "Malformed request"),
    ("GET", "/v1/foo", None, 400, "Malformed request"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/nope:predict", b'{"instances": [1]}', 404, "Servable not found"),
    (
        "POST",
        "/v1/models/conv_ae/versions/9:predict",
        b'{"instances": [1]}',
        404,
        "Specific(conv_ae, 9)",
    ),
    (
        "POST",
        "/v1/models/conv_ae/labels/nope:predict",
        b'{"instances": [1]}',
        400,
        "Unrecognized servable version label",
    ),
    ("POST", "/v1/models/nope:predict", b'{"instances": [1', 400, "JSON Parse error"),  # JSON first
    ("POST", "/v1/models/conv_ae:predict", b"", 400, "JSON Parse error: The document is empty"),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b"instances = [1, 2]",
        400,
        "JSON Parse error: Invalid value",
    ),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"signature_name": 100}',
        400,
        "'signature_name' key must be a string value.",
    ),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"signature_name": "nope", "instances": [1]}',
        400,
        'Serving signature name: "nope" not found in signature def',
    ),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"instances": ["x", "y"]}',
        400,
        "not of expected type: float",
    ),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"instances": [[[[0.5]]], [[[0.5], [0.5]]]]}',
        400,
        "Expecting tensor size",
    ),
    (  # no shape check (as TF Serving): the graph refuses it, in TensorFlow's words
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"inputs": [[[0.5]]]}',
        400,
        "Shape must be rank 4 but is rank 3 for",
    ),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"instances": [{"images": [[[0.5]]], "x": 1}]}',
        400,
        "does not have named input: x",
    ),
    (
        "POST",
        "/v1/models/conv_ae:predict",
        b'{"foo": 1}',
        400,
        "Missing 'inputs' or 'instances' key",
    ),
]


@pytest.mark.parametrize("method, path, body, code, text", BAD_REQUESTS)
def test_rest_errors_have_tf_servings_codes(server, method, path, body, code, text):
    status, doc = rest(server, method, path, body)
    assert status == code, doc
    assert set(doc) == {"error"} and text in doc["error"]


def test_oversized_body_is_refused_and_the_server_lives_on(server):
    body = b'{"instances": [' + b"0.5," * 1_500_000 + b"0.5]}"
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", body)
    assert status == 413 and "exceeds" in doc["error"]
    assert rest(server, "GET", "/v1/models/conv_ae")[0] == 200
    assert server["process"].poll() is None


# -- gRPC -----------------------------------------------------------------------------------------


def grpc_code(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_grpc_predict_status_metadata_and_errors(server):
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

    predict, model = stubs(server)
    x = images(2)

    def request(name="conv_ae", signature="encode", version=None, label=None, **inputs):
        r = predict_pb2.PredictRequest()
        r.model_spec.name, r.model_spec.signature_name = name, signature
        if version is not None:
            r.model_spec.version.value = version
        if label is not None:
            r.model_spec.version_label = label
        for k, v in (inputs or {"images": x}).items():
            r.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        return r

    response = predict.Predict(request(), timeout=30)
    assert (
        response.model_spec.name,
        response.model_spec.version.value,
        response.model_spec.signature_name,
    ) == ("conv_ae", 1, "encode")
    z = tf.make_ndarray(response.outputs["z"])
    assert (
        z.dtype == np.float32 and z.shape == (2, 16) and len(response.outputs["z"].float_val) == 32
    )
    assert (
        predict.Predict(request(signature=""), timeout=30).model_spec.signature_name
        == "serving_default"
    )

    NF, IA, FP = (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert grpc_code(predict.Predict, request(name="nope"))[0] == NF
    assert grpc_code(predict.Predict, request(version=9))[0] == NF
    code, details = grpc_code(predict.Predict, request(label="nope"))
    assert code == IA and "Unrecognized servable version label" in details
    code, details = grpc_code(predict.Predict, request(signature="nope"))
    assert code == FP and details == 'Serving signature key "nope" not found.'
    code, details = grpc_code(predict.Predict, request(images=x.astype(np.int32)))
    assert code == IA and "Expects arg[0] to be float but int32 is provided" in details
    code, details = grpc_code(predict.Predict, request(images=x, extra=x))
    assert (
        code == IA
        and "input size does not match signature" in details
        and "Sent extra: {extra}" in details
    )
    assert grpc_code(predict.Predict, request(images=x[:, :5]))[0] == IA

    status = model.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "conv_ae", "version_label": "stable"}
        ),
        timeout=30,
    )
    assert [
        (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
        for s in status.model_version_status
    ] == [(1, "AVAILABLE")]
    code, _ = grpc_code(
        model.GetModelStatus,
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nope"}),
    )
    assert code == NF

    meta = predict.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "conv_ae"}, metadata_field=["signature_def"]
        ),
        timeout=30,
    )
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def["decode"].inputs["z"].tensor_shape.dim[1].size == 16
    code, _ = grpc_code(
        predict.GetModelMetadata,
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "conv_ae"}),
    )
    assert code == IA


# -- client ---------------------------------------------------------------------------------------


def test_client_gives_identical_arrays_over_rest_grpc_and_a_direct_call(server):
    from genkeras.serving import Client

    x = images(3, seed=1)
    path = server["models"] / "conv_ae" / "1"
    with (
        Client("127.0.0.1", server["grpc"]) as g,
        Client("127.0.0.1", server["rest"], protocol="rest") as r,
    ):
        z = g.encode("conv_ae", x)
        assert z.dtype == np.float32 and z.shape == (3, 16)
        assert np.array_equal(z, r.encode("conv_ae", x))
        assert np.array_equal(z, direct(path, "encode", images=x)["z"])
        for method, signature, key, arg in (
            ("decode", "decode", "z", z),
            ("reconstruct", "reconstruct", "images", x),
            ("denoise", "denoise", "images", x),
        ):
            over_grpc = getattr(g, method)("conv_ae", arg)
            assert np.array_equal(over_grpc, getattr(r, method)("conv_ae", arg)), method
            assert np.array_equal(over_grpc, direct(path, signature, **{key: arg})["images"]), (
                method
            )
        assert np.array_equal(g.reconstruct("pca", x, label=None), r.reconstruct("pca", x))
        assert g.status("conv_ae")["model_version_status"][0]["state"] == "AVAILABLE"
        assert r.metadata("conv_ae")["model_spec"]["version"] == "1"


def test_sample_log_prob_and_int32_inputs_on_the_shipped_vae(server):
    from genkeras.serving import Client

    if not (SHIPPED_VAE_VERSION and SHIPPED_VAE_VERSION.exists()):
        pytest.skip("savedmodels/vae is not exported yet")
    deadline = time.time() + 60
    while rest(server, "GET", "/v1/models/vae")[0] != 200:
        assert time.time() < deadline
        time.sleep(0.3)
    path = SHIPPED_VAE_VERSION
    x = images(2, seed=3)
    with (
        Client("127.0.0.1", server["grpc"]) as g,
        Client("127.0.0.1", server["rest"], protocol="rest") as r,
    ):
        sampled = g.sample("vae", num=3, seed=7)
        assert sampled.shape == (3, 28, 28, 1) and sampled.dtype == np.float32
        assert np.array_equal(sampled, r.sample("vae", num=3, seed=7))
        num, seed = np.int32(3), np.int32(7)
        assert np.array_equal(sampled, direct(path, "sample", num=num, seed=seed)["images"])
        nats = g.log_prob("vae", x)
        assert nats.shape == (2,) and np.array_equal(nats, r.log_prob("vae", x))
        assert np.array_equal(nats, direct(path, "log_prob", images=x)["log_prob"])
    # int32 inputs refuse 1.0; scalars need the columnar form; several outputs are named
    body = {"signature_name": "sample", "inputs": {"num": 2.0, "seed": 0}}
    status, doc = rest(server, "POST", "/v1/models/vae:predict", body)
    assert status == 400 and "is not of expected type: int32" in doc["error"]
    status, doc = rest(server, "POST", "/v1/models/vae:predict", {"inputs": {"num": 2, "seed": 0}})
    assert status == 200 and np.array(doc["outputs"]).shape == (2, 28, 28, 1)  # serving_default
    status, doc = rest(
        server, "POST", "/v1/models/vae:predict", {"instances": [{"num": 2, "seed": 0}]}
    )
    assert status == 400
    body = {"signature_name": "encode", "instances": x.tolist()}
    status, doc = rest(server, "POST", "/v1/models/vae:predict", body)
    assert status == 200 and set(doc["predictions"][0]) == {"z", "z_mean", "z_log_var"}


def test_warmup_records_are_prediction_logs_that_run(server):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = server["models"] / "conv_ae" / "1"
    loaded = tf.saved_model.load(str(path))
    seen = set()
    for record in tf.data.TFRecordDataset(
        str(path / "assets.extra" / "tf_serving_warmup_requests")
    ):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "conv_ae"
        seen.add(request.model_spec.signature_name)
        outputs = loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        )
        assert all(v.shape[0] == 1 for v in outputs.values())
    assert seen == {"encode", "decode", "reconstruct", "denoise", "serving_default"}


def test_config_file_is_watched(server):
    extra = f'config {{ name: "pca_copy" base_path: "{server["models"]}/pca" model_platform: "tensorflow" }}'  # noqa: E501
    server["config"].write_text(server["template"].format(base=server["models"], extra=extra))
    deadline = time.time() + 60
    while True:  # 200 comes as soon as the version is LOADING; wait for AVAILABLE
        status, doc = rest(server, "GET", "/v1/models/pca_copy")
        if status == 200 and doc["model_version_status"][0]["state"] == "AVAILABLE":
            break
        assert time.time() < deadline, "the new model never loaded"
        time.sleep(0.3)
    status, doc = rest(
        server,
        "POST",
        "/v1/models/pca_copy:predict",
        {"signature_name": "encode", "instances": images(1).tolist()},
    )
    assert status == 200 and len(doc["predictions"][0]) == 16


# -- load and faults ------------------------------------------------------------------------------


def publish_version(models: Path, version: int, source: int = 1) -> None:
    """Copies version `source` to `version` the way export does: hidden folder, then rename."""
    base = models / "conv_ae"
    hidden = base / f".tmp-{version}"
    shutil.copytree(base / str(source), hidden)
    os.rename(hidden, base / str(version))


def test_load_16_clients_with_a_new_version_arriving_mid_run(server):
    """16 clients (half REST, half gRPC) keep calling while version 2 appears, loads and
    replaces version 1; not one request may fail. Bounded: the clients stop a second after the
    switch, or after 120 s, and each sends at most 3,000 requests. (A cap on requests alone let
    a fast machine's clients finish before a loaded machine had loaded version 2.)"""
    from genkeras.serving import Client
    from genkeras.serving.client import ServingClientError

    clients, cap, give_up = 16, 3000, time.time() + 120
    errors, done, after_switch = [], [], []
    stop, switched = threading.Event(), threading.Event()
    started = threading.Barrier(clients + 1)

    def worker(i):
        protocol = "grpc" if i % 2 else "rest"
        port = server["grpc"] if protocol == "grpc" else server["rest"]
        x = images(1 + i % 3, seed=i)
        with Client("127.0.0.1", port, protocol=protocol, timeout=120) as client:
            started.wait()
            for _ in range(cap):
                if stop.is_set() or time.time() > give_up:
                    break
                try:
                    z = client.encode("conv_ae", x)
                    assert z.shape == (len(x), 16)
                    done.append(1)
                    if switched.is_set():
                        after_switch.append(1)
                except (ServingClientError, AssertionError, OSError) as error:
                    errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)
    publish_version(server["models"], 2)
    deadline = time.time() + 90
    while True:  # the new version takes over; the old one is unloaded once it is available
        states = {
            s["version"]: s["state"]
            for s in rest(server, "GET", "/v1/models/conv_ae")[1]["model_version_status"]
        }
        if states.get("2") == "AVAILABLE" and states.get("1") == "END":
            break
        assert time.time() < deadline, states
        time.sleep(0.2)
    switched.set()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(240)
    assert not errors, errors[:5]
    assert len(done) >= clients and after_switch, (len(done), len(after_switch))
    assert (
        rest(server, "GET", "/v1/models/conv_ae/labels/canary")[1]["model_version_status"][0][
            "state"
        ]
        == "AVAILABLE"
    )


def test_a_corrupted_version_is_reported_while_the_previous_one_serves(server):
    from tensorflow_serving.apis import predict_pb2

    base = server["models"] / "conv_ae"
    hidden = base / ".tmp-3"
    hidden.mkdir()
    (hidden / "saved_model.pb").write_bytes(b"\x00 this is not a SavedModel \xff" * 10)
    os.rename(hidden, base / "3")
    deadline = time.time() + 60
    while True:
        status, doc = rest(server, "GET", "/v1/models/conv_ae/versions/3")
        if status == 200 and doc["model_version_status"][0]["state"] == "END":
            break
        assert time.time() < deadline, doc
        time.sleep(0.3)
    entry = doc["model_version_status"][0]
    assert entry["status"]["error_code"] != "OK" and entry["status"]["error_message"]
    # the previous version still answers "latest"
    import tensorflow as tf

    predict, _ = stubs(server)
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "conv_ae", "encode"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images(1)))
    assert predict.Predict(request, timeout=30).model_spec.version.value == 2
    states = {
        s["version"]: s["state"]
        for s in rest(server, "GET", "/v1/models/conv_ae")[1]["model_version_status"]
    }
    assert states["2"] == "AVAILABLE" and states["3"] == "END"
    assert server["process"].poll() is None


def test_server_side_batching_merges_concurrent_requests(models, tmp_path):
    """A second server with --enable_batching and serving/batching.config: concurrent gRPC
    requests are answered correctly, and the REST port can be turned off."""
    from genkeras.serving import Client

    port = free_port()
    args = [
        "--model_name", "pca", "--model_base_path", models / "pca", "--port", port,
        "--rest_api_port", 0, "--enable_batching",
        "--batching_parameters_file", ROOT / "serving" / "batching.config",
    ]  # fmt: skip
    client = Client("127.0.0.1", port, timeout=5)
    with genkeras_server(args, tmp_path, lambda: client.status("pca")):
        x = images(16, seed=5)
        expected = direct(models / "pca" / "1", "reconstruct", images=x)["images"]
        results, errors = {}, []

        def call(i):
            try:
                with Client("127.0.0.1", port, timeout=60) as c:
                    results[i] = c.reconstruct("pca", x[i : i + 1])
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        got = np.concatenate([results[i] for i in range(16)])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        client.close()
