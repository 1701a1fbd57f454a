"""Bounding the work a request may cause: deadlines, cancellation, admission, memory release.

A `RequestContext` carries one request's deadline (`--rest_api_timeout_in_ms` over REST, the
client's deadline over gRPC) and whether its client went away. `Watchdog` cancels the
contexts whose deadline passed or whose REST client closed its connection, and a cancelled
context stops the TensorFlow call it is running (`cancellation_scope`). `Limiter` admits
requests: at most `max_running` run per API, at most `max_queued` wait, and large bodies
(over `LARGE_REQUEST_BYTES`) run only while the bodies in flight fit a byte budget; beyond
the queue a request is refused at once (`UNAVAILABLE`, HTTP 503, over REST;
`RESOURCE_EXHAUSTED` over gRPC). After a large request the freed heap is handed back to the
system (`release_memory`), so the server's resident size returns near idle.

TensorFlow reads the cancellation manager of a call from one process-wide variable
(`tensorflow.python.eager.cancellation.context`); `cancellation_scope` makes that look-up
per thread, so concurrent requests each carry their own manager. Without that hook (another
TensorFlow) a running call is not stopped; deadlines and disconnects are still checked
before the call and between the slices of a sliced run.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import selectors
import socket
import threading
import time

from genkeras.serving.errors import ServingError

log = logging.getLogger("genkeras.serving")

# Bodies above this size count against the in-flight byte budget (and are read only once
# admitted); smaller ones only against the number of running requests.
LARGE_REQUEST_BYTES = 256 << 10

_local = threading.local()
_hooked = False
_hook_lock = threading.Lock()


def _install_cancellation_hook() -> bool:
    """Makes TensorFlow's cancellation-manager look-up per thread (see the module docstring)."""
    global _hooked
    with _hook_lock:
        if _hooked:
            return True
        try:
            from tensorflow.python.eager import cancellation
        except ImportError:
            return False
        original = getattr(cancellation, "context", None)
        if original is None:
            return False

        def per_thread_context():
            manager = getattr(_local, "manager", None)
            return manager if manager is not None else original()

        cancellation.context = per_thread_context
        _hooked = True
        return True


class RequestContext:
    """One request's deadline and cancellation.

    Args:
        timeout: seconds the request may take from now, or `None` for no deadline.
        what: how the deadline is set, quoted in the DEADLINE_EXCEEDED message (e.g.
            `"--rest_api_timeout_in_ms 30000"`).
    """

    def __init__(self, timeout: float | None = None, what: str = "the request's deadline"):
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.what = what
        self.reason: tuple[str, str] | None = None
        self._event = threading.Event()
        self._manager = None
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once passed), `None` without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def cancel(self, code: str, message: str) -> None:
        """Marks the request abandoned and stops the TensorFlow call it is running."""
        with self._lock:
            if self.reason is None:
                self.reason = (code, message)
            manager = self._manager
        self._event.set()
        if manager is not None:
            manager.start_cancel()

    def expire_if_due(self) -> bool:
        """Cancels the request with DEADLINE_EXCEEDED when its deadline passed."""
        left = self.time_left()
        if left is not None and left <= 0 and not self.cancelled:
            self.cancel(
                "DEADLINE_EXCEEDED",
                f"Deadline exceeded: the request ran past {self.what}; "
                "send a smaller request or allow it more time",
            )
        return self.cancelled

    def check(self) -> None:
        """Raises the request's cancellation as a `ServingError` (deadline or disconnect)."""
        self.expire_if_due()
        if self.reason is not None:
            raise ServingError(self.reason)

    def manager(self):
        """The TensorFlow CancellationManager of this request (made on first use)."""
        with self._lock:
            if self._manager is None:
                from tensorflow.python.eager import cancellation

                self._manager = cancellation.CancellationManager()
                if self.reason is not None:
                    self._manager.start_cancel()
            return self._manager


@contextlib.contextmanager
def cancellation_scope(context: RequestContext | None):
    """TensorFlow calls made inside run under `context`'s cancellation manager.

    Args:
        context: the request, or `None` for a call nothing may cancel (warm-up).
    """
    if context is None or not _install_cancellation_hook():
        yield
        return
    previous = getattr(_local, "manager", None)
    _local.manager = context.manager()
    try:
        yield
    finally:
        _local.manager = previous


class Watchdog:
    """A thread that cancels requests past their deadline or whose REST client hung up.

    Args:
        interval: seconds between deadline checks.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self._lock = threading.Lock()
        self._contexts: set[RequestContext] = set()
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def watch(self, context: RequestContext):
        """Cancels `context` at its deadline while inside; yields a function that adds the
        REST connection whose closing cancels it too (call it once the body is read)."""
        connections = []

        def attach(connection: socket.socket) -> None:
            with self._lock:
                try:
                    self._selector.register(connection, selectors.EVENT_READ, context)
                    connections.append(connection)
                except (ValueError, KeyError, OSError):
                    pass

        with self._lock:
            self._contexts.add(context)
        try:
            yield attach
        finally:
            with self._lock:
                self._contexts.discard(context)
                for connection in connections:
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self._selector.unregister(connection)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                has_sockets = bool(self._selector.get_map())
            if has_sockets:
                try:
                    events = self._selector.select(self.interval)
                except (OSError, ValueError):
                    events = []
                for key, _ in events:
                    self._readable(key)
            else:
                self._stop.wait(self.interval)
            with self._lock:
                contexts = list(self._contexts)
            for context in contexts:
                context.expire_if_due()

    def _readable(self, key) -> None:
        """A watched connection is readable: its client closed it, or sent more bytes."""
        connection, context = key.fileobj, key.data
        try:
            data = connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        with self._lock, contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(connection)  # more bytes (a pipelined request): stop
        if data == b"":
            context.cancel("CANCELLED", "the client closed the connection")

    def stop(self) -> None:
        self._stop.set()


class Limiter:
    """Admits requests: bounded running, bounded queue, a byte budget for large bodies.

    Args:
        max_running: `{"rest": n, "grpc": m}`, how many requests of each API run at once.
        max_queued: how many requests of each API may wait; beyond it one is refused.
        budget_bytes: the most bytes of large bodies (over `LARGE_REQUEST_BYTES`) in flight;
            one large request is always let through when none is in flight.
    """

    def __init__(self, max_running: dict[str, int], max_queued: int, budget_bytes: int):
        self.max_running = {k: max(1, v) for k, v in max_running.items()}
        self.max_queued = max(0, max_queued)
        self.budget_bytes = max(1, budget_bytes)
        self._cond = threading.Condition()
        self._running = dict.fromkeys(self.max_running, 0)
        self._queued = dict.fromkeys(self.max_running, 0)
        self._inflight = 0

    def _fits(self, api: str, cost: int) -> bool:
        if self._running[api] >= self.max_running[api]:
            return False
        return cost == 0 or self._inflight == 0 or self._inflight + cost <= self.budget_bytes

    @contextlib.contextmanager
    def admit(self, api: str, size: int, context: RequestContext):
        """Holds a place for one request while it is read and run.

        Args:
            api: `"rest"` or `"grpc"`.
            size: the request's body (or message) size in bytes.
            context: the request; waiting stops at its deadline or cancellation.

        Raises:
            ServingError: UNAVAILABLE (REST) or RESOURCE_EXHAUSTED (gRPC) when the queue is
                full; the context's code when its deadline passed or its client left first.
        """
        cost = size if size > LARGE_REQUEST_BYTES else 0
        with self._cond:
            if not self._fits(api, cost):
                if self._queued[api] >= self.max_queued:
                    code = "UNAVAILABLE" if api == "rest" else "RESOURCE_EXHAUSTED"
                    raise ServingError(
                        (
                            code,
                            f"Server overloaded: {self._running[api]} requests running and "
                            f"{self._queued[api]} queued (--max_queued_requests "
                            f"{self.max_queued}); retry later",
                        )
                    )
                self._queued[api] += 1
                try:
                    while not self._fits(api, cost):
                        context.check()
                        left = context.time_left()
                        self._cond.wait(0.1 if left is None else max(0.001, min(0.1, left)))
                    context.check()
                finally:
                    self._queued[api] -= 1
            self._running[api] += 1
            self._inflight += cost
        try:
            yield
        finally:
            with self._cond:
                self._running[api] -= 1
                self._inflight -= cost
                idle = self._inflight == 0
                self._cond.notify_all()
            if cost and idle:
                release_memory()

    def snapshot(self) -> dict:
        """Running and queued counts per API and the large bytes in flight (for tests, logs)."""
        with self._cond:
            return {
                "running": dict(self._running),
                "queued": dict(self._queued),
                "inflight_bytes": self._inflight,
            }


_libc = None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc mallopt parameters
# Freed heap memory the server keeps for the next requests; more is handed back.
KEPT_FREE_BYTES = 64 << 20


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2`: ten size_t counters; `fordblks` is the free heap bytes."""

    _FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS.split()]


def _glibc():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
        else:
            if hasattr(_libc, "mallinfo2"):  # glibc 2.33 and later
                _libc.mallinfo2.restype = _MallInfo2
    return _libc


def _free_heap_bytes(libc) -> int | None:
    """Bytes glibc holds freed in its heaps, or None where it cannot tell (before 2.33)."""
    return libc.mallinfo2().fordblks if hasattr(libc, "mallinfo2") else None


def tune_malloc(
    arenas: int = 2, mmap_threshold: int = 32 << 20, trim_threshold: int = KEPT_FREE_BYTES
) -> bool:
    """Sets glibc's allocator so the memory of a large request goes back to the system.

    Call it before threads start. Blocks of `mmap_threshold` bytes or more (a large body, its
    arrays) are mapped on their own and unmapped when freed (glibc would otherwise raise that
    threshold after the first large free, up to 32 MiB, and keep later large blocks in the
    heap), and at most `arenas` heaps are kept (one per thread by default: freed memory
    scattered over many of them stays resident). Up to `trim_threshold` bytes free at the top
    of a heap stay there. Smaller blocks come from the heap and are reused: the arrays and
    tensors of an ordinary request (a batch of 64 images: 0.4 to 7 MiB each) then need no
    fresh pages, which cost a page fault per 4 KiB (several milliseconds a request when every
    block over 256 KiB was mapped afresh). `release_memory` bounds what stays free.

    Returns:
        Whether the settings were applied (False off glibc).
    """
    libc = _glibc()
    if not libc:
        return False
    return all(
        libc.mallopt(option, value)
        for option, value in (
            (_M_ARENA_MAX, arenas),
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
        )
    )


def release_memory(keep: int = KEPT_FREE_BYTES) -> bool:
    """Hands freed heap memory back to the system once more than `keep` bytes of it pile up
    (glibc `malloc_trim(0)`; a no-op elsewhere).

    Large requests leave megabytes of freed blocks in glibc's heaps and arenas that would
    otherwise stay resident. Trimming after every request would cost the next one a page fault
    per 4 KiB it allocates again, so up to `keep` bytes stay for reuse (where glibc can say
    how much is free: from 2.33 on; older ones trim every time).

    Returns:
        Whether memory was trimmed.
    """
    libc = _glibc()
    if not libc:
        return False
    free = _free_heap_bytes(libc)
    if free is not None and free <= keep:
        return False
    libc.malloc_trim(0)
    return True
