"""What the harness reads off the server while it runs: the process's resident memory and CPU
time from Linux ``/proc``, and its Prometheus counters from ``GET /metrics``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["batch_sizes", "labelled", "parse_metrics", "process_usage"]


def process_usage(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds so far) of process ``pid`` and its children (a server with
    ``--workers`` is a supervisor and its worker processes), from Linux /proc."""
    rss = cpu = 0.0
    for member in (pid, *_children(pid)):
        try:
            member_rss, member_cpu = _own_usage(member)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # a child that just exited
        rss, cpu = rss + member_rss, cpu + member_cpu
    return rss, cpu


def _own_usage(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss / 1024, sum(_stat_fields(pid)[11:13]) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[int]:
    """/proc/PID/stat from its state field on (the command name may hold spaces and
    parentheses: the fields start after its ")"); the state letter is read as 0."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return [int(f) if f.lstrip("-").isdigit() else 0 for f in fields]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _stat_fields(int(entry))[1] == pid:  # field 4, the parent's pid
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


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
