"""Whether the server's rows are right: the sampled streams' rows against
:func:`~edgelstm.benchmarks.suites.serve_load.expected.expected_rows` for the frames they sent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.serve_load.expected import expected_rows
from edgelstm.benchmarks.suites.serve_load.plan import LoadPlan, StreamLog, decode_block

__all__ = ["compare_rows", "correctness"]


def compare_rows(
    expected: Sequence[Sequence[Mapping[str, Any]]],
    got: Sequence[Sequence[Mapping[str, Any]]],
    atol: float = 1e-5,
) -> tuple[int, float]:
    """(mismatched chunks, max abs difference): numbers within ``atol`` (the rows carry six
    decimals and a batched call may round the last one differently), the rest equal."""
    mismatched, worst = abs(len(expected) - len(got)), 0.0
    for want_rows, got_rows in zip(expected, got, strict=False):
        bad = len(want_rows) != len(got_rows)
        for want, have in zip(want_rows, got_rows, strict=False):
            bad |= want.keys() != have.keys()
            for key, value in want.items():
                other = have.get(key)
                if isinstance(value, float) and isinstance(other, int | float):
                    worst = max(worst, abs(value - other))
                    bad |= abs(value - other) > atol
                else:
                    bad |= value != other
        mismatched += bad
    return mismatched, worst


def correctness(
    model: Path, logs: Sequence[StreamLog], messages: list[bytes | str], plan: LoadPlan, width: int
) -> dict[str, Any]:
    """Compare the sampled streams' rows with an offline run over the frames they sent."""
    # A request lost at the deadline comes after every reply compared: those still count.
    checked = [log for log in logs if log.checked]
    mismatched, worst, chunks = 0, 0.0, 0
    for log in checked:
        assert log.checked is not None
        blocks = [decode_block(messages[b], plan.binary, width) for b, _ in log.checked]
        want = expected_rows(model, np.concatenate(blocks), plan.frames_per_request)
        bad, diff = compare_rows(want, [r for _, r in log.checked])
        mismatched, worst, chunks = mismatched + bad, max(worst, diff), chunks + len(blocks)
    return {"streams": len(checked), "chunks": chunks, "mismatched_chunks": mismatched,
            "max_abs_diff": worst, "passed": bool(chunks) and not mismatched}  # fmt: skip
