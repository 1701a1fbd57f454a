"""The fixed binarized test set behind every published likelihood figure.

Dynamically binarized models are scored on ONE binarization of the test split, drawn once
for the whole split in TFDS order:

    binary = numpy.random.default_rng(seed).random(images.shape, dtype=numpy.float32) < images

with `seed` = `TEST_SEED` (0). Any first-N subset is then a prefix of the same draw, and anyone
with numpy can rebuild the exact images a figure was computed on (the training pipeline's
tf.random.Generator draws depend on the batch size, so it is not used here).
"""

from __future__ import annotations

import numpy as np

from genkeras import data

TEST_SEED = 0


def binarized_test_set(dataset: str = "mnist", split: str = "test", seed: int = TEST_SEED):
    """Every image of `split`, binarized once with `seed`, and its labels.

    Args:
        dataset: a data set name of `genkeras.data` (MNIST, Fashion-MNIST).
        split: the split to read, whole.
        seed: the numpy seed of the one binarization draw.

    Returns:
        `(images, labels)`: float32 [N, H, W, C] of 0s and 1s, int32 [N].

    Example:
    >>> images, labels = binarized_test_set()
    >>> images.shape, sorted(np.unique(images))
    ((10000, 28, 28, 1), [0.0, 1.0])
    """
    split_data = data.load_split(dataset, split)
    examples = data.take_examples(dataset, split, count=int(split_data.cardinality()))
    images = examples["image"].astype(np.float32)
    uniform = np.random.default_rng(seed).random(images.shape, dtype=np.float32)
    labels = examples.get("label", np.zeros(len(images), np.int32)).astype(np.int32)
    return (uniform < images).astype(np.float32), labels
