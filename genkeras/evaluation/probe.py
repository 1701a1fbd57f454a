"""Features learned without labels, measured with few labels: a linear probe.

An unsupervised model's codes (the encoder means) are frozen; a linear softmax classifier is
trained on them from a few labelled training digits per class and tested on the whole MNIST
test set. Raw pixels are the baseline: a good representation needs fewer labels to separate the
classes linearly.
"""

from __future__ import annotations

import numpy as np

from genkeras import data


def codes(model, images, batch_size=1000) -> np.ndarray:
    """The encoder's code for every image: `z` of an autoencoder or PCA, `z_mean` of a VAE;
    `model=None` gives the raw pixels."""
    images = np.asarray(images, np.float32)
    if model is None:
        return images.reshape(len(images), -1)
    parts = []
    for start in range(0, len(images), batch_size):
        out = model.encode(images[start : start + batch_size])
        parts.append(np.asarray(out["z_mean"] if isinstance(out, dict) else out))
    return np.concatenate(parts)


def fit_softmax(features, labels, num_classes=10, steps=500, l2=1e-3, rate=0.5):
    """A multinomial logistic regression by full-batch gradient descent on standardized
    features. Returns `predict(features) -> labels`."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    x = np.hstack([(features - mean) / scale, np.ones((len(features), 1))])
    onehot = np.eye(num_classes)[labels]
    weights = np.zeros((x.shape[1], num_classes))
    for _ in range(steps):
        logits = x @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        gradient = x.T @ (probabilities - onehot) / len(x) + l2 * weights
        weights -= rate * gradient

    def predict(new_features):
        z = np.hstack([(new_features - mean) / scale, np.ones((len(new_features), 1))])
        return (z @ weights).argmax(axis=1)

    return predict


def labelled_subset(labels, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` random examples of every class."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in np.unique(labels)
        ]
    )


def probe(models: dict, labels_per_class=(1, 10, 100, 1000), draws=5, limit=None) -> dict:
    """Test accuracy of a linear probe on each model's codes.

    Args:
        models: name -> model (`None` for raw pixels).
        labels_per_class: labelled training digits per class for each probe.
        draws: random draws of the labelled digits per setting (mean and spread reported).
        limit: training and test digits to use (quick runs); None for the whole splits.

    Returns:
        {name: {per_class: {"mean": accuracy, "std": ..., "accuracies": [...]}}}.
    """
    train = data.take_examples("mnist", "train", count=limit or 55_000)
    test = data.take_examples("mnist", "test", count=limit or 10_000)
    results = {}
    for name, model in models.items():
        train_codes, test_codes = codes(model, train["image"]), codes(model, test["image"])
        results[name] = {}
        for per_class in labels_per_class:
            accuracies = []
            for draw in range(draws):
                chosen = labelled_subset(train["label"], per_class, seed=draw)
                predict = fit_softmax(train_codes[chosen], train["label"][chosen])
                accuracies.append(float((predict(test_codes) == test["label"]).mean()))
            results[name][per_class] = {
                "mean": float(np.mean(accuracies)),
                "std": float(np.std(accuracies)),
                "accuracies": accuracies,
            }
    return results
