"""gRPC's standard health service, `grpc.health.v1.Health`, for
`--enable_grpc_healthcheck_service` (TF Serving's flag: gRPC's default health service, with
`ModelService` and `PredictionService` SERVING).

As gRPC's C++ default service answers: `Check` of the server (`""`) or of either service
answers SERVING while the server runs and NOT_SERVING once it stops; of any other name
NOT_FOUND "service name unknown". `Watch` streams the status (SERVICE_UNKNOWN for another
name) and again whenever it changes; each watch holds one of the `--grpc_max_threads`.

The two messages have one field each, so they are read and written here by hand rather than
through the grpcio-health-checking package, which genkeras does not depend on.
"""

from __future__ import annotations

import threading

import grpc

SERVICE = "grpc.health.v1.Health"
SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def service_name(request: bytes) -> str:
    """`HealthCheckRequest.service` (field 1, a string) of a serialized request.

    Raises:
        ValueError: when the bytes are not such a message.
    """
    name, at = "", 0
    while at < len(request):
        key, at = _varint(request, at)
        field, kind = key >> 3, key & 7
        if kind == 0:
            _, at = _varint(request, at)
        elif kind == 1 or kind == 5:
            at += 8 if kind == 1 else 4
        elif kind == 2:
            size, at = _varint(request, at)
            if field == 1:
                name = request[at : at + size].decode()
            at += size
        else:
            raise ValueError(f"wire type {kind}")
        if at > len(request):
            raise ValueError("truncated field")
    return name


def response(status: int) -> bytes:
    """A serialized `HealthCheckResponse` with `status` (field 1, an enum)."""
    return bytes([0x08, status])


class HealthService:
    """The statuses and the `Check` and `Watch` handlers.

    Args:
        names: the services reported SERVING besides the server itself (`""`), by the
            names TF Serving gives them.
    """

    def __init__(self, names=("ModelService", "PredictionService")):
        self._statuses = {name: SERVING for name in ("", *names)}
        self._changed = threading.Condition()

    def shutdown(self) -> None:
        """Every service NOT_SERVING, as gRPC's server shutdown sets them."""
        with self._changed:
            self._statuses = dict.fromkeys(self._statuses, NOT_SERVING)
            self._changed.notify_all()

    def _name(self, request: bytes, context) -> str:
        try:
            return service_name(request)
        except (ValueError, UnicodeDecodeError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "could not parse request")

    def check(self, request: bytes, context) -> bytes:
        status = self._statuses.get(self._name(request, context))
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "service name unknown")
        return response(status)

    def watch(self, request: bytes, context):
        name, sent = self._name(request, context), None
        while context.is_active():
            with self._changed:
                status = self._statuses.get(name, SERVICE_UNKNOWN)
                if status == sent:
                    self._changed.wait(1.0)
                    continue
            sent = status
            yield response(status)

    def handler(self) -> grpc.GenericRpcHandler:
        """The handler to add to a server (bytes in and out: no (de)serializers)."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(self.check),
                "Watch": grpc.unary_stream_rpc_method_handler(self.watch),
            },
        )
