"""A deadline for a request's head: a client that connects and trickles (or never sends) its
headers is cut off, instead of holding one of ``--max-connections`` forever.

uvicorn bounds a request's body only through the app (``--body-timeout``) and the time
between keep-alive requests, but not the head of a request, nor the head of the HTTP
upgrade that opens a WebSocket: a "slowloris" client can keep many connections open by
sending a header byte every few seconds. :class:`HeaderDeadlineProtocol` is uvicorn's
httptools protocol with that one deadline added: armed when a connection opens and again
when a response completes (the next request's head), disarmed when the headers are in.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeaderDeadlineProtocol"]


class HeaderDeadlineProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's HTTP protocol, closing a connection whose request head is not complete
    within :attr:`header_timeout_s` seconds."""

    header_timeout_s = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    @classmethod
    def bound_to(cls, header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
        """The protocol class with this deadline (uvicorn takes a class, not an instance)."""
        return type(cls.__name__, (cls,), {"header_timeout_s": header_timeout_s})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _head_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Any) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)
