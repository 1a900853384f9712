"""The rows a served stream must get: the ones ``edgelstm run --stream`` writes for its frames."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["expected_rows"]


def expected_rows(
    model_path: Path, frames_per_stream: np.ndarray, chunk: int
) -> list[list[dict[str, Any]]]:
    """Rows per chunk of ``chunk`` frames that ``run --stream --chunk`` gives for one stream's
    frames ``[n, features]`` (original units), which the server's rows must equal.

    The frames go through :func:`edgelstm.runtimes.run_stream.stream_model` as CSV text, as
    they would from stdin; ``repr`` writes each float64 so that it reads back bit for bit.
    """
    from edgelstm.runtimes.run_stream import stream_model

    text = "".join(",".join(map(repr, frame)) + "\n" for frame in frames_per_stream.tolist())
    rows: list[list[dict[str, Any]]] = []
    stream_model(model_path, io.StringIO(text), rows.append, chunk=chunk)
    return rows
