"""Benchmark reports: the terminal table, JSON (``edgelstm.benchmark/1``), Markdown and
comparison with an earlier report; the PNG figure is drawn by :mod:`edgelstm.benchmarks.plots`.

Rows are plain dicts with stable field names (the minimum set is :data:`REQUIRED_ROW_FIELDS`);
:func:`load_report` checks a JSON file against them before anything compares with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.benchmarks.harness import BENCHMARK_SCHEMA, provider_label
from edgelstm.benchmarks.plots import write_plot
from edgelstm.errors import InvalidInputError
from edgelstm.fileio import read_json, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "REQUIRED_ROW_FIELDS",
    "Comparison",
    "baselines_line",
    "compare_reports",
    "load_report",
    "provider_label",
    "render_table",
    "row_key",
    "to_markdown",
    "write_report_files",
]

#: Fields every row has (the edgelstm.benchmark/1 contract), in the order tables show them.
REQUIRED_ROW_FIELDS = (
    "model",
    "runtime",
    "provider",
    "precision",
    "mode",
    "batch",
    "seq",
    "chunk",
    "threads",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "throughput_per_s",
)


#: Required fields that must be numbers (comparison divides by them).
_NUMERIC_FIELDS = (
    "batch",
    "threads",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "throughput_per_s",
)


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two rows the same configuration (for ``--compare``)."""
    return (
        row["model"],
        row["runtime"],
        row.get("requested_provider", row["provider"]),
        row["precision"],
        row["mode"],
        row["batch"],
        row.get("seq"),
        row.get("chunk"),
        row["threads"],
    )


def load_report(path: Path) -> dict[str, Any]:
    """Read and check a benchmark JSON; bad files raise InvalidInputError naming the problem."""
    path = Path(path)
    document = read_json(path, what="benchmark report")
    if not isinstance(document, dict) or document.get("schema") != BENCHMARK_SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise InvalidInputError(
            f"{path} is not an edgelstm benchmark report (schema {found!r}, expected "
            f"{BENCHMARK_SCHEMA!r}); write one with `edgelstm benchmark --json`"
        )
    rows = document.get("rows")
    if not isinstance(rows, list):
        raise InvalidInputError(f"{path}: 'rows' must be a list")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}: rows[{index}] is not an object")
        missing = [f for f in REQUIRED_ROW_FIELDS if f not in row]
        if missing:
            raise InvalidInputError(f"{path}: rows[{index}] lacks {', '.join(missing)}")
        for name in _NUMERIC_FIELDS:
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(
                    f"{path}: rows[{index}].{name} is {value!r}; expected a number"
                )
    return document


# --------------------------------------------------------------------------------------------
# formatting


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _shape(row: dict[str, Any]) -> str:
    if row["mode"] == "streaming":
        return f"b{row['batch']} chunk {row['chunk']}"
    return f"b{row['batch']} x {row['seq']}"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


#: The columns that say which configuration a row measured, in every table of rows.
ROW_KEY_COLUMNS = ("model", "runtime", "provider", "prec", "mode", "shape", "thr")


def table_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the terminal table and the Markdown table."""
    has_metric = any(r.get("metric_value") is not None for r in rows)
    metric = next((r.get("metric") for r in rows if r.get("metric")), "metric")
    has_stream = any(r["mode"] == "streaming" for r in rows)
    header = [
        *ROW_KEY_COLUMNS,
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "per s",
        "vs torch",
    ]
    if has_stream:
        header += ["frame ms", "RTF"]
    header += ["size MB", "peak RSS MB"]
    if has_metric:
        header.append(str(metric))
    cells = []
    for r in rows:
        line = [
            str(r["model"]),
            str(r["runtime"]),
            provider_label(r),
            str(r["precision"]),
            str(r["mode"]),
            _shape(r),
            str(r["threads"]),
            _ms(r["p50_ms"]),
            _ms(r["p90_ms"]),
            _ms(r["p99_ms"]),
            _num(r["throughput_per_s"], 0),
            _ratio(r.get("vs_torch_fp32")),
        ]
        if has_stream:
            line += [_ms(r.get("frame_p50_ms")), _num(r.get("real_time_factor"), 4)]
        line += [_num(r.get("size_mb"), 2), _num(r.get("peak_rss_mb"), 0)]
        if has_metric:
            value = r.get("metric_value")
            mark = f" {AT_CHANCE}" if r.get("clears_chance") is False else ""
            line.append("-" if value is None else f"{value:.4f}{mark}")
        cells.append(line)
    return header, cells


#: How a row whose score does not clear the checkpoint's chance level is marked.
AT_CHANCE = "(at chance)"


def baselines_line(document: dict[str, Any]) -> str | None:
    """The line under the table: the checkpoint's baselines (``benchmark --eval``), and what
    the rows marked :data:`AT_CHANCE` mean; None for a report scored on no checkpoint."""
    baselines = document.get("baselines")
    if not isinstance(baselines, dict) or not baselines.get("summary"):
        return None
    line = str(baselines["summary"])
    if any(r.get("clears_chance") is False for r in document["rows"]):
        line += f". Rows marked {AT_CHANCE} do not clear it: do not deploy them"
    return line


def render_table(document: dict[str, Any], title: str = "benchmark") -> Table:
    """A rich table of the rows (fastest p50 per mode highlighted)."""
    from rich.table import Table

    rows = document["rows"]
    header, cells = table_rows(rows)
    caption = baselines_line(document)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name in header:
        table.add_column(name, justify="left" if name in ("model", "provider", "mode") else "right")
    best: dict[str, float] = {}
    for r in rows:
        best[r["mode"]] = min(best.get(r["mode"], math.inf), r["p50_ms"])
    for r, line in zip(rows, cells, strict=True):
        style = "bold green" if r["p50_ms"] == best[r["mode"]] else None
        if r.get("clears_chance") is False:
            style = "red"  # fast or not, a model at chance is not one to ship
        table.add_row(*line, style=style)
    return table


def _environment_lines(env: dict[str, Any]) -> list[str]:
    cpu = env.get("cpu", {})
    libs = env.get("libraries", {})
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "neon") if cpu.get(f)]
    gpus = ", ".join(g.get("name", "?") for g in env.get("gpus", [])) or "none"
    return [
        f"- CPU: {cpu.get('model', '?')} ({env.get('cpu_count')} logical cores; "
        f"{', '.join(flags) or 'no notable SIMD flags'})",
        f"- GPU: {gpus}",
        f"- Libraries: onnxruntime {libs.get('onnxruntime')} "
        f"({libs.get('onnxruntime_distribution')}), torch {libs.get('torch') or 'not installed'}, "
        f"onnx {libs.get('onnx')}, numpy {libs.get('numpy')}; "
        f"Python {env.get('python')}",
        f"- Taken {env.get('timestamp')} on {env.get('platform')}",
    ]


def placement_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Where each model's nodes ran on providers other than the CPU (once per model and
    provider): a row on ``openvino`` whose LSTM stayed on the CPU is not an OpenVINO number."""
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        placement = row.get("placement") or {}
        provider = row.get("provider", "")
        if row.get("runtime") != "onnxruntime" or provider == "cpu" or not placement:
            continue
        total = sum(placement.values())
        on_it = placement.get(provider, 0)
        where = ", ".join(f"{n} on {ep}" for ep, n in placement.items() if ep != provider)
        text = (
            f"all {total} nodes on {provider}"
            if on_it == total
            else (f"partial: {on_it} of {total} nodes on {provider}, {where}")
        )
        seen.setdefault((row["model"], provider), text)
    if not seen:
        return []
    lines = ["Node placement (ONNX Runtime's report):", ""]
    lines += [f"- {model} on {provider}: {text}" for (model, provider), text in seen.items()]
    return [*lines, ""]


def to_markdown(document: dict[str, Any], title: str = "Benchmark") -> str:
    """The report as Markdown: command, environment, the table and skipped providers."""
    plan = document.get("plan", {})
    lines = [f"# {title}", ""]
    if document.get("command"):
        lines += [f"Command: `{document['command']}`", ""]
    lines += _environment_lines(document.get("environment", {}))
    iterations = plan.get("iterations")
    timing = f"{plan.get('duration_s')} s per row" if iterations is None else f"{iterations} calls"
    where = "each row in its own process" if plan.get("isolate") else "all rows in one process"
    lines += [
        f"- Timing: {plan.get('warmup')} warm-up calls, then {timing} per row, in "
        f"{plan.get('rounds', 1)} rounds alternating between the rows of one shape; latency "
        f"per call, percentiles by linear interpolation, outliers kept; {where}",
        "",
    ]
    header, cells = table_rows(document["rows"])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in cells]
    lines.append("")
    caption = baselines_line(document)
    if caption is not None:
        lines += [caption[0].upper() + caption[1:] + ".", ""]
    if any(r["mode"] == "streaming" for r in document["rows"]):
        lines += [
            "Streaming rows: latency per push of `chunk` frames with the state carried; "
            "`frame ms` is per frame, RTF the real-time factor at "
            f"{plan.get('frame_rate', 100)} Hz (below 1 keeps up).",
            "",
        ]
    lines += [
        "`vs torch`: p50 over PyTorch eager FP32 on the CPU at the same shape and threads.",
        "",
    ]
    lines += placement_lines(document["rows"])
    for skip in document.get("skipped", []):
        lines.append(f"- skipped {skip['provider']}: {skip['reason']}")
    for key, value in document.get("summary", {}).items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines).rstrip() + "\n"


def write_report_files(
    document: dict[str, Any],
    *,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    plot_path: Path | None = None,
    overwrite: bool = False,
    title: str = "Benchmark",
) -> list[Path]:
    """Write whichever outputs were asked for; returns the paths written."""
    written = []
    if json_path is not None:
        write_json_atomic(json_path, document, overwrite=overwrite)
        written.append(json_path)
    if markdown_path is not None:
        write_text_atomic(markdown_path, to_markdown(document, title), overwrite=overwrite)
        written.append(markdown_path)
    if plot_path is not None:
        write_plot(document, plot_path, overwrite=overwrite, title=title)
        written.append(plot_path)
    return written


# --------------------------------------------------------------------------------------------
# comparison


@dataclass(frozen=True)
class Comparison:
    """Per-row p50 ratios (new / old) and the rows that regressed beyond ``threshold``."""

    rows: tuple[dict[str, Any], ...]
    regressions: tuple[dict[str, Any], ...]
    only_new: int
    only_old: int
    threshold: float

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rows": list(self.rows),
            "regressions": len(self.regressions),
            "only_new": self.only_new,
            "only_old": self.only_old,
        }


def compare_reports(
    new: dict[str, Any], old: dict[str, Any], *, threshold: float = 0.10
) -> Comparison:
    """Match rows by configuration and flag p50 slower than ``1 + threshold`` times before."""
    old_rows = {row_key(r): r for r in old["rows"]}
    matched = []
    regressions = []
    new_keys = set()
    for r in new["rows"]:
        key = row_key(r)
        new_keys.add(key)
        before = old_rows.get(key)
        if before is None:
            continue
        ratio = r["p50_ms"] / before["p50_ms"] if before["p50_ms"] > 0 else math.inf
        entry = {
            "model": r["model"],
            "runtime": r["runtime"],
            "provider": r["provider"],
            "precision": r["precision"],
            "mode": r["mode"],
            "shape": _shape(r),
            "threads": r["threads"],
            "old_p50_ms": before["p50_ms"],
            "new_p50_ms": r["p50_ms"],
            "ratio": ratio,
            "regression": ratio > 1 + threshold,
        }
        matched.append(entry)
        if entry["regression"]:
            regressions.append(entry)
    only_old = len(set(old_rows) - new_keys)
    return Comparison(
        tuple(matched),
        tuple(regressions),
        only_new=len(new_keys - set(old_rows)),
        only_old=only_old,
        threshold=threshold,
    )


def print_comparison(comparison: Comparison, console: Console) -> None:
    """The comparison as a table; regressions in red."""
    from rich.table import Table

    table = Table(
        title=f"compared with the old report (regression: > {1 + comparison.threshold:.2f}x)"
    )
    for name in (*ROW_KEY_COLUMNS, "old p50", "new p50", "ratio"):
        table.add_column(name)
    for r in comparison.rows:
        style = "bold red" if r["regression"] else None
        table.add_row(
            r["model"],
            r["runtime"],
            r["provider"],
            r["precision"],
            r["mode"],
            r["shape"],
            str(r["threads"]),
            _ms(r["old_p50_ms"]),
            _ms(r["new_p50_ms"]),
            f"{r['ratio']:.2f}x",
            style=style,
        )
    console.print(table)
    console.print(
        f"{len(comparison.regressions)} regression(s); {comparison.only_new} new row(s) and "
        f"{comparison.only_old} old row(s) without a match",
        highlight=False,
    )
