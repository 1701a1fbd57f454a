"""Labels by Bayes' rule with a reject option (genkeras.models.bayes) and the `classify` /
`label_posterior` signatures that TF Serving's Classify API runs, for both conditional models:
the cvae (importance-weighted log p(x | y)) and the class-conditional PixelCNN (exact)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_python

from genkeras.evaluation.bayes import coverage_curve
from genkeras.export import export_model
from genkeras.models.pixel import ConditionalPixelCNN
from genkeras.models.vae import ConditionalVAE
from genkeras.registry import spec_of_model


def build(name):
    if name == "cvae":
        return ConditionalVAE((28, 28, 1), latent_dim=2, hidden_units=(16,), log_prob_samples=8)
    return ConditionalPixelCNN((28, 28, 1), filters=8, num_layers=2, hidden=8)


@pytest.fixture(scope="module", params=["cvae", "cpixelcnn"])
def model(request):
    """A tiny conditional model with an uneven prior."""
    model = build(request.param)
    model((np.zeros((1, 28, 28, 1), "float32"), np.zeros(1, "int32")))
    model.label_prior = tuple(np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    return model


def own_log_prob(model, images, labels):
    """The model's own log p(x | y) (the cvae's importance samples keyed by seed 1)."""
    if isinstance(model, ConditionalVAE):
        return np.asarray(model.log_prob(images, labels, seed=1))
    return np.asarray(model.log_prob(images, labels)["log_prob"])


@pytest.fixture(scope="module")
def images():
    return (np.random.default_rng(0).random((3, 28, 28, 1)) < 0.3).astype("float32")


def test_posterior_is_bayes_rule(model, images):
    log_px_y = np.asarray(model.class_log_likelihoods(images, seed=1), np.float64)
    out = {k: np.asarray(v) for k, v in model.label_posterior(images, seed=1).items()}
    log_joint = log_px_y + np.log(model.label_prior)
    log_px = np.logaddexp.reduce(log_joint, axis=1)
    np.testing.assert_allclose(out["log_prob"], log_px, rtol=1e-5)
    np.testing.assert_allclose(out["probabilities"], np.exp(log_joint - log_px[:, None]), atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(out["label"], log_joint.argmax(axis=1))
    # column y is the model's own log p(x | y): the same draws, labels laid out class-major
    tiled = np.tile(images, (10, 1, 1, 1))
    own = own_log_prob(model, tiled, np.repeat(np.arange(10, dtype="int32"), 3))
    np.testing.assert_allclose(log_px_y, own.reshape(10, 3).T, rtol=1e-6)


def test_outliers_are_below_the_threshold(model, images):
    log_px = np.asarray(model.label_posterior(images, seed=1)["log_prob"])
    assert not np.asarray(model.label_posterior(images, seed=1)["outlier"]).any()  # uncalibrated
    model.outlier_threshold = float(np.median(log_px))
    try:
        outlier = np.asarray(model.label_posterior(images, seed=1)["outlier"])
        np.testing.assert_array_equal(outlier, log_px < np.median(log_px))
    finally:
        model.outlier_threshold = None


def test_a_bad_prior_is_refused():
    with pytest.raises(ValueError, match="10 positive probabilities summing to 1"):
        ConditionalVAE((28, 28, 1), 2, label_prior=[0.5, 0.5])
    with pytest.raises(ValueError, match="10 positive probabilities summing to 1"):
        ConditionalPixelCNN((28, 28, 1), label_prior=[0.5, 0.5])
    with pytest.raises(ValueError, match="num_classes >= 2"):
        ConditionalPixelCNN((28, 28, 1), num_classes=0)


def test_train_py_refuses_a_cpixelcnn_without_labels_before_any_work():
    from genkeras.training.config import ConfigError, TrainConfig, resolve

    with pytest.raises(ConfigError, match="--num-classes must be >= 2.*--model pixelcnn"):
        resolve(TrainConfig(model="cpixelcnn", options={"num_classes": 1}))
    assert resolve(TrainConfig(model="cpixelcnn")).options["num_classes"] == 10


def test_the_conditional_pixelcnn_keeps_its_calibration_through_keras_files(tmp_path):
    import keras

    model = build("cpixelcnn")  # a fresh one: the fixture's is shared
    images = (np.random.default_rng(1).random((2, 28, 28, 1)) < 0.3).astype("float32")
    model((images, np.zeros(2, "int32")))
    model.label_prior = tuple(np.arange(1, 11) / 55)
    model.outlier_threshold = -300.0
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded) is ConditionalPixelCNN and spec_of_model(loaded).name == "cpixelcnn"
    assert loaded.label_prior == model.label_prior and loaded.outlier_threshold == -300.0
    for key in ("probabilities", "log_prob"):
        np.testing.assert_allclose(
            loaded.label_posterior(images)[key], model.label_posterior(images)[key], rtol=1e-6
        )


def test_coverage_curve():
    coverage, accuracy = coverage_curve([0.9, 0.8, 0.7, 0.6], [True, True, False, True], points=4)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(accuracy, [1.0, 1.0, 2 / 3, 0.75])


@pytest.mark.slow
def test_classify_signature_in_a_fresh_tensorflow_process(model, images, tmp_path):
    """TF Serving's Classify needs the method name in the SignatureDef: read it back from
    saved_model.pb and call the signature with serialized tf.Examples, TensorFlow only."""
    model.outlier_threshold = -1e9
    try:
        path = export_model(model, spec_of_model(model), tmp_path, version=1)
    finally:
        model.outlier_threshold = None
    np.save(tmp_path / "images.npy", images)
    result = run_python(
        """
        import json, sys, numpy as np, tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2
        path, work = sys.argv[1:3]
        proto = saved_model_pb2.SavedModel.FromString(open(path + "/saved_model.pb", "rb").read())
        signatures = proto.meta_graphs[0].signature_def
        images = np.load(work + "/images.npy")
        examples = [
            tf.train.Example(features=tf.train.Features(feature={"images": tf.train.Feature(
                float_list=tf.train.FloatList(value=image.ravel()))})).SerializeToString()
            for image in images
        ]
        loaded = tf.saved_model.load(path)
        out = loaded.signatures["classify"](inputs=tf.constant(examples))
        posterior = loaded.signatures["label_posterior"](images=tf.constant(images))
        assert "genkeras" not in sys.modules, "the export needed genkeras"
        print(json.dumps({
            "methods": {k: signatures[k].method_name for k in ("classify", "label_posterior")},
            "classify_inputs": {k: v.dtype for k, v in signatures["classify"].inputs.items()},
            "classes": out["classes"].numpy().astype(str).tolist(),
            "scores": out["scores"].numpy().tolist(),
            "probabilities": posterior["probabilities"].numpy().tolist(),
            "outlier": posterior["outlier"].numpy().tolist(),
            "label_dtype": posterior["label"].dtype.name,
        }))
        """,
        path,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    out = json.loads(result.stdout.splitlines()[-1])
    assert out["methods"] == {
        "classify": "tensorflow/serving/classify",
        "label_posterior": "tensorflow/serving/predict",
    }
    assert out["classify_inputs"] == {"inputs": 7}  # DT_STRING
    assert out["classes"] == [[str(c) for c in range(10)]] * 3
    np.testing.assert_allclose(out["scores"], out["probabilities"], atol=1e-6)
    np.testing.assert_allclose(np.sum(out["scores"], axis=1), 1, atol=1e-5)
    assert out["outlier"] == [False] * 3 and out["label_dtype"] == "int32"


@pytest.mark.slow
def test_bayes_evaluate_calibrates_measures_and_exports_a_conditional_pixelcnn(tmp_path):
    """The command on a tiny untrained cpixelcnn and 10 images per split: the calibration
    lands in the report, the `.keras` file and the export's card, beside the run's metrics."""
    model = build("cpixelcnn")
    model((np.zeros((1, 28, 28, 1), "float32"), np.zeros(1, "int32")))
    model.save(tmp_path / "cpixelcnn.keras")
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"test_nll_nats": 500.0}}))
    command = [sys.executable, "-m", "genkeras.cli", "bayes-evaluate"]
    result = subprocess.run(
        command
        + [str(tmp_path / "cpixelcnn.keras"), "--limit", "10", "--out", str(tmp_path / "r.json")]
        + ["--picture", str(tmp_path / "b.png"), "--save-keras", str(tmp_path / "cal.keras")]
        + ["--export-dir", str(tmp_path / "exports"), "--version", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"] == "ConditionalPixelCNN" and report["images"]["mnist_test"] == 10
    assert 0 <= report["accuracy"] <= 1 and report["importance_samples_per_class"] is None
    card = json.loads((tmp_path / "exports" / "cpixelcnn" / "3" / "model_card.json").read_text())
    assert card["metrics"] == {"test_nll_nats": 500.0}  # the run's figures stay
    assert card["outlier_threshold"] == report["outlier_threshold_nats"]
    assert "label_posterior" in card["signatures"] and "classify" in card["signatures"]
    import keras

    calibrated = keras.saving.load_model(tmp_path / "cal.keras")
    assert calibrated.outlier_threshold == report["outlier_threshold_nats"]
    np.testing.assert_allclose(calibrated.label_prior, report["label_prior"])
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"

    plain = subprocess.run(
        command + [str(ROOT / "genkeras" / "pretrained" / "pixelcnn.keras")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert plain.returncode == 2 and "not a conditional model" in plain.stderr
