"""The report: one point's record from what the load and the server showed, the rule that
says which points were served, the saturation it finds, and the JSON and Markdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgelstm.benchmarks.stats import latency_stats
from edgelstm.benchmarks.suites.serve_load.clients import LoadOutcome
from edgelstm.benchmarks.suites.serve_load.plan import LoadPlan, StreamLog
from edgelstm.benchmarks.suites.serve_load.sampling import batch_sizes, labelled

__all__ = [
    "COMMAND",
    "SCHEMA",
    "ServerReadings",
    "failures",
    "point_record",
    "saturation",
    "summarise",
    "to_markdown",
]

COMMAND = "python -m edgelstm.benchmarks.suites.serve_load"
SCHEMA = "edgelstm.serve-load/1"


@dataclass(frozen=True)
class ServerReadings:
    """What was read off the server around one load: ``/metrics`` before and after it, its
    resident memory once the load ended, whether it served again, and its exit code (None:
    it had to be killed)."""

    metrics_before: Mapping[str, float]
    metrics_after: Mapping[str, float]
    rss_after_load_mb: float
    recovery: dict[str, Any]
    exit_code: int | None


def point_record(
    plan: LoadPlan,
    variant: str,
    flags: Sequence[str],
    load: LoadOutcome,
    server: ServerReadings,
    correctness: dict[str, Any],
) -> dict[str, Any]:
    """One server, one load: the row the report shows for it."""
    logs = load.logs
    ok = sum(log.ok for log in logs)
    # fmt: off
    return {
        "protocol": plan.label, "variant": variant, "streams": plan.streams,
        "server_flags": list(flags), "offered_frames_per_s": plan.streams * plan.rate_hz,
        "achieved_frames_per_s": ok * plan.frames_per_request / load.window_s,
        "window_s": load.window_s,
        "sustained_streams": sum(
            log.ok == plan.requests_per_stream and log.max_lag <= plan.period_s for log in logs),
        "requests": _request_counts(plan, logs),
        "latency_ms": _latency_ms([v for log in logs for v in log.latencies]),
        "max_schedule_lag_ms": max(log.max_lag for log in logs) * 1000,
        **_server_counters(server.metrics_before, server.metrics_after),
        "cpu": load.cpu,
        "rss_mb": _memory(load.samples, server.rss_after_load_mb),
        "after_load": server.recovery, "exit_code": server.exit_code,
        "correctness": correctness,
    }
    # fmt: on


def _request_counts(plan: LoadPlan, logs: Sequence[StreamLog]) -> dict[str, Any]:
    statuses = sum((log.statuses for log in logs), Counter[int]())
    scheduled = plan.streams * plan.requests_per_stream
    sent, dropped = sum(log.sent for log in logs), sum(log.dropped for log in logs)
    # fmt: off
    return {"scheduled": scheduled, "sent": sent, "ok": sum(log.ok for log in logs),
            "dropped": dropped, "unsent": scheduled - sent - dropped,
            "rejected": sum(n for s, n in statuses.items() if s != 200),
            "rejected_by_status": {str(s): n for s, n in sorted(statuses.items()) if s != 200},
            "lost": sum(log.lost for log in logs),
            "reordered": sum(log.reordered for log in logs)}
    # fmt: on


def _latency_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    stats = latency_stats([s * 1000 for s in seconds])
    return {"p50": stats.p50_ms, "p90": stats.p90_ms, "p99": stats.p99_ms, "max": stats.max_ms}


def _server_counters(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """Batch sizes, rejections by reason and the server's own latency quantiles, from two
    scrapes of ``/metrics``."""
    rejections, quantiles = "edgelstm_rejections_total", "edgelstm_latency_seconds"
    rejected_before = labelled(before, rejections, "reason")
    return {
        "batch_size": batch_sizes(before, after),
        "server_rejections": {
            r: int(v - rejected_before.get(r, 0))
            for r, v in labelled(after, rejections, "reason").items()
        },
        "server_latency_ms": {
            q: v * 1e3 for q, v in labelled(after, quantiles, "quantile").items()
        },
        # --workers: requests passed to their stream's worker, and how the streams spread
        "forwarded_share": _delta(before, after, "edgelstm_forwarded_total")
        / max(1.0, _delta(before, after, "edgelstm_requests_total")),
        "worker_streams": [
            int(v) for _, v in sorted(labelled(after, "edgelstm_worker_streams", "worker").items())
        ],
    }


def _delta(before: Mapping[str, float], after: Mapping[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def _memory(samples: Sequence[tuple[float, float, float]], after_load_mb: float) -> dict[str, Any]:
    rss = [mb for _, mb, _ in samples]
    # Memory is flat when it stops growing once the streams are open (the first second).
    steady = [mb for t, mb, _ in samples if t >= 1.0] or [float("nan")]
    return {"start": rss[0] if rss else None, "peak": max(rss, default=None),
            "growth_after_1s": steady[-1] - steady[0], "after_load": after_load_mb,
            "samples": [[round(t, 2), round(mb, 1)] for t, mb, _ in samples]}  # fmt: skip


def failures(point: Mapping[str, Any], p99_limit_ms: float = 50.0) -> list[str]:
    """Why a point does not count as served (empty: it does)."""
    requests, p99 = point["requests"], point["latency_ms"]["p99"]
    why = [f"{requests[k]} {k}" for k in ("lost", "reordered", "rejected", "unsent") if requests[k]]
    if p99 is None or p99 > p99_limit_ms:
        why.insert(0, f"p99 {p99 if p99 is None else round(p99, 1)} ms > {p99_limit_ms:g} ms")
    return why


def saturation(points: Sequence[Mapping[str, Any]], p99_limit_ms: float = 50.0) -> dict[str, Any]:
    """The largest stream count served (p99 <= limit, nothing lost, reordered, rejected or
    unsent) with every smaller count served too, and the first count that was not."""
    best, first_failure, why = None, None, []
    for point in sorted(points, key=lambda p: p["streams"]):
        problems = failures(point, p99_limit_ms)
        if problems and first_failure is None:
            first_failure, why = point["streams"], problems
        elif not problems and first_failure is None:
            best = point["streams"]
    return {"streams": best, "first_failure": first_failure, "why": why, "limit_ms": p99_limit_ms}


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _point_cells(p: Mapping[str, Any]) -> list[str]:
    r, lat, rss, check = p["requests"], p["latency_ms"], p["rss_mb"], p["correctness"]
    mean = p["batch_size"]["mean"]
    return [
        p["protocol"], p["variant"], str(p["streams"]), f"{p['offered_frames_per_s']:,.0f}",
        f"{p['achieved_frames_per_s']:,.0f}", str(p["sustained_streams"]),
        *(_ms(lat[q]) for q in ("p50", "p90", "p99")),
        (", ".join(f"{n}x{s}" for s, n in r["rejected_by_status"].items()) or "0")
        + (f" ({r['dropped']} dropped)" if r["dropped"] else ""),
        str(r["lost"]), str(r["reordered"]), "—" if mean is None else f"{mean:.1f}",
        "/".join(map(str, p.get("worker_streams", []))) or "—",
        f"{p.get('forwarded_share', 0.0):.0%}",
        f"{p['cpu']['server_cores']:.2f}", f"{p['cpu']['client_cores']:.2f}",
        f"{_ms(rss['start'])}/{_ms(rss['peak'])} ({rss['growth_after_1s']:+.1f})",
        f"{'ok' if p['after_load']['ok'] else 'FAILED'}, exit {p['exit_code']}",
        f"{check['chunks'] - check['mismatched_chunks']}/{check['chunks']} chunks "
        f"(max diff {check['max_abs_diff']:.1g})",
    ]  # fmt: skip


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [f"| {' | '.join(row)} |" for row in [header, ["---"] * len(header), *rows]]


def to_markdown(doc: Mapping[str, Any]) -> str:
    env, load, points = doc["environment"], doc["load"], doc["points"]
    header = ["protocol", "server", "streams", "offered fr/s", "achieved fr/s", "sustained",
              "p50 ms", "p90 ms", "p99 ms", "rejected", "lost", "reordered", "mean batch",
              "streams per worker", "forwarded",
              "server cores", "client cores", "server RSS MB start/peak (growth after 1 s)",
              "after load", "rows check"]  # fmt: skip
    bins = list(points[0]["batch_size"]["histogram"]) if points else []
    batches = [[*_point_cells(p)[:3], *map(str, p["batch_size"]["histogram"].values())]
               for p in points]  # fmt: skip
    lines = [
        f"# Serve load: {doc['model']['label']}", "", f"Command: `{doc['command']}`", "",
        f"Machine: {env['cpu'].get('model')}, {env['cpu_count']} cores, CPU flags "
        f"{' '.join(env['cpu_flags']) or 'unknown'}; onnxruntime "
        f"{env['libraries'].get('onnxruntime')}, uvicorn {env['libraries'].get('uvicorn')}, "
        f"Python {env['python']}. Client and server share these cores over loopback.", "",
        f"Load per stream: {load['rate_hz']:g} frames/s in requests of "
        f"{load['frames_per_request']} frames for {load['duration_s']:g} s; frames from "
        f"{load['frames']}. `batched`: the server with the flags given; `baseline`: the same "
        "with `--max-batch 1`. Latency: send to reply of served requests, at the client. A "
        f"point is served when p99 <= {doc['p99_limit_ms']:g} ms with nothing lost, reordered,"
        " rejected or unsent; a stream is sustained when every request was served and sent at"
        " most one request period late.", "",
        "## Summary", "", *(f"- {line}" for line in doc["summary"]), "",
        "## Points", "", *_table(header, [_point_cells(p) for p in points]), "",
        "## Batch sizes (model calls per batch-size range)", "",
        *_table(["protocol", "server", "streams", *bins], batches),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def summarise(points: Sequence[Mapping[str, Any]], limit_ms: float) -> tuple[Any, list[str]]:
    """Saturation per protocol and server, and batched/baseline ratios at each count."""
    found, lines, most = {}, [], {}
    for key in dict.fromkeys((p["protocol"], p["variant"]) for p in points):
        mine = [p for p in points if (p["protocol"], p["variant"]) == key]
        found["/".join(key)] = sat = saturation(mine, limit_ms)
        most[key] = max(p["achieved_frames_per_s"] for p in mine)
        past = f"; at {sat['first_failure']}: {', '.join(sat['why'])}" if sat["why"] else ""
        lines.append(f"{key[0]} {key[1]}: saturation {sat['streams']} streams{past}; at most "
                     f"{most[key]:,.0f} frames/s achieved")  # fmt: skip
    for (protocol, variant), frames in most.items():
        if variant == "batched" and most.get((protocol, "baseline")):
            lines.append(f"{protocol}: the batcher's capacity gain (most frames/s, batched / "
                         f"baseline) {frames / most[(protocol, 'baseline')]:.2f}x")  # fmt: skip
    base = {(p["protocol"], p["streams"]): p for p in points if p["variant"] == "baseline"}
    for p in points:
        b = base.get((p["protocol"], p["streams"])) if p["variant"] == "batched" else None
        if b is not None and b["achieved_frames_per_s"]:
            lines.append(
                f"{p['protocol']} at {p['streams']} streams: batched/baseline achieved frames/s "
                f"{p['achieved_frames_per_s'] / b['achieved_frames_per_s']:.2f}x, p99 "
                f"{_ms(p['latency_ms']['p99'])} vs {_ms(b['latency_ms']['p99'])} ms"
            )
    return found, lines
