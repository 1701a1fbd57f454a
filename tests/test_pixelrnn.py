"""PixelRNN variants: the Diagonal BiLSTM's causality and full receptive field (which the Row
LSTM lacks), normalization, the state-carrying sampler, saving, export and the --variant flag."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT
from test_pixel_models import (
    build,
    check_cache_steps,
    check_signatures_in_fresh_tensorflow,
    randomize_biases,
    saved_and_loaded,
)

from genkeras.models.pixel import DiagonalBiLSTM, PixelRNN, samplers
from genkeras.models.pixel.diagonal_bilstm import skew, unskew
from genkeras.models.pixel.pixelrnn import build_pixelrnn
from genkeras.registry import get_spec, spec_of_model
from genkeras.training.config import ConfigError, TrainConfig, resolve


def gradients_per_pixel(model, height, width, labels=None):
    """[H*W, H*W]: row t is the gradient of pixel t's logits (a random mix) w.r.t. the image."""
    x = tf.constant(np.random.default_rng(0).random((1, height, width, 1)), tf.float32)
    weights = tf.constant(np.random.default_rng(1).normal(size=model.out_channels), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        per_pixel = tf.reshape(model.logits(x, labels), [height * width, -1]) * weights
        outputs = [tf.reduce_sum(per_pixel[t]) for t in range(height * width)]
    return np.stack([tf.reshape(tape.gradient(y, x), [-1]).numpy() for y in outputs])


def blind_spots(gradients):
    """(t, s) pairs with s < t (an earlier pixel) and an exactly zero gradient."""
    earlier = np.tril(np.ones_like(gradients, bool), -1)
    return list(zip(*np.nonzero(earlier & (gradients == 0)), strict=True))


def test_skew_moves_every_diagonal_into_one_column_and_unskew_undoes_it():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2) + 1
    skewed = skew(x).numpy()
    assert skewed.shape == (2, 3, 6, 2)
    for i, j in itertools.product(range(3), range(4)):
        np.testing.assert_array_equal(skewed[:, i, i + j], x[:, i, j])
    assert np.count_nonzero(skewed) == x.size  # zeros everywhere else
    np.testing.assert_array_equal(unskew(skewed, 4).numpy(), x)


@pytest.mark.parametrize("likelihood,num_classes", [("bernoulli", 0), ("categorical", 3)])
def test_diagonal_is_causal_and_sees_every_earlier_pixel(likelihood, num_classes):
    height, width = 4, 5
    model = build(DiagonalBiLSTM, (height, width, 1), likelihood, num_classes)
    labels = tf.constant([2]) if num_classes else None
    gradients = gradients_per_pixel(model, height, width, labels)
    later = np.triu(np.ones_like(gradients, bool))  # the pixel itself and every later one
    assert np.all(gradients[later] == 0), (
        f"sees its future: {np.argwhere(later & (gradients != 0))}"
    )
    assert blind_spots(gradients) == []


def test_the_row_lstm_is_blind_in_the_corners_the_diagonal_bilstm_sees():
    height, width = 5, 6
    grads = {
        cls: gradients_per_pixel(build(cls, (height, width, 1), num_layers=1), height, width)
        for cls in (PixelRNN, DiagonalBiLSTM)
    }
    row_blind = blind_spots(grads[PixelRNN])
    # The first pixel of the last row does not see the far end of the first row ...
    assert ((height - 1) * width, width - 1) in row_blind
    assert len(row_blind) > 10
    # ... which the Diagonal BiLSTM sees, as it sees every earlier pixel, with one layer.
    assert blind_spots(grads[DiagonalBiLSTM]) == []
    assert np.all(grads[PixelRNN][np.triu(np.ones_like(grads[PixelRNN], bool))] == 0)


@pytest.mark.parametrize("num_classes", [0, 2])
def test_probabilities_of_all_binary_2x3_images_sum_to_one(num_classes):
    model = randomize_biases(build(DiagonalBiLSTM, (2, 3, 1), "bernoulli", num_classes))
    images = np.array(list(itertools.product([0.0, 1.0], repeat=6)), np.float32)
    images = images.reshape(64, 2, 3, 1)
    for label in range(max(num_classes, 1)):
        labels = np.full(64, label, np.int32) if num_classes else None
        log_p = model.log_prob(images, labels)["log_prob"].numpy().astype(np.float64)
        assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "likelihood,num_classes,extra",
    [("bernoulli", 0, {}), ("categorical", 3, {}), ("bernoulli", 2, {"num_layers": 3})],
)
def test_state_carrying_steps_give_the_full_network_logits(likelihood, num_classes, extra):
    height, width, batch = 4, 5, 3
    shape = (height, width, 1)
    model = randomize_biases(build(DiagonalBiLSTM, shape, likelihood, num_classes, **extra))
    images = model.quantize_pixels(np.random.default_rng(0).random((batch, *shape))).numpy()
    labels = tf.constant([0, 1, 2]) % num_classes if num_classes else None
    check_cache_steps(model, images, labels)


@pytest.mark.parametrize("likelihood,num_classes", [("bernoulli", 0), ("categorical", 3)])
def test_fast_sampler_draws_the_naive_images(likelihood, num_classes, monkeypatch):
    monkeypatch.setattr(samplers, "SPLIT_FROM", 5)  # 6 images run in two slices, 3 whole
    model = randomize_biases(build(DiagonalBiLSTM, (5, 4, 1), likelihood, num_classes))
    assert samplers.method_of(model, True) == "pixels"
    labels = np.arange(6) % num_classes if num_classes else None
    for seed, temperature in ((7, 1.0), (8, 0.5)):
        naive = model.sample(6, seed, temperature, labels=labels, fast=False).numpy()
        np.testing.assert_array_equal(
            model.sample(6, seed, temperature, labels=labels).numpy(), naive
        )
    other = model.sample(6, 9, labels=labels).numpy()
    assert not np.array_equal(other, naive)
    images = np.random.default_rng(0).random((3, 5, 4, 1)).astype(np.float32)
    labels = labels[:3] if num_classes else None
    for rows in (0, 2, 5):
        done = model.complete(images, rows, seed=rows, labels=labels).numpy()
        np.testing.assert_array_equal(done[:, :rows], images[:, :rows])
        naive = model.complete(images, rows, seed=rows, labels=labels, fast=False).numpy()
        np.testing.assert_array_equal(done, naive)


def test_keras_round_trip(tmp_path):
    model = build(DiagonalBiLSTM, (4, 4, 1), "categorical", num_classes=2)
    images = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
    labels = np.array([0, 1], np.int32)
    loaded = saved_and_loaded(model, images, labels, tmp_path)
    assert type(loaded) is DiagonalBiLSTM and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(
        loaded.sample(2, 3, labels=labels).numpy(), model.sample(2, 3, labels=labels).numpy()
    )


def test_variant_option_reaches_the_model_through_the_registry():
    spec = get_spec("pixelrnn")
    run = resolve(TrainConfig(model="pixelrnn", options={"variant": "diagonal"}))
    assert run.options["variant"] == "diagonal"  # metrics.json's hyperparameters keep it
    options = {**run.options, "filters": 4, "hidden": 4}
    model = spec.build((4, 4, 1), None, **options)
    assert type(model) is DiagonalBiLSTM and spec_of_model(model) is spec
    assert type(build_pixelrnn((4, 4, 1), filters=4)) is PixelRNN  # the default: row
    assert resolve(TrainConfig(model="pixelrnn")).options["variant"] == "row"
    with pytest.raises(ConfigError, match="--variant"):
        resolve(TrainConfig(model="pixelrnn", options={"variant": "column"}))
    with pytest.raises(ValueError, match="variant"):
        build_pixelrnn((4, 4, 1), variant="column")


@pytest.mark.slow
def test_signatures_in_a_fresh_tensorflow_process(tmp_path):
    model = randomize_biases(build(DiagonalBiLSTM, (4, 5, 1)))
    card = check_signatures_in_fresh_tensorflow(model, "pixelrnn", tmp_path)
    assert card["architecture"] == "DiagonalBiLSTM"  # the variant


@pytest.mark.slow
def test_train_py_diagonal_variant_end_to_end(tmp_path):
    # About 90 s on 2 CPU cores, most of it building the training graph once.
    command = [sys.executable, "train.py", "--model", "pixelrnn", "--variant", "diagonal"]
    command += ["--limit", "64", "--epochs", "1", "--filters", "4", "--hidden", "4"]
    command += ["--num-layers", "1", "--quiet", "--output-dir", str(tmp_path / "runs")]
    command += ["--no-export"]  # the export is tested above, without training
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "pixelrnn" / "metrics.json").read_text())
    assert report["hyperparameters"]["variant"] == "diagonal"  # the model card copies these
    assert 0 < report["metrics"]["test_nll_nats"] < 28 * 28 * np.log(2) + 50
    assert (tmp_path / "runs" / "pixelrnn" / "samples.png").exists()
