"""Request counters and latency sums, in the Prometheus text format TF Serving exports.

The REST server records every request that names a model; with a monitoring config that
enables Prometheus, its page is served at the configured path (TF Serving's metric names).
"""

from __future__ import annotations

import threading


class Metrics:
    """Request counts per (model, API, status) and latency sums per (model, API).

    Thread-safe: the REST server records from all its handler threads.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: dict[tuple, int] = {}
        self.latency: dict[tuple, float] = {}

    def record(self, model: str, api: str, status: str, seconds: float) -> None:
        """Counts one request.

        Args:
            model: the model name.
            api: `"predict"`, `"status"` or `"metadata"`.
            status: `"OK"` or the HTTP status as text.
            seconds: how long the request took.
        """
        with self._lock:
            key = (model, api, status)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.latency[(model, api)] = self.latency.get((model, api), 0.0) + seconds

    def page(self) -> str:
        """The metrics page, Prometheus text format."""
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, api, status), count in sorted(self.counts.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",api="{api}",status="{status}"}} {count}'  # noqa: E501
                )
            lines.append("# TYPE :tensorflow:serving:request_latency_sum_seconds counter")
            for (model, api), total in sorted(self.latency.items()):
                lines.append(
                    f':tensorflow:serving:request_latency_sum_seconds{{model_name="{model}",api="{api}"}} {total:.6f}'  # noqa: E501
                )
        return "\n".join(lines) + "\n"
