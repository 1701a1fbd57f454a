"""TF Serving's REST API (`/v1/models/...`) over Python's threading HTTP server.

Routes and codes follow tensorflow/serving `model_servers/http_rest_api_handler.cc`,
`http_rest_api_util.cc` and `http_server.cc`:

* `GET /v1/models/NAME[/versions/N | /labels/L]` -> GetModelStatusResponse as JSON
* `GET /v1/models/NAME[/versions/N | /labels/L]/metadata` -> model_spec + signature_def JSON
* `POST /v1/models/NAME[/versions/N | /labels/L]:predict` -> predictions / outputs
* anything else under `/v1/` -> 400 "Malformed request"; outside `/v1/` -> 404, except the
  latent explorer's pages (not TF Serving's, see `explorer/routes.py`) and, with a monitoring
  config that enables it, the Prometheus page (`metrics.py`).

Errors answer `{"error": "..."}` with TF Serving's HTTP code for the status. A JSON error
wins over an unknown model (the body is parsed first). Bodies above `max_request_bytes`
answer 413.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format

from genkeras.serving import json_decode, json_encode
from genkeras.serving.errors import ServingError, invalid_argument, unimplemented
from genkeras.serving.explorer.routes import explorer_response
from genkeras.serving.manager import check_version_choice
from genkeras.serving.metrics import Metrics

log = logging.getLogger("genkeras.serving")

PATH_REGEX = re.compile(r"/v1/.*", re.IGNORECASE)
PREDICTION_REGEX = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_REGEX = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
INT64_MAX = 2**63 - 1


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
    """

    def __init__(self, manager, metrics: Metrics | None = None):
        self.manager = manager
        self.metrics = metrics or Metrics()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        model = ""
        started = time.perf_counter()
        api = "predict" if method == "POST" else "status"
        try:
            model, api, output = self._process(method, path, body)
            status, text = 200, output
        except ServingError as error:
            status, text = error.http_status, error.json()
        except Exception as error:  # noqa: BLE001 - never die on a request
            log.exception("request %s %s failed", method, path)
            error = ServingError(("INTERNAL", f"{type(error).__name__}: {error}"))
            status, text = error.http_status, error.json()
        if model:
            self.metrics.record(
                model, api, "OK" if status == 200 else str(status), time.perf_counter() - started
            )
        return status, text

    def _process(self, method: str, path: str, body: bytes):
        malformed = ServingError(invalid_argument(f"Malformed request: {method} {path}"))
        if method == "POST":
            match = PREDICTION_REGEX.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, verb = match.groups()
        elif method == "GET":
            match = STATUS_REGEX.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, verb = match.groups()
        else:
            raise malformed
        name = urllib.parse.unquote(name) if name else ""
        if version is not None:
            number = int(version)
            if number > INT64_MAX:
                raise ServingError(
                    invalid_argument(f"Failed to convert version: {version} to numeric.")
                )
            version = number
        if label is not None:
            label = urllib.parse.unquote(label)
        check_version_choice(version, label)  # the regexes make both impossible; kept for parity
        if method == "GET":
            if not name:
                raise ServingError(invalid_argument("Missing model name in request."))
            if verb and verb.lower() == "metadata":
                return name, "metadata", metadata_json(self.manager.metadata(name, version, label))
            return name, "status", status_json(self.manager.status(name, version, label))
        verb = verb.lower()
        if verb != "predict":
            raise ServingError(
                unimplemented(f"{verb} is not implemented by genkeras serve; use :predict")
            )
        return name, "predict", self._predict(name, version, label, body)

    def _predict(self, name, version, label, body: bytes) -> str:
        doc = json_decode.parse_json(body)
        signature_name = json_decode.signature_name_of(doc)
        servable = self.manager.get_servable(name, version, label)
        input_dtypes = servable.input_dtypes(signature_name)
        allow_fast = b"true" not in body and b"false" not in body  # bools need the exact walk
        inputs, request_format = json_decode.fill_predict_inputs(doc, input_dtypes, allow_fast)
        _, outputs = servable.predict(signature_name, inputs)
        return json_encode.make_json(outputs, request_format)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms stalls
    server_version = "genkeras-serve"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - quiet by default
        log.debug("%s - %s", self.address_string(), format % args)

    def _reply(
        self, status: int, body: str | bytes, content_type="application/json", headers=None
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        server = self.server
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._reply(400, json.dumps({"error": "Invalid Content-Length"}))
            return
        if length > server.max_request_bytes:
            self.close_connection = True
            if length <= 4 * server.max_request_bytes:  # drain it so the client reads the answer
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    left -= len(chunk)
            self._reply(
                413,
                json.dumps(
                    {
                        "error": f"Request body of {length} bytes exceeds the limit of {server.max_request_bytes} bytes"  # noqa: E501
                    }
                ),
            )
            return
        body = self.rfile.read(length) if length else b""
        if server.prometheus_path and path == server.prometheus_path and method == "GET":
            self._reply(200, server.api.metrics.page(), "text/plain")
            return
        if method == "GET" and not PATH_REGEX.fullmatch(path) and self._explorer(path):
            return
        if not PATH_REGEX.fullmatch(path):
            self._reply(404, json.dumps({"error": f"Not found: {method} {path}"}))
            return
        with server.slots:
            status, text = server.api.handle(method, path, body)
        self._reply(status, text)

    def _explorer(self, path: str) -> bool:
        """Answers the latent explorer's URLs (see `explorer/routes.py`); False for others."""
        page = explorer_response(path, self.server.api.manager.model_names)
        if page is None:
            return False
        content_type, data, headers = page
        self._reply(200, data, content_type, headers)
        return True

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")


class RestServer(ThreadingHTTPServer):
    """The HTTP server: TF Serving's API, the explorer's pages, the Prometheus page.

    Args:
        address: `(host, port)` to bind.
        api: the `RestApi` answering `/v1/` requests.
        max_request_bytes: larger bodies are refused with 413.
        num_threads: how many `/v1/` requests run at once.
        prometheus_path: where the metrics page is served, or `None` for no page.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address, api: RestApi, max_request_bytes: int, num_threads: int, prometheus_path=None
    ):
        self.api = api
        self.max_request_bytes = max_request_bytes
        self.slots = threading.BoundedSemaphore(max(1, num_threads))
        self.prometheus_path = prometheus_path
        super().__init__(address, _Handler)
