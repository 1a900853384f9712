"""Which op types to quantize: chosen by measuring candidates on this host, kept only if true.

Integer kernels are not faster everywhere: on an AVX2 CPU without VNNI, ``ConvInteger`` with
its ``DynamicQuantizeLinear`` runs slower than the float ``Conv``, so "quantize everything"
can be the slowest artifact; and quantizing a detector's conv encoder can break its decisions
while its LSTM alone quantizes safely. So ``quantize --ops auto`` builds a few candidates,

- every quantizable op type in the graph,
- the recurrent layers and matrix products only,
- every op type but one, for each op type in turn,

checks each against the FP32 model (:mod:`edgelstm.exporters.fidelity`), times each and the
FP32 model in interleaved rounds on this CPU, and keeps the fastest candidate that passes
(within :data:`EQUALLY_FAST` of it, the one that quantizes more op types).
What it left in float, and why, is stated with the measured numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.exporters.fidelity import (
    FidelityInputs,
    FidelityReport,
    FidelityThresholds,
    check_fidelity,
)
from edgelstm.metadata import ModelMetadata

__all__ = [
    "DYNAMIC_OP_TYPES",
    "STATIC_CONV",
    "Candidate",
    "OpChoice",
    "candidate_sets",
    "choose_op_types",
    "measure_latencies",
    "working_session",
]

#: Compute op types ONNX Runtime's dynamic quantizer turns into integer kernels.
DYNAMIC_OP_TYPES = ("LSTM", "MatMul", "Conv", "Attention")
#: Of those, the recurrent layers and matrix products (the "recurrent + matmul" candidate).
RECURRENT_AND_MATMUL = ("LSTM", "MatMul", "Attention")
#: The token for "convolutions as calibrated QLinearConv" in a candidate's op types (the rest
#: of the candidate quantized dynamically); offered when calibration data is at hand.
STATIC_CONV = "Conv:static"
#: Timing: rounds alternate between the models; each round runs every model this many times.
ROUNDS, RUNS_PER_ROUND, WARMUP = 9, 30, 10
#: Candidates within this share of the fastest p50 count as equally fast (timing noise on a
#: shared host); among them the one that quantizes more op types, the smaller file, is kept.
EQUALLY_FAST = 0.05

#: ``quantize_candidate(op_types, destination)`` writes one candidate.
QuantizeCandidate = Callable[[tuple[str, ...], Path], None]


@dataclass(frozen=True)
class Candidate:
    """One quantized candidate: its op types, file, measured p50 and fidelity."""

    label: str
    op_types: tuple[str, ...]
    path: Path
    p50_ms: float
    fidelity: FidelityReport

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "op_types": list(self.op_types),
            "p50_ms": round(self.p50_ms, 4),
            "fidelity_passed": self.fidelity.passed,
        }


@dataclass(frozen=True)
class OpChoice:
    """The candidate kept, the FP32 model's p50 beside it, and every candidate measured."""

    chosen: Candidate
    float_p50_ms: float
    candidates: tuple[Candidate, ...]
    present: tuple[str, ...]
    cpu: str

    @property
    def speedup(self) -> float:
        """FP32 p50 over the chosen candidate's (above 1: the quantized model is faster)."""
        return self.float_p50_ms / self.chosen.p50_ms if self.chosen.p50_ms else float("nan")

    def speed_note(self) -> str:
        """The measured claim that replaces a table's "runs efficiently on"."""
        return (
            f"cpu: p50 {self.chosen.p50_ms:.3f} ms vs FP32 {self.float_p50_ms:.3f} ms "
            f"({self.chosen.p50_ms / self.float_p50_ms:.2f}x), measured here ({self.cpu}); "
            "other providers: not measured"
        )

    def slower_warning(self) -> str | None:
        """A warning when the file written is slower than FP32 on this CPU, else None."""
        if self.chosen.p50_ms <= self.float_p50_ms:
            return None
        return (
            f"the quantized model is {self.chosen.p50_ms / self.float_p50_ms:.2f}x slower than "
            f"FP32 on this CPU ({self.cpu}: p50 {self.chosen.p50_ms:.3f} vs "
            f"{self.float_p50_ms:.3f} ms); it is written for its size only, deploy the FP32 "
            "model where speed matters"
        )

    def left_float(self) -> list[str]:
        """Why each quantizable op type present was kept in float, from the measurements."""
        notes = []
        everything = next((c for c in self.candidates if c.op_types == self.present), None)
        for op in self.present:
            if op in self.chosen.op_types or (op == "Conv" and STATIC_CONV in self.chosen.op_types):
                continue
            without = next(
                (c for c in self.candidates if set(c.op_types) == set(self.present) - {op}),
                None,
            )
            notes.append(f"{op} kept FP32: {self._why(op, everything, without)}")
        return notes

    def _why(self, op: str, everything: Candidate | None, without: Candidate | None) -> str:
        if everything is None or without is None:
            return "not in the requested --ops"
        if not everything.fidelity.passed and without.fidelity.passed:
            failed = "; ".join(o.describe() for o in everything.fidelity.failures)
            return f"quantizing it broke fidelity to FP32 ({failed})"
        ratio = everything.p50_ms / without.p50_ms if without.p50_ms else float("nan")
        return (
            f"quantizing it too made the model {ratio:.2f}x as slow on this CPU ({self.cpu}: "
            f"{everything.p50_ms:.3f} vs {without.p50_ms:.3f} ms)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.label,
            "op_types": list(self.chosen.op_types),
            "float_p50_ms": round(self.float_p50_ms, 4),
            "quantized_p50_ms": round(self.chosen.p50_ms, 4),
            "cpu": self.cpu,
            "candidates": [c.to_json() for c in self.candidates],
            "left_float": self.left_float(),
        }


def present_op_types(model: Any) -> tuple[str, ...]:
    """The dynamically quantizable op types in ``model`` (subgraphs included), in a fixed
    order."""
    from edgelstm.exporters.audit import all_nodes

    found = {n.op_type for n in all_nodes(model)}
    if "Gemm" in found:
        found.add("MatMul")  # the dynamic quantizer rewrites Gemm as MatMul + Add first
    return tuple(op for op in DYNAMIC_OP_TYPES if op in found)


def parse_ops(text: str) -> str | tuple[str, ...]:
    """``--ops``: ``auto``, ``all`` or a comma-separated list of op types."""
    if text in ("auto", "all"):
        return text
    ops = tuple(dict.fromkeys(o.strip() for o in text.split(",") if o.strip()))
    unknown = [o for o in ops if o not in DYNAMIC_OP_TYPES]
    if not ops or unknown:
        raise InvalidInputError(
            f"--ops {text!r}: use auto, all, or op types among {', '.join(DYNAMIC_OP_TYPES)}"
        )
    return ops


def candidate_sets(
    present: tuple[str, ...], request: str | tuple[str, ...], *, static_conv: bool = False
) -> list[tuple[str, tuple[str, ...]]]:
    """The (label, op types) candidates for ``--ops`` ``request``, without repeats;
    ``static_conv`` adds the recurrent layers and MatMuls dynamic with the convolutions as
    calibrated ``QLinearConv``."""
    if not present:
        raise InvalidInputError(
            "the model has no op type dynamic INT8 can quantize "
            f"({', '.join(DYNAMIC_OP_TYPES)}); keep it in FP32"
        )
    if request == "all":
        return [("all", present)]
    if isinstance(request, tuple):
        chosen = tuple(op for op in present if op in request)
        if not chosen:
            raise InvalidInputError(
                f"--ops {','.join(request)}: the model has none of these; it has "
                f"{', '.join(present)}"
            )
        return [(",".join(chosen), chosen)]
    sets = [("all", present)]
    recurrent = tuple(op for op in present if op in RECURRENT_AND_MATMUL)
    sets.append(("recurrent + matmul", recurrent))
    if len(present) > 1:
        sets += [(f"all but {op}", tuple(o for o in present if o != op)) for op in present]
    if static_conv and "Conv" in present:
        sets.append(("static Conv + recurrent + matmul", (*recurrent, STATIC_CONV)))
    unique: dict[tuple[str, ...], str] = {}
    for label, ops in sets:
        if ops and ops not in unique:
            unique[ops] = label
    return [(label, ops) for ops, label in unique.items()]


def working_session(path: Path) -> Any:
    """A one-thread CPU session on a working file of the quantizer.

    These files are intermediate (folded, candidates) and still carry the source's weight
    checksum, which their new weights no longer match; they are opened without the artifact
    checks that guard the files users hand in.
    """
    from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime

    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_latencies(paths: Sequence[Path], feed: dict[str, np.ndarray]) -> list[float]:
    """p50 of one ``session.run`` in ms per model, one thread, rounds alternating between
    the models so that drift on a shared host affects them alike."""
    sessions = [working_session(path) for path in paths]
    times: list[list[float]] = [[] for _ in sessions]
    for session in sessions:
        for _ in range(WARMUP):
            session.run(None, feed)
    for _ in range(ROUNDS):
        for session, collected in zip(sessions, times, strict=True):
            for _ in range(RUNS_PER_ROUND):
                start = time.perf_counter()
                session.run(None, feed)
                collected.append(time.perf_counter() - start)
    return [float(np.median(t)) * 1e3 for t in times]


def _cpu_words() -> str:
    from edgelstm.hardware import cpu_info

    info = cpu_info()
    isa = "avx512 vnni" if info.avx512_vnni else "avx vnni" if info.avx_vnni else ""
    isa = isa or ("avx2, no vnni" if info.avx2 else "arm" if info.neon else "no avx2")
    return isa


def choose_op_types(
    float_path: Path,
    work: Path,
    present: tuple[str, ...],
    request: str | tuple[str, ...],
    quantize_candidate: QuantizeCandidate,
    inputs: FidelityInputs,
    thresholds: FidelityThresholds,
    meta: ModelMetadata | None,
    *,
    static_conv: bool = False,
) -> OpChoice:
    """Build, check and time the candidates; the fastest that passes fidelity is chosen.

    Raises :class:`~edgelstm.errors.CheckFailedError` when no candidate passes, naming the
    outputs that drifted and the op types to blame.
    """
    sets = candidate_sets(present, request, static_conv=static_conv)
    float_session = working_session(float_path)
    built = []
    for i, (label, ops) in enumerate(sets):
        path = work / f"candidate-{i}.onnx"
        quantize_candidate(ops, path)
        report = check_fidelity(float_session, working_session(path), inputs, thresholds, meta)
        built.append((label, ops, path, report))
    latencies = measure_latencies([float_path, *(b[2] for b in built)], inputs.samples[0])
    candidates = tuple(
        Candidate(label, ops, path, p50, report)
        for (label, ops, path, report), p50 in zip(built, latencies[1:], strict=True)
    )
    passing = [c for c in candidates if c.fidelity.passed]
    if not passing:
        raise CheckFailedError(_no_candidate_message(candidates, present))
    fastest = min(c.p50_ms for c in passing)
    tied = [c for c in passing if c.p50_ms <= fastest * (1 + EQUALLY_FAST)]
    chosen = max(tied, key=lambda c: (len(c.op_types), -c.p50_ms))
    return OpChoice(chosen, latencies[0], candidates, present, _cpu_words())


def _no_candidate_message(candidates: Sequence[Candidate], present: tuple[str, ...]) -> str:
    first = candidates[0]
    drifted = "; ".join(o.describe() for o in first.fidelity.failures)
    blamed = sorted({op for c in candidates for op in c.op_types})
    hint = (
        "try --ops with fewer op types, e.g. --ops LSTM"
        if len(present) > 1
        else "keep the model in FP32"
    )
    return (
        f"every quantized candidate drifts from the FP32 model ({first.label}: {drifted}); "
        f"op types quantized: {', '.join(blamed)}; nothing written ({hint}, or raise "
        "--max-disagreement / --max-relative-error to accept it)"
    )
