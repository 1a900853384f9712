"""The two routes every frame takes, as plain ASGI: ``POST /v1/streams/{id}/frames`` and
the WebSocket ``/v1/streams/{id}/ws``.

Under load these routes are nearly every request, and Starlette's routing, request and
WebSocket objects, exception layers (on every message sent, too), a body-reading task and a
disconnect-watching task cost as much as the frames themselves (profiled: about a quarter
of a request's time). Here the path is matched by hand, the body read straight from
``receive`` under one deadline, and an HTTP client's hang-up watched by a single pending
``receive`` that cancels the call. What the routes do is unchanged: the frames go to the
stream's worker as they came (:meth:`~.peers.StreamRouter.call`), a client that hangs up
withdraws its queued chunk, a trickling body is 408 and an oversized one 413; a WebSocket
answers each message with the JSON an HTTP request gets, or ``{"error", "status"}``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from edgelstm.runtimes.serve.access import OWNER_SCOPE_KEY
from edgelstm.runtimes.serve.batcher import ServeLimits
from edgelstm.runtimes.serve.calls import Reply, StreamCall
from edgelstm.runtimes.serve.metrics import ServerMetrics
from edgelstm.runtimes.serve.peers import StreamRouter
from edgelstm.runtimes.serve.rejections import RequestRejected

__all__ = ["PATHS", "StreamRoutes", "http_reply"]

_PREFIX, _FRAMES, _SOCKET = "/v1/streams/", "/frames", "/ws"
#: The routes served here, as Starlette would write them.
PATHS = (f"{_PREFIX}{{stream_id}}{_FRAMES}", f"{_PREFIX}{{stream_id}}{_SOCKET}")


def _stream_id(path: str, suffix: str) -> str | None:
    """The ``{stream_id}`` of ``/v1/streams/{stream_id}SUFFIX`` (one path segment, as
    Starlette matches it), or None."""
    stream_id = path[len(_PREFIX) : -len(suffix)]
    return stream_id if stream_id and "/" not in stream_id else None


_CLIENT_GONE = Reply(499, b"the client closed the request")
_POST_ONLY = Reply(405, b"send frames with POST /v1/streams/{stream_id}/frames")


class _ClientGone(Exception):
    """The client hung up before its request was answered."""


class StreamRoutes:
    """ASGI middleware serving the frames routes itself and passing every other request to
    ``app`` (the Starlette routes)."""

    def __init__(
        self, app: Any, router: StreamRouter, limits: ServeLimits, metrics: ServerMetrics
    ) -> None:
        self.app = app
        self.router = router
        self.limits = limits
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        if path.startswith(_PREFIX):
            kind = scope["type"]
            if kind == "http" and path.endswith(_FRAMES):
                stream_id = _stream_id(path, _FRAMES)
                if stream_id is not None:
                    if scope["method"] == "POST":
                        await self._post_frames(scope, receive, send, stream_id)
                    else:
                        await http_reply(send, _POST_ONLY, [(b"allow", b"POST")])
                    return
            if kind == "websocket" and path.endswith(_SOCKET):
                stream_id = _stream_id(path, _SOCKET)
                if stream_id is not None:
                    await self._socket(scope, receive, send, stream_id)
                    return
        await self.app(scope, receive, send)

    async def _socket(self, scope: Any, receive: Any, send: Any, stream_id: str) -> None:
        """JSON or binary frames in, one JSON text message out per message."""
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        owner = scope.get(OWNER_SCOPE_KEY, "")
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is not None:
                    call, body = StreamCall.BINARY_FRAMES, data
                else:
                    call, body = StreamCall.JSON_FRAMES, (message.get("text") or "").encode()
                reply = await self.router.call(call, owner, stream_id, body)
                if reply.ok:
                    text = reply.body.decode()
                else:
                    error = {"error": reply.body.decode(), "status": reply.status}
                    text = orjson.dumps(error).decode()
                await send({"type": "websocket.send", "text": text})
        except OSError:  # uvicorn's ClientDisconnected: the client left mid-reply
            return

    async def _post_frames(self, scope: Any, receive: Any, send: Any, stream_id: str) -> None:
        try:
            body = await _read_body(scope, receive, self.limits)
        except RequestRejected as rejected:
            self.metrics.requests += 1
            self.metrics.reject(rejected.reason)
            await http_reply(send, Reply.refused(rejected))
            return
        except _ClientGone:
            self.metrics.reject("client_gone")
            await http_reply(send, _CLIENT_GONE)
            return
        owner = scope.get(OWNER_SCOPE_KEY, "")
        reply = await _unless_gone(
            receive, self.router.call(StreamCall.JSON_FRAMES, owner, stream_id, body)
        )
        # 499 (nginx's "client closed request"): nobody reads it, but a proxy's log does.
        await http_reply(send, reply or _CLIENT_GONE)


async def http_reply(
    send: Any, reply: Reply, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send ``reply`` as the HTTP response."""
    headers = [(b"content-type", b"application/json"), *reply.http_headers()]
    headers += extra_headers or []
    body = reply.http_body()
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(scope: Any, receive: Any, limits: ServeLimits) -> bytes:
    """The body, refused past ``max_body_bytes`` or when it takes longer than
    ``body_timeout_s`` to arrive (a trickling client would hold a connection forever)."""
    limit, timeout_s = limits.max_body_bytes, limits.body_timeout_s
    too_large = RequestRejected(413, "body_too_large", f"the body exceeds {limit} bytes")
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large

    async def collect() -> bytes:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise too_large
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)

    try:
        if sys.version_info >= (3, 11):  # a deadline without a task per request
            async with asyncio.timeout(timeout_s):
                return await collect()
        return await asyncio.wait_for(collect(), timeout_s)
    except asyncio.TimeoutError:
        raise RequestRejected(
            408, "body_timeout",
            f"the body did not arrive within {timeout_s:g} s (--body-timeout); send it whole",
        ) from None  # fmt: skip


async def _unless_gone(receive: Any, call: Any) -> Reply | None:
    """``call``'s reply, or None when the client hung up first: then the call is cancelled,
    which withdraws its chunk unless the model already took it. After the body, the server's
    ``receive`` answers only when the client disconnects, so one pending ``receive`` is the
    whole watch."""
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.ensure_future(receive())
    answered = False

    def hung_up(_: Any) -> None:
        # Callbacks run later on the loop: one scheduled just as the call finished must not
        # cancel the reply being sent.
        if not answered and not gone.cancelled():
            task.cancel()

    gone.add_done_callback(hung_up)
    try:
        return await call  # type: ignore[no-any-return]
    except asyncio.CancelledError:
        if gone.done() and not gone.cancelled():
            return None  # the client left; nobody is waiting for an answer
        raise
    finally:
        answered = True
        gone.cancel()
