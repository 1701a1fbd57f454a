"""PixelCNN and PixelRNN: causality, exact normalization, seeded sampling, completion, export."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_python

from genkeras.export import export_model
from genkeras.models.pixel import PixelCNN, PixelRNN, samplers
from genkeras.registry import get_spec

TINY = {"filters": 8, "num_layers": 2, "hidden": 8}


def build(cls, shape, likelihood="bernoulli", num_classes=0, **kwargs):
    # Seeded: with tiny random ReLU heads an unlucky draw can leave a pixel's units all dead,
    # which zeroes its gradient and would fail the no-blind-spot check for no fault of the masks.
    keras.utils.set_random_seed(0)
    model = cls(shape, likelihood=likelihood, num_classes=num_classes, **{**TINY, **kwargs})
    images = np.zeros((2, *shape), np.float32)
    model((images, np.zeros(2, np.int32)) if num_classes else images)
    return model


CASES = [
    (PixelCNN, "bernoulli", 0, {"num_layers": 3}),
    (PixelCNN, "categorical", 3, {}),
    (PixelRNN, "bernoulli", 0, {}),
    (PixelRNN, "categorical", 3, {}),
]


@pytest.mark.parametrize("cls,likelihood,num_classes,extra", CASES)
def test_causality_gradient_is_zero_at_and_after_each_pixel(cls, likelihood, num_classes, extra):
    height, width = 4, 5
    model = build(cls, (height, width, 1), likelihood, num_classes, **extra)
    x = tf.constant(np.random.default_rng(0).random((1, height, width, 1)), tf.float32)
    labels = tf.constant([2]) if num_classes else None
    weights = tf.constant(np.random.default_rng(1).normal(size=model.out_channels), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = model.logits(x, labels)
        per_pixel = tf.reshape(logits, [height * width, -1]) * weights  # every logit of a pixel
        outputs = [tf.reduce_sum(per_pixel[t]) for t in range(height * width)]
    for t, output in enumerate(outputs):
        gradient = tf.reshape(tape.gradient(output, x), [-1]).numpy()
        assert np.all(gradient[t:] == 0), f"pixel {t} sees pixels {np.nonzero(gradient[t:])[0] + t}"
        if cls is PixelCNN:  # no blind spot: every earlier pixel matters
            assert np.all(gradient[:t] != 0), (
                f"pixel {t} is blind to {np.nonzero(gradient[:t] == 0)[0]}"
            )


@pytest.mark.parametrize("cls,num_classes", [(PixelCNN, 0), (PixelCNN, 2), (PixelRNN, 0)])
def test_probabilities_of_all_binary_2x3_images_sum_to_one(cls, num_classes):
    model = build(cls, (2, 3, 1), "bernoulli", num_classes)
    images = np.array(list(itertools.product([0.0, 1.0], repeat=6)), np.float32).reshape(
        64, 2, 3, 1
    )
    for label in range(max(num_classes, 1)):
        labels = np.full(64, label, np.int32) if num_classes else None
        log_p = model.log_prob(images, labels)["log_prob"].numpy().astype(np.float64)
        assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)


def test_categorical_log_prob_and_bits_per_dim():
    model = build(PixelCNN, (3, 3, 1), "categorical")
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 3, 1)).astype(np.float32) / 255
    out = model.log_prob(images)
    logits = model.logits(images).numpy()  # [4, 3, 3, 1, 256]
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    index = np.round(images * 255).astype(int)
    expected = np.take_along_axis(log_softmax, index[..., None], -1).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(out["log_prob"].numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(out["bits_per_dim"].numpy(), -expected / (9 * np.log(2)), rtol=1e-4)


@pytest.mark.parametrize(
    "cls,likelihood", [(PixelCNN, "bernoulli"), (PixelCNN, "categorical"), (PixelRNN, "bernoulli")]
)
def test_sampling_is_deterministic_per_seed_and_fast_equals_naive(cls, likelihood):
    model = build(cls, (5, 4, 1), likelihood)
    fast = samplers.compiled_sampler(model, fast=True)
    naive = samplers.compiled_sampler(model, fast=False)
    first, again, other = fast(6, 7, 1.0).numpy(), fast(6, 7, 1.0).numpy(), fast(6, 8, 1.0).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(first, naive(6, 7, 1.0).numpy())
    levels = first * (1 if likelihood == "bernoulli" else 255)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    # temperature -> 0 is (nearly) the mode: less diverse than T=1
    cold = fast(6, 7, 0.01).numpy()
    assert cold.shape == first.shape


def test_completion_keeps_the_given_rows_untouched():
    model = build(PixelCNN, (6, 5, 1))
    images = np.random.default_rng(0).random((3, 6, 5, 1)).astype(np.float32)
    for rows in (0, 2, 6):
        done = model.complete(images, rows, seed=1).numpy()
        np.testing.assert_array_equal(done[:, :rows], images[:, :rows])
        assert set(np.unique(done[:, rows:])) <= {0.0, 1.0}
    np.testing.assert_array_equal(
        model.complete(images, 3, seed=4).numpy(),
        model.complete(images, 3, seed=4, fast=False).numpy(),
    )
    # completing from zero rows is sampling with the same seed
    np.testing.assert_array_equal(
        model.complete(images, 0, seed=5).numpy(), model.sample(3, 5).numpy()
    )


def randomize_biases(model, scale=0.3):
    """Fresh layers have zero biases; the per-pixel cache folds them into its matmuls, so the
    tests that compare it with the naive loop give them values."""
    rng = np.random.default_rng(11)
    for weight in model.weights:
        if weight.path.endswith("bias"):
            weight.assign(rng.normal(size=weight.shape).astype(np.float32) * scale)
    return model


def test_a_deepened_pixelcnn_starts_with_the_logits_of_the_shallower_one():
    """`grow_from` copies every layer by name and zeroes only the new blocks' output
    projections: the logits stay those of the trained model, the new vertical layers keep
    their random start, and another option or a deeper source is refused by name."""
    images = (np.random.default_rng(2).random((3, 6, 5, 1)) < 0.4).astype(np.float32)
    shallow = randomize_biases(build(PixelCNN, (6, 5, 1)))
    deep = build(PixelCNN, (6, 5, 1), num_layers=4)
    deep.grow_from(shallow)
    np.testing.assert_allclose(deep.logits(images), shallow.logits(images), atol=1e-5)
    layers = {layer.name: layer for layer in deep.layers}
    assert not np.any(layers["h_out_3"].kernel.numpy())
    assert np.any(layers["v_conv_3"].kernel.numpy()) and np.any(layers["h_out_1"].kernel.numpy())
    with pytest.raises(ValueError, match="its filters is 8, this run's 6"):
        build(PixelCNN, (6, 5, 1), num_layers=4, filters=6).grow_from(shallow)
    with pytest.raises(ValueError, match="pass --num-layers 4 or more"):
        shallow.grow_from(deep)


def check_cache_steps(model, images, labels=None):
    """Runs a model's per-pixel cache steps by hand over every pixel of `images` (fed the true
    previous pixels) and checks each pixel's logits against the full network's."""
    batch, height, width, _ = images.shape
    full = model.logits(images, labels).numpy().reshape(batch, height, width, -1)
    encoded = model.encode_input(images).numpy()[..., 0]  # [N, H, W]
    constants = model.cache_constants(batch, labels)
    cache, above = model.row_cache(batch), tf.zeros([width, batch])
    for i in range(height):
        columns, cache = model.row_step(cache, above, constants)
        pixel_cache, previous = model.pixel_start(batch), tf.zeros([batch, 1])
        for j in range(width):
            logits, pixel_cache = model.pixel_step(pixel_cache, columns, j, previous, constants)
            np.testing.assert_allclose(logits.numpy(), full[:, i, j], atol=2e-5, rtol=0)
            previous = tf.constant(encoded[:, i, j, None])
        above = tf.constant(encoded[:, i].T)


PIXEL_CACHE_CASES = [
    ("bernoulli", 0, {"num_layers": 3}),
    ("bernoulli", 3, {}),
    ("categorical", 0, {}),
    ("categorical", 3, {}),
    ("bernoulli", 2, {"kernel_size": 5, "first_kernel_size": 3}),  # 3-tap caches
    ("bernoulli", 0, {"first_kernel_size": 1, "num_layers": 1}),
]


@pytest.mark.parametrize("likelihood,num_classes,extra", PIXEL_CACHE_CASES)
def test_pixel_cache_steps_give_the_full_network_logits(likelihood, num_classes, extra):
    height, width, batch = 5, 6, 3
    model = randomize_biases(build(PixelCNN, (height, width, 1), likelihood, num_classes, **extra))
    rng = np.random.default_rng(0)
    images = np.round(rng.random((batch, height, width, 1)) * 255).astype(np.float32) / 255
    labels = tf.constant([0, 1, 2][:batch]) % max(num_classes, 1) if num_classes else None
    check_cache_steps(model, model.quantize_pixels(images).numpy(), labels)


@pytest.mark.parametrize("likelihood,num_classes,extra", PIXEL_CACHE_CASES)
def test_pixel_cache_draws_the_naive_images(likelihood, num_classes, extra, monkeypatch):
    model = randomize_biases(build(PixelCNN, (5, 4, 1), likelihood, num_classes, **extra))
    labels = np.arange(6) % num_classes if num_classes else None
    # 6 and 5 images: the per-pixel cache's chains (samplers.CHAINS) take equal and unequal
    # slices of the batch; 1 image stays whole.
    monkeypatch.setattr(samplers, "SPLIT_FROM", 5)
    for num, seed, temperature in ((6, 7, 1.0), (5, 8, 0.5), (1, 9, 1.0)):
        some = None if labels is None else labels[:num]
        naive = model.sample(num, seed, temperature, labels=some, fast=False).numpy()
        for fast in ("pixels", "rows", True):
            drawn = model.sample(num, seed, temperature, labels=some, fast=fast).numpy()
            np.testing.assert_array_equal(drawn, naive, err_msg=f"sampler {fast}, {num} images")
    assert model.sample(0, 1, labels=labels[:0] if num_classes else None).shape == (0, 5, 4, 1)


@pytest.mark.parametrize("likelihood,num_classes", [("bernoulli", 0), ("categorical", 3)])
def test_pixel_cache_completion_keeps_the_given_rows_and_equals_naive(
    likelihood, num_classes, monkeypatch
):
    monkeypatch.setattr(samplers, "SPLIT_FROM", 2)  # 3 images: two slices, given rows in both
    model = randomize_biases(build(PixelCNN, (6, 5, 1), likelihood, num_classes))
    images = np.random.default_rng(0).random((3, 6, 5, 1)).astype(np.float32)
    labels = np.array([2, 0, 1]) % max(num_classes, 1) if num_classes else None
    for rows in (0, 1, 4, 6):
        done = model.complete(images, rows, seed=rows, labels=labels, fast="pixels").numpy()
        np.testing.assert_array_equal(done[:, :rows], images[:, :rows])
        naive = model.complete(images, rows, seed=rows, labels=labels, fast=False).numpy()
        np.testing.assert_array_equal(done, naive)
    np.testing.assert_array_equal(
        model.complete(images, 0, seed=5, labels=labels).numpy(),
        model.sample(3, 5, labels=labels).numpy(),
    )


def test_sampler_choice():
    cnn, rnn = build(PixelCNN, (3, 3, 1)), build(PixelRNN, (3, 3, 1))
    assert samplers.method_of(cnn, True) == "pixels" and samplers.method_of(rnn, True) == "rows"
    assert samplers.method_of(cnn, False) == "naive" and samplers.method_of(cnn, "rows") == "rows"
    with pytest.raises(ValueError):
        samplers.method_of(rnn, "pixels")


@pytest.mark.slow
def test_pixel_cache_draws_the_naive_images_at_full_image_size():
    # An untrained 28x28 model of 7 gated blocks (half the shipped depth, which would make the
    # naive loop too slow for the suite): 16 images, as benchmarks/pixel_sampling.py draws.
    keras.utils.set_random_seed(1)
    model = PixelCNN((28, 28, 1), filters=32, num_layers=7, hidden=64)
    model(np.zeros((1, 28, 28, 1), np.float32))
    fast = samplers.compiled_sampler(model, fast="pixels")(16, 0, 1.0).numpy()
    naive = samplers.compiled_sampler(model, fast=False)(16, 0, 1.0).numpy()
    np.testing.assert_array_equal(fast, naive)
    assert 0.05 < fast.mean() < 0.95  # real samples, not a constant image


def saved_and_loaded(model, images, labels, tmp_path):
    """`model` saved as .keras and loaded again, once its `log_prob` of `images` matched."""
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        loaded.log_prob(images, labels)["log_prob"],
        model.log_prob(images, labels)["log_prob"],
        rtol=1e-6,
    )
    return loaded


@pytest.mark.parametrize("cls", [PixelCNN, PixelRNN])
def test_keras_round_trip(cls, tmp_path):
    model = build(cls, (4, 4, 1), "categorical", num_classes=2)
    images = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
    labels = np.array([0, 1], np.int32)
    loaded = saved_and_loaded(model, images, labels, tmp_path)
    assert type(loaded) is cls and loaded.likelihood == "categorical"


def check_signatures_in_fresh_tensorflow(model, name, tmp_path) -> dict:
    """Exports `model` as registry model `name`, calls `log_prob`, `sample` and `complete` in a
    process that imports only TensorFlow and numpy, checks them against the model's own
    methods and returns the model card."""
    path = export_model(model, get_spec(name), tmp_path, version=1)
    card = json.loads((path / "model_card.json").read_text())
    assert set(card["signatures"]) == {"sample", "log_prob", "complete", "serving_default"}

    images = (np.random.default_rng(0).random((3, 4, 5, 1)) > 0.5).astype(np.float32)
    np.savez(tmp_path / "images.npz", images=images)
    # One child process that imports only tensorflow and numpy calls all three signatures.
    result = run_python(
        """
        import sys, numpy as np, tensorflow as tf
        path, work = sys.argv[1:3]
        loaded = tf.saved_model.load(path, tags=["serve"])
        images = tf.constant(np.load(work + "/images.npz")["images"])
        s = loaded.signatures
        out = {
            "log_prob": s["log_prob"](images=images)["log_prob"],
            "sample": s["sample"](num=tf.constant(4), seed=tf.constant(3),
                                  temperature=tf.constant(1.0))["images"],
            "complete": s["complete"](images=images, rows=tf.constant(2),
                                      seed=tf.constant(9))["images"],
        }
        assert "genkeras" not in sys.modules, "the export needed genkeras"
        np.savez(work + "/outputs.npz", **{k: v.numpy() for k, v in out.items()})
        """,
        path,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = dict(np.load(tmp_path / "outputs.npz"))
    np.testing.assert_allclose(out["log_prob"], model.log_prob(images)["log_prob"], rtol=1e-5)
    np.testing.assert_array_equal(out["sample"], model.sample(4, 3).numpy())
    np.testing.assert_array_equal(out["complete"][:, :2], images[:, :2])
    np.testing.assert_array_equal(out["complete"], model.complete(images, 2, 9).numpy())
    return card


@pytest.mark.slow
def test_signatures_in_a_fresh_tensorflow_process(tmp_path):
    check_signatures_in_fresh_tensorflow(build(PixelCNN, (4, 5, 1)), "pixelcnn", tmp_path)


def train_pixelcnn(tmp_path, *args) -> dict:
    """Runs `train.py --model pixelcnn ARGS` on MNIST; returns its metrics.json."""
    command = [sys.executable, "train.py", "--model", "pixelcnn", *map(str, args)]
    command += ["--quiet", "--output-dir", str(tmp_path / "runs")]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "runs" / "pixelcnn" / "metrics.json").read_text())


@pytest.mark.slow
def test_train_py_end_to_end_on_a_small_subset(tmp_path):
    report = train_pixelcnn(
        *(tmp_path, "--limit", 256, "--epochs", 2, "--filters", 8, "--num-layers", 2),
        *("--hidden", 8, "--time-budget", 5, "--export-dir", tmp_path / "savedmodels"),
    )
    assert 0 < report["metrics"]["test_nll_nats"] < 28 * 28 * np.log(2) + 50
    for name in ("samples.png", "completions.png", "pixelcnn.keras"):
        assert (tmp_path / "runs" / "pixelcnn" / name).exists()
    assert (tmp_path / "savedmodels" / "pixelcnn" / "1" / "saved_model.pb").exists()


@pytest.mark.slow
def test_train_py_conditional_categorical_pixelcnn(tmp_path):
    report = train_pixelcnn(
        *(tmp_path, "--limit", 64, "--epochs", 1, "--likelihood", "categorical"),
        *("--num-classes", 10, "--filters", 4, "--num-layers", 1, "--hidden", 4, "--no-export"),
    )
    assert 6 < report["metrics"]["test_bits_per_dim"] < 9  # ~8 bits/dim: barely trained
    assert report["hyperparameters"]["num_classes"] == 10


@pytest.mark.slow
def test_train_py_deepens_a_trained_pixelcnn_with_initial_weights(tmp_path):
    """--initial-weights with a larger --num-layers: at a negligible learning rate the deeper
    run tests at the shallow run's NLL (the same function); other options are refused."""
    tiny = ("--limit", 128, "--epochs", 1, "--filters", 8, "--hidden", 8, "--no-export")
    shallow = train_pixelcnn(tmp_path / "a", *tiny, "--num-layers", 1)
    start = tmp_path / "a" / "runs" / "pixelcnn" / "pixelcnn.keras"
    deep = train_pixelcnn(
        *(tmp_path / "b", *tiny, "--num-layers", 3, "--initial-weights", start),
        *("--learning-rate", "1e-12"),
    )
    assert deep["hyperparameters"]["num_layers"] == 3
    nll = [report["metrics"]["test_nll_nats"] for report in (shallow, deep)]
    assert nll[1] == pytest.approx(nll[0], abs=1e-3)
    refused = subprocess.run(
        [sys.executable, "train.py", "--model", "pixelcnn", *map(str, tiny)]
        + ["--filters", "4", "--initial-weights", str(start), "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "its filters is 8, this run's 4" in refused.stderr.splitlines()[-1]


@pytest.mark.slow
def test_pixel_sampling_benchmark_refuses_what_it_cannot_time_before_any_work():
    script = ROOT / "benchmarks" / "pixel_sampling.py"
    done = subprocess.run(
        [sys.executable, str(script), "--chains", "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "--chains, --num and --repeats must be at least 1" in done.stderr
    model = ROOT / "genkeras" / "pretrained" / "pixelrnn.keras"
    done = subprocess.run(
        [sys.executable, str(script), "--model", str(model), "--stages"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "--stages times a grayscale PixelCNN's cache steps, not" in done.stderr


def test_pixel_serving_benchmark_refuses_a_missing_version_before_starting_a_server(tmp_path):
    script = ROOT / "benchmarks" / "pixel_serving.py"
    command = [sys.executable, str(script), "--base", str(tmp_path), "--versions", "7"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"no SavedModel in {tmp_path / '7'}: pass exported versions" in done.stderr


@pytest.mark.slow
def test_exports_trace_a_pixel_loop_per_slice_of_the_batch(tmp_path, monkeypatch):
    # The served graph is the in-process one: `samplers.CHAINS` slices, one pixel loop each.
    from tensorflow.core.protobuf import saved_model_pb2

    def loops(chains):
        monkeypatch.setattr(samplers, "CHAINS", chains)
        path = export_model(
            build(PixelCNN, (4, 4, 1)), get_spec("pixelcnn"), tmp_path / str(chains)
        )
        graph = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        functions = graph.meta_graphs[0].graph_def.library.function
        return sum(node.op == "StatelessWhile" for f in functions for node in f.node_def)

    assert loops(2) > loops(1)
