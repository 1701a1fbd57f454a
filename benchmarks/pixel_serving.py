"""PixelCNN `sample` as served traffic: exported versions side by side in one `genkeras serve`.

    python benchmarks/pixel_serving.py [--base savedmodels/pixelcnn] [--versions 5]
        [--rounds 5]

By default it times the served version (5), the only one in the tree. Older versions are in
git history (the served card's `lineage_commits`); to compare with version 4, as
docs/benchmarks.md does, restore it first, then put it away:

    git checkout cca90fc6cc3ad0b074d1db24bc58eed97190c314 -- savedmodels/pixelcnn/4
    python benchmarks/pixel_serving.py --versions 4 5
    git rm -r -q -f savedmodels/pixelcnn/4

Starts a `genkeras serve` per version on loopback (each process serving only its version, as
in production), and times `sample` over REST, round after round, the versions taking turns (so
they see the same machine load; the idle server waits meanwhile):

* 16 images, and 256 images (how the served graph scales with the batch);
* two 256-image requests sent together (the wall time: throughput when requests share the
  cores);
* a 2-image request sent 1 s after a 400-image one: its latency (what a large request costs a
  small one served beside it), and the 400-image request's.

Prints the median of the rounds for each version. The JSON is part of every time (about 5 ms
for 256 images).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

MEASURES = ("16", "256", "two 256 at once", "2 beside 400", "400 beside 2")


def post(port, model, num, seed):
    """Seconds for one REST `sample` of `num` images, the answer read in full."""
    body = {"signature_name": "sample", "inputs": {"num": num, "seed": seed, "temperature": 1.0}}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/{model}:predict", json.dumps(body).encode()
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as answer:
        answer.read()
    return time.perf_counter() - started


def together(calls):
    """Runs the calls in threads, all at once: (wall seconds, each call's result)."""
    results = [None] * len(calls)

    def run(index, call):
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, results


def one_round(port, model, seed):
    """The five measures of `MEASURES` for one model, in seconds."""
    times = [post(port, model, 16, seed), post(port, model, 256, seed)]
    times.append(
        together([lambda: post(port, model, 256, seed), lambda: post(port, model, 256, seed + 1)])[
            0
        ]
    )

    def small():
        time.sleep(1.0)  # the large request is running by now
        return post(port, model, 2, seed)

    _, (large, beside) = together([lambda: post(port, model, 400, seed), small])
    return [*times, beside, large]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="savedmodels/pixelcnn", help="the versions' folder")
    parser.add_argument(
        "--versions", nargs="+", default=["5"], help="version folders of --base (default: 5)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folders = {v: Path(args.base, v).resolve() for v in args.versions}
    missing = [str(path) for path in folders.values() if not (path / "saved_model.pb").is_file()]
    if missing:
        parser.error(
            f"no SavedModel in {', '.join(missing)}: pass exported versions (older ones are in "
            "git history: `lineage_commits` in the served version's model_card.json)"
        )
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    from serving_latency import start_server  # this folder's script: `genkeras serve` up

    with tempfile.TemporaryDirectory() as work:
        ports, processes = {}, []
        try:
            for version, folder in folders.items():  # a server per version, serving only it
                Path(work, version).mkdir()
                Path(work, version, "1").symlink_to(folder)
                process, _, ports[version] = start_server(Path(work, version), "pixelcnn", False)
                processes.append(process)
            measure(ports, args.rounds)
        finally:
            for process in processes:
                process.terminate()
                process.wait()


def measure(ports, rounds):
    """Rounds of `one_round`, the versions taking turns; prints each and the medians."""
    for port in ports.values():  # the first call at a new size pays for setup
        for num in (2, 16, 256, 400):
            post(port, "pixelcnn", num, 0)
    times = {version: [] for version in ports}
    for seed in range(rounds):
        for version, port in ports.items():
            times[version].append(one_round(port, "pixelcnn", seed))
            line = ", ".join(f"{t:.3f}" for t in times[version][-1])
            print(f"round {seed + 1} version {version}: {line}", flush=True)
    print("medians (s): " + ", ".join(MEASURES))
    for version in ports:
        median = [statistics.median(column) for column in zip(*times[version], strict=True)]
        ratio = median[1] / median[0]
        line = ", ".join(f"{t:.3f}" for t in median)
        print(f"version {version}: {line}; 256/16 {ratio:.2f}")


if __name__ == "__main__":
    main()
