"""After `fit`: test metrics, metrics.json, pictures and the SavedModel export.

This part always runs under TensorFlow, whatever backend trained the model: the exported
signatures and the pixel samplers are TensorFlow graphs. A model trained under JAX is saved,
then reloaded by a TensorFlow process (`finish_in_tensorflow`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

import genkeras.models  # noqa: F401 - registers the classes `finish_job` loads
from genkeras import data
from genkeras.export import export_model
from genkeras.training.config import TrainConfig, recorded_flags, resolve
from genkeras.training.inputs import batches


class TrainingError(RuntimeError):
    """A run whose result cannot be right (diverged, non-finite); nothing was exported."""


@dataclasses.dataclass
class TrainResult:
    """What a run produced: the model, its test metrics and where its files went."""

    model: keras.Model
    metrics: dict
    run_dir: Path
    export_path: Path | None
    pictures: list


def _check_finite(model, metrics: dict) -> None:
    """Raises `TrainingError` when a weight or a test metric is NaN or infinite."""
    bad_weights = [
        weight.path
        for weight in model.weights
        if not np.isfinite(keras.ops.convert_to_numpy(weight)).all()
    ]
    bad_metrics = [
        key
        for key, value in metrics.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]
    if bad_weights or bad_metrics:
        raise TrainingError(
            "The trained model is not finite, so nothing was exported: "
            + ", ".join([*bad_weights[:5], *bad_metrics])
            + ". Try a smaller --learning-rate."
        )


def finish(model, config: TrainConfig, record: dict) -> TrainResult:
    """Evaluates, draws and exports a trained model; writes `metrics.json`.

    Args:
        model: the trained model.
        config: the run's config.
        record: facts of the run (training seconds, epochs, backend, precision, replicas,
            steps per execution, the last logs).

    Returns:
        The `TrainResult`.

    Raises:
        TrainingError: a weight or test metric is not finite (nothing is exported).
    """
    run = resolve(config)
    run_dir = Path(config.output_dir) / run.spec.name
    metrics = run.spec.evaluate(model, batches(config, run.view, "test", shuffle=False), run.view)
    _check_finite(model, metrics)
    hyperparameters = {
        **recorded_flags(config),
        "noise": str(run.view.noise) if run.view.noise else None,
        "binarize": run.view.binarize,
        **{key: record[key] for key in ("mixed_precision", "steps_per_execution")},
        **{key: record[key] for key in ("replicas", "backend")},
        **run.options,
    }
    report = {
        "model": run.spec.name,
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
    picture_paths = run.spec.pictures(model, examples, run.view, run_dir)

    export_path = None
    if config.export_dir is not None:
        export_path = export_model(model, run.spec, config.export_dir, config.version, card=report)
    return TrainResult(model, metrics, run_dir, export_path, picture_paths)


def finish_in_tensorflow(model, config: TrainConfig, run_dir: Path, record: dict) -> TrainResult:
    """`finish` for a model trained under another backend (JAX): a TensorFlow process reloads
    the saved `.keras` file and evaluates, draws and exports it."""
    job = run_dir / "finish.json"
    job.write_text(json.dumps({"config": dataclasses.asdict(config), "record": record}))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    command = [sys.executable, "-m", "genkeras.commands.finish_run", str(job)]
    if subprocess.run(command, env=env).returncode != 0:
        raise RuntimeError(
            f"Evaluating and exporting {run_dir} under TensorFlow failed (is tensorflow "
            f"installed?); retry with `KERAS_BACKEND=tensorflow {' '.join(command[1:])}`."
        )
    done = json.loads((run_dir / "finish_result.json").read_text())
    export_path = Path(done["export_path"]) if done["export_path"] else None
    return TrainResult(model, done["metrics"], run_dir, export_path, done["pictures"])


def finish_job(job: Path) -> None:
    """The TensorFlow side of `finish_in_tensorflow`: reads the job, writes its outcome."""
    task = json.loads(Path(job).read_text())
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
