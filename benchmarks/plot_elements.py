"""The drawing vocabulary the report's panels share: one colour and label per artifact, log
axes with plain tick labels, grouped bars with their values written on, the tuner's choice
outlined, and a panel that says why it is empty. matplotlib is imported inside the functions
that draw (see :mod:`edgelstm.benchmarks.plots`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "LOG_SPAN",
    "SEQUENCE_MARKER",
    "STREAMING_HATCH",
    "STREAMING_MARKER",
    "Styles",
    "chosen_deployments",
    "chosen_label",
    "finite",
    "finite_positive",
    "grouped_bars",
    "higher_is_better",
    "is_chosen",
    "latency",
    "legend",
    "log_axis",
    "most_common",
    "not_measured",
    "spans_decades",
]

#: A ratio max/min at or above this gets a log axis (the values span a decade or more).
LOG_SPAN = 10.0

SEQUENCE_MARKER, STREAMING_MARKER = "o", "D"
STREAMING_HATCH = "//"


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def finite_positive(value: Any) -> bool:
    """Usable on a log axis (missing, NaN and zero latencies are skipped, not drawn at 0)."""
    return finite(value) and value > 0


def legend(axis: Axes, loc: Literal["upper left", "best"], markerscale: float = 1.0) -> None:
    """Small legend, in more columns as it grows so it stays in the headroom above the data."""
    entries = len(axis.get_legend_handles_labels()[0])
    columns = 1 if entries <= 4 else 2 if entries <= 12 else 3
    axis.legend(fontsize=8, loc=loc, ncols=columns, markerscale=markerscale)


def spans_decades(values: Sequence[float]) -> bool:
    return bool(values) and max(values) / min(values) >= LOG_SPAN


def log_axis(axis: Axes, which: Literal["x", "y"]) -> None:
    """Log scale with ticks at 1-2-5 written as plain numbers (0.2, 5, 10), not 10^-1 powers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def chosen_deployments(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The chosen deployment(s): one config (``benchmark --tune``) or one per mode (quickstart)."""
    raw = document.get("deployment")
    if not isinstance(raw, dict):
        return []
    found = [raw] if "mode" in raw else list(raw.values())
    return [d for d in found if isinstance(d, dict) and d.get("mode") in ("sequence", "streaming")]


def is_chosen(row: dict[str, Any], deployment: dict[str, Any]) -> bool:
    """Whether ``row`` is the measurement the tuner turned into ``deployment``."""
    if row["runtime"] != "onnxruntime" or row["mode"] != deployment["mode"]:
        return False
    if Path(str(row.get("path", row["model"]))).name != Path(str(deployment.get("model"))).name:
        return False
    session = deployment.get("session") or {}
    providers = session.get("providers") or [row["provider"]]
    measured = deployment.get("measured") or {}
    return (
        row["provider"] == providers[0]
        and row["batch"] == deployment.get("batch", row["batch"])
        and row["threads"] == (session.get("intra_op_threads") or row["threads"])
        and bool(row.get("cuda_graphs")) == bool(session.get("cuda_graphs"))
        and (
            row.get("chunk") == deployment.get("chunk", row.get("chunk"))
            if row["mode"] == "streaming"
            else row.get("seq") == measured.get("seq", row.get("seq"))
        )
    )


class Styles:
    """One colour per artifact (model on a provider with its session setup) in every panel;
    the mode changes only the marker, line style and hatch, so PyTorch's sequence and
    streaming rows share a colour and a streaming row never passes for a sequence one."""

    def __init__(
        self, rows: Sequence[dict[str, Any]], provider: Callable[[dict[str, Any]], str]
    ) -> None:
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        self._provider = provider  # the table's wording, so legend and table name rows alike
        keys = list(dict.fromkeys(self._artifact(r) for r in rows))
        cmap = colormaps["tab10" if len(keys) <= 10 else "tab20"]
        self._colours = {key: to_hex(cmap(i % cmap.N)) for i, key in enumerate(keys)}
        # Name the provider and thread count only when they tell rows apart.
        self._providers = len({self._provider(r) for r in rows}) > 1
        self._threads = len({r["threads"] for r in rows}) > 1

    def _artifact(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return (
            row["model"],
            row["runtime"],
            self._provider(row),
            row["threads"],
            bool(row.get("cuda_graphs")),
        )

    def colour(self, row: dict[str, Any]) -> str:
        return self._colours[self._artifact(row)]

    def label(self, row: dict[str, Any]) -> str:
        text = str(row["model"])
        if str(row["precision"]).lower() not in text.lower():
            text += f" [{row['precision']}]"
        if self._providers:
            text += f" on {self._provider(row)}"
        if self._threads:
            text += f", {row['threads']} thr"
        if row.get("cuda_graphs"):
            text += " + CUDA graphs"
        if row["mode"] == "streaming":
            text += " (streaming)"
        return text

    def series(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """What one line or one bar colour stands for: the artifact in one mode."""
        return (*self._artifact(row), row["mode"])


def not_measured(axis: Axes, question: str, message: str) -> None:
    """An empty panel that says why, instead of a blank frame or a lone dot."""
    axis.set_title(question, loc="left", fontweight="bold")
    axis.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        wrap=True,
        fontsize=10,
        color="0.35",
        transform=axis.transAxes,
    )
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_color("0.85")


def most_common(rows: Sequence[dict[str, Any]], field: str, across: str) -> Any:
    """The ``field`` value measured at the most ``across`` values (first measured wins ties)."""
    seen: dict[Any, set[Any]] = {}
    for r in rows:
        seen.setdefault(r[field], set()).add(r[across])
    return max(seen, key=lambda value: len(seen[value]))


def chosen_label(deployment: dict[str, Any]) -> str:
    return f"chosen: {deployment.get('file') or deployment.get('model')} ({deployment['mode']})"


def grouped_bars(
    axis: Axes,
    rows: Sequence[dict[str, Any]],
    styles: Styles,
    *,
    group: Callable[[dict[str, Any]], Any],
    group_label: Callable[[Any], str],
    value: str,
    chosen: Sequence[dict[str, Any]] = (),
    floor: float | None = None,
) -> None:
    """One cluster of bars per group, one bar colour per series; the lowest bar of each
    cluster carries its value, so the answer is readable without a ruler. ``floor`` (a
    budget line) joins the values when deciding on a log axis and on headroom."""
    groups = sorted({group(r) for r in rows})
    series = list(dict.fromkeys(styles.series(r) for r in rows))
    width = 0.8 / len(series)
    values: list[float] = []
    best: dict[Any, tuple[float, float]] = {}
    outlines: list[tuple[float, float, dict[str, Any]]] = []
    for index, key in enumerate(series):
        mine = {group(r): r for r in rows if styles.series(r) == key}
        first = next(iter(mine.values()))
        xs, heights = [], []
        for position, g in enumerate(groups):
            r = mine.get(g)
            if r is None:
                continue
            x = position - 0.4 + width * (index + 0.5)
            xs.append(x)
            heights.append(float(r[value]))
            if g not in best or r[value] < best[g][1]:
                best[g] = (x, float(r[value]))
            outlines += [(x, float(r[value]), d) for d in chosen if is_chosen(r, d)]
        axis.bar(
            xs,
            heights,
            width=width * 0.92,
            color=styles.colour(first),
            hatch=STREAMING_HATCH if first["mode"] == "streaming" else None,
            edgecolor="black",
            linewidth=0.5,
            label=styles.label(first),
        )
        values += heights
    # The tuner's pick gets its own outline and legend entry, not a restyled series.
    for x, height, d in outlines:
        axis.bar(
            [x],
            [height],
            width=width * 0.92,
            fill=False,
            edgecolor="black",
            linewidth=2.5,
            label=chosen_label(d),
        )
    axis.set_xticks(range(len(groups)), [group_label(g) for g in groups])
    scale_and_label(axis, values + ([floor] if floor is not None else []), list(best.values()))


def scale_and_label(
    axis: Axes, extent: Sequence[float], lowest: Sequence[tuple[float, float]]
) -> None:
    """A bar panel's value axis over ``extent`` (log when it spans decades) and the value
    written over each cluster's ``lowest`` bar ``(x, height)``."""
    log = spans_decades(extent)
    if log:
        log_axis(axis, "y")
    for x, height in lowest:
        axis.annotate(
            f"{height:.3g} ms",
            (x, height),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
        )
    # Headroom above the tallest bar (or the budget line) keeps the legend off the data; on a
    # log axis the floor sits below the shortest bar so that bar stays visible.
    top = max(extent)
    if log:
        axis.set_ylim(min(extent) / 2, top * 8)
    else:
        axis.set_ylim(0, top * 1.6)
    axis.grid(True, axis="y", which="both", alpha=0.3)
    axis.set_axisbelow(True)


def latency(row: dict[str, Any]) -> Any:
    """Per call for whole sequences, per frame for streaming: what each deployment promises."""
    return row.get("frame_p50_ms") if row["mode"] == "streaming" else row["p50_ms"]


def higher_is_better(metric: str) -> bool | None:
    """The metric's direction from the task gates (None for a metric they lack)."""
    from edgelstm.tasks import gate_for_metric

    gate = gate_for_metric(metric)
    return None if gate is None else gate.higher_is_better
