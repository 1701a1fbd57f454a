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


@signature("encode")
def _encode(model):
    def encode(images):
        return float32_outputs(model.encode(images), "z")

    return encode, [image_spec(model)]


@signature("decode")
def _decode(model):
    def decode(z):
        return float32_outputs(model.decode(z), "images")

    return decode, [latent_spec(model)]


@signature("reconstruct")
def _reconstruct(model):
    def reconstruct(images):
        return float32_outputs(model.reconstruct(images), "images")

    return reconstruct, [image_spec(model)]


@signature("denoise")
def _denoise(model):
    def denoise(images):
        return float32_outputs(model.denoise(images), "images")

    return denoise, [image_spec(model)]


def next_version(base: Path) -> int:
    """The next free integer version under `base` (1 when there is none)."""
    versions = [int(p.name) for p in base.glob("*") if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    return max(versions, default=0) + 1


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

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name in (*spec.signatures, "serving_default"):
        fn, input_specs = SIGNATURES[spec.default_signature if name == "serving_default" else name](model)
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
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(card or {}),
        }
        (temporary / "model_card.json").write_text(json.dumps(full_card, indent=2, default=str) + "\n")
        temporary.chmod(0o755)  # mkdtemp makes it 0700; servers often run as another user
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final
