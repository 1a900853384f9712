"""The ``edgelstm`` command line: parse, call one library function, print.

Errors from the library (:class:`edgelstm.errors.EdgeLSTMError`) are caught once, in
:func:`main`, and become one ``error:`` line on stderr with exit code 2 (bad input) or 1
(a check failed). ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from edgelstm import __version__
from edgelstm.errors import EdgeLSTMError, InvalidInputError
from edgelstm.extras import missing_dependency, missing_module


def _without_flag_metavars(params: list[Any]) -> list[Any]:
    """Give on/off flags an empty metavar: the help prints it instead of ``<bool>``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Group(TyperGroup):
    """typer's command group, with boolean flags shown as flags in every ``--help``.

    typer >= 0.20's rich help prints a type next to every option, so ``--debug <bool>`` reads
    as if the flag took a value; it takes none. The group fixes its own options and those of
    each command it resolves (``--help`` included), so a new command needs nothing extra.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_metavars(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _without_flag_metavars(command.get_params(ctx))
        return command


app = typer.Typer(
    cls=_Group,
    name="edgelstm",
    help="Train LSTM/GRU models and take them to fast, verified edge inference with ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state: dict[str, Any] = {"debug": False, "argv": []}


class TaskChoice(str, Enum):
    classify = "classify"
    forecast = "forecast"
    anomaly = "anomaly"


class ArchChoice(str, Enum):
    lstm = "lstm"
    gru = "gru"


class PoolingChoice(str, Enum):
    last = "last"
    mean = "mean"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgelstm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one error line.")
    ] = False,
    version: Annotated[
        Optional[bool],  # noqa: UP045 - typer needs Optional on Python 3.10
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    _state["debug"] = debug


@app.command()
def train(
    task: Annotated[
        Optional[TaskChoice], typer.Option(help="What the model learns.", show_default=False)  # noqa: UP045
    ] = None,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help="Checkpoint folder to write (config.json, model.safetensors, metrics.json)."
        ),
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option(help="Built-in dataset name (see --list-datasets).")  # noqa: UP045
    ] = None,
    data: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Training data: .npz (X, y\\[, lengths]), .npy, .csv or .ts."),
    ] = None,
    test: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Test data in the same layout; default: hold out 20 % of --data."),
    ] = None,
    target: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="forecast: columns to predict, names or 0-based indices (a,b or 0,2)."),
    ] = None,
    arch: Annotated[ArchChoice, typer.Option(help="Recurrent cell.")] = ArchChoice.lstm,
    layers: Annotated[int, typer.Option(min=1, help="Stacked recurrent layers.")] = 2,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden size per layer.")] = 128,
    bidirectional: Annotated[
        bool, typer.Option(help="Read sequences both ways (not for anomaly or streaming).")
    ] = False,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.95, help="Dropout.")] = 0.1,
    pooling: Annotated[
        Optional[PoolingChoice],  # noqa: UP045
        typer.Option(
            help="classify: last step or mean over time \\[default: last; mean for BasicMotions]",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(min=1, help="Maximum epochs (early stopping may end sooner).")  # noqa: UP045
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Batch size.")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate.")] = None,  # noqa: UP045
    lookback: Annotated[
        Optional[int], typer.Option(min=2, help="forecast/anomaly: input window length.")  # noqa: UP045
    ] = None,
    horizon: Annotated[
        Optional[int], typer.Option(min=1, help="forecast: steps predicted per window.")  # noqa: UP045
    ] = None,
    season: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="forecast: season length of the seasonal-naive baseline."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same model.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the test metrics as JSON on stdout.")
    ] = False,
    list_datasets: Annotated[
        bool, typer.Option("--list-datasets", help="List the built-in datasets and exit.")
    ] = False,
) -> None:
    """Train an LSTM/GRU on a built-in dataset or your data and write a checkpoint folder."""
    from edgelstm.console import (
        print_dataset_table,
        print_train_result,
        stderr_console,
        stdout_console,
        training_progress,
    )

    if list_datasets:
        from edgelstm.data.datasets import dataset_table_rows

        rows = dataset_table_rows()
        if json_output:
            typer.echo(json.dumps(rows, indent=2))
        else:
            print_dataset_table(rows, stdout_console())
        return
    if task is None:
        raise InvalidInputError("--task is required (classify, forecast or anomaly)")
    if out is None:
        raise InvalidInputError("--out RUN_DIR is required: the checkpoint folder to write")
    from edgelstm.training import train as train_model

    err = stderr_console()
    with training_progress(err) as progress:
        result = train_model(
            task.value,
            out=out,
            dataset=dataset,
            data=data,
            test=test,
            target=target,
            arch=arch.value,
            layers=layers,
            hidden=hidden,
            bidirectional=bidirectional,
            dropout=dropout,
            pooling=pooling.value if pooling else None,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            lookback=lookback,
            horizon=horizon,
            season=season,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
        )
    if json_output:
        typer.echo(json.dumps(result.metrics, indent=2))
    else:
        print_train_result(result, stdout_console())


@app.command()
def export(
    run_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="Checkpoint folder written by `edgelstm train`.", show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="The .onnx file to write (single file, with edgelstm metadata)."),
    ] = None,
    streaming: Annotated[
        bool,
        typer.Option(
            help="Export the streaming variant: state in (h, c), state out (h_out, c_out)."
        ),
    ] = False,
    opset: Annotated[int, typer.Option(min=14, help="ONNX opset.")] = 17,
    atol: Annotated[
        float, typer.Option(min=0.0, help="Max abs difference from PyTorch allowed in validation.")
    ] = 1e-4,
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="A module edgelstm did not train: file.py:factory or package.module:factory."
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="With --model: .safetensors or .pt state dict."),
    ] = None,
    input_shape: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="With --model: example input shape B,T,F."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result and validation as JSON on stdout.")
    ] = False,
) -> None:
    """Export to ONNX, validated against PyTorch at several shapes before anything is written."""
    from edgelstm.console import stdout_console

    if out is None:
        raise InvalidInputError("--out MODEL.onnx is required")
    if model is not None:
        if run_dir is not None:
            raise InvalidInputError("give either RUN_DIR or --model, not both")
        if weights is None or input_shape is None:
            raise InvalidInputError("--model needs --weights W and --input-shape B,T,F")
        if streaming:
            raise InvalidInputError(
                "--streaming needs an edgelstm checkpoint (its recurrent state is known)"
            )
        from edgelstm.exporters.onnx import export_user_model

        result = export_user_model(
            model, weights, input_shape, out, opset=opset, atol=atol, overwrite=overwrite
        )
    else:
        if run_dir is None:
            raise InvalidInputError("give a checkpoint folder RUN_DIR or --model file.py:factory")
        if weights is not None or input_shape is not None:
            raise InvalidInputError("--weights and --input-shape apply only to --model")
        from edgelstm.exporters.onnx import export as export_model

        result = export_model(
            run_dir, out, streaming=streaming, opset=opset, atol=atol, overwrite=overwrite
        )
    if json_output:
        typer.echo(json.dumps(export_summary(result), indent=2))
        return
    from edgelstm.exporters.validation import print_validation

    console = stdout_console()
    print_validation(result.report, console)
    console.print(describe_export(result), highlight=False)


def export_summary(result: Any) -> dict[str, Any]:
    """The JSON form of an export result."""
    return {
        "out": str(result.out),
        "variant": result.variant,
        "exporter": result.exporter,
        "opset": result.opset,
        "size_bytes": result.size_bytes,
        "external_data": result.external_data,
        "rejected": [list(r) for r in result.rejected],
        "validation": result.report.to_json(),
    }


def describe_export(result: Any) -> str:
    lines = [
        f"wrote {result.out} ({result.size_bytes / 1e6:.2f} MB, {result.variant}, "
        f"{result.exporter} exporter, opset {result.opset})"
    ]
    if result.external_data:
        lines.append(f"the model is over 2 GB: its weights are in {result.out}.data; keep both")
    for name, why in result.rejected:
        lines.append(f"{name} exporter rejected: {why}")
    return "\n".join(lines)


class QuantModeChoice(str, Enum):
    dynamic_int8 = "dynamic-int8"
    static_int8 = "static-int8"
    fp16 = "fp16"


class CalibrationChoice(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class ReduceRangeChoice(str, Enum):
    on = "on"
    off = "off"
    auto = "auto"


@app.command()
def quantize(
    model: Annotated[Path, typer.Argument(help="FP32 model written by `edgelstm export`.")],
    mode: Annotated[QuantModeChoice, typer.Option(help="Precision to produce.")],
    out: Annotated[
        Optional[Path], typer.Option(help="The quantized .onnx to write.")  # noqa: UP045
    ] = None,
    calibration: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="static-int8: .npz with X \\[n, time, features] of model inputs."),
    ] = None,
    calibration_method: Annotated[
        CalibrationChoice, typer.Option(help="static-int8 calibration method.")
    ] = CalibrationChoice.minmax,
    eval_run: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--eval",
            help="Checkpoint folder whose test split gates accuracy "
            "\\[default: the model's source].",
        ),
    ] = None,
    max_degradation: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            min=0.0,
            help="Allowed loss: accuracy 0.01, forecast MAE 0.02 relative, AUROC 0.01 by default.",
        ),
    ] = None,
    allow_partial: Annotated[
        bool, typer.Option(help="Keep a dynamic-int8 result even if an LSTM stayed float.")
    ] = False,
    per_channel: Annotated[
        bool, typer.Option(help="INT8: one scale per output channel (more accurate, ~1% larger).")
    ] = True,
    reduce_range: Annotated[
        ReduceRangeChoice,
        typer.Option(
            help="INT8: 7-bit weights for the CPU that will run the model. on: safe on any "
            "x86 (without VNNI 8-bit weights can saturate); off: 8-bit, for targets with VNNI "
            "or ARM; auto: decide from the CPU running quantize (only if it is the target).",
        ),
    ] = ReduceRangeChoice.on,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the audit and gate as JSON on stdout.")
    ] = False,
) -> None:
    """Quantize to INT8 or FP16 with an audit and an accuracy gate; writes only on success."""
    if out is None:
        raise InvalidInputError("--out OUT.onnx is required")
    from edgelstm.exporters.quantize import print_quantize_result, quantize_result_json
    from edgelstm.exporters.quantize import quantize as quantize_model

    result = quantize_model(
        model,
        out,
        mode=mode.value,
        calibration=calibration,
        calibration_method=calibration_method.value,
        eval_run=eval_run,
        max_degradation=max_degradation,
        allow_partial=allow_partial,
        per_channel=per_channel,
        reduce_range=reduce_range.value,
        overwrite=overwrite,
    )
    if json_output:
        typer.echo(json.dumps(quantize_result_json(result), indent=2))
    else:
        from edgelstm.console import stdout_console

        print_quantize_result(result, stdout_console())


@app.command()
def providers(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    probe: Annotated[
        bool,
        typer.Option(help="Start a tiny session on each provider to prove it really runs."),
    ] = False,
) -> None:
    """List ONNX Runtime execution providers, what `auto` picks, and the CPU/GPU they run on."""
    from edgelstm.console import stdout_console
    from edgelstm.runtimes.providers import print_provider_report, provider_report

    report = provider_report(probe=probe)
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_provider_report(report, stdout_console())


class GraphOptimizationChoice(str, Enum):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


@app.command(name="run")
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
            help="Inputs: .ts/.csv/.npy/.npz; any ONNX model: .npz keyed by input names. "
            "With --stream, '-' reads frames from stdin.",
        ),
    ] = None,
    output: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help="Where to write: .csv, .json, .npy or .npz. With --stream: a .csv, or '-' "
            "(the default) for stdout.",
        ),
    ] = None,
    provider: Annotated[
        str,
        typer.Option(help="Execution provider, an ordered list (cuda,cpu), or auto."),
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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output file.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Run a model on a chosen execution provider; strict unless --fallback."""
    from edgelstm.console import count_progress, stderr_console

    if input_file is None:
        raise InvalidInputError("--input FILE is required (with --stream, '-' reads stdin)")
    if memory_limit is not None:
        from edgelstm.runtimes.session import limit_memory

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
        from edgelstm.runtimes.deploy import read_deployment, resolve_deployment

        if model is not None:
            raise InvalidInputError("give either MODEL or --config (which names the model)")

        def given(name: str) -> bool:
            # Typed on the command line, not left at its default: a default is no choice and
            # must not replace the tuned value, even when it equals the value the user typed.
            source = ctx.get_parameter_source(name)
            return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

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
    if input_file == "-":
        raise InvalidInputError("--input - (stdin) works only with --stream; give a file")
    if output is None or output == "-":
        raise InvalidInputError("--output FILE (.csv, .json, .npy or .npz) is required")
    from edgelstm.runtimes.run import RunOptions, run_model

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
    _print_warnings(err, result.opened.warnings)
    _print_notes(err, [*notes, *result.notices])
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    from edgelstm.runtimes.run import describe_run

    err.print(describe_run(result), highlight=False, markup=False, soft_wrap=True)


def _print_notes(console: Any, notes: Any) -> None:
    from rich.markup import escape

    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def _print_warnings(console: Any, warnings: Any) -> None:
    """``warning:`` lines (stderr): things that can make results wrong, unlike notes."""
    from rich.markup import escape

    for warning in warnings:
        console.print(f"[bold red]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


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
    from edgelstm.runtimes.session import SessionConfig, parse_provider_list

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
    from edgelstm.console import stderr_console
    from edgelstm.fileio import atomic_file
    from edgelstm.metadata import read_metadata
    from edgelstm.runtimes.run import csv_row_writer, stream_columns, stream_model

    columns = stream_columns(read_metadata(model))
    source: Any = sys.stdin if input_file == "-" else Path(input_file)
    err = stderr_console()

    def opened(session: Any) -> None:
        # Before the rows: a live stream may not end.
        _print_warnings(err, session.warnings)
        _print_notes(err, notes)

    if output is None or output == "-":
        if json_output:
            raise InvalidInputError(
                "--json with --stream needs --output FILE.csv (stdout holds rows)"
            )
        result = stream_model(
            model,
            source,
            csv_row_writer(sys.stdout, columns),
            chunk=chunk,
            session=config,
            on_open=opened,
        )
    else:
        target = Path(output)
        if target.suffix.lower() != ".csv":
            raise InvalidInputError(
                f"--stream writes CSV rows; give --output FILE.csv, not {target}"
            )
        with atomic_file(target, overwrite=overwrite) as tmp, tmp.open("w", encoding="utf-8") as fh:
            result = stream_model(
                model,
                source,
                csv_row_writer(fh, columns),
                chunk=chunk,
                session=config,
                on_open=opened,
            )
    _print_notes(err, result.opened.notes)
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


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(
            f"{option} {text!r}: give positive integers separated by commas, e.g. 1,8,64"
        ) from None
    if any(v < 1 for v in values):
        raise InvalidInputError(f"{option} {text!r}: values must be >= 1")
    return values


def _default_threads(tune: bool) -> tuple[int, ...]:
    """One thread (best for small recurrent batches); --tune also tries every usable core."""
    if not tune:
        return (1,)
    from edgelstm.hardware import cpu_info

    cores = cpu_info().usable_cores or 1
    return tuple(sorted({1, cores}))


@app.command()
def benchmark(
    models: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Argument(help="ONNX artifacts to compare (sequence and/or streaming exports)."),
    ] = None,
    providers: Annotated[
        str, typer.Option(help="Providers to measure, comma-separated, or 'all' usable here.")
    ] = "cpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, e.g. 1,8,64.")] = "1",
    seq: Annotated[str, typer.Option(help="Sequence lengths, e.g. 1,100,1000.")] = "100",
    threads: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Intra-op thread counts, e.g. 1,2 \\[default: 1; with --tune: 1 and all cores]."
        ),
    ] = None,
    stream: Annotated[
        bool, typer.Option(help="Also time streaming pushes (models exported with --streaming).")
    ] = False,
    chunk: Annotated[str, typer.Option(help="Frames per push with --stream, e.g. 1,10.")] = "1",
    frame_rate: Annotated[
        float, typer.Option(min=0.001, help="Sensor frame rate (Hz) for the real-time factor.")
    ] = 100.0,
    torch_run: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--torch", help="Checkpoint folder: add PyTorch eager baseline rows."),
    ] = None,
    eval_run: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--eval", help="Checkpoint folder whose test split scores every artifact."),
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls before timing.")] = 10,
    iterations: Annotated[int, typer.Option(min=1, help="Timed calls per row.")] = 100,
    duration: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(min=0.001, help="Time each row for this many seconds instead."),
    ] = None,
    fallback: Annotated[
        bool, typer.Option(help="Measure an unusable provider's rows on the CPU (rows say so).")
    ] = False,
    cuda_graphs: Annotated[
        bool, typer.Option(help="CUDA rows with and without CUDA graphs (IO binding).")
    ] = False,
    isolate: Annotated[
        bool, typer.Option(help="Run each row in its own process (clean heap, peak memory).")
    ] = True,
    rounds: Annotated[
        int,
        typer.Option(min=1, help="Alternate the rows of one shape this many times while timing."),
    ] = 5,
    json_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json", help="Write the report as JSON (schema edgelstm.benchmark/1)."),
    ] = None,
    markdown: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Write the report as Markdown."),
    ] = None,
    plot: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Write latency plots as PNG (needs edgelstm\\[plot])."),
    ] = None,
    compare: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="An earlier --json report: per-row ratios, regressions flagged."),
    ] = None,
    regression_threshold: Annotated[
        float, typer.Option(min=0.0, help="Slower than (1 + this) x the old p50 is a regression.")
    ] = 0.10,
    fail_on_regression: Annotated[
        bool, typer.Option(help="Exit 1 when --compare finds a regression.")
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(help="Pick the fastest configuration within the accuracy budget (--eval)."),
    ] = False,
    tune_out: Annotated[
        Path, typer.Option(help="Where --tune writes the deployment config for `run --config`.")
    ] = Path("deploy.json"),
    max_degradation: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(min=0.0, help="--tune budget: accuracy 0.01, MAE 0.02 rel., AUROC 0.01."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
) -> None:
    """Compare providers x precisions x shapes in one table, PyTorch as the baseline."""
    from edgelstm.benchmarks.harness import BenchmarkPlan, run_benchmark
    from edgelstm.benchmarks.report import (
        compare_reports,
        load_report,
        print_comparison,
        render_table,
        write_report_files,
    )
    from edgelstm.console import count_progress, stderr_console, stdout_console
    from edgelstm.fileio import check_output_path

    names = tuple(p.strip() for p in providers.split(","))
    if any(not n for n in names):
        raise InvalidInputError(f"--providers {providers!r} has an empty entry")
    old = load_report(compare) if compare is not None else None
    for path in (json_path, markdown, plot, tune_out if tune else None):
        if path is not None:
            check_output_path(path, overwrite=overwrite)
    if tune and eval_run is None:
        raise InvalidInputError("--tune needs --eval RUN_DIR: only scored artifacts can be kept")
    if plot is not None:
        from edgelstm.benchmarks.report import require_plotting

        require_plotting()
    plan = BenchmarkPlan(
        models=tuple(models or ()),
        providers=names,
        batches=_int_list(batch, "--batch"),
        seqs=_int_list(seq, "--seq"),
        threads=_int_list(threads, "--threads") if threads else _default_threads(tune),
        stream=stream,
        chunks=_int_list(chunk, "--chunk"),
        torch_run=torch_run,
        eval_run=eval_run,
        warmup=warmup,
        iterations=iterations,
        duration_s=duration,
        frame_rate=frame_rate,
        fallback=fallback,
        cuda_graphs=cuda_graphs,
        isolate=isolate,
        rounds=rounds,
    )
    err = stderr_console()
    # Recorded in the report so it can be rerun; the argv main() got, not the host program's.
    command = "edgelstm " + " ".join(_state["argv"])
    with count_progress(err, "benchmark") as progress:
        report = run_benchmark(
            plan,
            progress=None if progress is None else (lambda d, t, _label: progress(d, t)),
            command=command,
        )
    document = report.to_json()
    chosen = None
    if tune:
        from edgelstm.benchmarks.tune import tune_deployment, write_deployments

        chosen = tune_deployment(report.rows, stream=stream, max_degradation=max_degradation)
        document["deployment"] = write_deployments({tune_out: chosen}, overwrite=overwrite)
    comparison = None
    if old is not None:
        comparison = compare_reports(document, old, threshold=regression_threshold)
        document["comparison"] = comparison.to_json()
    write_report_files(
        document,
        json_path=json_path,
        markdown_path=markdown,
        plot_path=plot,
        overwrite=overwrite,
    )
    out = stdout_console(min_width=220)
    out.print(render_table(document))
    _print_warnings(err, report.warnings)
    for skip in report.skipped:
        _print_notes(err, [f"skipped {skip['provider']}: {skip['reason']}"])
    notes = sorted({n for r in report.rows for n in r.get("notes", [])})
    _print_notes(err, notes)
    if comparison is not None:
        print_comparison(comparison, out)
    if chosen is not None:
        err.print(f"deployment: {tune_out} ({chosen.reason})", markup=False, soft_wrap=True)
    written = [p for p in (json_path, markdown, plot) if p is not None]
    if written:
        err.print("wrote " + ", ".join(str(p) for p in written), markup=False, soft_wrap=True)
    if comparison is not None and comparison.regressions and fail_on_regression:
        from edgelstm.errors import CheckFailedError

        raise CheckFailedError(
            f"{len(comparison.regressions)} row(s) regressed more than "
            f"{regression_threshold:.0%} against {compare}"
        )


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the run, models and report.")] = Path(
        "quickstart"
    ),
    dataset: Annotated[
        str, typer.Option(help="Built-in classification dataset (JapaneseVowels, BasicMotions).")
    ] = "JapaneseVowels",
    preset: Annotated[
        str, typer.Option(help="Training preset: default, or smoke (seconds; a weak model).")
    ] = "default",
    iterations: Annotated[int, typer.Option(min=1, help="Timed calls per benchmark row.")] = 200,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Train, export, quantize and benchmark in one go; writes a report to --out."""
    from edgelstm.benchmarks.quickstart import quickstart as run_quickstart
    from edgelstm.benchmarks.report import render_table
    from edgelstm.console import count_progress, stderr_console, stdout_console, training_progress
    from edgelstm.fileio import check_output_path

    check_output_path(out, overwrite=overwrite, kind="folder")
    err = stderr_console()

    def stage(message: str) -> None:
        err.print(message, markup=False, highlight=False, soft_wrap=True)

    with training_progress(err) as train_progress, count_progress(err, "benchmark") as bench:
        result = run_quickstart(
            out,
            dataset=dataset,
            preset=preset,
            iterations=iterations,
            overwrite=overwrite,
            stage=stage,
            train_progress=train_progress,
            bench_progress=None if bench is None else (lambda d, t, _label: bench(d, t)),
            command=" ".join(["edgelstm", *_state["argv"]]),
        )
    stdout_console(min_width=220).print(render_table(result.report, title="edgelstm quickstart"))
    _print_notes(err, result.notes)
    for line, value in result.report.get("summary", {}).items():
        stage(f"{line}: {value}")
    if result.deployment is not None:
        chosen = result.deployment
        provider = chosen["session"]["providers"][0]
        stage(f"deployment: {chosen['model']} on {provider} ({chosen['reason']})")
    stage("wrote " + ", ".join(str(p) for p in result.files))


def _framework_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """(usage errors, exits, aborts) raised by typer's command-line parser.

    Older typers raise click's classes and re-export them; typer >= 0.20 vendors its own copy
    of click and no longer installs click. Both expose ``Exit``, ``Abort`` and
    ``BadParameter``, whose ancestry names the usage-error base, so nothing here imports click
    (a module edgelstm does not declare) or typer's private modules.
    """
    usage = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return (usage,), (typer.Exit,), (typer.Abort, KeyboardInterrupt)


def _usage_message(exc: BaseException) -> str:
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    where = ctx.command_path if ctx is not None else "edgelstm"
    return f"error: {message} (see '{where} --help')"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    usage, exits, aborts = _framework_exceptions()
    try:
        _state["argv"] = list(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, standalone_mode=False, prog_name="edgelstm")
    except EdgeLSTMError as exc:
        if _state["debug"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except exits as exc:
        return int(getattr(exc, "exit_code", 0))
    except ImportError as exc:
        # An extra's module imported by a command (torch for train/export, aeon for .ts files
        # ...) on an install without that extra: one line naming the extra, not a traceback.
        if _state["debug"] or missing_module(exc) is None:
            raise
        command = next((a for a in _state["argv"] if not a.startswith("-")), "")
        print(f"error: {missing_dependency(exc, f'edgelstm {command}'.strip())}", file=sys.stderr)
        return 2
    except MemoryError:
        if _state["debug"]:
            raise
        print(
            "error: out of memory; use a smaller input or --batch-size, or a machine with more "
            "memory",
            file=sys.stderr,
        )
        return 2
    except aborts:
        print("interrupted", file=sys.stderr)
        return 130
    except usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)  # type: ignore[attr-defined]
            return 2
        print(_usage_message(exc), file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    if isinstance(code, int) and code != 0:
        # typer turns Ctrl-C into a return value of 130 when not in standalone mode.
        if code == 130:
            print("interrupted", file=sys.stderr)
        return code
    return 0


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
