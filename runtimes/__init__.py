"""Runtime room: execution providers, strict sessions, inference over files and streaming state.

Example:
    >>> from edgelstm.runtimes import SessionConfig, run_model
    >>> run_model("jv.onnx", "test.ts", "preds.csv",
    ...           session=SessionConfig(providers=("cuda", "cpu"), fallback=True))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it; nothing heavy is imported until a name is used.
_EXPORTS = {
    "SessionConfig": "edgelstm.runtimes.ort.session_config",
    "OpenedSession": "edgelstm.runtimes.ort.session",
    "open_session": "edgelstm.runtimes.ort.session",
    "RunOptions": "edgelstm.runtimes.run_files",
    "RunResult": "edgelstm.runtimes.run_files",
    "run_model": "edgelstm.runtimes.run_files",
    "stream_model": "edgelstm.runtimes.run_stream",
    "StreamingSession": "edgelstm.runtimes.model_io.streaming_session",
    "evaluate_onnx": "edgelstm.runtimes.model_io.accuracy",
    "validate_feeds": "edgelstm.runtimes.ort.feeds",
    "run_batch": "edgelstm.runtimes.batch",
}

__all__ = [
    "OpenedSession",
    "RunOptions",
    "RunResult",
    "SessionConfig",
    "StreamingSession",
    "evaluate_onnx",
    "open_session",
    "run_batch",
    "run_model",
    "stream_model",
    "validate_feeds",
]

if TYPE_CHECKING:
    from edgelstm.runtimes.batch import run_batch
    from edgelstm.runtimes.model_io.accuracy import evaluate_onnx
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession
    from edgelstm.runtimes.ort.feeds import validate_feeds
    from edgelstm.runtimes.ort.session import OpenedSession, open_session
    from edgelstm.runtimes.ort.session_config import SessionConfig
    from edgelstm.runtimes.run_files import RunOptions, RunResult, run_model
    from edgelstm.runtimes.run_stream import stream_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgelstm.runtimes' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
