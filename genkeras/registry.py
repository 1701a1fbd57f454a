"""One table from model name to everything train.py, evaluation, export and serving need.

Nothing else in genkeras branches on a model's name: to add a model, write its module under
`genkeras/models/` and add one `ModelSpec` to `SPECS` below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from genkeras import evaluation, pictures
from genkeras.data import Noise, View
from genkeras.models.autoencoders import ConvAutoencoder, DenseAutoencoder
from genkeras.models.pca import PCA


@dataclasses.dataclass(frozen=True)
class Option:
    """A model-specific hyperparameter, offered as `--NAME` by train.py and passed to `build`."""

    name: str
    type: type
    default: object
    help: str


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build, feed, train, evaluate, picture and export one model.

    Attributes:
        name: registry key (`--model NAME`, `savedmodels/NAME/`).
        description: one line for `genkeras models` and error messages.
        build: `build(image_shape, latent_dim, **options) -> keras.Model`.
        view: how the model sees the data (noise, binarization, labels, targets).
        loss: loss for `compile`; None when the model's own `train_step` computes it.
        closed_form: fit with `model.fit_closed_form(batches)` instead of `model.fit`.
        signatures: exported signature names (see `genkeras.export.SIGNATURES`).
        default_signature: the signature `serving_default` repeats.
        evaluate: `evaluate(model, test_batches, view) -> dict` of test metrics.
        pictures: `pictures(model, examples, view, out_dir) -> list[Path]` of PNG files.
        options: extra hyperparameters passed to `build`.
        extra_callbacks: `extra_callbacks(options) -> list` of Keras callbacks for `fit`
            (a KL warm-up schedule, say), given the resolved model options.
        latent_dim, epochs, batch_size, learning_rate: train.py defaults.
        dataset: default data set.
    """

    name: str
    description: str
    build: Callable
    view: View = View()
    loss: str | None = "mse"
    closed_form: bool = False
    signatures: tuple[str, ...] = ("encode", "decode", "reconstruct", "denoise")
    default_signature: str = "reconstruct"
    evaluate: Callable = evaluation.reconstruction_metrics
    pictures: Callable = pictures.reconstruction_pictures
    options: tuple[Option, ...] = ()
    extra_callbacks: Callable | None = None
    latent_dim: int = 16
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    dataset: str = "mnist"


SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Adds `spec` to the registry; a name can be registered once."""
    if spec.name in SPECS:
        raise ValueError(f"Model '{spec.name}' is already registered.")
    SPECS[spec.name] = spec
    return spec


class UnknownModelError(ValueError):
    """A model name that is not in the registry; the message lists the valid ones."""


def get_spec(name: str) -> ModelSpec:
    """Returns the spec registered as `name`, or raises `UnknownModelError` listing valid names."""
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownModelError(
            f"Unknown model '{name}'. Valid models: {', '.join(available_models())}."
        ) from None


def available_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(SPECS)


register(
    ModelSpec(
        name="pca",
        description="Principal component analysis, the linear baseline, fit in closed form.",
        build=PCA,
        closed_form=True,
        loss=None,
        epochs=1,
        batch_size=1000,
    )
)
register(
    ModelSpec(
        name="dense_ae",
        description="Dense autoencoder: MLP encoder, bottleneck, MLP decoder.",
        build=DenseAutoencoder,
        epochs=30,
    )
)
register(
    ModelSpec(
        name="conv_ae",
        description="Convolutional autoencoder: pooling in the encoder, upsampling in the decoder.",
        build=ConvAutoencoder,
        epochs=20,
    )
)
register(
    ModelSpec(
        name="denoising_ae",
        description="Convolutional autoencoder trained on noisy inputs with clean targets.",
        build=ConvAutoencoder,
        view=View(noise=Noise("gaussian", 0.5)),
        default_signature="denoise",
        epochs=20,
    )
)
