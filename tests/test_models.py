"""The foundation's models: they learn, round-trip through .keras, and PCA is exact."""

import keras
import numpy as np
import pytest

from genkeras import data
from genkeras.models import PCA, ConvAutoencoder
from genkeras.registry import UnknownModelError, available_models, get_spec


@pytest.fixture(scope="module")
def mnist_images():
    return np.stack([e["image"] for e in data.load_split("mnist", "train", limit=2000)])


FOUNDATION = ["dense_ae", "conv_ae", "denoising_ae"]


def test_registry_lists_the_foundation_and_rejects_unknown_names():
    assert {"pca", *FOUNDATION} <= set(available_models())
    with pytest.raises(
        UnknownModelError, match="Valid models: pca, dense_ae, conv_ae, denoising_ae"
    ):
        get_spec("resnet")


@pytest.mark.parametrize("name", FOUNDATION)
def test_gradient_models_train_with_falling_loss(name, mnist_images):
    spec = get_spec(name)
    keras.utils.set_random_seed(0)
    model = spec.build((28, 28, 1), 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=spec.loss)
    x = mnist_images[:256]
    before = model.evaluate(x, x, verbose=0)
    model.fit(x, x, batch_size=32, epochs=2, verbose=0)
    after = model.evaluate(x, x, verbose=0)
    assert after < 0.8 * before


@pytest.mark.parametrize("name", ["pca", *FOUNDATION])
def test_keras_file_round_trip_gives_identical_outputs(name, mnist_images, tmp_path):
    spec = get_spec(name)
    model = spec.build((28, 28, 1), 8)
    if spec.closed_form:
        model.fit_closed_form([mnist_images[:500]], progress=False)
    x = mnist_images[:16]
    expected = np.asarray(model.reconstruct(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(np.asarray(loaded.reconstruct(x)), expected)
    np.testing.assert_array_equal(np.asarray(loaded.encode(x)), np.asarray(model.encode(x)))


def test_pca_agrees_with_numpy_svd(mnist_images):
    k = 16
    pca = PCA((28, 28, 1), k)
    # Streamed in uneven batches: the closed form must not depend on how the data is cut.
    summary = pca.fit_closed_form(
        [mnist_images[:700], mnist_images[700:1500], mnist_images[1500:]], progress=False
    )
    assert summary["examples"] == 2000

    x = mnist_images.reshape(len(mnist_images), -1).astype(np.float64)
    mean = x.mean(axis=0)
    _, singular_values, vt = np.linalg.svd(x - mean, full_matrices=False)
    v = vt[:k].T
    np.testing.assert_allclose(np.asarray(pca.mean), mean, atol=1e-6)
    # Same subspace (signs and order of equal eigenvalues aside): equal projectors V V^T.
    components = np.asarray(pca.components, np.float64)
    np.testing.assert_allclose(components @ components.T, v @ v.T, atol=2e-4)
    np.testing.assert_allclose(
        np.asarray(pca.explained_variance), singular_values[:k] ** 2 / len(x), rtol=1e-4
    )

    reconstruction = np.asarray(pca.reconstruct(mnist_images[:50])).reshape(50, -1)
    expected = (x[:50] - mean) @ v @ v.T + mean
    np.testing.assert_allclose(reconstruction, expected, atol=1e-4)


def test_conv_autoencoder_names_the_shape_it_needs():
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvAutoencoder((30, 30, 1), 8, filters=(32, 64))
