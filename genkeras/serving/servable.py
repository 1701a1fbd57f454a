"""One loaded SavedModel version: its signatures, request validation, running and warm-up.

A `Servable` checks a request as TF Serving does (input names, dtypes and shapes against the
SignatureDef, with TF Serving's messages), runs the signature's concrete function, through
the batcher when one is set, and replays the export's warm-up records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genkeras.serving import dtypes
from genkeras.serving.errors import (
    ServingError,
    failed_precondition,
    internal,
    invalid_argument,
    not_found,
    status_of,
)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def read_signature_defs(path: Path):
    """The `serve` MetaGraph's SignatureDef map, read from saved_model.pb as TF Serving reads it."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    if not pb.exists():
        raise ServingError(
            not_found(
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
            )
        )
    try:
        proto.ParseFromString(pb.read_bytes())
    except Exception:  # noqa: BLE001 - any parse failure is data loss
        raise ServingError(("DATA_LOSS", f"Can't parse {pb} as binary proto")) from None
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ServingError(
        not_found(f"Could not find meta graph def matching supplied tags: {{ serve }} in {path}")
    )


class Servable:
    """One loaded version: its signature defs and the functions that run them.

    Args:
        name: the model name.
        version: the version number.
        path: the version folder (holding saved_model.pb).

    Raises:
        ServingError: when the SavedModel cannot be read or loaded (its status as TF Serving
            reports it).
    """

    def __init__(self, name: str, version: int, path: Path):
        import tensorflow as tf

        self.name, self.version, self.path = name, version, Path(path)
        self.signature_defs = read_signature_defs(self.path)
        try:
            self.loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        except Exception as error:  # noqa: BLE001
            raise ServingError(status_of(error)) from None
        self.functions = dict(self.loaded.signatures)
        self.inputs = {
            key: {alias: info for alias, info in sig.inputs.items()}
            for key, sig in self.signature_defs.items()
        }
        self.batcher = None  # set by the manager when batching is on

    # -- signature look-up ----------------------------------------------------------------------
    def signature(self, signature_name: str):
        """`(key, SignatureDef)` for a requested name (`""`: the default signature).

        An unknown name is FAILED_PRECONDITION, as TF Serving's Predict answers it.
        """
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self.functions:
            raise ServingError(failed_precondition(f'Serving signature key "{key}" not found.'))
        return key, self.signature_defs[key]

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        """REST's view: unknown signature is INVALID_ARGUMENT there (GetInfoMap)."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise ServingError(
                invalid_argument(f'Serving signature name: "{key}" not found in signature def')
            )
        return {
            alias: dtypes.enum_name(info.dtype)
            for alias, info in self.signature_defs[key].inputs.items()
        }

    # -- running --------------------------------------------------------------------------------
    def validate(self, key: str, signature, inputs: dict[str, np.ndarray]) -> None:
        """Checks input names, dtypes and shapes against the signature.

        Raises:
            ServingError: INVALID_ARGUMENT with TF Serving's message for the first mismatch.
        """
        wanted = set(signature.inputs)
        sent = set(inputs)
        if len(sent) != len(wanted):
            raise ServingError(
                invalid_argument(
                    f"input size does not match signature: {len(sent)}!={len(wanted)} "
                    f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                    f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                    f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
                )
            )
        for alias in sorted(sent):
            if alias not in wanted:
                raise ServingError(
                    invalid_argument(
                        f"input tensor alias not found in signature: {alias}. "
                        f"Inputs expected to be in the set {{{','.join(sorted(wanted))}}}."
                    )
                )
        for index, alias in enumerate(sorted(wanted)):
            info = signature.inputs[alias]
            expected = dtypes.enum_name(info.dtype)
            array = inputs[alias]
            got = dtypes.name_of_array(array)
            if got != expected:
                raise ServingError(
                    invalid_argument(
                        f"Expects arg[{index}] to be {dtypes.type_string(expected)} but "
                        f"{dtypes.type_string(got)} is provided"
                    )
                )
            if not info.tensor_shape.unknown_rank:
                dims = [d.size for d in info.tensor_shape.dim]
                if len(dims) != array.ndim or any(
                    d not in (-1, s) for d, s in zip(dims, array.shape, strict=False)
                ):
                    raise ServingError(
                        invalid_argument(
                            f"input tensor {alias} has shape [{','.join(map(str, array.shape))}] but the "  # noqa: E501
                            f"signature {key} expects [{','.join(map(str, dims))}] (-1: any size)"
                        )
                    )

    def run_unbatched(self, key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls the signature's function once; returns its outputs as numpy arrays."""
        import tensorflow as tf

        try:
            outputs = self.functions[key](**{k: tf.constant(v) for k, v in inputs.items()})
        except Exception as error:  # noqa: BLE001
            raise ServingError(status_of(error)) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def batchable(self, key: str) -> bool:
        """Every input has a leading dimension of any size (TF Serving's batching needs one)."""
        signature = self.signature_defs[key]
        for info in signature.inputs.values():
            shape = info.tensor_shape
            if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1:
                return False
        return bool(signature.inputs)

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray], output_filter=()):
        """Runs one request: validates it, runs it (batched when possible), filters outputs.

        Args:
            signature_name: the requested signature (`""`: the default one).
            inputs: input alias -> array.
            output_filter: the output aliases wanted (all of them when empty).

        Returns:
            `(signature key, outputs)`, outputs mapping alias -> array.
        """
        key, signature = self.signature(signature_name)
        if signature.method_name and signature.method_name not in (
            PREDICT_METHOD,
            "tensorflow/serving/classify",
            "tensorflow/serving/regress",
        ):
            raise ServingError(
                internal(f"Expected prediction signature method_name, was: {signature.method_name}")
            )
        self.validate(key, signature, inputs)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    invalid_argument(
                        f"output tensor alias not found in signature: {alias} Outputs expected to be "  # noqa: E501
                        f"in the set {{{','.join(sorted(signature.outputs))}}}."
                    )
                )
        if len(set(output_filter)) != len(output_filter):
            raise ServingError(invalid_argument("duplicate output tensor alias"))
        if self.batcher is not None and self.batchable(key):
            outputs = self.batcher.run(
                (self.name, self.version, key), lambda x: self.run_unbatched(key, x), inputs
            )
        else:
            outputs = self.run_unbatched(key, inputs)
        if output_filter:
            outputs = {alias: outputs[alias] for alias in output_filter}
        return key, outputs

    def warm_up(self) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests` (PredictionLog records), as TF Serving does."""  # noqa: E501
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for record in tf.data.TFRecordDataset(str(path)):
            entry = prediction_log_pb2.PredictionLog()
            entry.ParseFromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                raise ServingError(
                    invalid_argument("Unsupported log_type for warmup: only predict_log here")
                )
            request = entry.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            self.predict(request.model_spec.signature_name, inputs, tuple(request.output_filter))
            count += 1
        return count
