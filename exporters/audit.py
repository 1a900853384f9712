"""The quantization audit: what each compute op became, where the result runs, and the size;
and the checkpoint's baselines that the gate's scores are read against.

Quantizers skip nodes silently (an LSTM whose weights are not initializers, any GRU, static
QDQ leaving recurrent nodes in float), so ``edgelstm quantize`` counts every compute op before
and after and stores the counts in the output's metadata; a partial result is refused unless
asked for.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.training.baselines import BaselineComparison
from edgelstm.training.checkpoint import METRICS_FILE

#: ops that carry the arithmetic; the audit counts them before and after.
COMPUTE_OPS = ("LSTM", "GRU", "RNN", "MatMul", "Gemm", "Conv", "Attention")
#: quantized replacements, mapped to the float op they replace.
QUANTIZED_OPS = {
    "DynamicQuantizeLSTM": "LSTM",
    "MatMulInteger": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "MatMulIntegerToFloat": "MatMul",
    "QLinearMatMul": "MatMul",
    "QGemm": "Gemm",
    "ConvInteger": "Conv",
    "QLinearConv": "Conv",
    "QAttention": "Attention",
}


@dataclass(frozen=True)
class OpAudit:
    """One compute op type: nodes before, quantized after, and still in float after."""

    op: str
    before: int
    quantized: int
    still_float: int


@dataclass(frozen=True)
class QuantizationAudit:
    """What quantization changed, stored in the output's metadata as JSON."""

    mode: str
    ops: tuple[OpAudit, ...]
    size_before: int
    size_after: int
    providers: str
    #: quantized kernels in the result, e.g. {"DynamicQuantizeLSTM": 2, "MatMulInteger": 1}
    kernels: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ratio(self) -> float:
        return self.size_after / self.size_before if self.size_before else float("nan")

    def float_recurrent(self) -> list[OpAudit]:
        return [o for o in self.ops if o.op in ("LSTM", "GRU", "RNN") and o.still_float]

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ops": [o.__dict__ for o in self.ops],
            "size_before": self.size_before,
            "size_after": self.size_after,
            "ratio": round(self.ratio, 4),
            "providers": self.providers,
            "kernels": self.kernels,
            "notes": list(self.notes),
        }


def audit_ops(before: Any, after: Any, mode: str) -> tuple[OpAudit, ...]:
    """Per compute op type: how many nodes there were, how many are quantized, how many float."""
    counts_before = Counter(n.op_type for n in before.graph.node if n.op_type in COMPUTE_OPS)
    after_ops = Counter(n.op_type for n in after.graph.node)
    audits = []
    for op, total in sorted(counts_before.items()):
        if mode == "fp16":
            halves = _fp16_nodes(after, op)
            audits.append(OpAudit(op, total, halves, after_ops.get(op, 0) - halves))
            continue
        still = after_ops.get(op, 0)
        if mode == "static-int8":
            # QDQ keeps the float op and feeds it dequantized weights: quantized in effect.
            still -= _qdq_fed(after, op)
        # Dynamic quantization replaces a node (Gemm becomes MatMulInteger + Add, LSTM becomes
        # DynamicQuantizeLSTM): what is no longer a float node of this type was quantized.
        audits.append(OpAudit(op, total, max(total - still, 0), still))
    return tuple(audits)


def _producers(model: Any) -> dict[str, Any]:
    return {out: node for node in model.graph.node for out in node.output}


def _qdq_fed(model: Any, op: str) -> int:
    producers = _producers(model)
    count = 0
    for node in model.graph.node:
        if node.op_type != op or len(node.input) < 2:
            continue
        weight = producers.get(node.input[1])
        if weight is not None and weight.op_type == "DequantizeLinear":
            count += 1
    return count


def _fp16_nodes(model: Any, op: str) -> int:
    import onnx

    halves = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    return sum(1 for n in model.graph.node if n.op_type == op and any(i in halves for i in n.input))


def providers_note(mode: str, model: Any) -> str:
    """Which providers run a model quantized in ``mode`` natively, and which only partly.

    Read from the one table of what each provider does with each artifact
    (:func:`edgelstm.runtimes.ort.providers.artifact_support`), so the audit and
    ``edgelstm providers`` cannot disagree.
    """
    from edgelstm.runtimes.ort.providers import artifact_support

    ops = {n.op_type for n in model.graph.node}
    if mode == "dynamic-int8" and "DynamicQuantizeLSTM" not in ops:
        return "cpu (dynamic INT8 ops run on the CPU provider)"
    native, other = [], []
    for provider in ("cpu", "openvino", "cuda", "tensorrt"):
        runs_natively, what = artifact_support(provider)[mode]
        if runs_natively:
            native.append(provider)
        else:
            other.append(f"{provider}: {what}")
    return f"native on {', '.join(native)}" + "".join(f"; {o}" for o in other)


# --------------------------------------------------------------------------------------------
# the checkpoint's baselines: whether a fast model is any good

#: How the trivial baselines read in a sentence.
_TRIVIAL_NAMES = {"majority": "the majority class", "random scores": "random scores"}


@dataclass(frozen=True)
class CheckpointBaselines:
    """The baselines training stored in a checkpoint's ``metrics.json``, to judge other scores.

    ``edgelstm train`` compares its model with the task's baselines on the test split
    (majority class and 1-NN ED/DTW accuracy, the 0.5 AUROC of random scores, the seasonal
    naive MAE) and stores the comparison under ``metrics["baselines"]``. The quantization gate
    and ``benchmark --eval`` score exported models on that same split, so their scores are
    read against the same numbers: a fast model is never shown without whether it is any good.
    Reading needs neither torch nor the data.

    Example:
        >>> baselines = CheckpointBaselines.read(Path("runs/jv"))  # doctest: +SKIP
        >>> baselines.summary()  # doctest: +SKIP
        'majority 0.0838, 1-NN ED 0.9514, 1-NN DTW 0.9486'
        >>> baselines.clears_chance(0.9757), baselines.beats_best(0.9757)  # doctest: +SKIP
        (True, True)
    """

    run_dir: Path
    comparison: BaselineComparison

    @classmethod
    def read(cls, run_dir: Path | str) -> CheckpointBaselines | None:
        """The baselines of the checkpoint in ``run_dir``; None when it has none.

        Checkpoints written before baselines were recorded (or with a ``metrics.json`` that
        cannot be read) have none: the caller says so instead of failing, because the
        metrics are a report, not an input.
        """
        path = Path(run_dir) / METRICS_FILE
        try:
            stored = json.loads(path.read_text(encoding="utf-8")).get("baselines")
            comparison = BaselineComparison(
                metric=str(stored["metric"]),
                higher_is_better=bool(stored["higher_is_better"]),
                model=None if stored.get("model") is None else float(stored["model"]),
                values={
                    str(k): None if v is None else float(v) for k, v in stored["values"].items()
                },
                trivial=str(stored["trivial"]),
                required=float(stored["required"]),
                notes={str(k): str(v) for k, v in (stored.get("notes") or {}).items()},
            )
            comparison.best()  # at least one baseline value, or there is nothing to compare
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return cls(Path(run_dir), comparison)

    @staticmethod
    def missing(run_dir: Path | str) -> str:
        """The sentence shown for a checkpoint without baselines."""
        return (
            f"baselines: none in {Path(run_dir) / METRICS_FILE} (a checkpoint trained before "
            "edgelstm recorded them); retrain it to see whether the model beats chance"
        )

    @property
    def metric(self) -> str:
        return self.comparison.metric

    def format(self, value: float | None) -> str:
        """A score as reports print it (4 decimals for accuracy and AUROC, 4 digits for MAE)."""
        if value is None or math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if self.comparison.higher_is_better else f"{value:.4g}"

    def summary(self) -> str:
        """``majority 0.4930, 1-NN ED 0.9130, 1-NN DTW skipped``."""
        return ", ".join(
            f"{name} {'skipped' if value is None else self.format(value)}"
            for name, value in self.comparison.values.items()
        )

    def chance(self) -> str:
        """What clearing chance takes: ``0.5437 needed to clear the majority class``."""
        if self.comparison.higher_is_better:
            return f"{self.format(self.comparison.required)} needed to clear {self._trivial()}"
        return f"below the {self.comparison.trivial} {self.format(self.comparison.required)}"

    def line(self) -> str:
        """One line for a report: the metric, the baselines and the chance level."""
        return (
            f"baselines ({self.metric} on the same test split): {self.summary()}; {self.chance()}"
        )

    def _trivial(self) -> str:
        return _TRIVIAL_NAMES.get(self.comparison.trivial, self.comparison.trivial)

    def _scored(self, value: float | None) -> BaselineComparison:
        return dataclasses.replace(
            self.comparison, model=None if value is None or math.isnan(value) else value
        )

    def clears_chance(self, value: float | None) -> bool | None:
        """Whether ``value`` reaches the chance margin (None when there is no score)."""
        return self._scored(value).clears_chance

    def beats_best(self, value: float | None) -> bool | None:
        """Whether ``value`` is at least as good as the strongest baseline."""
        return self._scored(value).beats(self.comparison.best()[1])

    def verdict(self, value: float | None) -> dict[str, Any]:
        """``{"value", "clears_chance", "beats_best", "beaten": {baseline: bool | None}}``."""
        scored = self._scored(value)
        return {
            "value": value,
            "clears_chance": scored.clears_chance,
            "beats_best": self.beats_best(value),
            "beaten": {k: scored.beats(v) for k, v in self.comparison.values.items()},
        }

    def standing(self, name: str, value: float | None) -> str:
        """``quantized model: clears chance, beats the strongest baseline (1-NN ED 0.9514)``."""
        best_name, best_value = self.comparison.best()
        chance = {True: "clears chance", False: "does NOT clear chance", None: "no score"}
        best = {True: "beats", False: "does not beat", None: "cannot be compared with"}
        return (
            f"{name} model: {chance[self.clears_chance(value)]}, "
            f"{best[self.beats_best(value)]} the strongest baseline "
            f"({best_name} {self.format(best_value)})"
        )

    def to_json(self, scores: Mapping[str, float | None]) -> dict[str, Any]:
        """The stored baselines with a verdict per scored model (``scores``: name → value),
        the one-line summary and the :meth:`shortfalls` sentences."""
        stored = self.comparison.to_json()
        for key in ("model", "beaten", "clears_chance", "beats_best"):
            stored.pop(key, None)  # the training run's own model: not the one scored here
        return {
            "run": str(self.run_dir),
            **stored,
            "summary": self.line(),
            "scores": {name: self.verdict(value) for name, value in scores.items()},
            "warnings": self.shortfalls(scores),
        }

    def shortfalls(self, scores: Mapping[str, float | None]) -> list[str]:
        """Plain sentences for the models in ``scores`` (name → value, the reference first)
        that do not clear chance or do not beat the strongest baseline; empty when all do.

        With ``{"float": 0.97, "quantized": 0.50}`` the quantized model "no longer" clears
        chance; when the reference misses too, the checkpoint itself is the problem.

        Example:
            >>> baselines.shortfalls({"float": 0.60, "quantized": 0.52})  # doctest: +SKIP
            ['the quantized model no longer clears chance: accuracy 0.5200, 0.5437 needed to
            clear the majority class (the float model: 0.6000); do not deploy it']
        """
        names = list(scores)
        if not names:
            return []
        first = names[0]
        best_name, best_value = self.comparison.best()
        best = f"the strongest baseline, {best_name} {self.format(best_value)}"
        checks = (
            (
                self.clears_chance,
                "clears chance",
                "clear chance",
                self.chance(),
                "do not deploy it",
            ),
            (self.beats_best, f"beats {best}", f"beat {best}", "", "a simpler method does better"),
        )
        found: list[str] = []
        for test, does, do, detail, advice in checks:
            missing = [n for n in names if test(scores[n]) is False]
            if not missing:
                continue
            values = ", ".join(
                (f"{n} " if len(missing) > 1 else "") + self.format(scores[n]) for n in missing
            )
            facts = f"{self.metric} {values}" + (f", {detail}" if detail else "")
            if first not in missing:
                found.append(
                    f"the {' and '.join(missing)} model no longer {does}: {facts} (the {first} "
                    f"model: {self.format(scores[first])}); {advice}"
                )
            elif len(missing) > 1:
                found.append(
                    f"neither the {' nor the '.join(missing)} model {does}: {facts}; the "
                    f"checkpoint itself falls short: {advice}; retrain it"
                )
            else:
                found.append(f"the {first} model does not {do}: {facts}; {advice}")
            if test == self.clears_chance:
                break  # below chance says it all; the strongest baseline adds nothing
        return found
