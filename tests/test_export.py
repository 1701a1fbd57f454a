"""SavedModel export: the signature contract, atomic versions, cards, TF-Serving-safe graphs."""

import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from conftest import call_signatures_in_fresh_tensorflow

from genkeras import data
from genkeras.export import export_model, next_version
from genkeras.registry import get_spec

CONTRACT = {  # signature -> (input names, output names), as the issue fixes them
    "encode": (["images"], ["z"]),
    "decode": (["z"], ["images"]),
    "reconstruct": (["images"], ["images"]),
    "denoise": (["images"], ["images"]),
    "serving_default": (["images"], ["images"]),
}


@pytest.fixture(scope="module")
def images():
    return np.stack([e["image"] for e in data.load_split("mnist", "test", limit=8)])


@pytest.fixture(scope="module", params=["pca", "dense_ae", "conv_ae", "denoising_ae"])
def exported(request, tmp_path_factory, images):
    spec = get_spec(request.param)
    model = spec.build((28, 28, 1), 4)
    if spec.closed_form:
        model.fit_closed_form(
            [np.stack([e["image"] for e in data.load_split("mnist", "train", limit=300)])],
            progress=False,
        )
    else:
        model(images)  # random weights are enough to compare the graph with the Keras model
    path = export_model(
        model, spec, tmp_path_factory.mktemp("savedmodels"), card={"dataset": "mnist"}
    )
    return spec, model, path


def test_signatures_have_the_contract_names(exported):
    spec, _, path = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == set(CONTRACT)
    for name, (inputs, outputs) in CONTRACT.items():
        fn = loaded.signatures[name]
        assert sorted(fn.structured_input_signature[1]) == inputs
        assert sorted(fn.structured_outputs) == outputs
        assert all(t.dtype == tf.float32 for t in fn.structured_outputs.values())


def test_every_signature_answers_like_keras_in_a_fresh_process(exported, images):
    spec, model, path = exported
    z = np.asarray(model.encode(images))
    expected = {
        "encode": ({"images": images}, {"z": z}),
        "decode": ({"z": z}, {"images": np.asarray(model.decode(z))}),
        "reconstruct": ({"images": images}, {"images": np.asarray(model.reconstruct(images))}),
        "denoise": ({"images": images}, {"images": np.asarray(model.denoise(images))}),
    }
    expected["serving_default"] = expected[spec.default_signature]
    answers = call_signatures_in_fresh_tensorflow(
        path, {name: inputs for name, (inputs, _) in expected.items()}
    )
    for name, (_, outputs) in expected.items():
        for key, value in outputs.items():
            np.testing.assert_allclose(
                answers[name][key], value, atol=1e-5, err_msg=f"{spec.name}/{name}/{key}"
            )


def test_graph_is_servable_as_is(exported):
    """No Python callbacks and no XLA-compiled functions: TF Serving must run the graph alone."""
    _, _, path = exported
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    assert list(proto.meta_graphs[0].meta_info_def.tags) == ["serve"]
    ops = {node.op for node in graph.node} | {
        n.op for f in graph.library.function for n in f.node_def
    }
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless", "XlaLaunch"}
    for function in graph.library.function:
        assert not function.attr["_XlaMustCompile"].b, function.signature.name


def test_version_folder_is_complete_and_carded(exported):
    spec, _, path = exported
    assert path.name == "1" and (path / "saved_model.pb").exists() and (path / "variables").is_dir()
    card = json.loads((path / "model_card.json").read_text())
    assert card["name"] == spec.name and card["dataset"] == "mnist" and card["package_version"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_versions_count_up_and_never_overwrite(tmp_path, images):
    spec = get_spec("dense_ae")
    model = spec.build((28, 28, 1), 4)
    model(images)
    assert export_model(model, spec, tmp_path).name == "1"
    assert export_model(model, spec, tmp_path).name == "2"
    assert next_version(tmp_path / "dense_ae") == 3
    with pytest.raises(FileExistsError, match="next free: 3"):
        export_model(model, spec, tmp_path, version=2)


def test_a_failed_export_leaves_no_version_behind(tmp_path, images):
    spec = get_spec("dense_ae")
    model = spec.build((28, 28, 1), 4)
    card = {}
    card["itself"] = card  # json cannot write it: the export fails after the SavedModel is written
    with pytest.raises(ValueError, match="Circular reference"):
        export_model(model, spec, tmp_path, card=card)
    assert list((tmp_path / "dense_ae").iterdir()) == []


def test_no_weight_is_stored_twice(exported):
    """Only what the signatures use is saved (PCA's explained variance is not), and once."""
    _, model, path = exported
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    stored = sum(
        np.prod(shape)
        for key, shape in reader.get_variable_to_shape_map().items()
        if "OBJECT_GRAPH" not in key
    )
    assert 0 < stored <= sum(np.prod(w.shape) for w in model.weights)


def test_an_export_removes_folders_left_by_killed_exports(tmp_path):
    spec = get_spec("pca")
    model = spec.build((28, 28, 1), 2)
    base = tmp_path / "pca"
    base.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = base / f".tmp-1-{dead.pid}-abc"
    alive = base / f".tmp-2-{os.getpid()}-def"  # an export still running: left alone
    for folder in (stale, alive):
        (folder / "variables").mkdir(parents=True)
    path = export_model(model, spec, tmp_path, version=1)
    assert path.name == "1" and not stale.exists() and alive.exists()
