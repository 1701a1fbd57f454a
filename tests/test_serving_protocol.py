"""`genkeras serve` protocol details, on loopback: ports it refuses, TF Serving's answers for a
missing ModelSpec and for GetModelStatus with a label, clipped names, and TF Serving's metrics.

The server serves a copy of the shipped conv_ae as versions 1 and 2 (`specific` policy,
`stable` -> 1) with the Prometheus page on.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from conftest import ROOT, free_port, genkeras_server
from conftest import serve_to_end as serve

SHIPPED = ROOT / "savedmodels" / "conv_ae" / "1"


CONFIG = ROOT / "serving" / "models.config"


# -- item 7: ports ----------------------------------------------------------------------------


def test_a_grpc_port_another_server_holds_with_so_reuseport_is_refused(tmp_path):
    other = grpc.server(futures.ThreadPoolExecutor(1), options=[("grpc.so_reuseport", 1)])
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        started = time.time()
        result = serve("--model_config_file", CONFIG, "--port", port, "--rest_api_port", 0)
    finally:
        other.stop(None)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"--port {port}" in lines[0] and "in use" in lines[0]
    assert "Loading servable" not in result.stderr  # refused before any model loads
    assert time.time() - started < 60


@pytest.mark.parametrize(
    "args, text",
    [
        (["--port", 70000, "--rest_api_port", 0], "--port 70000 is out of range"),
        (["--port", 0, "--rest_api_port", -1], "--rest_api_port -1 is out of range"),
        (["--port", 18123, "--rest_api_port", 18123], "both 18123"),
    ],
)
def test_ports_out_of_range_or_repeated_exit_2_with_one_line(args, text):
    result = serve("--model_config_file", CONFIG, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], lines


def test_a_rest_port_held_by_another_program_exits_2_before_loading(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = serve("--model_config_file", CONFIG, "--port", 0, "--rest_api_port", port)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--rest_api_port {port}" in lines[0], lines
    assert "Loading servable" not in result.stderr


# -- a server for the rest ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not SHIPPED.exists():
        pytest.skip("savedmodels/conv_ae is not exported")
    work = tmp_path_factory.mktemp("protocol")
    for version in (1, 2):
        shutil.copytree(SHIPPED, work / "conv_ae" / str(version))
    (work / "models.config").write_text(
        f'model_config_list {{ config {{ name: "conv_ae" base_path: "{work / "conv_ae"}" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 '
        'versions: 2 } } version_labels { key: "stable" value: 1 } } }\n'
    )
    (work / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
    )
    info = {"grpc": free_port(), "rest": free_port(), "log": work / "server.log"}
    args = [
        "--model_config_file", work / "models.config", "--port", info["grpc"],
        "--rest_api_port", info["rest"], "--monitoring_config_file", work / "monitoring.config",
        "--no_warmup",
    ]  # fmt: skip

    def ready():
        status, doc = rest(info, "GET", "/v1/models/conv_ae")
        return status == 200 and [s["state"] for s in doc["model_version_status"]] == [
            "AVAILABLE",
            "AVAILABLE",
        ]

    with genkeras_server(args, work, ready):
        yield info


def rest(info, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", info["rest"], timeout=60)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data)
        response = connection.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
    finally:
        connection.close()


def stubs(info):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{info['grpc']}")
    return (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


def rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def encode_request(name="conv_ae"):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, "encode"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros([1, 28, 28, 1], np.float32)))
    return request


# -- item 10: a missing ModelSpec, long names ----------------------------------------------------


def test_a_request_without_model_spec_is_invalid_argument_as_tf_serving(server):
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    predict, _ = stubs(server)
    request = predict_pb2.PredictRequest()
    request.inputs["images"].CopyFrom(encode_request().inputs["images"])
    assert rpc_error(predict.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    assert rpc_error(predict.GetModelMetadata, metadata)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_error_messages_echo_a_few_hundred_characters_of_a_name(server):
    long = "m" * 5000
    predict, model = stubs(server)
    code, details = rpc_error(predict.Predict, encode_request(long))
    assert code == grpc.StatusCode.NOT_FOUND and len(details) < 400 and "mmm..." in details
    for path in (f"/v1/models/{long}", f"/v1/models/conv_ae/labels/{long}", f"/v1/{long}"):
        status, doc = rest(server, "GET", path)
        assert status in (400, 404) and len(doc["error"]) < 400, (status, doc)
    body = {"signature_name": long, "instances": [[[[0.0]] * 28] * 28]}
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", body)
    assert status == 400 and len(doc["error"]) < 400 and "mmm..." in doc["error"]


# -- item 12: GetModelStatus with a label --------------------------------------------------------


def test_get_model_status_with_a_label_answers_as_tf_serving(server):
    """get_model_status_impl.cc reads only model_spec.version: with a label (and no version)
    it reports every version of the model, newest first."""
    from tensorflow_serving.apis import get_model_status_pb2

    _, model = stubs(server)
    answer = model.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "conv_ae", "version_label": "stable"}
        ),
        timeout=30,
    )
    assert [s.version for s in answer.model_version_status] == [2, 1]
    status, doc = rest(server, "GET", "/v1/models/conv_ae/labels/stable")
    assert status == 200 and [s["version"] for s in doc["model_version_status"]] == ["2", "1"]
    status, doc = rest(server, "GET", "/v1/models/conv_ae/versions/1")
    assert [s["version"] for s in doc["model_version_status"]] == ["1"]
    code, _ = rpc_error(
        model.GetModelStatus,
        get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "conv_ae", "version_label": "nope"}
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # kept stricter than TF Serving
    code, details = rpc_error(model.GetModelStatus, get_model_status_pb2.GetModelStatusRequest())
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


# -- item 11: metrics as TF Serving names them ------------------------------------------------


def metric(page: str, name: str, **labels) -> float:
    for line in page.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if found == {k: str(v) for k, v in labels.items()}:
                return float(match.group(2))
    return 0.0


def test_requests_are_counted_with_their_status_over_rest_and_grpc(server):
    page_path = "/monitoring/prometheus/metrics"
    before = rest(server, "GET", page_path)[1]
    predict, _ = stubs(server)
    body = {"signature_name": "encode", "instances": np.zeros([1, 28, 28, 1]).tolist()}
    assert rest(server, "POST", "/v1/models/conv_ae:predict", body)[0] == 200
    assert rest(server, "POST", "/v1/models/conv_ae:predict", b"{bad")[0] == 400
    assert rest(server, "POST", "/v1/models/nope:predict", body)[0] == 404
    predict.Predict(encode_request(), timeout=30)
    predict.Predict(encode_request(), timeout=30)
    assert rpc_error(predict.Predict, encode_request("nope"))[0] == grpc.StatusCode.NOT_FOUND
    status, page = rest(server, "GET", page_path)
    assert status == 200

    count = ":tensorflow:serving:request_count"
    grew = {
        labels: metric(page, count, model_name=labels[0], status=labels[1])
        - metric(before, count, model_name=labels[0], status=labels[1])
        for labels in (("conv_ae", "OK"), ("conv_ae", "INVALID_ARGUMENT"), ("nope", "NOT_FOUND"))
    }
    assert grew == {
        ("conv_ae", "OK"): 3,
        ("conv_ae", "INVALID_ARGUMENT"): 1,
        ("nope", "NOT_FOUND"): 2,
    }
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    assert "# TYPE :tensorflow:serving:request_latency histogram" in page
    latency = ":tensorflow:serving:request_latency_count"
    assert metric(page, latency, model_name="conv_ae", API="Predict", entrypoint="GRPC") >= 2
    assert metric(page, latency, model_name="conv_ae", API="predict", entrypoint="REST") >= 1
    assert 'le="+Inf"' in page and "request_latency_sum_seconds" not in page


def test_random_model_names_cannot_grow_the_metrics_page_without_end():
    from genkeras.serving.metrics import Metrics

    metrics = Metrics(max_series=50)
    for i in range(5000):
        metrics.record(f"nope{i}" + "x" * 1000, "predict", "NOT_FOUND", "REST", 0.001)
    page = metrics.page()
    assert len(page.splitlines()) <= 53
    assert ':tensorflow:serving:request_count{model_name="(other)",status="NOT_FOUND"} 4950' in page
    assert max(len(line) for line in page.splitlines()) < 400
