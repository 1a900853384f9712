"""``edgelstm serve``: the streaming server (:mod:`edgelstm.runtimes.serve`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgelstm.cli.app import print_notes, typed_on_command_line
from edgelstm.errors import InvalidInputError

# The options of `edgelstm serve`, named once so the command reads as its parameter list.
_Model = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at run time
    typer.Argument(
        help="Streaming export (`edgelstm export RUN --streaming`).", show_default=False
    ),
]
_ConfigPath = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--config",
        help="Streaming deployment config (deploy.stream.json from `benchmark --tune` or "
        "quickstart) instead of MODEL; --provider/--threads beside it override it.",
    ),
]
_Host = Annotated[str, typer.Option(help="Address to listen on.")]
_Port = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")]
_MaxStreams = Annotated[int, typer.Option(min=1, help="Streams held at once (state table rows).")]
_MaxBatch = Annotated[int, typer.Option(min=1, help="Streams per model call.")]
_MaxDelayMs = Annotated[
    float,
    typer.Option(min=0.0, help="How long a chunk may wait for others when the model is idle."),
]
_IdleTimeout = Annotated[
    float, typer.Option(min=0.001, help="Seconds before an idle stream's state is freed.")
]
_MaxFrames = Annotated[int, typer.Option(min=1, help="Frames one request may carry.")]
_Provider = Annotated[
    str,
    typer.Option(
        help="Execution provider or an ordered list (cuda,cpu); NAME:DEVICE picks a device."
    ),
]
_Fallback = Annotated[
    bool, typer.Option(help="If a provider is unusable, go on with the next, the CPU last.")
]
_Threads = Annotated[
    int, typer.Option(min=0, help="Intra-op threads for the model (0 = all cores).")
]

_TokenFile = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        help="Bearer tokens clients must send (Authorization: Bearer TOKEN), one per line; "
        "EDGELSTM_SERVE_TOKEN adds one. Without either, only loopback hosts are served.",
        show_default=False,
    ),
]
_MetricsPublic = Annotated[
    bool,
    typer.Option(
        "--metrics-public", help="Serve /metrics without a token (a scraper on a trusted net)."
    ),
]
_InsecureNoAuth = Annotated[
    bool,
    typer.Option("--insecure-no-auth", help="Listen beyond this machine without tokens (warns)."),
]
_SslCertfile = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="PEM certificate (chain): serve HTTPS and WSS.", show_default=False),
]
_SslKeyfile = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="PEM private key of --ssl-certfile (unencrypted).", show_default=False),
]
_MaxConnections = Annotated[
    int,
    typer.Option(min=1, help="Open connections at once (split over the workers); more: 503."),
]
_MaxStreamsPerToken = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--token-streams",
        min=1,
        help="Streams one token may hold at once (each token's streams are its own).",
        show_default=False,
    ),
]
_Workers = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        min=1,
        help="Server processes on the port (default: the usable cores / --threads, at most "
        "8); each stream lives in one of them.",
        show_default=False,
    ),
]
_HeaderTimeout = Annotated[
    float,
    typer.Option(
        min=0.001, help="Seconds a request's headers (a WebSocket's upgrade) may take to arrive."
    ),
]
_BodyTimeout = Annotated[
    float,
    typer.Option(min=0.001, help="Seconds a request body may take to arrive (else 408)."),
]

#: serve's session options (parameter names) and the SessionConfig field each one sets.
_SESSION_OPTIONS = {"provider": "providers", "fallback": "fallback", "threads": "intra_op_threads"}


def serve(
    ctx: typer.Context,
    model: _Model = None,
    config_path: _ConfigPath = None,
    host: _Host = "127.0.0.1",
    port: _Port = 8000,
    max_streams: _MaxStreams = 1024,
    max_batch: _MaxBatch = 64,
    max_delay_ms: _MaxDelayMs = 2.0,
    idle_timeout: _IdleTimeout = 300.0,
    max_frames: _MaxFrames = 1000,
    provider: _Provider = "cpu",
    fallback: _Fallback = False,
    threads: _Threads = 1,
    token_file: _TokenFile = None,
    metrics_public: _MetricsPublic = False,
    insecure_no_auth: _InsecureNoAuth = False,
    ssl_certfile: _SslCertfile = None,
    ssl_keyfile: _SslKeyfile = None,
    max_connections: _MaxConnections = 2048,
    body_timeout: _BodyTimeout = 10.0,
    max_streams_per_token: _MaxStreamsPerToken = None,
    workers: _Workers = None,
    header_timeout: _HeaderTimeout = 10.0,
) -> None:
    """Serve a streaming model over HTTP and WebSocket, batching frames across streams."""
    from edgelstm.cli.console import stderr_console
    from edgelstm.runtimes.ort.session_config import SessionConfig, parse_provider_list
    from edgelstm.runtimes.serve import ServeLimits
    from edgelstm.runtimes.serve import serve as run_server
    from edgelstm.runtimes.serve.call_limits import limits_for_model

    session = SessionConfig(
        providers=parse_provider_list(provider), fallback=fallback, intra_op_threads=threads or None
    )
    model, session, notes = _model_and_session(ctx, model, config_path, session)
    limits, capped = limits_for_model(
        model,
        ServeLimits(
            max_streams=max_streams,
            max_batch=max_batch,
            max_delay_ms=max_delay_ms,
            idle_timeout_s=idle_timeout,
            max_frames_per_request=max_frames,
            max_queued_frames_per_stream=max(4 * max_frames, 4000),
            body_timeout_s=body_timeout,
            header_timeout_s=header_timeout,
            max_streams_per_token=max_streams_per_token,
        ),
    )
    access, warning = _access(
        token_file, host, metrics_public=metrics_public, insecure_no_auth=insecure_no_auth
    )
    if max_streams_per_token is not None and not access.required:
        raise InvalidInputError(
            "--token-streams needs tokens (--token-file or EDGELSTM_SERVE_TOKEN)"
        )
    tls = _tls_files(ssl_certfile, ssl_keyfile)
    processes, crowding = _workers(workers, threads)
    err = stderr_console()
    print_notes(err, (*notes, *([capped] if capped else [])))
    for line in (warning, crowding):
        if line is not None:
            err.print(f"warning: {line}", highlight=False, markup=False)
    run_server(
        model,
        host=host,
        port=port,
        workers=processes,
        session=session,
        limits=limits,
        on_ready=_announcer(err, model, limits, len(access.token_digests), processes, threads),
        access=access,
        tls=tls,
        max_connections=max_connections,
    )


def _model_and_session(
    ctx: typer.Context, model: Path | None, config_path: Path | None, session: Any
) -> tuple[Path, Any, tuple[str, ...]]:
    """MODEL, or the model and session a deployment config names (with the notes saying
    what the flags beside it overrode)."""
    if config_path is not None:
        if model is not None:
            raise InvalidInputError("give either MODEL or --config (which names the model)")
        return _from_deployment(ctx, config_path, session)
    if model is None:
        raise InvalidInputError("give the streaming MODEL.onnx to serve (or --config)")
    return model, session, ()


def _workers(workers: int | None, threads: int) -> tuple[int, str | None]:
    """How many worker processes, and a warning when they would ask for more cores than
    there are (N workers of T model threads each)."""
    from edgelstm.runtimes.serve.workers import default_workers, usable_cores

    cores = usable_cores()
    per_worker = threads or cores  # --threads 0: every core, for each worker
    chosen = workers or default_workers(per_worker)
    if chosen * per_worker <= cores:
        return chosen, None
    return chosen, (
        f"{chosen} workers x {per_worker} model threads exceed the {cores} usable cores; they "
        "will contend for them (lower --workers or --threads)"
    )


def _announcer(
    err: Any, model: Path, limits: Any, tokens: int, workers: int, threads: int
) -> Callable[[str], None]:
    """The line serve prints once its port is bound: where, its limits, who may connect."""
    who = f"{tokens} token{'s' * (tokens != 1)} accepted" if tokens else "no authentication"
    model_threads = f"{threads} model thread{'s' * (threads != 1)}" if threads else "all cores"
    processes = f"{workers} worker{'s' * (workers != 1)} x {model_threads}"

    def ready(url: str) -> None:
        err.print(
            f"serving {model} on {url} ({processes}; max {limits.max_streams} streams, "
            f"batches of up to {limits.max_batch}, {limits.max_delay_ms:g} ms delay; {who}); "
            "Ctrl-C or SIGTERM stops it",
            highlight=False,
        )

    return ready


def _access(
    token_file: Path | None, host: str, *, metrics_public: bool, insecure_no_auth: bool
) -> tuple[Any, str | None]:
    """Who may connect (the tokens), and the warning to print for an open port without them;
    an open port without tokens or --insecure-no-auth is refused here."""
    from edgelstm.runtimes.serve.access import ServeAccess, check_exposure, read_tokens

    access = ServeAccess.from_tokens(read_tokens(token_file), metrics_public=metrics_public)
    return access, check_exposure(host, access, insecure_no_auth=insecure_no_auth)


def _tls_files(certfile: Path | None, keyfile: Path | None) -> Any:
    """The TLS pair, or None for plain HTTP; one without the other is refused."""
    from edgelstm.runtimes.serve import TlsFiles

    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise InvalidInputError(
            "HTTPS needs both --ssl-certfile and --ssl-keyfile (a PEM certificate and its key)"
        )
    return TlsFiles(certfile, keyfile)


def _from_deployment(
    ctx: typer.Context, config_path: Path, session: Any
) -> tuple[Path, Any, tuple[str, ...]]:
    """The model and session of a streaming deployment config; flags typed beside it win."""
    from edgelstm.runtimes.ort.deploy import read_deployment, resolve_deployment

    deployment = read_deployment(config_path)
    if deployment.mode != "streaming":
        raise InvalidInputError(
            f"{config_path} is a {deployment.mode} deployment; serve takes a streaming one "
            "(deploy.stream.json)"
        )
    overrides = {
        field: getattr(session, field)
        for flag, field in _SESSION_OPTIONS.items()
        if typed_on_command_line(ctx, flag)
    }
    resolved = resolve_deployment(deployment, source=config_path, session=overrides)
    return resolved.config.model, resolved.config.session, resolved.notes
