"""``edgelstm run``: inference over files, or frame by frame with ``--stream``, on the
session options given as flags or by a ``benchmark --tune`` deployment config
(:mod:`edgelstm.runtimes.run_files`, :mod:`edgelstm.runtimes.ort.deploy`)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgelstm.cli.app import print_notes, print_warnings, typed_on_command_line
from edgelstm.errors import InvalidInputError


class EngineChoice(str, Enum):
    local = "local"
    ray = "ray"


class GraphOptimizationChoice(str, Enum):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


def run_command(
    ctx: typer.Context,
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="The .onnx model (edgelstm's or any other).", show_default=False),
    ] = None,
    config_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--config",
            help="Deployment config from `benchmark --tune`: model, mode, batch or chunk, and "
            "session; a session flag, --batch-size or --chunk given beside it overrides the "
            "config's value (with a note).",
        ),
    ] = None,
    input_file: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--input",
            "-i",
            help="Inputs: .ts/.csv/.npy/.npz/.parquet; any ONNX model: .npz keyed by input "
            "names. With --stream, '-' reads frames from stdin. A folder or a quoted glob "
            "scores every file in it (see --engine).",
        ),
    ] = None,
    output: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help="Where to write: .csv, .json, .npy or .npz. With --stream: a .csv, or '-' "
            "(the default) for stdout. With --engine: a folder of Parquet partitions.",
        ),
    ] = None,
    provider: Annotated[
        str,
        typer.Option(
            help="Execution provider, an ordered list (cuda,cpu), or auto; NAME:DEVICE picks "
            "a device (openvino:GPU)."
        ),
    ] = "cpu",
    fallback: Annotated[
        bool,
        typer.Option(
            help="If a provider is unusable, go on with the next one, the CPU last (and say so)."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per session call.")] = 256,
    threads: Annotated[
        int, typer.Option(min=0, help="Intra-op threads; 0 = ONNX Runtime's default (all cores).")
    ] = 1,
    inter_op_threads: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Inter-op threads (parallel branches)."),
    ] = None,
    spinning: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--spinning/--no-spinning",
            help="Let idle threads spin (lower latency, busy cores) \\[default: ONNX Runtime's].",
            show_default=False,
        ),
    ] = None,
    graph_optimization: Annotated[
        GraphOptimizationChoice, typer.Option(help="ONNX Runtime graph optimization level.")
    ] = GraphOptimizationChoice.all,
    memory_arena: Annotated[
        bool, typer.Option(help="Use ONNX Runtime's memory arena (faster, holds memory).")
    ] = True,
    cuda_device: Annotated[int, typer.Option(min=0, help="CUDA/TensorRT device id.")] = 0,
    tensorrt_fp16: Annotated[bool, typer.Option(help="TensorRT: build FP16 engines.")] = False,
    tensorrt_cache: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="TensorRT: folder to cache built engines in."),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(help="Stream frames through a --streaming export, printing each chunk."),
    ] = False,
    chunk: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Frames per push with --stream \\[default: 1, or the config's]."),
    ] = None,
    allow_nonfinite: Annotated[
        bool, typer.Option(help="Feed NaN/Inf as they are instead of refusing them.")
    ] = False,
    memory_limit: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            min=0.1,
            help="Cap this process's memory (GiB): an untrusted model that tries to allocate "
            "more fails with an error instead of exhausting the machine.",
        ),
    ] = None,
    engine: Annotated[
        Optional[EngineChoice],  # noqa: UP045
        typer.Option(
            help="Score many files (--input DIR, a quoted GLOB or FILE.parquet) into a folder "
            "of Parquet partitions (--output OUT_DIR): in this process (local) or on Ray "
            "(ray; the scale extra) \\[default: local when --input is a folder or glob].",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="--engine ray: the cluster to join (auto, or ray://HOST:10001) \\[default: "
            "start Ray on this machine].",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=1,
            help="--engine ray: actors, each with one session \\[default: one per --threads "
            "CPUs, or one per GPU for cuda].",
            show_default=False,
        ),
    ] = None,
    cpus_per_worker: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            help="--engine ray: logical CPUs each actor reserves \\[default: --threads, less "
            "if the pool would claim every CPU].",
            show_default=False,
        ),
    ] = None,
    partition_rows: Annotated[
        int,
        typer.Option(min=1, help="--engine: most sequences per output partition (unit of work)."),
    ] = 4096,
    resume: Annotated[
        bool,
        typer.Option(
            help="--engine: keep the complete partitions already in --output and score the rest."
        ),
    ] = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            help="--engine: list unreadable input files and go on, instead of stopping at the "
            "first."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Run a model on a chosen execution provider; strict unless --fallback."""
    from edgelstm.cli.console import count_progress, stderr_console

    if input_file is None:
        raise InvalidInputError("--input FILE is required (with --stream, '-' reads stdin)")
    if memory_limit is not None:
        from edgelstm.runtimes.ort.session import limit_memory

        limit_memory(memory_limit)
    config = _session_config(
        provider,
        fallback,
        threads,
        inter_op_threads,
        spinning,
        graph_optimization.value,
        memory_arena,
        cuda_device,
        tensorrt_fp16,
        tensorrt_cache,
    )
    err = stderr_console()
    notes: tuple[str, ...] = ()  # the config's overrides, shown once the session is open
    if config_path is not None:
        from edgelstm.runtimes.ort.deploy import read_deployment, resolve_deployment

        if model is not None:
            raise InvalidInputError("give either MODEL or --config (which names the model)")

        def given(name: str) -> bool:
            return typed_on_command_line(ctx, name)

        # Flags beside --config override it, with a note, rather than being refused: a config
        # tuned on one machine often needs a host's own setting (--cuda-device, --threads for
        # its cores, --tensorrt-cache) without editing JSON, and the note keeps it visible.
        resolved = resolve_deployment(
            read_deployment(config_path),
            source=config_path,
            session={
                field: getattr(config, field)
                for option, field in _SESSION_OPTIONS.items()
                if given(option)
            },
            batch=batch_size if given("batch_size") else None,
            chunk=chunk,
            stream=stream if given("stream") else None,
        )
        notes = resolved.notes
        model, config, batch_size = (
            resolved.config.model,
            resolved.config.session,
            resolved.config.batch,
        )
        stream, chunk = resolved.streams, resolved.frames_per_push
    elif model is None:
        raise InvalidInputError("give the MODEL.onnx to run (or --config deploy.json)")
    elif chunk is not None and not stream:
        raise InvalidInputError(
            f"--chunk {chunk} applies only to --stream (frames per push); add --stream, or use "
            "--batch-size for whole sequences"
        )
    if stream:
        if allow_nonfinite:
            raise InvalidInputError(
                "--allow-nonfinite cannot be used with --stream: NaN/Inf would poison the "
                "recurrent state of every later frame"
            )
        _run_stream(model, input_file, output, chunk or 1, config, overwrite, json_output, notes)
        return
    if engine is not None or _names_many_files(input_file, output):
        if stream:
            raise InvalidInputError(
                "--stream scores one stream; --engine (or a folder or glob --input) scores "
                "many files: give one of them"
            )
        from edgelstm.runtimes.batch import BatchOptions, RayOptions

        batch = BatchOptions(
            engine=(engine or EngineChoice.local).value,
            partition_rows=partition_rows,
            skip_bad=skip_bad,
            resume=resume,
            overwrite=overwrite,
        )
        ray = RayOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker)
        _run_batch(
            model,
            input_file,
            output,
            config,
            batch,
            ray,
            batch_size,
            allow_nonfinite,
            json_output,
            notes,
        )
        return
    for flag, value in (
        ("--address", address),
        ("--workers", workers),
        ("--cpus-per-worker", cpus_per_worker),
        ("--resume", resume or None),
        ("--skip-bad", skip_bad or None),
    ):
        if value is not None:
            raise InvalidInputError(
                f"{flag} applies to batch scoring: add --engine local|ray (and --input DIR, "
                "GLOB or FILE.parquet, --output OUT_DIR)"
            )
    if input_file == "-":
        raise InvalidInputError("--input - (stdin) works only with --stream; give a file")
    if output is None or output == "-":
        raise InvalidInputError("--output FILE (.csv, .json, .npy or .npz) is required")
    from edgelstm.runtimes.run_files import RunOptions, run_model

    options = RunOptions(
        batch_size=batch_size, allow_nonfinite=allow_nonfinite, overwrite=overwrite
    )
    with count_progress(err, "inference", enabled=not json_output) as progress:
        result = run_model(
            model,
            Path(input_file),
            Path(output),
            session=config,
            options=options,
            progress=progress,
        )
    print_warnings(err, result.opened.warnings)
    print_notes(err, [*notes, *result.notices])
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    from edgelstm.runtimes.run_files import describe_run

    err.print(describe_run(result), highlight=False, markup=False, soft_wrap=True)


def _names_many_files(input_file: str, output: str | None) -> bool:
    """A folder or glob --input, or a Parquet archive scored into a folder, is a batch run."""
    import glob

    path = Path(input_file)
    if path.is_dir() or (not path.exists() and glob.has_magic(input_file)):
        return True
    from edgelstm.runtimes.model_io.writers import OUTPUT_FORMATS

    return (
        path.suffix.lower() == ".parquet"
        and output not in (None, "-")
        and Path(str(output)).suffix.lower() not in OUTPUT_FORMATS
    )


def _run_batch(
    model: Path,
    input_spec: str,
    output: str | None,
    config: Any,
    batch: Any,
    ray: Any,
    batch_size: int,
    allow_nonfinite: bool,
    json_output: bool,
    notes: tuple[str, ...],
) -> None:
    from edgelstm.cli.console import count_progress, stderr_console
    from edgelstm.runtimes.batch import describe_batch, score_files
    from edgelstm.runtimes.run_files import RunOptions

    if output is None or output == "-":
        raise InvalidInputError(
            "--output OUT_DIR (a folder for the Parquet partitions) is required"
        )
    err = stderr_console()
    options = RunOptions(batch_size=batch_size, allow_nonfinite=allow_nonfinite)
    with count_progress(err, "partitions", enabled=not json_output, log_every=10.0) as progress:
        result = score_files(
            model,
            input_spec,
            Path(output),
            session=config,
            options=options,
            batch=batch,
            ray=ray,
            progress=progress,
        )
    engine_notes = result.engine.notes if result.engine else ()
    print_notes(err, [*notes, *engine_notes, *result.notices])
    for source, error in result.failures:
        err.print(f"skipped {source}: {error}", highlight=False, markup=False, soft_wrap=True)
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    err.print(describe_batch(result), highlight=False, markup=False, soft_wrap=True)


#: run's session options (parameter names) and the SessionConfig field each one sets.
_SESSION_OPTIONS = {
    "provider": "providers",
    "fallback": "fallback",
    "threads": "intra_op_threads",
    "inter_op_threads": "inter_op_threads",
    "spinning": "spinning",
    "graph_optimization": "graph_optimization",
    "memory_arena": "memory_arena",
    "cuda_device": "cuda_device",
    "tensorrt_fp16": "tensorrt_fp16",
    "tensorrt_cache": "tensorrt_cache",
}


def _session_config(
    provider: str,
    fallback: bool,
    threads: int,
    inter_op_threads: int | None,
    spinning: bool | None,
    graph_optimization: str,
    memory_arena: bool,
    cuda_device: int,
    tensorrt_fp16: bool,
    tensorrt_cache: Path | None,
) -> Any:
    from edgelstm.runtimes.ort.session import SessionConfig, parse_provider_list

    return SessionConfig(
        providers=parse_provider_list(provider),
        fallback=fallback,
        intra_op_threads=threads or None,
        inter_op_threads=inter_op_threads,
        spinning=spinning,
        graph_optimization=graph_optimization,
        memory_arena=memory_arena,
        cuda_device=cuda_device,
        tensorrt_fp16=tensorrt_fp16,
        tensorrt_cache=tensorrt_cache,
    )


def _run_stream(
    model: Path,
    input_file: str,
    output: str | None,
    chunk: int,
    config: Any,
    overwrite: bool,
    json_output: bool,
    notes: tuple[str, ...] = (),
) -> None:
    from edgelstm.cli.console import stderr_console
    from edgelstm.runtimes.run_stream import stream_to_output

    err = stderr_console()

    def opened(session: Any) -> None:
        # Before the rows: a live stream may not end.
        print_warnings(err, session.warnings)
        print_notes(err, notes)

    to_stdout = output is None or output == "-"
    if to_stdout and json_output:
        raise InvalidInputError("--json with --stream needs --output FILE.csv (stdout holds rows)")
    result = stream_to_output(
        model,
        sys.stdin if input_file == "-" else Path(input_file),
        sys.stdout if to_stdout else Path(str(output)),
        chunk=chunk,
        session=config,
        overwrite=overwrite,
        on_open=opened,
    )
    print_notes(err, result.opened.notes)
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        err.print(
            f"streamed {result.frames} frames in {result.chunks} chunks on "
            f"{result.opened.describe()}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
