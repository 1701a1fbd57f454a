"""The three VAE networks: dense (Kingma & Welling), convolutional, and conditional p(x | y).

Each subclass only builds its encoder body and decoder body; `genkeras.models.vae.base.VAE`
adds the Gaussian heads, the label conditioning, the ELBO and sampling.
"""

import keras
import numpy as np
from keras import layers

from genkeras.models.bayes import BayesClassifier
from genkeras.models.vae.base import VAE


@keras.saving.register_keras_serializable(package="genkeras")
class DenseVAE(VAE):
    """MLP encoder and decoder (the VAE of Kingma & Welling and of the lecture).

    Args:
        hidden_units: widths of the encoder's hidden layers; the decoder mirrors them.

    Example:
    >>> model = DenseVAE((28, 28, 1), latent_dim=2)
    >>> sorted(model.encode(np.zeros((3, 28, 28, 1), "float32")))
    ['z', 'z_log_var', 'z_mean']
    """

    def __init__(self, image_shape, latent_dim, hidden_units=(512, 256), **kwargs):
        self.hidden_units = tuple(hidden_units)
        super().__init__(image_shape, latent_dim, **kwargs)

    def encoder_body(self, images):
        x = layers.Flatten()(images)
        for units in self.hidden_units:
            x = layers.Dense(units, activation="relu")(x)
        return x

    def decoder_body(self, vector):
        x = vector
        for units in reversed(self.hidden_units):
            x = layers.Dense(units, activation="relu")(x)
        x = layers.Dense(int(np.prod(self.image_shape)), name="logits", dtype="float32")(x)
        return layers.Reshape(self.image_shape, dtype="float32")(x)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units}


@keras.saving.register_keras_serializable(package="genkeras")
class ConvVAE(VAE):
    """Strided convolutions down to the Gaussian heads, transposed convolutions back up.

    Height and width must be divisible by 2 ** len(filters).

    Args:
        filters: channels of each stride-2 encoder block; the decoder mirrors them.
        dense_units: width of the dense layer between the convolutions and z (0 = none).

    Example:
    >>> model = ConvVAE((28, 28, 1), latent_dim=32)
    >>> model.sample(2, seed=0).shape
    TensorShape([2, 28, 28, 1])
    """

    def __init__(self, image_shape, latent_dim, filters=(32, 64), dense_units=512, **kwargs):
        self.filters = tuple(filters)
        self.dense_units = int(dense_units)
        height, width, _ = image_shape
        factor = 2 ** len(self.filters)
        if height % factor or width % factor:
            raise ValueError(
                f"ConvVAE needs height and width divisible by {factor} (2 ** len(filters)); "
                f"got {height}x{width}. Use fewer filters or resize the images."
            )
        self.bottom_shape = (height // factor, width // factor, self.filters[-1])
        super().__init__(image_shape, latent_dim, **kwargs)

    def encoder_body(self, images):
        x = images
        for channels in self.filters:
            x = layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Flatten()(x)
        if self.dense_units:
            x = layers.Dense(self.dense_units, activation="relu")(x)
        return x

    def decoder_body(self, vector):
        x = vector
        if self.dense_units:
            x = layers.Dense(self.dense_units, activation="relu")(x)
        x = layers.Dense(int(np.prod(self.bottom_shape)), activation="relu")(x)
        x = layers.Reshape(self.bottom_shape)(x)
        # Mirror the encoder, one block narrower each time, so the full-resolution layer is cheap.
        widths = [*reversed(self.filters[:-1]), max(self.filters[0] // 2, 8)]
        for channels in widths:
            x = layers.Conv2DTranspose(channels, 3, strides=2, padding="same", activation="relu")(x)
        return layers.Conv2D(
            self.image_shape[-1], 3, padding="same", name="logits", dtype="float32"
        )(x)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "dense_units": self.dense_units}


@keras.saving.register_keras_serializable(package="genkeras")
class ConditionalVAE(BayesClassifier, DenseVAE):
    """A dense VAE conditioned on the class label: q(z | x, y) and p(x | z, y).

    z then holds the style (slant, thickness) and y the class, so one z decoded with each
    label draws the same style of every digit. Inputs are `(images, labels)`. As a model of
    p(x | y) it also labels images by Bayes' rule and flags outliers (`label_posterior`, see
    `genkeras.models.bayes`).

    Args:
        num_classes: number of labels (10 for MNIST).
        label_prior: p(y), uniform by default; set by calibration.
        outlier_threshold: log p(x) below which an image is an outlier; set by calibration.

    Example:
    >>> model = ConditionalVAE((28, 28, 1), latent_dim=8)
    >>> model.sample(3, seed=0, labels=np.array([1, 2, 3])).shape
    TensorShape([3, 28, 28, 1])
    >>> model.label_posterior(np.zeros((2, 28, 28, 1), "float32"))["probabilities"].shape
    TensorShape([2, 10])
    """

    def __init__(
        self,
        image_shape,
        latent_dim,
        num_classes=10,
        label_prior=None,
        outlier_threshold=None,
        **kwargs,
    ):
        super().__init__(image_shape, latent_dim, num_classes=num_classes, **kwargs)
        self.init_bayes(label_prior, outlier_threshold)

    def get_config(self):
        return {**super().get_config(), **self.bayes_config()}
