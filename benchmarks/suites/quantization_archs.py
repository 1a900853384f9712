"""INT8 across the architectures ``--arch`` offers: FP32, the INT8 ``quantize`` chooses, and
"quantize everything", side by side on this CPU.

For each of lstm, gru and lstm-fcn, with and without the conv front end, a model is trained
on BasicMotions (a tuning set: 6 channels, 100 steps), exported (and, where the model can
stream, exported for streaming), and quantized twice with ``dynamic-int8``: ``--ops auto``
(the measured choice) and ``--ops all``. Each artifact is timed at batch 1 and 32 over whole
sequences, and one streaming frame where there is a streaming export, in rounds that
alternate between the artifacts; the task metric (test accuracy) of FP32 and the chosen INT8
comes from the accuracy gate.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARCHITECTURES", "architecture_table", "measure_architectures", "p50_interleaved"]

#: (label, train keyword arguments) for every architecture and front end studied.
ARCHITECTURES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("lstm", {"arch": "lstm"}),
    ("gru", {"arch": "gru"}),
    ("lstm-fcn", {"arch": "lstm-fcn"}),
    ("lstm + conv", {"arch": "lstm", "frontend": "conv"}),
    ("gru + conv", {"arch": "gru", "frontend": "conv"}),
    ("lstm-fcn + conv", {"arch": "lstm-fcn", "frontend": "conv"}),
)
DATASET = "BasicMotions"


def p50_interleaved(runs: Sequence[Any], rounds: int = 7, per_round: int = 15) -> list[float]:
    """p50 ms of each callable, the callables alternating round by round."""
    times: list[list[float]] = [[] for _ in runs]
    for run in runs:
        for _ in range(3):
            run()
    for _ in range(rounds):
        for run, collected in zip(runs, times, strict=True):
            for _ in range(per_round):
                start = time.perf_counter()
                run()
                collected.append(time.perf_counter() - start)
    return [float(np.median(t)) * 1e3 for t in times]


def _sequence_timings(paths: Sequence[Path], steps: int, features: int) -> dict[str, list[float]]:
    from edgelstm.exporters.op_selection import working_session

    sessions = [working_session(p) for p in paths]
    rng = np.random.default_rng(0)
    result = {}
    for batch in (1, 32):
        x = rng.standard_normal((batch, steps, features)).astype(np.float32)
        runs = [lambda s=s, x=x: s.run(None, {"x": x}) for s in sessions]
        result[f"batch {batch}"] = p50_interleaved(runs)
    return result


def _frame_timings(paths: Sequence[Path]) -> list[float]:
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession

    streams = [StreamingSession(p) for p in paths]
    frames = [np.zeros((1, s.chunk_multiple, s.num_features), np.float32) for s in streams]
    runs = [lambda s=s, f=f: s.push(f) for s, f in zip(streams, frames, strict=True)]
    return p50_interleaved(runs, rounds=7, per_round=200)


def _one_architecture(label: str, kwargs: dict[str, Any], work: Path) -> dict[str, Any]:
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize
    from edgelstm.training.trainer import train

    run = train("classify", dataset=DATASET, out=work / "run", seed=0, **kwargs)
    fp32 = work / "model.onnx"
    export(run.out, fp32)
    chosen = quantize(fp32, work / "auto.onnx", mode="dynamic-int8")
    everything = quantize(fp32, work / "all.onnx", mode="dynamic-int8", ops="all",
                          max_degradation=1.0)  # fmt: skip
    features = run.record.model.input_size
    paths = [fp32, work / "auto.onnx", work / "all.onnx"]
    row: dict[str, Any] = {
        "architecture": label,
        "op_types_chosen": list(chosen.op_choice.chosen.op_types) if chosen.op_choice else [],
        "left_float": chosen.op_choice.left_float() if chosen.op_choice else [],
        "accuracy_fp32": chosen.gate.float_value if chosen.gate else None,
        "accuracy_int8": chosen.gate.quantized_value if chosen.gate else None,
        "accuracy_int8_all": everything.gate.quantized_value if everything.gate else None,
        "p50_ms": _sequence_timings(paths, 100, features),
    }
    if _streamable(run.record.model):
        export(run.out, work / "stream.onnx", streaming=True)
        quantize(work / "stream.onnx", work / "stream.int8.onnx", mode="dynamic-int8")
        row["frame_p50_ms"] = _frame_timings([work / "stream.onnx", work / "stream.int8.onnx"])
    return row


def _streamable(config: Any) -> bool:
    from edgelstm.errors import InvalidInputError

    try:
        config.check_streamable()
    except InvalidInputError:
        return False
    return True


def measure_architectures() -> list[dict[str, Any]]:
    """One row per architecture (see the module docstring)."""
    rows = []
    for label, kwargs in ARCHITECTURES:
        with tempfile.TemporaryDirectory(prefix="edgelstm-archs-") as tmp:
            rows.append(_one_architecture(label, kwargs, Path(tmp)))
    return rows


def architecture_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: speed ratios to FP32, the op types chosen, and test accuracy."""
    lines = [
        f"## Every architecture ({DATASET}, 100 steps, one thread)",
        "",
        "Ratios are p50 over the FP32 model's in the same interleaved rounds (below 1: faster).",
        "",
        "| architecture | op types chosen | chosen / FP32, b1 | b32 | all / FP32, b1 | b32 | "
        "frame INT8 / FP32 | accuracy FP32 -> INT8 (all) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        b1, b32 = row["p50_ms"]["batch 1"], row["p50_ms"]["batch 32"]
        frame = row.get("frame_p50_ms")
        frame_text = f"{frame[1] / frame[0]:.2f}" if frame else "no streaming export"
        accuracy = (
            f"{row['accuracy_fp32']:.3f} -> {row['accuracy_int8']:.3f} "
            f"({row['accuracy_int8_all']:.3f})"
            if row["accuracy_fp32"] is not None
            else "-"
        )
        lines.append(
            f"| {row['architecture']} | {', '.join(row['op_types_chosen']) or '-'} | "
            f"{b1[1] / b1[0]:.2f} | {b32[1] / b32[0]:.2f} | {b1[2] / b1[0]:.2f} | "
            f"{b32[2] / b32[0]:.2f} | {frame_text} | {accuracy} |"
        )
    notes = [f"- {row['architecture']}: {n}" for row in rows for n in row["left_float"]]
    return [*lines, "", *notes] if notes else lines
