"""The one training pipeline: data -> fit -> metrics -> pictures -> SavedModel.

`train.py` and `genkeras train` parse arguments into a `TrainConfig` and call `train`. Every
model goes the same way; what differs per model lives in its `ModelSpec`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import keras

from genkeras import data
from genkeras.export import export_model
from genkeras.registry import UnknownModelError, available_models, get_spec


@dataclasses.dataclass
class TrainConfig:
    """Everything one run needs. None means "the model's default" (see its `ModelSpec`)."""

    model: str
    dataset: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    latent_dim: int | None = None
    learning_rate: float | None = None
    noise: str | None = None
    seed: int = 0
    output_dir: str = "runs"
    export_dir: str | None = "savedmodels"
    version: int | None = None
    manual_dir: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    patience: int = 5
    verbose: int | str = "auto"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    metrics: dict
    run_dir: Path
    export_path: Path | None
    pictures: list


def resolve(config: TrainConfig):
    """Fills the model's defaults into `config`; returns `(spec, dataset info, view, options)`."""
    spec = get_spec(config.model)
    info = data.dataset_info(config.dataset or spec.dataset)
    for field in ("epochs", "batch_size", "latent_dim", "learning_rate"):
        if getattr(config, field) is None:
            setattr(config, field, getattr(spec, field))
    config.dataset = info.name
    options = {option.name: option.default for option in spec.options}
    unknown = set(config.options) - set(options)
    if unknown:
        raise ValueError(
            f"Model '{spec.name}' has no option(s) {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(options) or 'none'}."
        )
    options.update(config.options)
    view = spec.view(options) if callable(spec.view) else spec.view
    if config.noise is not None:
        view = dataclasses.replace(view, noise=data.Noise.parse(config.noise))
    return spec, info, view, options


def batches(config, view, split, *, shuffle):
    ds = data.load_split(
        config.dataset,
        split,
        manual_dir=config.manual_dir,
        data_dir=config.data_dir,
        limit=config.limit,
    )
    return data.pipeline(ds, view, batch_size=config.batch_size, shuffle=shuffle, seed=config.seed)


def example_inputs(config, view):
    """Two training inputs, shaped as the model receives them (images, or images and labels)."""
    ds = data.load_split(
        config.dataset, "train", manual_dir=config.manual_dir, data_dir=config.data_dir, limit=2
    )
    first = next(iter(data.pipeline(ds, view, batch_size=2, shuffle=False, cache=False)))
    return first[0] if view.targets else first


class EpochSeconds(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs, so the CSV log keeps the wall time of every
    epoch, including those a killed run finished before it was resumed."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started


def logged_epochs(run_dir: Path) -> tuple[int, float]:
    """(epochs, training seconds) recorded in `training_log.csv`, across resumed runs."""
    with open(run_dir / "training_log.csv") as log:
        rows = list(csv.DictReader(log))
    return len(rows), sum(float(row.get("epoch_seconds") or 0) for row in rows)


def callbacks(config, run_dir: Path, resuming: bool, extra=()):
    """Backup first, so a run killed right after an epoch's log line resumes after that epoch;
    EpochSeconds before CSVLogger, which writes the logs it has added to."""
    return [
        *extra,
        EpochSeconds(),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5),
        keras.callbacks.CSVLogger(str(run_dir / "training_log.csv"), append=resuming),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), profile_batch=0),
    ]


def train(config: TrainConfig) -> TrainResult:
    """Trains, evaluates, pictures and exports one model.

    Writes into `output_dir/NAME/`: `NAME.keras`, `metrics.json`, `training_log.csv`,
    TensorBoard `logs/` and PNG pictures; and a SavedModel under `export_dir/NAME/VERSION/`
    unless `export_dir` is None. A run killed mid-way resumes from `backup/` when started again
    with the same output folder.
    """
    spec, info, view, options = resolve(config)
    keras.utils.set_random_seed(config.seed)
    run_dir = Path(config.output_dir) / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = (run_dir / "backup").exists()

    train_batches = batches(config, view, "train", shuffle=True)
    model = spec.build(info.image_shape, config.latent_dim, **options)
    model(example_inputs(config, view))  # builds the weights, whatever the model's inputs are
    if spec.closed_form:
        started = time.perf_counter()
        fit_summary = model.fit_closed_form(train_batches, progress=config.verbose != 0)
        epochs_run, epochs_total, training_seconds = 1, 1, time.perf_counter() - started
    else:
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=spec.loss)
        history = model.fit(
            train_batches,
            validation_data=batches(config, view, "validation", shuffle=False),
            epochs=config.epochs,
            callbacks=callbacks(
                config,
                run_dir,
                resuming,
                spec.extra_callbacks(options) if spec.extra_callbacks else (),
            ),
            verbose=config.verbose,
        )
        fit_summary = {key: float(values[-1]) for key, values in history.history.items()}
        epochs_run = len(history.epoch)  # this process only; a resumed run did the rest before
        epochs_total, training_seconds = logged_epochs(run_dir)

    model.save(run_dir / f"{spec.name}.keras")
    metrics = spec.evaluate(model, batches(config, view, "test", shuffle=False), view)
    hyperparameters = {
        "latent_dim": config.latent_dim,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "noise": str(view.noise) if view.noise else None,
        "binarize": view.binarize,
        "seed": config.seed,
        "limit": config.limit,
        **options,
    }
    report = {
        "model": spec.name,
        "dataset": config.dataset,
        "metrics": metrics,
        "hyperparameters": hyperparameters,
        "training_seconds": round(training_seconds, 1),
        "epochs_run": epochs_run,
        "epochs_total": epochs_total,
        "final_logs": fit_summary,
    }
    (run_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")

    examples = data.take_examples(
        config.dataset, "test", count=64, manual_dir=config.manual_dir, data_dir=config.data_dir
    )
    picture_paths = spec.pictures(model, examples, view, run_dir)

    export_path = None
    if config.export_dir is not None:
        export_path = export_model(model, spec, config.export_dir, config.version, card=report)
    return TrainResult(model, metrics, run_dir, export_path, picture_paths)


# ---------------------------------------------------------------------------------------------
# Command line (train.py and `genkeras train`).


def build_parser(spec=None, add_help=True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a genkeras model, write its pictures and metrics, export a SavedModel.",
        add_help=add_help,
    )
    parser.add_argument(
        "--model", required=add_help, help=f"one of: {', '.join(available_models())}"
    )
    parser.add_argument(
        "--dataset", help=f"one of: {', '.join(data.DATASETS)} (default: the model's)"
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--latent-dim", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument(
        "--noise", help="corrupt inputs: gaussian:SIGMA, salt_pepper:P, mask:P or none"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs", help="runs/NAME/ gets logs, .keras, PNGs")
    parser.add_argument("--export-dir", default="savedmodels", help="SavedModel base folder")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--version", type=int, help="export version (default: next free integer)")
    parser.add_argument(
        "--manual-dir",
        help=f"folder with one subfolder of TFDS archives per data set (or ${data.MANUAL_DIR_ENV})",
    )
    parser.add_argument("--data-dir", help=f"TFDS data folder (or ${data.DATA_DIR_ENV})")
    parser.add_argument("--limit", type=int, help="use only the first N examples of each split")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience, epochs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for option in spec.options if spec else ():
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            type=option.type,
            default=option.default,
            help=option.help,
        )
    return parser


def parse_config(argv) -> TrainConfig:
    """Parses train.py arguments; exits with code 2 and the valid names on unknown ones."""
    # First pass without --help, so `--model NAME --help` lists that model's own options too.
    first, _ = build_parser(add_help=False).parse_known_args(argv)
    if first.model is None:
        build_parser().parse_args(argv)  # prints help, or the "--model is required" error
    try:
        spec = get_spec(first.model)
        if first.dataset is not None:
            data.dataset_info(first.dataset)
        if first.noise is not None:
            data.Noise.parse(first.noise)
    except (UnknownModelError, data.DataError, ValueError) as error:
        build_parser().error(str(error))
    args = build_parser(spec).parse_args(argv)
    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        latent_dim=args.latent_dim,
        learning_rate=args.learning_rate,
        noise=args.noise,
        seed=args.seed,
        output_dir=args.output_dir,
        export_dir=None if args.no_export else args.export_dir,
        version=args.version,
        manual_dir=args.manual_dir,
        data_dir=args.data_dir,
        limit=args.limit,
        patience=args.patience,
        verbose=0 if args.quiet else "auto",
        options={option.name: getattr(args, option.name) for option in spec.options},
    )


def main(argv=None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    try:
        result = train(config)
    except (data.DataError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result.metrics, indent=2))
    print(f"run folder: {result.run_dir}")
    for path in result.pictures:
        print(f"picture: {path}")
    if result.export_path:
        print(f"SavedModel: {result.export_path}")
    return 0
