"""Server-side batching of concurrent requests, configured by TF Serving's BatchingParameters.

Requests to the same (model, version, signature) that arrive within `batch_timeout_micros`
of each other are concatenated along the first dimension (up to `max_batch_size` rows,
padded up to the next `allowed_batch_sizes` entry when given), run once, and the outputs are
split back. At most `num_batch_threads` batches run at a time; at most
`max_enqueued_batches` batches wait per queue, beyond that a request is refused with
UNAVAILABLE, as TF Serving does. Only signatures whose inputs all have a leading dimension
of any size are batched (TF Serving refuses scalar inputs when batching is on; this server
runs such signatures, `sample` for one, unbatched instead).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from genkeras.serving.errors import ServingError, internal, invalid_argument, unavailable


class _Task:
    __slots__ = ("inputs", "size", "done", "outputs", "error", "enqueued", "abandoned")

    def __init__(self, inputs, size):
        self.inputs, self.size = inputs, size
        self.done = threading.Event()
        self.outputs = self.error = None
        self.enqueued = time.monotonic()
        self.abandoned = False  # its request's deadline passed or its client left: skip it


class _Queue:
    def __init__(self, batcher, fn):
        self.batcher, self.fn = batcher, fn
        self.tasks: deque[_Task] = deque()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def submit(self, task: _Task) -> None:
        with self.cond:
            rows = sum(t.size for t in self.tasks)
            if rows + task.size > self.batcher.max_batch_size * self.batcher.max_enqueued_batches:
                raise ServingError(
                    unavailable(
                        "The batch scheduling queue to which this task was submitted is full"
                    )
                )
            self.tasks.append(task)
            self.cond.notify()

    def _take(self) -> list[_Task]:
        b = self.batcher
        with self.cond:
            while not self.tasks:
                self.cond.wait()
            deadline = self.tasks[0].enqueued + b.timeout
            while sum(t.size for t in self.tasks) < b.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            batch, rows = [], 0
            while self.tasks and rows + self.tasks[0].size <= b.max_batch_size:
                task = self.tasks.popleft()
                if task.abandoned:
                    continue
                batch.append(task)
                rows += task.size
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                continue
            with self.batcher.slots:
                self._run(batch)

    def _run(self, batch: list[_Task]) -> None:
        try:
            rows = sum(t.size for t in batch)
            target = self.batcher.padded_size(rows)
            names = list(batch[0].inputs)
            merged = {}
            for name in names:
                parts = [t.inputs[name] for t in batch]
                if target > rows:
                    pad = np.repeat(parts[0][:1], target - rows, axis=0)
                    parts.append(pad)
                merged[name] = np.concatenate(parts, axis=0)
            outputs = self.fn(merged)
            for name, value in outputs.items():
                if np.ndim(value) == 0 or value.shape[0] != target:
                    raise ServingError(
                        internal(
                            f"Batched output {name} has {np.shape(value)[:1]} rows, expected {target}"  # noqa: E501
                        )
                    )
            start = 0
            for task in batch:
                task.outputs = {k: v[start : start + task.size] for k, v in outputs.items()}
                start += task.size
        except ServingError as error:
            for task in batch:
                task.error = error
        except Exception as error:  # noqa: BLE001
            for task in batch:
                task.error = ServingError(internal(str(error)))
        finally:
            for task in batch:
                task.done.set()


class Batcher:
    def __init__(self, params=None):
        def value(field, default):
            return (
                getattr(params, field).value
                if params is not None and params.HasField(field)
                else default
            )

        self.max_batch_size = int(value("max_batch_size", 1000))
        self.timeout = value("batch_timeout_micros", 0) / 1e6
        self.max_enqueued_batches = int(value("max_enqueued_batches", 10))
        self.num_batch_threads = int(value("num_batch_threads", 4))
        self.allowed = sorted(params.allowed_batch_sizes) if params is not None else []
        if self.allowed and self.allowed[-1] != self.max_batch_size:
            raise ValueError("allowed_batch_sizes: the last entry must equal max_batch_size")
        self.slots = threading.BoundedSemaphore(max(1, self.num_batch_threads))
        self._queues: dict = {}
        self._lock = threading.Lock()

    def padded_size(self, rows: int) -> int:
        for size in self.allowed:
            if size >= rows:
                return size
        return rows

    def run(self, key, fn, inputs: dict[str, np.ndarray], context=None) -> dict[str, np.ndarray]:
        """Runs `fn` on `inputs` merged with concurrent requests of the same `key`.

        Args:
            key: what may be merged (model, version, signature).
            fn: runs a merged batch: input name -> array to output name -> array.
            inputs: this request's inputs, all with the same first dimension.
            context: the request's `RequestContext`; once cancelled (deadline, client gone)
                the request stops waiting and, if its batch has not started, is left out.

        Returns:
            This request's rows of the outputs.
        """
        sizes = {np.shape(v)[0] for v in inputs.values()}
        if len(sizes) != 1:
            raise ServingError(
                invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
            )
        size = sizes.pop()
        if size > self.max_batch_size:
            raise ServingError(
                invalid_argument(
                    f"Task size {size} is larger than maximum input batch size {self.max_batch_size}"  # noqa: E501
                )
            )
        if size == 0:
            return fn(inputs)
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(self, fn)
        task = _Task(inputs, size)
        if context is not None:
            context.check()
        queue.submit(task)
        while not task.done.wait(0.05):
            if context is not None and context.expire_if_due():
                task.abandoned = True
                context.check()
        if task.error is not None:
            raise task.error
        return task.outputs
