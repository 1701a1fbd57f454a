"""The Bayes classifier's picture: accuracy against coverage, and how p(x) and a
discriminative classifier's confidence separate digits from clothes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genkeras.pictures.grid import plt, save_figure


def bayes_classifier_figure(report: dict, path) -> Path:
    """Three panels from `genkeras.evaluation.bayes.evaluate`'s report.

    Args:
        report: the evaluation's dict (its `curves`, thresholds and figures).
        path: the PNG file to write.

    Returns:
        The path written.
    """
    curves = report["curves"]
    figure, (coverage, likelihood, confidence) = plt.subplots(1, 3, figsize=(15, 4.2))
    coverage.plot(100 * curves["coverage"], 100 * curves["accuracy_at_coverage"])
    coverage.set_xlabel("coverage: most confident share of MNIST test digits (%)")
    coverage.set_ylabel("accuracy on them (%)")
    name = report.get("model", "")
    coverage.set_title(f"{name} Bayes rule, p(y | x): accuracy {100 * report['accuracy']:.2f}%")
    coverage.grid(alpha=0.3)

    both = np.concatenate([curves["log_prob_mnist"], curves["log_prob_fashion"]])
    bins = np.linspace(np.percentile(both, 2), both.max(), 80)  # the far tail left out
    likelihood.hist(curves["log_prob_mnist"], bins, alpha=0.6, density=True, label="MNIST test")
    likelihood.hist(curves["log_prob_fashion"], bins, alpha=0.6, density=True, label="Fashion test")
    likelihood.axvline(report["outlier_threshold_nats"], color="k", ls="--", label="threshold")
    likelihood.set_xlabel("log p(x), nats (generative model)")
    likelihood.set_title(
        f"outliers flagged: {100 * report['fashion_flagged_as_outliers']:.1f}% of Fashion"
    )
    likelihood.legend()

    bins = np.linspace(0, 1, 51)
    confidence.hist(curves["confidence_mnist"], bins, alpha=0.6, density=True, label="MNIST test")
    confidence.hist(curves["confidence_fashion"], bins, alpha=0.6, density=True, label="Fashion")
    threshold = report["discriminative"]["confidence_threshold"]
    confidence.axvline(threshold, color="k", ls="--", label="threshold")
    confidence.set_xlabel("max softmax (discriminative classifier)")
    confidence.set_yscale("log")
    rejected = 100 * report["discriminative"]["fashion_rejected"]
    confidence.set_title(f"same rule on confidence: rejects {rejected:.1f}% of Fashion")
    confidence.legend()
    return save_figure(figure, path)
