"""Canonical status codes (gRPC's), TF Serving's REST mapping, and the error the server raises."""

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
