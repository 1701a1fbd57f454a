"""PixelRNN sampling, both variants: the naive loop against the fast sampler, same seed.

    python benchmarks/pixelrnn_sampling.py [--num 16] [--repeats 3] [--variants row diagonal]
        [--filters 32] [--num-layers 2] [--hidden 64] [--model runs/pixelrnn/pixelrnn.keras]

Without --model it times untrained 28x28 PixelRNNs of the registry's default size (filters 32,
2 layers, head 64): the speed does not depend on the weights. The fast sampler is what
`sample` uses by default: for the Diagonal BiLSTM the per-pixel cache (the recurrent state is
carried: both LSTMs once per row on the finished row above, the left-to-right LSTM one pixel
at a time), for the Row LSTM the row cache (the recurrence once per row, the row's LSTM step
once per pixel). The naive loop reruns the whole network for every pixel. Both run as
compiled `tf.function` graphs without XLA (as in the SavedModel), traced and warmed up first
(on 1 image; tracing is not timed). The fast sampler is timed `--repeats` times (median), the
naive loop once. It prints the times, the speed-up and whether both drew the same images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from genkeras.models.pixel import samplers  # noqa: E402
from genkeras.models.pixel.pixelrnn import build_pixelrnn  # noqa: E402


def timed(run, num, seed):
    """One call of `run` for `num` images: (images, seconds)."""
    started = time.perf_counter()
    images = run(num, seed, 1.0).numpy()
    return images, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a pixelrnn .keras file (instead of untrained models)")
    parser.add_argument("--variants", nargs="+", default=["row", "diagonal"])
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of the fast sampler")
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    if args.model:
        models = {"trained": keras.saving.load_model(args.model)}
    else:
        models = {}
        for variant in args.variants:
            keras.utils.set_random_seed(1)
            model = build_pixelrnn(
                (28, 28, 1),
                variant=variant,
                filters=args.filters,
                num_layers=args.num_layers,
                hidden=args.hidden,
            )
            model(np.zeros((1, 28, 28, 1), np.float32))
            models[variant] = model
    for name, model in models.items():
        method = samplers.method_of(model, True)
        fast = samplers.compiled_sampler(model, fast=True)
        naive = samplers.compiled_sampler(model, fast=False)
        for run in (fast, naive):
            run(1, args.seed, 1.0)  # trace and warm up
        times, drawn = [], None
        for _ in range(args.repeats):
            drawn, seconds = timed(fast, args.num, args.seed)
            times.append(seconds)
        fast_seconds = statistics.median(times)
        reference, naive_seconds = timed(naive, args.num, args.seed)
        print(
            f"{type(model).__name__} ({name}, filters {model.filters}, {model.num_layers} "
            f"layers, {'untrained' if not args.model else 'trained'}), {args.num} images "
            f"28x28: naive {naive_seconds:.2f} s, fast ({method}) {fast_seconds:.2f} s "
            f"(median of {args.repeats}), speed-up {naive_seconds / fast_seconds:.1f}x, "
            f"same images: {np.array_equal(drawn, reference)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
