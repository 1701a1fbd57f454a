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
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

import genkeras

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


def _with_labels(model, method, default_name, first_spec):
    """`fn(x[, labels])` calling `method(x[, labels])`; `labels` only for conditional models."""
    if conditional(model):

        def fn(inputs, labels):
            return float32_outputs(method(inputs, labels), default_name)

        return fn, [first_spec, labels_spec()]

    def fn(inputs):
        return float32_outputs(method(inputs), default_name)

    return fn, [first_spec]


@signature("encode")
def _encode(model):
    if conditional(model):
        return _with_labels(model, model.encode, "z", image_spec(model))

    def encode(images):
        return float32_outputs(model.encode(images), "z")

    return encode, [image_spec(model)]


@signature("decode")
def _decode(model):
    if conditional(model):
        return _with_labels(model, model.decode, "images", latent_spec(model))

    def decode(z):
        return float32_outputs(model.decode(z), "images")

    return decode, [latent_spec(model)]


@signature("reconstruct")
def _reconstruct(model):
    if conditional(model):
        return _with_labels(model, model.reconstruct, "images", image_spec(model))

    def reconstruct(images):
        return float32_outputs(model.reconstruct(images), "images")

    return reconstruct, [image_spec(model)]


@signature("sample")
def _sample(model):
    """`num`, `seed` (int32 scalars) [+ `labels` int32 [num]] -> `images`, via `model.sample`.

    Same seed, same images: models draw with `StatelessSeed(seed)`.
    """
    scalars = [tf.TensorSpec([], tf.int32, name="num"), tf.TensorSpec([], tf.int32, name="seed")]
    if getattr(model, "supports_temperature", False):
        return _sample_with_temperature(model, scalars)
    if conditional(model):

        def sample_conditional(num, seed, labels):
            return float32_outputs(model.sample(num, seed, labels=labels), "images")

        return sample_conditional, [*scalars, labels_spec()]

    def sample(num, seed):
        return float32_outputs(model.sample(num, seed), "images")

    return sample, scalars


def _sample_with_temperature(model, scalars):
    """Pixel models: `num`, `seed`, `temperature` (float32 scalar, 1 = the model's own
    distribution, < 1 sharper) [+ `labels`] -> `images`."""
    scalars = [*scalars, tf.TensorSpec([], tf.float32, name="temperature")]
    if conditional(model):

        def sample_conditional(num, seed, temperature, labels):
            images = model.sample(num, seed, temperature=temperature, labels=labels)
            return float32_outputs(images, "images")

        return sample_conditional, [*scalars, labels_spec()]

    def sample(num, seed, temperature):
        return float32_outputs(model.sample(num, seed, temperature=temperature), "images")

    return sample, scalars


@signature("complete")
def _complete(model):
    """`images`, `rows` (int32 scalar), `seed` (int32 scalar) [+ `labels`] -> `images`.

    Keeps the first `rows` rows of each image exactly as given and samples the rest pixel by
    pixel (temperature 1); the same seed gives the same completions. Pixel models only.
    """
    specs = [
        image_spec(model),
        tf.TensorSpec([], tf.int32, name="rows"),
        tf.TensorSpec([], tf.int32, name="seed"),
    ]
    if conditional(model):

        def complete_conditional(images, rows, seed, labels):
            return float32_outputs(model.complete(images, rows, seed, labels=labels), "images")

        return complete_conditional, [*specs, labels_spec()]

    def complete(images, rows, seed):
        return float32_outputs(model.complete(images, rows, seed), "images")

    return complete, specs


@signature("log_prob")
def _log_prob(model):
    """`images` [+ `labels`] -> `log_prob` float32 [N], nats per image, via `model.log_prob`.

    VAEs give an importance-weighted estimate with k fixed at export (`log_prob_samples`).
    """
    if conditional(model):
        return _with_labels(model, model.log_prob, "log_prob", image_spec(model))

    def log_prob(images):
        return float32_outputs(model.log_prob(images), "log_prob")

    return log_prob, [image_spec(model)]


@signature("denoise")
def _denoise(model):
    def denoise(images):
        return float32_outputs(model.denoise(images), "images")

    return denoise, [image_spec(model)]


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

    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        archive.write_out(str(temporary), verbose=False)
        full_card = {
            "name": spec.name,
            "version": version,
            "description": spec.description,
            "signatures": [*spec.signatures, "serving_default"],
            "default_signature": spec.default_signature,
            "package_version": genkeras.__version__,
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


def main(argv=None) -> int:
    """`genkeras export --model NAME [--keras FILE] [--export-dir savedmodels] [--version N]`.

    Exports a trained `.keras` file (default `runs/NAME/NAME.keras`) with the model card built
    from the run's `metrics.json` beside it.
    """
    import argparse

    from genkeras.registry import UnknownModelError, get_spec

    parser = argparse.ArgumentParser(
        prog="genkeras export", description=main.__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True, help="registry name")
    parser.add_argument("--keras", help="the .keras file (default: runs/NAME/NAME.keras)")
    parser.add_argument("--export-dir", default="savedmodels")
    parser.add_argument("--version", type=int, help="default: next free integer")
    args = parser.parse_args(argv)
    try:
        spec = get_spec(args.model)
    except UnknownModelError as error:
        parser.error(str(error))
    source = Path(args.keras or f"runs/{spec.name}/{spec.name}.keras")
    if not source.exists():
        parser.error(
            f"{source} does not exist; train first (python train.py --model {spec.name}) "
            "or pass --keras."
        )
    metrics = source.parent / "metrics.json"
    card = json.loads(metrics.read_text()) if metrics.exists() else {}
    try:
        path = export_model(
            keras.saving.load_model(source), spec, args.export_dir, args.version, card
        )
    except FileExistsError as error:
        parser.error(str(error))
    print(f"SavedModel: {path}")
    return 0
