"""Prove an exported graph is right: structure, dynamic axes, and numbers against PyTorch.

Validation is always on. It catches what the exporters do silently: a batch or time axis
frozen to the example's size, recurrent weights that are computed instead of stored (which
makes the quantizer skip the LSTM), batch-first recurrent nodes ONNX Runtime rejects, and
numeric drift at shapes other than the example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgelstm.config import PER_STEP_TASKS
from edgelstm.errors import first_line
from edgelstm.runtimes.model_io.contract import state_output_name
from edgelstm.runtimes.model_io.feeding import cpu_session, run_in_chunks
from edgelstm.runtimes.ort.feeds import input_specs

if TYPE_CHECKING:
    import onnx
    from rich.console import Console
    from torch import nn

    from edgelstm.exporters.graphs import GraphSpec
    from edgelstm.training.models import SequenceModel

RECURRENT_OPS = ("LSTM", "GRU", "RNN")


@dataclass(frozen=True)
class ValidationRow:
    """One comparison of an ONNX Runtime output with PyTorch's."""

    check: str
    output: str
    max_abs: float
    max_rel: float
    passed: bool
    #: ONNX Runtime's whole message when the run failed (``output`` holds its head); shown
    #: under ``--debug``, left out of JSON.
    error: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class ValidationCase:
    """One check of a module edgelstm did not build: named inputs and PyTorch's outputs."""

    check: str
    feeds: dict[str, np.ndarray]
    expected: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class ValidationReport:
    """Everything validation found; ``passed`` is the verdict."""

    rows: tuple[ValidationRow, ...]
    problems: tuple[str, ...] = ()
    recurrent_nodes: tuple[str, ...] = ()
    atol: float = 1e-4
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.problems and all(r.passed for r in self.rows)

    def worst(self) -> ValidationRow | None:
        return max(self.rows, key=lambda r: r.max_abs, default=None)

    def summary(self) -> str:
        """One line for error messages: the first problem or the worst failing comparison."""
        if self.problems:
            return self.problems[0]
        failing = [r for r in self.rows if not r.passed]
        if not failing:
            return "all checks passed"
        row = max(failing, key=lambda r: r.max_abs)
        return (
            f"max abs error {row.max_abs:.3g} > atol {self.atol:g} at {row.check} "
            f"(output `{row.output}`)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "atol": self.atol,
            "problems": list(self.problems),
            "recurrent_nodes": list(self.recurrent_nodes),
            "rows": [{k: v for k, v in r.__dict__.items() if k != "error"} for r in self.rows],
        }

    def errors(self) -> tuple[str, ...]:
        """ONNX Runtime's whole message for each check it failed to run."""
        return tuple(f"{r.check}: {r.error}" for r in self.rows if r.error)


def inspect_graph(model: onnx.ModelProto, spec: GraphSpec) -> tuple[list[str], list[str]]:
    """Structural problems and a description of each recurrent node.

    Checks: ``onnx.checker`` (full) and shape inference pass; the declared dynamic axes of
    every input are symbolic, not frozen numbers; recurrent weights W/R/B are initializers;
    recurrent nodes are time-major (``layout`` 0).
    """
    import onnx

    problems: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # the checker raises several exception types
        problems.append(f"onnx.checker rejected the graph: {exc}")
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        problems.append(f"ONNX shape inference failed: {exc}")
    graph_inputs = {i.name: i for i in model.graph.input}
    for name, axes in spec.dynamic_axes.items():
        value = graph_inputs.get(name)
        if value is None:
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, axis_name in axes.items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                problems.append(
                    f"input `{name}` axis {axis} ({axis_name}) is frozen to "
                    f"{dims[axis].dim_value}; the exporter specialised it to the example"
                )
    initializers = {t.name for t in model.graph.initializer}
    described = []
    for node in model.graph.node:
        if node.op_type not in RECURRENT_OPS:
            continue
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        weights = [n for n in list(node.input)[1:4] if n]
        computed = [n for n in weights if n not in initializers]
        described.append(
            f"{node.op_type} {node.name or '(unnamed)'}: layout {layout}, "
            f"weights {'initializers' if not computed else 'computed'}"
        )
        if layout != 0:
            problems.append(
                f"{node.op_type} node {node.name!r} is batch-first (layout=1), which ONNX "
                "Runtime rejects"
            )
        if computed:
            problems.append(
                f"{node.op_type} node {node.name!r} takes weights {computed} from other nodes, "
                "not initializers: quantizers would leave it in float"
            )
    return problems, described


def _compare(
    check: str, name: str, got: np.ndarray, want: np.ndarray, atol: float
) -> ValidationRow:
    if got.shape != want.shape:
        return ValidationRow(
            check, f"{name} (shape {got.shape} != {want.shape})", float("inf"), float("inf"), False
        )
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    rel = diff / scale if scale > 0 else diff
    return ValidationRow(check, name, diff, rel, bool(np.isfinite(diff) and diff <= atol))


def _torch_outputs(module: nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        result = module(*(torch.from_numpy(a) for a in inputs))
    if isinstance(result, torch.Tensor):
        result = (result,)
    return [r.detach().numpy() for r in result]


def validation_shapes(example_batch: int, example_time: int) -> list[tuple[int, int]]:
    """Shapes that differ from the example: batch 1 and >= 3, time 1 and 10x the example."""
    long = max(10 * example_time, 20)
    shapes = [(1, 1), (3, 1), (1, long), (max(3, example_batch + 2), example_time + 3)]
    return [s for s in shapes if s != (example_batch, example_time)]


def validate_sequence(
    path: Path,
    module: nn.Module,
    spec: GraphSpec,
    *,
    num_features: int,
    example_batch: int,
    example_time: int,
    atol: float,
    seed: int = 0,
) -> list[ValidationRow]:
    """Run ONNX Runtime and PyTorch on several shapes and compare every output."""
    session = cpu_session(path)
    rng = np.random.default_rng(seed)
    rows = []
    for batch, steps in validation_shapes(example_batch, example_time):
        x = rng.standard_normal((batch, steps, num_features)).astype(np.float32)
        check = f"batch {batch}, time {steps}"
        try:
            got = session.run(list(spec.output_names), {"x": x})
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidArgument types
            rows.append(_run_failed(check, exc))
            continue
        want = _torch_outputs(module, [x])
        rows.extend(
            _compare(check, name, g, w, atol)
            for name, g, w in zip(spec.output_names, got, want, strict=True)
        )
    return rows


def _run_failed(check: str, exc: Exception) -> ValidationRow:
    # The row keeps the head for the one-line error; the whole text is for --debug.
    first = first_line(exc, limit=200)
    inf = float("inf")
    return ValidationRow(check, f"run failed: {first}", inf, inf, False, error=str(exc).strip())


def validate_cases(
    path: Path, spec: GraphSpec, cases: tuple[ValidationCase, ...], *, atol: float
) -> list[ValidationRow]:
    """Run ONNX Runtime on each case's inputs and compare with PyTorch's recorded outputs."""
    session = cpu_session(path)
    rows = []
    for case in cases:
        try:
            got = session.run(list(spec.output_names), case.feeds)
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidArgument types
            rows.append(_run_failed(case.check, exc))
            continue
        rows.extend(
            _compare(case.check, name, g, w, atol)
            for name, g, w in zip(spec.output_names, got, case.expected, strict=True)
        )
    return rows


def validate_streaming(
    path: Path,
    model: SequenceModel,
    spec: GraphSpec,
    *,
    atol: float,
    steps: int = 60,
    batch: int = 3,
    chunks: tuple[int, ...] = (1, 7),
    seed: int = 0,
) -> list[ValidationRow]:
    """Feed a long sequence in chunks, carrying the state, and compare with PyTorch.

    PyTorch runs the whole sequence at once; the chunked ONNX outputs must match its
    per-step outputs (anomaly) or its final output (classify/forecast), and the final state
    must match PyTorch's final state. With a strided front end, ``chunks`` and ``steps`` count
    in multiples of the stride (the only chunks such a graph takes).
    """
    import torch

    session = cpu_session(path)
    rng = np.random.default_rng(seed)
    cfg = model.config
    multiple = spec.chunk_multiple
    chunks = tuple(c * multiple for c in chunks)
    steps = -(-steps // multiple) * multiple
    x = rng.standard_normal((batch, steps, cfg.input_size)).astype(np.float32)
    with torch.no_grad():
        front, _ = model.front(torch.from_numpy(x))
        out, state = model.recur(front)
        whole = model.decode(out).numpy()
    want_states = [s.numpy() for s in model.layer_states(state)]
    if model.frontend is not None:
        # The front end's state is the last kernel-1 frames, time-major.
        keep = cfg.frontend_kernel - 1
        padded = np.concatenate([np.zeros((batch, keep, cfg.input_size), np.float32), x], 1)
        want_states.append(np.ascontiguousarray(padded[:, -keep:].transpose(1, 0, 2)))
    output = spec.output_names[0]
    state_names = list(spec.state_shapes)
    session_inputs = {s.name: s for s in input_specs(session)}
    state_specs = [session_inputs[name] for name in state_names]
    rows = []
    for chunk in chunks:
        got, states = run_in_chunks(
            session, x, chunk, state_specs, concatenate=cfg.task in PER_STEP_TASKS
        )
        check = f"stream {steps} steps in chunks of {chunk}"
        rows.append(_compare(check, output, got, whole, atol))
        rows.extend(
            _compare(check, state_output_name(name), states[name], want, atol)
            for name, want in zip(state_names, want_states, strict=True)
        )
    return rows


def print_validation(report: ValidationReport, console: Console) -> None:
    """The validation table: per check and output, max abs and relative error."""
    from rich.table import Table

    table = Table(title=f"validation against PyTorch (atol {report.atol:g})")
    for column in ("check", "output", "max abs err", "max rel err", "ok"):
        table.add_column(column, justify="right" if "err" in column else "left")
    for row in report.rows:
        table.add_row(
            row.check,
            row.output,
            f"{row.max_abs:.2e}",
            f"{row.max_rel:.2e}",
            "yes" if row.passed else "[bold red]NO[/]",
        )
    console.print(table)
    for node in report.recurrent_nodes:
        console.print(f"  {node}", highlight=False)
    for problem in report.problems:
        console.print(f"  [bold red]problem:[/] {problem}", highlight=False)
