"""Pretrained MNIST models shipped inside the package, for use from other projects.

    >>> import genkeras.pretrained
    >>> genkeras.pretrained.available()
    ['conv_ae', 'conv_vae', 'cpixelcnn', 'cvae', 'denoising_ae', 'dense_ae', 'pca', 'pixelcnn',
     'pixelrnn', 'vae']
    >>> vae = genkeras.pretrained.load("conv_vae")   # a ready keras.Model (not compiled)
    >>> z_mean, z_log_var = vae.encoder([images])      # images: float32 [N, 28, 28, 1] in [0, 1]
    >>> pictures = vae.decode(z_mean)                  # the same digits back, in [0, 1]

The files live in `genkeras/pretrained/NAME.keras` (weights only, no optimizer state), so
`keras.saving.load_model(genkeras.pretrained.path("conv_vae"))` works too once `genkeras` is
imported (the import registers the model classes).

Fine-tuning: the models load uncompiled; compile, then fit.

* VAEs (`vae`, `conv_vae`, `cvae`) compute their own loss (the negative ELBO):
  `model.compile(optimizer=keras.optimizers.Adam(1e-4))` then `model.fit(images)` (the cvae:
  `model.fit((images, labels))`, or a tf.data set of `((images, labels),)` batches).
* Autoencoders (`dense_ae`, `conv_ae`, `denoising_ae`): `model.compile(optimizer="adam",
  loss="binary_crossentropy")` then `model.fit(images, images)`.
* `pca` is fitted in closed form (`model.fit_closed_form(batches)`), not by gradient descent.
* `pixelcnn` and `pixelrnn` have no latent space (no encoder/decoder): `log_prob`, `sample`,
  `complete`; `cpixelcnn` takes `labels` in those and adds `label_posterior` (labels by
  Bayes' rule).

Every autoencoder and VAE exposes its `encoder` and `decoder` as functional Keras models, which
embed in a new model like any layer (`keras.Model(inputs, head(vae.encoder([inputs])[0]))`).
A VAE's encoder and decoder take a list (`[images]`, `[z]`; the cvae adds one-hot labels) and
its decoder returns logits (`model.decode(z)` applies the sigmoid); an autoencoder's take the
tensor itself and its decoder returns pixels in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent  # the .keras files sit beside this loader


def available() -> list[str]:
    """Names of the shipped pretrained models, sorted."""
    return sorted(p.stem for p in FOLDER.glob("*.keras"))


def path(name: str) -> Path:
    """The shipped `.keras` file of `name`; ValueError listing the available ones if unknown."""
    names = available()
    if name not in names:
        raise ValueError(
            f"No pretrained model named {name!r}. Available: {', '.join(names) or '(none)'}."
        )
    return FOLDER / f"{name}.keras"


def load(name: str, compile: bool = False):  # noqa: A002 - keras' own argument name
    """Load the shipped model `name` as a Keras model (uncompiled unless `compile=True`).

    Args:
        name: one of `available()`.
        compile: passed to `keras.saving.load_model`; the shipped files carry no optimizer,
            so compile yourself before `fit` (see the module docstring).
    """
    import keras

    import genkeras  # noqa: F401 - registers the model classes with Keras serialization

    return keras.saving.load_model(path(name), compile=compile)
