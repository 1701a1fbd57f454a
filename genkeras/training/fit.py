"""The one training pipeline: data -> fit -> metrics -> pictures -> SavedModel.

`train.py` and `genkeras train` parse their flags into a `TrainConfig` and call `train`. Every
model goes the same way; what differs per model lives in its `ModelSpec`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from genkeras import data
from genkeras.training import scale
from genkeras.training.callbacks import EpochSeconds, LearningRateWarmup, TimeBudget
from genkeras.training.config import Run, TrainConfig, resolve
from genkeras.training.finish import TrainingError, TrainResult, finish, finish_in_tensorflow
from genkeras.training.initial_weights import load_initial_weights
from genkeras.training.inputs import batches, built_model, endless, example_inputs


def logged_epochs(run_dir: Path) -> tuple[int, float]:
    """(epochs, training seconds) recorded in `training_log.csv`, across resumed runs."""
    log_path = run_dir / "training_log.csv"
    if not log_path.exists():
        return 0, 0.0
    with open(log_path) as log:
        rows = list(csv.DictReader(log))
    return len(rows), sum(float(row.get("epoch_seconds") or 0) for row in rows)


def callbacks(config: TrainConfig, run_dir: Path, resuming: bool, extra=()) -> list:
    """The callbacks of `fit`, in the order they must run.

    Backup first, so a run killed right after an epoch's log line resumes after that epoch;
    EpochSeconds before CSVLogger, which writes the logs it has added to. With a weight
    average (`ema_momentum`), validation runs on the averaged weights, and from the end of each
    epoch to the start of the next the model holds them: the backup saves the raw weights
    before the swap, early stopping keeps (and finally restores) the best averaged ones.
    """
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

    Raises:
        genkeras.training.config.ConfigError: a flag out of its range (before any work).
        TrainingError: the run diverged (a non-finite loss or weight); nothing is exported.
    """
    run = resolve(config)
    # Multi-worker collectives must be set up before any other TensorFlow work.
    strategy = scale.make_strategy(config.strategy)
    previous_policy = keras.mixed_precision.dtype_policy()
    if config.mixed_precision:
        keras.mixed_precision.set_dtype_policy(scale.mixed_precision_policy())
    try:
        return _train(run, strategy)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _train(run: Run, strategy) -> TrainResult:
    config, spec = run.config, run.spec
    # Preparing a data set the first time draws from the global random generators: do it
    # before seeding, so a first run trains exactly as every later run with the same seed.
    data.prepare(config.dataset, manual_dir=config.manual_dir, data_dir=config.data_dir)
    # Checked against a throwaway model before seeding, so the seeded run is unchanged by it.
    start = load_initial_weights(run) if config.initial_weights else None
    keras.utils.set_random_seed(config.seed)
    worker = scale.worker_index() if config.strategy == "multi-worker" else 0
    run_dir = Path(config.output_dir) / spec.name
    if worker:
        run_dir = run_dir / f"worker-{worker}"
    run_dir.mkdir(parents=True, exist_ok=True)
    trained = _finished_training(run_dir, config)
    if trained is not None and not worker:
        if config.verbose != 0:
            print(f"{run_dir} finished training before; evaluating and exporting it")
        model = keras.saving.load_model(run_dir / f"{spec.name}.keras")
        return _finish(model, config, run_dir, trained)
    resuming = (run_dir / "backup").exists()
    if resuming and config.verbose != 0:
        print(f"Resuming after epoch {logged_epochs(run_dir)[0]} from {run_dir / 'backup'}")

    train_batches = batches(config, run.view, "train", shuffle=True)
    steps_per_epoch = None
    steps_per_execution = scale.steps_per_execution(config.steps_per_execution, strategy)
    # Multi-worker keeps one iterator per epoch: its repeated shards did not reproduce the
    # single-device weights in every test run.
    if not spec.closed_form and config.strategy != "multi-worker":
        train_batches, steps_per_epoch = endless(train_batches)
        if steps_per_epoch:
            # Keras runs whole executions: an epoch is a whole number of them, so say so.
            steps_per_execution = min(steps_per_execution, steps_per_epoch)
            steps_per_epoch = math.ceil(steps_per_epoch / steps_per_execution) * (
                steps_per_execution
            )
    model = build_model(run, strategy, steps_per_execution, initialize=not resuming, weights=start)
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
            validation_data=batches(config, run.view, "validation", shuffle=False),
            epochs=config.epochs,
            shuffle=False,  # the pipeline shuffles
            callbacks=callbacks(
                config,
                run_dir,
                resuming,
                spec.extra_callbacks(run.options) if spec.extra_callbacks else (),
            ),
            verbose=config.verbose,
        )
        fit_summary = {key: float(values[-1]) for key, values in history.history.items()}
        diverged = [key for key, values in history.history.items() if not np.isfinite(values).all()]
        if diverged:
            raise TrainingError(
                f"Training diverged: {', '.join(diverged)} became NaN or infinite, so nothing "
                f"was exported. Try a smaller --learning-rate; {run_dir}/backup resumes the run."
            )
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
    (run_dir / TRAINED).write_text(json.dumps({"config": _training_fields(config), **record}))
    return _finish(model, config, run_dir, record)


# Written once training is done and removed once the export is: a rerun of the same command
# that finds it evaluates and exports the saved model instead of training again.
TRAINED = "trained_not_exported.json"
EXPORT_FIELDS = ("export_dir", "version", "verbose")


def _training_fields(config: TrainConfig) -> dict:
    """The config fields that decide what training produces (not where it is exported)."""
    fields = dataclasses.asdict(config)
    return {key: value for key, value in fields.items() if key not in EXPORT_FIELDS}


def _finished_training(run_dir: Path, config: TrainConfig) -> dict | None:
    """The record of a finished, unexported run of this same config, or None."""
    marker = run_dir / TRAINED
    if not marker.exists() or not (run_dir / f"{config.model}.keras").exists():
        return None
    saved = json.loads(marker.read_text())
    recorded, current = saved.pop("config"), _training_fields(config)
    # A flag added to genkeras after the run was trained is absent from its record: at its
    # default it cannot have changed the training, so the run still counts as this config's.
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    for name in set(current) - set(recorded):
        if current[name] == defaults.get(name, dataclasses.MISSING):
            del current[name]
    return saved if recorded == current else None


def _finish(model, config: TrainConfig, run_dir: Path, record: dict) -> TrainResult:
    if keras.backend.backend() != "tensorflow":
        result = finish_in_tensorflow(model, config, run_dir, record)
    else:
        result = finish(model, config, record)
    (run_dir / TRAINED).unlink(missing_ok=True)
    return result


def build_model(run: Run, strategy=None, steps_per_execution=None, initialize=True, weights=None):
    """The run's model, built, initialised and compiled the way train.py trains it.

    Args:
        run: a resolved run (`genkeras.training.config.resolve`).
        strategy: a `tf.distribute` strategy, or None for one device.
        steps_per_execution: defaults to the config's, as the strategy allows.
        initialize: a new run: apply the model's data-dependent initialisation, if it has one
            (a VAE's decoder starts at the mean training image, `VAE.initialize_output_bias`).
        weights: a new run's starting weights (`--initial-weights`), replacing the random ones.

    Returns:
        The compiled Keras model (a closed-form model is built only).
    """
    config, spec, view = run.config, run.spec, run.view
    with scale.scope(strategy):
        model = built_model(run)
        if initialize and hasattr(model, "initialize_output_bias"):
            clean = dataclasses.replace(view, binarize=False, noise=None)
            model.initialize_output_bias(example_inputs(config, clean, count=4096))
        if initialize and weights is not None:
            model.set_weights(weights)
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
