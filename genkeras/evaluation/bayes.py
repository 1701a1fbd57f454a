"""How well a conditional generative model labels digits by Bayes' rule and rejects what is no
digit, beside a discriminative classifier (`genkeras bayes-evaluate`).

`calibrate` sets the model's prior p(y) from the training labels and its outlier threshold from
the validation digits (the log p(x) below which 1% of them fall). `evaluate` then measures, on
the MNIST test set with the Fashion-MNIST test set mixed in: accuracy, the share of Fashion
images flagged as outliers, accuracy against coverage, and the same 1%-of-validation rule
applied to the discriminative classifier's confidence.
"""

from __future__ import annotations

import numpy as np

from genkeras import data
from genkeras.evaluation import frechet

OUTLIER_QUANTILE = 0.01  # the share of validation digits below the outlier threshold


def binarized_batches(dataset: str, split: str, limit=None, batch_size=100, seed=0):
    """`(images, labels)` batches as numpy arrays, dynamically binarized with a fixed seed
    (the binarization the likelihood figures use)."""
    view = data.View(binarize=True, labels=True, targets=False)
    ds = data.pipeline(
        data.load_split(dataset, split, limit=limit),
        view,
        batch_size=batch_size,
        shuffle=False,
        seed=seed,
    )
    for images, labels in ds:
        yield np.asarray(images), np.asarray(labels)


def label_frequencies(num_classes: int, dataset="mnist", limit=None) -> np.ndarray:
    """p(y) as the training split's label frequencies."""
    counts = np.zeros(num_classes)
    for example in data.load_split(dataset, "train", limit=limit).batch(10_000):
        counts += np.bincount(np.asarray(example["label"]), minlength=num_classes)
    counts += 1  # Laplace smoothing: a class missing from a small sample keeps p(y) > 0
    return counts / counts.sum()


def posteriors(model, batches, num_samples=None) -> dict:
    """`model.label_posterior` over `batches`, concatenated, plus the true labels."""
    import tensorflow as tf

    run = tf.function(lambda images: model.label_posterior(images, num_samples))
    parts = {"probabilities": [], "label": [], "log_prob": [], "outlier": [], "true": []}
    for images, labels in batches:
        out = run(tf.constant(images))
        for key in ("probabilities", "label", "log_prob", "outlier"):
            parts[key].append(np.asarray(out[key]))
        parts["true"].append(labels)
    return {key: np.concatenate(values) for key, values in parts.items()}


def calibrate(model, num_samples=None, limit=None) -> dict:
    """Sets `model.label_prior` (training label frequencies) and `model.outlier_threshold` (the
    1% quantile of log p(x) over the validation digits); returns both."""
    model.label_prior = tuple(float(p) for p in label_frequencies(model.num_classes, limit=limit))
    model.outlier_threshold = None
    validation = posteriors(model, binarized_batches("mnist", "validation", limit), num_samples)
    model.outlier_threshold = float(np.quantile(validation["log_prob"], OUTLIER_QUANTILE))
    return {"label_prior": list(model.label_prior), "outlier_threshold": model.outlier_threshold}


def coverage_curve(confidence, correct, points=101) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy on the most confident fraction c of the images, for c from 1/points to 1."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    hits = np.cumsum(np.asarray(correct)[order])
    coverage = np.linspace(1 / points, 1, points)
    kept = np.maximum(1, np.round(coverage * len(order)).astype(int))
    return coverage, hits[kept - 1] / kept


def evaluate(model, num_samples=None, limit=None, classifier=None) -> dict:
    """The Bayes classifier's figures, and the discriminative classifier's beside them.

    Args:
        model: a calibrated conditional model (`calibrate` first).
        num_samples: importance samples per class (VAEs; default: the model's export setting).
        limit: images per split (quick runs); None for the whole splits.
        classifier: the discriminative MNIST classifier (default: the shipped one).

    Returns:
        dict of figures; `curves` holds the arrays the pictures draw.
    """
    mnist = posteriors(model, binarized_batches("mnist", "test", limit), num_samples)
    fashion = posteriors(model, binarized_batches("fashion_mnist", "test", limit), num_samples)
    correct = mnist["label"] == mnist["true"]
    confidence = mnist["probabilities"].max(axis=1)
    coverage, accuracy = coverage_curve(confidence, correct)
    kept = ~mnist["outlier"]

    classifier = classifier or frechet.load_classifier()
    validation_softmax, test_softmax, fashion_softmax = (
        _softmax(frechet.logits(classifier, _clean(dataset, split, limit)))
        for dataset, split in (
            ("mnist", "validation"),
            ("mnist", "test"),
            ("fashion_mnist", "test"),
        )
    )
    confidence_threshold = float(np.quantile(validation_softmax.max(axis=1), OUTLIER_QUANTILE))
    return {
        "model": type(model).__name__,
        "images": {
            "mnist_test": int(len(correct)),
            "fashion_mnist_test": int(len(fashion["label"])),
        },
        # None for the pixel models: their log p(x | y) is exact
        "importance_samples_per_class": num_samples or getattr(model, "log_prob_samples", None),
        "label_prior": list(model.label_prior),
        "outlier_threshold_nats": model.outlier_threshold,
        "accuracy": float(correct.mean()),
        "accuracy_at_coverage": {  # on the most confident 5%, 10%, ..., 100% of the digits
            f"{share:.2f}": float(value)
            for share, value in zip(*coverage_curve(confidence, correct, points=20), strict=True)
        },
        "accuracy_on_kept_digits": float(correct[kept].mean()),
        "mnist_flagged_as_outliers": float(mnist["outlier"].mean()),
        "fashion_flagged_as_outliers": float(fashion["outlier"].mean()),
        "mean_log_prob_mnist": float(mnist["log_prob"].mean()),
        "mean_log_prob_fashion": float(fashion["log_prob"].mean()),
        "discriminative": {
            "accuracy": float((test_softmax.argmax(axis=1) == mnist["true"]).mean()),
            "confidence_threshold": confidence_threshold,
            "fashion_rejected": float((fashion_softmax.max(axis=1) < confidence_threshold).mean()),
            "fashion_mean_confidence": float(fashion_softmax.max(axis=1).mean()),
        },
        "curves": {
            "coverage": coverage,
            "accuracy_at_coverage": accuracy,
            "log_prob_mnist": mnist["log_prob"],
            "log_prob_fashion": fashion["log_prob"],
            "confidence_mnist": test_softmax.max(axis=1),
            "confidence_fashion": fashion_softmax.max(axis=1),
        },
    }


def _clean(dataset, split, limit):
    """Grayscale images in [0, 1] (the classifier's input), in the split's order."""
    count = limit or {"validation": 5000, "test": 10000}[split]
    return data.take_examples(dataset, split, count=count)["image"]


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
