"""Request errors: canonical status codes, their HTTP statuses, and how exceptions map to them.

Codes are gRPC's canonical names (`"NOT_FOUND"`); `HTTP_STATUS` is TF Serving's REST mapping.
Every failed request raises `ServingError`; `status_of` gives the code for any other exception
met while loading or running a model.
"""

from __future__ import annotations

import json

# tensorflow/serving model_servers/http_server.cc ToHTTPStatusCode().
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A failed request: `code` is a canonical code name (`"NOT_FOUND"`), `message` the text."""

    def __init__(self, status: tuple[str, str]):
        self.code, self.message = status
        super().__init__(f"{self.code}: {self.message}")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def status_string(self) -> str:
        """As tensorflow::Status::ToString() writes it (used inside nested messages)."""
        return f"{self.code}: {self.message}"

    def json(self) -> str:
        return json.dumps({"error": self.message})


# Names (models, labels, signatures, inputs) are echoed in messages up to this many characters.
NAME_CHARS = 200


def clip(text, limit: int = NAME_CHARS) -> str:
    """`text` as an error message quotes it: its first `limit` characters, then `...`.

    Args:
        text: a name from a request (any object; `str` is applied).
        limit: how many characters to keep.

    Returns:
        The text, cut when longer than `limit`.
    """
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _make(code):
    return lambda message: (code, message)


invalid_argument = _make("INVALID_ARGUMENT")
not_found = _make("NOT_FOUND")
failed_precondition = _make("FAILED_PRECONDITION")
unimplemented = _make("UNIMPLEMENTED")
unavailable = _make("UNAVAILABLE")
internal = _make("INTERNAL")
unknown = _make("UNKNOWN")
resource_exhausted = _make("RESOURCE_EXHAUSTED")
deadline_exceeded = _make("DEADLINE_EXCEEDED")


def status_of(error: Exception) -> tuple[str, str]:
    """The canonical `(code, message)` for an exception raised while loading or running a model.

    TensorFlow's errors keep their own code; `ValueError` and `TypeError` are the caller's
    fault (INVALID_ARGUMENT), a missing file is NOT_FOUND, anything else UNKNOWN.

    Args:
        error: the exception.

    Returns:
        A `(code name, message)` pair, as `ServingError` takes it.
    """
    import tensorflow as tf

    if isinstance(error, ServingError):
        return error.code, error.message
    if isinstance(error, tf.errors.OpError):
        from tensorflow_serving.apis import status_pb2

        codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
        try:
            code = codes.values_by_number[error.error_code].name
        except KeyError:
            code = "UNKNOWN"
        return code, runtime_message(error.message)
    if isinstance(error, (ValueError, TypeError)):
        return "INVALID_ARGUMENT", str(error)
    if isinstance(error, FileNotFoundError):
        return "NOT_FOUND", str(error)
    return "UNKNOWN", f"{type(error).__name__}: {error}"


def runtime_message(message: str) -> str:
    """A TensorFlow runtime error's own message, without what Python put before it.

    An eager call of a function prefixes the kernel's message with `Graph execution error:`
    and, per node, `Detected at node N defined at (most recent call last):` followed by the
    Python frames that built it (or `<stack traces unavailable>`). TF Serving answers the
    kernel's message alone (`Incompatible shapes: [3] vs. [2]\n\t [[{{node add}}]]`), and a
    traceback has no place in an answer.

    Args:
        message: the `OpError`'s message.

    Returns:
        The message from the kernel's first line on (unchanged when there is no prefix).
    """
    if not message.startswith("Graph execution error:"):
        return message
    lines = message.split("\n")[1:]
    while lines and (
        not lines[0].strip()
        or lines[0].startswith(("Detected at node ", "<stack traces unavailable>", "  File "))
        or lines[0].startswith("    ")  # a frame's source line
    ):
        lines.pop(0)
    return "\n".join(lines) if lines else message


def error_code_number(name: str) -> int:
    """The `StatusProto.error_code` number of a code name (UNKNOWN's for a name it lacks).

    Args:
        name: a canonical code name, e.g. `"NOT_FOUND"`.

    Returns:
        The enum number, e.g. 5.
    """
    from tensorflow_serving.apis import status_pb2

    codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
    value = codes.values_by_name.get(name) or codes.values_by_name["UNKNOWN"]
    return value.number
