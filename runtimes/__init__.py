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
    "SessionConfig": "edgelstm.runtimes.session",
    "OpenedSession": "edgelstm.runtimes.session",
    "open_session": "edgelstm.runtimes.session",
    "RunOptions": "edgelstm.runtimes.run",
    "RunResult": "edgelstm.runtimes.run",
    "run_model": "edgelstm.runtimes.run",
    "stream_model": "edgelstm.runtimes.stream",
    "StreamingSession": "edgelstm.runtimes.streaming",
    "score_onnx": "edgelstm.runtimes.scoring",
    "validate_feeds": "edgelstm.runtimes.feeds",
    "score_files": "edgelstm.runtimes.batch",
}

__all__ = [
    "OpenedSession",
    "RunOptions",
    "RunResult",
    "SessionConfig",
    "StreamingSession",
    "open_session",
    "run_model",
    "score_files",
    "score_onnx",
    "stream_model",
    "validate_feeds",
]

if TYPE_CHECKING:
    from edgelstm.runtimes.batch import score_files
    from edgelstm.runtimes.feeds import validate_feeds
    from edgelstm.runtimes.run import RunOptions, RunResult, run_model
    from edgelstm.runtimes.scoring import score_onnx
    from edgelstm.runtimes.session import OpenedSession, SessionConfig, open_session
    from edgelstm.runtimes.stream import stream_model
    from edgelstm.runtimes.streaming import StreamingSession


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgelstm.runtimes' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
