"""TF Serving's REST API (`/v1/models/...`) on the bounded HTTP server of `http_server.py`.

Routes and codes follow tensorflow/serving `model_servers/http_rest_api_handler.cc`,
`http_rest_api_util.cc` and `http_server.cc`:

* `GET /v1/models/NAME[/versions/N | /labels/L]` -> GetModelStatusResponse as JSON
* `GET /v1/models/NAME[/versions/N | /labels/L]/metadata` -> model_spec + signature_def JSON
* `POST /v1/models/NAME[/versions/N | /labels/L]:predict` -> predictions / outputs
* `POST /v1/models/NAME[/versions/N | /labels/L]:classify` and `:regress` -> `{"results": ...}`
  from `examples` of tf.Example features (`example_json.py`, `inference.py`)
* `OPTIONS` under `/v1/` -> a CORS preflight: 200 with an `Origin: http(s)://...` header,
  else 400 "Origin header is missing in CORS preflight" (as TF Serving); with
  `--rest_api_enable_cors_support` every answer under `/v1/` carries TF Serving's CORS headers
  (`Access-Control-Allow-Origin: *`, `...-Methods: POST, GET`, `...-Headers: Content-Type`)
* any other method or path under `/v1/` -> 400 "Malformed request"; outside `/v1/` -> 404,
  except the latent explorer's pages (not TF Serving's, see `explorer/routes.py`) and, with
  a monitoring config that enables it, the Prometheus page (`metrics.py`).

Errors answer `{"error": "..."}` with TF Serving's HTTP code for the status. A JSON error
wins over an unknown model (the body is parsed first). Limits: bodies over
`max_request_bytes` answer 413; a request waiting longer than the queue allows answers 503;
one still unanswered `--rest_api_timeout_in_ms` after its headers arrived answers 504 (its
TensorFlow call is stopped); an input or answer tensor over `--max_tensor_elements` values
answers 400 before it is built.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse

from google.protobuf import json_format

from genkeras.serving import example_json, json_decode, json_encode
from genkeras.serving.admission import LARGE_REQUEST_BYTES, RequestContext
from genkeras.serving.errors import (
    ServingError,
    clip,
    failed_precondition,
    invalid_argument,
)
from genkeras.serving.explorer.routes import explorer_response
from genkeras.serving.http_server import BoundedHTTPServer, RequestError, RequestHandler
from genkeras.serving.manager import check_version_choice
from genkeras.serving.metrics import Metrics

log = logging.getLogger("genkeras.serving")

PATH_REGEX = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
PREDICTION_REGEX = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_REGEX = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
INT64_MAX = 2**63 - 1
_HTTP_CODES = {400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED"}
# http_rest_api_util.cc's AddCORSHeaders, for --rest_api_enable_cors_support
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
# Dropped before looking for `true` and `false` (whose letters all stay, so none is missed).
_NUMBER_BYTES = b"0123456789.+-,[] \t\r\n"


def status_json(response) -> str:
    return json_format.MessageToJson(response, always_print_fields_with_no_presence=True, indent=1)


def metadata_json(response) -> str:
    from tensorflow_serving.apis import get_model_metadata_pb2

    options = dict(
        always_print_fields_with_no_presence=True, preserving_proto_field_name=True, indent=1
    )
    spec = json_format.MessageToJson(response.model_spec, **options)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    signatures = json_format.MessageToJson(signature_map, **options)
    return '{\n"model_spec":' + spec + ',\n"metadata": {"signature_def": ' + signatures + "}\n}\n"


class RestApi:
    """Turns (method, path, body) into (HTTP status, JSON text), counting requests.

    Args:
        manager: the `ModelManager` that resolves models and versions.
        metrics: where requests are counted; a new `Metrics` when `None`.
        max_tensor_elements: the most values an input tensor may hold (`None`: any).
    """

    def __init__(self, manager, metrics: Metrics | None = None, max_tensor_elements=None):
        self.manager = manager
        self.metrics = metrics or Metrics()
        self.max_tensor_elements = max_tensor_elements
        # TF Serving's --enable_signature_method_name_check (off there by default)
        self.check_method_name = False

    def route(self, method: str, path: str):
        """`(model, version, label, verb)` of a `/v1/` path; verb is `""` for GET status.

        Raises:
            ServingError: INVALID_ARGUMENT "Malformed request" for anything else.
        """
        malformed = ServingError(
            invalid_argument(f"Malformed request: {clip(method, 20)} {clip(path)}")
        )
        regex = {"POST": PREDICTION_REGEX, "GET": STATUS_REGEX}.get(method)
        match = regex.fullmatch(path) if regex else None
        if not match:
            raise malformed
        name, version, label, verb = match.groups()
        name = urllib.parse.unquote(name) if name else ""
        if version is not None:
            number = int(version)
            if number > INT64_MAX:
                raise ServingError(
                    invalid_argument(f"Failed to convert version: {clip(version)} to numeric.")
                )
            version = number
        if label is not None:
            label = urllib.parse.unquote(label)
        return name, version, label, (verb or "").lower()

    def handle(
        self,
        method: str,
        path: str,
        body: bytes,
        context: RequestContext | None = None,
        origin: str | None = None,
    ) -> tuple[int, str]:
        """Answers one `/v1/` request.

        Args:
            method: the HTTP method.
            path: the URL path (no query string).
            body: the request body.
            context: its deadline and cancellation (`None`: none).
            origin: the `Origin` header, for an OPTIONS preflight.

        Returns:
            `(HTTP status, body text)`.
        """
        started = time.perf_counter()
        model, api = "", ""
        try:
            if method == "OPTIONS":
                if origin is None or not re.search(r"https?://", origin):
                    raise ServingError(
                        failed_precondition("Origin header is missing in CORS preflight")
                    )
                status, code, text = 200, "OK", ""
            else:
                model, version, label, api = self.route(method, path)
                text = self._process(method, model, version, label, api, body, context)
                status, code = 200, "OK"
        except ServingError as error:
            status, code, text = error.http_status, error.code, error.json()
        except RecursionError:
            error = ServingError(invalid_argument("Request nested too deeply to read"))
            status, code, text = error.http_status, error.code, error.json()
        except Exception as error:  # noqa: BLE001 - never die on a request
            log.exception("request %s %s failed", method, clip(path))
            error = ServingError(("INTERNAL", f"{type(error).__name__}: {error}"))
            status, code, text = error.http_status, error.code, error.json()
        self.record(model, api, code, started)
        return status, text

    def record(self, model: str, api: str, code: str, started: float) -> None:
        """Counts a request as TF Serving's REST server does (latency only when OK)."""
        self.metrics.record(model, api, code, "REST", time.perf_counter() - started)

    def _process(self, method, name, version, label, verb, body, context) -> str:
        check_version_choice(version, label)
        if method == "GET":
            if not name:
                raise ServingError(invalid_argument("Missing model name in request."))
            if verb == "metadata":
                return metadata_json(self.manager.metadata(name, version, label))
            return status_json(self.manager.status(name, version, label))
        if verb in ("classify", "regress"):
            return example_json.handle_rest(
                self.manager, verb, name, version, label, body, context, self.check_method_name
            )
        return self._predict(name, version, label, body, context)

    def _predict(self, name, version, label, body: bytes, context) -> str:
        doc = json_decode.parse_json(body)
        signature_name = json_decode.signature_name_of(doc)
        servable = self.manager.get_servable(name, version, label)
        input_dtypes = servable.input_dtypes(signature_name)
        words = body.translate(None, _NUMBER_BYTES)  # a few bytes when the body is numbers
        allow_fast = b"true" not in words and b"false" not in words  # bools: the exact walk
        del body
        inputs, request_format = json_decode.fill_predict_inputs(
            doc, input_dtypes, allow_fast, self.max_tensor_elements
        )
        del doc
        if context is not None:
            context.check()
        _, outputs = servable.predict(signature_name, inputs, context=context)
        del inputs
        if context is not None:
            context.check()
        return json_encode.make_json(outputs, request_format)


class _Handler(RequestHandler):
    def reply(self, status: int, body, content_type="application/json", headers=None) -> None:
        path = urllib.parse.urlsplit(getattr(self, "path", "")).path  # unset: no request line
        if self.server.cors_support and PATH_REGEX.fullmatch(path):
            headers = {**(headers or {}), **CORS_HEADERS}
        super().reply(status, body, content_type, headers)

    def dispatch(self, method: str) -> None:
        server = self.server
        path = urllib.parse.urlsplit(self.path).path
        try:
            if not PATH_REGEX.fullmatch(path):
                self._outside_api(method, path)
            else:
                self._api(method, path)
        except RequestError as error:
            self.close_connection = self.close_connection or error.close
            code = _HTTP_CODES.get(error.status, "INVALID_ARGUMENT")
            if PATH_REGEX.fullmatch(path):
                server.api.record(self._model_of(method, path), "", code, time.perf_counter())
            self.reply(error.status, ServingError((code, error.message)).json())

    def _model_of(self, method: str, path: str) -> str:
        try:
            return self.server.api.route(method, path)[0]
        except ServingError:
            return ""

    def _outside_api(self, method: str, path: str) -> None:
        self.read_body(self.server.max_request_bytes, keep=False)
        server = self.server
        if server.prometheus_path and path == server.prometheus_path and method == "GET":
            self.reply(200, server.api.metrics.page(), "text/plain")
            return
        if method == "GET":
            page = explorer_response(path, server.api.manager.model_names)
            if page is not None:
                content_type, data, headers = page
                self.reply(200, data, content_type, headers)
                return
        message = f"Not found: {clip(method, 20)} {clip(path)}"
        self.reply(404, ServingError(("NOT_FOUND", message)).json())

    def _api(self, method: str, path: str) -> None:
        server = self.server
        limit = server.max_request_bytes
        chunked = self.headers.get("Transfer-Encoding") is not None
        try:
            size = limit if chunked else max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            size = 0  # read_body refuses it
        if size > limit:
            self.read_body(limit)  # 413
        timeout = server.timeout_seconds
        context = RequestContext(
            timeout, f"--rest_api_timeout_in_ms {round(timeout * 1000)}" if timeout else ""
        )
        # Small bodies are read at once (so a client leaving while queued is noticed); large
        # ones only once admitted, so queued requests hold no body in memory.
        large = chunked or size > LARGE_REQUEST_BYTES
        body = None if large else self.read_body(limit)
        self.reader.deadline = None
        started = time.perf_counter()
        try:
            with server.watchdog.watch(context) as attach:
                if body is not None:
                    attach(self.connection)
                with server.limiter.admit("rest", size, context):
                    if body is None:
                        self.reader.deadline = time.monotonic() + server.read_timeout
                        body = self.read_body(limit)
                        self.reader.deadline = None
                        attach(self.connection)
                    status, text = server.api.handle(
                        method, path, body, context, self.headers.get("Origin")
                    )
                    body = b""
                    if context.reason is not None and context.reason[0] == "CANCELLED":
                        self._client_left()
                        return
                    self._send(status, text)
        except ServingError as error:  # refused before running: overloaded, deadline, gone
            if body is None:  # never read: drop it so the client reads the answer
                self.close_connection = True
                if not chunked:
                    self.reader.deadline = time.monotonic() + server.read_timeout
                    self.drain(size, limit)
            server.api.record(self._model_of(method, path), "", error.code, started)
            if error.code == "CANCELLED":
                self._client_left()
                return
            self._send(error.http_status, error.json())

    def _client_left(self) -> None:
        self.close_connection = True
        log.info("Client %s closed its connection; its request was stopped", self.client())

    def _send(self, status: int, text: str) -> None:
        try:
            self.reply(status, text)
        except (ConnectionError, TimeoutError) as error:
            self.close_connection = True
            log.info("Client %s disconnected before its answer: %s", self.client(), error)


class RestServer(BoundedHTTPServer):
    """The HTTP server: TF Serving's API, the explorer's pages, the Prometheus page.

    Args:
        address: `(host, port)` to bind (bound at once: a port in use raises OSError here).
        api: the `RestApi` answering `/v1/` requests.
        max_request_bytes: larger bodies are refused with 413.
        limiter: the `admission.Limiter` that admits requests.
        watchdog: the `admission.Watchdog` that enforces deadlines and notices hang-ups.
        timeout_seconds: `--rest_api_timeout_in_ms` in seconds (0: no deadline).
        max_connections: connections served at once (`--http_max_connections`).
        read_timeout: `--http_read_timeout_seconds`.
        prometheus_path: where the metrics page is served, or `None` for no page.
    """

    def __init__(
        self,
        address,
        api: RestApi,
        max_request_bytes: int,
        limiter,
        watchdog,
        timeout_seconds: float = 30.0,
        max_connections: int = 1024,
        read_timeout: float = 30.0,
        prometheus_path=None,
    ):
        self.api = api
        self.max_request_bytes = max_request_bytes
        self.limiter, self.watchdog = limiter, watchdog
        self.timeout_seconds = timeout_seconds or None
        self.prometheus_path = prometheus_path
        self.cors_support = False  # TF Serving's --rest_api_enable_cors_support
        super().__init__(address, _Handler, max_connections, read_timeout)
