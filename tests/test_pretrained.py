"""`genkeras.pretrained`: the shipped `.keras` files, used the way another project would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import genkeras.pretrained as pretrained

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (
    "conv_ae",
    "conv_vae",
    "cpixelcnn",
    "cvae",
    "denoising_ae",
    "dense_ae",
    "pca",
    "pixelcnn",
    "pixelrnn",
    "vae",
)


def test_available_lists_the_shipped_models():
    assert pretrained.available() == sorted(SHIPPED)
    for name in SHIPPED:
        assert pretrained.path(name).is_file()


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="No pretrained model named 'nope'.*conv_vae.*vae"):
        pretrained.load("nope")


def test_files_hold_weights_only():
    """Re-saved without optimizer state: each file is about the size of its float32 weights
    (plus HDF5 headers per variable; Adam's two slots per weight would triple it)."""
    for name in SHIPPED:
        size = pretrained.path(name).stat().st_size
        params = pretrained.load(name).count_params()
        assert size < 1.25 * 4 * params + 64_000, (name, size, 4 * params)


def newest_export(name):
    """savedmodels/NAME/VERSION with the highest VERSION: the one serving/models.config serves."""
    versions = [p for p in (ROOT / "savedmodels" / name).glob("*") if p.name.isdigit()]
    if not versions:
        pytest.skip("no SavedModel exported")
    return max(versions, key=lambda p: int(p.name))


@pytest.mark.parametrize("name", ["conv_vae", "conv_ae", "pca"])
def test_same_numbers_as_the_served_savedmodel(name):
    """The shipped file and the newest savedmodels/NAME/VERSION (the served one) agree."""
    import tensorflow as tf

    export = newest_export(name)
    model = pretrained.load(name)
    z = np.random.default_rng(0).normal(size=(3, model.latent_dim)).astype("float32")
    served = tf.saved_model.load(str(export)).signatures["decode"](z=tf.constant(z))["images"]
    np.testing.assert_allclose(np.asarray(model.decode(z)), served.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["pixelcnn", "pixelrnn"])
@pytest.mark.slow
def test_pixel_model_has_the_served_likelihood(name):
    """The shipped file and the newest savedmodels/NAME/VERSION (the served one) give the same
    exact log-likelihood."""
    import tensorflow as tf

    export = newest_export(name)
    images = (np.random.default_rng(0).random((2, 28, 28, 1)) > 0.7).astype("float32")
    served = tf.saved_model.load(str(export)).signatures["log_prob"](images=tf.constant(images))
    ours = pretrained.load(name).log_prob(images)
    ours = np.asarray(ours["log_prob"] if isinstance(ours, dict) else ours)
    np.testing.assert_allclose(ours, served["log_prob"].numpy(), rtol=1e-4)


def test_cpixelcnn_has_the_served_calibration_and_posterior():
    """The shipped file carries the served version's prior and outlier threshold: the same
    p(y | x), log p(x) and verdicts as savedmodels/cpixelcnn/1's `label_posterior`."""
    import tensorflow as tf

    export = ROOT / "savedmodels" / "cpixelcnn" / "1"
    if not export.exists():
        pytest.skip("no SavedModel exported")
    rng = np.random.default_rng(0)
    images = (rng.random((2, 28, 28, 1)) > 0.7).astype("float32")  # noise: outliers
    signature = tf.saved_model.load(str(export)).signatures["label_posterior"]
    served = signature(images=tf.constant(images))
    ours = pretrained.load("cpixelcnn").label_posterior(images)
    for key in ("probabilities", "log_prob"):
        np.testing.assert_allclose(np.asarray(ours[key]), served[key].numpy(), rtol=1e-4)
    assert np.asarray(ours["outlier"]).tolist() == served["outlier"].numpy().tolist() == [1, 1]


PROJECT_SCRIPT = textwrap.dedent(
    """
    import os, shutil, sys
    import numpy as np
    import keras
    import genkeras
    import genkeras.pretrained
    import warnings

    warnings.simplefilter("error", UserWarning)  # e.g. a mismatched input structure
    assert not os.path.exists("genkeras"), "must run outside the repository"
    assert os.getcwd() not in genkeras.__file__
    rng = np.random.default_rng(0)
    images = (rng.random((8, 28, 28, 1)) > 0.8).astype("float32")
    labels = rng.integers(0, 10, size=8)

    # 1. load and call; encoder / decoder reachable as attributes
    vae = genkeras.pretrained.load("conv_vae")
    assert tuple(vae(images).shape) == (8, 28, 28, 1)
    z_mean, z_log_var = vae.encoder([images])  # VAE encoders take a list: [images(, onehot)]
    assert tuple(z_mean.shape) == (8, 32)
    assert tuple(vae.decoder([z_mean]).shape) == (8, 28, 28, 1)  # logits; vae.decode() is in [0, 1]
    decoded = np.asarray(vae.decode(z_mean))
    assert 0.0 <= decoded.min() and decoded.max() <= 1.0

    # 2. embed the frozen encoder as a layer of a new functional model and train that one step
    encoder = vae.encoder
    encoder.trainable = False
    inputs = keras.Input((28, 28, 1))
    features = encoder([inputs])[0]
    outputs = keras.layers.Dense(10)(features)
    classifier = keras.Model(inputs, outputs)
    classifier.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [w.copy() for w in encoder.get_weights()]
    classifier.fit(images, labels, epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))
    assert tuple(classifier.predict(images, verbose=0).shape) == (8, 10)

    # 3. fine-tune the VAE itself one step: compile, then fit (its train_step is the ELBO)
    vae = genkeras.pretrained.load("conv_vae")
    before = vae.get_weights()
    vae.compile(optimizer=keras.optimizers.Adam(1e-4))
    history = vae.fit(images, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, vae.get_weights()))

    # the conditional VAE fine-tunes on fit((images, labels)); an autoencoder on fit(images, images)
    cvae = genkeras.pretrained.load("cvae")
    cvae.compile(optimizer=keras.optimizers.Adam(1e-4))
    cvae.fit((images, labels.astype("int32")), epochs=1, batch_size=8, verbose=0)
    ae = genkeras.pretrained.load("conv_ae")
    ae.compile(optimizer="adam", loss="binary_crossentropy")
    assert np.isfinite(ae.fit(images, images, epochs=1, batch_size=8, verbose=0).history["loss"][0])

    # 4. keras.saving.load_model on a copy of the shipped file, and a round trip of our own
    shutil.copy(genkeras.pretrained.path("dense_ae"), "dense_ae.keras")
    ae = keras.saving.load_model("dense_ae.keras")
    assert tuple(ae.encoder(images).shape) == (8, 16)
    pca = keras.saving.load_model(str(genkeras.pretrained.path("pca")))
    assert tuple(pca.decode(pca.encode(images)).shape) == (8, 28, 28, 1)
    classifier.save("classifier.keras")
    again = keras.saving.load_model("classifier.keras")
    np.testing.assert_allclose(
        again.predict(images, verbose=0), classifier.predict(images, verbose=0), atol=1e-5
    )
    print("PROJECT OK")
    """
)


@pytest.mark.slow
def test_use_from_a_throwaway_project(tmp_path):
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "use_genkeras.py").write_text(PROJECT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, "use_genkeras.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "PROJECT OK" in result.stdout


@pytest.mark.parametrize(
    "imports",
    [
        "import genkeras; import tensorflow; import keras",  # TensorFlow imports Keras itself
        "import genkeras; import keras",  # Keras imports TensorFlow itself
        "import tensorflow; import genkeras; import keras",
        "import keras; import genkeras",
    ],
)
def test_keras_load_model_finds_the_classes_in_any_import_order(imports):
    code = f"""
        {imports}
        import keras
        model = keras.saving.load_model({str(pretrained.path("conv_ae"))!r})
        print(type(model).__name__)
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ConvAutoencoder"
