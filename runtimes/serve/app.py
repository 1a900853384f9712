"""The HTTP and WebSocket face of the sequence batcher (Starlette, served by uvicorn).

Starlette rather than FastAPI: the routes are few and their JSON is checked by hand against
the model (frame width, finite values), so FastAPI's pydantic layer would add a dependency
and per-request validation cost for nothing. Every route is plain ASGI that uvicorn serves.

Routes (see :func:`create_app`):

- ``GET /healthz``: 200 ``{"status": "ok"}`` while serving, 503 while starting or stopping.
- ``GET /v1/model``: what a client needs: task, features, classes, state shapes, limits.
- ``POST /v1/streams/{stream_id}/frames`` ``{"frames": [[...], ...]}`` →
  ``{"stream": id, "rows": [...]}``: the rows ``edgelstm run MODEL --stream --chunk K`` prints
  for the same frames (K = frames in the request). Served by :mod:`.stream_routes` in front
  of the Starlette routes, as is the WebSocket below.
- ``DELETE /v1/streams/{stream_id}`` ends a stream; ``?reset=true`` keeps it with zero state.
- ``/v1/streams/{stream_id}/ws``: a WebSocket carrying the same JSON, or binary frames (raw
  little-endian float32, ``[frames, features]`` row-major); each reply is the JSON above.
- ``GET /metrics``: Prometheus text, added up over every worker.

A call on a stream goes through the :class:`~.peers.StreamRouter` to the worker holding the
stream (this one, or a peer with ``--workers``), where :func:`~.calls.perform` runs it.

With tokens (:class:`~edgelstm.runtimes.serve.access.ServeAccess`), every route but
``/healthz`` (and ``/metrics`` when public) answers 401 without ``Authorization: Bearer``.
Errors are ``{"error": "<what and the fix>"}`` with a 4xx status for the client's fault and
503 plus ``Retry-After`` when overloaded; one client's error never touches another stream.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edgelstm.errors import EdgeLSTMError, first_line
from edgelstm.runtimes.model_io.features import class_names
from edgelstm.runtimes.model_io.stream_rows import stream_columns
from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.runtimes.serve.access import OWNER_SCOPE_KEY, BearerTokenGate, ServeAccess
from edgelstm.runtimes.serve.batcher import SequenceBatcher, ServeLimits
from edgelstm.runtimes.serve.calls import BINARY_FORMAT, Reply, StreamCall, perform
from edgelstm.runtimes.serve.metrics import CONTENT_TYPE, ServerMetrics, render_snapshots
from edgelstm.runtimes.serve.peers import StreamRouter, WorkerSeat
from edgelstm.runtimes.serve.quota import StreamQuota
from edgelstm.runtimes.serve.stream_routes import StreamRoutes

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
        "frames_per_request": batcher.contract.frames_per_call,
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


# --------------------------------------------------------------------------------------------
# routes: each reads the batcher and metrics the app holds in ``app.state``


def _batcher(connection: Request) -> SequenceBatcher:
    batcher: SequenceBatcher = connection.app.state.batcher
    return batcher


def _owner(connection: Request) -> str:
    """Whose streams this request reaches (its token's fingerprint; "" without tokens)."""
    owner: str = connection.scope.get(OWNER_SCOPE_KEY, "")
    return owner


def _router(connection: Request) -> StreamRouter:
    router: StreamRouter = connection.app.state.router
    return router


def _response(reply: Reply) -> Response:
    """The HTTP response for a call's reply (a refusal as ``{"error": ...}``)."""
    headers = {key.decode(): value.decode() for key, value in reply.http_headers()}
    return Response(reply.http_body(), reply.status, headers, media_type="application/json")


async def healthz(request: Request) -> Response:
    """200 while every worker serves; 503 while starting, stopping, or after a batcher died
    (in any worker: a server that cannot serve all its streams is not healthy)."""
    replies = await _router(request).ask_all(StreamCall.HEALTH, timeout_s=1.0)
    ok = all(reply.ok for reply in replies)
    return _json({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)


async def describe(request: Request) -> Response:
    """``GET /v1/model``."""
    return _json(model_description(_batcher(request), workers=_router(request).workers))


async def end_stream(request: Request) -> Response:
    """``DELETE /v1/streams/{stream_id}[?reset=true]``."""
    reset = request.query_params.get("reset", "false").lower() in ("1", "true", "yes")
    call = StreamCall.RESET if reset else StreamCall.END
    stream_id = request.path_params["stream_id"]
    return _response(await _router(request).call(call, _owner(request), stream_id, b""))


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
    # POST /v1/streams/{stream_id}/frames and WS /v1/streams/{stream_id}/ws: StreamRoutes,
    # in front of these
    Route("/v1/streams/{stream_id}", end_stream, methods=["DELETE"]),
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
) -> Starlette:
    """The ASGI app serving a streaming export; run it with uvicorn (or any ASGI server).

    The model is opened (and its checksum verified) and the batcher built here, so a bad
    model, limit or unusable provider fails before the server listens; the batcher's loops
    start with the app's lifespan and, on shutdown, finish the chunks already queued.
    ``on_failure`` hears if the batcher's loop dies (``serve`` then stops the server).
    ``access`` names the tokens a client must present (none: every client is served).
    ``seat``: this process's place among ``--workers`` and what they share (None: the
    only worker).

    Example::

        >>> app = create_app("jv.stream.onnx", limits=ServeLimits(max_batch=32))
        ... # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    artifact = model if isinstance(model, Artifact) else load_artifact(model, verify=False)
    opened = open_session(artifact, session or SessionConfig())
    limits = limits or ServeLimits()
    seat = seat or WorkerSeat()
    owners = access.owners if access is not None else ()
    quota = StreamQuota(
        limits.max_streams, limits.max_streams_per_token, owners, seat.stream_counts
    )
    directory = seat.directory()
    batcher = SequenceBatcher(
        opened, artifact.edgelstm_metadata(), limits, ServerMetrics(),
        quota=quota, directory=directory,
    )  # fmt: skip

    async def perform_here(call: StreamCall, owner: str, stream_id: str, body: bytes) -> Reply:
        if call is StreamCall.HEALTH and not app.state.accepting:
            return Reply(503, b"this worker does not accept connections yet")
        return await perform(batcher, call, owner, stream_id, body)

    router = StreamRouter(perform_here, seat, directory, batcher.metrics)

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
    # After the gate: the hot route's requests carry their token's owner like the others.
    hot = Middleware(StreamRoutes, router=router, limits=batcher.limits, metrics=metrics)
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=[*gates, hot])
    app.state.batcher = batcher
    app.state.router = router
    #: False while a server that runs this app has not bound its socket yet (``run_app``):
    #: /healthz waits for every worker to listen, or a client connecting at once would
    #: find only the first worker and load it alone.
    app.state.accepting = True
    app.state.reload_model = _reloader(batcher, artifact.path, session or SessionConfig())
    return app


def _reloader(
    batcher: SequenceBatcher, path: Path, session: SessionConfig
) -> Callable[[], Awaitable[None]]:
    """What SIGHUP runs: open the model at ``path`` again (an operator replaced the file)
    and swap it in, streams keeping their state; a model that cannot take over is refused
    with one line on stderr, and the old one goes on serving."""

    async def reload_model() -> None:
        loop = asyncio.get_running_loop()
        try:
            # Opening takes a while: off the event loop, which goes on serving meanwhile.
            artifact = await loop.run_in_executor(None, load_artifact, path)
            opened = await loop.run_in_executor(None, open_session, artifact, session)
            await batcher.swap_model(opened, artifact.edgelstm_metadata())
        except EdgeLSTMError as exc:
            refused = f"warning: SIGHUP: {first_line(exc)}; still serving the model loaded before"
            print(refused, file=sys.stderr, flush=True)
            return
        print(f"swapped in {path} (SIGHUP); open streams kept their state", file=sys.stderr)

    return reload_model
