"""The autoencoder family: dense, convolutional and denoising (the conv one fed noisy inputs).

An autoencoder is an encoder to a bottleneck code z and a decoder back to the image, trained
to reproduce its target: x~ = decoder(encoder(x)). Unlike PCA it is nonlinear, so it projects
onto a curved manifold instead of a subspace.
"""

import keras
import numpy as np
from keras import layers


class Autoencoder(keras.Model):
    """Base class: `encoder` and `decoder` submodels, built from the config in `__init__`.

    Subclasses implement `build_encoder` and `build_decoder`. The hyperparameters live in
    `get_config`, so `keras.saving.load_model` rebuilds the same network and reloads its weights.

    Args:
        image_shape: (height, width, channels).
        latent_dim: size of the code vector z.
    """

    def __init__(self, image_shape, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.encoder = self.build_encoder()
        self.decoder = self.build_decoder()
        self.built = True  # the submodels start from keras.Input, so every weight exists already

    def build_encoder(self) -> keras.Model:
        raise NotImplementedError

    def build_decoder(self) -> keras.Model:
        raise NotImplementedError

    def call(self, images, training=False):
        return self.decoder(self.encoder(images, training=training), training=training)

    def encode(self, images):
        """Images [N, H, W, C] in [0, 1] -> codes z [N, latent_dim]."""
        return self.encoder(images, training=False)

    def decode(self, z):
        """Codes z [N, latent_dim] -> images [N, H, W, C] in [0, 1]."""
        return self.decoder(z, training=False)

    def reconstruct(self, images):
        return self.decode(self.encode(images))

    # A plain autoencoder also removes some noise; the denoising one is trained to.
    denoise = reconstruct

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
        }


@keras.saving.register_keras_serializable(package="genkeras")
class DenseAutoencoder(Autoencoder):
    """MLP encoder -> bottleneck -> MLP decoder, sigmoid outputs.

    Args:
        hidden_units: widths of the encoder's hidden layers; the decoder mirrors them.

    Example:
    >>> model = DenseAutoencoder((28, 28, 1), latent_dim=16)
    >>> model(np.zeros((2, 28, 28, 1))).shape
    (2, 28, 28, 1)
    """

    def __init__(self, image_shape, latent_dim, hidden_units=(512, 256), **kwargs):
        self.hidden_units = tuple(hidden_units)
        super().__init__(image_shape, latent_dim, **kwargs)

    def build_encoder(self):
        return keras.Sequential(
            [keras.Input(self.image_shape), layers.Flatten()]
            + [layers.Dense(units, activation="relu") for units in self.hidden_units]
            + [layers.Dense(self.latent_dim, name="z", dtype="float32")],
            name="encoder",
        )

    def build_decoder(self):
        return keras.Sequential(
            [keras.Input((self.latent_dim,))]
            + [layers.Dense(units, activation="relu") for units in reversed(self.hidden_units)]
            + [
                layers.Dense(int(np.prod(self.image_shape)), activation="sigmoid", dtype="float32"),
                layers.Reshape(self.image_shape, dtype="float32"),
            ],
            name="decoder",
        )

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units}


@keras.saving.register_keras_serializable(package="genkeras")
class ConvAutoencoder(Autoencoder):
    """Convolutions with max pooling down to a dense code, upsampling and convolutions back.

    Pooling halves the resolution in the encoder; upsampling doubles it in the decoder, as
    in the lecture. Height and width must be divisible by 2 ** len(filters).

    Args:
        filters: channels of each encoder block; the decoder mirrors them.

    Example:
    >>> model = ConvAutoencoder((28, 28, 1), latent_dim=16, filters=(32, 64))
    >>> model.encode(np.zeros((2, 28, 28, 1))).shape
    (2, 16)
    """

    def __init__(self, image_shape, latent_dim, filters=(32, 64), **kwargs):
        self.filters = tuple(filters)
        height, width, _ = image_shape
        factor = 2 ** len(self.filters)
        if height % factor or width % factor:
            raise ValueError(
                f"ConvAutoencoder needs height and width divisible by {factor} "
                f"(2 ** len(filters)); got {height}x{width}. "
                "Use fewer filters or resize the images."
            )
        self.bottom_shape = (height // factor, width // factor, self.filters[-1])
        super().__init__(image_shape, latent_dim, **kwargs)

    def build_encoder(self):
        blocks = []
        for channels in self.filters:
            blocks += [
                layers.Conv2D(channels, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(2),
            ]
        return keras.Sequential(
            [
                keras.Input(self.image_shape),
                *blocks,
                layers.Flatten(),
                layers.Dense(self.latent_dim, name="z", dtype="float32"),
            ],
            name="encoder",
        )

    def build_decoder(self):
        # Each upsampling is followed by a convolution one encoder block narrower, so the
        # full-resolution convolutions stay cheap (they dominate the cost on a CPU).
        widths = [*reversed(self.filters[:-1]), self.filters[0]]
        blocks = []
        for channels in widths:
            blocks += [
                layers.UpSampling2D(2),
                layers.Conv2D(channels, 3, padding="same", activation="relu"),
            ]
        return keras.Sequential(
            [
                keras.Input((self.latent_dim,)),
                layers.Dense(int(np.prod(self.bottom_shape)), activation="relu"),
                layers.Reshape(self.bottom_shape),
                *blocks,
                layers.Conv2D(
                    self.image_shape[-1], 3, padding="same", activation="sigmoid", dtype="float32"
                ),
            ],
            name="decoder",
        )

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
