"""Fault drill: a real `genkeras serve` under a flood, a rollback and stalled connections.

    python benchmarks/fault_drill.py [--flood-seconds 40] [--stalled 300]

Copies the shipped conv_ae and vae versions (savedmodels/NAME's newest, the served one) into a
temporary folder as version 1 of each, writes a config for them, starts `genkeras serve` on free
loopback ports and runs three phases, each bounded in requests and time:

1. Flood: `--flood-clients` REST clients each post ~52 MiB `encode` bodies, two gRPC clients
   send 59-byte PredictRequests declaring [1000000, 28, 28, 1] floats, while `--good-clients`
   clients (REST and gRPC) send small `encode` requests that must all answer 200 / OK.
2. Rollback: conv_ae version 2 is published, loads, then its folder is deleted while 16
   clients call conv_ae; every call must succeed and version 1 must serve again.
3. Stalled connections: `--stalled` connections send half a request and stall while good
   clients call; the server's threads stay bounded and the stalled ones are closed after
   `--http_read_timeout_seconds`.

The server's resident size is sampled every 50 ms (VmRSS) and its peak read from VmHWM. It
prints requests sent and failed per phase, the server's idle, peak and after-burst RSS, and
exits 1 when a phase failed. The repository's savedmodels/ is only read.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """model_config_list {{
  config {{ name: "conv_ae" base_path: "{base}/conv_ae" model_platform: "tensorflow" }}
  config {{ name: "vae" base_path: "{base}/vae" model_platform: "tensorflow" }}
}}
"""


def newest_version(name: str) -> Path:
    """savedmodels/NAME/VERSION with the highest VERSION: the served one (the tree keeps only
    the versions serving/models.config serves)."""
    base = ROOT / "savedmodels" / name
    versions = [p for p in base.glob("*") if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"no exported version in {base}")
    return max(versions, key=lambda p: int(p.name))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_field(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB (VmRSS, VmHWM) or as a count (Threads)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples the server's VmRSS every 50 ms in a thread; `peak` in MiB since `reset`."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, status_field(self.pid, "VmRSS") / 1024)
            except OSError:
                return

    def now(self) -> float:
        return status_field(self.pid, "VmRSS") / 1024

    def reset(self):
        self.peak = self.now()

    def stop(self):
        self._stop.set()


class Tally:
    """Requests sent and failed (with the first few failures kept), thread-safe."""

    def __init__(self, name: str):
        self.name, self.sent, self.failed, self.codes = name, 0, 0, {}
        self.examples: list[str] = []
        self._lock = threading.Lock()

    def add(self, code, ok: bool, detail: str = ""):
        with self._lock:
            self.sent += 1
            self.codes[code] = self.codes.get(code, 0) + 1
            if not ok:
                self.failed += 1
                if len(self.examples) < 3:
                    self.examples.append(f"{code}: {detail[:160]}")

    def line(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.codes.items(), key=str))
        return f"{self.name}: sent {self.sent}, failed {self.failed} ({codes})"


def post(port: int, path: str, body: bytes, timeout: float = 120.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get(port: int, path: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def states(port: int, model: str) -> dict:
    status, doc = get(port, f"/v1/models/{model}")
    if status != 200:
        return {}
    return {s["version"]: s["state"] for s in doc["model_version_status"]}


def grpc_stub(port: int):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 128 << 20)]
    )
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def small_request(model: str = "conv_ae"):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, "encode"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros([2, 28, 28, 1], np.float32)))
    return request


def good_client(
    i: int, ports: dict, stop: threading.Event, tally: Tally, cap: int, model="conv_ae"
):
    """Small encode calls, REST on even `i` and gRPC on odd ones, until `stop` or `cap`."""
    import grpc

    body = json.dumps(
        {"signature_name": "encode", "instances": np.zeros([2, 28, 28, 1]).tolist()}
    ).encode()
    stub = grpc_stub(ports["grpc"]) if i % 2 else None
    request = small_request(model) if i % 2 else None
    for _ in range(cap):
        if stop.is_set():
            break
        if stub is None:
            try:
                status, data = post(ports["rest"], f"/v1/models/{model}:predict", body, 90)
                tally.add(status, status == 200, data.decode(errors="replace"))
            except OSError as error:
                tally.add(type(error).__name__, False, str(error))
        else:
            try:
                stub.Predict(request, timeout=90)
                tally.add("OK", True)
            except grpc.RpcError as error:
                tally.add(error.code().name, False, error.details() or "")
        time.sleep(0.05)


def flood(ports: dict, sampler: RssSampler, args) -> list[Tally]:
    import grpc
    from tensorflow_serving.apis import predict_pb2

    images = np.random.default_rng(0).random((100, 28, 28, 1), dtype=np.float32)
    per_row = len(json.dumps(images.tolist())) / 100
    rows = int(args.flood_mib * 2**20 / per_row)
    images = np.random.default_rng(0).random((rows, 28, 28, 1), dtype=np.float32)
    big = json.dumps({"signature_name": "encode", "instances": images.tolist()}).encode()
    del images
    print(f"flood body: {len(big) / 2**20:.1f} MiB ({rows} images)", flush=True)
    huge = predict_pb2.PredictRequest()
    huge.model_spec.name, huge.model_spec.signature_name = "conv_ae", "encode"
    tensor = huge.inputs["images"]
    tensor.dtype = 1
    for size in (1000000, 28, 28, 1):
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.append(0.5)
    print(f"gRPC flood message: {huge.ByteSize()} bytes", flush=True)

    big_tally, huge_tally, good = (
        Tally(f"flood REST {len(big) / 2**20:.0f} MiB"),
        Tally("flood gRPC huge shape"),
        Tally("good"),
    )
    stop, deadline = threading.Event(), time.monotonic() + args.flood_seconds

    def big_client():
        for _ in range(args.flood_cap):
            if time.monotonic() > deadline:
                break
            try:
                status, data = post(ports["rest"], "/v1/models/conv_ae:predict", big, 120)
                # the flood may be refused (503), cut short (504) or served (200); never 5xx else
                tally_ok = status in (200, 503, 504)
                big_tally.add(status, tally_ok, data[:200].decode(errors="replace"))
            except OSError as error:
                big_tally.add(type(error).__name__, False, str(error))

    def huge_client():
        stub = grpc_stub(ports["grpc"])
        for _ in range(args.flood_cap * 20):
            if time.monotonic() > deadline:
                break
            try:
                stub.Predict(huge, timeout=30)
                huge_tally.add("OK", False, "a 784-million-value tensor was accepted")
            except grpc.RpcError as error:
                code = error.code().name
                huge_tally.add(code, code == "INVALID_ARGUMENT", error.details() or "")
            time.sleep(0.2)

    threads = [threading.Thread(target=big_client) for _ in range(args.flood_clients)]
    threads += [threading.Thread(target=huge_client) for _ in range(2)]
    threads += [
        threading.Thread(target=good_client, args=(i, ports, stop, good, 100000))
        for i in range(args.good_clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads[: args.flood_clients + 2]:
        thread.join(args.flood_seconds + 300)
    stop.set()
    for thread in threads:
        thread.join(120)
    return [big_tally, huge_tally, good]


def rollback(ports: dict, base: Path) -> Tally:
    tally = Tally("rollback (16 clients)")
    versions = base / "conv_ae"
    hidden = versions / ".tmp-2"
    shutil.copytree(versions / "1", hidden)
    os.rename(hidden, versions / "2")
    deadline = time.monotonic() + 120
    while states(ports["rest"], "conv_ae") != {"2": "AVAILABLE", "1": "END"}:
        if time.monotonic() > deadline:
            tally.add(
                "setup", False, f"version 2 never replaced 1: {states(ports['rest'], 'conv_ae')}"
            )
            return tally
        time.sleep(0.2)
    stop = threading.Event()
    threads = [
        threading.Thread(target=good_client, args=(i, ports, stop, tally, 400)) for i in range(16)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    shutil.rmtree(versions / "2")  # rm -rf savedmodels/conv_ae/2
    deadline = time.monotonic() + 120
    while states(ports["rest"], "conv_ae") != {"2": "END", "1": "AVAILABLE"}:
        if time.monotonic() > deadline:
            tally.add(
                "rollback",
                False,
                f"version 1 never served again: {states(ports['rest'], 'conv_ae')}",
            )
            break
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(120)
    print(f"conv_ae after the rollback: {states(ports['rest'], 'conv_ae')}", flush=True)
    return tally


def stalled(ports: dict, pid: int, args) -> tuple[Tally, dict]:
    tally, stop = Tally("good during stalled connections"), threading.Event()
    threads_before = status_field(pid, "Threads")
    sockets = []
    for _ in range(args.stalled):
        try:
            s = socket.create_connection(("127.0.0.1", ports["rest"]), timeout=5)
            s.sendall(b"POST /v1/models/conv_ae:predict HTTP/1.1\r\nHost: x\r\nContent-Le")
            sockets.append(s)
        except OSError:
            pass
    workers = [
        threading.Thread(target=good_client, args=(i, ports, stop, tally, 100000)) for i in range(4)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    threads_stalled = status_field(pid, "Threads")
    time.sleep(args.read_timeout + 3)
    closed = 0
    for s in sockets:
        s.settimeout(0.2)
        try:
            s.recv(4096)  # EOF (closed) or a refused connection's 503
            closed += 1
        except TimeoutError:
            pass  # still open
        except OSError:
            closed += 1
        s.close()
    stop.set()
    for worker in workers:
        worker.join(120)
    figures = {
        "opened": len(sockets),
        "closed by the server": closed,
        "server threads before / while stalled / after": (
            threads_before,
            threads_stalled,
            status_field(pid, "Threads"),
        ),
    }
    return tally, figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-seconds", type=float, default=40.0)
    parser.add_argument("--flood-clients", type=int, default=6)
    parser.add_argument("--flood-cap", type=int, default=10, help="requests per flood client")
    parser.add_argument("--flood-mib", type=float, default=52.0, help="size of a flood body")
    parser.add_argument("--good-clients", type=int, default=4)
    parser.add_argument("--stalled", type=int, default=300)
    parser.add_argument("--read-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    work = Path(tempfile.mkdtemp(prefix="fault-drill-"))
    base = work / "models"
    for name in ("conv_ae", "vae"):
        shutil.copytree(newest_version(name), base / name / "1")
    config = work / "models.config"
    config.write_text(CONFIG.format(base=base))
    ports = {"grpc": free_port(), "rest": free_port()}
    command = [
        sys.executable, "-m", "genkeras.cli", "serve", "--model_config_file", str(config),
        "--port", str(ports["grpc"]), "--rest_api_port", str(ports["rest"]),
        "--file_system_poll_wait_seconds", "0.5", "--http_read_timeout_seconds",
        str(args.read_timeout),
    ]  # fmt: skip
    print("server:", " ".join(command[1:]), flush=True)
    log = open(work / "server.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    failed = False
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if all(
                    states(ports["rest"], m).get("1") == "AVAILABLE" for m in ("conv_ae", "vae")
                ):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print((work / "server.log").read_text()[-3000:])
                return 1
            time.sleep(0.5)
        sampler = RssSampler(server.pid)
        warm = Tally("warm-up")
        good_client(0, ports, threading.Event(), warm, 5)
        good_client(1, ports, threading.Event(), warm, 5)
        time.sleep(2)
        idle = sampler.now()
        print(f"server idle RSS: {idle:.0f} MiB", flush=True)

        sampler.reset()
        started = time.monotonic()
        tallies = flood(ports, sampler, args)
        flood_peak = sampler.peak
        time.sleep(5)
        after = sampler.now()
        print(f"\n== flood ({time.monotonic() - started:.0f} s)")
        for tally in tallies:
            print(tally.line(), *(f"\n   e.g. {e}" for e in tally.examples))
        print(
            f"server RSS: idle {idle:.0f} MiB, peak {flood_peak:.0f} MiB "
            f"(+{flood_peak - idle:.0f}), 5 s after the burst {after:.0f} MiB "
            f"(+{after - idle:.0f}); target peak < idle + 2048 MiB"
        )
        failed |= any(t.failed for t in tallies) or flood_peak - idle >= 2048

        started = time.monotonic()
        tally = rollback(ports, base)
        print(f"\n== rollback ({time.monotonic() - started:.0f} s)\n{tally.line()}")
        print(*(f"   e.g. {e}\n" for e in tally.examples), end="")
        failed |= tally.failed > 0

        started = time.monotonic()
        tally, figures = stalled(ports, server.pid, args)
        print(f"\n== stalled connections ({time.monotonic() - started:.0f} s)\n{tally.line()}")
        for key, value in figures.items():
            print(f"{key}: {value}")
        failed |= tally.failed > 0

        alive = server.poll() is None
        print(
            f"\nserver alive: {alive}; peak RSS (VmHWM) over the drill: "
            f"{status_field(server.pid, 'VmHWM') / 1024:.0f} MiB"
        )
        failed |= not alive
        sampler.stop()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        print(f"server log: {work / 'server.log'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
