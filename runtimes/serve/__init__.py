"""``edgelstm serve``: a streaming inference server that batches frames across streams.

Many sensors stream frames to one gateway; calling the model once per message wastes most of
each call on overhead. The server keeps every stream's recurrent state in a table and runs
frames from many streams in one batched ONNX Runtime call (:mod:`.batcher`), behind HTTP
and WebSocket routes (:mod:`.app`) served by uvicorn. A stream's rows are exactly the rows
``edgelstm run MODEL --stream --chunk K`` prints for the same frames. With ``workers`` the
server is one process per core (:mod:`.workers`), each stream held by one of them; SIGHUP
swaps the model file in without losing a stream (:mod:`.swap`).

Example::

    >>> from edgelstm.runtimes.serve import create_app, ServeLimits
    >>> app = create_app("jv.stream.onnx", limits=ServeLimits(max_batch=32))  # doctest: +SKIP

or from the shell::

    edgelstm serve jv.stream.onnx --port 8000 --max-batch 64 --max-delay-ms 2
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.errors import EdgeLSTMError, InvalidInputError, first_line
from edgelstm.runtimes.ort.artifact import Artifact
from edgelstm.runtimes.serve.batcher import RequestRejected, SequenceBatcher, ServeLimits

if TYPE_CHECKING:
    from edgelstm.runtimes.ort.session_config import SessionConfig
    from edgelstm.runtimes.serve.access import ServeAccess
    from edgelstm.runtimes.serve.app import create_app
    from edgelstm.runtimes.serve.peers import WorkerSeat

__all__ = [
    "BatcherFailedError",
    "RequestRejected",
    "SequenceBatcher",
    "ServeLimits",
    "TlsFiles",
    "create_app",
    "run_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    # create_app lives with the routes; importing it here would load Starlette for every
    # user of the batcher, so it is looked up on first use.
    if name == "create_app":
        from edgelstm.runtimes.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BatcherFailedError(EdgeLSTMError):
    """The server stopped because its batching loop died; a supervisor should restart it."""

    exit_code = 1


@dataclass(frozen=True)
class TlsFiles:
    """A PEM certificate (chain) and its private key, for HTTPS and WSS."""

    certfile: Path
    keyfile: Path

    def __post_init__(self) -> None:
        for flag, path in (("--ssl-certfile", self.certfile), ("--ssl-keyfile", self.keyfile)):
            if not Path(path).is_file():
                raise InvalidInputError(f"{flag} {path}: no such file; give a PEM file")

    def check(self) -> None:
        """Load the pair once, so a mismatched key or a non-PEM file fails in one line
        before the server starts rather than as uvicorn's traceback."""
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise InvalidInputError(
                f"--ssl-certfile {self.certfile} / --ssl-keyfile {self.keyfile}: not a "
                f"matching PEM certificate and unencrypted key ({first_line(exc)})"
            ) from None


def _server_class(uvicorn: Any, on_ready: Callable[[str], None] | None) -> Any:
    class Server(uvicorn.Server):  # type: ignore[misc, name-defined]
        """uvicorn's server, but a clean SIGTERM/SIGINT shutdown exits 0, and ``on_ready``
        hears the address once the socket is bound (not before: a port in use fails first).

        uvicorn re-raises the signal once its graceful shutdown is done, so the process
        would die by it (exit 143 for SIGTERM) even after finishing every request; a
        supervisor would log a crash. Here the signal only starts the shutdown.
        """

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            swap = getattr(self.config.app, "state", None)
            if self.started and swap is not None:
                swap.accepting = True
            if self.started and hasattr(signal, "SIGHUP") and swap is not None:
                # SIGHUP: load the model file again (replaced in place) and swap it in.
                loop = asyncio.get_running_loop()
                reload = swap.reload_model
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
            if self.started and on_ready is not None:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                scheme = "https" if self.config.is_ssl else "http"
                on_ready(f"{scheme}://{host}:{port}")

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            wanted = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in wanted}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(
    model: Artifact | Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    session: SessionConfig | None = None,
    limits: ServeLimits | None = None,
    on_ready: Callable[[str], None] | None = None,
    graceful_timeout_s: int = 10,
    access: ServeAccess | None = None,
    tls: TlsFiles | None = None,
    max_connections: int | None = None,
) -> None:
    """Serve ``model`` with uvicorn until SIGINT/SIGTERM, then finish in-flight work and return.

    ``workers``: server processes on the one port (:mod:`.workers`), each stream held by
    one of them. ``on_ready`` gets one line saying where the server listens, once the port
    is bound. ``access``: the tokens clients must present; ``tls``: serve HTTPS/WSS with this
    pair; ``max_connections``: connections beyond it are answered 503 by uvicorn (each
    worker takes an equal share).
    Raises :class:`BatcherFailedError` or
    :class:`~edgelstm.runtimes.serve.workers.WorkerFailedError` (after a clean shutdown)
    when a batching loop or a worker died, so the process exits non-zero and a supervisor
    restarts it.
    """
    limits = limits or ServeLimits()
    if tls is not None:
        tls.check()
    options: dict[str, Any] = {
        "session": session,
        "limits": limits,
        "graceful_timeout_s": graceful_timeout_s,
        "access": access,
        "tls": tls,
        "max_connections": max_connections,
    }
    if workers <= 1:
        run_app(model, host=host, port=port, on_ready=on_ready, **options)
        return
    from edgelstm.runtimes.serve.app import create_app
    from edgelstm.runtimes.serve.workers import serve_workers

    if max_connections is not None:  # uvicorn bounds each process: split the total evenly
        options["max_connections"] = max(1, max_connections // workers)

    # Open the model once here, so a bad model or provider fails in one line before any
    # worker starts (each worker then opens its own session).
    create_app(model, session=session, limits=limits)
    path = model.path if isinstance(model, Artifact) else Path(model)
    serve_workers(path, workers=workers, host=host, port=port, on_ready=on_ready, **options)


def run_app(
    model: Artifact | Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sockets: list[Any] | None = None,
    session: SessionConfig | None = None,
    limits: ServeLimits,
    on_ready: Callable[[str], None] | None = None,
    graceful_timeout_s: int = 10,
    access: ServeAccess | None = None,
    tls: TlsFiles | None = None,
    max_connections: int | None = None,
    seat: WorkerSeat | None = None,
) -> None:
    """One server process: the app on ``host:port`` or on ``sockets`` already listening
    (a worker's share of the supervisor's socket), until SIGINT/SIGTERM."""
    from edgelstm.extras import missing_dependency

    try:
        import uvicorn
    except ImportError as exc:
        raise missing_dependency(exc, "edgelstm serve") from exc
    failures: list[BaseException] = []
    holder: dict[str, Any] = {}

    def stop_on_failure(exc: BaseException) -> None:
        failures.append(exc)
        holder["server"].should_exit = True

    from edgelstm.runtimes.serve.app import create_app
    from edgelstm.runtimes.serve.connections import HeaderDeadlineProtocol

    app = create_app(model, session=session, limits=limits, on_failure=stop_on_failure,
                     access=access, seat=seat)  # fmt: skip
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=HeaderDeadlineProtocol.bound_to(limits.header_timeout_s),
        ws_max_size=limits.max_body_bytes,
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then exit.
        timeout_graceful_shutdown=graceful_timeout_s,
        limit_concurrency=max_connections,
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None,
    )
    app.state.accepting = False  # until the socket is bound (see Server.startup)
    server = holder["server"] = _server_class(uvicorn, on_ready)(config)
    server.run(sockets=sockets)
    if failures:
        raise BatcherFailedError(
            f"the server stopped: its batching loop failed ({first_line(failures[0])}); "
            "restart it (a supervisor such as systemd with Restart=on-failure does)"
        )
