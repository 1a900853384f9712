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

from edgelstm.cli.app import above_zero, print_notes, print_warnings, typed_on_command_line
from edgelstm.errors import InvalidInputError


class EngineChoice(str, Enum):
    local = "local"
    ray = "ray"


class GraphOptimizationChoice(str, Enum):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


# The options of `edgelstm run`, named once so the command reads as its parameter list.
_Model = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Argument(help="The .onnx model (edgelstm's or any other).", show_default=False),
]
_ConfigPath = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--config",
        help="Deployment config from `benchmark --tune`: model, mode, batch or chunk, and "
        "session; a session flag, --batch-size or --chunk given beside it overrides the "
        "config's value (with a note).",
    ),
]
_InputFile = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--input",
        "-i",
        help="Inputs: .ts/.csv/.npy/.npz/.parquet; any ONNX model: .npz keyed by input "
        "names. With --stream, '-' reads frames from stdin. A folder or a quoted glob "
        "scores every file in it (see --engine).",
    ),
]
_Output = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--output",
        "-o",
        help="Where to write: .csv, .json, .npy or .npz. With --stream: a .csv, or '-' "
        "(the default) for stdout. With --engine: a folder of Parquet partitions.",
    ),
]
_Provider = Annotated[
    str,
    typer.Option(
        help="Execution provider, an ordered list (cuda,cpu), or auto; NAME:DEVICE picks "
        "a device (openvino:GPU)."
    ),
]
_Fallback = Annotated[
    bool,
    typer.Option(
        help="If a provider is unusable, go on with the next one, the CPU last (and say so)."
    ),
]
_BatchSize = Annotated[int, typer.Option(min=1, help="Rows per session call.")]
_Threads = Annotated[
    int, typer.Option(min=0, help="Intra-op threads; 0 = ONNX Runtime's default (all cores).")
]
_InterOpThreads = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(min=1, help="Inter-op threads (parallel branches)."),
]
_Spinning = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option(
        "--spinning/--no-spinning",
        help="Let idle threads spin (lower latency, busy cores) \\[default: ONNX Runtime's].",
        show_default=False,
    ),
]
_GraphOptimization = Annotated[
    GraphOptimizationChoice, typer.Option(help="ONNX Runtime graph optimization level.")
]
_MemoryArena = Annotated[
    bool, typer.Option(help="Use ONNX Runtime's memory arena (faster, holds memory).")
]
_CudaDevice = Annotated[int, typer.Option(min=0, help="CUDA/TensorRT device id.")]
_TensorrtFp16 = Annotated[bool, typer.Option(help="TensorRT: build FP16 engines.")]
_TensorrtCache = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="TensorRT: folder to cache built engines in."),
]
_Stream = Annotated[
    bool,
    typer.Option(help="Stream frames through a --streaming export, printing each chunk."),
]
_Chunk = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        min=1,
        help="Frames per push with --stream \\[default: the model's frame multiple (1 unless a "
        "strided front end), or the config's].",
    ),
]
_Beam = Annotated[
    int,
    typer.Option(
        min=1,
        help="transcribe: CTC beam width; 1 decodes greedily (best path), more runs a prefix "
        "beam search.",
    ),
]
_Prune = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=0.999,
        help="transcribe, --beam > 1: skip tokens below this probability at a step (faster).",
    ),
]
_Segments = Annotated[
    bool,
    typer.Option(help="tag: one row per segment (index, start, end, label, mean_confidence)."),
]
_Timestamps = Annotated[
    bool, typer.Option(help="transcribe: add each token's input frame (column frames).")
]
_AllowNonfinite = Annotated[
    bool, typer.Option(help="Feed NaN/Inf as they are instead of refusing them.")
]
_MemoryLimit = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        min=0.1,
        help="Cap this process's memory (GiB): an untrusted model that tries to allocate "
        "more fails with an error instead of exhausting the machine.",
    ),
]
_Engine = Annotated[
    Optional[EngineChoice],  # noqa: UP045
    typer.Option(
        help="Score many files (--input DIR, a quoted GLOB or FILE.parquet) into a folder "
        "of Parquet partitions (--output OUT_DIR): in this process (local) or on Ray "
        "(ray; the scale extra) \\[default: local when --input is a folder or glob].",
        show_default=False,
    ),
]
_Address = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="--engine ray: the cluster to join (auto, or ray://HOST:10001) \\[default: "
        "start Ray on this machine].",
        show_default=False,
    ),
]
_Workers = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        min=1,
        help="--engine ray: actors, each with one session \\[default: one per --threads "
        "CPUs, or one per GPU for cuda].",
        show_default=False,
    ),
]
_CpusPerWorker = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        callback=above_zero,
        help="--engine ray: logical CPUs each actor reserves; must be > 0 "
        "\\[default: --threads, less if the pool would claim every CPU].",
        show_default=False,
    ),
]
_PartitionRows = Annotated[
    int,
    typer.Option(min=1, help="--engine: most sequences per output partition (unit of work)."),
]
_Resume = Annotated[
    bool,
    typer.Option(
        help="--engine: keep the complete partitions already in --output and score the rest."
    ),
]
_SkipBad = Annotated[
    bool,
    typer.Option(
        help="--engine: list unreadable input files and go on, instead of stopping at the first."
    ),
]
_Overwrite = Annotated[bool, typer.Option(help="Replace an existing --output file.")]
_JsonOutput = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


#: Flags that only batch scoring (--engine, a folder or glob --input) honours.
_BATCH_FLAGS = (
    "engine",
    "address",
    "workers",
    "cpus_per_worker",
    "partition_rows",
    "resume",
    "skip_bad",
)


def run_command(
    ctx: typer.Context,
    model: _Model = None,
    config_path: _ConfigPath = None,
    input_file: _InputFile = None,
    output: _Output = None,
    provider: _Provider = "cpu",
    fallback: _Fallback = False,
    batch_size: _BatchSize = 256,
    threads: _Threads = 1,
    inter_op_threads: _InterOpThreads = None,
    spinning: _Spinning = None,
    graph_optimization: _GraphOptimization = GraphOptimizationChoice.all,
    memory_arena: _MemoryArena = True,
    cuda_device: _CudaDevice = 0,
    tensorrt_fp16: _TensorrtFp16 = False,
    tensorrt_cache: _TensorrtCache = None,
    stream: _Stream = False,
    chunk: _Chunk = None,
    allow_nonfinite: _AllowNonfinite = False,
    beam: _Beam = 1,
    prune: _Prune = 0.0,
    segments: _Segments = False,
    timestamps: _Timestamps = False,
    memory_limit: _MemoryLimit = None,
    engine: _Engine = None,
    address: _Address = None,
    workers: _Workers = None,
    cpus_per_worker: _CpusPerWorker = None,
    partition_rows: _PartitionRows = 4096,
    resume: _Resume = False,
    skip_bad: _SkipBad = False,
    overwrite: _Overwrite = False,
    json_output: _JsonOutput = False,
) -> None:
    """Run a model on a chosen execution provider; strict unless --fallback."""
    if input_file is None:
        raise InvalidInputError("--input FILE is required (with --stream, '-' reads stdin)")
    if memory_limit is not None:
        from edgelstm.runtimes.ort.session import limit_memory

        limit_memory(memory_limit)
    config = _session_config(
        provider, fallback, threads, inter_op_threads, spinning, graph_optimization.value,
        memory_arena, cuda_device, tensorrt_fp16, tensorrt_cache,
    )  # fmt: skip
    notes: tuple[str, ...] = ()  # the config's overrides, shown once the session is open
    if config_path is not None:
        if model is not None:
            raise InvalidInputError("give either MODEL or --config (which names the model)")
        model, config, batch_size, stream, chunk, notes = _from_deployment(
            ctx, config_path, config, batch_size, stream, chunk
        )
    elif model is None:
        raise InvalidInputError("give the MODEL.onnx to run (or --config deploy.json)")
    elif chunk is not None and not stream:
        raise InvalidInputError(
            f"--chunk {chunk} applies only to --stream (frames per push); add --stream, or use "
            "--batch-size for whole sequences"
        )
    given = [name for name in _BATCH_FLAGS if typed_on_command_line(ctx, name)]
    labelling = {"beam": beam, "prune": prune, "segments": segments, "timestamps": timestamps}
    if stream:
        _refuse_with_stream(ctx, given, allow_nonfinite, segments or timestamps)
        _run_stream(
            model, input_file, output, chunk, config, overwrite, json_output, notes,
            beam=beam, prune=prune,
        )  # fmt: skip
    elif engine is not None or _names_many_files(input_file, output):
        from edgelstm.runtimes.batch import RayOptions

        batch = _batch_options(engine, partition_rows, skip_bad, resume, overwrite)
        ray = RayOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker)
        options = _predict_options(batch_size, allow_nonfinite, labelling)
        _run_batch(model, input_file, output, config, batch, ray, options, json_output, notes)
    else:
        _refuse_batch_flags(given)
        options = _run_options(batch_size, allow_nonfinite, overwrite, labelling)
        _run_files(model, input_file, output, config, options, json_output, notes)


def _batch_options(
    engine: EngineChoice | None, partition_rows: int, skip_bad: bool, resume: bool, overwrite: bool
) -> Any:
    from edgelstm.runtimes.batch import BatchOptions

    return BatchOptions(
        engine=(engine or EngineChoice.local).value,
        partition_rows=partition_rows,
        skip_bad=skip_bad,
        resume=resume,
        overwrite=overwrite,
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_with_stream(
    ctx: typer.Context, given: list[str], allow_nonfinite: bool, shapes_files: bool
) -> None:
    """--stream runs one stream in this process: refuse what only other modes honour."""
    if shapes_files:
        raise InvalidInputError(
            "--segments and --timestamps shape `run`'s output files; a stream's rows "
            "already carry each frame's label (tag) and each token's frame (transcribe)"
        )
    if allow_nonfinite:
        raise InvalidInputError(
            "--allow-nonfinite cannot be used with --stream: NaN/Inf would poison the "
            "recurrent state of every later frame"
        )
    if given:
        raise InvalidInputError(
            f"{', '.join(map(_flag, given))} cannot be used with --stream: it scores one stream "
            "in this process; --engine (or a folder or glob --input) scores many files"
        )
    if typed_on_command_line(ctx, "batch_size"):
        raise InvalidInputError(
            "--batch-size applies to whole sequences; with --stream, --chunk sets frames per push"
        )


def _refuse_batch_flags(given: list[str]) -> None:
    if given:
        raise InvalidInputError(
            f"{_flag(given[0])} applies to batch scoring: add --engine local|ray (and --input "
            "DIR, GLOB or FILE.parquet, --output OUT_DIR)"
        )


def _from_deployment(
    ctx: typer.Context,
    config_path: Path,
    config: Any,
    batch_size: int,
    stream: bool,
    chunk: int | None,
) -> tuple[Path, Any, int, bool, int | None, tuple[str, ...]]:
    """The model, session, batch size and streaming mode of a deployment config.

    Flags beside --config override it, with a note, rather than being refused: a config
    tuned on one machine often needs a host's own setting (--cuda-device, --threads for its
    cores, --tensorrt-cache) without editing JSON, and the note keeps it visible.
    """
    from edgelstm.runtimes.ort.deploy import read_deployment, resolve_deployment

    def given(name: str) -> bool:
        return typed_on_command_line(ctx, name)

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
    deployed = resolved.config
    return (
        deployed.model,
        deployed.session,
        deployed.batch,
        resolved.streams,
        resolved.frames_per_push,
        resolved.notes,
    )


def _run_options(
    batch_size: int, allow_nonfinite: bool, overwrite: bool, labelling: dict[str, Any]
) -> Any:
    from edgelstm.runtimes.run_files import RunOptions

    return RunOptions(
        batch_size=batch_size, allow_nonfinite=allow_nonfinite, overwrite=overwrite, **labelling
    )


def _predict_options(batch_size: int, allow_nonfinite: bool, labelling: dict[str, Any]) -> Any:
    from edgelstm.runtimes.model_io.predictions import PredictOptions

    return PredictOptions(batch_size=batch_size, allow_nonfinite=allow_nonfinite, **labelling)


def _run_files(
    model: Path,
    input_file: str,
    output: str | None,
    config: Any,
    options: Any,
    json_output: bool,
    notes: tuple[str, ...],
) -> None:
    from edgelstm.cli.console import count_progress, stderr_console
    from edgelstm.runtimes.run_files import describe_run, run_model

    if input_file == "-":
        raise InvalidInputError("--input - (stdin) works only with --stream; give a file")
    if output is None or output == "-":
        raise InvalidInputError("--output FILE (.csv, .json, .npy or .npz) is required")
    err = stderr_console()
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
    options: Any,
    json_output: bool,
    notes: tuple[str, ...],
) -> None:
    from edgelstm.cli.console import count_progress, stderr_console
    from edgelstm.runtimes.batch import describe_batch, run_batch

    if output is None or output == "-":
        raise InvalidInputError(
            "--output OUT_DIR (a folder for the Parquet partitions) is required"
        )
    err = stderr_console()
    with count_progress(err, "partitions", enabled=not json_output, log_every=10.0) as progress:
        result = run_batch(
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
    from edgelstm.runtimes.ort.session_config import SessionConfig, parse_provider_list

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
    chunk: int | None,
    config: Any,
    overwrite: bool,
    json_output: bool,
    notes: tuple[str, ...] = (),
    *,
    beam: int = 1,
    prune: float = 0.0,
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
        beam=beam,
        prune=prune,
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
