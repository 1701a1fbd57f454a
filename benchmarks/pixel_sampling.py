"""PixelCNN sampling: the naive loop, the row cache and the per-pixel cache, same seed.

    python benchmarks/pixel_sampling.py [--model runs/pixelcnn/pixelcnn.keras] [--num 16]
        [--large 256] [--repeats 5] [--chains 2] [--exported savedmodels/pixelcnn/5]
        [--skip-naive] [--skip-rows] [--stages]

Without --model it times an untrained PixelCNN of the shipped size (filters 32, 14 layers, head
64): the speed does not depend on the weights. `--chains` sets how many slices the per-pixel
cache splits the batch into, each with its own loop over a row's pixels (`samplers.CHAINS`;
1: one loop). Every sampler runs as a
compiled `tf.function` graph without XLA (as in the SavedModel), traced and warmed up at each
batch size first. The per-pixel cache is timed `--repeats` times for `--num` and for `--large`
images, alternately (both see the same machine load; medians are printed, and the time of
`--large` images over `--num`: how sampling scales with the batch); the row cache and the naive
loop once, for `--num` images. `--exported` times a SavedModel's `sample` signature the same
way as the per-pixel cache (the graph TF Serving and `genkeras serve` run). `--stages` times
the per-pixel cache's two stages alone the same way: the vertical stack (once per row) and the
horizontal stack with the head (once per pixel), without the sampling around them. It prints the
speed-ups over the naive loop and whether the faster samplers drew exactly the naive loop's
images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from genkeras.models.pixel import PixelCNN, samplers  # noqa: E402


def timed(run, num, seed):
    """One call of `run` for `num` images: (images, seconds)."""
    started = time.perf_counter()
    images = run(num, seed, 1.0).numpy()
    return images, time.perf_counter() - started


def timed_sizes(run, sizes, args, name):
    """`run` timed `--repeats` times at each batch size, the sizes alternating so that they see
    the same machine load; prints and returns the median seconds per size."""
    times = {num: [] for num in sizes}
    for _ in range(args.repeats):
        for num in sizes:
            times[num].append(timed(run, num, args.seed)[1])
    median = {num: statistics.median(times[num]) for num in sizes}
    for num in sizes:
        runs = ", ".join(f"{seconds:.3f}" for seconds in times[num])
        print(f"{num} images: {name} {median[num]:.3f} s (median of {runs})", flush=True)
    if len(sizes) > 1:
        ratio = median[sizes[1]] / median[sizes[0]]
        print(f"{name}: {sizes[1]}/{sizes[0]} time ratio: {ratio:.2f}")
    return median


def stage_loops(model):
    """Compiled loops `(num) -> scalar` over the per-pixel cache's two stages alone, for `num`
    images of zeros (the time does not depend on the values): the vertical stack's `row_step`
    once per row, and the horizontal stack and head's `pixel_step` once per pixel."""
    height, width, _ = model.image_shape

    def vertical(num):
        constants = model.cache_constants(num)

        def body(i, cache, total):
            columns, cache = model.row_step(cache, tf.zeros([width, num]), constants)
            return i + 1, cache, total + columns[0, 0, 0]

        start = [0, model.row_cache(num), 0.0]
        return tf.while_loop(lambda i, *_: i < height, body, start, parallel_iterations=1)[2]

    def horizontal(num):
        constants = model.cache_constants(num)
        columns, _ = model.row_step(model.row_cache(num), tf.zeros([width, num]), constants)

        def body(t, cache, total):
            step = model.pixel_step(cache, columns, t % width, tf.zeros([num, 1]), constants)
            return t + 1, step[1], total + step[0][0, 0]

        start = [0, model.pixel_start(num), 0.0]
        return tf.while_loop(lambda t, *_: t < height * width, body, start, parallel_iterations=1)[
            2
        ]

    signature = [tf.TensorSpec([], tf.int32)]
    return {
        name: tf.function(loop, input_signature=signature, autograph=False)
        for name, loop in (("vertical stack", vertical), ("horizontal stack", horizontal))
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=".keras file (default: untrained shipped-size PixelCNN)")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--large", type=int, default=256, help="the larger batch (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of the pixel cache")
    parser.add_argument("--chains", type=int, default=samplers.CHAINS, help="batch slices")
    parser.add_argument("--exported", help="also time this SavedModel's `sample` signature")
    parser.add_argument("--skip-naive", action="store_true", help="no naive loop (slow)")
    parser.add_argument("--skip-rows", action="store_true", help="no row-cache sampler")
    parser.add_argument("--stages", action="store_true", help="also time the two stages alone")
    args = parser.parse_args()
    if args.chains < 1 or args.num < 1 or args.large < 0 or args.repeats < 1:
        parser.error("--chains, --num and --repeats must be at least 1, --large at least 0")
    if args.model:
        model = keras.saving.load_model(args.model)
        if args.stages and not (isinstance(model, PixelCNN) and model.channels == 1):
            parser.error(f"--stages times a grayscale PixelCNN's cache steps, not {args.model}")
    else:
        model = PixelCNN((28, 28, 1), filters=32, num_layers=14, hidden=64)
        model(np.zeros((1, 28, 28, 1), np.float32))
    samplers.CHAINS = args.chains  # read when the sampler is traced, just below
    pixels = samplers.compiled_sampler(model, fast="pixels")
    sizes = [args.num] + ([args.large] if args.large else [])
    for num in sizes:  # trace once; the first call at a new size also pays for setup
        pixels(num, args.seed + 1, 1.0)
    median = timed_sizes(pixels, sizes, args, "per-pixel cache")
    served = None
    if args.exported:
        signature = tf.saved_model.load(args.exported).signatures["sample"]

        def exported(num, seed, temperature):
            inputs = {"num": num, "seed": seed, "temperature": temperature}
            return signature(**{k: tf.constant(v) for k, v in inputs.items()})["images"]

        for num in sizes:
            exported(num, args.seed + 1, 1.0)
        served = timed_sizes(exported, sizes, args, f"{args.exported} sample")
    images = {"exported": exported(args.num, args.seed, 1.0).numpy()} if args.exported else {}
    if args.large:
        # The floor of any exact sampler: every position of every image through every layer
        # once, here as one forward pass of the network (Keras' convolutions) over the batch.
        forward = tf.function(model.logits, jit_compile=False, autograph=False)
        batch = tf.zeros((args.large, *model.image_shape))
        forward(batch)
        passes = statistics.median(
            timed(lambda *_: forward(batch), 0, 0)[1] for _ in range(args.repeats)
        )
        print(
            f"{args.large} images: one forward pass of the network "
            f"{passes:.3f} s (median), the least an exact sampler can take"
        )
        # A sampler's large/small time ratio can only fall below this by slowing small batches.
        for name, small in (("per-pixel cache", median), (args.exported, served)):
            if small:
                floor = passes / small[args.num]
                print(f"{name}: the least {args.large}/{args.num} time ratio: {floor:.2f}")
    if args.stages:
        for name, loop in stage_loops(model).items():
            for num in sizes:
                loop(num)
            timed_sizes(lambda num, *_, loop=loop: loop(num), sizes, args, name)
    images["pixels"] = timed(pixels, args.num, args.seed)[0]
    seconds = {"pixels": median[args.num]}
    for name, fast, skip in (("rows", "rows", args.skip_rows), ("naive", False, args.skip_naive)):
        if not skip:
            run = samplers.compiled_sampler(model, fast=fast)
            run(1, args.seed + 1, 1.0)
            images[name], seconds[name] = timed(run, args.num, args.seed)
            print(f"{args.num} images: {name:>5} {seconds[name]:8.2f} s", flush=True)
    if "naive" in seconds:
        if "exported" in images:
            same = np.array_equal(images["exported"], images["naive"])
            print(f"{args.exported} sample: identical samples to naive: {same}")
        for name in ("pixels", "rows"):
            if name in seconds:
                same = np.array_equal(images[name], images["naive"])
                speed_up = seconds["naive"] / seconds[name]
                print(f"naive/{name}: {speed_up:.1f}x; identical samples: {same}")


if __name__ == "__main__":
    main()
