"""The shared runtime mechanics: one zero-state builder, one length-bucketing helper, and the
export's streamability rule applied by the benchmark too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_KW, single_thread

from edgelstm.benchmarks.measure import Measurement, measure
from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.model_io.feeding import run_bucketed, zero_state
from edgelstm.runtimes.ort.feeds import InputSpec


def test_zero_state_fills_the_batch_axis_and_keeps_the_dtype() -> None:
    specs = (
        InputSpec("h", np.float32, (2, "batch", 8)),
        InputSpec("c", np.float16, (2, None, 8)),
    )
    state = zero_state(specs, batch=5)
    assert list(state) == ["h", "c"]
    assert state["h"].shape == state["c"].shape == (2, 5, 8)
    assert state["h"].dtype == np.float32 and state["c"].dtype == np.float16
    assert not state["h"].any() and not state["c"].any()


def test_run_bucketed_batches_equal_lengths_and_keeps_the_input_order() -> None:
    lengths = [3, 5, 3, 3, 5, 1]
    sequences = [np.full((n, 2), float(i)) for i, n in enumerate(lengths)]
    calls: list[tuple[int, int]] = []
    progress: list[tuple[int, int]] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape[:2])
        return np.stack([x[:, 0, 0], x.sum(axis=(1, 2))], axis=1)  # id and size per sequence

    out = run_bucketed(run, sequences, batch_size=2, progress=lambda d, t: progress.append((d, t)))
    assert sorted(calls) == [(1, 1), (1, 3), (2, 3), (2, 5)]  # never a padded or mixed batch
    np.testing.assert_array_equal(out[:, 0], np.arange(len(lengths)))
    np.testing.assert_array_equal(out[:, 1], [i * n * 2 for i, n in enumerate(lengths)])
    assert progress[-1] == (6, 6) and [d for d, _ in progress] == sorted(d for d, _ in progress)


@pytest.mark.parametrize(
    ("options", "words"),
    [({"pooling": "mean"}, "mean-pooled"), ({"bidirectional": True}, "bidirectional")],
)
def test_benchmark_streams_torch_only_what_could_be_exported_streaming(
    tmp_path: Path, classify_npz: Path, options: dict[str, Any], words: str
) -> None:
    """The benchmark's torch streaming rows follow the export's rule (before: only a
    bidirectional model was refused, so a mean-pooled classifier got a streaming row)."""
    single_thread()
    from edgelstm.training.trainer import train

    run = train("classify", data=classify_npz, out=tmp_path / "run", seed=0, **TINY_KW, **options)
    streaming = Measurement(
        model=str(run.out),
        runtime="torch",
        provider="cpu",
        precision="fp32",
        mode="streaming",
        batch=1,
        seq=4,
        threads=1,
        warmup=0,
        iterations=1,
    )
    with pytest.raises(InvalidInputError, match=words):
        measure(streaming)
