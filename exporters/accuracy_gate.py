"""The task-metric gate: a quantized edgelstm model scored on its checkpoint's test split
beside the FP32 model, and the checkpoint's baselines that the two scores are read against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgelstm.errors import CheckFailedError, InvalidInputError, MissingDependencyError
from edgelstm.exporters.audit import CheckpointBaselines
from edgelstm.metadata import ModelMetadata
from edgelstm.tasks import Gate
from edgelstm.training.checkpoint import CONFIG_FILE

__all__ = ["AccuracyGate", "accuracy_gate", "eval_run_dir", "gate_baselines", "refuse_failed_gate"]


@dataclass(frozen=True)
class AccuracyGate:
    """The gate's verdict on one quantization: both scores and the :class:`Gate` arithmetic.

    Flat fields, because this record is the ``gate`` object of ``quantize --json``.
    """

    metric: str
    float_value: float
    quantized_value: float
    degradation: float
    allowed: float
    relative: bool

    @classmethod
    def measure(cls, gate: Gate, float_value: float, quantized_value: float) -> AccuracyGate:
        """Apply ``gate`` to the float and the quantized model's scores."""
        degradation = gate.degradation(float_value, quantized_value)
        return cls(
            gate.metric, float_value, quantized_value, degradation, gate.allowed, gate.relative
        )

    @property
    def passed(self) -> bool:
        # Only ``allowed`` matters to the verdict; the direction is already in degradation.
        return Gate(self.metric, True, self.allowed, self.relative).accepts(self.degradation)

    def describe(self) -> str:
        unit = " (relative)" if self.relative else ""
        return (
            f"{self.metric}: float {self.float_value:.4f}, quantized {self.quantized_value:.4f}, "
            f"degradation {self.degradation:.4f}{unit} (allowed {self.allowed:g})"
        )


def refuse_failed_gate(
    gate: AccuracyGate | None, baselines: CheckpointBaselines | None, out: Path
) -> None:
    if gate is None or gate.passed:
        return
    judged = ""
    if baselines is not None:
        scores = {"float": gate.float_value, "quantized": gate.quantized_value}
        judged = "; ".join(["", baselines.line(), *baselines.shortfalls(scores)])
    raise CheckFailedError(
        f"accuracy gate failed: {gate.describe()}{judged}; nothing written to {out} "
        "(raise --max-degradation to accept it)"
    )


def gate_baselines(run_dir: Path | None, gate: AccuracyGate | None) -> CheckpointBaselines | None:
    """The checkpoint's baselines, when they judge the gate's metric (both are the task's)."""
    if run_dir is None or gate is None:
        return None
    baselines = CheckpointBaselines.read(run_dir)
    return baselines if baselines is not None and baselines.metric == gate.metric else None


def eval_run_dir(eval_run: Path | str | None, meta: ModelMetadata | None) -> Path | None:
    if eval_run is not None:
        path = Path(eval_run)
        if not (path / CONFIG_FILE).is_file():
            raise InvalidInputError(
                f"--eval {path} is not an edgelstm checkpoint folder (no config.json)"
            )
        return path
    if meta is not None and meta.source and (Path(meta.source) / CONFIG_FILE).is_file():
        return Path(meta.source)
    return None


def accuracy_gate(
    float_path: Path, quantized_path: Path, run_dir: Path, max_degradation: float | None
) -> AccuracyGate:
    from edgelstm.runtimes.model_io.accuracy import evaluate_onnx
    from edgelstm.training.evaluation import EvaluationData

    try:
        data = EvaluationData.from_run(run_dir)
    except MissingDependencyError as exc:
        # On a device install the checkpoint's data may need an extra (aeon for .ts files
        # and built-in datasets): say that it is the gate that needs it, and how to go on.
        raise MissingDependencyError(
            f"the accuracy gate scores both models on {run_dir}'s test data: {exc}"
        ) from exc
    before, after = (evaluate_onnx(path, data) for path in (float_path, quantized_path))
    return AccuracyGate.measure(data.gate.with_allowed(max_degradation), before, after)
