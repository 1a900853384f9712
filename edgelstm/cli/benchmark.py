"""``edgelstm benchmark`` and ``edgelstm quickstart``: timing reports, tuning and the
one-command tour (:mod:`edgelstm.benchmarks`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgelstm.cli.app import print_notes, print_warnings, state
from edgelstm.errors import InvalidInputError


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


def benchmark(
    models: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Argument(help="ONNX artifacts to compare (sequence and/or streaming exports)."),
    ] = None,
    providers: Annotated[
        str,
        typer.Option(
            help="Providers to measure, comma-separated (NAME:DEVICE for one device, e.g. "
            "openvino:GPU), or 'all' usable here."
        ),
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
    from edgelstm.cli.console import count_progress, stderr_console, stdout_console
    from edgelstm.fileio import check_output_path

    names = tuple(p.strip() for p in providers.split(","))
    if any(not n for n in names):
        raise InvalidInputError(f"--providers {providers!r} has an empty entry")
    old = load_report(compare) if compare is not None else None
    for path in (json_path, markdown, plot, tune_out if tune else None):
        if path is not None:
            check_output_path(path, overwrite=overwrite)
    if tune:
        from edgelstm.benchmarks.tune import check_tunable, tuning_threads

        check_tunable(eval_run)
        default_threads = tuning_threads()
    else:
        default_threads = BenchmarkPlan.threads
    if plot is not None:
        from edgelstm.benchmarks.plots import require_plotting

        require_plotting()
    plan = BenchmarkPlan(
        models=tuple(models or ()),
        providers=names,
        batches=_int_list(batch, "--batch"),
        seqs=_int_list(seq, "--seq"),
        threads=_int_list(threads, "--threads") if threads else default_threads,
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
    command = "edgelstm " + " ".join(state["argv"])
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
    print_warnings(err, report.warnings)
    for skip in report.skipped:
        print_notes(err, [f"skipped {skip['provider']}: {skip['reason']}"])
    notes = sorted({n for r in report.rows for n in r.get("notes", [])})
    print_notes(err, notes)
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
    from edgelstm.cli.console import (
        count_progress,
        stderr_console,
        stdout_console,
        training_progress,
    )
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
