"""Receptive fields of the two PixelRNN variants, by exact-zero gradients.

    python benchmarks/pixelrnn_receptive_field.py [--size 8]

For untrained Row LSTM and Diagonal BiLSTM models (filters 8, head 8; 1 and 2 layers) on
SIZE x SIZE images: the gradient of each pixel's logits with respect to every pixel of the
input. Prints, per model, how many (pixel, earlier pixel) pairs have an exactly zero gradient
(blind spots), how many of its earlier pixels the first pixel of the last row misses, and how
many (pixel, own or later pixel) pairs have a nonzero one (leaks of the future; must be 0).
tests/test_pixelrnn.py checks the same on 5x6 images.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from genkeras.models.pixel import DiagonalBiLSTM, PixelRNN  # noqa: E402


def gradients_per_pixel(model, size):
    """[T, T] (T = size * size): row t is the gradient of pixel t's logits w.r.t. the image."""
    x = tf.constant(np.random.default_rng(0).random((1, size, size, 1)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        per_pixel = tf.reshape(model.logits(x), [size * size, -1])
        outputs = [tf.reduce_sum(per_pixel[t]) for t in range(size * size)]
    return np.stack([tf.reshape(tape.gradient(y, x), [-1]).numpy() for y in outputs])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    size = parser.parse_args(argv).size
    pixels = size * size
    earlier = np.tril(np.ones((pixels, pixels), bool), -1)
    print(
        "| model | layers | blind (pixel, earlier pixel) pairs | pixel (last row, 0) blind to "
        "| future leaks |\n|---|---|---|---|---|"
    )
    for layers in (1, 2):
        for cls in (PixelRNN, DiagonalBiLSTM):
            keras.utils.set_random_seed(0)
            model = cls((size, size, 1), filters=8, num_layers=layers, hidden=8)
            gradients = gradients_per_pixel(model, size)
            blind = earlier & (gradients == 0)
            last_row_start = (size - 1) * size
            leaks = np.count_nonzero(~earlier & (gradients != 0))
            print(
                f"| {cls.__name__} | {layers} | {blind.sum()} of {earlier.sum()} "
                f"| {blind[last_row_start].sum()} of its {last_row_start} earlier pixels "
                f"| {leaks} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
