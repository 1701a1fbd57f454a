"""SavedModel export for TensorFlow Serving: named signatures, atomic versions, model cards.

Layout written (what `tensorflow/serving` watches):

    savedmodels/NAME/VERSION/saved_model.pb, variables/, model_card.json

A version is written to a hidden `.tmp-*` folder beside it and renamed into place, so a
server polling `savedmodels/NAME` never sees a half-written version.

Signatures are a public API. Each builder in `SIGNATURES` turns a model method into a
function with named inputs and a dict of named float32 outputs (TF Serving's REST API cannot
write half floats, so mixed-precision outputs are cast). The graphs hold no `tf.py_function`
and no XLA-compiled functions: TF Serving must run them as they are.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from genkeras import __version__

SIGNATURES: dict[str, Callable] = {}


def signature(name: str):
    """Registers `builder(model) -> (fn, input_specs)` as the way to export signature `name`."""

    def register(builder):
        SIGNATURES[name] = builder
        return builder

    return register


def image_spec(model, name="images"):
    return tf.TensorSpec([None, *model.image_shape], tf.float32, name=name)


def latent_spec(model, name="z"):
    return tf.TensorSpec([None, model.latent_dim], tf.float32, name=name)


def float32_outputs(outputs, default_name):
    """A dict of float32 tensors: a bare tensor is named `default_name`."""
    if not isinstance(outputs, dict):
        outputs = {default_name: outputs}
    return {
        key: tf.cast(value, tf.float32) if value.dtype.is_floating else value
        for key, value in outputs.items()
    }


def labels_spec(name="labels"):
    return tf.TensorSpec([None], tf.int32, name=name)


def conditional(model) -> bool:
    """Conditional models (cvae) take an int32 `labels` [N] input in every signature."""
    return bool(getattr(model, "num_classes", 0))


def endpoint(model, call, output_name, input_specs):
    """A signature function and its input specs: `call(*inputs)`, plus the int32 `labels` [N]
    input (passed as `labels=`, checked to lie in [0, num_classes)) when the model is
    conditional; outputs are float32, a bare tensor named `output_name`."""
    if conditional(model):

        def with_labels(*inputs):
            labels = checked_labels(inputs[-1], model.num_classes)
            return float32_outputs(call(*inputs[:-1], labels=labels), output_name)

        return with_labels, [*input_specs, labels_spec()]

    def without_labels(*inputs):
        return float32_outputs(call(*inputs), output_name)

    return without_labels, list(input_specs)


# A `sample` or `complete` answer must fit in gRPC's default message size, which TF Serving
# and genkeras serve keep: larger batches are refused inside the graph, so that a 40-byte
# request cannot make any server allocate without bound.
GRPC_DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024


def max_generated_images(model) -> int:
    """The most images one `sample` or `complete` call may return (float32, 64 KiB spare)."""
    return max(1, (GRPC_DEFAULT_MESSAGE_BYTES - 64 * 1024) // (4 * math.prod(model.image_shape)))


def checked_count(count, limit: int, what: str):
    """`count` (an int32 scalar tensor), once the graph has checked 0 <= count <= limit; out
    of range, the call fails with INVALID_ARGUMENT naming `what` and the limit."""
    checks = [
        tf.debugging.assert_non_negative(count, message=f"{what} must be >= 0"),
        tf.debugging.assert_less_equal(
            count,
            tf.constant(limit, count.dtype),
            message=f"{what} must be at most {limit} (one answer must fit in a 4 MiB gRPC "
            "message); ask in several requests",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(count)


def checked_labels(labels, num_classes: int):
    """`labels` once the graph has checked each lies in [0, num_classes) (INVALID_ARGUMENT)."""
    checks = [
        tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
        tf.debugging.assert_less(
            labels,
            tf.constant(num_classes, labels.dtype),
            message=f"labels must be < {num_classes} (the model's number of classes)",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


@signature("encode")
def _encode(model):
    """`images` [+ `labels`] -> `z` (autoencoders, PCA) or `z_mean`, `z_log_var`, `z` (VAEs)."""
    return endpoint(model, model.encode, "z", [image_spec(model)])


@signature("decode")
def _decode(model):
    """`z` [+ `labels`] -> `images`."""
    return endpoint(model, model.decode, "images", [latent_spec(model)])


@signature("reconstruct")
def _reconstruct(model):
    """`images` [+ `labels`] -> `images`."""
    return endpoint(model, model.reconstruct, "images", [image_spec(model)])


@signature("denoise")
def _denoise(model):
    """`images` -> `images` (autoencoders)."""
    return endpoint(model, model.denoise, "images", [image_spec(model)])


@signature("log_prob")
def _log_prob(model):
    """`images` [+ `labels`] -> `log_prob` float32 [N], nats per image, via `model.log_prob`.

    VAEs give an importance-weighted estimate with k fixed at export (`log_prob_samples`).
    """
    return endpoint(model, model.log_prob, "log_prob", [image_spec(model)])


@signature("sample")
def _sample(model):
    """`num`, `seed` (int32 scalars) [+ `temperature` float32 scalar for pixel models: 1 = the
    model's own distribution, < 1 sharper] [+ `labels` int32 [num]] -> `images`.

    Same seed, same images: models draw with `StatelessSeed(seed)`. `num` must lie in
    [0, `max_generated_images(model)`].
    """
    scalars = [tf.TensorSpec([], tf.int32, name="num"), tf.TensorSpec([], tf.int32, name="seed")]
    limit = max_generated_images(model)
    if getattr(model, "supports_temperature", False):

        def sample(num, seed, temperature, labels=None):
            num = checked_count(num, limit, "num")
            return model.sample(num, seed, temperature=temperature, labels=labels)

        scalars.append(tf.TensorSpec([], tf.float32, name="temperature"))
    else:

        def sample(num, seed, labels=None):
            return model.sample(checked_count(num, limit, "num"), seed, labels=labels)

    return endpoint(model, sample, "images", scalars)


@signature("complete")
def _complete(model):
    """`images`, `rows` (int32 scalar), `seed` (int32 scalar) [+ `labels`] -> `images`.

    Keeps the first `rows` rows of each image exactly as given and samples the rest pixel by
    pixel (temperature 1); the same seed gives the same completions. At most
    `max_generated_images(model)` images per call. Pixel models only.
    """
    specs = [
        image_spec(model),
        tf.TensorSpec([], tf.int32, name="rows"),
        tf.TensorSpec([], tf.int32, name="seed"),
    ]
    limit = max_generated_images(model)

    def complete(images, rows, seed, labels=None):
        with tf.control_dependencies([checked_count(tf.shape(images)[0], limit, "images")]):
            return model.complete(tf.identity(images), rows, seed, labels=labels)

    return endpoint(model, complete, "images", specs)


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


def next_version(base: Path) -> int:
    """The next free integer version under `base` (1 when there is none)."""
    versions = [int(p.name) for p in base.glob("*") if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    return max(versions, default=0) + 1


# Warm-up records (TF Serving replays assets.extra/tf_serving_warmup_requests when it loads a
# version, so the first real request does not pay for graph initialisation).
WARMUP_SCALARS = {"num": 1, "seed": 0, "rows": 0, "temperature": 1.0}


def warmup_inputs(input_specs) -> dict:
    """A small valid request for a signature, from its input specs: zeros of batch 1, `num`=1,
    `seed`=0, `rows`=0, `temperature`=1.0, `labels` zeros of length `num`."""
    import numpy as np

    num = WARMUP_SCALARS["num"]
    inputs = {}
    for spec in input_specs:
        dtype = spec.dtype.as_numpy_dtype
        if spec.shape.rank == 0:
            inputs[spec.name] = np.asarray(WARMUP_SCALARS.get(spec.name, 0), dtype=dtype)
        else:
            sizes = spec.shape.as_list()
            shape = [num if (size is None or spec.name == "labels") else size for size in sizes]
            inputs[spec.name] = np.zeros(shape, dtype=dtype)
    return inputs


def write_warmup_requests(version_dir, model_name: str, signature_specs: dict) -> Path:
    """Writes `assets.extra/tf_serving_warmup_requests`: one PredictionLog per signature."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(version_dir) / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, input_specs in signature_specs.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = name
            for key, value in warmup_inputs(input_specs).items():
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
        full_card = {
            "name": spec.name,
            "version": version,
            "description": spec.description,
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
        write_warmup_requests(temporary, spec.name, warmup_specs)
        write_batching_params(temporary, warmup_specs)
        temporary.chmod(0o755)  # mkdtemp makes it 0700; servers often run as another user
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final
