"""Request counts and latencies, in the Prometheus text format TF Serving's exporter writes.

The metrics are TF Serving's own (`servables/tensorflow/util.cc`, exported by
`util/prometheus_exporter.cc`, which turns `/` in a name into `:`):

* `:tensorflow:serving:request_count{model_name, status}`: a counter of every request,
  `status` the canonical code name (`OK`, `NOT_FOUND`, `INVALID_ARGUMENT`, ...). REST counts
  every request under `/v1/` (`model_name` empty when the path names none); gRPC counts
  Predict, Classify and Regress, as TF Serving does (not GetModelMetadata nor
  GetModelStatus).
* `:tensorflow:serving:request_latency{model_name, API, entrypoint}`: a histogram of the
  microseconds each successful request took; `API` is the REST verb (`predict`, empty for
  status and metadata) or the gRPC method (`Predict`), `entrypoint` is `REST` or `GRPC`.
  Buckets are TF Serving's: 10 us times 1.8^i for i < 33, then +Inf.

Model names come from requests, so a label is cut to 200 characters and, past `max_series`
distinct label sets per metric, new ones are counted under `model_name="(other)"`: random
names cannot grow the page without end.
"""

from __future__ import annotations

import bisect
import threading

from genkeras.serving.errors import clip

# monitoring::Buckets::Exponential(10, 1.8, 33): 33 finite limits, then DBL_MAX (+Inf).
LATENCY_BUCKETS_US = tuple(10.0 * 1.8**i for i in range(33))


def _label(value: str) -> str:
    """A label value escaped as the exporter escapes it (backslash and double quote)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _number(value: float) -> str:
    """A double as absl::StrCat writes it (six significant digits)."""
    return f"{value:g}"


class Metrics:
    """Request counts per (model, status) and latency histograms per (model, API, entrypoint).

    Thread-safe: the REST and gRPC servers record from all their threads.
    """

    def __init__(self, max_series: int = 10000):
        self.max_series = max_series
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.latency: dict[tuple[str, str, str], list] = {}  # [bucket counts, sum]

    def record(self, model: str, api: str, status: str, entrypoint: str, seconds: float) -> None:
        """Counts one request; its latency too when it succeeded (as TF Serving).

        Args:
            model: the model name the request named (`""` for none).
            api: `predict` (REST), `""` (REST status or metadata), or `Predict` (gRPC).
            status: the canonical code name of the answer, e.g. `"OK"`, `"NOT_FOUND"`.
            entrypoint: `"REST"` or `"GRPC"`.
            seconds: how long the request took.
        """
        model = clip(model)
        with self._lock:
            key = (model, status)
            if key not in self.counts and len(self.counts) >= self.max_series:
                key = ("(other)", status)
            self.counts[key] = self.counts.get(key, 0) + 1
            if status != "OK":
                return
            micros = seconds * 1e6
            series = (model, api, entrypoint)
            if series not in self.latency and len(self.latency) >= self.max_series:
                series = ("(other)", api, entrypoint)
            cell = self.latency.setdefault(series, [[0] * (len(LATENCY_BUCKETS_US) + 1), 0.0])
            cell[0][bisect.bisect_right(LATENCY_BUCKETS_US, micros)] += 1  # upper_bound, as TF
            cell[1] += micros

    def page(self) -> str:
        """The metrics page, Prometheus text format."""
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, status), count in sorted(self.counts.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{_label(model)}",'
                    f'status="{_label(status)}"}} {count}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (model, api, entrypoint), (buckets, total) in sorted(self.latency.items()):
                labels = (
                    f'model_name="{_label(model)}",API="{_label(api)}",'
                    f'entrypoint="{_label(entrypoint)}"'
                )
                cumulative = 0
                for i, count in enumerate(buckets):
                    cumulative += count
                    limit = _number(LATENCY_BUCKETS_US[i]) if i < len(buckets) - 1 else "+Inf"
                    lines.append(
                        f':tensorflow:serving:request_latency_bucket{{{labels},le="{limit}"}} '
                        f"{cumulative}"
                    )
                lines.append(
                    f":tensorflow:serving:request_latency_sum{{{labels}}} {_number(total)}"
                )
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {cumulative}")
        return "\n".join(lines) + "\n"
