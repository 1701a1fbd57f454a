"""Input shapes the SignatureDef does not declare, run as TF Serving runs them: the graph decides.

TF Serving checks a Predict request's input names and dtypes, never their shapes
(`servables/tensorflow/predict_util.cc`): it feeds the tensors and lets the graph run what it
can. half_plus_two declares `x` as [-1,1], and its tests send [1], [3], [2,2] and scalars,
answered elementwise. `genkeras serve` does the same, with one step first for a request whose
shapes differ from the declared ones: TensorFlow's shape inference runs over the signature's
graph with placeholders of exactly those shapes. Some kernels trust the shapes the graph was
traced with and abort the whole process on another rank (oneDNN's Conv2D given a rank-3 image:
`Check failed: index >= 0 && index < num_total_dims`); shape inference refuses such input with
TensorFlow's own message first (`Shape must be rank 4 but is rank 3 for '{{node ...}}'`), as
INVALID_ARGUMENT. What it lets through runs; a failure then is TensorFlow's runtime error, also
INVALID_ARGUMENT where TensorFlow says so.

The check imports the signature's graph (its GraphDef, with the function library, made once
per signature) into an empty graph: a few milliseconds for most exports, about 0.2 s for the
PixelCNN `sample` graph. Verdicts are kept per signature and input shapes (the latest
`CACHED_VERDICTS`), so a client repeating a shape pays once. A TF 1 signature (run by tensor
names in a session, `loader.py`) is checked the same way over the part of the loaded graph its
tensors need, its input tensors replaced by placeholders of the request's shapes.
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from genkeras.serving.errors import ServingError, invalid_argument

CACHED_VERDICTS = 256


def declared_shape_fits(info, shape: tuple) -> bool:
    """Whether `shape` is one the SignatureDef's `TensorInfo` declares (-1: any size)."""
    declared = info.tensor_shape
    if declared.unknown_rank:
        return True
    dims = [d.size for d in declared.dim]
    return len(dims) == len(shape) and all(d in (-1, s) for d, s in zip(dims, shape, strict=True))


class GraphShapeCheck:
    """Runs shape inference over one signature's graph for given input shapes.

    Args:
        function: the loaded signature (`loaded.signatures[key]`, a ConcreteFunction).
        graph: instead of `function`, a TF 1 signature: `(graph, inputs, outputs)`, the
            loaded `tf.Graph` and the SignatureDef's input and output `TensorInfo` maps (the
            check imports the part of the graph the signature's tensors need).
    """

    def __init__(self, function=None, graph=None):
        self._function, self._graph = function, graph
        self._plan = None  # (graph_def, {alias: (tensor name, dtype)}, [(alias, tensor name)])
        self._lock = threading.Lock()
        self._verdicts: collections.OrderedDict = collections.OrderedDict()

    def output_shapes(self, inputs: dict[str, np.ndarray]) -> dict[str, tuple | None]:
        """The outputs' inferred shapes for these inputs, or TensorFlow's refusal.

        Args:
            inputs: input alias -> array (names and dtypes already checked).

        Returns:
            Output alias -> shape tuple (`None` for a dimension or a rank not inferred).

        Raises:
            ServingError: INVALID_ARGUMENT with shape inference's message when the graph
                cannot take tensors of these shapes.
        """
        key = tuple(sorted((alias, array.shape) for alias, array in inputs.items()))
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is not None:
                self._verdicts.move_to_end(key)
        if verdict is None:
            verdict = self._infer(inputs)
            with self._lock:
                self._verdicts[key] = verdict
                while len(self._verdicts) > CACHED_VERDICTS:
                    self._verdicts.popitem(last=False)
        if isinstance(verdict, str):
            raise ServingError(invalid_argument(verdict))
        return verdict

    def _make_plan(self):
        """The GraphDef to import, the input tensors to replace, the output tensors to read."""
        import tensorflow as tf

        function = self._function
        if function is None:
            graph, inputs, outputs = self._graph
            feeds = {a: (i.name, tf.as_dtype(i.dtype).base_dtype) for a, i in inputs.items()}
            fetches = sorted((alias, info.name) for alias, info in outputs.items())
            roots = [name for name, _ in feeds.values()] + [name for _, name in fetches]
            return needed_part(graph.as_graph_def(), roots), feeds, fetches
        aliases = sorted(function.structured_input_signature[1])  # the flat arguments' order
        arguments = function.inputs[: len(aliases)]  # then come the captured variables
        feeds = {
            alias: (argument.name, argument.dtype)
            for alias, argument in zip(aliases, arguments, strict=True)
        }
        outputs = sorted(function.structured_outputs)  # the order of `function.outputs`
        fetches = [(a, t.name) for a, t in zip(outputs, function.outputs, strict=True)]
        return function.graph.as_graph_def(), feeds, fetches

    def _infer(self, inputs: dict[str, np.ndarray]):
        """Output shapes (a dict), or shape inference's message (a str) when it refuses."""
        import tensorflow as tf

        if self._plan is None:
            self._plan = self._make_plan()
        graph_def, feeds, fetches = self._plan
        with tf.Graph().as_default():
            input_map = {
                name: tf.compat.v1.placeholder(dtype, inputs[alias].shape)
                for alias, (name, dtype) in feeds.items()
            }
            try:
                found = tf.graph_util.import_graph_def(
                    graph_def,
                    input_map=input_map,
                    return_elements=[name for _, name in fetches],
                    name="",
                )
            except (ValueError, tf.errors.InvalidArgumentError) as error:  # an op refused
                return getattr(error, "message", None) or str(error)
        return {
            alias: None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
            for (alias, _), tensor in zip(fetches, found, strict=True)
        }


def needed_part(graph_def, tensor_names: list[str]):
    """The nodes of `graph_def` that the named tensors' nodes need (inputs, control inputs)."""
    from tensorflow.core.framework import graph_pb2

    nodes = {node.name: node for node in graph_def.node}
    wanted = {name.lstrip("^").split(":")[0] for name in tensor_names}
    stack = list(wanted)
    while stack:
        node = nodes.get(stack.pop())
        for name in node.input if node is not None else ():
            name = name.lstrip("^").split(":")[0]
            if name not in wanted:
                wanted.add(name)
                stack.append(name)
    part = graph_pb2.GraphDef(versions=graph_def.versions, library=graph_def.library)
    part.node.extend(node for node in graph_def.node if node.name in wanted)
    for node in part.node:  # shapes recorded for other inputs, colocation with nodes left out
        node.attr.pop("_output_shapes", None)
        node.attr.pop("_class", None)
    return part
