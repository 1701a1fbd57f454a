"""Loading a SavedModel's `serve` MetaGraph the way its writer meant it to run.

TF Serving loads every SavedModel into one session and calls a signature by feeding its
SignatureDef's input tensor names and fetching its output tensor names
(`servables/tensorflow/predict_util.cc`, `classifier.cc`, `regressor.cc`, `util.cc`). Here:

* **TF 2 exports** (the MetaGraph holds an object graph: `tf.saved_model.save`, Keras 3,
  genkeras's own exports) load with `tf.saved_model.load` and run their signatures'
  concrete functions, as before this module (`FunctionModel`).
* **TF 1 graphs** (no object graph: `tf.compat.v1.saved_model.Builder`, estimators, TF
  Serving's `saved_model_half_plus_three` and `saved_model_counter`) load with
  `tf.compat.v1.saved_model.loader.load` into their own graph and session, and a signature
  runs as TF Serving runs it: one `Session::Run` with the input tensor names fed and the
  output tensor names fetched (`SessionModel`). `tf.saved_model.load` would rebuild each
  signature as a function instead, which fails on ref-typed outputs (`float_ref`) and on
  placeholders of unset shape, and gives every signature its own copy of the graph rather
  than one shared state.

A TF 1 run is not stopped by a client that leaves (a session run has no cancellation from
Python); the request's deadline becomes the run's `RunOptions.timeout_in_ms`, as TF Serving
sets it. A TF 1 signature whose fetches change state (an `Assign` into a ref variable, an
`AssignVariableOp`, or any stateful op not known to only read) is never batched or run in
slices: `incr_counter` runs once per request.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genkeras.serving.errors import ServingError, not_found, status_of
from genkeras.serving.graph_shapes import GraphShapeCheck

# Stateful ops that keep no state from one run to the next, or only read it: a signature
# made of these (and stateless ops) may be batched and sliced. Any other stateful op, and
# any op writing through a ref input (Assign, ScatterUpdate, CountUpTo), changes state.
READ_ONLY_OPS = frozenset(
    "VariableV2 Variable VarHandleOp ReadVariableOp VarIsInitializedOp IsVariableInitialized "
    "ResourceGather ResourceGatherNd HashTable HashTableV2 MutableHashTable MutableHashTableV2 "
    "MutableHashTableOfTensors MutableHashTableOfTensorsV2 MutableDenseHashTable "
    "MutableDenseHashTableV2 LookupTableFind LookupTableFindV2 LookupTableSize "
    "LookupTableSizeV2 LookupTableExport LookupTableExportV2 RefIdentity RefSwitch RefMerge "
    "RefEnter RefExit RefNextIteration RefSelect Assert Print PrintV2 TensorArrayV3 "
    "TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3 "
    "TensorArrayConcatV3 TensorArraySplitV3 TensorArraySizeV3 TensorArrayCloseV3 StackV2 "
    "StackPushV2 StackPopV2 StackCloseV2 RandomUniform RandomUniformInt RandomStandardNormal "
    "TruncatedNormal Multinomial RandomShuffle RandomGamma RandomPoisson RandomPoissonV2".split()
)


def read_meta_graph(path: Path):
    """The `serve` MetaGraphDef of the SavedModel in `path` (saved_model.pb, else .pbtxt).

    Raises:
        ServingError: NOT_FOUND without a SavedModel file or a `serve` MetaGraph, DATA_LOSS
            for a file that does not parse (TF Serving's messages).
    """
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    if not binary.exists() and not text.exists():
        raise ServingError(
            not_found(
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
            )
        )
    try:
        if binary.exists():
            proto.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse(text.read_text(), proto)
    except Exception:  # noqa: BLE001 - any parse failure is data loss
        kind, pb = ("binary", binary) if binary.exists() else ("text", text)
        raise ServingError(("DATA_LOSS", f"Can't parse {pb} as {kind} proto")) from None
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ServingError(
        not_found(f"Could not find meta graph def matching supplied tags: {{ serve }} in {path}")
    )


def copied(signature_defs) -> dict:
    """Copies of a SignatureDef map's messages (a message read from the SavedModel would keep
    the whole SavedModel proto, weights of a frozen graph included, in memory)."""
    copies = {}
    for key, saved in signature_defs.items():
        copies[key] = type(saved)()
        copies[key].CopyFrom(saved)
    return copies


def written_by_tf2(meta_graph) -> bool:
    """Whether the MetaGraph has TF 2's object graph (its signatures are saved functions)."""
    return len(meta_graph.object_graph_def.nodes) > 0


def load(path: Path, meta_graph):
    """The loaded model: a `FunctionModel` for a TF 2 export, else a `SessionModel`.

    Raises:
        ServingError: the load's failure, with TensorFlow's code and message.
    """
    try:
        if written_by_tf2(meta_graph):
            return FunctionModel(path, meta_graph)
        return SessionModel(path, meta_graph)
    except ServingError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ServingError(status_of(error)) from None


class FunctionModel:
    """A TF 2 SavedModel: its signatures are `tf.saved_model.load`'s concrete functions.

    Attributes:
        signature_defs: the SignatureDefs, as saved.
        functions: signature key -> ConcreteFunction.
        shape_checks: signature key -> `GraphShapeCheck`.
    """

    def __init__(self, path: Path, meta_graph):
        import tensorflow as tf

        self.signature_defs = copied(meta_graph.signature_def)
        self.loaded = tf.saved_model.load(str(path), tags=["serve"])
        self.functions = dict(self.loaded.signatures)
        self.shape_checks = {key: GraphShapeCheck(f) for key, f in self.functions.items()}

    def stateful(self, key: str) -> bool:
        """Never: TF 2 signatures are batched and sliced by their shapes alone, as before."""
        return False

    def run(self, key: str, inputs: dict, context) -> dict:
        """Output alias -> array; `context` stops the call through the cancellation scope."""
        import tensorflow as tf

        outputs = self.functions[key](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}


class SessionModel:
    """A TF 1 SavedModel in one graph and one session, its signatures run by tensor names.

    Attributes:
        signature_defs: the SignatureDefs as the session runs them: an input's dtype is its
            tensor's (the dtype a run checks, as TF Serving's `Session::Run` does; TF 1.0
            wrote some wrong, e.g. `saved_model_half_plus_three`'s string `tf_example` as
            DT_FLOAT), a shape TF 1.0 did not write is the tensor's static shape.
        functions: signature key -> `SessionSignature` (dense inputs and outputs only; a
            signature with a sparse or composite tensor is left out, so it is not found).
        shape_checks: signature key -> `GraphShapeCheck` over the loaded graph.
    """

    def __init__(self, path: Path, meta_graph):
        import tensorflow as tf

        self.graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        tags = list(meta_graph.meta_info_def.tags)
        with self.graph.as_default():
            tf.compat.v1.saved_model.loader.load(self.session, tags, str(path))
        self.session._extend_graph()  # the loaded graph is the session's before it is frozen
        self.graph.finalize()
        self.signature_defs, self.functions, self.shape_checks = {}, {}, {}
        for key, saved in copied(meta_graph.signature_def).items():
            signature = runnable_copy(saved, self.graph)
            self.signature_defs[key] = saved if signature is None else signature
            if signature is None:  # not runnable by tensor names: the signature is not found
                continue
            self.functions[key] = SessionSignature(self.session, signature)
            self.shape_checks[key] = GraphShapeCheck(
                graph=(self.graph, signature.inputs, signature.outputs)
            )

    def stateful(self, key: str) -> bool:
        """Whether running signature `key` changes the session's state (unknown: it may)."""
        signature = self.functions.get(key)
        return signature is None or signature.stateful

    def run(self, key: str, inputs: dict, context) -> dict:
        """Output alias -> array, within the request's deadline."""
        return self.functions[key](inputs, context)


def runnable_copy(saved, graph):
    """SignatureDef `saved` as `graph` runs it: inputs of their tensors' dtypes, shapes TF 1.0
    left out filled in from the tensors; `None` when a tensor is not a dense tensor of `graph`
    (a sparse or composite encoding, a name the graph lacks) or there is no output."""
    tensors = [*saved.inputs.values(), *saved.outputs.values()]
    if not saved.outputs or any(not info.name for info in tensors):
        return None
    signature = type(saved)()
    signature.CopyFrom(saved)
    try:
        for infos, fed in ((signature.inputs, True), (signature.outputs, False)):
            for info in infos.values():
                tensor = graph.get_tensor_by_name(info.name)
                if not info.HasField("tensor_shape"):
                    info.tensor_shape.CopyFrom(tensor.shape.as_proto())
                if fed:
                    info.dtype = tensor.dtype.base_dtype.as_datatype_enum
    except (KeyError, ValueError):
        return None
    return signature


class SessionSignature:
    """One SignatureDef of a session: feeds its input tensors, fetches its output tensors.

    Args:
        session: the session holding the loaded graph.
        signature: the `SignatureDef`.

    Attributes:
        stateful: whether running it changes the session's state (see `changes_state`).
    """

    def __init__(self, session, signature):
        graph = session.graph
        self._session = session
        fed = {
            alias: graph.get_tensor_by_name(info.name) for alias, info in signature.inputs.items()
        }
        self._feeds = {  # alias -> (the C API's name for the tensor, the numpy type it takes)
            alias: (tensor._as_tf_output(), tensor.dtype.base_dtype.as_numpy_dtype)
            for alias, tensor in fed.items()
        }
        self._aliases = sorted(signature.outputs)
        fetches = [graph.get_tensor_by_name(signature.outputs[a].name) for a in self._aliases]
        self._fetches = [tensor._as_tf_output() for tensor in fetches]
        self.stateful = changes_state(fetches, {tensor.name for tensor in fed.values()})

    def __call__(self, inputs: dict[str, np.ndarray], context=None) -> dict[str, np.ndarray]:
        """One `Session::Run`: the arrays fed by tensor name, the outputs fetched by name.

        Values of any shape are fed, as TF Serving feeds them: `Session.run` would refuse a
        shape other than the tensor's static one before the graph sees it (half_plus_two's `x`
        [?,1] given [1]), so this calls the layer under it, `_call_tf_sessionrun`, as
        `Session.run` does once its Python checks pass.

        Raises:
            tf.errors.OpError: the run's failure (DEADLINE_EXCEEDED past `context`'s deadline).
        """
        import tensorflow as tf
        from tensorflow.python.client import pywrap_tf_session as tf_session

        feeds = {}
        for alias, value in inputs.items():
            output, numpy_type = self._feeds[alias]
            feeds[output] = np.asarray(value, dtype=numpy_type)
        left = None if context is None else context.time_left()
        options = None
        if left is not None:
            run_options = tf.compat.v1.RunOptions(timeout_in_ms=max(1, math.ceil(left * 1000)))
            options = tf_session.TF_NewBufferFromString(run_options.SerializeToString())
        try:
            values = self._session._call_tf_sessionrun(options, feeds, self._fetches, [], None)
        except tf.errors.DeadlineExceededError:
            if context is not None:
                context.expire_if_due()  # answers the request's own deadline message
            raise
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)
        return {alias: np.asarray(v) for alias, v in zip(self._aliases, values, strict=True)}


def changes_state(fetches, fed: set[str]) -> bool:
    """Whether fetching `fetches` (the tensors named in `fed` fed) runs an op changing state.

    Walks the ops a session runs for the fetches: back through inputs and control inputs,
    stopping at fed tensors. An op changes state when it writes through a ref input, or is
    stateful and not in `READ_ONLY_OPS`; an op of unknown definition counts as changing it.
    """
    seen, stack = set(), [tensor.op for tensor in fetches if tensor.name not in fed]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type not in READ_ONLY_OPS:
            try:
                op_def = op.op_def
            except Exception:  # noqa: BLE001 - no definition: assume the worst
                return True
            if op_def.is_stateful or any(arg.is_ref for arg in op_def.input_arg):
                return True
        stack.extend(tensor.op for tensor in op.inputs if tensor.name not in fed)
        stack.extend(op.control_inputs)
    return False
