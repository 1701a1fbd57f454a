"""Frechet distance between classifier logits of generated and real MNIST digits.

As TF-GAN's `mnist_frechet_distance`: a small MNIST classifier maps images to 10 logits; fit a
Gaussian to the logits of each set and take the Frechet (2-Wasserstein) distance

    d^2 = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^(1/2)).

Lower is better; the test set against the training set gives the floor a perfect sampler would
reach. The shipped classifier (`genkeras/assets/mnist_classifier.keras`, about 100 KB) is
trained by

    genkeras train-classifier --epochs 3

and reaches the test accuracy recorded in `genkeras/assets/mnist_classifier.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CLASSIFIER_PATH = ASSETS / "mnist_classifier.keras"


def build_classifier():
    """A small convolutional MNIST classifier with logits outputs (about 25k parameters)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, name="logits"),
        ],
        name="mnist_classifier",
    )


def train_classifier(out=CLASSIFIER_PATH, epochs=3, batch_size=128, limit=None, seed=0) -> dict:
    """Trains the classifier on the MNIST training split (grayscale images in [0, 1]).

    Returns the test accuracy and writes `out` and a JSON record beside it.
    """
    import keras

    from genkeras import data

    keras.utils.set_random_seed(seed)

    def pairs(split, shuffle):
        ds = data.load_split("mnist", split, limit=limit).map(lambda e: (e["image"], e["label"]))
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed)
        return ds.batch(batch_size)

    model = build_classifier()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        pairs("train", True), validation_data=pairs("validation", False), epochs=epochs, verbose=2
    )
    _, accuracy = model.evaluate(pairs("test", False), verbose=0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    record = {
        "test_accuracy": float(accuracy),
        "epochs": epochs,
        "parameters": int(model.count_params()),
        "command": f"genkeras train-classifier --epochs {epochs}",
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_classifier(path=CLASSIFIER_PATH):
    """Loads the shipped classifier; raises FileNotFoundError saying how to train it."""
    import keras

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No MNIST classifier at {path}. Train it with: genkeras train-classifier"
        )
    return keras.saving.load_model(path)


def logits(classifier, images, batch_size=500) -> np.ndarray:
    images = np.asarray(images, np.float32)
    return np.concatenate(
        [
            np.asarray(classifier(images[i : i + batch_size], training=False))
            for i in range(0, len(images), batch_size)
        ]
    ).astype(np.float64)


def _sqrtm_psd(matrix):
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance_from_activations(a, b) -> float:
    """Frechet distance between Gaussians fitted to activations `a` [N, K] and `b` [M, K]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    # tr((C_a C_b)^(1/2)) = tr((C_a^(1/2) C_b C_a^(1/2))^(1/2)), symmetric and stable.
    cross = np.trace(_sqrtm_psd(root_a @ cov_b @ root_a))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def mnist_frechet_distance(images_a, images_b, classifier=None) -> float:
    """Frechet distance between classifier logits of two image sets ([N, 28, 28, 1], [0, 1])."""
    classifier = classifier or load_classifier()
    return frechet_distance_from_activations(
        logits(classifier, images_a), logits(classifier, images_b)
    )
