"""Outlier detection by likelihood: how well log p(x) separates in-distribution images from
others (MNIST test digits against Fashion-MNIST, say)."""

from __future__ import annotations

import numpy as np


def auroc(inlier_scores, outlier_scores) -> float:
    """Area under the ROC curve of a score meant to be higher for inliers.

    It is P(score of an inlier > score of an outlier), ties counted half: the Mann-Whitney U
    statistic divided by the number of pairs. 1 separates perfectly, 0.5 is chance.

    Args:
        inlier_scores: [N] scores (log p(x), say) of in-distribution examples.
        outlier_scores: [M] scores of out-of-distribution examples.

    Returns:
        The AUROC as a float in [0, 1].

    Example:
    >>> auroc([3.0, 2.0], [1.0, 2.0])
    0.875
    """
    inliers = np.asarray(inlier_scores, np.float64)
    outliers = np.asarray(outlier_scores, np.float64)
    scores = np.concatenate([inliers, outliers])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean
    u = ranks[: len(inliers)].sum() - len(inliers) * (len(inliers) + 1) / 2
    return float(u / (len(inliers) * len(outliers)))
