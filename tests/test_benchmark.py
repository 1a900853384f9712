"""Benchmarks: statistics, the harness, reports, comparison, the tuner, deployment configs,
``edgelstm benchmark`` / ``quickstart`` / ``run --config``.

Tiny models (hidden 8, one layer) are exported once per module and timed in-process with a
handful of calls. Nothing here asserts a latency value or a timing relation: only counts,
field sets, orderings that hold by construction (p50 <= p99) and values derived from the
measured ones by formula.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_KW, CliRunner, needs_no_cuda, single_thread

import edgelstm.benchmarks.harness as harness_module
import edgelstm.benchmarks.quickstart as quickstart_module
from edgelstm.benchmarks.harness import (
    BENCHMARK_SCHEMA,
    BenchmarkPlan,
    BenchmarkReport,
    add_baseline_ratios,
    run_benchmark,
)
from edgelstm.benchmarks.measure import Measurement, environment, measure, measure_isolated
from edgelstm.benchmarks.plots import write_plot
from edgelstm.benchmarks.quickstart import QuickstartResult, quickstart
from edgelstm.benchmarks.report import (
    AT_CHANCE,
    REQUIRED_ROW_FIELDS,
    Comparison,
    baselines_line,
    compare_reports,
    load_report,
    render_table,
    row_key,
    table_rows,
    to_markdown,
    write_report_files,
)
from edgelstm.benchmarks.stats import LatencyStats, latency_stats, percentile, throughput
from edgelstm.benchmarks.tune import choose_deployment
from edgelstm.errors import InvalidInputError, OutputExistsError, ProviderUnavailableError
from edgelstm.exporters import export
from edgelstm.exporters.quantize import quantize
from edgelstm.hardware import cpu_info
from edgelstm.runtimes.ort.deploy import (
    DEPLOY_SCHEMA,
    DeploymentConfig,
    read_deployment,
    write_deployment,
)
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.training.trainer import TrainResult

#: Timesteps of the whole-sequence rows (short: the numbers do not matter, the rows do).
SEQ = 8
BATCHES = (1, 2)
CHUNKS = (1, 3)
FRAME_RATE = 50.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Measured fields every benchmark row carries besides REQUIRED_ROW_FIELDS.
EXTRA_ROW_FIELDS = (
    "path",
    "requested_provider",
    "cuda_graphs",
    "count",
    "std_ms",
    "min_ms",
    "max_ms",
    "frames_per_s",
    "session_create_ms",
    "first_run_ms",
    "size_mb",
    "peak_rss_mb",
    "gpu_peak_mb",
    "io_binding",
    "notes",
    "placement",
    "vs_torch_fp32",
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# --------------------------------------------------------------------------------------------
# shared artifacts: one tiny checkpoint, exported three ways, benchmarked once


@dataclass(frozen=True)
class Artifacts:
    run: Path
    seq: Path
    stream: Path
    int8: Path
    accuracy: float


@pytest.fixture(scope="module")
def artifacts(trained_classify: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Sequence, streaming and dynamic-INT8 exports of the shared classify run. Read-only."""
    single_thread()
    folder = tmp_path_factory.mktemp("bench-models")
    seq, stream, int8 = folder / "m.onnx", folder / "m.stream.onnx", folder / "m.int8.onnx"
    export(trained_classify.out, seq)
    export(trained_classify.out, stream, streaming=True)
    # A generous budget: the tiny model is barely trained, the gate is not what is tested here.
    quantize(seq, int8, mode="dynamic-int8", max_degradation=1.0)
    return Artifacts(
        trained_classify.out, seq, stream, int8, float(trained_classify.metrics["accuracy"])
    )


@dataclass(frozen=True)
class Bench:
    plan: BenchmarkPlan
    report: BenchmarkReport
    document: dict[str, Any]
    json_path: Path


@pytest.fixture(scope="module")
def bench(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Bench:
    """One in-process benchmark of all three artifacts plus PyTorch, scored. Read-only."""
    single_thread()
    plan = BenchmarkPlan(
        models=(artifacts.seq, artifacts.stream, artifacts.int8),
        batches=BATCHES,
        seqs=(SEQ,),
        stream=True,
        chunks=CHUNKS,
        torch_run=artifacts.run,
        eval_run=artifacts.run,
        warmup=1,
        iterations=3,
        frame_rate=FRAME_RATE,
        isolate=False,
    )
    progress: list[tuple[int, int, str]] = []
    report = run_benchmark(
        plan, progress=lambda d, t, label: progress.append((d, t, label)), command="bench-test"
    )
    total = len(report.rows)
    # One call per group of rows timed side by side (same shape and threads), counting rows.
    done = [d for d, _, _ in progress]
    assert done == sorted(set(done)) and done[-1] == total
    assert all(t == total for _, t, _ in progress)
    assert len(progress) == len(
        {(r["mode"], r["batch"], r["seq"] or r["chunk"]) for r in report.rows}
    )
    document = report.to_json()
    json_path = tmp_path_factory.mktemp("bench-report") / "report.json"
    write_report_files(document, json_path=json_path)
    return Bench(plan, report, document, json_path)


def _rows(bench: Bench, **where: Any) -> list[dict[str, Any]]:
    return [r for r in bench.document["rows"] if all(r[k] == v for k, v in where.items())]


# --------------------------------------------------------------------------------------------
# statistics


def test_latency_stats_match_hand_computed_values() -> None:
    stats = latency_stats([1.0, 2.0, 3.0, 4.0])
    assert stats.count == 4
    assert stats.p50_ms == pytest.approx(2.5)
    assert stats.p90_ms == pytest.approx(3.7)  # rank 3 * 0.9 = 2.7: 3 + 0.7 * (4 - 3)
    assert stats.p99_ms == pytest.approx(3.97)  # rank 2.97
    assert stats.mean_ms == pytest.approx(2.5)
    assert stats.std_ms == pytest.approx(math.sqrt(5 / 3))  # sample std: 5 / (n - 1)
    assert (stats.min_ms, stats.max_ms) == (1.0, 4.0)
    assert stats.to_json() == {
        "count": 4,
        "p50_ms": stats.p50_ms,
        "p90_ms": stats.p90_ms,
        "p99_ms": stats.p99_ms,
        "mean_ms": stats.mean_ms,
        "std_ms": stats.std_ms,
        "min_ms": 1.0,
        "max_ms": 4.0,
    }


def test_latency_stats_of_one_sample() -> None:
    stats = latency_stats([7.5])
    assert stats == LatencyStats(
        count=1, p50_ms=7.5, p90_ms=7.5, p99_ms=7.5, mean_ms=7.5, std_ms=0.0, min_ms=7.5, max_ms=7.5
    )


def test_latency_stats_sort_their_input_and_agree_with_numpy() -> None:
    samples = list(np.random.default_rng(3).exponential(2.0, size=37))
    shuffled = latency_stats(samples)
    assert shuffled == latency_stats(sorted(samples))
    assert latency_stats([4, 1, 3, 2]) == latency_stats([1.0, 2.0, 3.0, 4.0])
    for p, value in ((50, shuffled.p50_ms), (90, shuffled.p90_ms), (99, shuffled.p99_ms)):
        assert value == pytest.approx(float(np.percentile(samples, p)))  # linear, "type 7"
    assert shuffled.std_ms == pytest.approx(float(np.std(samples, ddof=1)))
    assert shuffled.mean_ms == pytest.approx(float(np.mean(samples)))


def test_outliers_are_kept() -> None:
    steady = latency_stats([1.0] * 100)
    spiky = latency_stats([1.0] * 99 + [1000.0])
    assert spiky.p50_ms == steady.p50_ms == 1.0
    assert spiky.p90_ms == 1.0  # rank 89.1: both neighbours are 1
    assert spiky.p99_ms == pytest.approx(1.0 + 999.0 * 0.01)  # rank 98.01
    assert spiky.max_ms == 1000.0
    assert spiky.mean_ms == pytest.approx(10.99)
    assert spiky.count == 100


def test_percentile_edges() -> None:
    values = [1.0, 2.0, 10.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 50) == 2.0
    assert percentile(values, 75) == pytest.approx(6.0)  # rank 1.5
    assert percentile([5.0], 100) == 5.0
    for p in (-0.1, 100.1):
        with pytest.raises(InvalidInputError, match=r"0\.\.100"):
            percentile(values, p)
    with pytest.raises(InvalidInputError, match="no samples"):
        percentile([], 50)


@pytest.mark.parametrize(
    ("samples", "needle"),
    [
        ([], "at least one iteration"),
        ([1.0, -0.5], "non-negative"),
        ([1.0, math.nan], "finite"),
        ([math.inf], "finite"),
    ],
)
def test_latency_stats_reject_bad_samples(samples: list[float], needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        latency_stats(samples)


def test_throughput() -> None:
    assert throughput(8, 2.0) == 4000.0
    assert throughput(1, 0.5) == 2000.0
    assert throughput(3, 0.0) == math.inf


# --------------------------------------------------------------------------------------------
# the plan


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"batches": (0,)}, "--batch"),
        ({"batches": ()}, "--batch"),
        ({"seqs": (100, -1)}, "--seq"),
        ({"threads": (0,)}, "--threads"),
        ({"chunks": (0,)}, "--chunk"),
        ({"iterations": 0}, "--iterations"),
        ({"duration_s": 0.0}, "--duration"),
        ({"warmup": -1}, "--warmup"),
        ({"frame_rate": 0.0}, "--frame-rate"),
    ],
)
def test_plan_rejects_bad_values(
    artifacts: Artifacts, changes: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        BenchmarkPlan(models=(artifacts.seq,), **changes)


def test_plan_needs_existing_models(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="at least one MODEL"):
        BenchmarkPlan(models=())
    with pytest.raises(InvalidInputError, match=r"missing\.onnx does not exist"):
        BenchmarkPlan(models=(tmp_path / "missing.onnx",))


def test_plan_to_json_is_plain(artifacts: Artifacts) -> None:
    plan = BenchmarkPlan(models=(artifacts.seq,), torch_run=artifacts.run, batches=(1, 4))
    data = plan.to_json()
    assert data["models"] == [str(artifacts.seq)]
    assert data["torch_run"] == str(artifacts.run)
    assert data["eval_run"] is None
    assert data["batches"] == [1, 4]
    assert json.loads(json.dumps(data)) == data


# --------------------------------------------------------------------------------------------
# run_benchmark: the document and its rows


def test_document_has_schema_environment_and_plan(bench: Bench) -> None:
    import onnxruntime as ort

    doc = bench.document
    assert doc["schema"] == BENCHMARK_SCHEMA == "edgelstm.benchmark/1"
    assert doc["command"] == "bench-test"
    assert doc["plan"] == bench.plan.to_json()
    assert doc["skipped"] == []
    env = doc["environment"]
    assert env["threads"] == [1]
    assert env["cpu_count"] == os.cpu_count()
    assert isinstance(env["cpu"], dict) and "model" in env["cpu"]
    libraries = env["libraries"]
    assert libraries["onnxruntime"] == ort.__version__
    assert libraries["onnxruntime_distribution"] in ("onnxruntime", "onnxruntime-gpu")
    for name in ("onnx", "torch", "numpy"):
        assert libraries[name]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON all the way down


def test_environment_records_requested_threads() -> None:
    env = environment((1, 4))
    assert env["threads"] == [1, 4]
    assert env["timestamp"].endswith("Z")


def test_row_counts_follow_the_plan(bench: Bench, artifacts: Artifacts) -> None:
    rows = bench.document["rows"]
    n_batch, n_chunk = len(BATCHES), len(CHUNKS)
    # Sequence export: sequence rows only (it has no state inputs to stream through).
    seq_rows = _rows(bench, path=str(artifacts.seq))
    assert {r["mode"] for r in seq_rows} == {"sequence"} and len(seq_rows) == n_batch
    # Streaming export next to a sequence export with --stream: streaming rows only.
    stream_rows = _rows(bench, path=str(artifacts.stream))
    assert {r["mode"] for r in stream_rows} == {"streaming"}
    assert len(stream_rows) == n_batch * n_chunk
    assert sorted((r["batch"], r["chunk"]) for r in stream_rows) == sorted(
        (b, c) for b in BATCHES for c in CHUNKS
    )
    int8_rows = _rows(bench, path=str(artifacts.int8))
    assert len(int8_rows) == n_batch and {r["precision"] for r in int8_rows} == {"int8"}
    # PyTorch: fp32 and int8, each for every shape (sequence and every chunk) and batch.
    for precision in ("fp32", "int8"):
        torch_rows = _rows(bench, runtime="torch", precision=precision)
        assert len(torch_rows) == (1 + n_chunk) * n_batch
        assert {r["model"] for r in torch_rows} == {f"pytorch eager {precision}"}
        assert {r["path"] for r in torch_rows} == {str(artifacts.run)}
    assert len(rows) == 2 * n_batch + n_batch * n_chunk + 2 * (1 + n_chunk) * n_batch


def test_every_row_has_the_documented_fields(bench: Bench, artifacts: Artifacts) -> None:
    for row in bench.document["rows"]:
        missing = [f for f in (*REQUIRED_ROW_FIELDS, *EXTRA_ROW_FIELDS) if f not in row]
        assert not missing, (row["model"], missing)
        assert row["provider"] == row["requested_provider"] == "cpu"
        assert row["threads"] == 1 and row["cuda_graphs"] is False
        assert row["count"] == 3  # every timed call kept
        assert row["peak_rss_mb"] is None  # in-process rows have no own peak
        assert row["gpu_peak_mb"] is None
        assert row["session_create_ms"] >= 0 and row["first_run_ms"] >= 0
        assert row["std_ms"] >= 0
        if row["runtime"] == "torch":
            assert row["size_mb"] is None
        else:
            path = Path(row["path"])
            assert row["model"] == path.name
            assert row["size_mb"] == pytest.approx(path.stat().st_size / 2**20)
            assert row["io_binding"] is (row["mode"] == "streaming")
    assert {r["precision"] for r in _rows(bench, path=str(artifacts.seq))} == {"fp32"}


def test_latency_orderings_and_throughput_formulas(bench: Bench) -> None:
    for row in bench.document["rows"]:
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["min_ms"] <= row["mean_ms"] <= row["max_ms"]
        steps = row["seq"] if row["mode"] == "sequence" else row["chunk"]
        assert row["throughput_per_s"] == pytest.approx(row["batch"] * 1000.0 / row["p50_ms"])
        assert row["frames_per_s"] == pytest.approx(row["batch"] * steps * 1000.0 / row["p50_ms"])


def test_vs_torch_fp32_is_each_rows_p50_over_the_baseline(bench: Bench) -> None:
    rows = bench.document["rows"]

    def shape(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["mode"], r["batch"], r["seq"], r["chunk"], r["threads"])

    baselines = {shape(r): r for r in _rows(bench, runtime="torch", precision="fp32")}
    assert len(baselines) == (1 + len(CHUNKS)) * len(BATCHES)
    for row in rows:
        base = baselines[shape(row)]
        if row is base:
            assert row["vs_torch_fp32"] == 1.0
        else:
            assert row["vs_torch_fp32"] == pytest.approx(row["p50_ms"] / base["p50_ms"])


def test_streaming_rows_report_per_frame_latency(bench: Bench) -> None:
    streaming = _rows(bench, mode="streaming")
    assert len(streaming) == 3 * len(BATCHES) * len(CHUNKS)  # export, torch fp32, torch int8
    for row in streaming:
        assert row["seq"] is None and row["chunk"] in CHUNKS
        assert row["frame_p50_ms"] == pytest.approx(row["p50_ms"] / row["chunk"])
        assert row["frame_p99_ms"] == pytest.approx(row["p99_ms"] / row["chunk"])
        assert row["frame_rate_hz"] == FRAME_RATE
        assert row["real_time_factor"] == pytest.approx(row["frame_p50_ms"] / (1000.0 / FRAME_RATE))
    for row in _rows(bench, mode="sequence"):
        assert row["seq"] == SEQ and row["chunk"] is None
        assert "frame_p50_ms" not in row and "real_time_factor" not in row


def test_metric_values_per_artifact(bench: Bench, artifacts: Artifacts) -> None:
    rows = bench.document["rows"]
    assert {r["metric"] for r in rows} == {"accuracy"}
    torch_fp32 = _rows(bench, runtime="torch", precision="fp32")
    # The torch baseline scores the checkpoint on its own test split: the training metric.
    for row in torch_fp32:
        assert row["metric_value"] == pytest.approx(artifacts.accuracy)
    assert all(r["metric_value"] is None for r in _rows(bench, runtime="torch", precision="int8"))
    for row in _rows(bench, runtime="onnxruntime"):
        assert isinstance(row["metric_value"], float) and 0.0 <= row["metric_value"] <= 1.0
    # One score per artifact, the same on every row of it.
    for path in (artifacts.seq, artifacts.stream, artifacts.int8):
        assert len({r["metric_value"] for r in _rows(bench, path=str(path))}) == 1
    # The FP32 export is the checkpoint (validated to 1e-4): at most one test sequence apart.
    (onnx_fp32,) = {r["metric_value"] for r in _rows(bench, path=str(artifacts.seq))}
    assert abs(onnx_fp32 - artifacts.accuracy) <= 1 / 12 + 1e-9  # 12 held-out sequences


def test_without_eval_rows_have_no_metric(artifacts: Artifacts) -> None:
    plan = BenchmarkPlan(models=(artifacts.seq,), seqs=(4,), warmup=0, iterations=2, isolate=False)
    report = run_benchmark(plan)
    (row,) = report.rows
    assert "metric" not in row and "metric_value" not in row
    assert "clears_chance" not in row and "baselines" not in report.to_json()
    assert baselines_line(report.to_json()) is None
    assert row["vs_torch_fp32"] is None  # no baseline measured
    assert row["count"] == 2


# The checkpoint's baselines beside the rows (issue 13: a fast model is never shown without
# whether it is any good).


def test_eval_report_carries_the_checkpoints_baselines(bench: Bench, artifacts: Artifacts) -> None:
    stored = json.loads((artifacts.run / "metrics.json").read_text())["baselines"]
    baselines = bench.document["baselines"]
    assert baselines["run"] == str(artifacts.run)
    assert baselines["values"] == stored["values"]
    assert (baselines["metric"], baselines["required"]) == ("accuracy", stored["required"])
    assert baselines["best"] == stored["best"]
    assert baselines["summary"].startswith("baselines (accuracy on the same test split): majority ")
    assert load_report(bench.json_path)["baselines"] == baselines  # written with the rows
    for row in bench.document["rows"]:
        value = row["metric_value"]
        if value is None:  # torch int8 is not scored
            assert row["clears_chance"] is None and row["beats_best_baseline"] is None
            continue
        assert row["clears_chance"] == (value >= stored["required"] - 1e-12)
        best = max(v for v in stored["values"].values() if v is not None)
        assert row["beats_best_baseline"] == (value >= best - 1e-12)


def test_rows_at_chance_are_marked_in_the_table_and_the_baselines_sit_under_it(
    bench: Bench,
) -> None:
    doc = bench.document
    header, cells = table_rows(doc["rows"])
    column = header.index("accuracy")
    for row, line in zip(doc["rows"], cells, strict=True):
        assert line[column].endswith(AT_CHANCE) == (row["clears_chance"] is False), line
    caption = baselines_line(doc)
    assert caption is not None and caption.startswith(doc["baselines"]["summary"])
    assert str(render_table(doc).caption) == caption
    text = to_markdown(doc)
    assert "Baselines (accuracy on the same test split): majority " in text
    # The table first, then the baselines line.
    lines = text.splitlines()
    last_row = max(i for i, line in enumerate(lines) if line.startswith("| "))
    assert lines[last_row + 2].startswith("Baselines (accuracy on the same test split)")


def test_synthetic_rows_at_chance_are_marked_and_explained() -> None:
    scored = {"metric": "accuracy", "beats_best_baseline": False}
    rows = [
        _synthetic_row(model="good.onnx", metric_value=0.97, clears_chance=True, **scored),
        _synthetic_row(model="bad.onnx", metric_value=0.50, clears_chance=False, **scored),
    ]
    summary = (
        "baselines (accuracy on the same test split): majority 0.5000, 1-NN ED 0.9000, "
        "1-NN DTW skipped; 0.5500 needed to clear the majority class"
    )
    doc = _synthetic_document(rows, baselines={"metric": "accuracy", "summary": summary})
    _, cells = table_rows(rows)
    assert [line[-1] for line in cells] == ["0.9700", f"0.5000 {AT_CHANCE}"]
    marked = f"Rows marked {AT_CHANCE} do not clear it: do not deploy them"
    assert baselines_line(doc) == f"{summary}. {marked}"
    text = to_markdown(doc)
    assert "| bad.onnx |" in text and f"0.5000 {AT_CHANCE} |" in text
    assert "Baselines (accuracy on the same test split): majority 0.5000" in text
    good_only = _synthetic_document(rows[:1], baselines={"metric": "accuracy", "summary": summary})
    assert baselines_line(good_only) == summary


def test_a_checkpoint_without_baselines_is_said_to_have_none(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(artifacts.run, old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["baselines"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    document = harness_module.baselines_json(old, "accuracy")
    assert document["values"] is None
    assert document["summary"].startswith(f"baselines: none in {old / 'metrics.json'}")
    rows = [_synthetic_row(metric="accuracy", metric_value=0.5)]
    harness_module.mark_baselines(rows, old)
    assert "clears_chance" not in rows[0]  # nothing to judge it by: no mark, no false alarm
    doc = _synthetic_document(rows, baselines=document)
    assert baselines_line(doc) == document["summary"]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        # Without --stream a streaming export is timed on whole sequences (zero state).
        (False, [("sequence", 4, None)]),
        # Alone (no sequence export to stand in for it) it gets both kinds of rows.
        (True, [("sequence", 4, None), ("streaming", None, 2)]),
    ],
)
def test_streaming_export_rows_depend_on_the_plan(
    artifacts: Artifacts, stream: bool, expected: list[tuple[str, int | None, int | None]]
) -> None:
    plan = BenchmarkPlan(
        models=(artifacts.stream,),
        seqs=(4,),
        stream=stream,
        chunks=(2,),
        warmup=0,
        iterations=2,
        isolate=False,
    )
    rows = run_benchmark(plan).rows
    assert [(r["mode"], r["seq"], r["chunk"]) for r in rows] == expected


def test_duration_mode_times_at_least_ten_calls(artifacts: Artifacts) -> None:
    m = Measurement(
        model=str(artifacts.seq),
        runtime="onnxruntime",
        provider="cpu",
        precision="fp32",
        mode="sequence",
        batch=1,
        seq=4,
        threads=1,
        warmup=0,
        iterations=None,
        duration_s=0.001,
    )
    row = measure(m)
    assert row["count"] >= 10
    assert row["provider"] == "cpu"


def test_measure_rejects_unknown_runtime_and_torch_int8_off_cpu(artifacts: Artifacts) -> None:
    base = Measurement(
        model=str(artifacts.run),
        runtime="tensorflow",
        provider="cpu",
        precision="fp32",
        mode="sequence",
        batch=1,
        seq=4,
        threads=1,
        warmup=0,
        iterations=1,
    )
    with pytest.raises(InvalidInputError, match="unknown runtime 'tensorflow'"):
        measure(base)
    with pytest.raises(InvalidInputError, match="CPU only"):
        measure(replace(base, runtime="torch", precision="int8", provider="cuda"))


def test_add_baseline_ratios_without_or_with_zero_baseline() -> None:
    def row(runtime: str, p50: float) -> dict[str, Any]:
        return {
            "runtime": runtime,
            "precision": "fp32",
            "provider": "cpu",
            "mode": "sequence",
            "batch": 1,
            "seq": 10,
            "chunk": None,
            "threads": 1,
            "p50_ms": p50,
        }

    alone = [row("onnxruntime", 1.0)]
    add_baseline_ratios(alone)
    assert alone[0]["vs_torch_fp32"] is None
    zero = [row("torch", 0.0), row("onnxruntime", 1.0)]
    add_baseline_ratios(zero)
    assert [r["vs_torch_fp32"] for r in zero] == [None, None]
    other_shape = [row("torch", 2.0), {**row("onnxruntime", 1.0), "batch": 8}]
    add_baseline_ratios(other_shape)
    assert [r["vs_torch_fp32"] for r in other_shape] == [1.0, None]


def test_load_report_accepts_the_written_json(bench: Bench) -> None:
    loaded = load_report(bench.json_path)
    assert loaded == bench.document


@needs_no_cuda
def test_unusable_provider_is_refused_or_measured_on_cpu(artifacts: Artifacts) -> None:
    common: dict[str, Any] = {"seqs": (4,), "warmup": 0, "iterations": 2, "isolate": False}
    with pytest.raises(ProviderUnavailableError, match="--fallback"):
        run_benchmark(BenchmarkPlan(models=(artifacts.seq,), providers=("cuda",), **common))
    report = run_benchmark(
        BenchmarkPlan(models=(artifacts.seq,), providers=("cuda",), fallback=True, **common)
    )
    (row,) = report.rows
    assert (row["provider"], row["requested_provider"]) == ("cpu", "cuda")
    assert [s["provider"] for s in report.skipped] == ["cuda"]
    assert "ran on cpu" in report.skipped[0]["reason"]


@needs_no_cuda
def test_fallback_with_torch_baseline_measures_on_cpu(artifacts: Artifacts) -> None:
    plan = BenchmarkPlan(
        models=(artifacts.seq,),
        providers=("cuda",),
        fallback=True,
        torch_run=artifacts.run,
        seqs=(4,),
        warmup=0,
        iterations=2,
        isolate=False,
    )
    rows = run_benchmark(plan).rows
    assert {r["provider"] for r in rows} == {"cpu"}


# --------------------------------------------------------------------------------------------
# isolated measurements (each spawns a Python process: two in this module)


def test_isolated_measurement_reports_peak_memory(artifacts: Artifacts) -> None:
    m = Measurement(
        model=str(artifacts.seq),
        runtime="onnxruntime",
        provider="cpu",
        precision="fp32",
        mode="sequence",
        batch=1,
        seq=4,
        threads=1,
        warmup=0,
        iterations=2,
    )
    row = measure_isolated(m, timeout_s=120)
    assert isinstance(row["peak_rss_mb"], float) and row["peak_rss_mb"] > 0
    assert row["provider"] == "cpu"
    assert row["count"] == 2
    assert row["min_ms"] <= row["p50_ms"] <= row["max_ms"]


def test_isolated_measurement_of_a_broken_model_raises(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    m = Measurement(
        model=str(broken),
        runtime="onnxruntime",
        provider="cpu",
        precision="fp32",
        mode="sequence",
        batch=1,
        seq=4,
        threads=1,
        warmup=0,
        iterations=1,
    )
    with pytest.raises(InvalidInputError, match=r"broken\.onnx") as info:
        measure_isolated(m, timeout_s=120)
    assert "took longer" not in str(info.value)


def test_a_script_without_a_main_guard_times_in_isolation_and_runs_once(
    artifacts: Artifacts, tmp_path: Path
) -> None:
    # A worker must not run the caller's script again (multiprocessing's spawn does: each
    # worker would retrain before timing), and a script read from stdin must work too.
    script = (
        "from edgelstm.benchmarks.measure import Measurement, measure_isolated\n"
        "print('script body ran', flush=True)\n"
        f"m = Measurement(model={str(artifacts.seq)!r}, runtime='onnxruntime', provider='cpu',"
        " precision='fp32', mode='sequence', batch=1, seq=4, threads=1, warmup=0, iterations=2)\n"
        "print('count', measure_isolated(m, timeout_s=120)['count'])\n"
    )
    (tmp_path / "time_it.py").write_text(script, encoding="utf-8")
    for argv, stdin in (([str(tmp_path / "time_it.py")], None), (["-"], script)):
        done = subprocess.run(
            [sys.executable, *argv], input=stdin, capture_output=True, text=True, timeout=180,
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["script body ran", "count 2"], done.stdout


# --------------------------------------------------------------------------------------------
# load_report


def _synthetic_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": "m.onnx",
        "path": "m.onnx",
        "runtime": "onnxruntime",
        "provider": "cpu",
        "requested_provider": "cpu",
        "precision": "fp32",
        "mode": "sequence",
        "batch": 1,
        "seq": 10,
        "chunk": None,
        "threads": 1,
        "cuda_graphs": False,
        "p50_ms": 1.0,
        "p90_ms": 1.2,
        "p99_ms": 1.5,
        "mean_ms": 1.1,
        "throughput_per_s": 1000.0,
    }
    row.update(changes)
    return row


def _synthetic_document(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "schema": BENCHMARK_SCHEMA,
        "command": None,
        "environment": {},
        "plan": {},
        "rows": rows,
        "skipped": [],
        **extra,
    }


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an edgelstm benchmark report .schema 'list'"),
        (json.dumps({"schema": "other/1", "rows": []}), "schema 'other/1'"),
        (json.dumps({"rows": []}), "schema None"),
        (json.dumps({"schema": BENCHMARK_SCHEMA, "rows": {"a": 1}}), "'rows' must be a list"),
        (json.dumps({"schema": BENCHMARK_SCHEMA}), "'rows' must be a list"),
        (json.dumps({"schema": BENCHMARK_SCHEMA, "rows": [1]}), r"rows\[0\] is not an object"),
    ],
)
def test_load_report_rejects_bad_files(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "old.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=needle):
        load_report(path)


def test_load_report_names_the_row_and_missing_fields(tmp_path: Path) -> None:
    broken = _synthetic_row()
    del broken["p99_ms"], broken["throughput_per_s"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_synthetic_document([_synthetic_row(), broken])), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"rows\[1\] lacks p99_ms, throughput_per_s"):
        load_report(path)
    assert load_report(_write(tmp_path / "ok.json", _synthetic_document([_synthetic_row()])))


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_load_report_rejects_non_numeric_latencies(tmp_path: Path) -> None:
    path = _write(tmp_path / "old.json", _synthetic_document([_synthetic_row(p50_ms=None)]))
    with pytest.raises(InvalidInputError, match="p50_ms"):
        load_report(path)


# --------------------------------------------------------------------------------------------
# compare_reports


def test_compare_reports_ratios_regressions_and_unmatched_rows() -> None:
    old = _synthetic_document(
        [
            _synthetic_row(model="a", p50_ms=1.0),
            _synthetic_row(model="b", p50_ms=2.0),
            _synthetic_row(model="c", p50_ms=4.0),  # gone in the new report
            _synthetic_row(model="a", batch=8, p50_ms=5.0),
        ]
    )
    new = _synthetic_document(
        [
            _synthetic_row(model="a", p50_ms=1.05),  # 5 % slower: within 10 %
            _synthetic_row(model="b", p50_ms=3.0),  # 1.5x: a regression
            _synthetic_row(model="d", p50_ms=1.0),  # new
            _synthetic_row(model="a", batch=8, p50_ms=2.5),  # twice as fast
            # Same model on a fallback: asked for cuda, so not the cpu configuration.
            _synthetic_row(model="a", requested_provider="cuda", p50_ms=9.0),
        ]
    )
    result = compare_reports(new, old)
    assert isinstance(result, Comparison)
    ratios = {(r["model"], r["shape"]): r["ratio"] for r in result.rows}
    assert ratios == {
        ("a", "b1 x 10"): pytest.approx(1.05),
        ("b", "b1 x 10"): pytest.approx(1.5),
        ("a", "b8 x 10"): pytest.approx(0.5),
    }
    assert [r["model"] for r in result.regressions] == ["b"]
    assert result.only_new == 2 and result.only_old == 1
    entry = next(r for r in result.rows if r["model"] == "b")
    assert (entry["old_p50_ms"], entry["new_p50_ms"], entry["regression"]) == (2.0, 3.0, True)
    data = result.to_json()
    assert data["regressions"] == 1 and data["threshold"] == 0.10
    assert (data["only_new"], data["only_old"]) == (2, 1)
    # A tighter threshold flags the 5 % as well; the boundary itself is not a regression.
    strict = compare_reports(new, old, threshold=0.01)
    assert sorted(r["model"] for r in strict.regressions) == ["a", "b"]
    exact = compare_reports(
        _synthetic_document([_synthetic_row(p50_ms=1.5)]),
        _synthetic_document([_synthetic_row(p50_ms=1.0)]),
        threshold=0.5,
    )
    assert exact.regressions == () and exact.rows[0]["ratio"] == 1.5


def test_compare_against_zero_old_latency_is_a_regression() -> None:
    result = compare_reports(
        _synthetic_document([_synthetic_row(p50_ms=1.0)]),
        _synthetic_document([_synthetic_row(p50_ms=0.0)]),
    )
    assert result.rows[0]["ratio"] == math.inf and len(result.regressions) == 1


def test_row_key_ignores_the_path_but_not_the_shape() -> None:
    row = _synthetic_row()
    assert row_key(row) == row_key({**row, "path": "elsewhere/m.onnx", "p50_ms": 9.0})
    assert row_key(row) != row_key({**row, "seq": 20})
    assert row_key(row) != row_key({**row, "threads": 2})


# --------------------------------------------------------------------------------------------
# Markdown, table, plot, files


def test_markdown_has_command_table_and_skipped_providers() -> None:
    rows = [
        _synthetic_row(model="a|b"),
        _synthetic_row(model="s.onnx", mode="streaming", seq=None, chunk=4, frame_p50_ms=0.25),
        _synthetic_row(model="f.onnx", provider="cpu", requested_provider="cuda"),
    ]
    doc = _synthetic_document(
        rows,
        command="edgelstm benchmark a.onnx --batch 1",
        plan={"warmup": 2, "iterations": 5, "isolate": True, "frame_rate": 30.0},
        skipped=[{"provider": "cuda", "reason": "not built in"}],
        summary={"headline": "fast"},
    )
    text = to_markdown(doc, "My bench")
    lines = text.splitlines()
    assert lines[0] == "# My bench"
    assert "Command: `edgelstm benchmark a.onnx --batch 1`" in lines
    header, _cells = table_rows(rows)
    assert "| " + " | ".join(header) + " |" in lines
    assert header[:7] == ["model", "runtime", "provider", "prec", "mode", "shape", "thr"]
    assert "frame ms" in header and "RTF" in header
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + len(rows)
    assert all(line.count(" | ") == len(header) - 1 for line in table)  # "|" in a name escaped
    assert table[1].startswith("| a/b | onnxruntime |")
    assert "b1 chunk 4" in table[2] and "b1 x 10" in table[1]
    assert "cpu (asked cuda)" in table[3]
    assert "- skipped cuda: not built in" in lines
    assert "- headline: fast" in lines
    assert "30.0 Hz" in text
    assert "each row in its own process" in text and "2 warm-up calls, then 5 calls" in text
    assert text.endswith("\n")


def test_markdown_and_table_of_a_real_report(bench: Bench) -> None:
    doc = bench.document
    text = to_markdown(doc)
    assert "Command: `bench-test`" in text
    header, cells = table_rows(doc["rows"])
    assert header[-1] == "accuracy"  # the metric column, named after the metric
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(doc["rows"]) == 1 + len(cells)
    assert "in one process" in text
    for name in ("m.onnx", "m.stream.onnx", "m.int8.onnx", "pytorch eager fp32"):
        assert any(line.startswith(f"| {name} |") for line in table), name
    rich_table = render_table(doc)
    assert rich_table.row_count == len(doc["rows"])
    assert [str(c.header) for c in rich_table.columns] == header


def test_write_plot_writes_a_png_and_respects_overwrite(bench: Bench, tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    write_plot(bench.document, path)
    assert path.read_bytes().startswith(PNG_MAGIC)
    path.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        write_plot(bench.document, path)
    assert path.read_bytes() == b"keep"
    write_plot(bench.document, path, overwrite=True)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]  # no temp files left


def test_write_report_files_and_overwrite(bench: Bench, tmp_path: Path) -> None:
    doc = bench.document
    paths = {"json_path": tmp_path / "r.json", "markdown_path": tmp_path / "r.md"}
    written = write_report_files(doc, plot_path=tmp_path / "r.png", title="T", **paths)
    assert written == [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"]
    assert load_report(tmp_path / "r.json") == doc
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == to_markdown(doc, "T")
    assert (tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)
    (tmp_path / "r.json").write_text("old", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="--overwrite") as info:
        write_report_files(doc, json_path=tmp_path / "r.json")
    assert isinstance(info.value, InvalidInputError)
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == "old"
    write_report_files(doc, json_path=tmp_path / "r.json", overwrite=True)
    assert load_report(tmp_path / "r.json") == doc
    assert write_report_files(doc) == []


# --------------------------------------------------------------------------------------------
# the tuner


def _tune_row(**changes: Any) -> dict[str, Any]:
    return _synthetic_row(**{"metric": "accuracy", "metric_value": 0.90, **changes})


def test_tune_picks_the_fastest_row_within_the_accuracy_budget() -> None:
    rows = [
        _tune_row(path="fp32.onnx", p50_ms=2.0),
        _tune_row(path="fp32.onnx", threads=2, p50_ms=1.5),
        _tune_row(path="int8.onnx", precision="int8", p50_ms=0.5, metric_value=0.87),
        _tune_row(path="fp32.onnx", batch=8, p50_ms=0.1),  # another shape
        _tune_row(path="fp32.onnx", seq=50, p50_ms=0.2),  # another sequence length
        _synthetic_row(runtime="torch", path="run", p50_ms=0.01, metric="accuracy"),
    ]
    chosen = choose_deployment(rows)
    assert chosen.model == Path("fp32.onnx")
    assert chosen.mode == "sequence" and chosen.batch == 1 and chosen.chunk is None
    assert chosen.session.providers == ("cpu",)
    assert chosen.session.intra_op_threads == 2
    assert chosen.measured["p50_ms"] == 1.5 and chosen.measured["precision"] == "fp32"
    assert "budget 0.01" in chosen.reason
    # INT8 loses 0.03 accuracy: out at the default 0.01, in with a 0.05 budget.
    relaxed = choose_deployment(rows, max_degradation=0.05)
    assert relaxed.model == Path("int8.onnx")
    assert relaxed.measured["metric_value"] == 0.87
    assert choose_deployment(rows, batch=8).measured["p50_ms"] == 0.1
    assert choose_deployment(rows, seq=50).measured["p50_ms"] == 0.2


def test_tune_never_deploys_an_int8_file_slower_than_fp32() -> None:
    """The tuner picks by measurement: an INT8 file as accurate as FP32 but slower on this
    host (ConvInteger on AVX2 without VNNI) is not deployed."""
    rows = [
        _tune_row(path="fp32.onnx", p50_ms=0.82),
        _tune_row(path="int8.onnx", precision="int8", p50_ms=1.31),
    ]
    chosen = choose_deployment(rows)
    assert chosen.model == Path("fp32.onnx") and chosen.measured["precision"] == "fp32"
    faster = [rows[0], _tune_row(path="int8.onnx", precision="int8", p50_ms=0.57)]
    assert choose_deployment(faster).model == Path("int8.onnx")


def test_tune_carries_provider_and_cuda_graphs() -> None:
    rows = [
        _tune_row(p50_ms=2.0),
        _tune_row(path="g.onnx", provider="cuda", requested_provider="cuda", p50_ms=0.5),
        _tune_row(path="g.onnx", provider="cuda", cuda_graphs=True, p50_ms=0.3),
    ]
    chosen = choose_deployment(rows)
    assert chosen.session.providers == ("cuda",)
    assert chosen.session.cuda_graphs is True


def test_tune_forecast_mae_is_relative_and_lower_is_better() -> None:
    def row(path: str, precision: str, mae: float, p50: float) -> dict[str, Any]:
        return _synthetic_row(
            path=path, precision=precision, metric="mae", metric_value=mae, p50_ms=p50
        )

    rows = [
        row("good.onnx", "fp32", 10.0, 3.0),
        row("bad.onnx", "fp32", 20.0, 0.1),  # worse MAE: the reference is the lowest
        row("int8.onnx", "int8", 10.15, 1.0),  # 1.5 % worse (0.15 absolute)
    ]
    chosen = choose_deployment(rows)
    assert chosen.model == Path("int8.onnx")
    assert "relative" in chosen.reason
    rows[2] = row("int8.onnx", "int8", 10.3, 1.0)  # 3 % worse: over the 2 % budget
    assert choose_deployment(rows).model == Path("good.onnx")


def test_tune_streaming_compares_per_frame_latency() -> None:
    def row(chunk: int, p50: float, precision: str = "fp32") -> dict[str, Any]:
        return _tune_row(
            path="s.onnx",
            precision=precision,
            mode="streaming",
            seq=None,
            chunk=chunk,
            p50_ms=p50,
            frame_p50_ms=p50 / chunk,
        )

    rows = [row(1, 1.0), row(10, 5.0), _tune_row(p50_ms=0.01)]  # + a sequence row
    chosen = choose_deployment(rows, mode="streaming")
    assert chosen.mode == "streaming"
    assert chosen.chunk == 10  # 0.5 ms per frame beats 1 ms, though each push takes longer
    assert chosen.measured["frame_p50_ms"] == 0.5
    assert "per frame" in chosen.reason


@pytest.mark.parametrize(
    ("rows", "kwargs", "needle"),
    [
        ([_synthetic_row()], {}, "--eval"),
        ([_synthetic_row(metric="accuracy", metric_value=None)], {}, "FP32"),
        ([_tune_row(precision="int8")], {}, "FP32"),
        ([_tune_row()], {"mode": "streaming"}, "no ONNX Runtime streaming rows"),
        ([_synthetic_row(runtime="torch", metric="accuracy")], {}, "no ONNX Runtime"),
        ([_tune_row()], {"batch": 4}, "nothing was measured at batch 4"),
        (
            [_tune_row(batch=4), _tune_row(precision="int8", metric_value=0.5)],
            {"batch": 1},
            "raise --max-degradation",
        ),
    ],
)
def test_tune_refuses_without_scored_candidates(
    rows: list[dict[str, Any]], kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        choose_deployment(rows, **kwargs)


# --------------------------------------------------------------------------------------------
# deployment configs


def test_deployment_round_trip_relative_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "models" / "m.onnx"
    config = DeploymentConfig(
        model=model,
        mode="streaming",
        session=SessionConfig(
            providers=("cuda", "cpu"), fallback=True, intra_op_threads=2, cuda_graphs=True
        ),
        batch=4,
        chunk=10,
        measured={"p50_ms": 1.5, "precision": "int8"},
        reason="fastest",
    )
    path = tmp_path / "cfg" / "deploy.json"
    write_deployment(config, path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["schema"] == DEPLOY_SCHEMA == "edgelstm.deploy/1"
    assert raw["model"] == "../models/m.onnx"  # relative, so the pair can be moved together
    monkeypatch.chdir(path.parent)  # resolution must not depend on the cwd
    back = read_deployment(path)
    assert back.model.resolve() == model.resolve()
    assert back.session == config.session
    assert back.session.providers == ("cuda", "cpu")
    assert (back.mode, back.batch, back.chunk) == ("streaming", 4, 10)
    assert (back.measured, back.reason) == (config.measured, "fastest")
    with pytest.raises(OutputExistsError):
        write_deployment(config, path)
    write_deployment(replace(config, chunk=None), path, overwrite=True)
    assert read_deployment(path).chunk is None


def test_deployment_model_next_to_the_config(tmp_path: Path) -> None:
    config = DeploymentConfig(model=tmp_path / "m.onnx", mode="sequence", session=SessionConfig())
    write_deployment(config, tmp_path / "deploy.json")
    raw = json.loads((tmp_path / "deploy.json").read_text(encoding="utf-8"))
    assert raw["model"] == "m.onnx"
    back = read_deployment(tmp_path / "deploy.json")
    assert back.model == tmp_path / "m.onnx"
    assert back.session == SessionConfig()


def _deploy_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": DEPLOY_SCHEMA,
        "model": "m.onnx",
        "mode": "sequence",
        "batch": 1,
        "chunk": None,
        "session": {"providers": ["cpu"], "intra_op_threads": 1},
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("{", "not valid JSON"),
        (json.dumps(_deploy_doc(schema="edgelstm.deploy/0")), "not an edgelstm deployment"),
        (json.dumps([1]), "not an edgelstm deployment"),
        (json.dumps(_deploy_doc(model=3)), "'model' must be a path"),
        (json.dumps(_deploy_doc(model="")), "'model' must be a path"),
        (json.dumps(_deploy_doc(mode="batch")), "'mode' must be sequence or streaming"),
        (json.dumps(_deploy_doc(batch=0)), "'batch' must be a positive integer"),
        (json.dumps(_deploy_doc(chunk=0)), "'chunk' must be a positive integer"),
        (json.dumps(_deploy_doc(session=[])), "session: expected an object"),
        (json.dumps(_deploy_doc(session={"provider": ["cpu"]})), r"unknown keys \['provider'\]"),
        (
            json.dumps(_deploy_doc(session={"providers": "cpu"})),
            "session.providers: expected a list",
        ),
        (
            json.dumps(_deploy_doc(session={"intra_op_threads": "2"})),
            "threads: expected an integer",
        ),
        (json.dumps(_deploy_doc(session={"cuda_device": True})), "device: expected an integer"),
        (json.dumps(_deploy_doc(session={"cuda_graphs": 1})), "graphs: expected true/false"),
        (json.dumps(_deploy_doc(session={"intra_op_threads": 0})), "threads must be >= 1"),
        (json.dumps(_deploy_doc(session={"graph_optimization": "max"})), "optimization"),
    ],
)
def test_read_deployment_rejects_bad_configs(
    tmp_path: Path, content: str | None, needle: str
) -> None:
    path = tmp_path / "deploy.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=needle):
        read_deployment(path)


@pytest.mark.parametrize(
    "changes",
    [
        {"session": {"intra_op_threads": True}},
        {"session": {"inter_op_threads": True}},
        {"batch": True},
        {"chunk": True},
    ],
    ids=["intra_op_threads", "inter_op_threads", "batch", "chunk"],
)
def test_read_deployment_rejects_booleans_as_numbers(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    path = _write(tmp_path / "deploy.json", _deploy_doc(**changes))
    with pytest.raises(InvalidInputError):
        read_deployment(path)


def test_read_deployment_rejects_non_object_measured(tmp_path: Path) -> None:
    path = _write(tmp_path / "deploy.json", _deploy_doc(measured=[1, 2]))
    with pytest.raises(InvalidInputError, match="measured"):
        read_deployment(path)


# --------------------------------------------------------------------------------------------
# the CLI: edgelstm benchmark


def _bench_args(*extra: str | Path) -> list[str | Path]:
    return ["--no-isolate", "--warmup", "1", "--iterations", "3", "--seq", str(SEQ), *extra]


def _assert_one_error(result: Any, code: int = 2, needle: str = "") -> None:
    assert result.code == code, (result.out, result.err)
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("error: "), result.err
    assert needle in result.err_lines[0]
    assert "Traceback" not in result.err


def test_cli_benchmark_two_models_and_torch_in_one_table(
    cli: CliRunner, artifacts: Artifacts, tmp_path: Path
) -> None:
    json_path, md, png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    result = cli(
        "benchmark",
        artifacts.seq,
        artifacts.int8,
        "--torch",
        artifacts.run,
        "--batch",
        "1,2",
        *_bench_args("--json", json_path, "--markdown", md, "--plot", png),
    )
    assert result.code == 0, result.err
    for name in ("m.onnx", "m.int8.onnx", "pytorch eager fp32", "pytorch eager int8"):
        assert name in result.out
    assert "p50 ms" in result.out
    assert "wrote" in result.err and str(json_path) in result.err
    doc = load_report(json_path)
    assert len(doc["rows"]) == 2 * 2 + 2 * 2  # two models x two batches + torch fp32/int8
    assert {r["model"] for r in doc["rows"]} == {
        "m.onnx",
        "m.int8.onnx",
        "pytorch eager fp32",
        "pytorch eager int8",
    }
    assert doc["plan"]["batches"] == [1, 2] and doc["plan"]["isolate"] is False
    text = md.read_text(encoding="utf-8")
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + 8
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_cli_benchmark_records_its_own_command(
    cli: CliRunner, artifacts: Artifacts, tmp_path: Path
) -> None:
    json_path = tmp_path / "b.json"
    result = cli("benchmark", artifacts.seq, *_bench_args("--json", json_path))
    assert result.code == 0, result.err
    command = load_report(json_path)["command"]
    assert command is not None and command.startswith("edgelstm benchmark ")
    assert str(artifacts.seq) in command


def test_cli_benchmark_compare_prints_ratios(
    cli: CliRunner, artifacts: Artifacts, bench: Bench, tmp_path: Path
) -> None:
    new_json = tmp_path / "new.json"
    result = cli(
        "benchmark",
        artifacts.seq,
        *_bench_args("--batch", "1", "--compare", bench.json_path, "--json", new_json),
    )
    assert result.code == 0, result.err
    assert "compared with the old report" in result.out
    others = len(bench.document["rows"]) - 1
    assert f"0 new row(s) and {others} old row(s) without a match" in result.out
    doc = load_report(new_json)
    comparison = doc["comparison"]
    (entry,) = comparison["rows"]
    (old_row,) = _rows(bench, path=str(artifacts.seq), batch=1)
    (new_row,) = doc["rows"]
    assert entry["old_p50_ms"] == old_row["p50_ms"]
    assert entry["ratio"] == pytest.approx(new_row["p50_ms"] / old_row["p50_ms"])
    assert f"{entry['ratio']:.2f}x" in result.out
    assert (comparison["only_new"], comparison["only_old"]) == (0, others)


def test_cli_benchmark_fails_on_regression(
    cli: CliRunner, artifacts: Artifacts, bench: Bench, tmp_path: Path
) -> None:
    # An old report that claims every row took a picosecond: any real run is slower.
    fast = json.loads(bench.json_path.read_text(encoding="utf-8"))
    for row in fast["rows"]:
        row["p50_ms"] = 1e-9
    old = _write(tmp_path / "fast.json", fast)
    args = _bench_args("--batch", "1", "--compare", old)
    result = cli("benchmark", artifacts.seq, *args)
    assert result.code == 0, result.err  # reported, not fatal, without --fail-on-regression
    assert "1 regression(s)" in result.out
    result = cli("benchmark", artifacts.seq, *args, "--fail-on-regression")
    assert result.code == 1, result.err
    assert result.err_lines[-1].startswith("error: 1 row(s) regressed more than 10%")
    assert "Traceback" not in result.err


def test_cli_benchmark_tune_writes_a_deploy_config_that_run_uses(
    cli: CliRunner, artifacts: Artifacts, classify_npz: Path, tmp_path: Path
) -> None:
    deploy = tmp_path / "cfg" / "d.json"
    result = cli(
        "benchmark",
        artifacts.seq,
        artifacts.int8,
        "--eval",
        artifacts.run,
        "--tune",
        "--tune-out",
        deploy,
        "--max-degradation",
        "1.0",
        *_bench_args("--json", tmp_path / "tuned.json"),
    )
    assert result.code == 0, result.err
    assert f"deployment: {deploy}" in result.err
    config = read_deployment(deploy)
    assert config.model.resolve() in (artifacts.seq.resolve(), artifacts.int8.resolve())
    assert config.mode == "sequence" and config.session.providers == ("cpu",)
    assert config.measured["metric"] == "accuracy"
    doc = load_report(tmp_path / "tuned.json")
    # Without --threads, --tune also tries every usable core.
    cores = cpu_info().usable_cores or 1
    assert doc["plan"]["threads"] == sorted({1, cores})
    assert config.session.intra_op_threads in doc["plan"]["threads"]
    chosen = [
        r
        for r in doc["rows"]
        if Path(r["path"]).resolve() == config.model.resolve()
        and r["threads"] == config.session.intra_op_threads
    ]
    assert [r["p50_ms"] for r in chosen] == [config.measured["p50_ms"]]
    # The report's deployment section has quickstart's shape: per mode, the file and its path.
    (entry,) = doc["deployment"].values()
    assert entry == {**json.loads(deploy.read_text(encoding="utf-8")), "file": deploy.as_posix()}
    assert entry["model"] == os.path.relpath(config.model.resolve(), deploy.parent)

    via_config = tmp_path / "via_config.csv"
    result = cli("run", "--config", deploy, "--input", classify_npz, "--output", via_config)
    assert result.code == 0, result.err
    direct = tmp_path / "direct.csv"
    # Same thread count as the config: two threads may round the reductions differently; and
    # the same batch size, the config's: dynamic INT8 scales activations per call.
    threads = str(config.session.intra_op_threads)
    batch = str(config.batch)
    result = cli(
        "run",
        config.model,
        "-i",
        classify_npz,
        "-o",
        direct,
        "--threads",
        threads,
        "--batch-size",
        batch,
    )
    assert result.code == 0, result.err
    assert via_config.read_text(encoding="utf-8") == direct.read_text(encoding="utf-8")

    refused = tmp_path / "refused.csv"
    result = cli("run", config.model, "--config", deploy, "-i", classify_npz, "-o", refused)
    _assert_one_error(result, needle="either MODEL or --config")
    result = cli("run", "--config", tmp_path / "nope.json", "-i", classify_npz, "-o", refused)
    _assert_one_error(result, needle="does not exist")
    assert not refused.exists()


def _no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the benchmark ran although the command had to stop first")

    monkeypatch.setattr(harness_module, "run_benchmark", refuse)


def test_cli_benchmark_tune_needs_eval(
    cli: CliRunner, artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_measuring(monkeypatch)
    result = cli("benchmark", artifacts.seq, "--tune", "--tune-out", tmp_path / "d.json")
    _assert_one_error(result, needle="--eval")
    assert not (tmp_path / "d.json").exists()


def test_cli_benchmark_refuses_an_existing_output_before_measuring(
    cli: CliRunner, artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_measuring(monkeypatch)
    existing = tmp_path / "b.json"
    existing.write_text("precious", encoding="utf-8")
    result = cli("benchmark", artifacts.seq, *_bench_args("--json", existing))
    _assert_one_error(result, needle="--overwrite")
    assert existing.read_text(encoding="utf-8") == "precious"
    other = tmp_path / "b.md"
    other.write_text("md", encoding="utf-8")
    result = cli("benchmark", artifacts.seq, "--json", tmp_path / "new.json", "--markdown", other)
    _assert_one_error(result, needle=str(other))
    assert not (tmp_path / "new.json").exists()


def test_cli_benchmark_refuses_a_bad_compare_report_before_measuring(
    cli: CliRunner, artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_measuring(monkeypatch)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "nope"}), encoding="utf-8")
    result = cli("benchmark", artifacts.seq, "--compare", old)
    _assert_one_error(result, needle="not an edgelstm benchmark report")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch", "0"], "--batch '0'"),
        (["--batch", "a,b"], "--batch 'a,b'"),
        (["--seq", "10,,20"], "--seq"),
        (["--threads", "0"], "--threads"),
        (["--providers", "cpu,"], "empty entry"),
        (["--providers", "nosuch"], "nosuch"),
        (["--iterations", "0"], "--iterations"),
    ],
)
def test_cli_benchmark_bad_options(
    cli: CliRunner, artifacts: Artifacts, args: list[str], needle: str
) -> None:
    result = cli("benchmark", artifacts.seq, "--no-isolate", *args)
    _assert_one_error(result, needle=needle)


def test_cli_benchmark_missing_model(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("benchmark", tmp_path / "missing.onnx", "--no-isolate")
    _assert_one_error(result, needle="missing.onnx does not exist")
    result = cli("benchmark", "--no-isolate")
    _assert_one_error(result, needle="at least one MODEL")


@needs_no_cuda
def test_cli_benchmark_cuda_is_refused_without_fallback(
    cli: CliRunner, artifacts: Artifacts
) -> None:
    result = cli("benchmark", artifacts.seq, *_bench_args("--providers", "cuda"))
    _assert_one_error(result, needle="--fallback")
    assert result.out == ""


@needs_no_cuda
def test_cli_benchmark_cuda_with_fallback_runs_on_cpu(
    cli: CliRunner, artifacts: Artifacts, tmp_path: Path
) -> None:
    json_path = tmp_path / "fb.json"
    result = cli(
        "benchmark",
        artifacts.seq,
        *_bench_args("--providers", "cuda", "--fallback", "--json", json_path),
    )
    assert result.code == 0, result.err
    assert "skipped cuda" in result.err
    assert "cpu (asked cuda)" in result.out
    doc = load_report(json_path)
    (row,) = doc["rows"]
    assert (row["provider"], row["requested_provider"]) == ("cpu", "cuda")
    assert [s["provider"] for s in doc["skipped"]] == ["cuda"]


# --------------------------------------------------------------------------------------------
# quickstart


@dataclass(frozen=True)
class Quick:
    out: Path
    result: QuickstartResult
    stages: list[str]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Quick:
    """The whole pipeline on JapaneseVowels, tiny and in-process. Read-only."""
    single_thread()
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    stages: list[str] = []
    result = quickstart(
        out,
        dataset="JapaneseVowels",
        preset="smoke",
        hidden=8,
        layers=1,
        batches=(1,),
        iterations=2,
        warmup=0,
        isolate=False,
        stage=stages.append,
    )
    return Quick(out, result, stages)


def test_quickstart_writes_models_and_report(quick: Quick) -> None:
    out, result = quick.out, quick.result
    assert result.out == out
    names = {p.name for p in out.iterdir()}
    assert {"run", "model.onnx", "model.stream.onnx", "report.json", "report.md"} <= names
    assert {"report.png", "deploy.json"} <= names
    assert (out / "run").is_dir() and any((out / "run").iterdir())
    assert sorted(p.name for p in out.parent.iterdir()) == ["qs"]  # no temporary folders
    assert all(f.is_file() and f.parent == out for f in result.files)
    assert (out / "report.png").read_bytes().startswith(PNG_MAGIC)
    assert [s[:4] for s in quick.stages if s[:1].isdigit()] == [f"{i}/5 " for i in range(1, 6)]
    assert "accuracy" in result.train_metrics

    doc = load_report(out / "report.json")
    assert doc == result.report
    assert doc["command"] == "edgelstm quickstart"
    assert doc["plan"]["iterations"] == 2 and doc["plan"]["batches"] == [1]
    assert doc["plan"]["isolate"] is False
    models = {r["model"] for r in doc["rows"]}
    assert {"model.onnx", "model.stream.onnx", "pytorch eager fp32", "pytorch eager int8"} <= models
    for row in doc["rows"]:
        # Paths point into the final folder, not the temporary one it was built in.
        assert Path(row["path"]).exists() and Path(row["path"]).parent in (out, out / "run")
        assert row["metric"] == "accuracy"
    assert _rows_of(doc, "model.stream.onnx") == {"streaming"}
    assert doc["summary"]
    # The trained model's accuracy next to the baselines, in the summary, report.md and the
    # stage line: speed is no use for a model that is no better than chance.
    accuracy = f"{result.train_metrics['accuracy']:.4f}"
    values = result.train_metrics["baselines"]["values"]
    assert doc["baselines"]["values"] == values
    headline = doc["summary"]["test accuracy"]
    assert next(iter(doc["summary"])) == "test accuracy"
    assert headline.startswith(f"{accuracy}; baselines (accuracy on the same test split): ")
    assert f"majority {values['majority']:.4f}, 1-NN ED {values['1-NN ED']:.4f}" in headline
    assert "trained model: " in headline or "the trained model does not" in headline
    assert f"    test accuracy {headline}" in quick.stages
    scored = [r for r in doc["rows"] if r["metric_value"] is not None]
    assert scored and all(isinstance(r["clears_chance"], bool) for r in scored)

    text = (out / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# edgelstm quickstart\n")
    assert "Command: `edgelstm quickstart`" in text
    assert f"- test accuracy: {headline}" in text
    assert "Baselines (accuracy on the same test split): majority " in text
    # One deployment per mode: deploy.json (sequence) and deploy.stream.json (streaming).
    assert set(doc["deployment"]) == {"sequence", "streaming"}
    assert result.deployment is not None and doc["deployment"]["sequence"] == result.deployment
    for mode, name in (("sequence", "deploy.json"), ("streaming", "deploy.stream.json")):
        assert doc["deployment"][mode]["file"] == name
        assert out / name in result.files
        deploy = read_deployment(out / name)
        assert deploy.mode == mode
        assert deploy.model.parent == out and deploy.model.is_file()
        assert deploy.model.name == doc["deployment"][mode]["model"]
    assert read_deployment(out / "deploy.stream.json").chunk == 1


def test_quickstart_relocates_paths_under_a_non_ascii_folder(tmp_path: Path) -> None:
    from edgelstm.fileio import relocate_paths

    tmp, final = tmp_path / ".résultats.x1.tmp", tmp_path / "résultats"
    document = {"rows": [{"path": str(tmp / "model.onnx")}], "plan": {"torch_run": str(tmp)}}
    moved = relocate_paths(document, tmp, final)
    assert moved == {
        "rows": [{"path": str(final / "model.onnx")}],
        "plan": {"torch_run": str(final)},
    }


def _rows_of(doc: dict[str, Any], model: str) -> set[str]:
    return {r["mode"] for r in doc["rows"] if r["model"] == model}


def test_quickstart_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        quickstart(out, preset="smoke", hidden=8, layers=1, iterations=1, isolate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def _quick_copy(quick: Quick, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "qs"
    shutil.copytree(quick.out, copy)
    return copy


def _tree_digests(folder: Path) -> dict[str, str]:
    from edgelstm.fileio import file_sha256

    return {str(p.relative_to(folder)): file_sha256(p) for p in folder.rglob("*") if p.is_file()}


QUICK_SETTINGS: dict[str, Any] = {
    "dataset": "JapaneseVowels", "preset": "smoke", "hidden": 8, "layers": 1,
}  # fmt: skip


def test_quickstart_reuse_keeps_the_trained_models_and_times_them_again(
    quick: Quick, tmp_path: Path
) -> None:
    out = _quick_copy(quick, tmp_path)
    kept = {name: digest for name, digest in _tree_digests(out).items()
            if name.startswith("run") or name.startswith("model")}  # fmt: skip
    assert {"run/model.safetensors", "model.onnx", "model.stream.int8.onnx"} <= set(kept)
    stages: list[str] = []
    result = quickstart(
        out, **QUICK_SETTINGS, batches=(1,), iterations=3, warmup=0, isolate=False,
        reuse=True, stage=stages.append,
    )  # fmt: skip
    assert not any(s.startswith(("1/5", "2/5", "3/5")) for s in stages), stages
    assert stages[0].startswith("1-3/5 reuse: the model trained on JapaneseVowels (smoke")
    assert "model.onnx, model.stream.onnx, model.int8.onnx, model.stream.int8.onnx" in stages[0]
    after = _tree_digests(out)
    assert {name: after[name] for name in kept} == kept  # the same bytes, not retrained
    assert result.train_metrics == quick.result.train_metrics
    doc = load_report(out / "report.json")
    assert doc["plan"]["iterations"] == 3  # the benchmark did run again
    assert doc["summary"]["test accuracy"] == quick.result.report["summary"]["test accuracy"]
    assert all(Path(row["path"]).exists() for row in doc["rows"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"preset": "default"}, "preset 'smoke' (now 'default')"),
        ({"hidden": 16}, "hidden 8 (now 16)"),
        ("tamper", "model.int8.onnx is missing or changed"),
        ("no record", "holds no steps.json, so it is not a quickstart folder"),
    ],
)
def test_quickstart_reuse_refuses_what_it_cannot_vouch_for(
    quick: Quick, tmp_path: Path, change: Any, needle: str
) -> None:
    out = _quick_copy(quick, tmp_path)
    settings = dict(QUICK_SETTINGS)
    if change == "tamper":
        (out / "model.int8.onnx").write_bytes(b"not the model the quickstart made")
    elif change == "no record":
        (out / "steps.json").unlink()
    else:
        settings.update(change)
    before = _tree_digests(out)
    with pytest.raises(InvalidInputError, match="--reuse") as info:
        quickstart(out, **settings, iterations=1, isolate=False, reuse=True)
    assert needle in str(info.value) and "--overwrite" in str(info.value)
    assert _tree_digests(out) == before  # nothing lost, nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]


def test_cli_quickstart_passes_its_options_and_prints_the_report(
    cli: CliRunner, quick: Quick, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI plumbing, with the pipeline stood in by the (already run) tiny quickstart."""
    calls: list[dict[str, Any]] = []

    def fake(out: Path, **kwargs: Any) -> QuickstartResult:
        calls.append({"out": out, **kwargs})
        kwargs["stage"]("1/5 train: stand-in")
        return quick.result

    monkeypatch.setattr(quickstart_module, "quickstart", fake)
    out = tmp_path / "qs"
    result = cli("quickstart", "--out", out, "--preset", "smoke", "--iterations", "2")
    assert result.code == 0, result.err
    (call,) = calls
    assert call["out"] == out
    assert (call["preset"], call["iterations"], call["overwrite"]) == ("smoke", 2, False)
    # No --task or --dataset: the classify tour, on that task's default set (JapaneseVowels).
    assert (call["task"], call["dataset"]) == ("classify", None)
    assert "edgelstm quickstart" in result.out and "model.onnx" in result.out
    assert "1/5 train: stand-in" in result.err
    assert "deployment:" in result.err and "wrote" in result.err

    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = cli("quickstart", "--out", out, "--preset", "smoke")
    _assert_one_error(result, needle="--overwrite")
    assert "--reuse keeps its trained model" in result.err
    assert len(calls) == 1  # refused before the pipeline started
    result = cli("quickstart", "--out", out, "--preset", "smoke", "--reuse")
    assert result.code == 0, result.err
    assert calls[-1]["reuse"] is True and calls[0]["reuse"] is False


@pytest.mark.slow
def test_cli_quickstart_end_to_end(cli: CliRunner, tmp_path: Path) -> None:
    """The real command (default model size, isolated rows): ~40 s on two cores."""
    out = tmp_path / "qs"
    result = cli("quickstart", "--out", out, "--preset", "smoke", "--iterations", "2")
    assert result.code == 0, result.err
    doc = load_report(out / "report.json")
    assert doc["plan"]["isolate"] is True
    for row in doc["rows"]:
        assert isinstance(row["peak_rss_mb"], float) and row["peak_rss_mb"] > 0
    assert (out / "report.png").read_bytes().startswith(PNG_MAGIC)
    assert "pytorch eager fp32" in result.out


# --------------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_cuda_rows_with_and_without_cuda_graphs(artifacts: Artifacts) -> None:
    from edgelstm.runtimes.ort.provider_report import probe_provider

    probe = probe_provider("cuda")
    if not probe.usable:
        pytest.skip(f"CUDA is not usable here: {probe.detail}")
    plan = BenchmarkPlan(
        models=(artifacts.seq,),
        providers=("cuda",),
        cuda_graphs=True,
        seqs=(SEQ,),
        batches=(1,),
        warmup=1,
        iterations=3,
        isolate=False,
    )
    rows = run_benchmark(plan).rows
    assert sorted(r["cuda_graphs"] for r in rows) == [False, True]
    for row in rows:
        assert row["provider"] == row["requested_provider"] == "cuda"
        assert row["io_binding"] is True
        assert row["min_ms"] <= row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_interleaved_rounds_split_the_iterations_exactly(artifacts: Artifacts) -> None:
    from edgelstm.benchmarks.measure import measure_interleaved

    single_thread()
    base = Measurement(
        str(artifacts.seq),
        "onnxruntime",
        "cpu",
        "fp32",
        "sequence",
        1,
        5,
        1,
        warmup=0,
        iterations=7,
    )
    torch_row = replace(base, model=str(artifacts.run), runtime="torch")
    rows = measure_interleaved([base, torch_row], rounds=3, isolate=False)
    assert [r["count"] for r in rows] == [7, 7]
    assert [r["provider"] for r in rows] == ["cpu", "cpu"]
    assert all("_finish" not in r for r in rows)
    with pytest.raises(InvalidInputError, match="rounds must be >= 1"):
        measure_interleaved([base], rounds=0, isolate=False)


def test_torch_streaming_rows_carry_a_conv_front_ends_state(
    tmp_path: Path, classify_npz: Path
) -> None:
    """The PyTorch streaming row pushes chunks through SequenceModel.step with the export's
    state (h, c and the front end's frames); it used to call model.rnn alone and failed."""
    from edgelstm.training.trainer import train

    run = tmp_path / "fe"
    train(
        "classify",
        data=classify_npz,
        out=run,
        frontend="conv",
        frontend_stride=2,
        frontend_kernel=4,
        frontend_channels=4,
        **TINY_KW,
    )
    plan = BenchmarkPlan(
        models=(),
        torch_run=run,
        stream=True,
        chunks=(2,),
        seqs=(6,),
        warmup=1,
        iterations=3,
        isolate=False,
    )
    rows = run_benchmark(plan).rows
    streaming = [r for r in rows if r["mode"] == "streaming" and r["precision"] == "fp32"]
    assert len(streaming) == 1, rows
    assert streaming[0]["p50_ms"] > 0


def test_markdown_names_the_placement_of_rows_off_the_cpu() -> None:
    from edgelstm.benchmarks.report import placement_lines

    rows = [
        {"model": "m.onnx", "runtime": "onnxruntime", "provider": "cpu", "placement": {"cpu": 9}},
        {"model": "m.onnx", "runtime": "onnxruntime", "provider": "openvino",
         "placement": {"openvino": 15}},
        {"model": "q.onnx", "runtime": "onnxruntime", "provider": "openvino",
         "placement": {"openvino": 15, "cpu": 5}},
        {"model": "q.onnx", "runtime": "onnxruntime", "provider": "openvino",
         "placement": {"openvino": 15, "cpu": 5}},
    ]  # fmt: skip
    assert placement_lines(rows) == [
        "Node placement (ONNX Runtime's report):",
        "",
        "- m.onnx on openvino: all 15 nodes on openvino",
        "- q.onnx on openvino: partial: 15 of 20 nodes on openvino, 5 on cpu",
        "",
    ]
    assert placement_lines(rows[:1]) == []


class _Parsed(Exception):
    """Raised in place of running a suite once its command line is parsed."""


@pytest.mark.parametrize(
    ("suite", "argv", "flag", "default"),
    [
        ("reference", [], "out", "benchmark-results"),
        ("training_quality", [], "out", "benchmark-results"),
        ("quantization_speed", [], "out", "benchmark-results"),
        ("long_stream", [], "out", "benchmark-results"),
        ("serve_load.runner", ["--model", "reference"], "out", "benchmark-results"),
        ("batch_throughput", ["--model", "reference"], "out_dir", "benchmark-results"),
        (
            "device_install",
            ["--env", "device=.venv", "--model", "m.onnx", "--input", "x.npz"],
            "out",
            "benchmark-results/device_install",
        ),
    ],
)
def test_a_suite_writes_to_a_working_folder_unless_told_the_committed_one(
    monkeypatch: pytest.MonkeyPatch, suite: str, argv: list[str], flag: str, default: str
) -> None:
    # A trial run must not overwrite benchmarks/results: only `--out benchmarks/results` may.
    import argparse
    import importlib

    parse = argparse.ArgumentParser.parse_args
    parsed: list[argparse.Namespace] = []

    def parse_then_stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        parsed.append(parse(self, *args, **kwargs))
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    main = importlib.import_module(f"edgelstm.benchmarks.suites.{suite}").main
    for given, expected in (([], default), ([f"--{flag.replace('_', '-')}", "x"], "x")):
        with pytest.raises(_Parsed):
            main([*argv, *given])
        assert getattr(parsed.pop(), flag) == Path(expected)
