"""The one error a request can meet in the server: refused, with its status and reason."""

from __future__ import annotations

from edgelstm.errors import EdgeLSTMError

__all__ = ["RequestRejected"]


class RequestRejected(EdgeLSTMError):
    """A request the server refuses: the HTTP ``status``, a metrics ``reason`` and, for
    overload, how many seconds to wait before retrying."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
