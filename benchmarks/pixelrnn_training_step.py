"""Seconds per training step of the Diagonal BiLSTM PixelRNN, as `train.py` runs them.

    python benchmarks/pixelrnn_training_step.py [--filters 32] [--batch-sizes 32 64]
        [--steps 8] [--repeats 3] [--jit-compile off]

Times `fit` on random binary 28x28 images: `--steps` steps per call in one execution (as
train.py's `--steps-per-execution 8`), after a first call that traces the graph. It prints the
median of `--repeats` calls per batch size, in seconds per step and images per second. The
speed does not depend on the weights, so the model is untrained (the shipped size by default).
Run it from another checkout (PYTHONPATH=that/checkout) to compare two versions of the code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from genkeras.models.pixel.diagonal_bilstm import DiagonalBiLSTM  # noqa: E402

JIT = {"auto": "auto", "on": True, "off": False}


def seconds_per_step(batch, args):
    """Median seconds per training step over `args.repeats` calls of `fit`."""
    model = DiagonalBiLSTM((28, 28, 1), filters=args.filters, num_layers=args.layers, hidden=64)
    rng = np.random.default_rng(0)
    images = (rng.random((batch * args.steps, 28, 28, 1)) > 0.5).astype("float32")
    model(images[:2])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        jit_compile=JIT[args.jit_compile],
        steps_per_execution=args.steps,
    )
    model.fit(images, batch_size=batch, epochs=1, verbose=0)  # traces the step
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        model.fit(images, batch_size=batch, epochs=1, verbose=0)
        times.append((time.perf_counter() - started) / args.steps)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=8, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit-compile", choices=JIT, default="off")
    args = parser.parse_args()
    for batch in args.batch_sizes:
        seconds = seconds_per_step(batch, args)
        print(
            f"filters {args.filters}, {args.layers} layers, batch {batch}, "
            f"jit {args.jit_compile}: {seconds:.3f} s per step, {batch / seconds:.1f} images/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
