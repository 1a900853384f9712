"""What ``edgelstm quantize`` reports: the audit table, speed, fidelity, gate and warnings,
as text for people and JSON for scripts."""

from __future__ import annotations

from typing import Any

from edgelstm.exporters.audit import CheckpointBaselines
from edgelstm.exporters.quantize import EVERY_OP, QuantizeResult

__all__ = ["print_quantize_result", "quantize_result_json", "quantize_warnings"]


def quantize_warnings(result: QuantizeResult) -> tuple[str, ...]:
    """What the user must know before deploying the file: a slowdown, a weak check."""
    warnings = []
    if result.op_choice is not None:
        slower = result.op_choice.slower_warning()
        if slower is not None:
            warnings.append(slower)
    if result.fidelity is not None and result.fidelity.synthetic and result.gate is None:
        warnings.append(
            "fidelity was checked on synthetic inputs only, which proves little; pass "
            "--eval-inputs FILE.npz (real inputs keyed by the model's input names) or --eval "
            "RUN_DIR"
        )
    return tuple(warnings)


def quantize_result_json(result: QuantizeResult) -> dict[str, Any]:
    """The JSON form of a quantization result."""
    gate = result.gate
    return {
        "out": str(result.out),
        "audit": result.audit.to_json(),
        "gate": None
        if gate is None
        else {**gate.__dict__, "passed": gate.passed, "summary": gate.describe()},
        "streaming_drift": result.streaming_drift,
        "reduce_range": result.reduce_range,
        "fidelity": None if result.fidelity is None else result.fidelity.to_json(),
        "op_selection": None if result.op_choice is None else result.op_choice.to_json(),
        "warnings": list(quantize_warnings(result)),
        # None without a gate, or for a checkpoint trained before baselines were recorded.
        "baselines": None
        if result.baselines is None
        else result.baselines.to_json(result.baseline_scores()),
    }


def print_quantize_result(result: QuantizeResult, console: Any) -> None:
    """The audit table, size ratio, accuracy gate and notes."""
    from rich.table import Table

    audit = result.audit
    table = Table(title=f"quantization audit ({audit.mode})")
    for column in ("op", "nodes", "quantized", "still float"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for op in audit.ops:
        flag = " [bold red]<- recurrent, float[/]" if op in audit.float_recurrent() else ""
        table.add_row(op.op, str(op.before), str(op.quantized), f"{op.still_float}{flag}")
    console.print(table)
    console.print(
        f"size {audit.size_before / 1e6:.3f} MB -> {audit.size_after / 1e6:.3f} MB "
        f"({audit.ratio:.2f}x)",
        highlight=False,
    )
    if audit.kernels:
        kernels = ", ".join(f"{k} x{v}" for k, v in sorted(audit.kernels.items()))
        console.print(f"quantized kernels: {kernels}", highlight=False)
    console.print(f"speed: {audit.providers}", highlight=False)
    if result.op_choice is not None and result.op_choice.chosen.op_types != EVERY_OP:
        chosen = ", ".join(result.op_choice.chosen.op_types)
        console.print(f"quantized op types: {chosen} (--ops; measured here)", highlight=False)
    if result.fidelity is not None:
        console.print(f"fidelity to FP32 passed: {result.fidelity.describe()}", highlight=False)
    if result.gate is not None:
        console.print(f"accuracy gate passed: {result.gate.describe()}", highlight=False)
        _print_baselines(result, console)
    for warning in quantize_warnings(result):
        console.print(f"warning: {warning}", style="bold yellow", highlight=False)
    for name, value in result.streaming_drift.items():
        console.print(
            f"streaming, chunked vs whole ({name}): max abs diff {value:.3g}", highlight=False
        )
    for note in audit.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"wrote {result.out}", highlight=False)


def _print_baselines(result: QuantizeResult, console: Any) -> None:
    """The checkpoint's baselines under the gate, and plainly whether the models clear them."""
    # Whole lines (a path is not broken inside) and no markup: paths may hold brackets.
    plain: dict[str, Any] = {"highlight": False, "markup": False, "soft_wrap": True}
    baselines = result.baselines
    if baselines is None:
        if result.eval_run is not None:
            console.print(CheckpointBaselines.missing(result.eval_run), **plain)
        return
    console.print(baselines.line(), **plain)
    scores = result.baseline_scores()
    warnings = baselines.shortfalls(scores)
    for warning in warnings:
        console.print(f"warning: {warning}", style="bold yellow", **plain)
    if not warnings:
        console.print(baselines.standing("quantized", scores["quantized"]), **plain)
