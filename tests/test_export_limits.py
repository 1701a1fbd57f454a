"""The exported graphs refuse requests that would make any server allocate without bound:
`sample` and `complete` cap their batch, cvae labels must name a class. Checked in a fresh
TensorFlow-only process, as TF Serving would run the graphs."""

import numpy as np
import pytest
from conftest import run_python

from genkeras.export import export_model, max_generated_images
from genkeras.registry import get_spec

# Inputs as JSON: numbers, lists, or {"zeros": shape}; images, z and temperature are float32.
CALL_EACH = """
import json, sys, numpy as np, tensorflow as tf
path, calls = sys.argv[1], json.loads(sys.argv[2])
signatures = tf.saved_model.load(path).signatures
def tensor(key, value):
    dtype = np.float32 if key in ("images", "z", "temperature") else np.int32
    if isinstance(value, dict):
        return tf.zeros(value["zeros"], dtype)
    return tf.constant(np.asarray(value, dtype))
for name, inputs in calls:
    tensors = {k: tensor(k, v) for k, v in inputs.items()}
    try:
        shape = signatures[name](**tensors)["images"].shape.as_list()
        print(json.dumps({"shape": shape}))
    except tf.errors.InvalidArgumentError as error:
        print(json.dumps({"error": error.message}))
assert "genkeras" not in sys.modules
"""


def answers(path, calls) -> list[dict]:
    import json

    result = run_python(CALL_EACH, path, json.dumps(calls))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def tiny(name, **options):
    spec = get_spec(name)
    model = spec.build((28, 28, 1), 2, **options)
    return spec, model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("savedmodels")
    paths = {}
    for name, options in {
        "vae": {},
        "cvae": {},
        "pixelcnn": {"filters": 4, "num_layers": 1, "hidden": 4},
        "conv_vae": {"filters": (4, 8), "dense_units": 0},
    }.items():
        spec, model = tiny(name, **options)
        images = np.zeros((1, 28, 28, 1), np.float32)
        model((images, np.zeros(1, np.int32)) if name == "cvae" else images)
        paths[name] = export_model(model, spec, folder, version=1)
    return paths


def test_the_cap_keeps_an_answer_under_grpcs_default_message_size():
    _, model = tiny("vae")
    cap = max_generated_images(model)
    assert cap * 28 * 28 * 4 < 4 * 1024 * 1024 < (cap + 100) * 28 * 28 * 4


@pytest.mark.slow
def test_sample_refuses_num_above_the_cap_and_below_zero(exports):
    cap = max_generated_images(tiny("vae")[1])
    vae, pixelcnn = exports["vae"], exports["pixelcnn"]
    sample = lambda num: ("sample", {"num": num, "seed": 0})  # noqa: E731
    out = answers(vae, [sample(cap + 1), sample(-1), sample(0), sample(3)])
    assert f"num must be at most {cap}" in out[0]["error"]
    assert "num must be >= 0" in out[1]["error"]
    assert out[2] == {"shape": [0, 28, 28, 1]} and out[3] == {"shape": [3, 28, 28, 1]}
    pixel = lambda num: ("sample", {"num": num, "seed": 0, "temperature": 1.0})  # noqa: E731
    out = answers(pixelcnn, [pixel(10**6), pixel(-5), pixel(0)])
    assert f"num must be at most {cap}" in out[0]["error"]
    assert "num must be >= 0" in out[1]["error"]
    assert out[2] == {"shape": [0, 28, 28, 1]}  # an empty batch, as the VAE answers


@pytest.mark.slow
def test_an_empty_batch_keeps_the_image_shape_through_convolutions(exports):
    """TensorFlow's CPU convolution answers an empty batch with its input's channels."""
    empty = {"zeros": [0, 2]}
    out = answers(
        exports["conv_vae"], [("sample", {"num": 0, "seed": 0}), ("decode", {"z": empty})]
    )
    assert out == [{"shape": [0, 28, 28, 1]}] * 2


@pytest.mark.slow
def test_complete_refuses_more_images_than_the_cap(exports):
    cap = max_generated_images(tiny("vae")[1])
    images = {"zeros": [cap + 1, 28, 28, 1]}
    out = answers(exports["pixelcnn"], [("complete", {"images": images, "rows": 28, "seed": 0})])
    assert f"images must be at most {cap}" in out[0]["error"]


@pytest.mark.slow
def test_cvae_labels_must_name_a_class(exports):
    def decode(labels):
        return ("decode", {"z": {"zeros": [len(labels), 2]}, "labels": labels})

    out = answers(exports["cvae"], [decode([10]), decode([-1]), decode([0, 9])])
    assert "labels must be < 10" in out[0]["error"]
    assert "labels must be >= 0" in out[1]["error"]
    assert out[2] == {"shape": [2, 28, 28, 1]}
