"""Latent explorer responsiveness: the round trip of one `decode` request, as the page sends it.

    python benchmarks/explorer_latency.py [--models conv_vae,vae,cvae,conv_ae] [--requests 200]
    python benchmarks/explorer_latency.py --url http://127.0.0.1:8501   # an already running server

Without --url it starts `genkeras serve` on a free loopback port with the shipped SavedModels
(savedmodels/NAME: its newest version, the served one). For each model it sends `requests` POST
`/v1/models/NAME/versions/N:predict`, N the version the server reports AVAILABLE, with
`{"signature_name": "decode", "inputs": {"z": [[...]]}}`
(one code, 3 decimals per value, like explorer.js), one at a time over a kept-alive connection
(what the browser does), after 10 warm-up requests, and prints the median, p95 and max in ms.
The page's budget is 50 ms per decode. `--browser` also measures it inside headless Chromium
(Debian's `chromium`, via Playwright): the page's own `decode()` (fetch + JSON + parsing), one
request at a time, on the conv_vae page.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: list[str]):
    work = Path(tempfile.mkdtemp(prefix="explorer_latency_"))
    config = work / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{m}" base_path: "{ROOT / "savedmodels" / m}" '
            'model_platform: "tensorflow" }\n'
            for m in models
        )
        + "}\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "genkeras.cli", "serve", "--model_config_file", str(config)]
        + ["--port", "0", "--rest_api_port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit("genkeras serve exited early")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", f"/v1/models/{models[-1]}")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("genkeras serve did not start")


def latent_dim(connection, model: str) -> tuple[int, bool]:
    connection.request("GET", f"/v1/models/{model}/metadata")
    doc = json.loads(connection.getresponse().read())
    inputs = doc["metadata"]["signature_def"]["signature_def"]["decode"]["inputs"]
    return int(inputs["z"]["tensor_shape"]["dim"][1]["size"]), "labels" in inputs


def served_version(connection, model: str) -> str:
    """The newest version `GET /v1/models/NAME` reports AVAILABLE: the page's default pick."""
    connection.request("GET", f"/v1/models/{model}")
    doc = json.loads(connection.getresponse().read())
    available = [s["version"] for s in doc["model_version_status"] if s["state"] == "AVAILABLE"]
    if not available:
        raise SystemExit(f"{model}: no version AVAILABLE ({doc})")
    return max(available, key=int)


def measure(host: str, port: int, model: str, requests: int) -> list[float]:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    dim, conditional = latent_dim(connection, model)
    version = served_version(connection, model)
    rng = np.random.default_rng(0)
    times = []
    for i in range(requests + 10):
        inputs = {"z": [[round(float(v), 3) for v in rng.normal(size=dim)]]}
        if conditional:
            inputs["labels"] = [int(i % 10)]
        body = json.dumps({"signature_name": "decode", "inputs": inputs})
        started = time.perf_counter()
        connection.request(
            "POST",
            f"/v1/models/{model}/versions/{version}:predict",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        doc = json.loads(response.read())
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status == 200, doc
        assert np.asarray(doc["outputs"]).shape == (1, 28, 28, 1)
        if i >= 10:
            times.append(elapsed)
    connection.close()
    return times


BROWSER_JS = """async (n) => {
  const times = [];
  for (let i = 0; i < n + 10; i++) {
    const z = S.current.map((v, d) => v + 0.01 * ((i * 7 + d) % 5));
    const started = performance.now();
    await decode([z]);
    if (i >= 10) times.push(performance.now() - started);
  }
  return times;
}"""


def measure_browser(host: str, port: int, model: str, requests: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page()
        page.goto(f"http://{host}:{port}/?model={model}")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
        times = page.evaluate(BROWSER_JS, requests)
        browser.close()
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="conv_vae,vae,cvae,conv_ae")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--url", help="a running server; default: start one")
    parser.add_argument("--browser", action="store_true", help="also time it in Chromium")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    process = None
    if args.url:
        parts = urllib.parse.urlsplit(args.url)
        host, port = parts.hostname, parts.port
    else:
        process, port = start_server(models)
        host = "127.0.0.1"
    try:
        print(
            f"decode round trip, 1 image, {args.requests} sequential requests "
            f"({os.cpu_count()} CPUs)"
        )
        print(f"{'model':<20} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
        worst = 0.0
        for model in models:
            times = sorted(measure(host, port, model, args.requests))
            p95 = times[int(0.95 * (len(times) - 1))]
            worst = max(worst, p95)
            print(f"{model:<20} {statistics.median(times):>10.1f} {p95:>8.1f} {times[-1]:>8.1f}")
        if args.browser:
            for model in models:
                times = sorted(measure_browser(host, port, model, args.requests))
                p95 = times[int(0.95 * (len(times) - 1))]
                worst = max(worst, p95)
                print(
                    f"{model + ' (chromium)':<20} {statistics.median(times):>10.1f} "
                    f"{p95:>8.1f} {times[-1]:>8.1f}"
                )
        print(f"budget 50 ms: {'met' if worst < 50 else 'MISSED'} (worst p95 {worst:.1f} ms)")
    finally:
        if process is not None:
            process.terminate()
            process.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
