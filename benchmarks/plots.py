"""The benchmark report as a PNG: four panels, each answering one question a user asks.

This module owns the figure (:func:`build_figure`), its panels, and saving it
(:func:`write_plot`); what the panels share (colours, labels, axes, bars) is in
:mod:`edgelstm.benchmarks.plot_elements`. matplotlib is an optional dependency
(``pip install 'edgelstm[plot]'``), imported only inside the functions that draw, so importing
this module stays cheap; :func:`require_plotting` checks for it before minutes of measuring.
Tables, Markdown, JSON and comparisons live in :mod:`edgelstm.benchmarks.report`.

Example::

    from pathlib import Path
    from edgelstm.benchmarks.plots import write_plot
    from edgelstm.benchmarks.report import load_report

    write_plot(load_report(Path("bench.json")), Path("bench.png"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.benchmarks.plot_elements import (
    SEQUENCE_MARKER,
    STREAMING_MARKER,
    Styles,
    chosen_deployments,
    chosen_label,
    finite,
    finite_positive,
    grouped_bars,
    higher_is_better,
    is_chosen,
    latency,
    legend,
    log_axis,
    most_common,
    not_measured,
    spans_decades,
)
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


def _sequence_shape(document: dict[str, Any], rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(batch, seq) a sequence deployment is judged at: the tuner's when it chose one, else
    the smallest batch and the length measured at the most batch sizes."""
    for d in chosen_deployments(document):
        seq = (d.get("measured") or {}).get("seq")
        if d["mode"] == "sequence" and seq is not None:
            return int(d["batch"]), int(seq)
    return min(r["batch"] for r in rows), int(most_common(rows, "seq", "batch"))


def _panel_batches(
    axis: Axes, rows: Sequence[dict[str, Any]], styles: Styles, seq: int, chosen: Any
) -> None:
    question = "Which artifact is fastest at each batch size?"
    at_seq = [r for r in rows if r["seq"] == seq and finite_positive(r["p50_ms"])]
    if not at_seq:
        not_measured(axis, question, "Not measured: no whole-sequence rows in this report.")
        return
    grouped_bars(
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
    legend(axis, "upper left")


def _panel_lengths(axis: Axes, rows: Sequence[dict[str, Any]], styles: Styles) -> None:
    question = "How does latency grow with sequence length?"
    usable = [r for r in rows if finite_positive(r["p50_ms"])]
    lengths = sorted({r["seq"] for r in usable})
    if not lengths:
        not_measured(axis, question, "Not measured: no whole-sequence rows in this report.")
        return
    if len(lengths) < 2:
        shown = lengths[0]
        not_measured(
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
            marker=SEQUENCE_MARKER,
            color=styles.colour(points[0]),
            label=styles.label(points[0]),
        )
        values += [r["p50_ms"] for r in points]
        drawn += 1
    if not drawn:
        not_measured(
            axis, question, "Not measured: no artifact was timed at two lengths with one batch."
        )
        return
    ticks = sorted({r["seq"] for r in usable if r["batch"] == batch})
    if spans_decades(values) or ticks[-1] / ticks[0] > 3:
        # Log-log: latency proportional to length is a straight line of slope one.
        log_axis(axis, "x")
        log_axis(axis, "y")
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.minorticks_off()
    axis.set_title(question, loc="left", fontweight="bold")
    axis.set_xlabel(f"sequence length (steps), batch {batch}")
    axis.set_ylabel("p50 latency per call (ms)")
    axis.grid(True, which="both", alpha=0.3)
    legend(axis, "upper left")


def _panel_ship(
    axis: Axes,
    document: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    styles: Styles,
    shape: tuple[int, int] | None,
) -> None:
    """Quality against speed at the deployment shape: one point per artifact and mode."""
    question = "Which artifact do I ship?"
    chosen = chosen_deployments(document)
    candidates = _ship_candidates(rows, chosen, shape)
    with_metric = [r for r in candidates if finite(r.get("metric_value"))]
    sized = [r for r in candidates if finite_positive(r.get("size_mb"))]
    points, field = (with_metric, "metric_value") if with_metric else (sized, "size_mb")
    points = [r for r in points if finite_positive(latency(r))]
    if not points:
        not_measured(
            axis,
            question,
            "Not measured: no accuracy or model size in this report.\n"
            "Benchmark with `--eval RUN_DIR` to score every artifact.",
        )
        return
    _ship_points(axis, points, field, styles, chosen)
    if spans_decades([latency(r) for r in points]):
        log_axis(axis, "x")
    if field == "metric_value":
        metric = next((str(r["metric"]) for r in with_metric if r.get("metric")), "metric")
        _quality_axis(axis, document, metric, [r[field] for r in points])
        detail = metric
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
    legend(axis, "best", markerscale=0.6)


def _ship_candidates(
    rows: Sequence[dict[str, Any]],
    chosen: Sequence[dict[str, Any]],
    shape: tuple[int, int] | None,
) -> list[dict[str, Any]]:
    """The rows the ship panel compares: whole sequences at the deployment ``shape``, and
    streaming at the chosen streaming deployment's batch and chunk (else the smallest)."""
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
    return candidates


def _ship_points(
    axis: Axes,
    points: Sequence[dict[str, Any]],
    field: str,
    styles: Styles,
    chosen: Sequence[dict[str, Any]],
) -> None:
    """One marker per artifact and mode (hollow when streaming), and a ring around each
    deployment the tuner chose."""
    for r in points:
        streams = r["mode"] == "streaming"
        axis.plot(
            [latency(r)],
            [r[field]],
            linestyle="none",
            marker=STREAMING_MARKER if streams else SEQUENCE_MARKER,
            markersize=9,
            markerfacecolor="none" if streams else styles.colour(r),
            markeredgecolor=styles.colour(r),
            markeredgewidth=2,
            label=styles.label(r),
        )
    for d in chosen:
        hit = next((r for r in points if is_chosen(r, d)), None)
        if hit is not None:
            axis.plot(
                [latency(hit)],
                [hit[field]],
                linestyle="none",
                marker="o",
                markersize=22,
                markerfacecolor="none",
                markeredgecolor="black",
                markeredgewidth=2,
                label=chosen_label(d),
            )


def _quality_axis(
    axis: Axes, document: dict[str, Any], metric: str, values: Sequence[float]
) -> None:
    """The ship panel's value axis when it shows the task metric: its direction, the
    baselines, and no room above 1 for scores that cannot exceed it."""
    higher = higher_is_better(metric)
    direction = {True: ", higher is better", False: ", lower is better", None: ""}[higher]
    axis.set_ylabel(f"{metric} on the test split{direction}")
    _baseline_lines(axis, document, metric, values)
    low, high = axis.get_ylim()
    if higher and high > 1 >= max(values):
        # Scores that top out at 1 (accuracy, AUROC): no axis room for impossible values.
        axis.set_ylim(low, 1 + 0.02 * (high - low))


def _baseline_lines(
    axis: Axes, document: dict[str, Any], metric: str, values: Sequence[float]
) -> None:
    """The checkpoint's strongest baseline as a dashed line (``benchmark --eval``), and the
    chance level as a dotted one when a point falls short of it or it is within view (a
    far-off chance line would squash the differences between the artifacts). A baseline far
    from every artifact (a transcriber's constant text: error rate 0.86 against 0.01) is
    named in the legend only, for the same reason."""
    baselines = document.get("baselines")
    if not isinstance(baselines, dict) or baselines.get("metric") != metric:
        return
    best = baselines.get("best")
    values_by_name: dict[str, Any] = baselines.get("values") or {}
    value: Any = values_by_name.get(str(best))
    if finite(value):
        label = f"strongest baseline: {best} {value:.4g}"
        style = {"color": "dimgray", "linestyle": "--", "linewidth": 1.2}
        if _far_from(float(value), values):
            axis.plot([], [], label=f"{label} (off the axis)", **style)  # type: ignore[arg-type]
        else:
            axis.axhline(float(value), label=label, **style)  # type: ignore[arg-type]
    if not finite(baselines.get("required")) or not baselines.get("higher_is_better"):
        return  # a lower-is-better metric's bar is its trivial baseline, drawn above
    required = float(baselines["required"])
    low, high = axis.get_ylim()
    if min(values) < required or low <= required <= high:
        label = f"chance: {required:.4g} needed"
        axis.axhline(required, color="firebrick", linestyle=":", linewidth=1.2, label=label)


def _far_from(level: float, values: Sequence[float]) -> bool:
    """Whether a line at ``level`` is more than ten times the artifacts' spread (at least a
    tenth of their size) away from every one of them: drawn, it would flatten them."""
    spread = max(max(values) - min(values), 0.1 * max(abs(v) for v in values), 1e-12)
    return min(abs(level - v) for v in values) > 10 * spread


def _panel_streaming(
    axis: Axes,
    document: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    styles: Styles,
) -> None:
    question = "Streaming: per-frame cost vs the real-time budget"
    usable = [r for r in rows if finite_positive(r.get("frame_p50_ms"))]
    if not usable:
        not_measured(
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
    grouped_bars(
        axis,
        usable,
        styles,
        group=lambda r: (r["batch"], r["chunk"]),
        group_label=group_label,
        value="frame_p50_ms",
        chosen=[d for d in chosen_deployments(document) if d["mode"] == "streaming"],
        floor=budget,
    )
    axis.set_title(question, loc="left", fontweight="bold")
    axis.set_xlabel("streams served per push (batch); bars below the dashed line keep up")
    axis.set_ylabel("p50 compute per frame (ms), lower is better")
    legend(axis, "upper left")


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
    from edgelstm.benchmarks.harness import provider_label

    rows = list(document["rows"])
    styles = Styles(rows, provider_label)
    sequence = [r for r in rows if r["mode"] == "sequence" and r.get("seq") is not None]
    shape = _sequence_shape(document, sequence) if sequence else None
    figure = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    axes = figure.subplots(2, 2)
    _panel_batches(
        axes[0, 0], sequence, styles, shape[1] if shape else 0, chosen_deployments(document)
    )
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
