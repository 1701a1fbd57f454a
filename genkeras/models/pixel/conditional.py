"""A class-conditional Gated PixelCNN: exact log p(x | y), and labels by Bayes' rule.

The network is `PixelCNN` with `num_classes` > 0 (a per-layer projection of the one-hot label
added to both stacks' gates, as in van den Oord et al. 2016). Its exact log p(x | y) for every
class gives p(y | x) and log p(x) without importance sampling: `genkeras.models.bayes`.
"""

from __future__ import annotations

import keras

from genkeras.models.bayes import BayesClassifier
from genkeras.models.pixel.pixelcnn import PixelCNN


@keras.saving.register_keras_serializable(package="genkeras")
class ConditionalPixelCNN(BayesClassifier, PixelCNN):
    """Gated PixelCNN of p(x | y) that labels images and flags outliers (`label_posterior`).

    Inputs are `(images, labels)`; `log_prob`, `sample` and `complete` take `labels`.

    Args:
        image_shape: (height, width, 1), or (height, width, 3) for R, G, B.
        latent_dim: ignored (no latent); accepted for the registry.
        num_classes: number of labels (10 for MNIST), at least 2.
        label_prior: p(y), uniform by default; set by calibration.
        outlier_threshold: log p(x) below which an image is an outlier; set by calibration.
        **kwargs: the `PixelCNN` arguments (`filters`, `num_layers`, `hidden`, ...).

    Example:
    >>> model = ConditionalPixelCNN((4, 4, 1), num_classes=3, filters=8, num_layers=2)
    >>> model.label_posterior(np.zeros((2, 4, 4, 1), "float32"))["probabilities"].shape
    TensorShape([2, 3])
    """

    def __init__(
        self,
        image_shape,
        latent_dim=None,
        num_classes=10,
        label_prior=None,
        outlier_threshold=None,
        **kwargs,
    ):
        if int(num_classes or 0) < 2:
            raise ValueError(
                f"A class-conditional model needs num_classes >= 2, got {num_classes}; "
                "for an unconditional model use PixelCNN."
            )
        super().__init__(image_shape, latent_dim, num_classes=num_classes, **kwargs)
        self.init_bayes(label_prior, outlier_threshold)

    def get_config(self):
        return {**super().get_config(), **self.bayes_config()}
