"""Outlier detection from exact log-likelihood: MNIST test (inliers) vs Fashion-MNIST test.

    python benchmarks/pixel_outliers.py --model runs/pixelcnn/pixelcnn.keras \
        [--limit N] [--png docs/pixelcnn_bits_per_dim.png]

Bernoulli models score both test sets binarized once with the documented numpy draw of
`genkeras/evaluation/test_set.py` (seed 0, the draw behind every published likelihood figure);
categorical models score the intensities. The score is log p(x): AUROC is the probability that
an MNIST image gets a higher log-likelihood than a Fashion-MNIST one (1 = perfect detector,
0.5 = chance, < 0.5 = outliers look *more* likely). Prints mean bits/dim of both sets and
writes their histogram.
"""

from __future__ import annotations

import argparse
import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from genkeras import data  # noqa: E402
from genkeras.evaluation.likelihood import log_probs  # noqa: E402
from genkeras.evaluation.outliers import auroc  # noqa: E402
from genkeras.evaluation.test_set import TEST_SEED, binarized_test_set  # noqa: E402
from genkeras.pictures.pixel import bits_per_dim_histogram  # noqa: E402


def scores(model, name, limit, binarize, batch=500):
    if binarize:
        images, _ = binarized_test_set(name, "test", TEST_SEED)
    else:
        images = data.take_examples(name, "test", count=limit or 10_000)["image"].astype(np.float32)
    images = images[:limit]
    return log_probs(model, (images[i : i + batch] for i in range(0, len(images), batch)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a pixelcnn / pixelrnn .keras file")
    parser.add_argument("--limit", type=int, help="images per test set (default: all 10000)")
    parser.add_argument("--png", default="docs/pixelcnn_bits_per_dim.png")
    args = parser.parse_args()
    model = keras.saving.load_model(args.model)
    binarize = model.likelihood == "bernoulli"
    inliers = scores(model, "mnist", args.limit, binarize)
    outliers = scores(model, "fashion_mnist", args.limit, binarize)
    dims = math.prod(model.image_shape) * math.log(2.0)
    bpd = {"MNIST test": -inliers / dims, "Fashion-MNIST test": -outliers / dims}
    result = {
        "auroc_mnist_vs_fashion_mnist": auroc(inliers, outliers),
        "mnist_nll_nats": float(-inliers.mean()),
        # The spread of the per-image figures over sqrt(n): how far another test set of the
        # same size could move the mean (the log-likelihood itself is exact).
        "mnist_nll_standard_error": float(inliers.std(ddof=1) / math.sqrt(len(inliers))),
        "fashion_mnist_nll_nats": float(-outliers.mean()),
        "mnist_bits_per_dim": float(bpd["MNIST test"].mean()),
        "fashion_mnist_bits_per_dim": float(bpd["Fashion-MNIST test"].mean()),
        "images_per_set": int(len(inliers)),
        "binarization": f"evaluation/test_set.py, numpy seed {TEST_SEED}" if binarize else None,
    }
    bits_per_dim_histogram(
        bpd,
        args.png,
        title=f"{type(model).__name__} per-image bits/dim "
        f"(AUROC {result['auroc_mnist_vs_fashion_mnist']:.3f})",
    )
    print(json.dumps(result, indent=2))
    print(f"histogram: {args.png}")


if __name__ == "__main__":
    main()
