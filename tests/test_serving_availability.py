"""`genkeras serve` keeps a model serving through rollbacks, broken versions and restarts.

Servers on loopback serve copies of the shipped conv_ae in temporary folders (the
repository's savedmodels/ is only read); versions are published the way export does (a
hidden folder renamed into place) and broken or deleted in place. Loops are bounded.
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
from conftest import free_port, genkeras_server

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "savedmodels" / "conv_ae" / "1"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHIPPED.exists(), reason="savedmodels/conv_ae is not exported"),
]
CONFIG = """model_config_list {{
  config {{
    name: "conv_ae" base_path: "{base}" model_platform: "tensorflow"
    {extra}
  }}
}}
"""


def rest(info, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", info["rest"], timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def states(info) -> dict:
    status, doc = rest(info, "GET", "/v1/models/conv_ae")
    return {s["version"]: s["state"] for s in doc["model_version_status"]} if status == 200 else {}


def wait_for(info, expected: dict, seconds=90):
    deadline = time.time() + seconds
    while (now := states(info)) != expected:
        assert time.time() < deadline, now
        time.sleep(0.2)


def publish(base: Path, version: int, broken: bool = False) -> None:
    """Version `version` as a copy of the shipped one (hidden folder, then rename), with its
    variables data cut to half when `broken`."""
    hidden = base / f".tmp-{version}"
    shutil.copytree(SHIPPED, hidden)
    if broken:
        data = next((hidden / "variables").glob("variables.data-*"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    os.rename(hidden, base / str(version))


def start(tmp_path, base: Path, extra: str = ""):
    """Serves conv_ae from `base` with a fast poll; yields the server's ports, log and process."""
    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(base=base, extra=extra))
    info = {"grpc": free_port(), "rest": free_port(), "log": tmp_path / "server.log"}
    args = [
        "--model_config_file", config, "--port", info["grpc"], "--rest_api_port", info["rest"],
        "--file_system_poll_wait_seconds", 0.3, "--no_warmup",
    ]  # fmt: skip
    return info, genkeras_server(args, tmp_path, lambda: "AVAILABLE" in json.dumps(states(info)))


def log_lines(info, text: str) -> list[str]:
    return [line for line in info["log"].read_text().splitlines() if text in line]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("availability")
    base = work / "conv_ae"
    base.mkdir()
    publish(base, 1)
    info, running = start(work, base, 'version_labels { key: "canary" value: 5 }')
    with running as process:
        info["base"], info["process"] = base, process
        yield info


def clients(info, count: int, stop: threading.Event, errors: list, done: list, cap=300):
    """`count` threads (REST and gRPC by turns) calling conv_ae encode until `stop` or `cap`."""
    from genkeras.serving import Client
    from genkeras.serving.client import ServingClientError

    def worker(i):
        protocol = "grpc" if i % 2 else "rest"
        port = info["grpc"] if i % 2 else info["rest"]
        x = np.random.default_rng(i).random((2, 28, 28, 1), dtype=np.float32)
        with Client("127.0.0.1", port, protocol=protocol, timeout=60) as client:
            for _ in range(cap):
                if stop.is_set():
                    break
                try:
                    assert client.encode("conv_ae", x).shape == (2, 16)
                    done.append(1)
                except (ServingClientError, AssertionError, OSError) as error:
                    errors.append(repr(error))
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_an_unresolvable_label_is_warned_about_once_at_start_up(server):
    lines = log_lines(server, "version label 'canary' -> 5")
    assert len(lines) == 1 and "WARNING" in lines[0], lines
    assert "specific { versions: 5 }" in lines[0]


def test_deleting_the_newest_version_rolls_back_without_a_failed_request(server):
    """Version 2 replaces 1; `rm -rf conv_ae/2` under 16 clients: version 1 is loaded again
    before 2 is unloaded, and not one request fails."""
    publish(server["base"], 2)
    wait_for(server, {"2": "AVAILABLE", "1": "END"})
    stop, errors, done = threading.Event(), [], []
    threads = clients(server, 16, stop, errors, done)
    time.sleep(1.0)
    count_before = len(done)
    shutil.rmtree(server["base"] / "2")
    wait_for(server, {"2": "END", "1": "AVAILABLE"})
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:5]
    assert len(done) > count_before + 16, "the clients did not keep calling through it"
    text = server["log"].read_text()
    reload = text.rindex("Successfully loaded servable version {name: conv_ae version: 1}")
    unload = text.index("Unloading servable version {name: conv_ae version: 2}")
    assert reload < unload, "version 2 was unloaded before version 1 served again"


def test_unloading_is_logged_like_loading(server):
    for version in (1, 2):
        assert log_lines(server, f"Unloading servable version {{name: conv_ae version: {version}}}")
        assert log_lines(
            server, f"Done unloading servable version {{name: conv_ae version: {version}}}"
        )


def test_a_failed_version_is_retried_once_its_data_file_is_fixed_in_place(server):
    from genkeras.serving import Client

    publish(server["base"], 3, broken=True)
    wait_for(server, {"3": "END", "2": "END", "1": "AVAILABLE"})
    status, doc = rest(server, "GET", "/v1/models/conv_ae/versions/3")
    entry = doc["model_version_status"][0]
    assert entry["status"]["error_code"] != "OK" and entry["status"]["error_message"]
    time.sleep(1.0)  # several polls: the unchanged broken version is not retried in a loop
    assert (
        len(
            log_lines(server, "INFO genkeras.serving: Loading servable: {name: conv_ae version: 3}")
        )
        == 1
    )
    # replace only the truncated variables data file, in place
    broken = next((server["base"] / "3" / "variables").glob("variables.data-*"))
    good = SHIPPED / "variables" / broken.name
    broken.write_bytes(good.read_bytes())
    wait_for(server, {"3": "AVAILABLE", "2": "END", "1": "END"})
    with Client("127.0.0.1", server["grpc"]) as client:
        assert client.status("conv_ae")["model_version_status"][0]["version"] == "3"
        z = client.encode("conv_ae", np.zeros([1, 28, 28, 1], np.float32))
        assert z.shape == (1, 16)
    assert server["process"].poll() is None


def test_after_a_restart_the_newest_version_that_loads_serves(tmp_path):
    """On disk: version 1 good, version 2 broken. A fresh server serves 1 and reports 2."""
    base = tmp_path / "conv_ae"
    base.mkdir()
    publish(base, 1)
    publish(base, 2, broken=True)
    info, running = start(tmp_path, base, 'version_labels { key: "stable" value: 2 }')
    with running:
        wait_for(info, {"2": "END", "1": "AVAILABLE"})
        status, doc = rest(info, "GET", "/v1/models/conv_ae/versions/2")
        assert doc["model_version_status"][0]["status"]["error_message"]
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "conv_ae", "encode"
        import tensorflow as tf

        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros([1, 28, 28, 1], "f")))
        channel = grpc.insecure_channel(f"127.0.0.1:{info['grpc']}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert stub.Predict(request, timeout=30).model_spec.version.value == 1
        status, doc = rest(
            info,
            "POST",
            "/v1/models/conv_ae:predict",
            {"inputs": np.zeros([1, 28, 28, 1]).tolist()},
        )
        assert status == 200
        # the label names the broken version: one warning at start-up says so
        lines = log_lines(info, "version label 'stable' -> 2")
        assert len(lines) == 1 and "which is not loaded" in lines[0], lines
