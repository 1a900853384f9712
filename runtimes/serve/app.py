"""The HTTP and WebSocket face of the sequence batcher (Starlette, served by uvicorn).

Starlette rather than FastAPI: the routes are few and their JSON is checked by hand against
the model (frame width, finite values), so FastAPI's pydantic layer would add a dependency
and per-request validation cost for nothing. Every route is plain ASGI that uvicorn serves.

Routes (see :func:`create_app`):

- ``GET /healthz``: 200 ``{"status": "ok"}`` while serving, 503 while starting or stopping.
- ``GET /v1/model``: what a client needs: task, features, classes, state shapes, limits.
- ``POST /v1/streams/{stream_id}/frames`` ``{"frames": [[...], ...]}`` →
  ``{"stream": id, "rows": [...]}``: the rows ``edgelstm run MODEL --stream --chunk K`` prints
  for the same frames (K = frames in the request).
- ``DELETE /v1/streams/{stream_id}`` ends a stream; ``?reset=true`` keeps it with zero state.
- ``/v1/streams/{stream_id}/ws``: a WebSocket carrying the same JSON, or binary frames (raw
  little-endian float32, ``[frames, features]`` row-major); each reply is the JSON above.
- ``GET /metrics``: Prometheus text.

With tokens (:class:`~edgelstm.runtimes.serve.access.ServeAccess`), every route but
``/healthz`` (and ``/metrics`` when public) answers 401 without ``Authorization: Bearer``.
Errors are ``{"error": "<what and the fix>"}`` with a 4xx status for the client's fault and
503 plus ``Retry-After`` when overloaded; one client's error never touches another stream.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from edgelstm.runtimes.model_io.features import class_names
from edgelstm.runtimes.model_io.stream_rows import stream_columns
from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.runtimes.serve.access import OWNER_SCOPE_KEY, BearerTokenGate, ServeAccess
from edgelstm.runtimes.serve.batcher import RequestRejected, SequenceBatcher, ServeLimits
from edgelstm.runtimes.serve.calls import BINARY_FORMAT, Reply, StreamCall, perform
from edgelstm.runtimes.serve.metrics import CONTENT_TYPE, ServerMetrics, render_snapshots
from edgelstm.runtimes.serve.peers import StreamRouter, WorkerSeat
from edgelstm.runtimes.serve.quota import StreamQuota

__all__ = ["create_app", "model_description"]


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded by orjson (Starlette's JSONResponse goes through json)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def model_description(batcher: SequenceBatcher, *, workers: int = 1) -> dict[str, Any]:
    """``GET /v1/model``: the metadata a client needs to send frames and read rows."""
    meta = batcher.meta
    return {
        "model": batcher.opened.path.name,
        "task": meta.task,
        "features": list(meta.feature_names),
        "classes": list(class_names(meta)) if meta.task in ("classify", "tag") else [],
        # transcribe: output i writes tokens[i]; rows carry the tokens that became final in
        # each request (greedy CTC: final once emitted) and the text so far.
        "tokens": list(meta.tokens),
        "blank_index": meta.blank_index,
        "decoder": "greedy CTC" if meta.task == "transcribe" else None,
        "columns": stream_columns(meta),
        "state": {name: list(shape) for name, shape in meta.state.items()},
        "frames_multiple": batcher.chunk_multiple,
        "anomaly_threshold": meta.anomaly_threshold,
        "provider": batcher.opened.provider,
        "limits": {
            "max_frames_per_request": batcher.limits.max_frames_per_request,
            "max_streams": batcher.limits.max_streams,
            "max_body_bytes": batcher.limits.max_body_bytes,
        },
        "binary_frames": BINARY_FORMAT,
        "workers": workers,
    }


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused past ``limit`` bytes or when it takes longer than ``timeout_s`` to
    arrive: a client trickling bytes would otherwise hold a connection slot forever."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, "body_too_large", f"the body exceeds {limit} bytes")
    body = bytearray()

    async def read() -> None:
        async for piece in request.stream():
            body.extend(piece)
            if len(body) > limit:
                raise RequestRejected(413, "body_too_large", f"the body exceeds {limit} bytes")

    try:
        await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise RequestRejected(
            408, "body_timeout",
            f"the body did not arrive within {timeout_s:g} s (--body-timeout); send it whole",
        ) from None  # fmt: skip
    return bytes(body)


async def _until_disconnect(request: Request) -> None:
    """Returns when the client hangs up (after the body was read, receive() waits for it)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# --------------------------------------------------------------------------------------------
# routes: each reads the batcher and metrics the app holds in ``app.state``


def _batcher(connection: Request | WebSocket) -> SequenceBatcher:
    batcher: SequenceBatcher = connection.app.state.batcher
    return batcher


def _owner(connection: Request | WebSocket) -> str:
    """Whose streams this request reaches (its token's fingerprint; "" without tokens)."""
    owner: str = connection.scope.get(OWNER_SCOPE_KEY, "")
    return owner


def _router(connection: Request | WebSocket) -> StreamRouter:
    router: StreamRouter = connection.app.state.router
    return router


def _response(reply: Reply) -> Response:
    """The HTTP response for a call's reply (a refusal as ``{"error": ...}``)."""
    if reply.ok:
        return Response(reply.body, 200, media_type="application/json")
    headers = {}
    if reply.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(reply.retry_after)))
    return _json({"error": reply.body.decode()}, reply.status, headers)


async def healthz(request: Request) -> Response:
    """200 while every worker serves; 503 while starting, stopping, or after a batcher died
    (in any worker: a server that cannot serve all its streams is not healthy)."""
    replies = await _router(request).ask_all(StreamCall.HEALTH, timeout_s=1.0)
    ok = all(reply.ok for reply in replies)
    return _json({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)


async def describe(request: Request) -> Response:
    """``GET /v1/model``."""
    return _json(model_description(_batcher(request), workers=_router(request).workers))


async def _unless_gone(request: Request, work: Awaitable[Reply]) -> Reply | None:
    """The call's reply, or None when the client hung up first (the call is cancelled, so
    its chunk is withdrawn unless the model already took it)."""
    call = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_until_disconnect(request))
    await asyncio.wait({call, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not call.done():
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        return None
    gone.cancel()
    return call.result()


async def post_frames(request: Request) -> Response:
    """``POST /v1/streams/{stream_id}/frames``."""
    batcher = _batcher(request)
    stream_id = request.path_params["stream_id"]
    try:
        limits = batcher.limits
        body = await _read_body(request, limits.max_body_bytes, limits.body_timeout_s)
    except RequestRejected as rejected:
        batcher.metrics.requests += 1
        batcher.metrics.reject(rejected.reason)
        return _response(Reply.refused(rejected))
    except ClientDisconnect:
        batcher.metrics.reject("client_gone")
        return Response(status_code=499)
    call = _router(request).call(StreamCall.JSON_FRAMES, _owner(request), stream_id, body)
    reply = await _unless_gone(request, call)
    return Response(status_code=499) if reply is None else _response(reply)


async def end_stream(request: Request) -> Response:
    """``DELETE /v1/streams/{stream_id}[?reset=true]``."""
    reset = request.query_params.get("reset", "false").lower() in ("1", "true", "yes")
    call = StreamCall.RESET if reset else StreamCall.END
    stream_id = request.path_params["stream_id"]
    return _response(await _router(request).call(call, _owner(request), stream_id, b""))


async def stream_socket(socket: WebSocket) -> None:
    """``/v1/streams/{stream_id}/ws``: JSON or binary frames in, one JSON reply each."""
    router = _router(socket)
    stream_id = socket.path_params["stream_id"]
    owner = _owner(socket)
    await socket.accept()
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                call, body = StreamCall.BINARY_FRAMES, message["bytes"]
            else:
                call, body = StreamCall.JSON_FRAMES, (message.get("text") or "").encode()
            reply = await router.call(call, owner, stream_id, body)
            if reply.ok:
                await socket.send_text(reply.body.decode())
            else:
                error = {"error": reply.body.decode(), "status": reply.status}
                await socket.send_text(orjson.dumps(error).decode())
    except WebSocketDisconnect:
        return


async def prometheus(request: Request) -> Response:
    """``GET /metrics``: Prometheus text, added up over every worker."""
    replies = await _router(request).ask_all(StreamCall.METRICS)
    failed = next((reply for reply in replies if not reply.ok), None)
    if failed is not None:
        return _response(failed)
    text = render_snapshots([orjson.loads(reply.body) for reply in replies])
    return Response(text, media_type=CONTENT_TYPE)


ROUTES = [
    Route("/healthz", healthz),
    Route("/v1/model", describe),
    Route("/v1/streams/{stream_id}/frames", post_frames, methods=["POST"]),
    Route("/v1/streams/{stream_id}", end_stream, methods=["DELETE"]),
    WebSocketRoute("/v1/streams/{stream_id}/ws", stream_socket),
    Route("/metrics", prometheus),
]


def create_app(
    model: Artifact | Path | str,
    *,
    session: SessionConfig | None = None,
    limits: ServeLimits | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    access: ServeAccess | None = None,
    seat: WorkerSeat | None = None,
    quota: StreamQuota | None = None,
) -> Starlette:
    """The ASGI app serving a streaming export; run it with uvicorn (or any ASGI server).

    The model is opened (and its checksum verified) and the batcher built here, so a bad
    model, limit or unusable provider fails before the server listens; the batcher's loops
    start with the app's lifespan and, on shutdown, finish the chunks already queued.
    ``on_failure`` hears if the batcher's loop dies (``serve`` then stops the server).
    ``access`` names the tokens a client must present (none: every client is served).
    ``seat``: this process's place among ``--workers`` (None: the only one); ``quota``: the
    stream counts the workers share.

    Example::

        >>> app = create_app("jv.stream.onnx", limits=ServeLimits(max_batch=32))
        ... # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    artifact = model if isinstance(model, Artifact) else load_artifact(model, verify=False)
    opened = open_session(artifact, session or SessionConfig())
    batcher = SequenceBatcher(
        opened, artifact.edgelstm_metadata(), limits or ServeLimits(), ServerMetrics(),
        quota=quota,
    )  # fmt: skip
    seat = seat or WorkerSeat()

    async def perform_here(call: StreamCall, owner: str, stream_id: str, body: bytes) -> Reply:
        return await perform(batcher, call, owner, stream_id, body)

    router = StreamRouter(perform_here, seat, batcher.metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start(on_failure)
        await router.start()
        try:
            yield
        finally:
            await batcher.close()
            await router.close()

    metrics = batcher.metrics
    # Without tokens there is nothing to check: no gate, so the request path costs nothing
    # more (every stream's owner is then "").
    gates = []
    if access is not None and access.required:
        on_refused = lambda: metrics.reject("unauthorized")  # noqa: E731
        gates.append(Middleware(BearerTokenGate, access=access, on_refused=on_refused))
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=gates)
    app.state.batcher = batcher
    app.state.router = router
    return app
