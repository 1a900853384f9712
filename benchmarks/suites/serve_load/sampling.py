"""What the harness reads off the server while it runs: the process's resident memory and CPU
time from Linux ``/proc``, and its Prometheus counters from ``GET /metrics``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["batch_sizes", "labelled", "parse_metrics", "process_usage"]


def process_usage(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds so far) of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may hold spaces and parentheses: the fields start after its ")".
        fields = stat.read().rpartition(")")[2].split()
    return rss / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{"name{labels}": value}``."""
    lines = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, _, value in lines if name}


def batch_sizes(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """Model calls by batch size between two scrapes (histogram buckets made per-range)."""
    prefix = 'edgelstm_batch_size_bucket{le="'
    bounds = sorted(
        (float(k[len(prefix) : -2]), k) for k in after if k.startswith(prefix) and "+Inf" not in k
    )
    ranges: dict[str, int] = {}
    low, below = 1.0, 0.0
    for bound, key in [*bounds, (float("inf"), prefix + '+Inf"}')]:
        cumulative = after.get(key, 0) - before.get(key, 0)
        label = f">{low - 1:g}" if bound == float("inf") else f"{low:g}-{bound:g}"
        ranges[label if low != bound else f"{bound:g}"] = int(cumulative - below)
        low, below = bound + 1, cumulative
    calls = after.get("edgelstm_batch_size_count", 0) - before.get("edgelstm_batch_size_count", 0)
    total = after.get("edgelstm_batch_size_sum", 0) - before.get("edgelstm_batch_size_sum", 0)
    return {"calls": int(calls), "mean": total / calls if calls else None, "histogram": ranges}


def labelled(samples: Mapping[str, float], name: str, label: str) -> dict[str, float]:
    """The samples of metric ``name`` by the value of its one ``label``."""
    prefix = f'{name}{{{label}="'
    return {k[len(prefix) : -2]: v for k, v in samples.items() if k.startswith(prefix)}
