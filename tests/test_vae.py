"""The VAE family: losses, sampling, likelihood bounds, warm-up, signatures, train.py, editing."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import call_signatures_in_fresh_tensorflow, served_export

from genkeras import data
from genkeras.evaluation.frechet import frechet_distance_from_activations
from genkeras.evaluation.outliers import auroc
from genkeras.models.vae import ConditionalVAE, ConvVAE, DenseVAE, KLWarmup, latent
from genkeras.models.vae.densities import gaussian_kl

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def mnist_batches():
    """512 dynamically binarized MNIST training images in batches of 64, and 128 for validation."""
    view = data.View(binarize=True, targets=False)
    train = data.pipeline(
        data.load_split("mnist", "train", limit=512), view, batch_size=64, shuffle=True
    )
    val = data.pipeline(
        data.load_split("mnist", "validation", limit=128), view, batch_size=64, shuffle=False
    )
    return train, val


def small_vae(**kwargs):
    model = DenseVAE(SHAPE, latent_dim=4, hidden_units=(64,), **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    return model


@pytest.fixture(scope="module")
def trained(mnist_batches):
    train, val = mnist_batches
    keras.utils.set_random_seed(0)
    model = small_vae()
    history = model.fit(train, validation_data=val, epochs=4, verbose=0)
    return model, history


def test_fit_tracks_named_metrics_and_loss_falls(trained):
    _, history = trained
    logs = history.history
    for name in ("loss", "reconstruction_loss", "kl_loss"):
        assert name in logs and f"val_{name}" in logs
    assert logs["loss"][-1] < logs["loss"][0] - 20
    assert logs["val_loss"][-1] < logs["val_loss"][0]


def test_analytic_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, 5)).astype("float32")
    log_var = rng.normal(scale=0.7, size=(3, 5)).astype("float32")
    analytic = np.asarray(gaussian_kl(mean, log_var)).sum(-1)
    z = mean + np.exp(log_var / 2) * rng.standard_normal((200_000, 3, 5))
    log_q = -0.5 * (((z - mean) ** 2) / np.exp(log_var) + log_var + np.log(2 * np.pi)).sum(-1)
    log_p = -0.5 * (z**2 + np.log(2 * np.pi)).sum(-1)
    monte_carlo = (log_q - log_p).mean(0)
    np.testing.assert_allclose(analytic, monte_carlo, rtol=0.03, atol=0.02)


def test_sample_is_deterministic_per_seed_and_differs_across_seeds():
    model = DenseVAE(SHAPE, latent_dim=3, hidden_units=(16,))
    a, b, c = (np.asarray(model.sample(4, seed)) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    conditional = ConditionalVAE(SHAPE, latent_dim=3, hidden_units=(16,))
    labels = np.array([0, 1, 2, 3], np.int32)
    np.testing.assert_array_equal(
        conditional.sample(4, 3, labels), conditional.sample(4, 3, labels)
    )


def test_importance_weighted_bound_is_at_least_the_elbo(trained, mnist_batches):
    model, _ = trained
    images = next(iter(mnist_batches[1]))[:32]
    log_w = np.asarray(model.importance_log_weights(images, num_samples=64, seed=1), np.float64)
    iwae = np.logaddexp.reduce(log_w, axis=0) - np.log(64)
    elbo = log_w.mean(axis=0)  # the ELBO estimated from the same 64 draws
    assert np.all(iwae >= elbo - 1e-4)
    # Against the training objective's one-sample ELBO, averaged over images.
    reconstruction, kl, _, _ = model.elbo_terms(images)
    assert iwae.mean() >= float(np.mean(-(np.asarray(reconstruction) + np.asarray(kl)))) - 1.0
    # log_prob (k fixed at construction) agrees with the chunked estimate in nats per image.
    log_prob = np.asarray(model.log_prob(images, num_samples=64))
    assert log_prob.shape == (32,) and np.all(log_prob < 0)
    assert abs(log_prob.mean() - iwae.mean()) < 3.0


def test_beta_scales_the_kl_term_as_documented(mnist_batches):
    train, val = mnist_batches
    for beta in (0.0, 2.5):
        keras.utils.set_random_seed(1)
        model = small_vae(beta=beta)
        history = model.fit(train.take(2), epochs=1, verbose=0).history
        np.testing.assert_allclose(
            history["loss"][0],
            history["reconstruction_loss"][0] + beta * history["kl_loss"][0],
            rtol=1e-5,
        )
        result = model.evaluate(val, return_dict=True, verbose=0)
        np.testing.assert_allclose(
            result["loss"], result["reconstruction_loss"] + beta * result["kl_loss"], rtol=1e-5
        )


def test_kl_warmup_ramps_the_training_weight_and_restores_beta(mnist_batches):
    train, val = mnist_batches
    keras.utils.set_random_seed(2)
    model = small_vae(beta=2.0)
    history = model.fit(
        train.take(2), validation_data=val, epochs=2, verbose=0, callbacks=[KLWarmup(4)]
    ).history
    np.testing.assert_allclose(history["kl_weight"], [0.5, 1.0])  # beta * (epoch + 1) / 4
    for epoch, weight in enumerate(history["kl_weight"]):
        expected = history["reconstruction_loss"][epoch] + weight * history["kl_loss"][epoch]
        np.testing.assert_allclose(history["loss"][epoch], expected, rtol=1e-5)
        # validation always uses beta itself
        expected_val = (
            history["val_reconstruction_loss"][epoch] + 2.0 * history["val_kl_loss"][epoch]
        )
        np.testing.assert_allclose(history["val_loss"][epoch], expected_val, rtol=1e-5)
    assert float(model.kl_weight.numpy()) == 2.0


def test_output_bias_starts_the_decoder_at_the_mean_image():
    examples = data.take_examples("mnist", "train", count=512)
    images = examples["image"].astype("float32")  # intensities in [0, 1]
    assert 0.05 < images.mean() < 0.3
    mean = np.clip(images.mean(axis=0), 1e-3, 1 - 1e-3)
    sigmoid = lambda t: 1 / (1 + np.exp(-np.asarray(t)))

    dense = ConditionalVAE(SHAPE, latent_dim=4, hidden_units=(16,))  # one bias per pixel
    dense.initialize_output_bias((images, examples["label"]))
    bias = dense.decoder.get_layer("logits").bias.numpy().reshape(SHAPE)
    np.testing.assert_allclose(sigmoid(bias), mean, rtol=1e-4)

    keras.utils.set_random_seed(3)
    plain = ConvVAE(SHAPE, latent_dim=4, filters=(8, 16), dense_units=0)  # one per channel
    keras.utils.set_random_seed(3)
    started = ConvVAE(SHAPE, latent_dim=4, filters=(8, 16), dense_units=0)
    started.initialize_output_bias(images)
    np.testing.assert_allclose(
        sigmoid(started.decoder.get_layer("logits").bias.numpy()), [images.mean()], rtol=1e-4
    )
    # The same random network explains the digits far better starting from their mean.
    binary = (np.random.default_rng(0).random(images.shape) < images).astype("float32")
    before = float(keras.ops.mean(plain.elbo_terms(binary, eps=np.zeros((512, 4)))[0]))
    after = float(keras.ops.mean(started.elbo_terms(binary, eps=np.zeros((512, 4)))[0]))
    assert after < before - 100, (before, after)


def test_keras_round_trip(tmp_path):
    model = ConvVAE(SHAPE, latent_dim=4, filters=(8, 16), dense_units=0, likelihood="gaussian")
    images = np.random.default_rng(0).random((3, *SHAPE)).astype("float32")
    model(images)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, ConvVAE) and loaded.likelihood == "gaussian"
    np.testing.assert_allclose(loaded.reconstruct(images), model.reconstruct(images), atol=1e-6)
    np.testing.assert_allclose(
        loaded.log_prob(images, num_samples=8), model.log_prob(images, num_samples=8), rtol=1e-5
    )


def test_attribute_editing_works_on_celeb_a_smiling(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.delenv("GENKERAS_MANUAL_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=24):
        examples = data.take_examples("celeb_a", "test", count=24)
    images = examples["image"].astype("float32")
    assert images.shape == (24, 64, 64, 3)
    smiling = np.asarray(examples["attributes"]["Smiling"], bool)
    smiling[:2] = [True, False]  # the mock draws at random; make sure both groups exist
    model = ConvVAE(
        (64, 64, 3), latent_dim=6, filters=(8, 16), dense_units=0, likelihood="gaussian"
    )
    edited = latent.attribute_editing(model, images, smiling, ks=range(-4, 5), which=[0])
    assert edited["images"].shape == (9, 64, 64, 3)
    z_mean, _ = model.posterior(images)
    expected = np.asarray(z_mean)[smiling].mean(0) - np.asarray(z_mean)[~smiling].mean(0)
    np.testing.assert_allclose(edited["s"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        edited["images"][4:5], model.decode(np.asarray(z_mean)[:1]), atol=1e-6
    )


def test_latent_tools():
    grid = latent.latent_grid((1, 3), latent_dim=4, steps=3, extent=2.0)
    assert grid.shape == (9, 4) and np.all(grid[:, [0, 2]] == 0)
    assert grid[0, 1] == -2.0 and grid[0, 3] == 2.0  # top-left: low x, high y
    path = latent.interpolate_codes(np.zeros(2), np.ones(2), steps=3)
    np.testing.assert_allclose(path[1], [0.5, 0.5])  # the average of the two codes


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20_000, 3))
    assert frechet_distance_from_activations(a, rng.standard_normal((20_000, 3))) < 0.01
    shifted = rng.standard_normal((20_000, 3)) + np.array([2.0, 0, 0])
    assert abs(frechet_distance_from_activations(a, shifted) - 4.0) < 0.1
    scaled = 2 * rng.standard_normal((20_000, 3))  # (2 - 1)^2 per dimension
    assert abs(frechet_distance_from_activations(a, scaled) - 3.0) < 0.15


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="bernoulli"):
        DenseVAE(SHAPE, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="labels"):
        ConditionalVAE(SHAPE, 2, hidden_units=(8,)).decode(np.zeros((1, 2), "float32"))


def test_auroc():
    assert auroc([3, 4, 5], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4, 5]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert auroc([2, 1], [1, 0]) == 0.875  # the tie at 1 counts half


SHIPPED_CONV_VAE = served_export("conv_vae")  # the served version, the one the tree keeps


@pytest.mark.skipif(
    not (SHIPPED_CONV_VAE and SHIPPED_CONV_VAE.exists()), reason="no shipped conv_vae"
)
def test_shipped_conv_vae_answers_and_scores_digits_above_noise():
    images = data.take_examples("mnist", "test", count=4)["image"]
    binary = (images > 0.5).astype("float32")
    noise = (np.random.default_rng(0).random(binary.shape) > 0.5).astype("float32")
    out = call_signatures_in_fresh_tensorflow(
        SHIPPED_CONV_VAE,
        {
            "sample": ("sample", {"num": np.int32(2), "seed": np.int32(1)}),
            "again": ("sample", {"num": np.int32(2), "seed": np.int32(1)}),
            "digits": ("log_prob", {"images": binary}),
            "noise": ("log_prob", {"images": noise}),
            "encode": ("encode", {"images": binary}),
        },
    )
    np.testing.assert_array_equal(out["sample"]["images"], out["again"]["images"])
    assert out["sample"]["images"].shape == (2, 28, 28, 1)
    assert np.all(out["digits"]["log_prob"] > -200) and np.all(out["noise"]["log_prob"] < -400)
    assert out["encode"]["z_mean"].shape == (4, 32)
    for name in ("conv_vae", "vae", "cvae"):
        card = json.loads((served_export(name) / "model_card.json").read_text())
        assert {"sample", "log_prob", "encode", "decode", "reconstruct"} <= set(card["signatures"])
