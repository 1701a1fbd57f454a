"""The configuration of one training run: every train.py flag is declared once, here.

Each field of `TrainConfig` is a flag. Its `flag(...)` metadata holds the help text, the valid
range and how metrics.json records it; `genkeras.commands.train` builds the parser from these
fields, `check` refuses values out of range, `resolve` fills in the model's own defaults and
`recorded_flags` gives what metrics.json keeps. Adding a flag is adding one field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from genkeras import data
from genkeras.registry import ModelSpec, get_spec

STRATEGIES = ("none", "mirrored", "multi-worker")
JIT_COMPILE = {"auto": "auto", "on": True, "off": False}  # --jit-compile -> Model.compile


class ConfigError(ValueError):
    """A flag value that cannot make a sound run; the message names the flag and its range."""


# Valid ranges: each returns the range in words, or None when the value is inside it.
def at_least(low: float) -> Callable:
    return lambda value: None if value >= low else f">= {low}"


def between(low: float, high: float) -> Callable:
    return lambda value: None if low <= value <= high else f"in [{low}, {high}]"


def positive_finite(value) -> str | None:
    return None if math.isfinite(value) and value > 0 else "a finite number > 0"


def fraction_below_one(value) -> str | None:
    return None if 0 <= value < 1 else "in [0, 1)"


def existing_keras_file(value) -> str | None:
    return (
        None
        if str(value).endswith(".keras") and Path(value).is_file()
        else "an existing .keras file (runs/NAME/NAME.keras, genkeras/pretrained/NAME.keras)"
    )


def flag(
    default=None,
    help: str = "",  # noqa: A002 - argparse's word
    *,
    check: Callable | None = None,
    choices=None,
    metavar: str | None = None,
    group: str = "run",
    record: bool | str = True,
    from_spec: bool = False,
    cli: bool = True,
):
    """A `TrainConfig` field that is also a train.py flag.

    Args:
        default: the value when the flag is absent (None with `from_spec`: the model's own).
        help: the flag's help text.
        check: a valid-range function (see `at_least`); applied to values that are not None.
        choices: the allowed values, if a fixed list.
        metavar: the flag's placeholder in `--help`.
        group: "run" or "speed" (the help's sections).
        record: keep it in metrics.json's hyperparameters (a string: under that key).
        from_spec: None means the `ModelSpec` attribute of the same name.
        cli: False for fields only code sets (the parsed model options).
    """
    metadata = dict(
        help=help,
        check=check,
        choices=choices,
        metavar=metavar,
        group=group,
        record=record,
        from_spec=from_spec,
        cli=cli,
    )
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Everything one run needs. None means "the model's default" (see its `ModelSpec`)."""

    model: str = flag(help="the model to train (genkeras models lists them)", record=False)
    dataset: str | None = flag(help="a data set name (default: the model's)", record=False)
    epochs: int | None = flag(
        help="passes over the training split", check=at_least(1), from_spec=True
    )  # noqa: E501
    batch_size: int | None = flag(help="examples per step", check=between(1, 65536), from_spec=True)  # noqa: E501
    latent_dim: int | None = flag(help="size of the code z", check=between(1, 4096), from_spec=True)  # noqa: E501
    learning_rate: float | None = flag(
        help="Adam's learning rate", check=positive_finite, from_spec=True
    )  # noqa: E501
    warmup_steps: int | None = flag(
        help="ramp the learning rate up over N steps (0 = off)", check=at_least(0), from_spec=True
    )
    ema_momentum: float | None = flag(
        help="validate and keep a moving average of the weights, e.g. 0.99 (0 = off)",
        check=fraction_below_one,
        from_spec=True,
    )
    noise: str | None = flag(
        help="corrupt inputs: gaussian:SIGMA, salt_pepper:P, mask:P or none", record=False
    )
    seed: int = flag(0, "seeds weights, shuffling and noise", check=between(0, 2**31 - 1))
    output_dir: str = flag("runs", "runs/NAME/ gets logs, .keras, PNGs", record=False)
    export_dir: str | None = flag("savedmodels", "SavedModel base folder", record=False)
    version: int | None = flag(
        help="export version (default: next free integer)", check=at_least(0), record=False
    )
    manual_dir: str | None = flag(
        help=f"folder with one subfolder of TFDS archives per data set (or ${data.MANUAL_DIR_ENV})",
        record=False,
    )
    data_dir: str | None = flag(help=f"TFDS data folder (or ${data.DATA_DIR_ENV})", record=False)
    limit: int | None = flag(help="use only the first N examples of each split", check=at_least(1))
    patience: int = flag(5, "early-stopping patience, epochs", check=at_least(0), record=False)
    initial_weights: str | None = flag(
        help="start from the weights of this .keras file (the same --model and options, e.g. "
        "genkeras/pretrained/NAME.keras to train a shipped model further), not random ones",
        check=existing_keras_file,
        metavar="KERAS_FILE",
    )
    time_budget: float = flag(
        0.0,
        "stop training after MINUTES, cosine-annealing the learning rate to 5%% (0 = off)",
        check=lambda value: None if math.isfinite(value) and value >= 0 else ">= 0",
        metavar="MINUTES",
        record="time_budget_minutes",
    )
    jit_compile: str = flag(
        "auto",
        "XLA for the training step: auto = on with a GPU, off on CPU-only machines",
        choices=tuple(JIT_COMPILE),
        group="speed",
    )
    mixed_precision: bool = flag(
        False,
        "float16 compute on GPUs (bfloat16 on CPUs); outputs and losses stay float32",
        group="speed",
        record=False,  # metrics.json records the policy the run used instead
    )
    steps_per_execution: int = flag(
        8,
        "training steps per compiled call (fewer Python round trips; 1 = one at a time)",
        check=between(1, 10_000),
        group="speed",
        record=False,  # metrics.json records the value the run used instead
    )
    strategy: str = flag(
        "none",
        "mirrored: all local GPUs (or logical CPUs); multi-worker: the cluster in TF_CONFIG",
        choices=STRATEGIES,
        group="speed",
    )
    verbose: int | str = flag("auto", record=False, cli=False)
    options: dict = dataclasses.field(default_factory=dict)


def flags() -> list[dataclasses.Field]:
    """The fields of `TrainConfig` that are train.py flags, in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli")]


def check(config: TrainConfig) -> None:
    """Raises `ConfigError` for the first flag whose value is out of its range."""
    for field in dataclasses.fields(TrainConfig):
        value, valid = getattr(config, field.name), field.metadata.get("check")
        if value is None or valid is None:
            continue
        wanted = valid(value)
        if wanted is not None:
            name = "--" + field.name.replace("_", "-")
            raise ConfigError(f"{name} must be {wanted}, got {value}.")


def recorded_flags(config: TrainConfig) -> dict:
    """The flags metrics.json keeps, by their recorded names."""
    recorded = {}
    for field in dataclasses.fields(TrainConfig):
        record = field.metadata.get("record")
        if record:
            recorded[record if isinstance(record, str) else field.name] = getattr(
                config, field.name
            )
    return recorded


@dataclasses.dataclass(frozen=True)
class Run:
    """A resolved run: the config with every default filled in, and what it resolves to.

    Attributes:
        config: the `TrainConfig`, no field left None that has a model default.
        spec: the model's `ModelSpec`.
        info: the data set's `genkeras.data.DatasetInfo`.
        view: how the model sees the data (noise, binarization, labels).
        options: the model's own hyperparameters, defaults filled in.
    """

    config: TrainConfig
    spec: ModelSpec
    info: data.DatasetInfo
    view: data.View
    options: dict


def resolve(config: TrainConfig) -> Run:
    """Checks `config`, fills in the model's defaults (in place) and returns the `Run`.

    Raises:
        ConfigError: a flag out of range or an option the model does not have.
        genkeras.registry.UnknownModelError, genkeras.data.DataError: unknown names.
    """
    check(config)
    spec = get_spec(config.model)
    info = data.dataset_info(config.dataset or spec.dataset)
    for field in dataclasses.fields(TrainConfig):
        if field.metadata.get("from_spec") and getattr(config, field.name) is None:
            setattr(config, field.name, getattr(spec, field.name))
    config.dataset = info.name
    options = {option.name: option.default for option in spec.options}
    unknown = set(config.options) - set(options)
    if unknown:
        raise ConfigError(
            f"Model '{spec.name}' has no option(s) {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(options) or 'none'}."
        )
    options.update(config.options)
    for option in spec.options:
        if option.choices and options[option.name] not in option.choices:
            raise ConfigError(
                f"--{option.name.replace('_', '-')} must be one of "
                f"{', '.join(map(str, option.choices))}, got {options[option.name]!r}."
            )
    if spec.check is not None:
        try:
            spec.check(options, info.image_shape)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    view = spec.view(options) if callable(spec.view) else spec.view
    if config.noise is not None:
        view = dataclasses.replace(view, noise=data.Noise.parse(config.noise))
    return Run(config, spec, info, view, options)
