"""The report PNG (``edgelstm benchmark --plot``, the quickstart's report.png), panel by panel.

Each panel answers one question; these tests read the matplotlib objects :func:`build_figure`
returns for tiny synthetic reports (no timing, no training), so they check what a reader
sees: lines where several lengths were measured, a legend instead of per-point labels,
streaming rows marked, the tuner's choice ringed, and "Not measured" where data is missing.
"""

from __future__ import annotations

import itertools
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from edgelstm.benchmarks.harness import BENCHMARK_SCHEMA
from edgelstm.benchmarks.plots import build_figure, write_plot
from edgelstm.benchmarks.quickstart import sweep_lengths
from edgelstm.errors import OutputExistsError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

BATCHES = "Which artifact is fastest at each batch size?"
LENGTHS = "How does latency grow with sequence length?"
SHIP = "Which artifact do I ship?"
STREAMING = "Streaming: per-frame cost vs the real-time budget"


# --------------------------------------------------------------------------------------------
# tiny synthetic reports


def _row(
    model: str,
    *,
    mode: str = "sequence",
    batch: int = 1,
    seq: int = 26,
    chunk: int = 1,
    p50: float = 1.0,
    runtime: str = "onnxruntime",
    provider: str = "cpu",
    requested: str | None = None,
    precision: str = "fp32",
    accuracy: float | None = 0.97,
    size_mb: float | None = 0.8,
    threads: int = 1,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": model,
        "path": f"/out/{model}",
        "runtime": runtime,
        "provider": provider,
        "requested_provider": requested or provider,
        "precision": precision,
        "mode": mode,
        "batch": batch,
        "seq": seq if mode == "sequence" else None,
        "chunk": chunk if mode == "streaming" else None,
        "threads": threads,
        "cuda_graphs": False,
        "p50_ms": p50,
        "p90_ms": p50 * 1.2,
        "p99_ms": p50 * 1.5,
        "mean_ms": p50 * 1.1,
        "throughput_per_s": batch * 1000.0 / p50 if p50 else math.inf,
        "size_mb": size_mb if runtime == "onnxruntime" else None,
    }
    if accuracy is not None:
        row["metric"], row["metric_value"] = "accuracy", accuracy
    if mode == "streaming":
        row["frame_p50_ms"] = p50 / chunk
        row["frame_rate_hz"] = 100.0
        row["real_time_factor"] = row["frame_p50_ms"] / 10.0
    return row


def _document(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "schema": BENCHMARK_SCHEMA,
        "environment": {"cpu": {"model": "Test CPU"}, "cpu_count": 2, "gpus": []},
        "plan": {"frame_rate": 100.0},
        "rows": rows,
        "skipped": [],
        **extra,
    }


#: (model, runtime, precision, p50 per step in ms): what the quickstart measures.
SEQUENCE_ARTIFACTS = (
    ("model.onnx", "onnxruntime", "fp32", 0.02),
    ("model.int8.onnx", "onnxruntime", "int8", 0.012),
    ("pytorch eager fp32", "torch", "fp32", 0.05),
)
STREAM_ARTIFACTS = (
    ("model.stream.onnx", "onnxruntime", "fp32", 0.10),
    ("model.stream.int8.onnx", "onnxruntime", "int8", 0.09),
    ("pytorch eager fp32", "torch", "fp32", 0.55),
)


def _quickstart_like(lengths: tuple[int, ...] = (15, 26, 104)) -> dict[str, Any]:
    """Batches 1 and 32 at the longest data length, ``lengths`` at batch 1, streaming rows."""
    rows = []
    for (model, runtime, precision, per_step), batch in itertools.product(
        SEQUENCE_ARTIFACTS, (1, 32)
    ):
        rows.append(
            _row(
                model,
                runtime=runtime,
                precision=precision,
                batch=batch,
                p50=per_step * 26 * (8 if batch == 32 else 1),
            )
        )
    for (model, runtime, precision, per_step), seq in itertools.product(
        SEQUENCE_ARTIFACTS, lengths
    ):
        if seq != 26:
            rows.append(
                _row(model, runtime=runtime, precision=precision, seq=seq, p50=per_step * seq)
            )
    for (model, runtime, precision, frame), batch in itertools.product(STREAM_ARTIFACTS, (1, 32)):
        rows.append(
            _row(
                model,
                mode="streaming",
                runtime=runtime,
                precision=precision,
                batch=batch,
                p50=frame * (3 if batch == 32 else 1),
            )
        )
    return _document(rows)


def _deployment(model: str, mode: str, file: str, *, seq: int | None = 26) -> dict[str, Any]:
    """A deployment config as ``DeploymentConfig.to_json`` writes it (plus the quickstart's
    ``file``)."""
    return {
        "schema": "edgelstm.deploy/1",
        "model": model,
        "mode": mode,
        "batch": 1,
        "chunk": 1 if mode == "streaming" else None,
        "session": {"providers": ["cpu"], "intra_op_threads": 1, "cuda_graphs": False},
        "measured": {"seq": seq if mode == "sequence" else None},
        "reason": "fastest in budget",
        "file": file,
    }


# --------------------------------------------------------------------------------------------
# reading the figure


def _panel(figure: Figure, question: str) -> Axes:
    (axis,) = [a for a in figure.axes if a.get_title(loc="left").startswith(question)]
    return axis


def _says_not_measured(axis: Axes) -> bool:
    return any(t.get_text().startswith("Not measured") for t in axis.texts)


def _bars(axis: Axes) -> dict[str, BarContainer]:
    """Bar series by legend label (the tuner's outline included)."""
    return {_label(c): c for c in axis.containers if isinstance(c, BarContainer)}


def _legend_labels(axis: Axes) -> list[str]:
    legend = axis.get_legend()
    assert legend is not None, axis.get_title(loc="left")
    return [t.get_text() for t in legend.get_texts()]


def _lay_out(figure: Figure) -> None:
    """Draw once (Agg, as when saving), so extents are the ones the PNG has."""
    FigureCanvasAgg(figure)
    figure.draw_without_rendering()


def _label(artist: Any) -> str:
    return str(artist.get_label())


def _xs(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_xdata(), dtype=float)]


def _ys(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_ydata(), dtype=float)]


# --------------------------------------------------------------------------------------------
# the four panels


def test_each_panel_is_titled_by_the_question_it_answers() -> None:
    figure = build_figure(_quickstart_like(), title="edgelstm quickstart")
    titles = [a.get_title(loc="left") for a in figure.axes]
    assert titles[0] == BATCHES and titles[1] == LENGTHS and titles[3] == STREAMING
    assert titles[2] == f"{SHIP} (accuracy vs latency)"
    assert figure.get_suptitle().startswith("edgelstm quickstart: p50 latency on Test CPU")
    assert not any(_says_not_measured(a) for a in figure.axes)


def test_length_panel_has_one_line_per_artifact_through_every_length() -> None:
    figure = build_figure(_quickstart_like(lengths=(15, 26, 104)))
    axis = _panel(figure, LENGTHS)
    lines = {_label(line): line for line in axis.get_lines()}
    assert set(lines) == {"model.onnx [fp32]", "model.int8.onnx", "pytorch eager fp32"}
    for line in lines.values():
        assert _xs(line) == [15, 26, 104]
        assert line.get_linestyle() == "-" and line.get_marker() == "o"
    assert "batch 1" in axis.get_xlabel()  # batch 32 was measured at one length only
    assert [t.get_text() for t in axis.get_xticklabels()] == ["15", "26", "104"]
    assert _legend_labels(axis) == list(lines)


def test_single_length_report_says_not_measured_instead_of_drawing_dots() -> None:
    figure = build_figure(_quickstart_like(lengths=(26,)))
    axis = _panel(figure, LENGTHS)
    assert len(axis.get_lines()) == 0 and len(axis.collections) == 0
    assert _says_not_measured(axis)
    (message,) = [t.get_text() for t in axis.texts]
    assert "same length (26 steps)" in message and "--seq 26,52,104" in message


def test_artifact_measured_at_one_length_is_left_out_of_the_length_panel() -> None:
    document = _quickstart_like(lengths=(15, 26, 104))
    document["rows"].append(_row("late.onnx", p50=0.7))  # only at the deployment length
    lines = [_label(line) for line in _panel(build_figure(document), LENGTHS).get_lines()]
    assert "late.onnx [fp32]" not in lines and len(lines) == 3


def test_batch_panel_compares_sequence_artifacts_and_labels_only_the_fastest() -> None:
    figure = build_figure(_quickstart_like())
    axis = _panel(figure, BATCHES)
    bars = _bars(axis)
    assert set(bars) == {"model.onnx [fp32]", "model.int8.onnx", "pytorch eager fp32"}
    assert all(len(c.patches) == 2 for c in bars.values())  # batch 1 and batch 32
    assert [t.get_text() for t in axis.get_xticklabels()] == ["batch 1", "batch 32"]
    assert "26 steps" in axis.get_xlabel()
    # One value label per batch size, on the fastest bar (int8: 0.312 ms and 2.5 ms).
    assert sorted(t.get_text() for t in axis.texts) == ["0.312 ms", "2.5 ms"]
    assert not any("streaming" in label for label in bars)


def test_ship_panel_has_a_legend_and_no_per_point_labels() -> None:
    figure = build_figure(_quickstart_like())
    axis = _panel(figure, SHIP)
    assert len(axis.texts) == 0  # the old panel's overlapping annotations are gone
    points = {_label(line): line for line in axis.get_lines()}
    assert _legend_labels(axis) == list(points)
    # One point per artifact and mode at the deployment shape (batch 1, 26 steps).
    assert all(len(_xs(line)) == 1 for line in points.values())
    assert _xs(points["model.int8.onnx"]) == [pytest.approx(0.012 * 26)]
    # Streaming rows: per-frame latency, hollow diamonds, "(streaming)" in the legend.
    stream = points["model.stream.int8.onnx (streaming)"]
    assert stream.get_marker() == "D" and stream.get_markerfacecolor() == "none"
    assert _xs(stream) == [pytest.approx(0.09)]
    assert points["model.int8.onnx"].get_marker() == "o"
    assert "per frame when streaming" in axis.get_xlabel()
    assert axis.get_ylabel() == "accuracy on the test split, higher is better"


def test_ship_panel_rings_the_chosen_deployments() -> None:
    document = _quickstart_like()
    document["deployment"] = {
        "sequence": _deployment("model.int8.onnx", "sequence", "deploy.json"),
        "streaming": _deployment("model.stream.onnx", "streaming", "deploy.stream.json"),
    }
    figure = build_figure(document)
    rings = {
        _label(line): _xs(line)[0]
        for line in _panel(figure, SHIP).get_lines()
        if _label(line).startswith("chosen")
    }
    assert rings.keys() == {
        "chosen: deploy.json (sequence)",
        "chosen: deploy.stream.json (streaming)",
    }
    assert rings["chosen: deploy.json (sequence)"] == pytest.approx(0.012 * 26)
    assert rings["chosen: deploy.stream.json (streaming)"] == pytest.approx(0.10)
    # The bar panels outline the same choices, each with its own legend entry.
    assert "chosen: deploy.json (sequence)" in _bars(_panel(figure, BATCHES))
    assert "chosen: deploy.stream.json (streaming)" in _bars(_panel(figure, STREAMING))


def test_benchmark_tune_deployment_is_ringed_too() -> None:
    """``benchmark --tune`` stores one config (no ``file``), not one per mode."""
    document = _quickstart_like()
    document["deployment"] = _deployment("model.onnx", "sequence", "unused")
    del document["deployment"]["file"]
    labels = [_label(line) for line in _panel(build_figure(document), SHIP).get_lines()]
    assert "chosen: model.onnx (sequence)" in labels


def test_streaming_panel_hatches_bars_and_draws_the_real_time_budget() -> None:
    figure = build_figure(_quickstart_like())
    axis = _panel(figure, STREAMING)
    bars = _bars(axis)
    assert set(bars) == {
        "model.stream.onnx [fp32] (streaming)",
        "model.stream.int8.onnx (streaming)",
        "pytorch eager fp32 (streaming)",
    }
    assert all(p.get_hatch() == "//" for c in bars.values() for p in c.patches)
    (budget,) = [line for line in axis.get_lines() if "budget" in _label(line)]
    assert _ys(budget) == [10.0, 10.0]  # 1000 ms / 100 Hz
    assert _label(budget) == "real-time budget: 10 ms per frame at 100 Hz"
    assert axis.get_yscale() == "log"  # 0.09 ms bars against a 10 ms budget
    assert [t.get_text() for t in axis.get_xticklabels()] == ["1 stream", "32 streams"]


def test_one_colour_per_artifact_in_every_panel() -> None:
    figure = build_figure(_quickstart_like())
    colours: dict[str, set[str]] = {}

    def note(label: str, colour: Any) -> None:
        base = label.removesuffix(" (streaming)")
        colours.setdefault(base, set()).add(to_hex(colour))

    for axis in (_panel(figure, BATCHES), _panel(figure, STREAMING)):
        for label, container in _bars(axis).items():
            if not label.startswith(("chosen", "real-time")):
                note(label, container.patches[0].get_facecolor())
    for line in _panel(figure, LENGTHS).get_lines():
        note(_label(line), line.get_color())
    for line in _panel(figure, SHIP).get_lines():
        if not _label(line).startswith("chosen"):
            note(_label(line), line.get_markeredgecolor())
    assert all(len(found) == 1 for found in colours.values()), colours
    # PyTorch's sequence and streaming rows are one artifact: one colour, told apart by style.
    assert "pytorch eager fp32" in colours
    distinct = [next(iter(found)) for found in colours.values()]
    assert len(set(distinct)) == len(distinct)


def test_no_text_overlaps_and_legends_stay_off_the_bars() -> None:
    """Readable at the saved size: value labels do not collide, legends sit in headroom."""
    document = _quickstart_like()
    document["deployment"] = {
        "sequence": _deployment("model.int8.onnx", "sequence", "deploy.json"),
        "streaming": _deployment("model.stream.onnx", "streaming", "deploy.stream.json"),
    }
    figure = build_figure(document)
    _lay_out(figure)
    for axis in figure.axes:
        boxes = [t.get_window_extent() for t in axis.texts]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), axis.get_title(loc="left")
    for question in (BATCHES, STREAMING):
        axis = _panel(figure, question)
        legend = axis.get_legend()
        assert legend is not None
        box = legend.get_window_extent()
        for patch in axis.patches:
            assert not box.overlaps(patch.get_window_extent()), question
        for text in axis.texts:
            assert not box.overlaps(text.get_window_extent()), question


# --------------------------------------------------------------------------------------------
# arbitrary benchmark reports: each panel degrades on its own


def test_plain_benchmark_one_model_one_shape_no_torch_no_accuracy() -> None:
    """``edgelstm benchmark m.onnx --plot``: one bar, size instead of accuracy, the rest say so."""
    figure = build_figure(_document([_row("m.onnx", p50=0.4, accuracy=None, seq=100)]))
    bars = _bars(_panel(figure, BATCHES))
    assert list(bars) == ["m.onnx [fp32]"] and len(bars["m.onnx [fp32]"].patches) == 1
    assert _says_not_measured(_panel(figure, LENGTHS))
    assert "--seq 100,200,400" in _panel(figure, LENGTHS).texts[0].get_text()
    ship = _panel(figure, SHIP)
    assert ship.get_title(loc="left") == f"{SHIP} (size vs latency)"
    assert ship.get_ylabel() == "model size (MB), lower is better"
    assert [_label(line) for line in ship.get_lines()] == ["m.onnx [fp32]"]
    assert _says_not_measured(_panel(figure, STREAMING))
    assert "--stream" in _panel(figure, STREAMING).texts[0].get_text()


def test_report_without_accuracy_or_size_says_so_in_the_ship_panel() -> None:
    rows = [_row("pytorch eager fp32", runtime="torch", accuracy=None)]
    axis = _panel(build_figure(_document(rows)), SHIP)
    assert len(axis.get_lines()) == 0 and _says_not_measured(axis)
    assert "--eval RUN_DIR" in axis.texts[0].get_text()


def test_streaming_only_report() -> None:
    rows = [_row("s.onnx", mode="streaming", p50=0.1, chunk=c) for c in (1, 4)]
    figure = build_figure(_document(rows))
    for question in (BATCHES, LENGTHS):
        axis = _panel(figure, question)
        assert _says_not_measured(axis) and "no whole-sequence rows" in axis.texts[0].get_text()
    axis = _panel(figure, STREAMING)
    labels = [t.get_text() for t in axis.get_xticklabels()]
    assert labels == ["1 stream\n1 frame(s)/push", "1 stream\n4 frame(s)/push"]
    assert _bars(axis)["s.onnx [fp32] (streaming)"].patches[0].get_hatch() == "//"
    # The ship panel judges streaming at the smallest chunk: one point, per frame.
    (point,) = _panel(figure, SHIP).get_lines()
    assert _xs(point) == [pytest.approx(0.1)]


def test_empty_report_draws_four_not_measured_panels() -> None:
    figure = build_figure(_document([]))
    assert len(figure.axes) == 4
    assert all(_says_not_measured(axis) for axis in figure.axes)


def test_gpu_providers_and_threads_are_named_apart_with_their_own_colours() -> None:
    rows = [
        _row("m.onnx", provider="cpu", p50=0.5),
        _row("m.onnx", provider="cuda", p50=2.3),
        _row("m.onnx", provider="cpu", requested="cuda", p50=0.6),  # --fallback
        _row("m.onnx", provider="cpu", threads=4, p50=0.3),
    ]
    bars = _bars(_panel(build_figure(_document(rows)), BATCHES))
    assert set(bars) == {
        "m.onnx [fp32] on cpu, 1 thr",
        "m.onnx [fp32] on cuda, 1 thr",
        "m.onnx [fp32] on cpu (asked cuda), 1 thr",
        "m.onnx [fp32] on cpu, 4 thr",
    }
    colours = {to_hex(c.patches[0].get_facecolor()) for c in bars.values()}
    assert len(colours) == 4


def test_missing_and_nan_latencies_are_skipped_not_drawn_at_zero() -> None:
    rows = [
        _row("a.onnx", p50=0.5),
        _row("b.onnx", p50=math.nan),
        _row("c.onnx", p50=0.0),
    ]
    axis = _panel(build_figure(_document(rows)), BATCHES)
    assert list(_bars(axis)) == ["a.onnx [fp32]"]


def test_log_axis_only_when_values_span_a_decade() -> None:
    narrow = [_row(m, p50=p) for m, p in (("a.onnx", 1.0), ("b.onnx", 3.0))]
    wide = [_row(m, p50=p) for m, p in (("a.onnx", 0.2), ("b.onnx", 9.0))]
    assert _panel(build_figure(_document(narrow)), BATCHES).get_yscale() == "linear"
    axis = _panel(build_figure(_document(wide)), BATCHES)
    assert axis.get_yscale() == "log"
    # Plain numbers on the log axis (0.2, 0.5, 1, ...), not powers of ten.
    figure = axis.get_figure()
    assert isinstance(figure, Figure)
    _lay_out(figure)
    ticks = [t.get_text() for t in axis.get_yticklabels() if t.get_text()]
    assert "1" in ticks and not any("10^" in t or "$" in t for t in ticks)


def test_accuracy_axis_stops_at_one_when_every_artifact_scores_the_same() -> None:
    axis = _panel(build_figure(_quickstart_like()), SHIP)
    assert axis.get_ylim()[1] <= 1.01


# --------------------------------------------------------------------------------------------
# writing the PNG


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_write_plot_writes_a_valid_png_of_the_figure_size(tmp_path: Path) -> None:
    document = _quickstart_like()
    path = tmp_path / "report.png"
    write_plot(document, path, title="edgelstm quickstart")
    figure = build_figure(document)
    width, height = figure.get_size_inches() * figure.dpi
    assert _png_size(path.read_bytes()) == (round(width), round(height)) == (1400, 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.png"]


def test_write_plot_is_atomic_when_saving_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.png"
    path.write_bytes(b"old")

    def broken(self: Figure, target: Any, **kwargs: Any) -> None:
        Path(target).write_bytes(PNG_MAGIC + b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_plot(_quickstart_like(), path, overwrite=True)
    assert path.read_bytes() == b"old"  # the old file intact, no half-written PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.png"]
    with pytest.raises(OutputExistsError):
        write_plot(_quickstart_like(), path)


# --------------------------------------------------------------------------------------------
# the quickstart's lengths


def test_quickstart_lengths_come_from_the_data() -> None:
    # JapaneseVowels' training lengths run 7..26 with median 15.
    assert sweep_lengths(np.array([7, 12, 15, 15, 20, 26])) == (15, 26, 104)
    # Fixed-length data (BasicMotions: 100) still gets three points.
    assert sweep_lengths(np.array([100, 100, 100])) == (100, 200, 400)


# --------------------------------------------------------------------------------------------
# the checkpoint's baselines on the ship panel (issue 13)


def _with_baselines(document: dict[str, Any], *, majority: float, best: float) -> dict[str, Any]:
    document["baselines"] = {
        "metric": "accuracy",
        "higher_is_better": True,
        "values": {"majority": majority, "1-NN ED": best, "1-NN DTW": None},
        "trivial": "majority",
        "required": round(majority + 0.1 * (1 - majority), 12),
        "best": "1-NN ED",
        "summary": "baselines (accuracy on the same test split): ...",
    }
    return document


def _horizontal(axis: Axes) -> dict[str, float]:
    """Label → y of the horizontal lines across the panel (not the artifacts' points)."""
    return {
        _label(line): _ys(line)[0]
        for line in axis.get_lines()
        if len(set(_ys(line))) == 1 and _xs(line) == [0, 1]
    }


def test_ship_panel_draws_the_strongest_baseline_and_leaves_a_far_chance_line_out() -> None:
    document = _with_baselines(_quickstart_like(), majority=0.08, best=0.95)
    axis = _panel(build_figure(document), SHIP)
    lines = _horizontal(axis)
    # Every artifact scores 0.97: chance (0.172) would squash the view, so it is left out.
    assert lines == {"strongest baseline: 1-NN ED 0.95": pytest.approx(0.95)}
    assert "strongest baseline: 1-NN ED 0.95" in _legend_labels(axis)
    assert axis.get_ylim()[0] > 0.5


def test_ship_panel_names_a_far_off_baseline_in_the_legend_only() -> None:
    # A transcriber: error rates near 0.012, the constant text's 0.858 (lower is better).
    document = _quickstart_like()
    for n, row in enumerate(document["rows"]):
        row["metric"], row["metric_value"] = "error_rate", 0.0112 + 0.0004 * (n % 5)
    document["baselines"] = {
        "metric": "error_rate",
        "higher_is_better": False,
        "values": {"most frequent text": 0.858},
        "trivial": "most frequent text",
        "required": None,
        "best": "most frequent text",
        "summary": "baselines (error_rate on the same test split): ...",
    }
    axis = _panel(build_figure(document), SHIP)
    assert _horizontal(axis) == {}
    assert "strongest baseline: most frequent text 0.858 (off the axis)" in _legend_labels(axis)
    assert axis.get_ylim()[1] < 0.1  # the artifacts keep the axis


def test_ship_panel_draws_the_chance_line_when_an_artifact_falls_short() -> None:
    document = _with_baselines(_quickstart_like(), majority=0.5, best=0.95)
    for row in document["rows"]:
        if row["model"] == "model.int8.onnx":
            row["metric_value"] = 0.5
    axis = _panel(build_figure(document), SHIP)
    lines = _horizontal(axis)
    assert lines["chance: 0.55 needed"] == pytest.approx(0.55)
    assert "chance: 0.55 needed" in _legend_labels(axis)


def test_ship_panel_without_baselines_draws_no_lines_across() -> None:
    axis = _panel(build_figure(_quickstart_like()), SHIP)
    assert _horizontal(axis) == {}
