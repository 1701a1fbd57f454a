"""The HTTP/1.1 layer of the REST port: bounded connections, read deadlines, request bodies.

Python's `ThreadingHTTPServer` starts a thread per connection, without end, and waits for a
request's bytes forever. Here:

* At most `max_connections` connections are served at once; one more is answered 503 (a
  JSON body) and closed at once.
* A request's line and headers must arrive within `read_timeout` seconds of the server
  starting to wait for them (an idle keep-alive connection is closed after that long), and
  its body within `read_timeout` seconds of its headers; a stalled client is disconnected.
  A response the client does not read within `read_timeout` is abandoned likewise.
* Bodies come with `Content-Length` or `Transfer-Encoding: chunked` (as TF Serving's HTTP
  server reads them); one over `max_request_bytes` answers 413.
* Every method reaches `RequestHandler.dispatch` (unknown ones too, not Python's HTML 501
  page), and protocol errors answer `{"error": ...}` JSON.
* A client that disconnects mid-request leaves one log line, not a traceback.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

log = logging.getLogger("genkeras.serving")


class RequestError(Exception):
    """A request the HTTP layer refuses: answered `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str, close: bool = True):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


class _DeadlineReader(io.RawIOBase):
    """Socket reads that fail with TimeoutError once `deadline` (monotonic seconds) passes."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("read deadline passed")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class RequestHandler(BaseHTTPRequestHandler):
    """One connection: reads requests under deadlines and hands each to `dispatch`."""

    protocol_version = "HTTP/1.1"
    server_version = "genkeras-serve"
    sys_version = ""

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader, 1 << 16)
        self.wfile = socketserver._SocketWriter(self.connection)

    def finish(self) -> None:
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.rfile.close()

    def log_message(self, format, *args):  # noqa: A002 - quiet by default
        log.debug("%s - %s", self.client(), format % args)

    def client(self) -> str:
        """`host:port` of the client, for log lines."""
        return ":".join(str(part) for part in self.client_address[:2])

    def handle_one_request(self) -> None:
        timeout = self.server.read_timeout
        self.reader.deadline = time.monotonic() + timeout
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > 65536:
                self.send_error(414, "Request line too long")
                return
            if not self.parse_request():
                return
            self.reader.deadline = time.monotonic() + timeout
            self.dispatch(self.command)
        except TimeoutError:
            self.close_connection = True
            log.info(
                "Closed connection from %s: no complete request within %g s "
                "(--http_read_timeout_seconds)",
                self.client(),
                timeout,
            )
        except (ConnectionError, OSError) as error:
            self.close_connection = True
            log.info("Client %s disconnected: %s", self.client(), error)

    def send_error(self, code, message=None, explain=None) -> None:
        """Protocol errors as JSON, like every other answer of the API."""
        self.close_connection = True
        self.reply(code, json.dumps({"error": message or self.responses.get(code, ("",))[0]}))

    def read_body(self, limit: int, keep: bool = True) -> bytes:
        """The request body, from `Content-Length` or chunked transfer coding.

        Args:
            limit: the largest body accepted, in bytes.
            keep: False reads the body and drops it as it comes (a page that ignores it:
                such bodies never count against any memory budget).

        Raises:
            RequestError: 400 for bad framing, 413 for a body over `limit`.
        """
        encoding = self.headers.get("Transfer-Encoding")
        length = self.headers.get("Content-Length")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise RequestError(
                    400, f"Transfer-Encoding {encoding[:50]!r} is not supported; use chunked"
                )
            if length is not None:
                raise RequestError(400, "Both Content-Length and Transfer-Encoding were sent")
            return self._read_chunked(limit, keep)
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            raise RequestError(400, "Invalid Content-Length")
        if size > limit:
            self.drain(size, 4 * limit)
            raise RequestError(
                413, f"Request body of {size} bytes exceeds the limit of {limit} bytes"
            )
        if not keep:
            self.drain(size, size)
            return b""
        return self.read_exactly(size)

    def read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size) if size else b""
        if len(data) != size:
            raise ConnectionError(f"body ended after {len(data)} of {size} bytes")
        return data

    def _read_chunked(self, limit: int, keep: bool = True) -> bytes:
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1026)
            if not line.endswith(b"\n"):
                raise RequestError(400, "Malformed chunk size line")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RequestError(400, "Malformed chunk size line") from None
            if size < 0:
                raise RequestError(400, "Malformed chunk size line")
            if size == 0:
                while self.rfile.readline(65537).strip():  # trailers, ignored
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise RequestError(413, f"Chunked request body exceeds the limit of {limit} bytes")
            if keep:
                parts.append(self.read_exactly(size))
            else:
                self.drain(size, size)
            if self.rfile.readline(3).strip():
                raise RequestError(400, "Malformed chunk: no CRLF after its data")

    def drain(self, size: int, most: int) -> None:
        """Reads and drops up to `size` body bytes (if `size <= most`), so the client reads
        the answer rather than a reset connection."""
        if size > most:
            return
        left = size
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def reply(self, status: int, body, content_type="application/json", headers=None) -> None:
        """Sends one answer (no body for HEAD); waits at most the read timeout for the client."""
        data = body.encode() if isinstance(body, str) else body
        self.connection.settimeout(self.server.read_timeout)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def dispatch(self, method: str) -> None:
        """Answers one request whose line and headers are read (subclasses implement it)."""
        raise NotImplementedError


_BUSY = json.dumps({"error": "Too many connections (--http_max_connections); retry later"}).encode()


class BoundedHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    """A thread per connection, at most `max_connections` of them; deadlines on reads.

    Args:
        address: `(host, port)` to bind (bound at once: a port in use raises OSError here).
        handler: the `RequestHandler` subclass.
        max_connections: connections served at once; more are answered 503 and closed.
        read_timeout: seconds allowed for a request's head, for its body, and for the client
            to take the answer.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, max_connections: int, read_timeout: float):
        self.max_connections = max(1, max_connections)
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """One line for a failed connection instead of socketserver's traceback."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("Client %s:%s disconnected: %s", *client_address[:2], error)
        else:
            log.exception("Connection from %s:%s failed", *client_address[:2])
