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

Errors are ``{"error": "<what and the fix>"}`` with a 4xx status for the client's fault and
503 plus ``Retry-After`` when overloaded; one client's error never touches another stream.
"""

from __future__ import annotations

import asyncio
import json
import math
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.session import SessionConfig, open_session
from edgelstm.runtimes.run_files import class_names
from edgelstm.runtimes.run_stream import stream_columns
from edgelstm.runtimes.serve.batcher import RequestRejected, SequenceBatcher, ServeLimits
from edgelstm.runtimes.serve.metrics import CONTENT_TYPE, ServerMetrics

__all__ = ["create_app", "model_description"]

#: How binary WebSocket frames are laid out (also in ``/v1/model``).
BINARY_FORMAT = "little-endian float32, row-major [frames, features], no header"


def _error(rejected: RequestRejected) -> JSONResponse:
    headers = {}
    if rejected.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(rejected.retry_after)))
    return JSONResponse({"error": str(rejected)}, status_code=rejected.status, headers=headers)


def model_description(batcher: SequenceBatcher) -> dict[str, Any]:
    """``GET /v1/model``: the metadata a client needs to send frames and read rows."""
    meta = batcher.meta
    return {
        "model": batcher.opened.path.name,
        "task": meta.task,
        "features": list(meta.feature_names),
        "feature_units": None,  # edgelstm metadata records names, not units
        "classes": list(class_names(meta)) if meta.task == "classify" else [],
        "columns": stream_columns(meta),
        "state": {name: list(shape) for name, shape in meta.state.items()},
        "frames_multiple": batcher.chunk_multiple,
        "frame_rate_hz": None,  # not recorded at training time; the sensor decides
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
    return array.astype(np.float64, copy=False)


def _parse_json(body: bytes) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRejected(400, "bad_json", f"the body is not valid JSON ({exc})") from None
    except RecursionError:  # "[[[[...": json's recursion limit, a 500 when uncaught
        raise RequestRejected(
            400, "bad_json", 'the JSON is nested too deeply; send {"frames": [[...], ...]}'
        ) from None
    return _frames_from_json(payload)


def _parse_binary(data: bytes, features: int) -> np.ndarray:
    if len(data) % (4 * features):
        raise RequestRejected(
            422, "bad_width",
            f"a binary message holds {len(data)} bytes, not a multiple of {4 * features} "
            f"(frames of {features} float32 values: {BINARY_FORMAT})",
        )  # fmt: skip
    return np.frombuffer(data, dtype="<f4").reshape(-1, features).astype(np.float64)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, "body_too_large", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise RequestRejected(413, "body_too_large", f"the body exceeds {limit} bytes")
    return bytes(body)


async def _until_disconnect(request: Request) -> None:
    """Returns when the client hangs up (after the body was read, receive() waits for it)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(
    model: Artifact | Path | str,
    *,
    session: SessionConfig | None = None,
    limits: ServeLimits | None = None,
) -> Starlette:
    """The ASGI app serving a streaming export; run it with uvicorn (or any ASGI server).

    The model is opened (and its checksum verified) here, so a bad model or an unusable
    provider fails before the server listens; the batcher starts with the app's lifespan
    and, on shutdown, finishes the chunks already queued.

    Example::

        >>> app = create_app("jv.stream.onnx", limits=ServeLimits(max_batch=32))
        ... # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    artifact = model if isinstance(model, Artifact) else load_artifact(model, verify=False)
    opened = open_session(artifact, session or SessionConfig())
    meta = artifact.edgelstm_metadata()
    limits = limits or ServeLimits()
    metrics = ServerMetrics()
    # The batcher's asyncio objects belong to the serving loop: made in the lifespan. This
    # first one checks the model and limits now, before anything listens.
    holder = {"batcher": SequenceBatcher(opened, meta, limits, metrics)}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        batcher = SequenceBatcher(opened, meta, limits, metrics)
        holder["batcher"] = batcher
        batcher.start()
        try:
            yield
        finally:
            await batcher.close()

    async def healthz(request: Request) -> Response:
        ok = holder["batcher"].running
        return JSONResponse({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)

    async def describe(request: Request) -> Response:
        return JSONResponse(model_description(holder["batcher"]))

    async def frames(request: Request) -> Response:
        batcher = holder["batcher"]
        stream_id = request.path_params["stream_id"]
        metrics.requests += 1
        try:
            body = await _read_body(request, limits.max_body_bytes)
            work = asyncio.ensure_future(batcher.submit(stream_id, _parse_json(body)))
            gone = asyncio.ensure_future(_until_disconnect(request))
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # the client left: withdraw its chunk if not yet running
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                return Response(status_code=499)
            gone.cancel()
            rows = work.result()
        except RequestRejected as rejected:
            metrics.reject(rejected.reason)
            return _error(rejected)
        except ClientDisconnect:
            metrics.reject("client_gone")
            return Response(status_code=499)
        return JSONResponse({"stream": stream_id, "rows": rows})

    async def end_stream(request: Request) -> Response:
        reset = request.query_params.get("reset", "false").lower() in ("1", "true", "yes")
        try:
            await holder["batcher"].end(request.path_params["stream_id"], reset=reset)
        except RequestRejected as rejected:
            metrics.reject(rejected.reason)
            return _error(rejected)
        return JSONResponse({"stream": request.path_params["stream_id"], "reset": reset})

    async def websocket(socket: WebSocket) -> None:
        batcher = holder["batcher"]
        stream_id = socket.path_params["stream_id"]
        await socket.accept()
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                metrics.requests += 1
                try:
                    if message.get("bytes") is not None:
                        data = message["bytes"]
                        array = _parse_binary(data, batcher.num_features)
                    else:
                        array = _parse_json((message.get("text") or "").encode())
                    rows = await batcher.submit(stream_id, array)
                except RequestRejected as rejected:
                    metrics.reject(rejected.reason)
                    await socket.send_json({"error": str(rejected), "status": rejected.status})
                    continue
                await socket.send_json({"stream": stream_id, "rows": rows})
        except WebSocketDisconnect:
            return

    async def prometheus(request: Request) -> Response:
        batcher = holder["batcher"]
        text = metrics.render(
            active_streams=batcher.active_streams, queued_frames=batcher.queued_frames
        )
        return Response(text, media_type=CONTENT_TYPE)

    routes = [
        Route("/healthz", healthz),
        Route("/v1/model", describe),
        Route("/v1/streams/{stream_id}/frames", frames, methods=["POST"]),
        Route("/v1/streams/{stream_id}", end_stream, methods=["DELETE"]),
        WebSocketRoute("/v1/streams/{stream_id}/ws", websocket),
        Route("/metrics", prometheus),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
