"""The one training pipeline: data -> fit -> metrics -> pictures -> SavedModel.

`train.py` and `genkeras train` parse arguments into a `TrainConfig` and call `train`. Every
model goes the same way; what differs per model lives in its `ModelSpec`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras

from genkeras import data, scale
from genkeras.callbacks import EpochSeconds, LearningRateWarmup, TimeBudget
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
    warmup_steps: int | None = None
    ema_momentum: float | None = None
    noise: str | None = None
    seed: int = 0
    output_dir: str = "runs"
    export_dir: str | None = "savedmodels"
    version: int | None = None
    manual_dir: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    patience: int = 5
    time_budget: float = 0.0
    jit_compile: str = "auto"
    mixed_precision: bool = False
    steps_per_execution: int = 8
    strategy: str = "none"
    verbose: int | str = "auto"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    metrics: dict
    run_dir: Path
    export_path: Path | None
    pictures: list


DEFAULTS_FROM_SPEC = (
    "epochs",
    "batch_size",
    "latent_dim",
    "learning_rate",
    "warmup_steps",
    "ema_momentum",
)


def resolve(config: TrainConfig):
    """Fills the model's defaults into `config`; returns `(spec, dataset info, view, options)`."""
    spec = get_spec(config.model)
    info = data.dataset_info(config.dataset or spec.dataset)
    for field in DEFAULTS_FROM_SPEC:
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
    ds = data.pipeline(ds, view, batch_size=config.batch_size, shuffle=shuffle, seed=config.seed)
    return scale.shard_by_data(ds) if config.strategy == "multi-worker" else ds


def endless(ds):
    """`(ds.repeat(), batches in one pass)`, or `(ds, None)` when the count is unknown.

    Given the steps per epoch, Keras keeps one iterator for the whole run instead of starting
    a new one every epoch, which stalls some conv_vae epochs by about 20 s on the 2-core
    machine (an epoch takes 20 s; benchmarks/epoch_boundaries.py). Every pass over the
    repeated data covers the split once, reshuffled. Keras then runs whole executions: with N
    steps per execution an epoch is rounded up to a multiple of N steps (MNIST, batch 128, N 8:
    432 steps for 430 batches), and the next epoch goes on from there.
    """
    count = int(ds.cardinality())
    return (ds.repeat(), count) if count > 0 else (ds, None)


def example_inputs(config, view, count=2):
    """The first `count` training inputs, shaped as the model receives them (images, or images
    and labels), unshuffled: every worker of a cluster gets the same ones."""
    ds = data.load_split(
        config.dataset, "train", manual_dir=config.manual_dir, data_dir=config.data_dir, limit=count
    )
    first = next(iter(data.pipeline(ds, view, batch_size=count, shuffle=False, cache=False)))
    first = keras.tree.map_structure(lambda tensor: tensor.numpy(), first)  # for any backend
    return first[0] if view.targets else first


def logged_epochs(run_dir: Path) -> tuple[int, float]:
    """(epochs, training seconds) recorded in `training_log.csv`, across resumed runs."""
    with open(run_dir / "training_log.csv") as log:
        rows = list(csv.DictReader(log))
    return len(rows), sum(float(row.get("epoch_seconds") or 0) for row in rows)


def callbacks(config, run_dir: Path, resuming: bool, extra=()):
    """Backup first, so a run killed right after an epoch's log line resumes after that epoch;
    EpochSeconds before CSVLogger, which writes the logs it has added to. With a weight
    average (`ema_momentum`), validation runs on the averaged weights, and from the end of each
    epoch to the start of the next the model holds them: the backup saves the raw weights
    before the swap, early stopping keeps (and finally restores) the best averaged ones."""
    budget = [TimeBudget(config.time_budget)] if config.time_budget > 0 else []
    warmup = [LearningRateWarmup(config.warmup_steps)] if config.warmup_steps else []
    # The time budget's cosine owns the learning rate; otherwise halve it on plateaus.
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5
    )
    return [
        *extra,
        *budget,
        *warmup,  # after the budget, whose rate it overrides while ramping; before the backup
        EpochSeconds(),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema_momentum else []),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True
        ),
        *([] if budget else [plateau]),
        keras.callbacks.CSVLogger(str(run_dir / "training_log.csv"), append=resuming),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), profile_batch=0),
    ]


def train(config: TrainConfig) -> TrainResult:
    """Trains, evaluates, pictures and exports one model.

    Writes into `output_dir/NAME/`: `NAME.keras`, `metrics.json`, `training_log.csv`,
    TensorBoard `logs/` and PNG pictures; and a SavedModel under `export_dir/NAME/VERSION/`
    unless `export_dir` is None. A run killed mid-way resumes from `backup/` when started again
    with the same output folder. Under `--strategy multi-worker` only the chief (worker 0)
    evaluates, draws and exports; the other workers keep their logs and weights in
    `output_dir/NAME/worker-I/`.
    """
    spec, _, view, options = resolve(config)
    # Multi-worker collectives must be set up before any other TensorFlow work.
    strategy = scale.make_strategy(config.strategy)
    previous_policy = keras.mixed_precision.dtype_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_dtype_policy(scale.mixed_precision_policy())
    try:
        return _train(config, spec, view, options, strategy)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _train(config, spec, view, options, strategy) -> TrainResult:
    keras.utils.set_random_seed(config.seed)
    worker = scale.worker_index() if config.strategy == "multi-worker" else 0
    run_dir = Path(config.output_dir) / spec.name
    if worker:
        run_dir = run_dir / f"worker-{worker}"
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = (run_dir / "backup").exists()

    train_batches, steps_per_epoch = batches(config, view, "train", shuffle=True), None
    steps_per_execution = scale.steps_per_execution(config.steps_per_execution, strategy)
    # Multi-worker keeps one iterator per epoch: its repeated shards did not reproduce the
    # single-device weights in one of two test runs (not investigated further).
    if not spec.closed_form and config.strategy != "multi-worker":
        train_batches, steps_per_epoch = endless(train_batches)
        steps_per_execution = min(steps_per_execution, steps_per_epoch or steps_per_execution)
    model = build_model(
        config, spec, view, options, strategy, steps_per_execution, initialize=not resuming
    )
    if config.strategy == "multi-worker":
        scale.work_around_multi_worker_fit(model, next(iter(train_batches)))
    if spec.closed_form:
        started = time.perf_counter()
        fit_summary = model.fit_closed_form(train_batches, progress=config.verbose != 0)
        epochs_run, epochs_total, training_seconds = 1, 1, time.perf_counter() - started
    else:
        history = model.fit(
            train_batches,
            steps_per_epoch=steps_per_epoch,
            # Not repeated: whole executions would validate on a shifting window of batches.
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
    if worker:
        return TrainResult(model, {}, run_dir, None, [])
    record = {
        "training_seconds": round(training_seconds, 1),
        "epochs_run": epochs_run,
        "epochs_total": epochs_total,
        "final_logs": fit_summary,
        "backend": keras.backend.backend(),
        "mixed_precision": keras.mixed_precision.dtype_policy().name,
        "replicas": strategy.num_replicas_in_sync if strategy else 1,
        "steps_per_execution": steps_per_execution,
    }
    if keras.backend.backend() != "tensorflow":
        return finish_in_tensorflow(model, config, run_dir, record)
    return finish(model, config, record)


def build_model(
    config, spec, view, options, strategy=None, steps_per_execution=None, initialize=True
):
    """`spec`'s model, built, initialised and compiled the way train.py trains it.

    `steps_per_execution` defaults to the config's, as the strategy allows.

    `initialize` (a new run) applies the model's data-dependent initialisation, if it has one:
    a VAE's decoder starts at the mean training image (`VAE.initialize_output_bias`).
    """
    image_shape = data.dataset_info(config.dataset).image_shape
    with scale.scope(strategy):
        model = spec.build(image_shape, config.latent_dim, **options)
        model(example_inputs(config, view))  # builds the weights, whatever the model's inputs
        if initialize and hasattr(model, "initialize_output_bias"):
            clean = dataclasses.replace(view, binarize=False, noise=None)
            model.initialize_output_bias(example_inputs(config, clean, count=4096))
        if not spec.closed_form:
            average = bool(config.ema_momentum)
            model.compile(
                optimizer=keras.optimizers.Adam(
                    config.learning_rate,
                    use_ema=average,
                    ema_momentum=config.ema_momentum if average else 0.99,
                ),
                loss=spec.loss,
                jit_compile=scale.jit_compile(config.jit_compile),
                steps_per_execution=steps_per_execution
                or scale.steps_per_execution(config.steps_per_execution, strategy),
            )
    return model


def finish(model, config: TrainConfig, record: dict) -> TrainResult:
    """Evaluates, draws and exports a trained model; writes `metrics.json`.

    This part runs under TensorFlow whatever backend trained the model: the exported
    signatures and the pixel samplers are TensorFlow graphs.
    """
    spec, _, view, options = resolve(config)
    run_dir = Path(config.output_dir) / spec.name
    metrics = spec.evaluate(model, batches(config, view, "test", shuffle=False), view)
    hyperparameters = {
        "latent_dim": config.latent_dim,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_steps,
        "ema_momentum": config.ema_momentum,
        "noise": str(view.noise) if view.noise else None,
        "binarize": view.binarize,
        "seed": config.seed,
        "limit": config.limit,
        "time_budget_minutes": config.time_budget,
        "jit_compile": config.jit_compile,
        "mixed_precision": record["mixed_precision"],
        "steps_per_execution": record["steps_per_execution"],
        "strategy": config.strategy,
        "replicas": record["replicas"],
        "backend": record["backend"],
        **options,
    }
    report = {
        "model": spec.name,
        "dataset": config.dataset,
        "metrics": metrics,
        "hyperparameters": hyperparameters,
        **{key: record[key] for key in ("training_seconds", "epochs_run", "epochs_total")},
        "final_logs": record["final_logs"],
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


def finish_in_tensorflow(model, config: TrainConfig, run_dir: Path, record: dict) -> TrainResult:
    """`finish` for a model trained under another backend (JAX): a TensorFlow process reloads
    the saved `.keras` file and evaluates, draws and exports it."""
    job = run_dir / "finish.json"
    job.write_text(json.dumps({"config": dataclasses.asdict(config), "record": record}))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    command = [sys.executable, "-m", "genkeras.training", str(job)]
    if subprocess.run(command, env=env).returncode != 0:
        raise RuntimeError(
            f"Evaluating and exporting {run_dir} under TensorFlow failed (is tensorflow "
            f"installed?); retry with `KERAS_BACKEND=tensorflow python -m genkeras.training {job}`."
        )
    done = json.loads((run_dir / "finish_result.json").read_text())
    export_path = Path(done["export_path"]) if done["export_path"] else None
    return TrainResult(model, done["metrics"], run_dir, export_path, done["pictures"])


def _finish_job(job: Path) -> None:
    """The TensorFlow side of `finish_in_tensorflow`."""
    task = json.loads(job.read_text())
    config = TrainConfig(**task["config"])
    run_dir = Path(config.output_dir) / config.model
    model = keras.saving.load_model(run_dir / f"{config.model}.keras")
    result = finish(model, config, task["record"])
    outcome = {
        "metrics": result.metrics,
        "pictures": [str(path) for path in result.pictures],
        "export_path": str(result.export_path) if result.export_path else None,
    }
    (run_dir / "finish_result.json").write_text(json.dumps(outcome, indent=2, default=str))


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
        "--warmup-steps", type=int, help="ramp the learning rate up over N steps (0 = off)"
    )
    parser.add_argument(
        "--ema-momentum",
        type=float,
        help="validate and keep a moving average of the weights, e.g. 0.99 (0 = off)",
    )
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
    parser.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="stop training after MINUTES, cosine-annealing the learning rate to 5%% (0 = off)",
    )
    speed = parser.add_argument_group("speed and scale (see genkeras/scale.py)")
    speed.add_argument(
        "--jit-compile",
        choices=list(scale.JIT_SETTINGS),
        default="auto",
        help="XLA for the training step: auto = on with a GPU, off on CPU-only machines",
    )
    speed.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute on GPUs (bfloat16 on CPUs); outputs and losses stay float32",
    )
    speed.add_argument(
        "--steps-per-execution",
        type=int,
        default=8,
        help="training steps per compiled call (fewer Python round trips; 1 = one at a time)",
    )
    speed.add_argument(
        "--strategy",
        choices=list(scale.STRATEGIES),
        default="none",
        help="mirrored: all local GPUs (or logical CPUs); multi-worker: the cluster in TF_CONFIG",
    )
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
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    if args.warmup_steps is not None and args.warmup_steps < 0:
        parser.error(f"--warmup-steps must be >= 0 (0 = no warm-up), got {args.warmup_steps}.")
    if args.ema_momentum is not None and not 0 <= args.ema_momentum < 1:
        parser.error(
            f"--ema-momentum must be in [0, 1) (0 = no average; 0.99 averages about the last "
            f"100 steps), got {args.ema_momentum}."
        )
    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        latent_dim=args.latent_dim,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        ema_momentum=args.ema_momentum,
        noise=args.noise,
        seed=args.seed,
        output_dir=args.output_dir,
        export_dir=None if args.no_export else args.export_dir,
        version=args.version,
        manual_dir=args.manual_dir,
        data_dir=args.data_dir,
        limit=args.limit,
        patience=args.patience,
        time_budget=args.time_budget,
        jit_compile=args.jit_compile,
        mixed_precision=args.mixed_precision,
        steps_per_execution=args.steps_per_execution,
        strategy=args.strategy,
        verbose=0 if args.quiet else "auto",
        options={option.name: getattr(args, option.name) for option in spec.options},
    )


def main(argv=None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    try:
        result = train(config)
    except (data.DataError, scale.ScaleError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result.metrics, indent=2))
    print(f"run folder: {result.run_dir}")
    for path in result.pictures:
        print(f"picture: {path}")
    if result.export_path:
        print(f"SavedModel: {result.export_path}")
    return 0


if __name__ == "__main__":
    _finish_job(Path(sys.argv[1]))
