"""``edgelstm benchmark`` and ``edgelstm quickstart``: timing reports, tuning and the
one-command tour (:mod:`edgelstm.benchmarks`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from edgelstm.cli.app import OverwriteFolderOption, print_notes, print_warnings, state
from edgelstm.errors import CheckFailedError, InvalidInputError

if TYPE_CHECKING:
    from edgelstm.benchmarks.harness import BenchmarkPlan, BenchmarkReport
    from edgelstm.benchmarks.report import Comparison
    from edgelstm.runtimes.ort.deploy import DeploymentConfig


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


ModelsArgument = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Argument(help="ONNX artifacts to compare (sequence and/or streaming exports)."),
]
ProvidersOption = Annotated[
    str,
    typer.Option(
        help="Providers to measure, comma-separated (NAME:DEVICE for one device, e.g. "
        "openvino:GPU), or 'all' usable here."
    ),
]
BatchOption = Annotated[str, typer.Option(help="Batch sizes, e.g. 1,8,64.")]
SeqOption = Annotated[str, typer.Option(help="Sequence lengths, e.g. 1,100,1000.")]
ThreadsOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="Intra-op thread counts, e.g. 1,2 \\[default: 1; with --tune: 1 and all cores]."
    ),
]
StreamOption = Annotated[
    bool, typer.Option(help="Also time streaming pushes (models exported with --streaming).")
]
ChunkOption = Annotated[str, typer.Option(help="Frames per push with --stream, e.g. 1,10.")]
FrameRateOption = Annotated[
    float, typer.Option(min=0.001, help="Sensor frame rate (Hz) for the real-time factor.")
]
TorchRunOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--torch", help="Checkpoint folder, or FILE.py:FACTORY: add PyTorch eager baseline rows."
    ),
]
TorchWeightsOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--weights", help="Weights of a --torch FILE.py:FACTORY module.", show_default=False
    ),
]
EvalRunOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--eval", help="Checkpoint folder whose test split scores every artifact."),
]
InputsOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--inputs",
        help="Real inputs for any ONNX model: .npz arrays by input name (sets batch/seq).",
        show_default=False,
    ),
]
DimOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--dim", help="Size of a symbolic axis for made-up inputs: NAME=SIZE.", show_default=False
    ),
]
WarmupOption = Annotated[int, typer.Option(min=0, help="Untimed calls before timing.")]
IterationsOption = Annotated[int, typer.Option(min=1, help="Timed calls per row.")]
DurationOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(min=0.001, help="Time each row for this many seconds instead."),
]
FallbackOption = Annotated[
    bool, typer.Option(help="Measure an unusable provider's rows on the CPU (rows say so).")
]
CudaGraphsOption = Annotated[
    bool, typer.Option(help="CUDA rows with and without CUDA graphs (IO binding).")
]
IsolateOption = Annotated[
    bool, typer.Option(help="Run each row in its own process (clean heap, peak memory).")
]
RoundsOption = Annotated[
    int,
    typer.Option(min=1, help="Alternate the rows of one shape this many times while timing."),
]
JsonReportOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--json", help="Write the report as JSON (schema edgelstm.benchmark/1)."),
]
MarkdownOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="Write the report as Markdown."),
]
PlotOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="Write latency plots as PNG (needs edgelstm\\[plot])."),
]
CompareOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="An earlier --json report: per-row ratios, regressions flagged."),
]
RegressionThresholdOption = Annotated[
    float, typer.Option(min=0.0, help="Slower than (1 + this) x the old p50 is a regression.")
]
FailOnRegressionOption = Annotated[
    bool, typer.Option(help="Exit 1 when --compare finds a regression.")
]
TuneOption = Annotated[
    bool,
    typer.Option(help="Pick the fastest configuration within the accuracy budget (--eval)."),
]
TuneOutOption = Annotated[
    Path, typer.Option(help="Where --tune writes the deployment config for `run --config`.")
]
MaxDegradationOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(min=0.0, help="--tune budget: accuracy 0.01, MAE 0.02 rel., AUROC 0.01."),
]
OverwriteOutputsOption = Annotated[bool, typer.Option(help="Replace existing output files.")]


def benchmark(
    models: ModelsArgument = None,
    providers: ProvidersOption = "cpu",
    batch: BatchOption = "1",
    seq: SeqOption = "100",
    threads: ThreadsOption = None,
    stream: StreamOption = False,
    chunk: ChunkOption = "1",
    frame_rate: FrameRateOption = 100.0,
    torch_run: TorchRunOption = None,
    torch_weights: TorchWeightsOption = None,
    eval_run: EvalRunOption = None,
    inputs: InputsOption = None,
    dims: DimOption = None,
    warmup: WarmupOption = 10,
    iterations: IterationsOption = 100,
    duration: DurationOption = None,
    fallback: FallbackOption = False,
    cuda_graphs: CudaGraphsOption = False,
    isolate: IsolateOption = True,
    rounds: RoundsOption = 5,
    json_path: JsonReportOption = None,
    markdown: MarkdownOption = None,
    plot: PlotOption = None,
    compare: CompareOption = None,
    regression_threshold: RegressionThresholdOption = 0.10,
    fail_on_regression: FailOnRegressionOption = False,
    tune: TuneOption = False,
    tune_out: TuneOutOption = Path("deploy.json"),
    max_degradation: MaxDegradationOption = None,
    overwrite: OverwriteOutputsOption = False,
) -> None:
    """Compare providers x precisions x shapes in one table, PyTorch as the baseline."""
    from edgelstm.benchmarks.harness import BenchmarkPlan
    from edgelstm.benchmarks.model_inputs import parse_dims
    from edgelstm.benchmarks.report import load_report, write_report_files

    names = _provider_names(providers)
    old = load_report(compare) if compare is not None else None
    outputs = _Outputs(json_path, markdown, plot, tune_out if tune else None)
    default_threads = _refuse_before_timing(outputs, eval_run, overwrite=overwrite)
    plan = BenchmarkPlan(
        models=tuple(models or ()),
        providers=names,
        batches=_int_list(batch, "--batch"),
        seqs=_int_list(seq, "--seq"),
        threads=_int_list(threads, "--threads") if threads else default_threads,
        stream=stream,
        chunks=_int_list(chunk, "--chunk"),
        torch_run=torch_run,
        torch_weights=torch_weights,
        eval_run=eval_run,
        warmup=warmup,
        iterations=iterations,
        duration_s=duration,
        frame_rate=frame_rate,
        fallback=fallback,
        cuda_graphs=cuda_graphs,
        isolate=isolate,
        rounds=rounds,
        inputs=inputs,
        dims=parse_dims(dims or ()),
    )
    report = _run(plan)
    document = report.to_json()
    chosen = (
        _tune(report, document, outputs.tune_out, stream, max_degradation, overwrite=overwrite)
        if outputs.tune_out is not None
        else None
    )
    comparison = _compare(document, old, regression_threshold) if old is not None else None
    write_report_files(
        document, json_path=json_path, markdown_path=markdown, plot_path=plot, overwrite=overwrite
    )
    _print_report(document, report, comparison, chosen, outputs)
    if comparison is not None and comparison.regressions and fail_on_regression:
        raise CheckFailedError(
            f"{len(comparison.regressions)} row(s) regressed more than "
            f"{regression_threshold:.0%} against {compare}"
        )


@dataclass(frozen=True)
class _Outputs:
    """The files a benchmark writes; ``tune_out`` only with ``--tune``."""

    json_path: Path | None
    markdown: Path | None
    plot: Path | None
    tune_out: Path | None

    @property
    def reports(self) -> list[Path]:
        return [p for p in (self.json_path, self.markdown, self.plot) if p is not None]


def _provider_names(providers: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in providers.split(","))
    if any(not n for n in names):
        raise InvalidInputError(f"--providers {providers!r} has an empty entry")
    return names


def _refuse_before_timing(
    outputs: _Outputs, eval_run: Path | None, *, overwrite: bool
) -> tuple[int, ...]:
    """Refuse outputs that cannot be written, ``--tune`` without ``--eval`` and plots without
    matplotlib before minutes of timing; return the thread counts to time by default."""
    from edgelstm.benchmarks.harness import BenchmarkPlan
    from edgelstm.fileio import check_output_path

    for path in (*outputs.reports, outputs.tune_out):
        if path is not None:
            check_output_path(path, overwrite=overwrite)
    default_threads: tuple[int, ...] = BenchmarkPlan.threads
    if outputs.tune_out is not None:
        from edgelstm.benchmarks.tune import check_tunable, tuning_threads

        check_tunable(eval_run)
        default_threads = tuning_threads()
    if outputs.plot is not None:
        from edgelstm.benchmarks.plots import require_plotting

        require_plotting()
    return default_threads


def _run(plan: BenchmarkPlan) -> BenchmarkReport:
    from edgelstm.benchmarks.harness import run_benchmark
    from edgelstm.cli.console import count_progress, stderr_console

    # Recorded in the report so it can be rerun; the argv main() got, not the host program's.
    command = "edgelstm " + " ".join(state["argv"])
    with count_progress(stderr_console(), "benchmark") as progress:
        return run_benchmark(
            plan,
            progress=None if progress is None else (lambda d, t, _label: progress(d, t)),
            command=command,
        )


def _tune(
    report: BenchmarkReport,
    document: dict[str, Any],
    tune_out: Path,
    stream: bool,
    max_degradation: float | None,
    *,
    overwrite: bool,
) -> DeploymentConfig:
    """Choose the deployment, write it to ``tune_out`` and record it in ``document``."""
    from edgelstm.benchmarks.tune import tune_deployment, write_deployments

    chosen = tune_deployment(report.rows, stream=stream, max_degradation=max_degradation)
    document["deployment"] = write_deployments({tune_out: chosen}, overwrite=overwrite)
    return chosen


def _compare(document: dict[str, Any], old: dict[str, Any], threshold: float) -> Comparison:
    """Per-row ratios against an earlier report, recorded in ``document``."""
    from edgelstm.benchmarks.report import compare_reports

    comparison = compare_reports(document, old, threshold=threshold)
    document["comparison"] = comparison.to_json()
    return comparison


def _print_report(
    document: dict[str, Any],
    report: BenchmarkReport,
    comparison: Comparison | None,
    chosen: DeploymentConfig | None,
    outputs: _Outputs,
) -> None:
    """The table on stdout; warnings, skips, notes and the files written on stderr."""
    from edgelstm.benchmarks.report import print_comparison, render_table
    from edgelstm.cli.console import stderr_console, stdout_console

    err = stderr_console()
    out = stdout_console(min_width=220)
    out.print(render_table(document))
    print_warnings(err, report.warnings)
    for skip in report.skipped:
        print_notes(err, [f"skipped {skip['provider']}: {skip['reason']}"])
    print_notes(err, sorted({n for r in report.rows for n in r.get("notes", [])}))
    if comparison is not None:
        print_comparison(comparison, out)
    if chosen is not None:
        err.print(f"deployment: {outputs.tune_out} ({chosen.reason})", markup=False, soft_wrap=True)
    if outputs.reports:
        written = ", ".join(str(p) for p in outputs.reports)
        err.print(f"wrote {written}", markup=False, soft_wrap=True)


QuickstartOutOption = Annotated[Path, typer.Option(help="Folder for the run, models and report.")]


class QuickstartTask(str, Enum):
    classify = "classify"
    tag = "tag"
    transcribe = "transcribe"


QuickstartTaskOption = Annotated[
    QuickstartTask, typer.Option(help="Which task to tour: classify, tag or transcribe.")
]
QuickstartDatasetOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="Built-in dataset of that task \\[default: JapaneseVowels (classify), "
        "ActivityStreams (tag), DigitStrings (transcribe)].",
        show_default=False,
    ),
]
PresetOption = Annotated[
    str, typer.Option(help="Training preset: default, or smoke (seconds; a weak model).")
]
QuickstartIterationsOption = Annotated[
    int, typer.Option(min=1, help="Timed calls per benchmark row.")
]
ReuseOption = Annotated[
    bool,
    typer.Option(
        help="Keep the trained and exported models of an existing --out made with the same "
        "task, dataset and preset; benchmark and report again."
    ),
]


def quickstart(
    out: QuickstartOutOption = Path("quickstart"),
    task: QuickstartTaskOption = QuickstartTask.classify,
    dataset: QuickstartDatasetOption = None,
    preset: PresetOption = "default",
    iterations: QuickstartIterationsOption = 200,
    overwrite: OverwriteFolderOption = False,
    reuse: ReuseOption = False,
) -> None:
    """Train, export, quantize and benchmark in one go; writes a report to --out."""
    from edgelstm.benchmarks.quickstart import quickstart as run_quickstart
    from edgelstm.benchmarks.report import render_table
    from edgelstm.cli.console import (
        count_progress,
        stderr_console,
        stdout_console,
        training_progress,
    )
    from edgelstm.errors import OutputExistsError
    from edgelstm.fileio import check_output_path

    try:
        check_output_path(out, overwrite=overwrite or reuse, kind="folder")
    except OutputExistsError as exc:
        raise OutputExistsError(
            f"{exc}; --reuse keeps its trained model and times it again"
        ) from None
    err = stderr_console()

    def stage(message: str) -> None:
        err.print(message, markup=False, highlight=False, soft_wrap=True)

    with training_progress(err) as train_progress, count_progress(err, "benchmark") as bench:
        result = run_quickstart(
            out,
            task=task.value,
            dataset=dataset,
            preset=preset,
            iterations=iterations,
            overwrite=overwrite,
            reuse=reuse,
            stage=stage,
            train_progress=train_progress,
            bench_progress=None if bench is None else (lambda d, t, _label: bench(d, t)),
            command=" ".join(["edgelstm", *state["argv"]]),
        )
    stdout_console(min_width=220).print(render_table(result.report, title="edgelstm quickstart"))
    print_notes(err, result.notes)
    for line, value in result.report.get("summary", {}).items():
        stage(f"{line}: {value}")
    if result.deployment is not None:
        chosen = result.deployment
        provider = chosen["session"]["providers"][0]
        stage(f"deployment: {chosen['model']} on {provider} ({chosen['reason']})")
    stage("wrote " + ", ".join(str(p) for p in result.files))
