"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus), on the servicer classes generated in tensorflow-serving-api.

Status codes follow TF Serving: unknown model or version NOT_FOUND, unknown label and bad
tensors INVALID_ARGUMENT, unknown signature FAILED_PRECONDITION. Output tensors are written
as TF Serving writes them by default (typed value fields, e.g. `float_val`).
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from genkeras.serving import dtypes
from genkeras.serving.errors import ServingError, invalid_argument, unimplemented

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


def ndarray_from_proto(proto) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(proto)


def proto_from_ndarray(array: np.ndarray):
    """TensorProto with typed value fields (Tensor::AsProtoField), as TF Serving answers."""
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if array.dtype in _TYPED_FIELDS:
        entry = _TYPED_FIELDS[array.dtype]
        proto.dtype = entry.number
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
    def __init__(self, manager, metrics=None):
        self.manager, self.metrics = manager, metrics

    def _abort(self, context, error: ServingError):
        context.abort(getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN), error.message)

    def _guard(self, context, fn):
        try:
            return fn()
        except ServingError as error:
            self._abort(context, error)
        except Exception as error:  # noqa: BLE001 - a bad request must never kill the server
            if isinstance(error, grpc.RpcError) or type(error).__name__ == "_AbortError":
                raise
            log.exception("gRPC request failed")
            self._abort(context, ServingError(("INTERNAL", f"{type(error).__name__}: {error}")))


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # noqa: N802
        return self._guard(context, lambda: self._predict(request))

    def _predict(self, request):
        name, version, label = _spec(request.model_spec)
        servable = self.manager.get_servable(name, version, label)
        inputs = {}
        for alias, proto in request.inputs.items():
            try:
                inputs[alias] = ndarray_from_proto(proto)
            except Exception:  # noqa: BLE001
                raise ServingError(invalid_argument(f"tensor parsing error: {alias}")) from None
        key, outputs = servable.predict(
            request.model_spec.signature_name, inputs, tuple(request.output_filter)
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(proto_from_ndarray(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._guard(context, lambda: self._metadata(request))

    def _metadata(self, request):
        if not request.metadata_field:
            raise ServingError(
                invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingError(invalid_argument(f"Metadata field {field} is not supported"))
        name, version, label = _spec(request.model_spec)
        return self.manager.metadata(name, version, label)

    def Classify(self, request, context):  # noqa: N802
        self._abort(
            context, ServingError(unimplemented("Classify is not implemented by genkeras serve"))
        )

    def Regress(self, request, context):  # noqa: N802
        self._abort(
            context, ServingError(unimplemented("Regress is not implemented by genkeras serve"))
        )

    def MultiInference(self, request, context):  # noqa: N802
        self._abort(
            context,
            ServingError(unimplemented("MultiInference is not implemented by genkeras serve")),
        )


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


def make_grpc_server(manager, address: str, max_message_bytes: int, max_workers: int = 16):
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC to {address}")
    return server, port


__all__ = ["make_grpc_server", "get_model_metadata_pb2", "proto_from_ndarray", "ndarray_from_proto"]
