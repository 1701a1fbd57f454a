"""SavedModel export for TensorFlow Serving: named signatures, atomic versions, model cards.

Layout written (what `tensorflow/serving` watches):

    savedmodels/NAME/VERSION/saved_model.pb, variables/, model_card.json

A version is written to a hidden `.tmp-*` folder beside it and renamed into place, so a
server polling `savedmodels/NAME` never sees a half-written version.

The signatures themselves are built in `genkeras.signatures`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from genkeras import __version__
from genkeras.signatures import METHOD_NAMES, SIGNATURES, max_generated_images

__all__ = ["BATCHING_PARAMS", "export_model", "max_generated_images", "next_version"]


def remove_stale_temporaries(base: Path) -> list[Path]:
    """Removes the `.tmp-VERSION-PID-*` folders of exports whose process no longer runs (one
    killed mid-export leaves its folder behind); returns what it removed."""
    removed = []
    for folder in base.glob(".tmp-*"):
        match = re.fullmatch(r"\.tmp-\d+-(\d+)-.*", folder.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def set_method_names(version_dir: Path, method_names: dict) -> None:
    """Rewrites `saved_model.pb` so each named signature has its TF Serving method name."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(version_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for key, method_name in method_names.items():
            if key in meta_graph.signature_def:
                meta_graph.signature_def[key].method_name = method_name
    path.write_bytes(saved_model.SerializeToString())


def next_version(base: Path) -> int:
    """The next free integer version under `base` (1 when there is none)."""
    versions = [int(p.name) for p in base.glob("*") if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    return max(versions, default=0) + 1


# Warm-up records (TF Serving replays assets.extra/tf_serving_warmup_requests when it loads a
# version, so the first real request does not pay for graph initialisation).
WARMUP_SCALARS = {"num": 1, "seed": 0, "rows": 0, "temperature": 1.0}


def warmup_inputs(input_specs, image_shape=()) -> dict:
    """A small valid request for a signature, from its input specs: zeros of batch 1, `num`=1,
    `seed`=0, `rows`=0, `temperature`=1.0, `labels` zeros of length `num`; a string input
    (classify's serialized examples) gets one `tf.Example` whose `images` are zeros."""
    import numpy as np

    num = WARMUP_SCALARS["num"]
    inputs = {}
    for spec in input_specs:
        dtype = spec.dtype.as_numpy_dtype
        if spec.dtype == tf.string:
            pixels = tf.train.FloatList(value=[0.0] * math.prod(image_shape))
            feature = {"images": tf.train.Feature(float_list=pixels)}
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            inputs[spec.name] = np.asarray([example.SerializeToString()], dtype=object)
        elif spec.shape.rank == 0:
            inputs[spec.name] = np.asarray(WARMUP_SCALARS.get(spec.name, 0), dtype=dtype)
        else:
            sizes = spec.shape.as_list()
            shape = [num if (size is None or spec.name == "labels") else size for size in sizes]
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


def write_warmup_requests(
    version_dir, model_name: str, signature_specs: dict, image_shape=()
) -> Path:
    """Writes `assets.extra/tf_serving_warmup_requests`: one PredictionLog per signature."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(version_dir) / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, input_specs in signature_specs.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = name
            for key, value in warmup_inputs(input_specs, image_shape).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            entry = prediction_log_pb2.PredictLog(request=request)
            writer.write(prediction_log_pb2.PredictionLog(predict_log=entry).SerializeToString())
    path.parent.chmod(0o755)
    return path


# TF Serving with --enable_per_model_batching_parameters batches a version only when its folder
# holds batching_params.pbtxt. Written only when every signature takes a batch dimension
# (TF Serving's batching refuses scalar inputs such as `sample`'s num and seed). Keep in step
# with serving/batching.config (a test compares them).
BATCHING_PARAMS = """max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
allowed_batch_sizes: 1
allowed_batch_sizes: 2
allowed_batch_sizes: 4
allowed_batch_sizes: 8
allowed_batch_sizes: 16
allowed_batch_sizes: 32
allowed_batch_sizes: 64
pad_variable_length_inputs: false
"""


def batchable(signature_specs: dict) -> bool:
    return all(
        spec.shape.rank and spec.shape[0] is None
        for input_specs in signature_specs.values()
        for spec in input_specs
    )


def write_batching_params(version_dir, signature_specs: dict) -> Path | None:
    if not batchable(signature_specs):
        return None
    path = Path(version_dir) / "batching_params.pbtxt"
    path.write_text(BATCHING_PARAMS)
    return path


def export_model(
    model,
    spec,
    export_dir: str | os.PathLike,
    version: int | None = None,
    card: dict | None = None,
) -> Path:
    """Writes `model` as `export_dir/spec.name/VERSION`, atomically, with `model_card.json`.

    Args:
        model: a built genkeras model.
        spec: its `genkeras.registry.ModelSpec` (names the signatures).
        export_dir: the base folder, e.g. "savedmodels".
        version: integer version; defaults to the next free one.
        card: extra model-card fields (data set, hyperparameters, metrics, ...).

    Returns:
        The path of the new version folder.

    Raises:
        FileExistsError: that version already exists (versions are immutable once served).
    """
    base = Path(export_dir) / spec.name
    base.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(base)
    final = base / str(version)
    if final.exists():
        raise FileExistsError(
            f"{final} already exists; served versions are immutable. "
            f"Pick another --version (next free: {next_version(base)})."
        )

    # No `archive.track(model)`: endpoints already capture the variables they use, and tracking
    # the model as well would store every weight twice (Keras wrappers and tf.Variables).
    archive = keras.export.ExportArchive()
    warmup_specs = {}
    for name in (*spec.signatures, "serving_default"):
        fn, input_specs = SIGNATURES[spec.default_signature if name == "serving_default" else name](
            model
        )
        warmup_specs[name] = input_specs
        # Traced here with autograph, so models may loop over tensors (pixel-by-pixel sampling).
        function = tf.function(fn, input_signature=input_specs, jit_compile=False)
        function.get_concrete_function()
        archive.add_endpoint(name, function)

    remove_stale_temporaries(base)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-{os.getpid()}-", dir=base))
    try:
        archive.write_out(str(temporary), verbose=False)
        set_method_names(temporary, METHOD_NAMES)
        full_card = {
            "name": spec.name,
            "version": version,
            "description": spec.description,
            "architecture": type(model).__name__,  # which class (pixelrnn: which --variant)
            "signatures": [*spec.signatures, "serving_default"],
            "default_signature": spec.default_signature,
            "max_generated_images": max_generated_images(model),
            "package_version": __version__,
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            **(card or {}),
        }
        (temporary / "model_card.json").write_text(
            json.dumps(full_card, indent=2, default=str) + "\n"
        )
        write_warmup_requests(temporary, spec.name, warmup_specs, model.image_shape)
        write_batching_params(temporary, warmup_specs)
        temporary.chmod(0o755)  # mkdtemp makes it 0700; servers often run as another user
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final
