"""One evaluation path: the :class:`Gate` arithmetic, and ONNX models evaluated on a
checkpoint's test split, which the quantization gate and the benchmark report alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import single_thread

from edgelstm.benchmarks.harness import BenchmarkPlan, run_benchmark
from edgelstm.config import ModelConfig
from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.exporters.quantize import QuantizeResult, quantize
from edgelstm.runtimes.model_io.accuracy import evaluate_onnx
from edgelstm.tasks import DEFAULT_GATES, Gate, gate_for_metric
from edgelstm.training.evaluation import EvaluationData
from edgelstm.training.models import build_model
from edgelstm.training.trainer import TrainResult

ACCURACY = Gate("accuracy", higher_is_better=True, allowed=0.01)
MAE = Gate("mae", higher_is_better=False, allowed=0.02, relative=True)

# --------------------------------------------------------------------------------------------
# Gate arithmetic


@pytest.mark.parametrize(
    ("gate", "before", "after", "degradation"),
    [
        (ACCURACY, 0.95, 0.90, 0.05),  # absolute, higher is better: a drop is a loss
        (ACCURACY, 0.90, 0.95, -0.05),  # ... and a gain is negative
        (Gate("mae", False, 0.5), 2.0, 2.3, 0.3),  # absolute, lower is better: a rise is a loss
        (Gate("mae", False, 0.5), 2.0, 1.7, -0.3),
        (MAE, 2.0, 2.03, 0.015),  # relative, lower is better: 1.5 % worse
        (Gate("auroc", True, 0.1, relative=True), 0.8, 0.6, 0.25),  # relative, higher is better
        (ACCURACY, 0.0, 0.0, 0.0),  # before == 0 is an ordinary value in absolute units
        (ACCURACY, 0.0, 0.2, -0.2),
    ],
)
def test_degradation(gate: Gate, before: float, after: float, degradation: float) -> None:
    assert gate.degradation(before, after) == pytest.approx(degradation)


@pytest.mark.parametrize("after", [0.0, 0.5, -0.5])
def test_relative_degradation_from_zero_is_infinite_and_fails(after: float) -> None:
    """No fraction of 0 can be lost or kept: the relative gate cannot vouch for the result."""
    assert MAE.degradation(0.0, after) == math.inf
    assert not MAE.passes(0.0, after)


def test_passes_up_to_exactly_the_allowed_loss() -> None:
    # 0.95 - 0.94 computes as 0.010000000000000009: one test sample in a hundred must pass.
    assert ACCURACY.passes(0.95, 0.94)
    assert not ACCURACY.passes(0.95, 0.939)
    assert MAE.passes(2.0, 2.04)
    assert not MAE.passes(2.0, 2.041)
    assert ACCURACY.passes(0.9, 0.95)  # an improvement always passes


@pytest.mark.parametrize("degradation", [math.nan, math.inf])
def test_a_metric_that_could_not_be_computed_fails(degradation: float) -> None:
    assert not Gate("auroc", True, allowed=1e9).accepts(degradation)
    assert not ACCURACY.passes(0.9, math.nan)


def test_with_allowed_replaces_only_the_allowance() -> None:
    assert ACCURACY.with_allowed(None) is ACCURACY
    wider = ACCURACY.with_allowed(0.2)
    assert wider == Gate("accuracy", True, 0.2) and wider.passes(0.95, 0.80)


def test_default_gates_per_task() -> None:
    assert {
        "classify": Gate("accuracy", True, 0.01),
        "forecast": Gate("mae", False, 0.02, relative=True),
        "anomaly": Gate("auroc", True, 0.01),
        "tag": Gate("macro_f1", True, 0.01),
        "transcribe": Gate("error_rate", False, 0.005),
    } == DEFAULT_GATES
    assert gate_for_metric("mae") is DEFAULT_GATES["forecast"]
    assert gate_for_metric("macro_f1") is DEFAULT_GATES["tag"]
    assert gate_for_metric("smape") is None


# --------------------------------------------------------------------------------------------
# one evaluation path


@dataclass(frozen=True)
class Models:
    run: TrainResult
    fp32: Path
    int8: Path
    quantized: QuantizeResult


@pytest.fixture(scope="module")
def models(trained_classify: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Models:
    """FP32 and dynamic-INT8 exports of the shared classify run, gated. Read-only."""
    single_thread()
    folder = tmp_path_factory.mktemp("evaluation")
    fp32, int8 = folder / "m.onnx", folder / "m.int8.onnx"
    export(trained_classify.out, fp32)
    # A wide allowance: the tiny model is barely trained; the numbers, not the verdict, count.
    quantized = quantize(fp32, int8, mode="dynamic-int8", max_degradation=1.0)
    return Models(trained_classify, fp32, int8, quantized)


def test_gate_and_benchmark_report_the_same_metric_values(models: Models) -> None:
    gate = models.quantized.gate
    assert gate is not None
    plan = BenchmarkPlan(
        models=(models.fp32, models.int8),
        seqs=(8,),
        eval_run=models.run.out,
        warmup=0,
        iterations=1,
        rounds=1,
        isolate=False,
    )
    rows = {row["path"]: row for row in run_benchmark(plan).rows}
    assert {row["metric"] for row in rows.values()} == {gate.metric} == {"accuracy"}
    assert rows[str(models.fp32)]["metric_value"] == gate.float_value
    assert rows[str(models.int8)]["metric_value"] == gate.quantized_value
    # ... and both are the checkpoint's own number, as training measured the PyTorch model.
    assert gate.float_value == pytest.approx(models.run.metrics["accuracy"])


def test_evaluate_onnx_takes_a_folder_or_data_prepared_once(models: Models) -> None:
    data = EvaluationData.from_run(models.run.out)
    assert data.gate is DEFAULT_GATES["classify"]
    assert evaluate_onnx(models.fp32, data) == evaluate_onnx(models.fp32, models.run.out)


def test_evaluate_onnx_refuses_a_model_of_another_checkpoint(
    models: Models, tmp_path: Path
) -> None:
    config = ModelConfig(task="classify", input_size=5, hidden_size=4, num_layers=1, num_classes=2)
    other = tmp_path / "other.onnx"
    export(build_model(config).eval(), other)
    with pytest.raises(InvalidInputError, match=r"takes 5 features but .* has 3; --eval needs"):
        evaluate_onnx(other, models.run.out)
