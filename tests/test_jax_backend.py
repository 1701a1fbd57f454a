"""Backend-agnostic training: every model trains under KERAS_BACKEND=jax with train.py's
pipeline, is saved as `.keras`, evaluated and exported under TensorFlow, and the exported
signatures return what the JAX-trained model returns."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import read_json, run_python

from genkeras.registry import available_models, get_spec

# One JAX process trains every model and records what each trained model answers to fixed
# inputs, through the deterministic method its SavedModel also exposes.
TRAIN_EVERY_MODEL_UNDER_JAX = """
import json, sys
from pathlib import Path
import keras
import numpy as np
from genkeras.registry import available_models, get_spec
from genkeras.training import TrainConfig, train

assert keras.backend.backend() == "jax"
out = Path(sys.argv[1])
inputs = np.load(out / "inputs.npz")
# The pixel models at a fraction of their default size (one block or layer of 8 channels):
# the same layers, pipeline, samplers and signatures in half the time.
small = {"filters": 8, "num_layers": 1, "hidden": 8}
answers = {}
for name in available_models():
    options = small if "filters" in {option.name for option in get_spec(name).options} else {}
    result = train(TrainConfig(model=name, limit=64, epochs=1, batch_size=32, verbose=0,
                               output_dir=str(out / "runs"), export_dir=str(out / "export"),
                               options=options))
    model, signatures = result.model, get_spec(name).signatures
    conditional = bool(getattr(model, "num_classes", 0))
    labels = [inputs["labels"]] if conditional else []
    if "reconstruct" in signatures:
        answer = model.reconstruct(inputs["images"], *labels)
    else:
        answer = model.log_prob(inputs["images"], *labels)["log_prob"]
    answers[name] = {"export": str(result.export_path), "labels": conditional,
                     "answer": np.asarray(answer).tolist()}
(out / "answers.json").write_text(json.dumps(answers))
"""

CALL_EXPORTS_IN_TENSORFLOW = """
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf

out = Path(sys.argv[1])
inputs = np.load(out / "inputs.npz")
calls = json.loads(sys.argv[2])
answers = {}
for name, call in calls.items():
    signature = tf.saved_model.load(call["export"]).signatures[call["signature"]]
    feed = {"images": tf.constant(inputs["images"])}
    if call["labels"]:
        feed["labels"] = tf.constant(inputs["labels"])
    answers[name] = signature(**feed)[call["output"]].numpy().tolist()
print(json.dumps(answers))
"""


@pytest.mark.slow
def test_every_model_trains_under_jax_and_its_export_answers_the_same(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((3, 28, 28, 1)) > 0.5).astype("float32")
    np.savez(tmp_path / "inputs.npz", images=images, labels=np.array([1, 4, 7], "int32"))

    done = run_python(
        TRAIN_EVERY_MODEL_UNDER_JAX, tmp_path, env={"KERAS_BACKEND": "jax"}, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    under_jax = read_json(tmp_path / "answers.json")
    assert sorted(under_jax) == sorted(available_models())

    calls = {}
    for name, trained in under_jax.items():
        card = read_json(f"{trained['export']}/model_card.json")
        assert card["hyperparameters"]["backend"] == "jax"  # trained by JAX, exported by TF
        reconstructs = "reconstruct" in get_spec(name).signatures
        calls[name] = {
            "export": trained["export"],
            "signature": "reconstruct" if reconstructs else "log_prob",
            "output": "images" if reconstructs else "log_prob",
            "labels": trained["labels"],
        }
    done = run_python(CALL_EXPORTS_IN_TENSORFLOW, tmp_path, json.dumps(calls), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    under_tensorflow = json.loads(done.stdout.strip().splitlines()[-1])
    for name, trained in under_jax.items():
        np.testing.assert_allclose(
            under_tensorflow[name], trained["answer"], rtol=1e-4, atol=1e-4, err_msg=name
        )
