"""train.py and `genkeras compare` end to end, in real subprocesses on real MNIST subsets."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, read_json

from genkeras.commands.train import build_parser
from genkeras.registry import get_spec
from genkeras.training.config import flags

TRAIN = [sys.executable, str(ROOT / "train.py")]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(args, timeout=600, cwd=ROOT):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def genkeras(*args, timeout=600):
    return run([sys.executable, "-m", "genkeras.cli", *args], timeout=timeout)


def epochs_logged(path):
    with open(path) as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_train_py_end_to_end_on_a_subset(tmp_path):
    runs, exports = tmp_path / "runs", tmp_path / "savedmodels"
    result = run(
        [
            *TRAIN,
            "--model",
            "denoising_ae",
            "--limit",
            "256",
            "--epochs",
            "1",
            "--latent-dim",
            "8",
            "--output-dir",
            runs,
            "--export-dir",
            exports,
            "--quiet",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]

    run_dir = runs / "denoising_ae"
    report = read_json(run_dir / "metrics.json")
    metrics = report["metrics"]
    assert {"test_mse", "test_psnr", "noisy_input_psnr", "test_squared_error_per_image"} <= set(
        metrics
    )
    assert 8 < metrics["noisy_input_psnr"] < 11  # sigma 0.5, clipped: about 9.4 dB
    assert report["hyperparameters"]["noise"] == "gaussian:0.5" and report["dataset"] == "mnist"
    assert report["hyperparameters"]["warmup_steps"] == 0  # autoencoders start at full rate
    # 256 images in batches of 128: 2 steps per epoch, so 2 (not 8) steps per execution.
    assert report["hyperparameters"]["steps_per_execution"] == 2
    assert (run_dir / "denoising_ae.keras").stat().st_size > 0
    assert (run_dir / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert epochs_logged(run_dir / "training_log.csv") == [0]
    assert any((run_dir / "logs").rglob("events.out.tfevents.*"))

    card = read_json(exports / "denoising_ae" / "1" / "model_card.json")
    assert card["metrics"] == metrics and card["hyperparameters"]["latent_dim"] == 8
    assert card["training_seconds"] > 0 and card["package_version"]

    # `genkeras export` turns the run's .keras file into the next version, with the same card.
    export = ["export", "--model", "denoising_ae", "--keras", run_dir / "denoising_ae.keras"]
    exported = genkeras(*export, "--export-dir", exports)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert read_json(exports / "denoising_ae" / "2" / "model_card.json")["metrics"] == metrics
    taken = genkeras(*export, "--export-dir", exports, "--version", "1")
    assert taken.returncode == 2 and "already exists" in taken.stderr

    # Re-exporting the same weights with this genkeras keeps the figures of an earlier card.
    earlier = exports / "denoising_ae" / "1" / "model_card.json"
    again = genkeras(*export, "--export-dir", exports, "--card-from", earlier)
    assert again.returncode == 0, again.stderr[-3000:]
    card = read_json(exports / "denoising_ae" / "3" / "model_card.json")
    assert card["metrics"] == metrics and card["version"] == 3
    assert card["reexport_of"]["version"] == 1
    not_a_card = genkeras(*export, "--export-dir", exports, "--card-from", run_dir / "x.json")
    assert not_a_card.returncode == 2 and "--card-from" in not_a_card.stderr
    assert not (exports / "denoising_ae" / "4").exists()


def test_every_config_field_is_a_train_py_flag():
    """One declaration: the parser offers exactly the config's flags, plus the model's own
    options, --no-export and --quiet."""
    spec = get_spec("conv_vae")
    parser = build_parser(spec)
    offered = {option for action in parser._actions for option in action.option_strings}
    declared = {"--" + field.name.replace("_", "-") for field in flags()}
    model_options = {"--" + option.name.replace("_", "-") for option in spec.options}
    assert offered == declared | model_options | {"-h", "--help", "--no-export", "--quiet"}


NOT_A_FOLDER = "/proc/self/status/runs"  # a path under a file: nothing can create it


@pytest.mark.parametrize(
    "args, named",
    [
        (["--model", "resnet"], "Valid models: pca, dense_ae, conv_ae, denoising_ae"),
        (["--dataset", "imagenet"], "Valid data sets: celeb_a, cifar10, fashion_mnist, mnist"),
        (["--ema-momentum", "1.5"], "--ema-momentum must be in [0, 1)"),
        (["--warmup-steps", "-1"], "--warmup-steps must be >= 0"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--epochs", "-1"], "--epochs must be >= 1"),
        (["--learning-rate", "nan"], "--learning-rate must be a finite number > 0"),
        (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0"),
        (["--limit", "-5"], "--limit must be >= 1"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--version", "-1"], "--version must be >= 0"),
        (["--latent-dim", "0"], "--latent-dim must be in [1, 4096]"),
        (["--latent-dim", "100000"], "--latent-dim must be in [1, 4096]"),
        (["--batch-size", "0"], "--batch-size must be in [1, 65536]"),
        (["--steps-per-execution", "0"], "--steps-per-execution must be in [1, 10000]"),
        (["--output-dir", NOT_A_FOLDER], f"--output-dir {NOT_A_FOLDER}:"),
        (["--export-dir", NOT_A_FOLDER], f"--export-dir {NOT_A_FOLDER}:"),
        (["--initial-weights", "gone.keras"], "--initial-weights must be an existing .keras"),
    ],
)
def test_bad_values_exit_2_naming_the_flag_before_any_work(args, named, tmp_path):
    model = [] if args[0] == "--model" else ["--model", "conv_vae"]
    result = run([*TRAIN, *model, *args], cwd=tmp_path)
    assert result.returncode == 2
    assert named in result.stderr.splitlines()[-1]
    assert list(tmp_path.iterdir()) == [] or args[0] == "--export-dir"  # no run folder


def test_missing_archives_exit_2_naming_folder_and_files(tmp_path):
    (tmp_path / "manual" / "fashion_mnist").mkdir(parents=True)
    result = run(
        [
            *TRAIN,
            "--model",
            "pca",
            "--dataset",
            "fashion_mnist",
            "--manual-dir",
            tmp_path / "manual",
            "--data-dir",
            tmp_path / "empty",
            "--output-dir",
            tmp_path / "runs",
            "--no-export",
        ]
    )
    assert result.returncode == 2
    assert str(tmp_path / "manual" / "fashion_mnist") in result.stderr
    assert "train-images-idx3-ubyte.gz" in result.stderr


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    args = [
        *TRAIN,
        "--model",
        "dense_ae",
        "--limit",
        "3000",
        "--epochs",
        "6",
        "--patience",
        "100",
        "--output-dir",
        tmp_path,
        "--no-export",
        "--quiet",
    ]
    log = tmp_path / "dense_ae" / "training_log.csv"
    first = subprocess.Popen(
        args, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if log.exists() and epochs_logged(log):
            break
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before_kill = epochs_logged(log)
    assert 1 <= len(done_before_kill) < 6, "the run finished before it could be killed"
    assert not (tmp_path / "dense_ae" / "metrics.json").exists()

    second = run(args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert epochs_logged(log) == list(range(6))  # nothing repeated, nothing lost
    report = read_json(tmp_path / "dense_ae" / "metrics.json")
    assert report["epochs_run"] == 6 - len(done_before_kill)  # only the missing epochs ran again
    assert report["epochs_total"] == 6
    assert report["training_seconds"] > 0  # summed over both processes' epochs
    assert not (tmp_path / "dense_ae" / "backup").exists()  # a finished run leaves no backup


@pytest.mark.slow
def test_a_run_killed_after_training_only_exports_when_run_again(tmp_path):
    """Killed between the end of training and the end of its export, the same command run
    again evaluates and exports the saved model without training it again."""
    args = [*TRAIN, "--model", "dense_ae", "--limit", "512", "--epochs", "1", "--quiet"]
    args += ["--output-dir", tmp_path / "runs", "--export-dir", tmp_path / "savedmodels"]
    run_dir = tmp_path / "runs" / "dense_ae"
    first = subprocess.Popen(
        args, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if (run_dir / "trained_not_exported.json").exists():
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (run_dir / "trained_not_exported.json").exists(), "killed too late or too early"
    assert not (tmp_path / "savedmodels" / "dense_ae" / "1").exists()

    second = run(args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert epochs_logged(run_dir / "training_log.csv") == [0]  # not trained again
    assert (tmp_path / "savedmodels" / "dense_ae" / "1" / "saved_model.pb").exists()
    assert not (run_dir / "trained_not_exported.json").exists()


@pytest.mark.slow
def test_the_same_seed_gives_the_same_losses(tmp_path):
    """Also when the first run prepares the data set (TFDS draws random numbers then)."""

    def losses(folder):
        args = [*TRAIN, "--model", "conv_vae", "--limit", "512", "--epochs", "2", "--quiet"]
        args += ["--data-dir", tmp_path / "tfds"]  # empty before the first run
        result = run([*args, "--seed", "3", "--output-dir", folder, "--no-export"])
        assert result.returncode == 0, result.stderr[-3000:]
        with open(folder / "conv_vae" / "training_log.csv") as log:
            return [(row["loss"], row["val_loss"]) for row in csv.DictReader(log)]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")


@pytest.mark.slow
def test_initial_weights_start_the_run_from_a_file_of_the_same_model(tmp_path):
    """A run with --initial-weights starts from the file's weights (at a negligible learning
    rate it ends where the file was); another model or other options are refused with exit 2,
    naming the difference, before the run's folder exists."""
    import keras

    import genkeras  # noqa: F401 - registers the model classes

    tiny = ["--limit", "256", "--epochs", "1", "--batch-size", "64", "--quiet", "--no-export"]
    first = run([*TRAIN, "--model", "dense_ae", *tiny, "--output-dir", tmp_path / "a"])
    assert first.returncode == 0, first.stderr[-3000:]
    start = tmp_path / "a" / "dense_ae" / "dense_ae.keras"
    again = [*TRAIN, *tiny, "--initial-weights", start, "--learning-rate", "1e-12"]
    second = run([*again, "--model", "dense_ae", "--seed", "7", "--output-dir", tmp_path / "b"])
    assert second.returncode == 0, second.stderr[-3000:]
    before = keras.saving.load_model(start, compile=False).get_weights()
    after = keras.saving.load_model(tmp_path / "b" / "dense_ae" / "dense_ae.keras").get_weights()
    fresh = run(
        [*TRAIN, "--model", "dense_ae", *tiny, "--seed", "7", "--output-dir", tmp_path / "c"]
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    unrelated = keras.saving.load_model(
        tmp_path / "c" / "dense_ae" / "dense_ae.keras"
    ).get_weights()
    assert len(before) == len(after)
    for was, now in zip(before, after, strict=True):
        np.testing.assert_allclose(now, was, atol=1e-6)
    assert any(
        np.abs(was - other).max() > 1e-3 for was, other in zip(before, unrelated, strict=True)
    )

    for args, named in (
        (["--model", "conv_ae"], "holds a DenseAutoencoder, but --model conv_ae builds a"),
        (["--model", "dense_ae", "--latent-dim", "8"], "has shape"),
    ):
        refused = run([*again, *args, "--output-dir", tmp_path / "refused"])
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert named in refused.stderr.splitlines()[-1]
        assert "--initial-weights" in refused.stderr.splitlines()[-1]
        assert list((tmp_path / "refused").iterdir()) == []  # the output folder, but no run


@pytest.mark.slow
def test_compare_prints_a_table_and_writes_the_picture(tmp_path):
    result = genkeras(
        *("compare", "--models", "pca,dense_ae", "--latent-dim", "4", "--epochs", "1"),
        *("--limit", "256", "--output-dir", tmp_path, "--quiet"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if line.split()[:1] in (["pca"], ["dense_ae"])
    }
    assert set(rows) == {"pca", "dense_ae"}
    for name, row in rows.items():
        assert float(row[1]) == pytest.approx(
            read_json(tmp_path / "latent4" / name / "metrics.json")["metrics"]["test_mse"], abs=1e-5
        )
    assert (tmp_path / "latent4" / "reconstructions.png").exists()
    unknown = genkeras("compare", "--models", "pca,nope")
    assert unknown.returncode == 2 and "Valid models:" in unknown.stderr


def test_a_trained_run_recorded_before_a_new_flag_still_only_exports(tmp_path):
    """A run trained before a flag existed has no record of it: at the flag's default the run
    is still recognised (and only exported), with any other value it is not."""
    import dataclasses
    import json

    from genkeras.training.config import TrainConfig
    from genkeras.training.fit import TRAINED, _finished_training, _training_fields

    config = TrainConfig(model="dense_ae", output_dir=str(tmp_path))
    recorded = _training_fields(config)
    del recorded["initial_weights"]  # as written before --initial-weights existed
    (tmp_path / "dense_ae.keras").write_bytes(b"")
    (tmp_path / TRAINED).write_text(json.dumps({"config": recorded, "epochs_run": 3}))
    assert _finished_training(tmp_path, config) == {"epochs_run": 3}
    other = dataclasses.replace(config, initial_weights=str(tmp_path / "dense_ae.keras"))
    assert _finished_training(tmp_path, other) is None
    assert _finished_training(tmp_path, dataclasses.replace(config, seed=1)) is None
