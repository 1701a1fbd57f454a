"""Colour PixelRNN (Row LSTM and Diagonal BiLSTM): R, then G, then B per pixel (channel-group
masks, PixelRNN paper section 3.4), each a softmax over the levels; causality across channels,
normalization, the samplers, saving, export and train.py on TFDS's mock CIFAR-10."""

from __future__ import annotations

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import call_signatures_in_fresh_tensorflow
from test_pixel_colour import assert_signatures_answer_as_the_model
from test_pixel_models import randomize_biases, saved_and_loaded

from genkeras import data
from genkeras.export import export_model
from genkeras.models.pixel import DiagonalBiLSTM, PixelRNN, samplers
from genkeras.registry import get_spec
from genkeras.training.config import TrainConfig, resolve

TINY = {"filters": 6, "num_layers": 2, "hidden": 6}
VARIANTS = [PixelRNN, DiagonalBiLSTM]
FAST = {PixelRNN: "rows", DiagonalBiLSTM: "pixels"}  # each variant's fast sampler


def colour(cls, shape, likelihood="categorical", num_classes=0, **kwargs):
    """A tiny colour model of class `cls`, built, with random biases (seeded)."""
    keras.utils.set_random_seed(0)
    model = cls(shape, likelihood=likelihood, num_classes=num_classes, **{**TINY, **kwargs})
    images = np.zeros((2, *shape), np.float32)
    model((images, np.zeros(2, np.int32)) if num_classes else images)
    return randomize_biases(model)


def gradients_per_draw(model, images, labels=None):
    """[draws, images, inputs]: the gradient of each draw's logits (s = t * C + c, a random mix
    of its levels) w.r.t. every input value (same order), per image."""
    batch = images.shape[0]
    size = int(np.prod(images.shape[1:]))
    x = tf.constant(images, tf.float32)
    weights = tf.constant(np.random.default_rng(1).normal(size=model.levels), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        per_draw = tf.reshape(model.logits(x, labels), [batch, size, -1]) * weights
        outputs = [tf.reduce_sum(per_draw[:, s]) for s in range(size)]
    return np.stack(
        [tf.reshape(tape.gradient(output, x), [batch, -1]).numpy() for output in outputs]
    )


@pytest.mark.parametrize("cls,num_classes", [(PixelRNN, 0), (DiagonalBiLSTM, 2)])
def test_each_channel_sees_earlier_pixels_and_earlier_channels_only(cls, num_classes):
    height, width, channels, batch = 3, 3, 3, 4
    model = colour(
        cls, (height, width, channels), num_classes=num_classes, levels=5, filters=24, hidden=24
    )
    # Several images and 8 units per channel group: with fewer, all of a group's features can
    # be negative at a pixel (dead in the head's ReLU), zeroing a gradient for no fault of the
    # masks (at 4 units, the Diagonal BiLSTM's blue at column 0 is blind to green so).
    images = np.random.default_rng(0).random((batch, height, width, channels))
    labels = tf.constant([1] * batch) if num_classes else None
    gradients = gradients_per_draw(model, images, labels)
    for s in range(height * width * channels):
        # its own channel and the later ones of its pixel, and every later pixel: zero
        seen = np.nonzero(np.any(gradients[s, :, s:] != 0, axis=0))[0] + s
        assert not len(seen), f"draw {s} sees {seen}"
        # the pixel's earlier channels: nonzero (both variants)
        pixel = s - s % channels
        blind = np.nonzero(np.all(gradients[s, :, pixel:s] == 0, axis=0))[0] + pixel
        assert not len(blind), f"draw {s} is blind to its pixel's {blind}"
        if cls is DiagonalBiLSTM:  # no blind spot at all
            blind = np.nonzero(np.all(gradients[s, :, :s] == 0, axis=0))[0]
            assert not len(blind), f"draw {s} is blind to {blind}"
    # spelled out for one pixel: red sees none of it, green its red, not its green or blue
    t = 4 * channels
    red, green = gradients[t], gradients[t + 1]
    assert np.all(red[:, t:] == 0)
    assert np.any(green[:, t] != 0) and np.all(green[:, t + 1 :] == 0)


@pytest.mark.parametrize("cls", VARIANTS)
def test_probabilities_of_all_tiny_colour_images_sum_to_one(cls):
    model = colour(cls, (1, 2, 3), levels=4)
    values = np.arange(4, dtype=np.float32) / 3
    images = np.array(list(itertools.product(values, repeat=6)), np.float32).reshape(-1, 1, 2, 3)
    assert len(images) == 4**6
    log_p = model.log_prob(images)["log_prob"].numpy().astype(np.float64)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)


SAMPLER_CASES = [
    (PixelRNN, "categorical", 256, 0, {}),
    (PixelRNN, "bernoulli", 2, 2, {"num_layers": 1, "kernel_size": 5}),
    (DiagonalBiLSTM, "categorical", 256, 3, {"num_layers": 3}),
]


@pytest.mark.parametrize("cls,likelihood,levels,num_classes,extra", SAMPLER_CASES)
def test_every_sampler_draws_the_naive_images(
    cls, likelihood, levels, num_classes, extra, monkeypatch
):
    # The row cache (Row LSTM) and the state-carrying sampler (Diagonal BiLSTM), as `fast=True`
    # picks them, against the naive loop: sampling, then completion (one traced graph each).
    monkeypatch.setattr(samplers, "SPLIT_FROM", 4)  # 4 images: two slices of the batch
    model = colour(cls, (2, 3, 3), likelihood, num_classes, levels=levels, **extra)
    assert samplers.method_of(model, True) == FAST[cls]
    labels = np.arange(4) % num_classes if num_classes else None
    for seed, temperature in ((7, 1.0), (8, 0.5)):
        naive = model.sample(4, seed, temperature, labels=labels, fast=False).numpy()
        assert naive.shape == (4, 2, 3, 3)
        grid = naive * (levels - 1)
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-4)
        drawn = model.sample(4, seed, temperature, labels=labels).numpy()
        np.testing.assert_array_equal(drawn, naive)
    assert not np.array_equal(drawn, model.sample(4, 9, 0.5, labels=labels).numpy())
    images = np.random.default_rng(0).random((4, 2, 3, 3)).astype(np.float32)
    done = model.complete(images, 1, seed=3, labels=labels).numpy()
    np.testing.assert_array_equal(done[:, :1], images[:, :1])
    naive = model.complete(images, 1, seed=3, labels=labels, fast=False).numpy()
    np.testing.assert_array_equal(done, naive)


@pytest.mark.parametrize("cls", VARIANTS)
def test_keras_round_trip(cls, tmp_path):
    model = colour(cls, (3, 3, 3), num_classes=2, levels=16)
    images = np.random.default_rng(0).random((2, 3, 3, 3)).astype(np.float32)
    labels = np.array([0, 1], np.int32)
    loaded = saved_and_loaded(model, images, labels, tmp_path)
    assert type(loaded) is cls and loaded.levels == 16 and loaded.image_shape[-1] == 3


def test_grayscale_models_keep_their_layers():
    # The colour layers exist only for colour images: grayscale weights (and saved models)
    # are what they were.
    for cls in VARIANTS:
        gray, rgb = colour(cls, (3, 3, 1)), colour(cls, (3, 3, 3))
        gray_names = {w.path.split("/", 1)[1] for w in gray.weights}  # less the model's name
        extra = {w.path.split("/", 1)[1] for w in rgb.weights} - gray_names
        assert extra == {"input_self/kernel" if cls is PixelRNN else "forward_self/kernel"}


@pytest.mark.parametrize("cls", VARIANTS)
@pytest.mark.slow
def test_signatures_in_a_fresh_tensorflow_process(cls, tmp_path):
    model = colour(cls, (2, 3, 3))
    path = export_model(model, get_spec("pixelrnn"), tmp_path, version=1)
    card = json.loads((path / "model_card.json").read_text())
    assert set(card["signatures"]) == {"sample", "log_prob", "complete", "serving_default"}
    assert card["architecture"] == cls.__name__
    images = np.random.default_rng(0).random((2, 2, 3, 3)).astype(np.float32)
    out = call_signatures_in_fresh_tensorflow(
        path,
        {
            "log_prob": {"images": images},
            "sample": {"num": np.int32(3), "seed": np.int32(4), "temperature": np.float32(1)},
            "complete": {"images": images, "rows": np.int32(1), "seed": np.int32(9)},
        },
    )
    assert_signatures_answer_as_the_model(out, model, images)


def test_pixelrnn_accepts_colour_data():
    for variant in ("row", "diagonal"):
        options = {"variant": variant, "levels": 16}
        run = resolve(TrainConfig(model="pixelrnn", dataset="cifar10", options=options))
        assert run.options["levels"] == 16 and run.info.image_shape == (32, 32, 3)
    with pytest.raises(ValueError, match="filters and hidden >= 3"):
        PixelRNN((4, 4, 3), filters=2, num_layers=1, hidden=4)
    with pytest.raises(ValueError, match="RGB"):
        DiagonalBiLSTM((4, 4, 2), filters=4, num_layers=1, hidden=4)


@pytest.mark.slow
def test_train_py_on_mock_cifar10(tmp_path, monkeypatch):
    # Minutes on 2 busy CPU cores: the 32x32 Row LSTM's graphs, 16 samples, completions. The
    # export is tested above, without training.
    import tensorflow_datasets as tfds

    from genkeras.commands import train

    monkeypatch.delenv(data.MANUAL_DIR_ENV, raising=False)
    argv = ["--model", "pixelrnn", "--dataset", "cifar10", "--likelihood", "categorical"]
    argv += ["--limit", "8", "--epochs", "1", "--batch-size", "4", "--filters", "3"]
    argv += ["--num-layers", "1", "--hidden", "3", "--quiet"]
    argv += ["--output-dir", str(tmp_path / "runs"), "--no-export"]
    with tfds.testing.mock_data(num_examples=8):
        assert train.main(argv) == 0
    run = tmp_path / "runs" / "pixelrnn"
    report = json.loads((run / "metrics.json").read_text())
    assert 6 < report["metrics"]["test_bits_per_dim"] < 9  # ~8 bits/dim: barely trained
    assert report["hyperparameters"]["levels"] == 256
    for name in ("samples.png", "completions.png", "pixelrnn.keras"):
        assert (run / name).exists()
    loaded = keras.saving.load_model(run / "pixelrnn.keras")
    assert type(loaded) is PixelRNN and loaded.image_shape == (32, 32, 3)
    assert loaded.out_channels == 3 * 256
