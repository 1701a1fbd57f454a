"""Speed and scale: XLA, mixed precision, steps per execution, tf.distribute strategies.

The strategy tests train the same tiny run three ways, each in its own process: on one
device, mirrored over two logical CPU devices, and with two worker processes talking over
loopback. The same global batches and a loss averaged over the global batch make the three
runs the same computation up to floating-point summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT, free_port, read_json, run_python

import genkeras.registry  # noqa: F401  (registers the model classes that load_model needs)

# The run every strategy repeats: 3 epochs of one global batch of 64 images (dense_ae: no
# randomness in the model or the data). One batch per epoch because a distributed `fit` draws
# one more iterator from the dataset than a single-device one, so a reshuffling pipeline hands
# its batches over in another order; with one batch, order cannot matter and any difference
# left is summation order. Measured: at most 1.5e-8.
TINY_RUN = ["--model", "dense_ae", "--limit", "64", "--epochs", "3", "--batch-size", "64"]
TINY_RUN += ["--no-export", "--quiet"]
WEIGHT_TOLERANCE = 1e-6

TRAIN_WITH_LOGICAL_CPUS = """
import sys
from genkeras.training import scale
scale.logical_cpus(int(sys.argv[1]))
from genkeras.commands.train import main
sys.exit(main(sys.argv[2:]))
"""


def train_in_process(output_dir, *flags, logical_cpus=1):
    done = run_python(
        TRAIN_WITH_LOGICAL_CPUS,
        logical_cpus,
        *TINY_RUN,
        "--output-dir",
        output_dir,
        *flags,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return output_dir / "dense_ae" / "dense_ae.keras"


def weights(path):
    return keras.saving.load_model(path).get_weights()


def assert_same_weights(first, second):
    for a, b in zip(weights(first), weights(second), strict=True):
        np.testing.assert_allclose(a, b, atol=WEIGHT_TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory):
    return train_in_process(tmp_path_factory.mktemp("single"))


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(single_device_run, tmp_path):
    mirrored = train_in_process(tmp_path, "--strategy", "mirrored", logical_cpus=2)
    card = read_json(tmp_path / "dense_ae" / "metrics.json")["hyperparameters"]
    assert (card["strategy"], card["replicas"]) == ("mirrored", 2)
    assert_same_weights(single_device_run, mirrored)


@pytest.mark.slow
def test_two_workers_on_loopback_match_one_device(single_device_run, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "train.py", *TINY_RUN, "--strategy", "multi-worker"]
        command += ["--output-dir", str(tmp_path)]
        workers.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    chief = tmp_path / "dense_ae"
    card = read_json(chief / "metrics.json")["hyperparameters"]
    assert (card["strategy"], card["replicas"]) == ("multi-worker", 2)
    # Only the chief evaluates and draws; the other worker keeps its weights apart.
    assert (chief / "reconstructions.png").exists()
    assert not (chief / "worker-1" / "metrics.json").exists()
    assert_same_weights(chief / "dense_ae.keras", chief / "worker-1" / "dense_ae.keras")
    assert_same_weights(single_device_run, chief / "dense_ae.keras")


def test_multi_worker_without_tf_config_names_the_fix(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            *TINY_RUN,
            "--strategy",
            "multi-worker",
            "--output-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "TF_CONFIG" in done.stderr and '"cluster"' in done.stderr


def test_a_strategy_under_jax_names_the_fix(tmp_path):
    done = subprocess.run(
        [sys.executable, "train.py", *TINY_RUN, "--strategy", "mirrored"]
        + ["--output-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "KERAS_BACKEND=tensorflow" in done.stderr and not (tmp_path / "dense_ae").exists()


@pytest.mark.slow
def test_mixed_precision_keeps_outputs_and_losses_float32(tmp_path):
    done = run_python(
        """
        import json, sys
        import numpy as np
        from keras.backend import standardize_dtype
        from genkeras.training import TrainConfig, train
        config = TrainConfig(model="conv_vae", limit=128, epochs=1, batch_size=64,
                             mixed_precision=True, output_dir=sys.argv[1],
                             export_dir=sys.argv[1] + "/export", verbose=0)
        result = train(config)
        model = result.model
        images = np.zeros((2, 28, 28, 1), "float32")
        print(json.dumps({
            "compute": model.encoder.layers[1].compute_dtype,
            "variables": model.encoder.layers[1].variable_dtype,
            "encode": {k: standardize_dtype(v.dtype) for k, v in model.encode(images).items()},
            "decode": standardize_dtype(model.decode(np.zeros((2, 32), "float32")).dtype),
            "loss": result.metrics["test_negative_elbo"],
        }))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["compute"] == "bfloat16" and seen["variables"] == "float32"  # no GPU: bfloat16
    assert set(seen["encode"].values()) == {"float32"} and seen["decode"] == "float32"
    assert np.isfinite(seen["loss"])
    card = read_json(tmp_path / "conv_vae" / "metrics.json")["hyperparameters"]
    assert card["mixed_precision"] == "mixed_bfloat16"
    assert card["learning_rate"] == 2e-3 and card["warmup_steps"] == 300  # the VAE recipe


@pytest.mark.slow
def test_xla_and_steps_per_execution_train_but_exports_stay_free_of_xla(tmp_path):
    done = run_python(
        """
        import sys
        from genkeras.commands.train import main
        sys.exit(main(sys.argv[1:]))
        """,
        "--model",
        "dense_ae",
        "--limit",
        "256",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--jit-compile",
        "on",
        "--steps-per-execution",
        "4",
        "--quiet",
        "--output-dir",
        tmp_path,
        "--export-dir",
        tmp_path / "export",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = read_json(tmp_path / "dense_ae" / "metrics.json")
    assert report["hyperparameters"]["jit_compile"] == "on"
    assert report["hyperparameters"]["steps_per_execution"] == 4
    assert np.isfinite(report["final_logs"]["loss"])
    assert _function_names(tmp_path / "export")  # the parse below sees the graph's functions
    assert not _function_names(tmp_path / "export", xla_only=True)


def _function_names(export_dir, xla_only=False):
    """Functions in the exported graph (only those that ask XLA to compile them)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((export_dir / "dense_ae" / "1" / "saved_model.pb").read_bytes())
    library = saved.meta_graphs[0].graph_def.library
    return [
        function.signature.name
        for function in library.function
        if not xla_only or function.attr["_XlaMustCompile"].b
    ]
