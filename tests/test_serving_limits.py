"""`genkeras serve` under abuse, on loopback: oversized tensors, floods, deadlines, clients that
leave or stall, and requests TF Serving's parser refuses.

One server (the shipped conv_ae, vae and pixelcnn, read in place) with small limits serves
the module: 16 MiB bodies (so 4,194,304 values per tensor), 6 s REST deadline, 2 s read
timeout, 24 connections, 4 REST and 2 gRPC workers, 2 queued requests. Every loop is bounded
in requests and time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import free_port, genkeras_server, served_export

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "savedmodels"
MODELS = ("conv_ae", "vae", "pixelcnn")
MAX_BYTES = 16 << 20
MAX_ELEMENTS = MAX_BYTES // 4
# pixelcnn samples this many images (its in-graph cap) in well over 10 s on 2 CPU cores: long
# enough to hold workers busy and to run past a deadline.
SLOW_NUM = 1316


def slow_sample_request(seed):
    """A gRPC PredictRequest for pixelcnn's `sample` of SLOW_NUM images."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "pixelcnn", "sample"
    for key, value in (
        ("num", np.int32(SLOW_NUM)),
        ("seed", np.int32(seed)),
        ("temperature", np.float32(1)),
    ):
        request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
    return request


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(served_export(m) and served_export(m).exists() for m in MODELS),
        reason="shipped models missing",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("limits")
    config = work / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{m}" base_path: "{SHIPPED / m}" model_platform: "tensorflow" }}\n'
            for m in MODELS
        )
        + "}\n"
    )
    info = {"grpc": free_port(), "rest": free_port(), "log": work / "server.log"}
    args = [
        "--model_config_file", config, "--port", info["grpc"], "--rest_api_port", info["rest"],
        "--max_request_bytes", MAX_BYTES, "--rest_api_timeout_in_ms", 6000,
        "--http_read_timeout_seconds", 2, "--http_max_connections", 24,
        "--rest_api_num_threads", 4, "--grpc_max_threads", 2, "--max_queued_requests", 2,
    ]  # fmt: skip

    def ready():
        return all(rest(info, "GET", f"/v1/models/{m}")[0] == 200 for m in MODELS)

    with genkeras_server(args, work, ready) as process:
        info["pid"] = process.pid
        info["process"] = process
        yield info


def rest(info, method, path, body=None, headers=None, timeout=60):
    """(HTTP status, parsed JSON or raw text, headers) of one request on a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", info["rest"], timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
    finally:
        connection.close()


def proc_status(pid, field) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mib(pid) -> float:
    return proc_status(pid, "VmRSS") / 1024


def cpu_seconds(pid) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stub(info):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{info['grpc']}")
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def encode_body(n, seed=0, columnar=False):
    """Random images with 4 decimals (about 8.6 KiB of JSON each) and their encode body."""
    x = np.random.default_rng(seed).random((n, 28, 28, 1)).round(4)
    key = "inputs" if columnar else "instances"
    return x.astype(np.float32), json.dumps({"signature_name": "encode", key: x.tolist()}).encode()


def huge_shape_request(dims=(1000000, 28, 28, 1)):
    """A PredictRequest of a few bytes declaring `dims` floats, filled from one float_val."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "conv_ae", "encode"
    tensor = request.inputs["images"]
    tensor.dtype = 1  # DT_FLOAT
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.append(0.5)
    return request


def wait_quiet(pid, seconds=30.0):
    """Waits (bounded) until the server uses less than 0.3 s of CPU per second."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.3:
            return
    pytest.fail("the server never went quiet")


# -- item 4: tensors refused before they are built --------------------------------------------


def test_freed_memory_is_handed_back_only_beyond_what_is_kept_for_reuse():
    from genkeras.serving import admission

    if not admission._glibc() or not hasattr(admission._glibc(), "mallinfo2"):
        pytest.skip("glibc 2.33 or later only: elsewhere every call trims")
    assert not admission.release_memory(keep=1 << 40), "trimmed with less free than kept"
    assert admission.release_memory(keep=0), "did not trim with more free than kept"


def test_a_59_byte_grpc_request_declaring_784_million_floats_is_refused_from_its_shape(server):
    request = huge_shape_request()
    assert request.ByteSize() < 100
    predict = stub(server)
    predict.Predict(huge_shape_request((1, 28, 28, 1)), timeout=30)  # the channel is up
    before = rss_mib(server["pid"])
    started = time.time()
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as info:
            predict.Predict(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert time.time() - started < 2.5
    details = info.value.details()
    assert "784000000 elements" in details and "--max_tensor_elements" in details
    assert str(MAX_ELEMENTS) in details
    assert rss_mib(server["pid"]) - before < 100  # nothing was allocated
    # under the limit, TensorFlow's fill rule (repeat the last value) still works
    ok = stub(server).Predict(huge_shape_request((3, 28, 28, 1)), timeout=30)
    assert len(ok.outputs["z"].float_val) == 3 * 16


def test_rest_tensors_over_the_limit_are_refused_before_they_are_built(server):
    rows = MAX_ELEMENTS // 16 + 1  # decode's z: 16 values a row, 2 bytes each as "0,"
    body = '{"signature_name": "decode", "inputs": [' + ",".join(["[" + "0," * 15 + "0]"] * rows)
    body = (body + "]}").encode()
    assert len(body) < MAX_BYTES
    before = rss_mib(server["pid"])
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", body)
    assert status == 400, doc
    assert f"has {rows * 16} elements" in doc["error"] and "--max_tensor_elements" in doc["error"]
    assert rss_mib(server["pid"]) - before < 150
    # the answer counts too: decode turns 16 values per row into 784
    z = [[0.0] * 16] * (MAX_ELEMENTS // 784 + 1)
    status, doc = rest(
        server, "POST", "/v1/models/conv_ae:predict", {"signature_name": "decode", "inputs": z}
    )
    assert status == 400, doc
    assert "output tensor images would hold" in doc["error"]
    assert f"send at most {MAX_ELEMENTS // 784} rows" in doc["error"]


def test_large_requests_run_in_slices_give_the_same_rows_and_leave_memory_near_idle(server):
    wait_quiet(server["pid"])
    idle = rss_mib(server["pid"])
    x, body = encode_body(1700, seed=3)  # ~13 MiB: 27 slices of 64 rows
    assert 12 << 20 < len(body) < MAX_BYTES
    answers = []
    for _ in range(2):
        status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", body, timeout=120)
        if status == 504:  # a loaded machine: the 6 s deadline cut it; try once more
            continue
        assert status == 200, doc
        answers.append(np.array(doc["predictions"], np.float32))
    assert answers, "every try ran past the deadline"
    z = answers[0]
    assert z.shape == (1700, 16)
    # rows of the last slice equal the same rows sent alone, within float32 rounding: another
    # batch size may take another path through TensorFlow's CPU kernels (other bits, same value)
    tail = {"signature_name": "encode", "instances": x[-5:].astype(np.float64).round(4).tolist()}
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", tail)
    assert status == 200, doc
    alone = np.array(doc["predictions"], np.float32)
    np.testing.assert_allclose(alone, z[-5:], rtol=1e-5, atol=1e-5)
    time.sleep(2)
    assert rss_mib(server["pid"]) - idle < 150, "memory did not return near idle"


def test_flood_keeps_memory_bounded_and_every_good_request_answered(server):
    """3 REST clients post 13 MiB bodies (2 each), 2 gRPC clients send the 59-byte giant
    (10 each), while 2 good clients (REST, gRPC) call encode 30 times each: every good call
    answers, the flood is served or refused cleanly, RSS stays under idle + 2 GiB."""
    wait_quiet(server["pid"])
    idle = rss_mib(server["pid"])
    _, big = encode_body(1700, seed=4)
    small = {"signature_name": "encode", "instances": np.zeros([2, 28, 28, 1]).tolist()}
    flood, good, peak = [], [], [idle]
    done = threading.Event()

    def sample_rss():
        while not done.wait(0.05):
            peak.append(rss_mib(server["pid"]))

    def big_client():
        for _ in range(2):
            try:
                flood.append(
                    rest(server, "POST", "/v1/models/conv_ae:predict", big, timeout=120)[0]
                )
            except OSError as error:
                flood.append(repr(error))

    def giant_client():
        for _ in range(10):
            try:
                stub(server).Predict(huge_shape_request(), timeout=30)
                flood.append("accepted a giant")
            except grpc.RpcError as error:
                flood.append(error.code().name)
            time.sleep(0.1)

    def good_client(kind):
        for _ in range(30):
            try:
                if kind == "rest":
                    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", small)
                    good.append(status if status == 200 else f"{status} {doc}")
                else:
                    stub(server).Predict(huge_shape_request((2, 28, 28, 1)), timeout=60)
                    good.append(200)
            except (OSError, grpc.RpcError) as error:
                good.append(repr(error))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    threads = [threading.Thread(target=big_client) for _ in range(3)]
    threads += [threading.Thread(target=giant_client) for _ in range(2)]
    threads += [threading.Thread(target=good_client, args=(k,)) for k in ("rest", "grpc")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    done.set()
    sampler.join()
    assert len(good) == 60 and set(good) == {200}, [g for g in good if g != 200][:5]
    assert len(flood) == 26
    assert set(flood) <= {200, 503, 504, "INVALID_ARGUMENT"}, flood
    assert flood.count("INVALID_ARGUMENT") == 20
    assert max(peak) - idle < 2048, f"peak {max(peak):.0f} MiB, idle {idle:.0f} MiB"
    time.sleep(2)
    assert rss_mib(server["pid"]) - idle < 150
    assert server["process"].poll() is None


# -- item 4: a bounded queue ------------------------------------------------------------------


def trickle(info, size=1 << 20):
    """A connection that declares a large body and sends it slowly (holds a running slot)."""
    s = socket.create_connection(("127.0.0.1", info["rest"]), timeout=10)
    s.sendall(
        b"POST /v1/models/conv_ae:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % size
    )
    return s


def test_beyond_the_queue_rest_answers_503_and_grpc_resource_exhausted_at_once(server):
    # REST: 4 running (slow uploads hold their place) + 2 queued, the next is refused at once
    holders = [trickle(server) for _ in range(6)]
    time.sleep(0.5)
    started = time.time()
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", {"instances": [1]})
    assert time.time() - started < 1.0
    assert status == 503 and "--max_queued_requests 2" in doc["error"], doc
    for s in holders:
        s.close()
    time.sleep(2.5)  # the read timeout frees the places
    assert rest(server, "GET", "/v1/models/conv_ae")[0] == 200

    # gRPC: 2 workers busy with pixelcnn samples + 2 queued; the next is refused at once
    sample = slow_sample_request(seed=0)
    codes = []

    def busy():
        try:
            stub(server).Predict(sample, timeout=3)
            codes.append("OK")
        except grpc.RpcError as error:
            codes.append(error.code().name)

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    time.sleep(0.3)
    started = time.time()
    with pytest.raises(grpc.RpcError) as info:
        stub(server).Predict(sample, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.time() - started < 1.0
    for thread in threads:
        thread.join(30)
    assert set(codes) <= {"DEADLINE_EXCEEDED", "OK"}, codes
    wait_quiet(server["pid"])


# -- item 5: deadlines and clients that leave ---------------------------------------------------

PIXELCNN_SAMPLE = {
    "signature_name": "sample",
    "inputs": {"num": SLOW_NUM, "seed": 0, "temperature": 1.0},
}


def test_a_request_past_its_deadline_answers_504_and_its_work_stops(server):
    wait_quiet(server["pid"])
    # a neighbour running at the same time is not stopped with it
    neighbour = []
    small = {"signature_name": "sample", "inputs": {"num": 2, "seed": 5, "temperature": 1.0}}
    thread = threading.Thread(
        target=lambda: neighbour.append(rest(server, "POST", "/v1/models/pixelcnn:predict", small))
    )
    started = time.time()
    thread.start()
    status, doc = rest(server, "POST", "/v1/models/pixelcnn:predict", PIXELCNN_SAMPLE)
    took = time.time() - started
    assert status == 504, doc
    assert "--rest_api_timeout_in_ms 6000" in doc["error"]
    assert 5.5 < took < 10, took  # a sample of SLOW_NUM runs far past the 6 s deadline
    thread.join(60)
    assert neighbour and neighbour[0][0] == 200, neighbour
    assert np.array(neighbour[0][1]["outputs"]).shape == (2, 28, 28, 1)
    before = cpu_seconds(server["pid"])
    time.sleep(2)
    assert cpu_seconds(server["pid"]) - before < 0.6, "the sample ran on after its 504"

    # gRPC: the client's deadline stops the work the same way
    request = slow_sample_request(seed=1)
    with pytest.raises(grpc.RpcError) as info:
        stub(server).Predict(request, timeout=1.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(1.0)
    before = cpu_seconds(server["pid"])
    time.sleep(2)
    assert cpu_seconds(server["pid"]) - before < 0.6, "the gRPC sample ran on past its deadline"


def test_a_client_that_leaves_stops_its_work_with_one_log_line(server):
    wait_quiet(server["pid"])
    body = json.dumps(PIXELCNN_SAMPLE).encode()
    s = socket.create_connection(("127.0.0.1", server["rest"]))
    port = s.getsockname()[1]
    s.sendall(
        b"POST /v1/models/pixelcnn:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    time.sleep(0.7)
    s.close()
    time.sleep(0.5)
    before = cpu_seconds(server["pid"])
    time.sleep(2)
    assert cpu_seconds(server["pid"]) - before < 0.6, "the sample ran on after its client left"
    lines = [line for line in server["log"].read_text().splitlines() if f":{port}" in line]
    assert len(lines) == 1 and "closed its connection" in lines[0], lines


def test_a_client_that_resets_mid_answer_leaves_one_line_not_a_traceback(server):
    rows = 1000  # a ~8 MiB answer, read through a 4 KiB window: the server is still writing
    body = json.dumps(
        {"signature_name": "reconstruct", "inputs": [[[[0]] * 28] * 28] * rows}
    ).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", server["rest"]))
    port = s.getsockname()[1]
    s.sendall(
        b"POST /v1/models/conv_ae:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    s.settimeout(30)
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # a reset while the server is still writing
    deadline = time.time() + 10
    while time.time() < deadline:
        lines = [line for line in server["log"].read_text().splitlines() if f":{port}" in line]
        if lines:
            break
        time.sleep(0.2)
    assert len(lines) == 1 and "disconnected before its answer" in lines[0], lines
    assert "Traceback" not in server["log"].read_text()
    assert rest(server, "GET", "/v1/models/conv_ae")[0] == 200


# -- item 6: stalled and idle connections -------------------------------------------------------


def test_stalled_connections_are_bounded_and_closed_after_the_read_timeout(server):
    pid = server["pid"]
    wait_quiet(pid)
    threads_before = proc_status(pid, "Threads")
    stalled = []
    for _ in range(30):  # more than --http_max_connections 24
        s = socket.create_connection(("127.0.0.1", server["rest"]), timeout=5)
        s.sendall(b"POST /v1/models/conv_ae:predict HTTP/1.1\r\nContent-Le")
        stalled.append(s)
    time.sleep(0.5)
    assert proc_status(pid, "Threads") <= threads_before + 24
    refused = 0
    for s in stalled:
        s.settimeout(0.05)
        try:
            refused += s.recv(200).startswith(b"HTTP/1.1 503")
        except TimeoutError:
            pass
    assert refused == 6
    # a slow loris that sends a byte every 0.5 s is cut at the 2 s deadline all the same
    loris = socket.create_connection(("127.0.0.1", server["rest"]), timeout=5)
    started = time.time()
    loris.settimeout(0.1)
    closed_after = None
    for byte in b"GET /v1/models/conv_ae HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: yes\r\n":
        try:
            loris.sendall(bytes([byte]))
            if loris.recv(1) == b"":
                closed_after = time.time() - started
                break
        except TimeoutError:
            pass
        except OSError:
            closed_after = time.time() - started
            break
        time.sleep(0.4)
    assert closed_after is not None and closed_after < 4, closed_after
    time.sleep(2.5)
    for s in stalled:  # every one is closed by the server (after a 503 for the refused)
        s.settimeout(1)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        s.close()
    assert proc_status(pid, "Threads") <= threads_before + 2
    assert rest(server, "GET", "/v1/models/conv_ae")[0] == 200


# -- item 8: what rapidjson refuses answers 400 ---------------------------------------------


@pytest.mark.parametrize(
    "body, text",
    [
        (b'{"instances": ' + b"[" * 900 + b"0.5" + b"]" * 900 + b"}", "at most 32 dimensions"),
        (b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deeply"),
        (b'{"instances": [' + b"7" * 5000 + b"]}", "Number too big to be stored in double"),
        (b'{"instances": [[1e400]]}', "Number too big to be stored in double"),
        (b'{"signature_name": "\\ud800", "instances": [1]}', "surrogate"),
        (b'{"signature_name": "\\udc00x", "instances": [1]}', "surrogate"),
    ],
    ids=["900-deep", "100000-deep", "5000-digits", "1e400", "lone-high-surrogate", "lone-low"],
)
def test_json_the_parser_refuses_answers_400_with_the_reason(server, body, text):
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", body)
    assert status == 400, doc
    assert text in doc["error"] and len(doc["error"]) < 400


def test_a_surrogate_pair_is_still_accepted(server):
    body = b'{"signature_name": "\\ud83d\\ude00", "instances": [1]}'
    status, doc = rest(server, "POST", "/v1/models/conv_ae:predict", body)
    assert status == 400 and "not found in signature def" in doc["error"]  # parsed fine


# -- item 9: every method answers JSON; chunked bodies are read -------------------------------


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "FOO", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_answer_400_json(server, method):
    status, doc = rest(server, method, "/v1/models/conv_ae")
    assert status == 400, doc
    expected = "Origin header is missing" if method == "OPTIONS" else f"Malformed request: {method}"
    assert expected in doc["error"]


def test_head_answers_400_without_a_body_and_options_with_origin_is_a_preflight(server):
    connection = http.client.HTTPConnection("127.0.0.1", server["rest"], timeout=30)
    connection.request("HEAD", "/v1/models/conv_ae")
    response = connection.getresponse()
    assert response.status == 400 and response.getheader("Content-Type") == "application/json"
    assert response.read() == b""
    connection.request("GET", "/v1/models/conv_ae")  # the same connection still works
    assert connection.getresponse().status == 200
    connection.close()
    status, _ = rest(server, "OPTIONS", "/v1/models/conv_ae", headers={"Origin": "http://a.b"})
    assert status == 200


def chunked(path, payload: bytes, sizes=(7, 100, 3000)) -> bytes:
    parts, i = [], 0
    for size in sizes * (len(payload) // sum(sizes) + 1):
        if i >= len(payload):
            break
        piece = payload[i : i + size]
        parts.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += size
    return (
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(parts)
        + b"0\r\n\r\n"
    )


def read_answer(s) -> tuple[int, dict]:
    s.settimeout(30)
    reader = s.makefile("rb")
    status = int(reader.readline().split()[1])
    length = 0
    while line := reader.readline().strip():
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, json.loads(reader.read(length))


def test_a_chunked_body_is_read_like_a_content_length_one(server):
    x, body = encode_body(3, seed=9)
    status, expected = rest(server, "POST", "/v1/models/conv_ae:predict", body)
    assert status == 200
    with socket.create_connection(("127.0.0.1", server["rest"])) as s:
        s.sendall(chunked("/v1/models/conv_ae:predict", body))
        assert read_answer(s) == (200, expected)
    with socket.create_connection(("127.0.0.1", server["rest"])) as s:  # over the limit
        s.sendall(b"POST /v1/models/conv_ae:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"%x\r\n" % (MAX_BYTES + 1))
        status, doc = read_answer(s)
        assert status == 413 and "exceeds the limit" in doc["error"]
