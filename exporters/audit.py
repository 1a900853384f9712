"""The quantization audit: what each compute op became, where the result runs, and the size.

Quantizers skip nodes silently (an LSTM whose weights are not initializers, any GRU, static
QDQ leaving recurrent nodes in float), so ``edgelstm quantize`` counts every compute op before
and after and stores the counts in the output's metadata; a partial result is refused unless
asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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
    """Where a model quantized in ``mode`` runs efficiently, for the audit."""
    ops = {n.op_type for n in model.graph.node}
    if mode == "dynamic-int8":
        if "DynamicQuantizeLSTM" in ops:
            return (
                "cpu only: DynamicQuantizeLSTM has only a CPU kernel, and TensorRT cannot parse it"
            )
        return "cpu (dynamic INT8 ops run on the CPU provider)"
    if mode == "static-int8":
        return "cpu, tensorrt, and other QDQ-aware providers (recurrent nodes stay float)"
    return (
        "cuda, tensorrt (native FP16); on cpu the LSTM runs in float32 between Casts: "
        "a smaller file, no speed-up"
    )
