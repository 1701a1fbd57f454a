"""Serving latency and throughput: REST and gRPC, batch 1 and 64, with and without server-side
batching, against calling the same signature in-process (the overhead ratio).

    python benchmarks/serving_latency.py [--model_dir savedmodels/conv_ae] [--requests 100]

Starts `genkeras serve` on free loopback ports (twice: plain, then with --enable_batching and
serving/batching.config), measures sequential latency (p50 / p99 over --requests calls) and
throughput (--clients concurrent clients, --requests calls in all), and prints a Markdown
table. Without --model_dir (or when it has no version) it trains a tiny conv_ae first.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(seconds):
    ms = np.array(seconds) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def model_dir(args) -> Path:
    path = Path(args.model_dir)
    if path.exists() and any(p.name.isdigit() for p in path.iterdir()):
        return path
    from genkeras.training import TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    train(
        TrainConfig(
            model="conv_ae",
            limit=256,
            epochs=1,
            output_dir=str(work / "runs"),
            export_dir=str(work / "models"),
            verbose=0,
        )
    )
    return work / "models" / "conv_ae"


def start_server(base: Path, name: str, batching: bool):
    grpc_port, rest_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "genkeras.cli",
        "serve",
        "--model_name",
        name,
        "--model_base_path",
        str(base),
        "--port",
        str(grpc_port),
        "--rest_api_port",
        str(rest_port),
    ]
    if batching:
        command += [
            "--enable_batching",
            "--batching_parameters_file",
            str(ROOT / "serving" / "batching.config"),
        ]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    from genkeras.serving import Client

    client = Client("127.0.0.1", rest_port, protocol="rest", timeout=5)
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(log.read().decode()[-3000:])
        try:
            client.status(name)
            break
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
    client.close()
    return process, grpc_port, rest_port


def sequential(call, count: int, warmup: int = 5):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(count):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def concurrent(make_call, clients: int, total: int):
    """Throughput (requests/s) of `clients` threads sharing `total` calls."""
    per = max(1, total // clients)
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()
    barrier = threading.Barrier(clients + 1)
    errors = []

    def run(call):
        barrier.wait()
        for _ in range(per):
            try:
                call()
            except Exception as error:  # noqa: BLE001
                errors.append(error)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    barrier.wait()
    t = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests: {errors[0]}")
    return clients * per / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default=str(ROOT / "savedmodels" / "conv_ae"))
    parser.add_argument("--signature", default="reconstruct")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    import tensorflow as tf

    from genkeras.serving import Client

    base = model_dir(args)
    name = base.name
    version = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
    loaded = tf.saved_model.load(str(base / str(version)))
    fn = loaded.signatures[args.signature]
    (input_name,) = fn.structured_input_signature[1].keys()
    shape = fn.structured_input_signature[1][input_name].shape.as_list()[1:]
    batches = {b: np.random.default_rng(b).random([b, *shape], dtype=np.float32) for b in (1, 64)}

    rows = []
    in_process = {}
    for b, x in batches.items():
        tensor = tf.constant(x)
        p50, p99 = percentiles(sequential(lambda t=tensor: fn(**{input_name: t}), args.requests))
        in_process[b] = p50
        rows.append(("in-process", "-", b, p50, p99, 1.0, None))

    for batching in (False, True):
        process, grpc_port, rest_port = start_server(base, name, batching)
        try:
            for protocol, port in (("grpc", grpc_port), ("rest", rest_port)):
                for b, x in batches.items():
                    client = Client("127.0.0.1", port, protocol=protocol)
                    call = lambda c=client, x=x: c.predict(name, args.signature, {input_name: x})  # noqa: E731
                    p50, p99 = percentiles(sequential(call, args.requests))

                    def make_call(port=port, protocol=protocol, x=x):
                        c = Client("127.0.0.1", port, protocol=protocol)
                        return lambda: c.predict(name, args.signature, {input_name: x})

                    throughput = concurrent(make_call, args.clients, args.requests)
                    rows.append(
                        (
                            protocol,
                            "on" if batching else "off",
                            b,
                            p50,
                            p99,
                            p50 / in_process[b],
                            throughput,
                        )
                    )
                    client.close()
        finally:
            process.terminate()
            process.wait(30)

    print(
        f"model {name} v{version} signature {args.signature}; {args.requests} sequential requests per row, "  # noqa: E501
        f"throughput with {args.clients} concurrent clients; {platform.processor() or platform.machine()}, "  # noqa: E501
        f"{os.cpu_count()} CPUs"
    )
    print()
    print(
        "| path | server batching | batch | p50 ms | p99 ms | p50 / in-process | throughput req/s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for path, batching, b, p50, p99, ratio, throughput in rows:
        tput = f"{throughput:.1f}" if throughput is not None else "-"
        print(f"| {path} | {batching} | {b} | {p50:.2f} | {p99:.2f} | {ratio:.1f}x | {tput} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
