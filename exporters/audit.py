"""The quantization audit: what each compute op became, where the result runs, and the size;
and the checkpoint's baselines that the gate's scores are read against.

Quantizers skip nodes silently (an LSTM whose weights are not initializers, any GRU, static
QDQ leaving recurrent nodes in float, anything inside an ``If``/``Loop``/``Scan`` body unless
asked), so ``edgelstm quantize`` counts every compute op before and after, at every depth, and
stores the counts in the output's metadata; a partial result is refused unless asked for.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
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
class SubgraphOp:
    """A compute node inside a subgraph, by path, and whether it is still float after."""

    path: str
    op: str
    still_float: bool


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
    #: compute nodes inside If/Loop/Scan bodies (also counted in ``ops``), by path.
    subgraph_ops: tuple[SubgraphOp, ...] = ()

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
            "subgraph_ops": [o.__dict__ for o in self.subgraph_ops],
        }


def walk_nodes(graph: Any, scope: str = "") -> Iterator[tuple[str, Any]]:
    """Every node of ``graph`` and of the graphs nested in it, each with its scope.

    Control flow (``If`` branches, ``Loop`` and ``Scan`` bodies) holds its nodes in graph
    attributes; a recurrent layer there is as real as one at the top, so whatever counts ops
    walks them too. The scope is ``""`` at the top and, inside, the path of the enclosing
    nodes and attributes: ``If 'branch'/then_branch/``.
    """
    for node in graph.node:
        yield scope, node
        for attr in node.attribute:
            nested = [(attr.name, attr.g)] if attr.HasField("g") else []
            nested += [(f"{attr.name}[{i}]", g) for i, g in enumerate(attr.graphs)]
            for name, subgraph in nested:
                yield from walk_nodes(subgraph, f"{scope}{node_label(node)}/{name}/")


def all_nodes(model: Any) -> Iterator[Any]:
    """The nodes of ``model`` at every depth (see :func:`walk_nodes`)."""
    return (node for _, node in walk_nodes(model.graph))


def node_label(node: Any) -> str:
    """``LSTM 'lstm'``; an unnamed node by its first output: ``LSTM (-> Y)``."""
    if node.name:
        return f"{node.op_type} {node.name!r}"
    outputs = [o for o in node.output if o]
    return f"{node.op_type} (-> {outputs[0]})" if outputs else node.op_type


def copy_outer_weights_into_subgraphs(model: Any, op_types: Sequence[str] | None = None) -> int:
    """Give each compute node inside a subgraph its own copy of the weights it reads from an
    enclosing graph; the number of copies made (0: ``model`` is unchanged).

    ONNX Runtime's quantizer (``EnableSubgraph``, 1.32) quantizes a subgraph node only when
    its weights are initializers of that subgraph: with weights from the enclosing graph, as
    exporters write them, its LSTM quantizer fails (``'NoneType' object has no attribute
    'dims'``). Only nodes of ``op_types`` (default: every compute op) get copies, so no float
    weight is duplicated for nothing; the outer initializer, once unused, is dropped by the
    quantizer.
    """
    wanted = tuple(op_types or COMPUTE_OPS)

    def localize(graph: Any, outer: dict[str, Any]) -> int:
        copies: dict[str, str] = {}
        local = {t.name for t in graph.initializer}
        for node in graph.node:
            for i, name in enumerate(node.input):
                if node.op_type in wanted and name in outer and name not in local:
                    if name not in copies:
                        # Value names are unique across scopes: a copy cannot shadow.
                        copies[name] = f"{name}.{graph.name}.{len(copies)}"
                        graph.initializer.add().CopyFrom(outer[name])
                        graph.initializer[-1].name = copies[name]
                    node.input[i] = copies[name]
        visible = {**outer, **{t.name: t for t in graph.initializer}}
        nested = [g for n in graph.node for a in n.attribute for g in [*a.graphs, a.g] if g.node]
        return len(copies) + sum(localize(g, visible) for g in nested)

    return localize(model.graph, {})


class _FloatCheck:
    """Whether a node of the quantized model still computes in float.

    Dynamic quantization replaces a node (Gemm becomes MatMulInteger + Add, LSTM becomes
    DynamicQuantizeLSTM), so a float op left is float; QDQ keeps the float op and feeds it
    dequantized weights (quantized in effect); FP16 keeps the op and halves its weights.
    """

    def __init__(self, model: Any, mode: str) -> None:
        self.mode = mode
        nodes = list(all_nodes(model))
        # Value names are unique across nested scopes, so one map serves every depth.
        self.producers = {out: node for node in nodes for out in node.output if out}
        self.halves = {
            t.name
            for graph in all_graphs(model)
            for t in graph.initializer
            if t.data_type == _FLOAT16
        }
        self.nodes = nodes

    def __call__(self, node: Any) -> bool:
        if self.mode == "fp16":
            return not any(i in self.halves for i in node.input)
        if self.mode == "static-int8" and len(node.input) >= 2:
            weight = self.producers.get(node.input[1])
            return weight is None or weight.op_type != "DequantizeLinear"
        return True


#: ``onnx.TensorProto.FLOAT16``, without importing onnx for the baselines' readers.
_FLOAT16 = 10


def all_graphs(model: Any) -> Iterator[Any]:
    """The main graph and every subgraph (If, Loop and Scan bodies), at every depth."""
    yield model.graph
    for node in all_nodes(model):
        for attr in node.attribute:
            if attr.HasField("g"):
                yield attr.g
            yield from attr.graphs


def audit_ops(before: Any, after: Any, mode: str) -> tuple[OpAudit, ...]:
    """Per compute op type, subgraphs included: how many nodes there were, how many are
    quantized, how many are still float."""
    counts_before = Counter(n.op_type for n in all_nodes(before) if n.op_type in COMPUTE_OPS)
    is_float = _FloatCheck(after, mode)
    # The dynamic quantizer rewrites a Gemm as MatMul + Add; a MatMul it then leaves float
    # (not among the op types chosen) is that Gemm, still float.
    matmuls_before = sum(1 for n in all_nodes(before) if n.op_type == "MatMul")
    float_matmuls = sum(1 for n in is_float.nodes if n.op_type == "MatMul" and is_float(n))
    gemms_as_float_matmul = max(float_matmuls - matmuls_before, 0) if mode != "fp16" else 0
    audits = []
    for op, total in sorted(counts_before.items()):
        present = [n for n in is_float.nodes if n.op_type == op]
        still = sum(1 for n in present if is_float(n))
        if op == "Gemm":
            still += gemms_as_float_matmul
        elif op == "MatMul":
            still -= gemms_as_float_matmul
        # FP16 keeps every node; INT8 replaces them: what is no longer float was quantized.
        quantized = len(present) - still if mode == "fp16" else max(total - still, 0)
        audits.append(OpAudit(op, total, quantized, still))
    return tuple(audits)


def subgraph_ops(before: Any, after: Any, mode: str) -> tuple[SubgraphOp, ...]:
    """The compute nodes of ``before`` that sit inside subgraphs, each with its path and
    whether ``after`` still computes it in float (its output still comes from a float node
    of the same type)."""
    is_float = _FloatCheck(after, mode)
    found = []
    for scope, node in walk_nodes(before.graph):
        if not scope or node.op_type not in COMPUTE_OPS:
            continue
        outputs = [o for o in node.output if o]
        producer = is_float.producers.get(outputs[0]) if outputs else None
        still = producer is not None and producer.op_type == node.op_type and is_float(producer)
        found.append(SubgraphOp(f"{scope}{node_label(node)}", node.op_type, still))
    return tuple(found)


def providers_note(mode: str, model: Any) -> str:
    """Which providers run a model quantized in ``mode`` natively, and which only partly.

    Read from the one table of what each provider does with each artifact
    (:func:`edgelstm.runtimes.ort.providers.artifact_support`), so the audit and
    ``edgelstm providers`` cannot disagree.
    """
    from edgelstm.runtimes.ort.providers import artifact_support

    ops = {n.op_type for n in all_nodes(model)}
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
