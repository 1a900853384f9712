"""The GPU acceptance command without a GPU: its clean refusal, its writers, its budget.

The measurements themselves need a GPU; here the pure parts are tested (planning on a fake
clock, the Markdown and JSON from a hand-made document) plus a plain ``session.run`` row
through measure's isolated path on the CPU provider. No test asserts a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import pytest
from conftest import needs_no_cuda
from onnx import TensorProto, helper

from edgelstm.benchmarks.measure import Measurement, measure, prepare
from edgelstm.benchmarks.suites import gpu_acceptance as ga
from edgelstm.errors import InvalidInputError
from edgelstm.hardware import GpuInfo
from edgelstm.runtimes.ort.provider_report import ProbeResult
from edgelstm.runtimes.ort.providers import PROVIDERS


@pytest.fixture(scope="module")
def tiny_sequence_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x [batch, time, 3] -> Relu -> y: enough for a session with a sequence input."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------------
# no GPU: one error line, exit 2, nothing written


@needs_no_cuda
def test_without_cuda_it_exits_2_with_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    done = subprocess.run(
        [sys.executable, "-m", "edgelstm.benchmarks.suites.gpu_acceptance", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no usable CUDA GPU")
    assert "has no CUDAExecutionProvider" in lines[0]
    assert "pip install 'edgelstm[gpu]'" in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not out.exists()


def test_a_failed_cuda_probe_is_named_on_the_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu = GpuInfo(0, "NVIDIA H200", "570.1", "12.8", 143771)
    probe = ProbeResult("cuda", False, "session creation failed: libcudnn.so.9:\n  cannot open")
    monkeypatch.setattr("edgelstm.hardware.gpu_info", lambda: [gpu])
    monkeypatch.setattr(
        "edgelstm.runtimes.ort.providers.available_providers",
        lambda: [PROVIDERS["cuda"], PROVIDERS["cpu"]],
    )
    monkeypatch.setattr("edgelstm.runtimes.ort.provider_report.probe_provider", lambda name: probe)
    assert ga.gpu_problems() == [
        "the CUDA provider probe failed: session creation failed: libcudnn.so.9: cannot open"
    ]
    out = tmp_path / "new"
    assert ga.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "libcudnn.so.9" in err[0]
    assert "pip install 'edgelstm[gpu]'" in err[0]
    assert not out.exists()


def test_no_gpu_message_names_every_problem_and_the_fix() -> None:
    message = ga.no_gpu_message(["nvidia-smi found no NVIDIA GPU", "no CUDAExecutionProvider"])
    assert "nvidia-smi found no NVIDIA GPU; no CUDAExecutionProvider;" in message
    assert message.endswith(ga.FIX)


# --------------------------------------------------------------------------------------------
# the rows and the budget


def test_cases_cover_every_configuration_tensorrt_last() -> None:
    cases = ga.acceptance_cases()
    keys = [(c.key, c.batch) for c in cases]
    assert len(keys) == len(set(keys)) == 2 * 6 + 2 + 2
    assert {c.batch for c in cases if c.mode == "sequence"} == {1, 64}
    assert all(c.steps == 100 for c in cases if c.mode == "sequence")
    frames = [c for c in cases if c.mode == "streaming"]
    assert [(c.provider, c.batch, c.steps) for c in frames] == [("cpu", 1, 1), ("cuda", 1, 1)]
    assert [c.key for c in cases[-2:]] == ["ort-tensorrt", "ort-tensorrt"]
    graphs = ["ort-cuda-iobinding-graph", "pytorch-cuda-graph"]
    assert sorted(c.key for c in cases if c.cuda_graphs) == sorted(graphs * 2)
    assert [c.key for c in cases if not c.io_binding] == ["ort-cuda-plain"] * 2
    assert {c.runtime for c in cases if c.key.startswith("pytorch")} == {"torch"}
    assert set(ga.H200_TURN1) <= set(keys)


def _clock(step_s: float) -> tuple[list[float], Any]:
    """A fake clock that measure_one moves forward by ``step_s`` per configuration."""
    now = [0.0]

    def measure_one(case: ga.Case, left_s: float) -> dict[str, Any]:
        now[0] += step_s
        return {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "throughput_per_s": 1000.0}

    return now, measure_one


def test_configurations_not_started_in_time_are_skipped_for_budget() -> None:
    now, measure_one = _clock(100.0)
    cases = [ga.Case(f"c{i}", f"case {i}", "cuda", "model.onnx", 1) for i in range(5)]
    lefts: list[float] = []

    def recording(case: ga.Case, left_s: float) -> dict[str, Any]:
        lefts.append(left_s)
        result: dict[str, Any] = measure_one(case, left_s)
        return result

    rows = ga.run_plan(cases, recording, budget_s=250.0, started=0.0, clock=lambda: now[0])
    # 20 s estimates: started at 0, 100 and 200 s; at 300 s nothing is left.
    assert [r["status"] for r in rows] == ["measured"] * 3 + ["skipped"] * 2
    assert lefts == [250.0, 150.0, 50.0]
    assert rows[3]["reason"] == (
        "skipped for budget: 300 s of --budget-s 250 spent, this needs about 20 s"
    )
    assert rows[0]["p50_ms"] == 1.0 and rows[3]["p50_ms"] is None


def test_a_tiny_budget_starts_nothing() -> None:
    def never(case: ga.Case, left_s: float) -> dict[str, Any]:
        raise AssertionError("nothing fits in the budget")

    rows = ga.run_plan(ga.acceptance_cases(), never, budget_s=5.0, started=0.0, clock=lambda: 1.0)
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(r["reason"].startswith("skipped for budget: 1 s of --budget-s 5") for r in rows)


def test_known_skips_and_failures_become_rows_not_crashes() -> None:
    now, measure_one = _clock(1.0)

    def failing(case: ga.Case, left_s: float) -> dict[str, Any]:
        if case.key == "ort-cuda-iobinding-graph":
            raise RuntimeError("CUDA graph capture failed\nat node 3")
        result: dict[str, Any] = measure_one(case, left_s)
        return result

    cases = ga.acceptance_cases(batches=(1,))
    reasons = {"ort-tensorrt": "this onnxruntime has no TensorrtExecutionProvider"}
    rows = ga.run_plan(
        cases, failing, budget_s=1e6, started=0.0, clock=lambda: now[0], reasons=reasons
    )
    by_key = {r["key"]: r for r in rows}
    assert by_key["ort-tensorrt"]["status"] == "skipped"
    assert by_key["ort-tensorrt"]["reason"] == reasons["ort-tensorrt"]
    failed = by_key["ort-cuda-iobinding-graph"]
    assert failed["status"] == "failed"
    assert failed["reason"] == "RuntimeError: CUDA graph capture failed at node 3"
    assert by_key["ort-cuda-plain"]["status"] == "measured"
    assert by_key["ort-cuda-plain"]["h200_turn1"] == "2.3-3.3 ms"
    assert ga.acceptance_exit_code({"pytest": {"status": "passed"}, "rows": rows}) == 1


def test_exit_code_counts_failures_not_skips() -> None:
    skipped = ga.case_row(ga.acceptance_cases()[0], "skipped", "no torch")
    assert ga.acceptance_exit_code({"pytest": {"status": "passed"}, "rows": [skipped]}) == 0
    assert ga.acceptance_exit_code({"pytest": {"status": "no tests"}, "rows": []}) == 0
    for status in ("failed", "timeout", "error"):
        assert ga.acceptance_exit_code({"pytest": {"status": status}, "rows": []}) == 1


def test_missing_artifacts_skip_their_rows_with_the_reason(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    folder = tmp_path / "work"
    folder.mkdir()
    reasons = ga.ready_artifacts(folder, given)
    assert set(reasons) == {c.key for c in ga.acceptance_cases()}
    assert reasons["ort-cuda-plain"] == (
        f"no model.onnx: not in --artifacts {given} (make it with --prepare-artifacts)"
    )
    assert reasons["ort-cuda-frame"].startswith("no model.stream.onnx")
    assert reasons["pytorch-cudnn"].startswith("no reference")


# --------------------------------------------------------------------------------------------
# subprocess summaries


def test_pytest_counts_come_from_the_summary_line() -> None:
    output = "....s\n3 failed lines above\n4 passed, 1 skipped, 700 deselected in 3.21s\n"
    counts = ga.parse_pytest_counts(output)
    assert counts == {"passed": 4, "failed": 0, "skipped": 1, "errors": 0, "deselected": 700}
    assert ga.parse_pytest_counts("1 failed, 2 errors in 1.0s")["errors"] == 2
    assert ga.parse_pytest_counts("")["passed"] == 0


def test_tensorrt_reason_reads_the_probe_report() -> None:
    cuda = {"name": "cuda"}
    assert "no TensorrtExecutionProvider" in str(ga.tensorrt_reason({"providers": [cuda]}))
    report: dict[str, Any] = {
        "providers": [cuda, {"name": "tensorrt"}],
        "probes": [
            {"provider": "tensorrt", "usable": False, "detail": "libnvinfer.so.10\nmissing"}
        ],
    }
    assert ga.tensorrt_reason(report) == "the TensorRT probe failed: libnvinfer.so.10 missing"
    report["probes"][0]["usable"] = True
    assert ga.tensorrt_reason(report) is None
    assert "no report (timed out" in str(ga.tensorrt_reason({"error": "timed out: "}))


# --------------------------------------------------------------------------------------------
# writers


def _document() -> dict[str, Any]:
    cases = {(c.key, c.batch): c for c in ga.acceptance_cases()}
    measured = ga.case_row(
        cases[("pytorch-cudnn", 1)], "measured",
        p50_ms=0.5, p90_ms=0.6, p99_ms=0.7, throughput_per_s=2000.0,
    )  # fmt: skip
    skipped = ga.case_row(
        cases[("ort-tensorrt", 64)], "skipped", "this onnxruntime has no TensorrtExecutionProvider"
    )
    return {
        "schema": ga.SCHEMA,
        "budget_s": 480.0,
        "elapsed_s": 301.4,
        "environment": {
            "gpus": [{"name": "NVIDIA H200", "driver_version": "570.1", "cuda_version": "12.8"}],
            "libraries": {"onnxruntime": "1.22.0", "torch": "2.10.0"},
            "onnxruntime_distributions": [{"name": "onnxruntime-gpu", "version": "1.22.0"}],
        },
        "pytest": {"command": "python -m pytest -m gpu -q", "status": "passed", "passed": 3,
                   "failed": 0, "skipped": 1, "errors": 0, "returncode": 0, "seconds": 12.5},
        "rows": [measured, skipped],
        "providers_probe": {"probes": [{"provider": "cuda", "usable": True, "detail": "ok"}]},
    }  # fmt: skip


def test_markdown_and_json_from_a_hand_made_document(tmp_path: Path) -> None:
    document = _document()
    out = tmp_path / "results"
    ga.write_results(out, document)
    assert sorted(p.name for p in out.iterdir()) == ["gpu_acceptance.json", "gpu_acceptance.md"]
    assert json.loads((out / "gpu_acceptance.json").read_text()) == document
    markdown = (out / "gpu_acceptance.md").read_text()
    assert markdown == ga.to_markdown(document)
    lines = markdown.splitlines()
    assert (
        "| PyTorch cuDNN eager | 1 | measured | 0.500 | 0.600 | 0.700 | 2,000 | 0.51 ms |" in lines
    )
    assert "| ORT TensorRT, IO binding | 64 | skipped | — | — | — | — |  |" in lines
    assert (
        "- ORT TensorRT, IO binding, batch 64, skipped: this onnxruntime has no "
        "TensorrtExecutionProvider"
    ) in lines
    assert "3 passed, 0 failed, 1 skipped, 0 errors (exit 0, 12.5 s)." in lines
    assert "- cuda: usable (ok)" in lines
    assert any("NVIDIA H200 (driver 570.1, CUDA 12.8)" in line for line in lines)
    assert any("onnxruntime 1.22.0 (onnxruntime-gpu 1.22.0)" in line for line in lines)


def test_markdown_says_why_the_tests_and_probe_did_not_run() -> None:
    document = _document()
    document["pytest"] = {"command": "python -m pytest -m gpu -q", "status": "skipped",
                          "reason": "no checkout with tests/ at /x"}  # fmt: skip
    document["providers_probe"] = {"error": "timed out: "}
    lines = ga.to_markdown(document).splitlines()
    assert "## `python -m pytest -m gpu -q`: skipped" in lines
    assert "Not run: no checkout with tests/ at /x." in lines
    assert "No report: timed out: " in lines


# --------------------------------------------------------------------------------------------
# rows through measure (the CPU provider here) and the CUDA-graph settings it refuses


def test_plain_session_run_rows_go_through_measure_isolated(
    tiny_sequence_model: Path,
) -> None:
    case = ga.Case("ort-cuda-plain", "plain", "cpu", tiny_sequence_model.name, 2, steps=4,
                   io_binding=False)  # fmt: skip
    row = ga.measure_case(case, tiny_sequence_model.parent, 3, 1, timeout_s=120)
    assert row["count"] == 3
    assert row["provider"] == "cpu" and row["io_binding"] is False
    assert row["p50_ms"] <= row["p99_ms"]
    assert row["peak_rss_mb"] is None or row["peak_rss_mb"] > 0
    m = Measurement(str(tiny_sequence_model), "onnxruntime", "cpu", "fp32", "sequence", 2, 4, 1,
                    warmup=0, iterations=2, io_binding=False)  # fmt: skip
    in_process = measure(m)
    assert in_process["count"] == 2 and in_process["io_binding"] is False


@pytest.mark.parametrize(("provider", "mode"), [("cpu", "sequence"), ("cuda", "streaming")])
def test_torch_cuda_graphs_off_cuda_or_streaming_are_refused(
    tmp_path: Path, provider: str, mode: str
) -> None:
    m = Measurement(str(tmp_path / "no-checkpoint"), "torch", provider, "fp32", mode, 1, 4, 1,
                    cuda_graphs=True)  # fmt: skip
    with pytest.raises(InvalidInputError) as info:
        measure(m)
    assert str(info.value) == (
        f"cuda_graphs for torch captures a whole-sequence forward on CUDA; this row is {mode} on "
        f"{provider} (use provider cuda and mode sequence, or drop cuda_graphs)"
    )


def test_ort_cuda_graphs_without_io_binding_are_refused(tiny_sequence_model: Path) -> None:
    m = Measurement(str(tiny_sequence_model), "onnxruntime", "cuda", "fp32", "sequence", 1, 4, 1,
                    cuda_graphs=True, io_binding=False)  # fmt: skip
    with pytest.raises(InvalidInputError, match="CUDA graphs run through IO binding"):
        measure(m)


# --------------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_torch_cuda_graph_replays_the_eager_output(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA device")
    from edgelstm.benchmarks.suites.reference import reference_checkpoint

    run = reference_checkpoint(tmp_path / "reference")
    m = Measurement(str(run), "torch", "cuda", "fp32", "sequence", 2, 10, 1, warmup=2,
                    cuda_graphs=True)  # fmt: skip
    prepared = prepare(m)  # capture, first call and warm-up replays
    assert any("captured once at this fixed shape" in n for n in prepared.info["notes"])
    replayed = prepared.call()
    assert isinstance(replayed, torch.Tensor)
    # The eager row of the same Measurement runs the same seeded input.
    eager = prepare(replace(m, cuda_graphs=False)).call()
    torch.testing.assert_close(replayed, eager, atol=1e-5, rtol=1e-4)
    row = measure(replace(m, iterations=3))
    assert row["count"] == 3 and row["provider"] == "cuda" and row["io_binding"] is False
