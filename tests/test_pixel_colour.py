"""Colour PixelCNN: R, then G, then B per pixel (channel-group masks), each a softmax over the
levels; causality across channels, normalization, the samplers, saving, export, train.py on
TFDS's mock CIFAR-10, and the check of --levels. (Colour PixelRNN: test_pixelrnn_colour.py.)"""

from __future__ import annotations

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import call_signatures_in_fresh_tensorflow
from test_pixel_models import randomize_biases, saved_and_loaded

from genkeras import data
from genkeras.export import export_model
from genkeras.models.pixel import PixelCNN, samplers
from genkeras.models.pixel.channels import channel_mask
from genkeras.registry import get_spec
from genkeras.training.config import ConfigError, TrainConfig, resolve

TINY = {"filters": 6, "num_layers": 2, "hidden": 6}


def colour(shape, likelihood="categorical", num_classes=0, **kwargs):
    keras.utils.set_random_seed(0)
    model = PixelCNN(shape, likelihood=likelihood, num_classes=num_classes, **{**TINY, **kwargs})
    images = np.zeros((2, *shape), np.float32)
    model((images, np.zeros(2, np.int32)) if num_classes else images)
    return randomize_biases(model)


def test_masks_a_and_b():
    a = channel_mask((1, 1, 3, 6), (0, 0), 3, "A")[0, 0]  # inputs R, G, B -> groups of 2
    np.testing.assert_array_equal(a, [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0] * 6])
    b = channel_mask((1, 2, 3, 6), (0, 1), 3, "B", out_halves=2)
    np.testing.assert_array_equal(b[0, 0], np.ones((3, 6)))  # the pixel to the left: all
    np.testing.assert_array_equal(b[0, 1], [[1] * 6, [0, 1, 1, 0, 1, 1], [0, 0, 1, 0, 0, 1]])


@pytest.mark.parametrize("num_classes", [0, 3])
def test_each_channel_sees_earlier_pixels_and_earlier_channels_only(num_classes):
    height, width, channels, batch = 3, 3, 3, 8
    model = colour(
        (height, width, channels), num_classes=num_classes, levels=5, filters=24, hidden=24
    )
    # Several images: with a few ReLU units per channel group, all of a group's can be dead
    # at a pixel of one image, zeroing a gradient for no fault of the masks.
    x = tf.constant(np.random.default_rng(0).random((batch, height, width, channels)), tf.float32)
    labels = tf.constant([1] * batch) if num_classes else None
    weights = tf.constant(np.random.default_rng(1).normal(size=5), tf.float32)
    size = height * width * channels
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        per_draw = tf.reshape(model.logits(x, labels), [batch, size, -1]) * weights
        outputs = [tf.reduce_sum(per_draw[:, s]) for s in range(size)]  # draw s = t * 3 + c
    gradients = np.stack(
        [tf.reshape(tape.gradient(output, x), [batch, -1]).numpy() for output in outputs]
    )  # [draw, image, input value]
    for s in range(size):
        # its own channel and the later ones of its pixel, and every later pixel: zero
        seen = np.nonzero(np.any(gradients[s, :, s:] != 0, axis=0))[0] + s
        assert not len(seen), f"draw {s} sees {seen}"
        blind = np.nonzero(np.all(gradients[s, :, :s] == 0, axis=0))[0]
        assert not len(blind), f"draw {s} is blind to {blind}"
    # spelled out for one pixel: green sees its red, not its own green or blue
    t = 4 * channels
    green = gradients[t + 1]
    assert np.any(green[:, t] != 0) and np.all(green[:, t + 1 :] == 0)


@pytest.mark.parametrize(
    "likelihood,levels,num_classes", [("categorical", 4, 0), ("bernoulli", 2, 2)]
)
def test_probabilities_of_all_tiny_colour_images_sum_to_one(likelihood, levels, num_classes):
    model = colour((1, 2, 3), likelihood, num_classes, levels=levels)
    values = np.arange(levels, dtype=np.float32) / (levels - 1)
    images = np.array(list(itertools.product(values, repeat=6)), np.float32).reshape(-1, 1, 2, 3)
    assert len(images) == levels**6
    for label in range(max(num_classes, 1)):
        labels = np.full(len(images), label, np.int32) if num_classes else None
        log_p = model.log_prob(images, labels)["log_prob"].numpy().astype(np.float64)
        assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)


def test_log_prob_is_the_sum_over_channels_and_bits_per_dim():
    model = colour((2, 3, 3))
    images = np.random.default_rng(0).integers(0, 256, (4, 2, 3, 3)).astype(np.float32) / 255
    logits = model.logits(images).numpy()
    assert logits.shape == (4, 2, 3, 3, 256)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    index = np.round(images * 255).astype(int)
    expected = np.take_along_axis(log_softmax, index[..., None], -1).reshape(4, -1).sum(-1)
    out = model.log_prob(images)
    np.testing.assert_allclose(out["log_prob"].numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(out["bits_per_dim"].numpy(), -expected / (18 * np.log(2)), rtol=1e-4)


SAMPLER_CASES = [
    ("categorical", 256, 0, {}),
    ("categorical", 4, 3, {"kernel_size": 5, "first_kernel_size": 3}),
    ("bernoulli", 2, 0, {"num_layers": 1}),
]


@pytest.mark.parametrize("likelihood,levels,num_classes,extra", SAMPLER_CASES)
def test_every_sampler_draws_the_naive_images(likelihood, levels, num_classes, extra, monkeypatch):
    monkeypatch.setattr(samplers, "SPLIT_FROM", 4)  # 5 images: two slices of the batch
    model = colour((4, 3, 3), likelihood, num_classes, levels=levels, **extra)
    labels = np.arange(5) % num_classes if num_classes else None
    for seed, temperature in ((7, 1.0), (8, 0.5)):
        naive = model.sample(5, seed, temperature, labels=labels, fast=False).numpy()
        assert naive.shape == (5, 4, 3, 3)
        grid = naive * (levels - 1)
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-4)
        for fast in ("pixels", "rows", True):
            drawn = model.sample(5, seed, temperature, labels=labels, fast=fast).numpy()
            np.testing.assert_array_equal(drawn, naive, err_msg=f"sampler {fast}")
    again = model.sample(5, 7, labels=labels).numpy()
    np.testing.assert_array_equal(again, model.sample(5, 7, labels=labels, fast=False).numpy())
    assert not np.array_equal(again, model.sample(5, 9, labels=labels).numpy())


def test_completion_keeps_the_given_rows_and_equals_naive():
    model = colour((4, 3, 3), levels=8)
    images = np.random.default_rng(0).random((3, 4, 3, 3)).astype(np.float32)
    for rows in (0, 1, 4):
        done = model.complete(images, rows, seed=rows, fast="pixels").numpy()
        np.testing.assert_array_equal(done[:, :rows], images[:, :rows])
        np.testing.assert_array_equal(done, model.complete(images, rows, rows, fast=False).numpy())
        np.testing.assert_array_equal(done, model.complete(images, rows, rows, fast="rows").numpy())
    np.testing.assert_array_equal(
        model.complete(images, 0, seed=5).numpy(), model.sample(3, 5).numpy()
    )


def test_keras_round_trip(tmp_path):
    model = colour((3, 3, 3), num_classes=2, levels=16)
    images = np.random.default_rng(0).random((2, 3, 3, 3)).astype(np.float32)
    labels = np.array([0, 1], np.int32)
    loaded = saved_and_loaded(model, images, labels, tmp_path)
    assert type(loaded) is PixelCNN and loaded.levels == 16 and loaded.image_shape[-1] == 3
    np.testing.assert_array_equal(
        loaded.sample(2, 3, labels=labels).numpy(), model.sample(2, 3, labels=labels).numpy()
    )


@pytest.mark.slow
def test_signatures_in_a_fresh_tensorflow_process(tmp_path):
    model = colour((3, 4, 3))
    path = export_model(model, get_spec("pixelcnn"), tmp_path, version=1)
    card = json.loads((path / "model_card.json").read_text())
    assert set(card["signatures"]) == {"sample", "log_prob", "complete", "serving_default"}
    images = np.random.default_rng(0).random((2, 3, 4, 3)).astype(np.float32)
    scalar = {"rows": np.int32(1), "seed": np.int32(9)}
    out = call_signatures_in_fresh_tensorflow(
        path,
        {
            "log_prob": {"images": images},
            "sample": {"num": np.int32(3), "seed": np.int32(4), "temperature": np.float32(1)},
            "complete": {"images": images, **scalar},
        },
    )
    np.testing.assert_allclose(
        out["log_prob"]["bits_per_dim"], model.log_prob(images)["bits_per_dim"], rtol=1e-5
    )
    assert_signatures_answer_as_the_model(out, model, images)


def assert_signatures_answer_as_the_model(out, model, images):
    """The exported `log_prob`, `sample` (num 3, seed 4) and `complete` (rows 1, seed 9)
    answers in `out` equal the model's own."""
    np.testing.assert_allclose(
        out["log_prob"]["log_prob"], model.log_prob(images)["log_prob"], rtol=1e-5
    )
    np.testing.assert_array_equal(out["sample"]["images"], model.sample(3, 4).numpy())
    np.testing.assert_array_equal(out["complete"]["images"][:, :1], images[:, :1])
    np.testing.assert_array_equal(out["complete"]["images"], model.complete(images, 1, 9).numpy())


def test_levels_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="levels"):
        resolve(TrainConfig(model="pixelcnn", options={"levels": 1}))
    run = resolve(TrainConfig(model="pixelcnn", dataset="cifar10", options={"levels": 16}))
    assert run.options["levels"] == 16 and run.info.image_shape == (32, 32, 3)


@pytest.mark.slow
def test_train_py_on_mock_cifar10(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from genkeras.commands import train

    monkeypatch.delenv(data.MANUAL_DIR_ENV, raising=False)
    argv = ["--model", "pixelcnn", "--dataset", "cifar10", "--likelihood", "categorical"]
    argv += ["--limit", "8", "--epochs", "1", "--batch-size", "4", "--filters", "3"]
    argv += ["--num-layers", "1", "--hidden", "3", "--quiet"]
    argv += ["--output-dir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "saved")]
    with tfds.testing.mock_data(num_examples=8):
        assert train.main(argv) == 0
    run = tmp_path / "runs" / "pixelcnn"
    report = json.loads((run / "metrics.json").read_text())
    assert 6 < report["metrics"]["test_bits_per_dim"] < 9  # ~8 bits/dim: barely trained
    assert report["hyperparameters"]["levels"] == 256
    for name in ("samples.png", "completions.png", "pixelcnn.keras"):
        assert (run / name).exists()
    loaded = keras.saving.load_model(run / "pixelcnn.keras")
    assert loaded.image_shape == (32, 32, 3) and loaded.out_channels == 3 * 256
    assert (tmp_path / "saved" / "pixelcnn" / "1" / "saved_model.pb").exists()
