"""The server's counters, histograms and latency quantiles, in Prometheus' text format.

Prometheus scrapes ``GET /metrics`` and computes rates itself (``rate(edgelstm_frames_total
[1m])`` is frames per second), so the server exports running totals and histograms; the
latency quantiles come from the most recent observations (a bounded window), the way a
Prometheus *summary* does. The format is the plain-text exposition format 0.0.4.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Histogram", "LatencyWindow", "ServerMetrics", "render_snapshots"]

#: Content type of :meth:`ServerMetrics.render`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Histogram:
    """Cumulative-bucket histogram: counts per upper bound, their sum and count."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last bucket is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "total": self.total, "count": self.count}

    def add(self, snapshot: Mapping[str, Any]) -> None:
        """Fold in another worker's :meth:`snapshot` (same bounds)."""
        self.counts = [a + b for a, b in zip(self.counts, snapshot["counts"], strict=True)]
        self.total += snapshot["total"]
        self.count += snapshot["count"]

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            label = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{le="{label}"}} {running}')
        lines += [f"{name}_sum {self.total:.9g}", f"{name}_count {self.count}"]
        return lines


class LatencyWindow:
    """The last ``size`` latencies and their quantiles (a Prometheus summary's view)."""

    def __init__(self, size: int = 10_000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.total = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)
            self.total += seconds
            self.count += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"values": list(self._values), "total": self.total, "count": self.count}

    def add(self, snapshot: Mapping[str, Any]) -> None:
        """Fold in another worker's :meth:`snapshot`: quantiles then cover both windows."""
        with self._lock:
            self._values = deque([*self._values, *snapshot["values"]])
            self.total += snapshot["total"]
            self.count += snapshot["count"]

    def quantiles(self, qs: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[float, float]:
        with self._lock:
            values = sorted(self._values)
        if not values:
            return {}
        return {q: values[min(len(values) - 1, int(q * len(values)))] for q in qs}

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
        lines += [f'{name}{{quantile="{q:g}"}} {v:.9g}' for q, v in self.quantiles().items()]
        lines += [f"{name}_sum {self.total:.9g}", f"{name}_count {self.count}"]
        return lines


class ServerMetrics:
    """What ``/metrics`` exports; updated by the batcher and the request handlers."""

    def __init__(self) -> None:
        self.frames = 0
        self.requests = 0
        self.streams_opened = 0
        self.streams_closed = 0
        self.streams_evicted = 0
        #: calls passed to the worker holding their stream (``--workers``)
        self.forwarded = 0
        #: models swapped in (SIGHUP) while streams kept their state
        self.model_swaps = 0
        self.rejections: dict[str, int] = {}
        self.batch_size = Histogram((1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.queue_delay = Histogram(
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
        )
        #: from the request's arrival at the batcher to its rows being ready
        self.latency = LatencyWindow()

    def reject(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def exposition(self, *, workers: int, active_streams: int, queued_frames: int) -> str:
        """The exposition text of these totals (see :func:`render_snapshots`)."""
        lines = [
            "# HELP edgelstm_workers Worker processes that answered for these metrics.",
            "# TYPE edgelstm_workers gauge",
            f"edgelstm_workers {workers}",
            "# HELP edgelstm_active_streams Streams holding state on the server.",
            "# TYPE edgelstm_active_streams gauge",
            f"edgelstm_active_streams {active_streams}",
            "# HELP edgelstm_queued_frames Frames waiting for a model call.",
            "# TYPE edgelstm_queued_frames gauge",
            f"edgelstm_queued_frames {queued_frames}",
            "# HELP edgelstm_frames_total Frames scored (rate() gives frames per second).",
            "# TYPE edgelstm_frames_total counter",
            f"edgelstm_frames_total {self.frames}",
            "# HELP edgelstm_requests_total Frame requests received (HTTP and WebSocket).",
            "# TYPE edgelstm_requests_total counter",
            f"edgelstm_requests_total {self.requests}",
            "# HELP edgelstm_forwarded_total Requests passed to the worker holding their stream.",
            "# TYPE edgelstm_forwarded_total counter",
            f"edgelstm_forwarded_total {self.forwarded}",
            "# HELP edgelstm_model_swaps_total Models swapped in by SIGHUP (summed over workers).",
            "# TYPE edgelstm_model_swaps_total counter",
            f"edgelstm_model_swaps_total {self.model_swaps}",
            "# HELP edgelstm_streams_total Streams by how they began or ended.",
            "# TYPE edgelstm_streams_total counter",
            f'edgelstm_streams_total{{event="opened"}} {self.streams_opened}',
            f'edgelstm_streams_total{{event="ended"}} {self.streams_closed}',
            f'edgelstm_streams_total{{event="evicted"}} {self.streams_evicted}',
            "# HELP edgelstm_rejections_total Requests refused, by reason.",
            "# TYPE edgelstm_rejections_total counter",
        ]
        lines += [
            f'edgelstm_rejections_total{{reason="{reason}"}} {count}'
            for reason, count in sorted(self.rejections.items())
        ]
        lines += self.batch_size.render(
            "edgelstm_batch_size", "Streams per model call (the sequence batcher's batches)."
        )
        lines += self.queue_delay.render(
            "edgelstm_queue_delay_seconds", "Time a chunk waited before its model call."
        )
        lines += self.latency.render(
            "edgelstm_latency_seconds",
            "Server-side latency of a frame request, queue to rows (recent window).",
        )
        return "\n".join(lines) + "\n"

    def snapshot(self, *, active_streams: int, queued_frames: int) -> dict[str, Any]:
        """Everything :meth:`render` shows, as plain data another worker can fold in."""
        return {
            "workers": 1,
            "active_streams": active_streams,
            "queued_frames": queued_frames,
            **{name: getattr(self, name) for name in _COUNTERS},
            "rejections": dict(self.rejections),
            "batch_size": self.batch_size.snapshot(),
            "queue_delay": self.queue_delay.snapshot(),
            "latency": self.latency.snapshot(),
        }

    def render(self, *, active_streams: int, queued_frames: int) -> str:
        """The exposition text of this process alone."""
        mine = self.snapshot(active_streams=active_streams, queued_frames=queued_frames)
        return render_snapshots([mine])


#: The running totals every worker keeps and ``/metrics`` adds up.
_COUNTERS = (
    "frames", "requests", "streams_opened", "streams_closed", "streams_evicted", "forwarded",
    "model_swaps",
)  # fmt: skip


def render_snapshots(snapshots: Sequence[Mapping[str, Any]]) -> str:
    """The exposition text for the whole server: every worker's :meth:`ServerMetrics.snapshot`
    added up (counters, gauges, histogram buckets; latency quantiles over all windows)."""
    total = ServerMetrics()
    gauges = {"workers": 0, "active_streams": 0, "queued_frames": 0}
    per_worker = [
        "# HELP edgelstm_worker_streams Streams each worker holds (an even spread is the aim).",
        "# TYPE edgelstm_worker_streams gauge",
        *(
            f'edgelstm_worker_streams{{worker="{worker}"}} {snapshot["active_streams"]}'
            for worker, snapshot in enumerate(snapshots)
        ),
    ]
    for snapshot in snapshots:
        for name in gauges:
            gauges[name] += snapshot[name]
        for name in _COUNTERS:
            setattr(total, name, getattr(total, name) + snapshot[name])
        for reason, count in snapshot["rejections"].items():
            total.rejections[reason] = total.rejections.get(reason, 0) + count
        total.batch_size.add(snapshot["batch_size"])
        total.queue_delay.add(snapshot["queue_delay"])
        total.latency.add(snapshot["latency"])
    return total.exposition(**gauges) + "\n".join(per_worker) + "\n"
