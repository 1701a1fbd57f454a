"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata, and Classify, Regress
and MultiInference from `inference.py`) and ModelService (GetModelStatus), on the servicer
classes generated in tensorflow-serving-api. HandleReloadConfigRequest answers UNIMPLEMENTED:
the model config file is watched instead.

Status codes follow TF Serving: a request without `model_spec` INVALID_ARGUMENT "Missing
ModelSpec", unknown model or version NOT_FOUND, unknown label and bad tensors
INVALID_ARGUMENT, unknown signature FAILED_PRECONDITION. Output tensors are written as TF
Serving writes them by default (typed value fields, e.g. `float_val`).

Limits: an input tensor whose shape holds more than `max_tensor_elements` values is refused
(INVALID_ARGUMENT) from its shape alone, before it is built (a 59-byte request may declare
784 million floats that TensorFlow would fill from one `float_val`); the client's deadline
is honoured (DEADLINE_EXCEEDED, the TensorFlow call stopped) and a cancelled call stops its
work; more calls than `grpc_max_threads` running plus `--max_queued_requests` waiting are
refused at once with RESOURCE_EXHAUSTED. The server binds its port without SO_REUSEPORT, so
it never shares a port with another server.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from concurrent import futures

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from genkeras.serving import dtypes, inference
from genkeras.serving.admission import RequestContext
from genkeras.serving.errors import ServingError, clip, invalid_argument, unimplemented
from genkeras.serving.grpc_options import server_options
from genkeras.serving.json_tensor import check_elements

log = logging.getLogger("genkeras.serving")

# The types TF Serving's answers write in their typed value field (`float_val`, ...); strings
# go in `string_val`, any other type as `tf.make_tensor_proto` writes it.
_TYPED_FIELDS = {
    np.dtype(entry.numpy): entry
    for entry in dtypes.TABLE
    if entry.name in ("DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64", "DT_BOOL")
}


def _spec(model_spec):
    """(name, version or None, label or None) from a ModelSpec."""
    version = model_spec.version.value if model_spec.HasField("version") else None
    label = (
        model_spec.version_label
        if model_spec.WhichOneof("version_choice") == "version_label"
        else None
    )
    return model_spec.name, version, label


def ndarray_from_proto(proto, max_elements: int | None = None, name: str = "") -> np.ndarray:
    """The array of a TensorProto, refused from its shape before it is built when too large.

    Args:
        proto: the TensorProto.
        max_elements: the most values the tensor may hold (`None`: any).
        name: the input's alias, for messages.

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown rank, a negative dimension or too many
            values.
    """
    import tensorflow as tf

    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise ServingError(invalid_argument(f"input tensor {clip(name)} has an unknown rank"))
    dims = [d.size for d in shape.dim]
    if any(d < 0 for d in dims):
        raise ServingError(
            invalid_argument(f"input tensor {clip(name)} has a negative dimension: {dims}")
        )
    check_elements(name, dims, max_elements)
    return tf.make_ndarray(proto)


def proto_from_ndarray(array: np.ndarray, tensor_content: bool = False):
    """TensorProto with typed value fields (Tensor::AsProtoField), as TF Serving answers.

    With `tensor_content` (TF Serving's `--enable_serialization_as_tensor_content`, for
    Predict), numbers go in `tensor_content` as little-endian bytes (AsProtoTensorContent);
    strings stay in `string_val`, which is where `tf.make_ndarray` reads them.
    """
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if array.dtype in _TYPED_FIELDS:
        entry = _TYPED_FIELDS[array.dtype]
        proto.dtype = entry.number
        if tensor_content:
            proto.tensor_content = flat.astype(array.dtype.newbyteorder("<")).tobytes()
        else:
            getattr(proto, entry.field).extend(flat.tolist())
    elif array.dtype.kind in "OSU":
        string = dtypes.BY_NAME["DT_STRING"]
        proto.dtype = string.number
        getattr(proto, string.field).extend(
            v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()
        )
    else:
        import tensorflow as tf

        return tf.make_tensor_proto(array)
    return proto


class _Base:
    """Shared by both services: error mapping, deadlines, admission and counting.

    Args:
        manager: the `ModelManager`.
        metrics: the `Metrics` Predict, Classify and Regress are counted in, or `None`.
        limiter: the `admission.Limiter` (byte budget shared with REST), or `None`.
        watchdog: the `admission.Watchdog` that stops requests at their deadline, or `None`.
        max_tensor_elements: the most values an input tensor may hold (`None`: any).
    """

    def __init__(
        self, manager, metrics=None, limiter=None, watchdog=None, max_tensor_elements=None
    ):
        self.manager, self.metrics = manager, metrics
        self.limiter, self.watchdog = limiter, watchdog
        self.max_tensor_elements = max_tensor_elements
        # TF Serving's --enable_signature_method_name_check (off there by default)
        self.check_method_name = False
        # TF Serving's --enable_serialization_as_tensor_content (Predict answers only)
        self.tensor_content = False

    def _abort(self, context, error: ServingError):
        context.abort(getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN), error.message)

    def _guard(self, context, fn, api: str | None = None, model: str = ""):
        """Runs `fn`, answering its `ServingError` with the matching gRPC code."""
        started = time.perf_counter()
        code = "OK"
        try:
            return fn()
        except ServingError as error:
            code = error.code
            self._abort(context, error)
        except Exception as error:  # noqa: BLE001 - a bad request must never kill the server
            if isinstance(error, grpc.RpcError) or type(error).__name__ == "_AbortError":
                raise
            log.exception("gRPC request failed")
            code = "INTERNAL"
            self._abort(context, ServingError(("INTERNAL", f"{type(error).__name__}: {error}")))
        finally:
            if api is not None and self.metrics is not None:
                self.metrics.record(model, api, code, "GRPC", time.perf_counter() - started)

    def _request_context(self, context) -> RequestContext:
        """The call's deadline and cancellation as a `RequestContext`."""
        left = context.time_remaining()
        request_context = RequestContext(
            None if left is None or math.isinf(left) else max(0.0, left),
            "the call's gRPC deadline",
        )
        context.add_callback(
            lambda: request_context.cancel("CANCELLED", "the client cancelled the call")
        )
        return request_context


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # noqa: N802
        model = request.model_spec.name if request.HasField("model_spec") else ""
        return self._guard(context, lambda: self._predict(request, context), "Predict", model)

    def _predict(self, request, grpc_context):
        if not request.HasField("model_spec"):
            raise ServingError(invalid_argument("Missing ModelSpec"))
        context = self._request_context(grpc_context)
        if self.watchdog is None or self.limiter is None:
            return self._run(request, context)
        with self.watchdog.watch(context):
            context.check()
            with self.limiter.admit("grpc", request.ByteSize(), context):
                return self._run(request, context)

    def _run(self, request, context: RequestContext):
        name, version, label = _spec(request.model_spec)
        servable = self.manager.get_servable(name, version, label)
        inputs = {}
        for alias, proto in request.inputs.items():
            try:
                inputs[alias] = ndarray_from_proto(proto, self.max_tensor_elements, alias)
            except ServingError:
                raise
            except Exception:  # noqa: BLE001
                raise ServingError(
                    invalid_argument(f"tensor parsing error: {clip(alias)}")
                ) from None
        context.check()
        key, outputs = servable.predict(
            request.model_spec.signature_name, inputs, tuple(request.output_filter), context
        )
        del inputs
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(proto_from_ndarray(value, self.tensor_content))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._guard(context, lambda: self._metadata(request))

    def _metadata(self, request):
        if not request.HasField("model_spec"):
            raise ServingError(invalid_argument("Missing ModelSpec"))
        if not request.metadata_field:
            raise ServingError(
                invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingError(
                    invalid_argument(f"Metadata field {clip(field)} is not supported")
                )
        name, version, label = _spec(request.model_spec)
        return self.manager.metadata(name, version, label)

    def Classify(self, request, context):  # noqa: N802
        call = functools.partial(self._admitted, request, context, inference.classify)
        return self._guard(context, call, "Classify", request.model_spec.name)

    def Regress(self, request, context):  # noqa: N802
        call = functools.partial(self._admitted, request, context, inference.regress)
        return self._guard(context, call, "Regress", request.model_spec.name)

    def MultiInference(self, request, context):  # noqa: N802 - not counted, as in TF Serving
        call = functools.partial(self._admitted, request, context, inference.multi_inference)
        return self._guard(context, call)

    def _admitted(self, request, grpc_context, call):
        """`call(manager, request, context, check_method_name)` under the call's deadline and
        the admission limits, as Predict runs; `inference.py` answers as TF Serving does."""
        context = self._request_context(grpc_context)
        if self.watchdog is None or self.limiter is None:
            return call(self.manager, request, context, self.check_method_name)
        with self.watchdog.watch(context):
            context.check()
            with self.limiter.admit("grpc", request.ByteSize(), context):
                return call(self.manager, request, context, self.check_method_name)


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    def GetModelStatus(self, request, context):  # noqa: N802
        return self._guard(context, lambda: self._status(request))

    def _status(self, request):
        if not request.HasField("model_spec"):
            raise ServingError(invalid_argument("Missing ModelSpec"))
        name, version, label = _spec(request.model_spec)
        return self.manager.status(name, version, label)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        self._abort(
            context,
            ServingError(unimplemented("edit the model config file instead; it is watched")),
        )


def make_grpc_server(
    manager,
    address: str,
    max_message_bytes: int,
    max_workers: int = 16,
    max_queued: int = 64,
    metrics=None,
    limiter=None,
    watchdog=None,
    max_tensor_elements=None,
    channel_arguments=(),
    socket_path: str | None = None,
    health=None,
):
    """The gRPC server, bound to `address` and `socket_path` (not started).

    Args:
        manager: the `ModelManager`.
        address: `host:port`, or `None` for none (then `socket_path` only).
        max_message_bytes: the largest message received or sent.
        max_workers: calls running at once (`--grpc_max_threads`).
        max_queued: calls waiting beyond those; more are refused with RESOURCE_EXHAUSTED.
        metrics: where Predict calls are counted.
        limiter: the `admission.Limiter` shared with REST.
        watchdog: the `admission.Watchdog` enforcing deadlines.
        max_tensor_elements: the most values an input tensor may hold.
        channel_arguments: `(key, value)` server options (`--grpc_channel_arguments`), over
            the ones above (`grpc_options.server_options`).
        socket_path: a Unix socket to listen on as well (`--grpc_socket_path`), or `None`.
        health: a `health.HealthService` to serve, or `None`.

    Returns:
        `(server, port)`; port 0 without `address`.

    Raises:
        OSError: when the address or socket cannot be bound (another program holds the port).
    """
    own = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # never share the port with another server
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=server_options(own, channel_arguments),
        maximum_concurrent_rpcs=max_workers + max(0, max_queued),
    )
    shared = dict(
        metrics=metrics,
        limiter=limiter,
        watchdog=watchdog,
        max_tensor_elements=max_tensor_elements,
    )
    servicers = PredictionServicer(manager, **shared), ModelServicer(manager, **shared)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicers[0], server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicers[1], server)
    if health is not None:
        server.add_generic_rpc_handlers((health.handler(),))
    server.genkeras_servicers = servicers  # the manager may be set once the port is bound
    port = _bind(server, address) if address else 0
    if socket_path:
        _bind(server, f"unix:{socket_path}")
    return server, port


def _bind(server, where: str) -> int:
    try:
        port = server.add_insecure_port(where)
    except RuntimeError as error:
        raise OSError(f"could not bind gRPC to {where}: {error}") from None
    if port == 0:
        raise OSError(f"could not bind gRPC to {where}")
    return port


__all__ = ["make_grpc_server", "get_model_metadata_pb2", "proto_from_ndarray", "ndarray_from_proto"]
