"""One table from model name to everything train.py, evaluation, export and serving need.

Nothing else in genkeras branches on a model's name: to add a model, write its module under
`genkeras/models/` and add one `ModelSpec` to the table below.

The table names code by `Ref("module:attribute")`, imported when first called, so reading the
table (`genkeras models`, `train.py --help`) does not import Keras or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from genkeras.data import Noise, View


class Ref:
    """A lazy reference to a function or class, `Ref("package.module:name")`.

    Calling it imports the module (once) and calls what it names; `resolve()` returns the
    object itself.

    Example:
    >>> build = Ref("genkeras.models.pca:PCA")
    >>> model = build((28, 28, 1), 16)          # imports genkeras.models.pca, then PCA(...)
    """

    def __init__(self, path: str):
        self.path = path
        self._target = None

    def resolve(self):
        if self._target is None:
            module, _, name = self.path.partition(":")
            self._target = getattr(importlib.import_module(module), name)
        return self._target

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self):
        return f"Ref({self.path!r})"


@dataclasses.dataclass(frozen=True)
class Option:
    """A model-specific hyperparameter, offered as `--NAME` by train.py and passed to `build`
    (`choices`: the valid values, if a fixed list; train.py refuses others)."""

    name: str
    type: type
    default: object
    help: str
    choices: tuple | None = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build, feed, train, evaluate, picture and export one model.

    Attributes:
        name: registry key (`--model NAME`, `savedmodels/NAME/`).
        description: one line for `genkeras models` and error messages.
        build: `build(image_shape, latent_dim, **options) -> keras.Model` (a `Ref` to the class,
            or to a function that picks one by an option: see `spec_of_model`).
        view: how the model sees the data (noise, binarization, labels, targets): a
            `View`, or `view(options) -> View` when it depends on the model's options.
        loss: loss for `compile`; None when the model computes its own (`compute_loss`).
        closed_form: fit with `model.fit_closed_form(batches)` instead of `model.fit`.
        signatures: exported signature names (see `genkeras.signatures.SIGNATURES`).
        default_signature: the signature `serving_default` repeats.
        evaluate: `evaluate(model, test_batches, view) -> dict` of test metrics.
        pictures: `pictures(model, examples, view, out_dir) -> list[Path]` of PNG files.
        options: extra hyperparameters passed to `build`.
        extra_callbacks: `extra_callbacks(options) -> list` of Keras callbacks for `fit`
            (a KL warm-up schedule, say), given the resolved model options.
        check: `check(options, image_shape)` raising ValueError for options (or a data set)
            the model cannot take, called before any work starts; None: no check.
        latent_dim, epochs, batch_size, learning_rate, warmup_steps, ema_momentum: train.py
            defaults (`warmup_steps`: optimizer steps of linear learning-rate warm-up;
            `ema_momentum`: validate and keep an exponential moving average of the weights;
            0 = off for both).
        dataset: default data set.
    """

    name: str
    description: str
    build: Callable
    view: View | Callable[[dict], View] = View()
    loss: str | None = "mse"
    closed_form: bool = False
    signatures: tuple[str, ...] = ("encode", "decode", "reconstruct", "denoise")
    default_signature: str = "reconstruct"
    evaluate: Callable = Ref("genkeras.evaluation.reconstruction:reconstruction_metrics")
    pictures: Callable = Ref("genkeras.pictures.reconstruction:reconstruction_pictures")
    options: tuple[Option, ...] = ()
    extra_callbacks: Callable | None = None
    check: Callable | None = None
    latent_dim: int | None = 16  # None: the model has no code vector (pixel models)
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    ema_momentum: float = 0.0
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


def spec_of_model(model) -> ModelSpec:
    """The first spec that builds `model`'s class (several specs may share one class; a
    builder function names the classes it builds in its `builds` attribute)."""
    for spec in SPECS.values():
        target = spec.build.resolve()
        if type(model) in getattr(target, "builds", (target,)):
            return spec
    raise UnknownModelError(f"No registered model builds a {type(model).__name__}.")


register(
    ModelSpec(
        name="pca",
        description="Principal component analysis, the linear baseline, fit in closed form.",
        build=Ref("genkeras.models.pca:PCA"),
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
        build=Ref("genkeras.models.autoencoders:DenseAutoencoder"),
        epochs=30,
    )
)
register(
    ModelSpec(
        name="conv_ae",
        description="Convolutional autoencoder: pooling in the encoder, upsampling in the decoder.",
        build=Ref("genkeras.models.autoencoders:ConvAutoencoder"),
        epochs=20,
    )
)
register(
    ModelSpec(
        name="denoising_ae",
        description="Convolutional autoencoder trained on noisy inputs with clean targets.",
        build=Ref("genkeras.models.autoencoders:ConvAutoencoder"),
        view=View(noise=Noise("gaussian", 0.5)),
        default_signature="denoise",
        epochs=20,
    )
)


# The VAE family.

VAE_OPTIONS = (
    Option("beta", float, 1.0, "weight of the KL term (1 = ELBO; 0 = no KL: sigma collapses)"),
    Option("kl_warmup_epochs", int, 0, "KL weight ramps linearly from beta/N to beta in N epochs"),
    Option("likelihood", str, "bernoulli", "p(x|z): bernoulli (binarized pixels) or gaussian"),
)
VAE_SIGNATURES = ("encode", "decode", "reconstruct", "sample", "log_prob")


def vae_view(labels=False):
    """Binarized pixels for a Bernoulli decoder, intensities in [0, 1] for a gaussian one.
    Conditional models get `((images, labels), images)` pairs, so that `fit` does not take
    the labels for targets."""
    return lambda options: View(
        binarize=options["likelihood"] == "bernoulli", labels=labels, targets=labels
    )


VAE_COMMON = dict(
    loss=None,
    signatures=VAE_SIGNATURES,
    default_signature="sample",
    evaluate=Ref("genkeras.evaluation.likelihood:vae_metrics"),
    pictures=Ref("genkeras.pictures.vae:vae_pictures"),
    options=VAE_OPTIONS,
    extra_callbacks=Ref("genkeras.models.vae.warmup:kl_warmup_callbacks"),
    epochs=30,
    # Twice Adam's default rate after a short warm-up, weights averaged over about the last 100
    # steps: conv_vae reaches a given loss in less than half the time of Adam 1e-3 alone
    # (docs/benchmarks.md, "Time to quality").
    learning_rate=2e-3,
    warmup_steps=300,
    ema_momentum=0.99,
)
register(
    ModelSpec(
        name="vae",
        description="Variational autoencoder, MLP encoder/decoder (2-D latent for the manifold).",
        build=Ref("genkeras.models.vae.networks:DenseVAE"),
        view=vae_view(),
        latent_dim=2,
        **VAE_COMMON,
    )
)
register(
    ModelSpec(
        name="conv_vae",
        description="Convolutional variational autoencoder, Bernoulli decoder on binarized pixels.",
        build=Ref("genkeras.models.vae.networks:ConvVAE"),
        view=vae_view(),
        latent_dim=32,
        **VAE_COMMON,
    )
)
register(
    ModelSpec(
        name="cvae",
        description="Conditional VAE p(x | y): encoder and decoder see the class label.",
        build=Ref("genkeras.models.vae.networks:ConditionalVAE"),
        view=vae_view(labels=True),
        latent_dim=16,
        **{**VAE_COMMON, "signatures": (*VAE_SIGNATURES, "label_posterior", "classify")},
    )
)


# Autoregressive pixel models: exact likelihood, pixel-by-pixel sampling.
_PIXEL_OPTIONS = (
    Option(
        "likelihood",
        str,
        "bernoulli",
        "bernoulli (binarized pixels) or categorical (256-way per channel; RGB: R, G, B)",
    ),
    Option("num_classes", int, 0, "> 0: class-conditional on the data set's labels"),
    Option("levels", int, 256, "intensities of the categorical likelihood (2..256)"),
    Option("filters", int, 32, "channels per stack"),
    Option("num_layers", int, 7, "gated blocks after the first (mask A) layer"),
    Option("hidden", int, 64, "channels of the 1x1 output head"),
)


def _pixel_view(options):
    """Binarized pixels for a Bernoulli model, intensities for a categorical one. Pixel models
    compute their own loss; conditional ones get `((images, labels), images)` pairs so that
    Keras does not take the labels for targets."""
    conditional = options["num_classes"] > 0
    return View(
        binarize=options["likelihood"] == "bernoulli", labels=conditional, targets=conditional
    )


def _pixel_check(colour, conditional=False):
    """The check of a pixel model: `levels` in range, colour data only where the model orders a
    pixel's channels (`colour`), and at least two labels for a `conditional` one."""

    def check(options, image_shape):
        if conditional and options["num_classes"] < 2:
            raise ValueError(
                f"--num-classes must be >= 2 for a class-conditional model, got "
                f"{options['num_classes']} (use --model pixelcnn for an unconditional one)."
            )
        if not 2 <= options["levels"] <= 256:
            raise ValueError(f"--levels must be in [2, 256], got {options['levels']}.")
        if image_shape[-1] != 1 and not colour:
            raise ValueError(
                f"Images of {image_shape[-1]} channels: this model takes grayscale data "
                "sets only (mnist, fashion_mnist)."
            )

    return check


PIXEL_COMMON = dict(
    view=_pixel_view,
    loss=None,
    signatures=("sample", "log_prob", "complete"),
    default_signature="log_prob",
    evaluate=Ref("genkeras.evaluation.likelihood:likelihood_metrics"),
    pictures=Ref("genkeras.pictures.pixel:pixel_pictures"),
    latent_dim=None,
    epochs=6,
    batch_size=64,
    learning_rate=1e-3,
)
register(
    ModelSpec(
        name="pixelcnn",
        description="Gated PixelCNN: masked vertical + horizontal stacks, exact likelihood.",
        build=Ref("genkeras.models.pixel.pixelcnn:PixelCNN"),
        options=_PIXEL_OPTIONS,
        check=_pixel_check(colour=True),
        **PIXEL_COMMON,
    )
)
register(
    ModelSpec(
        name="cpixelcnn",
        description="Class-conditional Gated PixelCNN p(x | y): exact likelihoods, labels by "
        "Bayes' rule with a reject option.",
        build=Ref("genkeras.models.pixel.conditional:ConditionalPixelCNN"),
        options=tuple(
            dataclasses.replace(option, default=10, help="number of labels (>= 2)")
            if option.name == "num_classes"
            else option
            for option in _PIXEL_OPTIONS
        ),
        check=_pixel_check(colour=True, conditional=True),
        **{
            **PIXEL_COMMON,
            "signatures": (*PIXEL_COMMON["signatures"], "label_posterior", "classify"),
        },
    )
)
register(
    ModelSpec(
        name="pixelrnn",
        description="PixelRNN: Row LSTM or Diagonal BiLSTM (--variant), exact likelihood.",
        build=Ref("genkeras.models.pixel.pixelrnn:build_pixelrnn"),
        options=(
            Option(
                "variant",
                str,
                "row",
                "row: Row LSTM (H steps, triangular receptive field); diagonal: Diagonal "
                "BiLSTM (2N-1 steps, sees every pixel above and to the left)",
                choices=("row", "diagonal"),
            ),
            *_PIXEL_OPTIONS[:3],
            Option("filters", int, 32, "hidden units per LSTM layer (per direction)"),
            Option("num_layers", int, 2, "LSTM layers"),
            Option("hidden", int, 64, "channels of the 1x1 output head"),
        ),
        check=_pixel_check(colour=True),
        **PIXEL_COMMON,
    )
)
