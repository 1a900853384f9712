"""``edgelstm serve``: the streaming server (:mod:`edgelstm.runtimes.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgelstm.cli.app import print_notes, typed_on_command_line
from edgelstm.errors import InvalidInputError


def serve(
    ctx: typer.Context,
    model: Annotated[
        Optional[Path],  # noqa: UP045 - typer reads the annotation at run time
        typer.Argument(
            help="Streaming export (`edgelstm export RUN --streaming`).", show_default=False
        ),
    ] = None,
    config_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--config",
            help="Streaming deployment config (deploy.stream.json from `benchmark --tune` or "
            "quickstart) instead of MODEL; --provider/--threads beside it override it.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    max_streams: Annotated[
        int, typer.Option(min=1, help="Streams held at once (state table rows).")
    ] = 1024,
    max_batch: Annotated[int, typer.Option(min=1, help="Streams per model call.")] = 64,
    max_delay_ms: Annotated[
        float,
        typer.Option(min=0.0, help="How long a chunk may wait for others when the model is idle."),
    ] = 2.0,
    idle_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds before an idle stream's state is freed.")
    ] = 300.0,
    max_frames: Annotated[int, typer.Option(min=1, help="Frames one request may carry.")] = 1000,
    provider: Annotated[
        str,
        typer.Option(
            help="Execution provider or an ordered list (cuda,cpu); NAME:DEVICE picks a device."
        ),
    ] = "cpu",
    fallback: Annotated[
        bool, typer.Option(help="If a provider is unusable, go on with the next, the CPU last.")
    ] = False,
    threads: Annotated[
        int, typer.Option(min=0, help="Intra-op threads for the model (0 = all cores).")
    ] = 1,
) -> None:
    """Serve a streaming model over HTTP and WebSocket, batching frames across streams."""
    from edgelstm.cli.console import stderr_console
    from edgelstm.runtimes.ort.session_config import SessionConfig, parse_provider_list
    from edgelstm.runtimes.serve import ServeLimits
    from edgelstm.runtimes.serve import serve as run_server

    session = SessionConfig(
        providers=parse_provider_list(provider),
        fallback=fallback,
        intra_op_threads=threads or None,
    )
    notes: tuple[str, ...] = ()
    if config_path is not None:
        from edgelstm.runtimes.ort.deploy import read_deployment, resolve_deployment

        if model is not None:
            raise InvalidInputError("give either MODEL or --config (which names the model)")
        deployment = read_deployment(config_path)
        if deployment.mode != "streaming":
            raise InvalidInputError(
                f"{config_path} is a {deployment.mode} deployment; serve takes a streaming one "
                "(deploy.stream.json)"
            )

        def given(name: str) -> bool:
            return typed_on_command_line(ctx, name)

        typed = {"provider": "providers", "fallback": "fallback", "threads": "intra_op_threads"}
        resolved = resolve_deployment(
            deployment,
            source=config_path,
            session={
                field: getattr(session, field) for flag, field in typed.items() if given(flag)
            },
        )
        model, session, notes = resolved.config.model, resolved.config.session, resolved.notes
    elif model is None:
        raise InvalidInputError("give the streaming MODEL.onnx to serve (or --config)")
    limits = ServeLimits(
        max_streams=max_streams,
        max_batch=max_batch,
        max_delay_ms=max_delay_ms,
        idle_timeout_s=idle_timeout,
        max_frames_per_request=max_frames,
        max_queued_frames_per_stream=max(4 * max_frames, 4000),
    )
    err = stderr_console()
    print_notes(err, notes)

    def ready(url: str) -> None:
        err.print(
            f"serving {model} on {url} (max {max_streams} streams, batches of up to {max_batch}, "
            f"{max_delay_ms:g} ms delay); Ctrl-C or SIGTERM stops it",
            highlight=False,
        )

    run_server(model, host=host, port=port, session=session, limits=limits, on_ready=ready)
