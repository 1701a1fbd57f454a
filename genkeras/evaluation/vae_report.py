"""The full quality report of one MNIST VAE: posterior statistics, the k = 5000 likelihood,
the Frechet distance of its samples and its outlier AUROC (`genkeras vae-evaluate`)."""

from __future__ import annotations

import time

import numpy as np

from genkeras import data
from genkeras.evaluation import frechet
from genkeras.evaluation.iwae_run import iwae_test_nll
from genkeras.evaluation.likelihood import (
    importance_weighted_log_prob,
    posterior_statistics,
    split_batch,
)
from genkeras.evaluation.outliers import auroc
from genkeras.evaluation.test_set import TEST_SEED, binarized_test_set


def _batches(model, images, labels, batch_size=100):
    """Numpy test arrays in model-input batches: images, or (images, labels) if conditional."""
    for start in range(0, len(images), batch_size):
        block = images[start : start + batch_size]
        yield (block, labels[start : start + batch_size]) if model.num_classes else block


def _log_probs(model, images, labels, num_samples, chunk=64):
    values = []
    for batch in _batches(model, images, labels):
        block, block_labels = split_batch(batch, model)
        values.append(importance_weighted_log_prob(model, block, block_labels, num_samples, chunk))
    return np.concatenate(values)


def samples_for_frechet(model, count, seed=0, batch=500) -> np.ndarray:
    """`count` samples (Bernoulli means); a conditional model gets labels 0..9 in turn."""
    out = []
    for index, start in enumerate(range(0, count, batch)):
        size = min(batch, count - start)
        labels = (
            (np.arange(start, start + size) % model.num_classes).astype(np.int32)
            if model.num_classes
            else None
        )
        out.append(np.asarray(model.sample(size, seed * 1000 + index, labels)))
    return np.concatenate(out)


def evaluate_vae(
    model,
    iw_samples=5000,
    iw_images=None,
    frechet_samples=10000,
    auroc_images=2000,
    auroc_samples=64,
    seed=0,
    iwae_options=None,
) -> dict:
    """Every test figure of one MNIST VAE, as `genkeras vae-evaluate` reports them.

    Test images are the fixed binarization of `genkeras.evaluation.test_set` (numpy seed
    `TEST_SEED`), so every figure can be recomputed on exactly the same pixels.

    - full test split: ELBO, reconstruction and KL, KL per dimension, active units, mean sigma,
      reconstruction MSE;
    - importance-weighted NLL with k = `iw_samples` on the first `iw_images` test images
      (None = all, 0 = skip), with `iwae_options` passed to `iwae_test_nll` (checkpoint,
      decodes per call, progress);
    - Frechet distance of classifier logits: `frechet_samples` samples vs the test images, and
      the floor: test vs the first 10000 training images;
    - AUROC of log_prob (k = `auroc_samples`) for MNIST test (inliers) vs Fashion-MNIST test,
      the first `auroc_images` of each.
    """
    report = {"model": type(model).__name__, "latent_dim": model.latent_dim, "beta": model.beta}
    images, labels = binarized_test_set("mnist", "test", TEST_SEED)
    report["test_binarization_seed"] = TEST_SEED
    started = time.perf_counter()
    report.update(posterior_statistics(model, _batches(model, images, labels), seed=seed))
    report["statistics_seconds"] = round(time.perf_counter() - started, 1)
    if iw_samples and iw_images != 0:
        count = len(images) if iw_images is None else min(iw_images, len(images))
        report.update(
            iwae_test_nll(
                model,
                images[:count],
                labels[:count] if model.num_classes else None,
                iw_samples,
                seed=seed,
                **(iwae_options or {}),
            )
        )
    if frechet_samples:
        classifier = frechet.load_classifier()
        test = data.take_examples("mnist", "test", count=10000)["image"]
        train = data.take_examples("mnist", "train", count=10000)["image"]
        samples = samples_for_frechet(model, frechet_samples, seed)
        report["frechet_distance_samples_vs_test"] = frechet.mnist_frechet_distance(
            samples, test, classifier
        )
        report["frechet_distance_test_vs_train_floor"] = frechet.mnist_frechet_distance(
            test, train, classifier
        )
        report["frechet_samples"] = int(frechet_samples)
    if auroc_images and not model.num_classes:
        started = time.perf_counter()
        fashion, _ = binarized_test_set("fashion_mnist", "test", TEST_SEED)
        inliers = _log_probs(model, images[:auroc_images], None, auroc_samples)
        outliers = _log_probs(model, fashion[:auroc_images], None, auroc_samples)
        report["outlier_auroc_mnist_vs_fashion_mnist"] = auroc(inliers, outliers)
        report["outlier_mean_log_prob_mnist"] = float(inliers.mean())
        report["outlier_mean_log_prob_fashion_mnist"] = float(outliers.mean())
        report["outlier_images_each"] = int(auroc_images)
        report["outlier_log_prob_samples"] = int(auroc_samples)
        report["outlier_seconds"] = round(time.perf_counter() - started, 1)
    return report
