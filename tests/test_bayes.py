"""Labels by Bayes' rule with a reject option (genkeras.models.bayes) and the `classify` /
`label_posterior` signatures that TF Serving's Classify API runs."""

import numpy as np
import pytest
from conftest import run_python

from genkeras.evaluation.bayes import coverage_curve
from genkeras.export import export_model
from genkeras.models.vae import ConditionalVAE
from genkeras.registry import get_spec


@pytest.fixture(scope="module")
def cvae():
    model = ConditionalVAE((28, 28, 1), latent_dim=2, hidden_units=(16,), log_prob_samples=8)
    model((np.zeros((1, 28, 28, 1), "float32"), np.zeros(1, "int32")))
    model.label_prior = tuple(np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    return model


@pytest.fixture(scope="module")
def images():
    return (np.random.default_rng(0).random((3, 28, 28, 1)) < 0.3).astype("float32")


def test_posterior_is_bayes_rule(cvae, images):
    log_px_y = np.asarray(cvae.class_log_likelihoods(images, seed=1), np.float64)
    out = {k: np.asarray(v) for k, v in cvae.label_posterior(images, seed=1).items()}
    log_joint = log_px_y + np.log(cvae.label_prior)
    log_px = np.logaddexp.reduce(log_joint, axis=1)
    np.testing.assert_allclose(out["log_prob"], log_px, rtol=1e-5)
    np.testing.assert_allclose(out["probabilities"], np.exp(log_joint - log_px[:, None]), atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(out["label"], log_joint.argmax(axis=1))
    # column y is the model's own log p(x | y): the same draws, labels laid out class-major
    tiled = np.tile(images, (10, 1, 1, 1))
    own = np.asarray(cvae.log_prob(tiled, np.repeat(np.arange(10, dtype="int32"), 3), seed=1))
    np.testing.assert_allclose(log_px_y, own.reshape(10, 3).T, rtol=1e-6)


def test_outliers_are_below_the_threshold(cvae, images):
    log_px = np.asarray(cvae.label_posterior(images, seed=1)["log_prob"])
    assert not np.asarray(cvae.label_posterior(images, seed=1)["outlier"]).any()  # uncalibrated
    cvae.outlier_threshold = float(np.median(log_px))
    try:
        outlier = np.asarray(cvae.label_posterior(images, seed=1)["outlier"])
        np.testing.assert_array_equal(outlier, log_px < np.median(log_px))
    finally:
        cvae.outlier_threshold = None


def test_a_bad_prior_is_refused():
    with pytest.raises(ValueError, match="10 positive probabilities summing to 1"):
        ConditionalVAE((28, 28, 1), 2, label_prior=[0.5, 0.5])


def test_coverage_curve():
    coverage, accuracy = coverage_curve([0.9, 0.8, 0.7, 0.6], [True, True, False, True], points=4)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(accuracy, [1.0, 1.0, 2 / 3, 0.75])


def test_classify_signature_in_a_fresh_tensorflow_process(cvae, images, tmp_path):
    """TF Serving's Classify needs the method name in the SignatureDef: read it back from
    saved_model.pb and call the signature with serialized tf.Examples, TensorFlow only."""
    cvae.outlier_threshold = -1e9
    try:
        path = export_model(cvae, get_spec("cvae"), tmp_path, version=1)
    finally:
        cvae.outlier_threshold = None
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
