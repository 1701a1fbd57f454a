"""Naive vs row-cached PixelCNN sampling: 16 MNIST-sized images, same seed, same images.

    python benchmarks/pixel_sampling.py [--model runs/pixelcnn/pixelcnn.keras] [--num 16]

Without --model it times an untrained PixelCNN of the shipped size (filters 32, 7 layers,
head 64): the speed does not depend on the weights. Both samplers run as compiled
`tf.function` graphs (as in the SavedModel); each is traced and warmed up on one image first.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from genkeras.models.pixel import PixelCNN, samplers  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=".keras file (default: untrained shipped-size PixelCNN)")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.model:
        model = keras.saving.load_model(args.model)
    else:
        model = PixelCNN((28, 28, 1), filters=32, num_layers=7, hidden=64)
        model(np.zeros((1, 28, 28, 1), np.float32))
    times, images = {}, {}
    for name, fast in (("fast", True), ("naive", False)):
        run = samplers.compiled_sampler(model, fast=fast)
        run(1, args.seed, 1.0)  # trace + warm up
        started = time.perf_counter()
        images[name] = run(args.num, args.seed, 1.0).numpy()
        times[name] = time.perf_counter() - started
        print(f"{name:>5} sampler: {times[name]:8.2f} s for {args.num} images", flush=True)
    same = np.array_equal(images["fast"], images["naive"])
    print(f"speed-up naive/fast: {times['naive'] / times['fast']:.1f}x; identical samples: {same}")


if __name__ == "__main__":
    main()
