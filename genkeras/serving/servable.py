"""One loaded SavedModel version: its signatures, request validation, running and warm-up.

A `Servable` checks a request as TF Serving does (input names and dtypes against the
SignatureDef, with TF Serving's messages; shapes are the graph's business, as there: inputs
of shapes the SignatureDef does not declare run when TensorFlow's shape inference lets them,
`graph_shapes.py`), refuses one whose answer would hold more values than
`RunLimits.max_tensor_elements` before running it, runs the signature (a TF 2 export's
concrete function, or a TF 1 graph's tensors by name in one session: `loader.py`) through
the batcher when one is set; otherwise a request of more rows than
`RunLimits.max_execution_batch_size` runs a slice of rows at a time, so its activations stay
small (requests of undeclared shapes, and signatures that change state, run whole and alone),
stops the run when the request's deadline passes or its client leaves (a TF 1 run: at its
deadline), and replays the export's warm-up records.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from genkeras.serving import dtypes, loader
from genkeras.serving.admission import RequestContext, cancellation_scope
from genkeras.serving.errors import (
    ServingError,
    clip,
    failed_precondition,
    internal,
    invalid_argument,
    status_of,
)
from genkeras.serving.graph_shapes import declared_shape_fits

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


@dataclasses.dataclass(frozen=True)
class RunLimits:
    """What one request may make a servable do.

    Attributes:
        max_tensor_elements: the most values an answer's tensor may hold (`None`: any).
        max_execution_batch_size: a request with a batch dimension runs this many rows at a
            time (0: all at once).
    """

    max_tensor_elements: int | None = None
    max_execution_batch_size: int = 0


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
        self.name, self.version, self.path = name, version, Path(path)
        meta_graph = loader.read_meta_graph(self.path)
        self.saved_signature_defs = loader.copied(meta_graph.signature_def)  # for metadata
        self.model = loader.load(self.path, meta_graph)  # TF 2 functions or a TF 1 session
        self.signature_defs = self.model.signature_defs  # what requests are checked against
        self.functions, self.shape_checks = self.model.functions, self.model.shape_checks
        self.inputs = {
            key: {alias: info for alias, info in sig.inputs.items()}
            for key, sig in self.signature_defs.items()
        }
        self.batcher = None  # set by the manager when batching is on
        self.limits = RunLimits()  # set by the manager

    # -- signature look-up ----------------------------------------------------------------------
    def signature(self, signature_name: str):
        """`(key, SignatureDef)` for a requested name (`""`: the default signature).

        An unknown name is FAILED_PRECONDITION, as TF Serving's Predict answers it.
        """
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self.functions:
            raise ServingError(
                failed_precondition(f'Serving signature key "{clip(key)}" not found.')
            )
        return key, self.signature_defs[key]

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        """REST's view: unknown signature is INVALID_ARGUMENT there (GetInfoMap)."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise ServingError(
                invalid_argument(
                    f'Serving signature name: "{clip(key)}" not found in signature def'
                )
            )
        return {
            alias: dtypes.enum_name(info.dtype)
            for alias, info in self.signature_defs[key].inputs.items()
        }

    # -- running --------------------------------------------------------------------------------
    def validate(self, signature, inputs: dict[str, np.ndarray]) -> bool:
        """Checks input names and dtypes against the signature, as TF Serving does.

        Returns:
            Whether every input has a shape the signature declares (else the graph decides).

        Raises:
            ServingError: INVALID_ARGUMENT with TF Serving's message for the first mismatch.
        """
        wanted = set(signature.inputs)
        sent = set(inputs)
        if len(sent) != len(wanted):
            raise ServingError(
                invalid_argument(
                    f"input size does not match signature: {len(sent)}!={len(wanted)} "
                    f"len({{{clip(','.join(sorted(sent)))}}}) != "
                    f"len({{{','.join(sorted(wanted))}}}). "
                    f"Sent extra: {{{clip(','.join(sorted(sent - wanted)))}}}. "
                    f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
                )
            )
        for alias in sorted(sent):
            if alias not in wanted:
                raise ServingError(
                    invalid_argument(
                        f"input tensor alias not found in signature: {clip(alias)}. "
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
        return all(declared_shape_fits(signature.inputs[a], inputs[a].shape) for a in wanted)

    def _call(self, key: str, inputs: dict, context: RequestContext | None) -> dict:
        """One run of the signature, stopped if `context` is cancelled or past its deadline."""
        if context is not None:
            context.check()
        try:
            with cancellation_scope(context):
                return self.model.run(key, inputs, context)
        except Exception as error:  # noqa: BLE001
            if context is not None and context.reason is not None:
                raise ServingError(context.reason) from None
            raise ServingError(status_of(error)) from None

    def _sliceable_rows(self, key: str, inputs: dict) -> int | None:
        """The request's rows when its signature may run a slice of them at a time."""
        if not self.runs_in_slices(key):
            return None
        return int(np.shape(next(iter(inputs.values())))[0])

    def runs_in_slices(self, key: str) -> bool:
        """Every input and output of the signature has a leading dimension of any size."""
        for info in self.signature_defs[key].outputs.values():
            shape = info.tensor_shape
            if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1:
                return False
        return self.batchable(key)

    def check_whole_run(self, key: str, inputs: dict[str, np.ndarray]) -> None:
        """Refuses inputs of undeclared shapes larger than one slice of declared rows.

        Such inputs have no batch dimension to slice, so they run whole; where declared
        ones would run `max_execution_batch_size` rows at a time, they may hold no more
        values than that many declared rows (a [21000,28,28] tensor to `images` [-1,28,28,1]
        would otherwise run 21000 images at once).

        Raises:
            ServingError: INVALID_ARGUMENT naming the input, the limit and its flag.
        """
        step = self.limits.max_execution_batch_size
        if step <= 0 or not self.runs_in_slices(key):
            return
        for alias, array in sorted(inputs.items()):
            dims = self.signature_defs[key].inputs[alias].tensor_shape.dim[1:]
            most = step * math.prod(max(1, d.size) for d in dims)
            if array.size > most:
                shape = ",".join(map(str, array.shape))
                raise ServingError(
                    invalid_argument(
                        f"Input tensor {clip(alias)} of shape [{shape}], not the shape the "
                        f"signature {clip(key)} declares, runs whole rather than "
                        f"{step} rows at a time (--max_execution_batch_size), so it may hold "
                        f"at most {most} values; send it in the declared shape or smaller"
                    )
                )

    def run_unbatched(
        self,
        key: str,
        inputs: dict[str, np.ndarray],
        context: RequestContext | None = None,
        sliceable: bool = True,
    ) -> dict[str, np.ndarray]:
        """Runs the signature, a slice of rows at a time when the request is large.

        Args:
            key: the signature key.
            inputs: input alias -> array (already validated).
            context: the request's deadline and cancellation, or `None` (warm-up).
            sliceable: whether the inputs have the declared shapes (else they run whole).

        Returns:
            Output alias -> numpy array.
        """
        step = self.limits.max_execution_batch_size
        rows = self._sliceable_rows(key, inputs) if step > 0 and sliceable else None
        if rows is None or rows <= step:
            return self._call(key, inputs, context)
        parts = [
            self._call(key, {k: v[start : start + step] for k, v in inputs.items()}, context)
            for start in range(0, rows, step)
        ]
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def check_answer_size(
        self, key: str, inputs: dict[str, np.ndarray], inferred: dict | None = None
    ) -> None:
        """Refuses a request whose answer would hold more than `max_tensor_elements` values.

        The size is known before running where an output's shape is fixed but for a batch
        dimension shared with the inputs (`decode`: 784 values per row of `z`), or, for
        inputs of undeclared shapes, where shape inference found it (`inferred`).

        Raises:
            ServingError: INVALID_ARGUMENT naming the output, the limit and its flag.
        """
        limit = self.limits.max_tensor_elements
        if limit is None:
            return
        rows = None  # the batch dimension, when the inputs have their declared shapes
        if inferred is None and self.batchable(key):
            rows = int(np.shape(next(iter(inputs.values())))[0])
        for alias, info in sorted(self.signature_defs[key].outputs.items()):
            shape = info.tensor_shape
            if inferred is not None:
                found = inferred.get(alias)
                dims = [-1] if found is None else [-1 if d is None else d for d in found]
            elif shape.unknown_rank:
                continue
            else:
                dims = [d.size for d in shape.dim]
            if dims and dims[0] == -1 and rows is not None:
                dims[0] = rows
            if any(d < 0 for d in dims):
                continue
            count = math.prod(dims)
            if count > limit:
                per_row = max(1, count // max(1, dims[0])) if dims else 1
                raise ServingError(
                    invalid_argument(
                        f"The answer's output tensor {alias} would hold {count} elements, more "
                        f"than the limit of {limit} (--max_tensor_elements); send at most "
                        f"{limit // per_row} rows per request"
                    )
                )

    def batchable(self, key: str) -> bool:
        """Every input has a leading dimension of any size (TF Serving's batching needs one),
        and running the signature changes no state (a TF 1 `incr_counter` runs once a request)."""
        signature = self.signature_defs[key]
        if self.model.stateful(key):
            return False
        for info in signature.inputs.values():
            shape = info.tensor_shape
            if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1:
                return False
        return bool(signature.inputs)

    def predict(
        self,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter=(),
        context: RequestContext | None = None,
    ):
        """Runs one request: validates it, runs it (batched when possible), filters outputs.

        Args:
            signature_name: the requested signature (`""`: the default one).
            inputs: input alias -> array.
            output_filter: the output aliases wanted (all of them when empty).
            context: the request's deadline and cancellation (`None`: none, as in warm-up).

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
        declared = self.validate(signature, inputs)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    invalid_argument(
                        f"output tensor alias not found in signature: {clip(alias)} Outputs "
                        "expected to be "
                        f"in the set {{{','.join(sorted(signature.outputs))}}}."
                    )
                )
        if len(set(output_filter)) != len(output_filter):
            raise ServingError(invalid_argument("duplicate output tensor alias"))
        inferred = None  # shapes the SignatureDef does not declare: the graph decides
        if not declared:
            self.check_whole_run(key, inputs)
            inferred = self.shape_checks[key].output_shapes(inputs)
        self.check_answer_size(key, inputs, inferred)
        if declared and self.batcher is not None and self.batchable(key):
            outputs = self.batcher.run(
                (self.name, self.version, key),
                lambda x: self.run_unbatched(key, x),
                inputs,
                context,
            )
        else:
            outputs = self.run_unbatched(key, inputs, context, sliceable=declared)
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
