"""How recurrent ONNX models are fed: zero initial state, length buckets, and task splits.

Every caller that runs an edgelstm graph over whole sequences (``run``, the accuracy gates,
the streaming drift audit, the benchmark) starts a streaming graph's state from
:func:`zero_state`, and every caller with sequences of several lengths goes through
:func:`run_bucketed`: exported graphs take unpadded input, so equal lengths are grouped into
batches and the outputs come back in the original order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.runtimes.model_io.contract import FRAMES_INPUT, state_output_name
from edgelstm.runtimes.ort.feeds import InputSpec, input_specs
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.tasks import Split, concat_padded

__all__ = ["Progress", "SplitPredictor", "cpu_session", "run_bucketed", "zero_state"]

#: ``progress(done, total)``: items (sequences, windows or batches) finished so far.
Progress = Callable[[int, int], None]


def cpu_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with quiet logging; bad files get a clean error.

    ``threads=None`` keeps ONNX Runtime's default thread count (validation and accuracy gates
    run whole test sets, where more threads help).
    """
    config = SessionConfig(providers=("cpu",), intra_op_threads=threads)
    return open_session(path, config).session


def zero_state(specs: Iterable[InputSpec], batch: int) -> dict[str, np.ndarray]:
    """Zero arrays for state inputs (``layer0_h``, ``layer0_c``, ...: ``[directions, batch,
    hidden]``; stacked ``h``, ``c`` ``[layers*directions, batch, hidden]`` in older files).

    Symbolic dimensions take ``batch``: the state's only symbolic axis is the batch axis.

    Example::

        >>> state = zero_state(input_specs(session)[1:], batch=4)  # doctest: +SKIP
        >>> state["layer0_h"].shape  # doctest: +SKIP
        (1, 4, 128)
    """
    return {
        spec.name: np.zeros([d if isinstance(d, int) else batch for d in spec.shape], spec.dtype)
        for spec in specs
    }


def run_in_chunks(
    session: Any, x: np.ndarray, chunk: int, state_specs: Sequence[InputSpec], *, concatenate: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Feed ``x`` ``[batch, time, features]`` to a streaming graph ``chunk`` steps at a time.

    The state starts at zero and is carried from each call's state outputs, found by name
    (:func:`~edgelstm.runtimes.model_io.contract.state_output_name`). Returns the
    task output (every chunk's, joined along time, when ``concatenate``; else the last) and the
    final state. Export validation and the quantizer's drift report both stream this way.
    """
    names = [spec.name for spec in state_specs]
    outputs = [session.get_outputs()[0].name, *(state_output_name(n) for n in names)]
    states = zero_state(state_specs, x.shape[0])
    pieces = []
    for start in range(0, x.shape[1], chunk):
        results = session.run(outputs, {FRAMES_INPUT: x[:, start : start + chunk], **states})
        pieces.append(results[0])
        states = dict(zip(names, results[1:], strict=True))
    return (np.concatenate(pieces, axis=1) if concatenate else pieces[-1]), states


def run_bucketed(
    run: Callable[[np.ndarray], np.ndarray],
    sequences: Sequence[np.ndarray],
    *,
    batch_size: int,
    progress: Progress | None = None,
) -> np.ndarray:
    """``run`` over ``sequences`` ``[time_i, features]`` of any lengths, one output row each.

    Sequences of one length are stacked into batches of at most ``batch_size`` (no padding
    reaches the graph); the result holds the outputs in input order. ``progress`` hears the
    sequences done so far after every batch.

    Example::

        >>> out = run_bucketed(lambda x: session.run(None, {"x": x})[0], seqs, batch_size=256)
        ... # doctest: +SKIP
    """
    lengths = np.array([len(s) for s in sequences])
    parts: list[np.ndarray] = []
    order: list[np.ndarray] = []
    done = 0
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        for start in range(0, len(idx), batch_size):
            part = idx[start : start + batch_size]
            parts.append(run(np.stack([sequences[i] for i in part])))
            order.append(part)
            done += len(part)
            if progress is not None:
                progress(done, len(sequences))
    # Per-step outputs of different lengths are zero-padded to the longest (their readers cut
    # each row back to its own length); per-sequence outputs stack as they are.
    stacked = concat_padded(parts)
    result = np.empty_like(stacked)
    result[np.concatenate(order)] = stacked
    return result


class SplitPredictor:
    """Callable ``Split -> outputs`` over an ONNX Runtime session (first output only).

    Streaming graphs get zero initial state for their state inputs, so a whole sequence run
    through them scores like the sequence graph.
    """

    def __init__(self, session: Any, *, batch_size: int = 256) -> None:
        self.session = session
        self.batch_size = batch_size
        specs = input_specs(session)
        self.input_name = specs[0].name
        self.state_specs = specs[1:]
        self.output_name = session.get_outputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        feeds = {self.input_name: x, **zero_state(self.state_specs, len(x))}
        output: np.ndarray = self.session.run([self.output_name], feeds)[0]
        return output

    def __call__(self, split: Split) -> np.ndarray:
        sequences: Sequence[np.ndarray] = list(split.x)
        if split.lengths is not None:
            sequences = [x[: int(n)] for x, n in zip(split.x, split.lengths, strict=True)]
        return run_bucketed(self._run, sequences, batch_size=self.batch_size)
