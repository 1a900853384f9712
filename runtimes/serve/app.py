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
import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
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
from edgelstm.runtimes.serve.metrics import CONTENT_TYPE, ServerMetrics

__all__ = ["create_app", "model_description"]

#: How binary WebSocket frames are laid out (also in ``/v1/model``).
BINARY_FORMAT = "little-endian float32, row-major [frames, features], no header"


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded by orjson (Starlette's JSONResponse goes through json)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def _error(rejected: RequestRejected) -> Response:
    headers = {}
    if rejected.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(rejected.retry_after)))
    return _json({"error": str(rejected)}, rejected.status, headers)


def model_description(batcher: SequenceBatcher) -> dict[str, Any]:
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
    }


def _frames_from_json(payload: Any) -> np.ndarray:
    if not isinstance(payload, dict) or "frames" not in payload:
        raise RequestRejected(
            400, "bad_json", 'send a JSON object {"frames": [[f_1, ..., f_F], ...]}'
        )
    frames = payload["frames"]
    if not isinstance(frames, list):
        raise RequestRejected(400, "bad_json", '"frames" must be a list of frames')
    refused = RequestRejected(
        422, "bad_frames",
        '"frames" must be a list of frames of equal length, each a list of numbers',
    )  # fmt: skip
    try:
        array = np.asarray(frames)
    # OverflowError: a JSON integer past float range (10**400) is the client's fault too;
    # uncaught, it was a 500 and ended the WebSocket.
    except (TypeError, ValueError, OverflowError):
        raise refused from None
    # Numbers only: numpy would read "1.5" strings and true/false as values, and an integer
    # past float range arrives as a Python object.
    if array.dtype.kind not in "iuf":
        raise refused
    return array


def _parse_json(body: bytes) -> np.ndarray:
    try:
        # orjson: a tenth of json's time on a chunk of floats, the largest cost of an HTTP
        # request. It refuses what json reads (NaN, integers past 64 bits), so json reads
        # those, and the client hears the precise reason (422 non-finite, not 400).
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = _parse_json_strictly(body)
    return _frames_from_json(payload)


def _parse_json_strictly(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRejected(400, "bad_json", f"the body is not valid JSON ({exc})") from None
    except RecursionError:  # "[[[[...": json's recursion limit, a 500 when uncaught
        raise RequestRejected(
            400, "bad_json", 'the JSON is nested too deeply; send {"frames": [[...], ...]}'
        ) from None


def _parse_binary(data: bytes, features: int) -> np.ndarray:
    if len(data) % (4 * features):
        raise RequestRejected(
            422, "bad_width",
            f"a binary message holds {len(data)} bytes, not a multiple of {4 * features} "
            f"(frames of {features} float32 values: {BINARY_FORMAT})",
        )  # fmt: skip
    return np.frombuffer(data, dtype="<f4").reshape(-1, features)


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


async def healthz(request: Request) -> Response:
    """200 while serving; 503 while starting, stopping, or after the batcher died."""
    ok = _batcher(request).running
    return _json({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)


async def describe(request: Request) -> Response:
    """``GET /v1/model``."""
    return _json(model_description(_batcher(request)))


async def _rows_unless_gone(
    request: Request, batcher: SequenceBatcher, stream_id: str, frames: np.ndarray
) -> list[dict[str, Any]] | None:
    """The stream's rows, or None when the client hung up first (its chunk is withdrawn
    unless the model already took it)."""
    work = asyncio.ensure_future(batcher.submit(stream_id, frames, owner=_owner(request)))
    gone = asyncio.ensure_future(_until_disconnect(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return None
    gone.cancel()
    return work.result()


async def post_frames(request: Request) -> Response:
    """``POST /v1/streams/{stream_id}/frames``."""
    batcher = _batcher(request)
    stream_id = request.path_params["stream_id"]
    batcher.metrics.requests += 1
    try:
        limits = batcher.limits
        body = await _read_body(request, limits.max_body_bytes, limits.body_timeout_s)
        rows = await _rows_unless_gone(request, batcher, stream_id, _parse_json(body))
    except RequestRejected as rejected:
        batcher.metrics.reject(rejected.reason)
        return _error(rejected)
    except ClientDisconnect:
        batcher.metrics.reject("client_gone")
        return Response(status_code=499)
    if rows is None:
        return Response(status_code=499)
    return _json({"stream": stream_id, "rows": rows})


async def end_stream(request: Request) -> Response:
    """``DELETE /v1/streams/{stream_id}[?reset=true]``."""
    batcher = _batcher(request)
    stream_id = request.path_params["stream_id"]
    reset = request.query_params.get("reset", "false").lower() in ("1", "true", "yes")
    try:
        await batcher.end(stream_id, reset=reset, owner=_owner(request))
    except RequestRejected as rejected:
        batcher.metrics.reject(rejected.reason)
        return _error(rejected)
    return _json({"stream": stream_id, "reset": reset})


async def stream_socket(socket: WebSocket) -> None:
    """``/v1/streams/{stream_id}/ws``: JSON or binary frames in, one JSON reply each."""
    batcher = _batcher(socket)
    stream_id = socket.path_params["stream_id"]
    await socket.accept()
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            batcher.metrics.requests += 1
            try:
                if message.get("bytes") is not None:
                    array = _parse_binary(message["bytes"], batcher.num_features)
                else:
                    array = _parse_json((message.get("text") or "").encode())
                rows = await batcher.submit(stream_id, array, owner=_owner(socket))
            except RequestRejected as rejected:
                batcher.metrics.reject(rejected.reason)
                await socket.send_text(
                    orjson.dumps({"error": str(rejected), "status": rejected.status}).decode()
                )
                continue
            await socket.send_text(orjson.dumps({"stream": stream_id, "rows": rows}).decode())
    except WebSocketDisconnect:
        return


async def prometheus(request: Request) -> Response:
    """``GET /metrics``: Prometheus text."""
    batcher = _batcher(request)
    text = batcher.metrics.render(
        active_streams=batcher.active_streams, queued_frames=batcher.queued_frames
    )
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
) -> Starlette:
    """The ASGI app serving a streaming export; run it with uvicorn (or any ASGI server).

    The model is opened (and its checksum verified) and the batcher built here, so a bad
    model, limit or unusable provider fails before the server listens; the batcher's loops
    start with the app's lifespan and, on shutdown, finish the chunks already queued.
    ``on_failure`` hears if the batcher's loop dies (``serve`` then stops the server).
    ``access`` names the tokens a client must present (none: every client is served).

    Example::

        >>> app = create_app("jv.stream.onnx", limits=ServeLimits(max_batch=32))
        ... # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    artifact = model if isinstance(model, Artifact) else load_artifact(model, verify=False)
    opened = open_session(artifact, session or SessionConfig())
    batcher = SequenceBatcher(
        opened, artifact.edgelstm_metadata(), limits or ServeLimits(), ServerMetrics()
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start(on_failure)
        try:
            yield
        finally:
            await batcher.close()

    metrics = batcher.metrics
    # Without tokens there is nothing to check: no gate, so the request path costs nothing
    # more (every stream's owner is then "").
    gates = []
    if access is not None and access.required:
        on_refused = lambda: metrics.reject("unauthorized")  # noqa: E731
        gates.append(Middleware(BearerTokenGate, access=access, on_refused=on_refused))
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=gates)
    app.state.batcher = batcher
    return app
