"""The discriminative MNIST classifier as a SavedModel, so the explorer can set its softmax
beside the cvae's p(y | x).

The classifier is `genkeras/assets/mnist_classifier.keras` (three strided convolutions, a
dense layer, 10 logits; the network behind the Frechet distance). `export_classifier` writes
it as `EXPORT_DIR/mnist_classifier/VERSION` with one predict signature, `serving_default`:
`images` float32 [N, 28, 28, 1] in [0, 1] -> `probabilities` (softmax) and `logits`, both
float32 [N, 10], and `label` int32 [N]. It loads in TF Serving and `genkeras serve` like the
generative models; the explorer asks `/v1/models/mnist_classifier:predict` when the server
lists that model.

    python -c "from genkeras.serving.explorer.classifier import export_classifier as e; e()"
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CLASSIFIER_PATH = ASSETS / "mnist_classifier.keras"
MODEL_NAME = "mnist_classifier"


def export_classifier(
    export_dir: str | Path = "savedmodels", version: int = 1, keras_path=CLASSIFIER_PATH
) -> Path:
    """Writes the classifier as `export_dir/mnist_classifier/VERSION` (atomically).

    Args:
        export_dir: the folder of exported models.
        version: the version number; an existing version is never overwritten.
        keras_path: the `.keras` file of the classifier.

    Returns:
        The version folder.

    Raises:
        FileExistsError: when that version exists (served versions are immutable).
    """
    import keras
    import tensorflow as tf

    final = Path(export_dir) / MODEL_NAME / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; served versions are immutable")
    model = keras.saving.load_model(keras_path, compile=False)

    class Classifier(tf.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serve(self, images):
            logits = tf.cast(self.network(images, training=False), tf.float32)
            return {
                "logits": logits,
                "probabilities": tf.nn.softmax(logits),
                "label": tf.argmax(logits, axis=1, output_type=tf.int32),
            }

    module = Classifier(model)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    try:
        tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve})
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
