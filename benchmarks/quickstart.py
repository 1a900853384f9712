"""``edgelstm quickstart``: the whole pipeline on a built-in dataset, ending in one report.

train (JapaneseVowels, default settings) → export (sequence and streaming) → quantize
(dynamic INT8, accuracy-gated) → benchmark every usable provider with PyTorch as the baseline
and every artifact scored on the test split → pick a deployment (``deploy.json``) → write
the report (JSON, Markdown, PNG). Everything lands in one folder, written atomically: a
failure or Ctrl-C leaves no half-built folder behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.data.types import SequenceSet
from edgelstm.errors import CheckFailedError, InvalidInputError, MissingDependencyError
from edgelstm.fileio import atomic_folder, relocate_paths

__all__ = ["QuickstartResult", "quickstart"]

#: ``stage(message)``: one line per pipeline step, for the terminal.
Stage = Callable[[str], None]


@dataclass(frozen=True)
class QuickstartResult:
    """Where everything went and the headline numbers."""

    out: Path
    report: dict[str, Any]
    files: tuple[Path, ...]
    train_metrics: dict[str, Any]
    #: the sequence-mode deployment (deploy.json); the streaming one is in the report.
    deployment: dict[str, Any] | None
    notes: tuple[str, ...]


def _relocate(value: Any, tmp: Path, final: Path) -> Any:
    """Rewrite paths inside the temporary folder to their final place (for the JSON files)."""
    return relocate_paths(value, tmp, final)


def quickstart(
    out: Path | str = Path("quickstart"),
    *,
    dataset: str = "JapaneseVowels",
    preset: str = "default",
    hidden: int = 128,
    layers: int = 2,
    batches: tuple[int, ...] = (1, 32),
    iterations: int = 200,
    warmup: int = 20,
    isolate: bool = True,
    overwrite: bool = False,
    stage: Stage | None = None,
    train_progress: Any = None,
    bench_progress: Any = None,
    command: str = "edgelstm quickstart",
) -> QuickstartResult:
    """Run the pipeline into ``out``; see the module docstring. Returns the report and paths."""
    from edgelstm.benchmarks.harness import BenchmarkPlan, run_benchmark
    from edgelstm.benchmarks.report import to_markdown, write_plot
    from edgelstm.benchmarks.tune import choose_deployment
    from edgelstm.data.datasets import load_dataset
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize
    from edgelstm.fileio import write_json_atomic, write_text_atomic
    from edgelstm.runtimes.deploy import write_deployment
    from edgelstm.training import train

    say = stage or (lambda message: None)
    final = Path(out)
    split = load_dataset(dataset)
    if not isinstance(split.train, SequenceSet):
        raise InvalidInputError(
            f"quickstart runs a classification dataset (JapaneseVowels, BasicMotions); "
            f"{dataset} is {split.spec.task}"
        )
    # Benchmark at the longest training sequence: the worst case a deployment must meet.
    longest = int(split.train.lengths.max())
    notes: list[str] = []
    with atomic_folder(final, overwrite=overwrite) as tmp:
        run_dir = tmp / "run"
        say(f"1/5 train: LSTM {layers}x{hidden} on {dataset} ({preset} settings)")
        trained = train(
            "classify",
            dataset=dataset,
            out=run_dir,
            hidden=hidden,
            layers=layers,
            preset=preset,
            progress=train_progress,
        )
        say(f"    test accuracy {trained.metrics['accuracy']:.4f}")
        say("2/5 export: sequence and streaming graphs, validated against PyTorch")
        models = {"model.onnx": tmp / "model.onnx", "model.stream.onnx": tmp / "model.stream.onnx"}
        export(run_dir, models["model.onnx"])
        export(run_dir, models["model.stream.onnx"], streaming=True)
        say("3/5 quantize: dynamic INT8 (DynamicQuantizeLSTM), gated on test accuracy")
        for source in ("model.onnx", "model.stream.onnx"):
            target = source.replace(".onnx", ".int8.onnx")
            try:
                result = quantize(models[source], tmp / target, mode="dynamic-int8")
            except CheckFailedError as exc:
                notes.append(f"{target} not written: {exc}")
                continue
            models[target] = tmp / target
            gate = result.gate
            if gate is not None:
                say(f"    {target}: {gate.describe()}")
        say("4/5 benchmark: every usable provider, PyTorch eager as the baseline")
        plan = BenchmarkPlan(
            models=tuple(models.values()),
            providers=("all",),
            batches=batches,
            seqs=(longest,),
            threads=(1,),
            stream=True,
            chunks=(1,),
            torch_run=run_dir,
            eval_run=run_dir,
            warmup=warmup,
            iterations=iterations,
            isolate=isolate,
        )
        report = run_benchmark(plan, progress=bench_progress, command=command)
        document = _relocate(report.to_json(), tmp, final)
        say("5/5 report: deployment choice, JSON, Markdown, plots")
        deployment = None
        deployments: dict[str, Any] = {}
        for mode, name in (("sequence", "deploy.json"), ("streaming", "deploy.stream.json")):
            try:
                chosen = choose_deployment(list(report.rows), mode=mode, batch=batches[0])
            except InvalidInputError as exc:
                notes.append(f"no {mode} deployment chosen: {exc}")
                continue
            write_deployment(chosen, tmp / name)
            deployments[mode] = _relocate(chosen.to_json(relative_to=tmp), tmp, final)
            deployments[mode]["file"] = name
        deployment = deployments.get("sequence")
        if deployments:
            document["deployment"] = deployments
        document["summary"] = _summary(document["rows"])
        files = [tmp / "report.json", tmp / "report.md"]
        write_json_atomic(tmp / "report.json", document)
        write_text_atomic(tmp / "report.md", to_markdown(document, "edgelstm quickstart"))
        try:
            write_plot(document, tmp / "report.png")
            files.append(tmp / "report.png")
        except MissingDependencyError as exc:
            notes.append(f"plots skipped: {exc}")
        files += [tmp / str(d["file"]) for d in deployments.values()]
    return QuickstartResult(
        out=final,
        report=document,
        files=tuple(final / f.relative_to(tmp) for f in files),
        train_metrics=dict(trained.metrics),
        deployment=deployment,
        notes=tuple(notes),
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Headline ratios at batch 1: each ONNX artifact against PyTorch eager FP32."""
    lines: dict[str, str] = {}
    for row in rows:
        if row["runtime"] != "onnxruntime" or row["batch"] != 1:
            continue
        ratio = row.get("vs_torch_fp32")
        if ratio is None:
            continue
        what = f"{row['model']} on {row['provider']}, {row['mode']}"
        lines[what] = f"p50 {ratio:.2f}x PyTorch eager FP32 ({row['p50_ms']:.3f} ms)"
    return lines
