"""Labels by Bayes' rule from a class-conditional generative model, with a reject option.

A model of p(x | y) classifies without ever being trained to: with the prior p(y),

    p(y | x) = p(x | y) p(y) / sum_y' p(x | y') p(y'),   p(x) = sum_y p(x | y) p(y),

and p(x) itself says when an image is like none of the classes (an outlier), which a
discriminative classifier cannot: it must give a label distribution for every image.

`BayesClassifier` adds this to any conditional model whose `log_prob(images, labels)` gives
log p(x | y) (a tensor, or a dict with `log_prob`). The prior and the outlier threshold are set
by calibration (`genkeras.evaluation.bayes.calibrate`: the training labels' frequencies and the
validation images' log p(x)) and saved in the model's config.
"""

from __future__ import annotations

import math

from keras import ops


class BayesClassifier:
    """Mixin: `class_log_likelihoods`, `label_posterior` and their calibration.

    Attributes:
        label_prior: p(y) for y = 0..num_classes-1 (uniform until calibrated).
        outlier_threshold: log p(x) in nats below which an image is an outlier (None: none
            is, until calibrated).
    """

    def init_bayes(self, label_prior=None, outlier_threshold=None):
        """Sets the prior and threshold; call from the model's `__init__`."""
        count = self.num_classes
        prior = [1.0 / count] * count if label_prior is None else [float(p) for p in label_prior]
        if len(prior) != count or min(prior) <= 0 or abs(sum(prior) - 1) > 1e-3:
            raise ValueError(
                f"label_prior must hold {count} positive probabilities summing to 1, got {prior}."
            )
        self.label_prior = tuple(prior)
        self.outlier_threshold = None if outlier_threshold is None else float(outlier_threshold)

    def bayes_config(self) -> dict:
        return {"label_prior": list(self.label_prior), "outlier_threshold": self.outlier_threshold}

    def class_log_likelihoods(self, images, num_samples=None, seed=0):
        """log p(x | y) of every image for every class y: [N, num_classes], in nats.

        Args:
            images: [N, H, W, C] in [0, 1] (binarized for a Bernoulli model).
            num_samples: importance samples per class (VAEs; default the model's own).
            seed: keys the importance samples.
        """
        images = ops.convert_to_tensor(images, "float32")
        count, n = self.num_classes, ops.shape(images)[0]
        tiled = ops.tile(images, (count, 1, 1, 1))  # class-major: all images with label 0, ...
        labels = ops.repeat(ops.arange(count, dtype="int32"), n)
        log_p = self._log_prob_for_bayes(tiled, labels, num_samples, seed)
        return ops.transpose(ops.reshape(log_p, (count, n)))

    def _log_prob_for_bayes(self, images, labels, num_samples, seed):
        if hasattr(self, "log_prob_samples"):  # importance weighted (VAEs)
            log_p = self.log_prob(images, labels, num_samples=num_samples, seed=seed)
        else:  # exact (pixel models)
            log_p = self.log_prob(images, labels)
        return log_p["log_prob"] if isinstance(log_p, dict) else log_p

    def label_posterior(self, images, num_samples=None, seed=0):
        """p(y | x), the most probable label, log p(x) and the outlier verdict.

        Returns:
            dict: `probabilities` [N, num_classes], `label` int32 [N], `log_prob` [N] (log p(x),
            nats) and `outlier` bool [N] (log p(x) below `outlier_threshold`).
        """
        log_joint = self.class_log_likelihoods(images, num_samples, seed) + ops.log(
            ops.convert_to_tensor(self.label_prior, "float32")
        )
        log_px = ops.logsumexp(log_joint, axis=1)
        threshold = -math.inf if self.outlier_threshold is None else self.outlier_threshold
        return {
            "probabilities": ops.softmax(log_joint, axis=1),  # sums to 1 in float32 too
            "label": ops.cast(ops.argmax(log_joint, axis=1), "int32"),
            "log_prob": log_px,
            "outlier": log_px < threshold,
        }
