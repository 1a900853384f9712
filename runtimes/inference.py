"""Run an ONNX model over prepared task data, the way training scored the torch model.

Exported graphs take unpadded input, so variable-length sequences are grouped by length
(bucketing) and each group runs as one batch; outputs come back in the original order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.runtimes.session import SessionConfig, open_session
from edgelstm.tasks import Split


def cpu_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with quiet logging; bad files get a clean error.

    ``threads=None`` keeps ONNX Runtime's default thread count (validation and accuracy gates
    run whole test sets, where more threads help).
    """
    config = SessionConfig(providers=("cpu",), intra_op_threads=threads)
    return open_session(path, config).session


class SplitPredictor:
    """Callable ``Split -> outputs`` over an ONNX Runtime session (first output only).

    Streaming graphs get zero initial state for their state inputs, so a whole sequence run
    through them scores like the sequence graph.
    """

    def __init__(self, session: Any, *, batch_size: int = 256) -> None:
        self.session = session
        self.batch_size = batch_size
        inputs = session.get_inputs()
        self.input_name = inputs[0].name
        # State inputs are [layers*directions, batch, hidden]; the batch axis is symbolic.
        self.state_shapes = {i.name: list(i.shape) for i in inputs[1:]}
        self.output_name = session.get_outputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), self.batch_size):
            chunk = np.ascontiguousarray(x[start : start + self.batch_size])
            feeds = {self.input_name: chunk}
            for name, shape in self.state_shapes.items():
                dims = [d if isinstance(d, int) else len(chunk) for d in shape]
                feeds[name] = np.zeros(dims, dtype=np.float32)
            outputs.append(self.session.run([self.output_name], feeds)[0])
        return np.concatenate(outputs, axis=0)

    def __call__(self, split: Split) -> np.ndarray:
        if split.lengths is None:
            return self._run(split.x)
        result: np.ndarray | None = None
        for length in np.unique(split.lengths):
            idx = np.flatnonzero(split.lengths == length)
            out = self._run(split.x[idx, : int(length)])
            if result is None:
                result = np.empty((len(split), *out.shape[1:]), dtype=out.dtype)
            result[idx] = out
        assert result is not None
        return result
