"""Serving latency and throughput: REST and gRPC, batch 1 and 64, with and without server-side
batching, against calling the same signature in-process (the overhead ratio).

    python benchmarks/serving_latency.py [--model_dir savedmodels/conv_ae] [--requests 100]
        [--rounds 3] [--rest_only]

Starts `genkeras serve` on free loopback ports (twice: plain, then with --enable_batching and
serving/batching.config), measures sequential latency (p50 / p99 over --requests calls) and
throughput (--clients concurrent clients, --requests calls in all), and prints a Markdown
table. Without --model_dir (or when it has no version) it trains a tiny conv_ae first.

Then, on the plain server, --rounds rounds of REST against in-process, each measured back to
back so that its ratios share the machine's load: the server's own cost (the body prepared
before the clock starts, the answer read as raw bytes with http.client: no client JSON work)
and the end-to-end `Client(protocol="rest")` call, with their medians over the rounds, and
the CPU time each call costs (in-process: this process; server: the server process, read from
/proc), which other jobs on the machine disturb less than wall time; then the JSON stages
alone, in this process (server: parse and fill, format; client: write, read).
--rest_only skips the first table.
"""

from __future__ import annotations

import argparse
import http.client
import json
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


def raw_rest(port: int, path: str, body: bytes):
    """A call that POSTs a prepared body and reads the answer as bytes (no JSON work)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}

    def call():
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
        except (http.client.HTTPException, ConnectionError):  # the server closed it when idle
            connection.close()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(data[:300])
        return data

    return call, connection


def best_ms(fn, count: int = 5) -> float:
    times = []
    for _ in range(count):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000.0


def request_body(x: np.ndarray, input_name: str, signature: str, client_text: bool = True):
    """The `:predict` body `Client` sends (or, `client_text=False`, `json.dumps`'s)."""
    from genkeras.serving import client

    value = client._json_value(x) if client_text else json.dumps(x.tolist())
    head = '{"signature_name": ' + json.dumps(signature) + ', "inputs": {'
    return (head + json.dumps(input_name) + ": " + value + "}}").encode()


def json_stages(x: np.ndarray, y: np.ndarray, input_name: str, signature: str) -> dict:
    """Milliseconds (best of 5) of each JSON stage of one REST call, run in this process, and
    of the server's two stages again without the C loops (the fallback of an install that
    had no C compiler)."""
    from genkeras.serving import client, json_decode, json_encode, json_fast

    answer = json_encode.make_json({input_name: y}, json_encode.COLUMNAR).encode()

    def parse_and_fill(body):
        doc = json_decode.parse_json(body)
        return lambda: json_decode.fill_predict_inputs(doc, {input_name: "DT_FLOAT"})

    ours, dumps = (request_body(x, input_name, signature, c) for c in (True, False))
    return {
        "client: write the request": best_ms(lambda: client._json_value(x).encode()),
        "server: parse and fill the tensor": best_ms(lambda: parse_and_fill(ours)()),
        "server: same, json.dumps body (17 digits)": best_ms(lambda: parse_and_fill(dumps)()),
        "server: format the answer": best_ms(
            lambda: json_encode.make_json({input_name: y}, json_encode.COLUMNAR).encode()
        ),
        "client: read the answer": best_ms(
            lambda: client._output_array(json_fast.loads(answer)["outputs"], "DT_FLOAT")
        ),
        **fallback_stages(ours, y, input_name, parse_and_fill),
    }


def fallback_stages(body: bytes, y: np.ndarray, input_name: str, parse_and_fill) -> dict:
    """The server's parse and format stages with the C loops switched off (numpy, orjson)."""
    from genkeras.serving import json_encode, json_fast, json_numbers

    saved = json_fast.native, json_numbers.native
    json_fast.native = json_numbers.native = None
    try:
        return {
            "server without C: parse and fill the tensor": best_ms(lambda: parse_and_fill(body)()),
            "server without C: format the answer": best_ms(
                lambda: json_encode.make_json({input_name: y}, json_encode.COLUMNAR).encode()
            ),
        }
    finally:
        json_fast.native, json_numbers.native = saved


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of process `pid`, or of this one; nan where
    /proc cannot tell."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(call, count: int, pid: int | None = None):
    """`(p50 ms, CPU ms per call)`: the CPU of process `pid` (this one when None)."""
    before = cpu_seconds(pid)
    p50 = percentiles(sequential(call, count))[0]
    return p50, (cpu_seconds(pid) - before) * 1000.0 / (count + 5)


def rest_rounds(args, fn, base, name, input_name, batches):
    """Rounds of `(in-process, raw REST, Client REST)` p50s and `(in-process, server)` CPU
    per call (one plain server for all)."""
    import tensorflow as tf

    from genkeras.serving import Client

    process, _, rest_port = start_server(base, name, False)
    path = f"/v1/models/{name}:predict"
    rounds = {b: [] for b in batches}
    try:
        calls = {}
        for b, x in batches.items():
            body = request_body(x, input_name, args.signature)
            raw, connection = raw_rest(rest_port, path, body)
            client = Client("127.0.0.1", rest_port, protocol="rest")
            end_to_end = lambda c=client, x=x: c.predict(name, args.signature, {input_name: x})  # noqa: E731
            tensor = tf.constant(x)
            local = lambda t=tensor: fn(**{input_name: t})  # noqa: E731
            calls[b] = (local, raw, end_to_end, connection, client)
        for _ in range(args.rounds):
            for b, (local, raw, end_to_end, _, _) in calls.items():
                local_p50, local_cpu = timed(local, args.requests)
                raw_p50, server_cpu = timed(raw, args.requests, process.pid)
                client_p50, _ = timed(end_to_end, args.requests)
                rounds[b].append((local_p50, raw_p50, client_p50, local_cpu, server_cpu))
        for *_, connection, client in calls.values():
            connection.close()
            client.close()
    finally:
        process.terminate()
        process.wait(30)
    return rounds


def print_rounds(rounds) -> None:
    print()
    print(
        "| batch | round | in-process p50 ms | REST server p50 ms | REST Client p50 ms "
        "| server / in-process | Client / in-process | CPU ms in-process / server | CPU ratio |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for b, rows in rounds.items():
        table = np.array(rows)
        ratios = np.stack(
            [table[:, 1] / table[:, 0], table[:, 2] / table[:, 0], table[:, 4] / table[:, 3]], 1
        )
        labels = [str(i + 1) for i in range(len(table))] + ["**median**"]
        rows = [*table, np.median(table, axis=0)]
        medians = [*ratios, np.median(ratios, axis=0)]
        for label, row, ratio in zip(labels, rows, medians, strict=True):
            bold = "**" if label == "**median**" else ""
            print(
                f"| {b} | {label} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} "
                f"| {bold}{ratio[0]:.2f}x{bold} | {bold}{ratio[1]:.2f}x{bold} "
                f"| {row[3]:.1f} / {row[4]:.1f} | {ratio[2]:.2f}x |"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default=str(ROOT / "savedmodels" / "conv_ae"))
    parser.add_argument("--signature", default="reconstruct")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rest_only", action="store_true")
    args = parser.parse_args(argv)

    import tensorflow as tf

    base = model_dir(args)
    name = base.name
    version = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
    loaded = tf.saved_model.load(str(base / str(version)))
    fn = loaded.signatures[args.signature]
    (input_name,) = fn.structured_input_signature[1].keys()
    shape = fn.structured_input_signature[1][input_name].shape.as_list()[1:]
    batches = {b: np.random.default_rng(b).random([b, *shape], dtype=np.float32) for b in (1, 64)}

    if not args.rest_only:
        print_table(args, fn, base, name, version, input_name, batches)
    print()
    print(
        f"REST against in-process, {args.rounds} rounds of {args.requests} sequential requests "
        "per row; server = prepared body, answer read as bytes; Client = Client(protocol='rest')"
    )
    print_rounds(rest_rounds(args, fn, base, name, input_name, batches))
    x = batches[64]
    y = fn(**{input_name: tf.constant(x)})
    y = np.asarray(y[next(iter(y))])
    print()
    print("JSON stages for batch 64 in this process, best of 5 (ms):")
    print()
    for stage, ms in json_stages(x, y, input_name, args.signature).items():
        print(f"- {stage}: {ms:.1f}")
    return 0


def print_table(args, fn, base, name, version, input_name, batches) -> None:
    import tensorflow as tf

    from genkeras.serving import Client

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


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
