"""The benchmark report as a PNG: four panels, each answering one question a user asks.

This module owns the figure (:func:`build_figure`), its panels and styles, and saving it
(:func:`write_plot`). matplotlib is an optional dependency (``pip install 'edgelstm[plot]'``),
imported only inside the functions that draw, so importing this module stays cheap;
:func:`require_plotting` checks for it before minutes of measuring. Tables, Markdown, JSON
and comparisons live in :mod:`edgelstm.benchmarks.report`.

Example::

    from pathlib import Path
    from edgelstm.benchmarks.plots import write_plot
    from edgelstm.benchmarks.report import load_report

    write_plot(load_report(Path("bench.json")), Path("bench.png"))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgelstm.extras import missing_dependency
from edgelstm.fileio import atomic_file

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["build_figure", "require_plotting", "write_plot"]


def require_plotting() -> None:
    """Fail early (before minutes of measuring) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise missing_dependency(exc, "--plot") from exc


#: Saved size of the PNG: 2 x 2 panels that stay readable when a README shows it at ~900 px.
_FIGSIZE = (14.0, 10.0)
_DPI = 100

#: A ratio max/min at or above this gets a log axis (the values span a decade or more).
_LOG_SPAN = 10.0

_SEQUENCE_MARKER, _STREAMING_MARKER = "o", "D"
_STREAMING_HATCH = "//"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite_positive(value: Any) -> bool:
    """Usable on a log axis (missing, NaN and zero latencies are skipped, not drawn at 0)."""
    return _finite(value) and value > 0


def _legend(axis: Axes, loc: Literal["upper left", "best"], markerscale: float = 1.0) -> None:
    """Small legend, in more columns as it grows so it stays in the headroom above the data."""
    entries = len(axis.get_legend_handles_labels()[0])
    columns = 1 if entries <= 4 else 2 if entries <= 12 else 3
    axis.legend(fontsize=8, loc=loc, ncols=columns, markerscale=markerscale)


def _spans_decades(values: Sequence[float]) -> bool:
    return bool(values) and max(values) / min(values) >= _LOG_SPAN


def _log_axis(axis: Axes, which: Literal["x", "y"]) -> None:
    """Log scale with ticks at 1-2-5 written as plain numbers (0.2, 5, 10), not 10^-1 powers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def _deployments(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The chosen deployment(s): one config (``benchmark --tune``) or one per mode (quickstart)."""
    raw = document.get("deployment")
    if not isinstance(raw, dict):
        return []
    found = [raw] if "mode" in raw else list(raw.values())
    return [d for d in found if isinstance(d, dict) and d.get("mode") in ("sequence", "streaming")]


def _is_chosen(row: dict[str, Any], deployment: dict[str, Any]) -> bool:
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


class _Styles:
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


def _not_measured(axis: Axes, question: str, message: str) -> None:
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


def _most_common(rows: Sequence[dict[str, Any]], field: str, across: str) -> Any:
    """The ``field`` value measured at the most ``across`` values (first measured wins ties)."""
    seen: dict[Any, set[Any]] = {}
    for r in rows:
        seen.setdefault(r[field], set()).add(r[across])
    return max(seen, key=lambda value: len(seen[value]))


def _chosen_label(deployment: dict[str, Any]) -> str:
    return f"chosen: {deployment.get('file') or deployment.get('model')} ({deployment['mode']})"


def _grouped_bars(
    axis: Axes,
    rows: Sequence[dict[str, Any]],
    styles: _Styles,
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
            outlines += [(x, float(r[value]), d) for d in chosen if _is_chosen(r, d)]
        axis.bar(
            xs,
            heights,
            width=width * 0.92,
            color=styles.colour(first),
            hatch=_STREAMING_HATCH if first["mode"] == "streaming" else None,
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
            label=_chosen_label(d),
        )
    axis.set_xticks(range(len(groups)), [group_label(g) for g in groups])
    extent = values + ([floor] if floor is not None else [])
    log = _spans_decades(extent)
    if log:
        _log_axis(axis, "y")
    for x, height in best.values():
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


def _sequence_shape(document: dict[str, Any], rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(batch, seq) a sequence deployment is judged at: the tuner's when it chose one, else
    the smallest batch and the length measured at the most batch sizes."""
    for d in _deployments(document):
        seq = (d.get("measured") or {}).get("seq")
        if d["mode"] == "sequence" and seq is not None:
            return int(d["batch"]), int(seq)
    return min(r["batch"] for r in rows), int(_most_common(rows, "seq", "batch"))


def _panel_batches(
    axis: Axes, rows: Sequence[dict[str, Any]], styles: _Styles, seq: int, chosen: Any
) -> None:
    question = "Which artifact is fastest at each batch size?"
    at_seq = [r for r in rows if r["seq"] == seq and _finite_positive(r["p50_ms"])]
    if not at_seq:
        _not_measured(axis, question, "Not measured: no whole-sequence rows in this report.")
        return
    _grouped_bars(
        axis,
        at_seq,
        styles,
        group=lambda r: r["batch"],
        group_label=lambda b: f"batch {b}",
        value="p50_ms",
        chosen=[d for d in chosen if d["mode"] == "sequence"],
    )
    axis.set_title(question, loc="left", fontweight="bold")
    axis.set_xlabel(f"sequences per call, each {seq} steps long")
    axis.set_ylabel("p50 latency per call (ms), lower is better")
    _legend(axis, "upper left")


def _panel_lengths(axis: Axes, rows: Sequence[dict[str, Any]], styles: _Styles) -> None:
    question = "How does latency grow with sequence length?"
    usable = [r for r in rows if _finite_positive(r["p50_ms"])]
    lengths = sorted({r["seq"] for r in usable})
    if not lengths:
        _not_measured(axis, question, "Not measured: no whole-sequence rows in this report.")
        return
    if len(lengths) < 2:
        shown = lengths[0]
        _not_measured(
            axis,
            question,
            f"Not measured: every row has the same length ({shown} steps).\n"
            f"Rerun with e.g. `edgelstm benchmark --seq {shown},{2 * shown},{4 * shown}`.",
        )
        return
    batch = min(
        {r["batch"] for r in usable},
        key=lambda b: (-len({r["seq"] for r in usable if r["batch"] == b}), b),
    )
    lines: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in usable:
        if r["batch"] == batch:
            lines.setdefault(styles.series(r), []).append(r)
    drawn = 0
    values: list[float] = []
    for points in lines.values():
        points.sort(key=lambda r: r["seq"])
        if len(points) < 2:
            continue  # one length is a dot, not a trend
        axis.plot(
            [r["seq"] for r in points],
            [r["p50_ms"] for r in points],
            marker=_SEQUENCE_MARKER,
            color=styles.colour(points[0]),
            label=styles.label(points[0]),
        )
        values += [r["p50_ms"] for r in points]
        drawn += 1
    if not drawn:
        _not_measured(
            axis, question, "Not measured: no artifact was timed at two lengths with one batch."
        )
        return
    ticks = sorted({r["seq"] for r in usable if r["batch"] == batch})
    if _spans_decades(values) or ticks[-1] / ticks[0] > 3:
        # Log-log: latency proportional to length is a straight line of slope one.
        _log_axis(axis, "x")
        _log_axis(axis, "y")
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.minorticks_off()
    axis.set_title(question, loc="left", fontweight="bold")
    axis.set_xlabel(f"sequence length (steps), batch {batch}")
    axis.set_ylabel("p50 latency per call (ms)")
    axis.grid(True, which="both", alpha=0.3)
    _legend(axis, "upper left")


def _panel_ship(
    axis: Axes,
    document: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    styles: _Styles,
    shape: tuple[int, int] | None,
) -> None:
    """Quality against speed at the deployment shape: one point per artifact and mode."""
    question = "Which artifact do I ship?"
    chosen = _deployments(document)
    candidates = []
    if shape is not None:
        batch, seq = shape
        candidates += [
            r for r in rows if r["mode"] == "sequence" and r["batch"] == batch and r["seq"] == seq
        ]
    streaming = [r for r in rows if r["mode"] == "streaming"]
    if streaming:
        target = next((d for d in chosen if d["mode"] == "streaming"), None)
        batch = int(target["batch"]) if target else min(r["batch"] for r in streaming)
        at_batch = [r for r in streaming if r["batch"] == batch]
        chunk = target.get("chunk") if target else min(r["chunk"] for r in at_batch)
        candidates += [r for r in at_batch if r["chunk"] == chunk]
    with_metric = [r for r in candidates if _finite(r.get("metric_value"))]
    sized = [r for r in candidates if _finite_positive(r.get("size_mb"))]
    points, field = (with_metric, "metric_value") if with_metric else (sized, "size_mb")
    points = [r for r in points if _finite_positive(_latency(r))]
    if not points:
        _not_measured(
            axis,
            question,
            "Not measured: no accuracy or model size in this report.\n"
            "Benchmark with `--eval RUN_DIR` to score every artifact.",
        )
        return
    for r in points:
        streams = r["mode"] == "streaming"
        axis.plot(
            [_latency(r)],
            [r[field]],
            linestyle="none",
            marker=_STREAMING_MARKER if streams else _SEQUENCE_MARKER,
            markersize=9,
            markerfacecolor="none" if streams else styles.colour(r),
            markeredgecolor=styles.colour(r),
            markeredgewidth=2,
            label=styles.label(r),
        )
    for d in chosen:
        hit = next((r for r in points if _is_chosen(r, d)), None)
        if hit is not None:
            axis.plot(
                [_latency(hit)],
                [hit[field]],
                linestyle="none",
                marker="o",
                markersize=22,
                markerfacecolor="none",
                markeredgecolor="black",
                markeredgewidth=2,
                label=_chosen_label(d),
            )
    if _spans_decades([_latency(r) for r in points]):
        _log_axis(axis, "x")
    metric = next((str(r["metric"]) for r in with_metric if r.get("metric")), "metric")
    if field == "metric_value":
        higher = _higher_is_better(metric)
        direction = {True: ", higher is better", False: ", lower is better", None: ""}[higher]
        axis.set_ylabel(f"{metric} on the test split{direction}")
        detail = metric
        _baseline_lines(axis, document, metric, [r[field] for r in points])
        low, high = axis.get_ylim()
        best = max(r[field] for r in points)
        if higher and high > 1 >= best:
            # Scores that top out at 1 (accuracy, AUROC): no axis room for impossible values.
            axis.set_ylim(low, 1 + 0.02 * (high - low))
    else:
        axis.set_ylabel("model size (MB), lower is better")
        detail = "size"
    axis.set_title(f"{question} ({detail} vs latency)", loc="left", fontweight="bold")
    where = []
    if any(r["mode"] == "sequence" for r in points) and shape is not None:
        where.append(f"per call of batch {shape[0]} x {shape[1]} steps")
    if any(r["mode"] == "streaming" for r in points):
        where.append("per frame when streaming")
    axis.set_xlabel("p50 latency (ms), " + "; ".join(where) + ", lower is better")
    axis.grid(True, which="both", alpha=0.3)
    _legend(axis, "best", markerscale=0.6)


def _baseline_lines(
    axis: Axes, document: dict[str, Any], metric: str, values: Sequence[float]
) -> None:
    """The checkpoint's strongest baseline as a dashed line (``benchmark --eval``), and the
    chance level as a dotted one when a point falls short of it or it is within view (a
    far-off chance line would squash the differences between the artifacts)."""
    baselines = document.get("baselines")
    if not isinstance(baselines, dict) or baselines.get("metric") != metric:
        return
    best = baselines.get("best")
    values_by_name: dict[str, Any] = baselines.get("values") or {}
    value: Any = values_by_name.get(str(best))
    if _finite(value):
        label = f"strongest baseline: {best} {value:.4g}"
        axis.axhline(float(value), color="dimgray", linestyle="--", linewidth=1.2, label=label)
    if not _finite(baselines.get("required")) or not baselines.get("higher_is_better"):
        return  # a lower-is-better metric's bar is its trivial baseline, drawn above
    required = float(baselines["required"])
    low, high = axis.get_ylim()
    if min(values) < required or low <= required <= high:
        label = f"chance: {required:.4g} needed"
        axis.axhline(required, color="firebrick", linestyle=":", linewidth=1.2, label=label)


def _latency(row: dict[str, Any]) -> Any:
    """Per call for whole sequences, per frame for streaming: what each deployment promises."""
    return row.get("frame_p50_ms") if row["mode"] == "streaming" else row["p50_ms"]


def _higher_is_better(metric: str) -> bool | None:
    """The metric's direction from the task gates (None for a metric they lack)."""
    from edgelstm.tasks import gate_for_metric

    gate = gate_for_metric(metric)
    return None if gate is None else gate.higher_is_better


def _panel_streaming(
    axis: Axes,
    document: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    styles: _Styles,
) -> None:
    question = "Streaming: per-frame cost vs the real-time budget"
    usable = [r for r in rows if _finite_positive(r.get("frame_p50_ms"))]
    if not usable:
        _not_measured(
            axis,
            question,
            "Not measured: no streaming rows in this report.\n"
            "Export with `--streaming` and benchmark with `--stream`.",
        )
        return
    rate = float(
        usable[0].get("frame_rate_hz") or document.get("plan", {}).get("frame_rate") or 100.0
    )
    budget = 1000.0 / rate
    chunks = len({r["chunk"] for r in usable}) > 1

    def group_label(g: tuple[int, int]) -> str:
        text = f"{g[0]} stream{'s' if g[0] != 1 else ''}"
        return text + (f"\n{g[1]} frame(s)/push" if chunks else "")

    axis.axhline(
        budget,
        color="crimson",
        linestyle="--",
        linewidth=1.5,
        label=f"real-time budget: {budget:.3g} ms per frame at {rate:g} Hz",
    )
    _grouped_bars(
        axis,
        usable,
        styles,
        group=lambda r: (r["batch"], r["chunk"]),
        group_label=group_label,
        value="frame_p50_ms",
        chosen=[d for d in _deployments(document) if d["mode"] == "streaming"],
        floor=budget,
    )
    axis.set_title(question, loc="left", fontweight="bold")
    axis.set_xlabel("streams served per push (batch); bars below the dashed line keep up")
    axis.set_ylabel("p50 compute per frame (ms), lower is better")
    _legend(axis, "upper left")


def build_figure(document: dict[str, Any], *, title: str = "Benchmark") -> Figure:
    """The report's figure, four panels that each answer one question a user asks.

    Which artifact is fastest per batch size; how latency grows with sequence length; which
    artifact to ship (quality or size against latency, the tuner's choice ringed); whether
    streaming keeps up with the sensor. A panel whose data the report lacks says so instead
    of drawing a lone dot. Returned unsaved so callers (and tests) can inspect it::

        >>> figure = build_figure(load_report(Path("bench.json")))  # doctest: +SKIP
        >>> [axis.get_title(loc="left") for axis in figure.axes]  # doctest: +SKIP
    """
    require_plotting()
    # A bare Figure, not pyplot: no global figure registry to leak into and no GUI backend.
    from matplotlib.figure import Figure

    # Imported here, not at the top: report imports this module (write_report_files).
    from edgelstm.benchmarks.report import provider_label

    rows = list(document["rows"])
    styles = _Styles(rows, provider_label)
    sequence = [r for r in rows if r["mode"] == "sequence" and r.get("seq") is not None]
    shape = _sequence_shape(document, sequence) if sequence else None
    figure = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    axes = figure.subplots(2, 2)
    _panel_batches(axes[0, 0], sequence, styles, shape[1] if shape else 0, _deployments(document))
    _panel_lengths(axes[0, 1], sequence, styles)
    _panel_ship(axes[1, 0], document, rows, styles, shape)
    _panel_streaming(axes[1, 1], document, [r for r in rows if r["mode"] == "streaming"], styles)
    env = document.get("environment", {})
    cpu = env.get("cpu", {}).get("model")
    gpus = ", ".join(g.get("name", "?") for g in env.get("gpus", []))
    where = ", ".join(
        part
        for part in (
            f"{cpu} ({env.get('cpu_count')} cores)" if cpu else "",
            f"GPU {gpus}" if gpus else "",
        )
        if part
    )
    figure.suptitle(
        f"{title}: p50 latency" + (f" on {where}" if where else ""),
        fontsize=13,
    )
    return figure


def write_plot(
    document: dict[str, Any], path: Path, *, overwrite: bool = False, title: str = "Benchmark"
) -> None:
    """Save :func:`build_figure` as a PNG, atomically (a kill leaves no half-written file)."""
    figure = build_figure(document, title=title)
    with atomic_file(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
