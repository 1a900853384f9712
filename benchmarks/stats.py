"""Latency statistics with a stated method, so two reports compare like with like.

Percentiles use linear interpolation between closest ranks (NumPy's default, "type 7" in
Hyndman & Fan): for sorted samples ``x[0..n-1]`` the p-th percentile sits at rank
``(n - 1) * p / 100``. Outliers are kept: a p99 that hides the slow calls is not a p99.

Example::

    >>> stats = latency_stats([1.0, 2.0, 3.0, 4.0])
    >>> stats.p50_ms, stats.p90_ms, stats.mean_ms
    (2.5, 3.7, 2.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from edgelstm.errors import InvalidInputError

__all__ = ["LatencyStats", "latency_stats", "percentile", "throughput"]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise InvalidInputError("percentile of no samples")
    if not 0 <= p <= 100:
        raise InvalidInputError(f"percentile must be within 0..100, got {p}")
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds (``std`` is the sample std, n - 1)."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float

    def to_json(self) -> dict[str, float | int]:
        """The fields by name, as stored in benchmark rows."""
        return asdict(self)


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Summarise latencies; needs at least one finite, non-negative sample."""
    values = sorted(float(v) for v in samples_ms)
    if not values:
        raise InvalidInputError("no latency samples to summarise; run at least one iteration")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise InvalidInputError("latency samples must be finite and non-negative")
    n = len(values)
    # Rounding can put the mean of equal samples a hair outside [min, max]; clamp it.
    mean = min(max(math.fsum(values) / n, values[0]), values[-1])
    # Scaled by the largest value so squares cannot overflow for huge (finite) samples.
    scale = max(abs(values[0]), abs(values[-1])) or 1.0
    spread = math.fsum(((v - mean) / scale) ** 2 for v in values)
    std = scale * math.sqrt(spread / (n - 1)) if n > 1 else 0.0
    return LatencyStats(
        count=n,
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p99_ms=percentile(values, 99),
        mean_ms=mean,
        std_ms=std,
        min_ms=values[0],
        max_ms=values[-1],
    )


def throughput(items_per_call: int, p50_ms: float) -> float:
    """Items per second at the median latency (sequences/s or frames/s)."""
    if p50_ms <= 0:
        return math.inf
    return items_per_call * 1000.0 / p50_ms
