"""Two VAEs scored on the same test images, image by image: is the new one better, and by how much?

    python benchmarks/vae_paired.py OLD.keras NEW.keras [--iw-samples 64] [--images 10000]

Both models get the same images (the documented binarization of
`genkeras/evaluation/test_set.py`) and the same importance-sampling seeds. The standard error of
the mean *difference* is much smaller than either model's own (most of the spread is between
images, and both see the same ones), so a cheap k settles which model is better long before a
k = 5000 run of each would. A small k gives each figure a larger bias, but the bias of two
models of the same architecture largely cancels in the difference.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import genkeras.models  # noqa: E402, F401 - registers the classes `load_model` needs
from genkeras.evaluation.likelihood import importance_weighted_log_prob  # noqa: E402
from genkeras.evaluation.test_set import binarized_test_set  # noqa: E402

BLOCK = 500  # images per call: [BLOCK, k] decodes fit in memory for k up to a few hundred


def negative_log_likelihoods(path: str, images: np.ndarray, labels, k: int) -> np.ndarray:
    """-log p(x) [N] of the VAE in `path`, k importance samples per image."""
    model = keras.saving.load_model(path)
    labels = labels if model.num_classes else None
    blocks = range(0, len(images), BLOCK)
    return -np.concatenate(
        [
            importance_weighted_log_prob(
                model,
                images[i : i + BLOCK],
                None if labels is None else labels[i : i + BLOCK],
                num_samples=k,
                chunk=k,
            )
            for i in blocks
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the reference VAE's .keras file")
    parser.add_argument("new", help="the VAE compared with it (same data set)")
    parser.add_argument("--iw-samples", type=int, default=64, help="k of the IWAE bound")
    parser.add_argument("--images", type=int, default=10_000, help="the first N test images")
    args = parser.parse_args()
    if args.iw_samples < 1 or not 2 <= args.images <= 10_000:
        parser.error("--iw-samples must be at least 1 and --images from 2 to 10000")
    for path in (args.old, args.new):  # before minutes of scoring the other model
        if not Path(path).is_file():
            parser.error(f"{path} is not a file: give a trained VAE's .keras file")

    images, labels = binarized_test_set()
    images, labels = images[: args.images], labels[: args.images]
    old = negative_log_likelihoods(args.old, images, labels, args.iw_samples)
    new = negative_log_likelihoods(args.new, images, labels, args.iw_samples)
    difference = new - old
    n = len(images)
    for name, values in (("old", old), ("new", new)):
        print(f"{name}: NLL {values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(n):.3f} nats")
    print(
        f"new - old: {difference.mean():+.3f} ± {difference.std(ddof=1) / np.sqrt(n):.3f} nats "
        f"(k = {args.iw_samples}, {n} images; new better on {np.mean(difference < 0):.0%} of them)"
    )


if __name__ == "__main__":
    main()
