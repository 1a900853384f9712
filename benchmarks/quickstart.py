"""``edgelstm quickstart``: the whole pipeline on a built-in dataset, ending in one report.

train (JapaneseVowels by default; ActivityStreams with ``task="tag"``, DigitStrings with
``task="transcribe"``; default settings) → export (sequence and streaming) → quantize
(dynamic INT8, accuracy-gated) → benchmark every usable provider with PyTorch as the baseline
and every artifact scored on the test split; the whole-sequence artifacts also at a few
sequence lengths taken from the data → pick a deployment (``deploy.json``) → write the report
(JSON, Markdown, PNG). Everything lands in one folder, written atomically: a
failure or Ctrl-C leaves no half-built folder behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgelstm.data.types import Series
from edgelstm.errors import CheckFailedError, InvalidInputError, MissingDependencyError
from edgelstm.fileio import atomic_folder, relocate_paths
from edgelstm.tasks import headline_metric

if TYPE_CHECKING:
    from edgelstm.benchmarks.harness import BenchmarkPlan
    from edgelstm.data.datasets import DatasetSplit
    from edgelstm.runtimes.ort.deploy import DeploymentConfig

__all__ = ["QUICKSTART_DATASETS", "QuickstartResult", "quickstart"]

#: The built-in dataset each task's tour runs on when none is named.
QUICKSTART_DATASETS: dict[str, str] = {
    "classify": "JapaneseVowels",
    "tag": "ActivityStreams",
    "transcribe": "DigitStrings",
}

#: Steps 1-3's record in the quickstart folder: settings, metrics, notes and each file's
#: sha256, so ``reuse`` can tell that what it keeps is what was made.
STEPS_FILE = "steps.json"
STEPS_SCHEMA = "edgelstm.quickstart-steps/1"

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


def quickstart(
    out: Path | str = Path("quickstart"),
    *,
    task: str = "classify",
    dataset: str | None = None,
    preset: str = "default",
    hidden: int = 128,
    layers: int = 2,
    batches: tuple[int, ...] = (1, 32),
    iterations: int = 200,
    warmup: int = 20,
    isolate: bool = True,
    overwrite: bool = False,
    reuse: bool = False,
    stage: Stage | None = None,
    train_progress: Any = None,
    bench_progress: Any = None,
    command: str = "edgelstm quickstart",
) -> QuickstartResult:
    """Run the pipeline into ``out``; see the module docstring. Returns the report and paths.

    ``reuse`` keeps steps 1-3 (the trained model and the exported and quantized files) of an
    existing ``out`` made with the same task, dataset, preset and model size, checked against
    the hashes its ``steps.json`` recorded, and runs the benchmark and the report again; with
    no ``out`` yet, everything runs. The old folder stays whole until the new one is complete.
    """
    from importlib import import_module

    from edgelstm.benchmarks.harness import BenchmarkPlan

    # Every step needs torch (training, export, the PyTorch rows), reuse included: without it
    # that is the one missing extra to report, before the dataset reader (another) is tried.
    import_module("edgelstm.training.trainer")
    say = stage or (lambda message: None)
    final = Path(out)
    split = _tour_dataset(task, dataset)
    assert not isinstance(split.train, Series)  # every quickstart task reads sequences
    dataset = split.spec.name
    headline = headline_metric(task)
    # Deployments are judged at the longest training sequence: the worst case they must meet.
    # The length sweep adds the typical length and a longer stream, so the report shows how
    # latency grows (the exported graphs take any length).
    lengths = sweep_lengths(split.train.lengths)
    longest = int(split.train.lengths.max())
    settings = {"task": task, "dataset": dataset, "preset": preset, "hidden": hidden,
                "layers": layers}  # fmt: skip
    reusing = reuse and final.is_dir() and any(final.iterdir())
    with atomic_folder(final, overwrite=overwrite or reusing) as tmp:
        run_dir = tmp / "run"
        if reusing:
            steps = _reuse_steps(final, tmp, settings, say)
        else:
            steps = _train_export_quantize(tmp, settings, say, train_progress)
        notes = list(steps.notes)
        say("4/5 benchmark: every usable provider, PyTorch eager as the baseline")
        plan = BenchmarkPlan(
            models=tuple(steps.models.values()), providers=("all",), batches=batches,
            seqs=(longest,), threads=(1,), stream=True, chunks=(1,), torch_run=run_dir,
            eval_run=run_dir,
            warmup=warmup, iterations=iterations, isolate=isolate,
        )  # fmt: skip
        measured, document = _benchmark(plan, lengths, say, bench_progress, command)
        document = relocate_paths(document, tmp, final)
        say("5/5 report: deployment choice, JSON, Markdown, plots")
        deployments = _deployments(measured, batches[0], longest, (tmp, final), notes)
        if deployments:
            document["deployment"] = deployments
        document["summary"] = _summary(document, f"test {headline.label}", steps.accuracy,
                                       lengths, (batches[0], longest), dataset)  # fmt: skip
        files = _write_report(document, tmp, notes)
        files += [tmp / str(d["file"]) for d in deployments.values()]
    return QuickstartResult(
        out=final,
        report=document,
        files=tuple(final / f.relative_to(tmp) for f in files),
        train_metrics=dict(steps.metrics),
        deployment=deployments.get("sequence"),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class _Steps:
    """What steps 1-3 leave for the benchmark: the models by file name (in the folder being
    built), the training metrics and the notes those steps wrote."""

    models: dict[str, Path]
    metrics: dict[str, Any]
    notes: tuple[str, ...]
    #: the headline test metric beside the run's baselines (:func:`_accuracy_summary`)
    accuracy: str


def _train_export_quantize(
    tmp: Path, settings: dict[str, Any], say: Stage, train_progress: Any
) -> _Steps:
    """Steps 1-3 from scratch into ``tmp``, recorded in ``steps.json`` for a later reuse."""
    from edgelstm.fileio import file_sha256, write_json_atomic
    from edgelstm.training.trainer import train

    run_dir, headline = tmp / "run", headline_metric(settings["task"])
    say(f"1/5 train: LSTM {settings['layers']}x{settings['hidden']} on {settings['dataset']} "
        f"({settings['preset']} settings)")  # fmt: skip
    trained = train(settings["task"], dataset=settings["dataset"], out=run_dir,
                    hidden=settings["hidden"], layers=settings["layers"],
                    preset=settings["preset"], progress=train_progress)  # fmt: skip
    accuracy = _accuracy_summary(run_dir, float(trained.metrics[headline.key]))
    say(f"    test {headline.label} {accuracy}")
    notes: list[str] = []
    models = _export_and_quantize(run_dir, tmp, say, notes, headline.label)
    files = sorted([*(p for p in run_dir.rglob("*") if p.is_file()), *models.values()])
    write_json_atomic(
        tmp / STEPS_FILE,
        {
            "schema": STEPS_SCHEMA,
            "settings": settings,
            "metrics": trained.metrics,
            "models": list(models),
            "notes": notes,
            "sha256": {p.relative_to(tmp).as_posix(): file_sha256(p) for p in files},
        },
    )
    return _Steps(models, dict(trained.metrics), tuple(notes), accuracy)


def _reuse_steps(final: Path, tmp: Path, settings: dict[str, Any], say: Stage) -> _Steps:
    """Steps 1-3 copied from the finished quickstart in ``final`` into ``tmp``, after checking
    they were made with ``settings`` and are byte for byte what that run wrote."""
    import shutil

    from edgelstm.fileio import file_sha256, read_json

    start_again = "; run the quickstart with --overwrite instead to start again"
    if not (final / STEPS_FILE).is_file():
        raise InvalidInputError(
            f"--reuse: {final} holds no {STEPS_FILE}, so it is not a quickstart folder (or one "
            f"from an older edgelstm){start_again}"
        )
    record = read_json(final / STEPS_FILE, what="--reuse: the quickstart record", fix=start_again)
    if not isinstance(record, dict) or record.get("schema") != STEPS_SCHEMA:
        raise InvalidInputError(
            f"--reuse: {final / STEPS_FILE} is not a quickstart record ({STEPS_SCHEMA})"
            f"{start_again}"
        )
    made = record.get("settings", {})
    differ = [f"{k} {made.get(k)!r} (now {v!r})" for k, v in settings.items() if made.get(k) != v]
    if differ:
        raise InvalidInputError(
            f"--reuse: {final} was made with {', '.join(differ)}; give the same settings to "
            f"reuse its trained model{start_again}"
        )
    for name, digest in record["sha256"].items():
        source, copy = final / name, tmp / name
        if not source.is_file() or file_sha256(source) != digest:
            raise InvalidInputError(
                f"--reuse: {source} is missing or changed since the quickstart wrote it"
                f"{start_again}"
            )
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy)
    shutil.copy2(final / STEPS_FILE, tmp / STEPS_FILE)
    models = {name: tmp / name for name in record["models"]}
    metrics = dict(record["metrics"])
    headline = headline_metric(settings["task"])
    accuracy = _accuracy_summary(tmp / "run", float(metrics[headline.key]))
    say(f"1-3/5 reuse: the model trained on {settings['dataset']} ({settings['preset']} "
        f"settings) and {', '.join(models)}, from {final}")  # fmt: skip
    say(f"    test {headline.label} {accuracy}")
    return _Steps(models, metrics, tuple(record["notes"]), accuracy)


def _tour_dataset(task: str, dataset: str | None) -> DatasetSplit:
    """The built-in dataset ``task``'s tour runs on (``dataset``, or the task's default)."""
    from edgelstm.data.datasets import load_dataset

    if task not in QUICKSTART_DATASETS:
        raise InvalidInputError(
            f"quickstart tours {', '.join(QUICKSTART_DATASETS)}; {task!r} is not one of them"
        )
    split = load_dataset(dataset or QUICKSTART_DATASETS[task])
    if split.spec.task != task:
        raise InvalidInputError(
            f"{split.spec.name} is a {split.spec.task} dataset; quickstart --task {task} runs "
            f"on a {task} dataset such as {QUICKSTART_DATASETS[task]}"
        )
    return split


def _export_and_quantize(
    run_dir: Path, tmp: Path, say: Stage, notes: list[str], metric: str
) -> dict[str, Path]:
    """Steps 2 and 3: the sequence and streaming exports, and their INT8 versions where the
    accuracy gate lets them through (a refusal becomes a note). By file name."""
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize

    say("2/5 export: sequence and streaming graphs, validated against PyTorch")
    models = {"model.onnx": tmp / "model.onnx", "model.stream.onnx": tmp / "model.stream.onnx"}
    export(run_dir, models["model.onnx"])
    export(run_dir, models["model.stream.onnx"], streaming=True)
    say(f"3/5 quantize: dynamic INT8 (DynamicQuantizeLSTM), gated on the test {metric}")
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
    return models


def _benchmark(
    plan: BenchmarkPlan,
    lengths: tuple[int, ...],
    say: Stage,
    progress: Any,
    command: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Step 4: the rows of ``plan`` (what the deployment is chosen from) and the report's
    document, where each artifact's rows at the sweep's other lengths sit beside its others
    and ``length_sweep`` holds the sweep's plan."""
    from edgelstm.benchmarks.harness import run_benchmark

    longest, batch = plan.seqs[0], plan.batches[0]
    report = run_benchmark(plan, progress=progress, command=command)
    rows = list(report.rows)
    sweep = _length_sweep(plan, rows, [s for s in lengths if s != longest], batch)
    if sweep is not None:
        say(
            f"    sequence lengths {', '.join(map(str, lengths))} at batch {batch} "
            "(typical and longest in the data, and 4x the longest)"
        )
        done = len(rows)
        more = run_benchmark(
            sweep,
            progress=None
            if progress is None
            else (lambda d, t, label: progress(done + d, done + t, label)),
            command=command,
        )
        rows += _with_scores(more.rows, rows)
        # Each artifact's lengths next to its other rows in the tables, shortest first.
        first: dict[tuple[Any, ...], int] = {}
        for row in rows:
            first.setdefault(_artifact(row), len(first))
        rows.sort(key=lambda r: (first[_artifact(r)], r["batch"], r["seq"] or 0))
    document = {**report.to_json(), "rows": rows}
    if sweep is not None:
        document["length_sweep"] = sweep.to_json()
    return list(report.rows), document


def _deployments(
    rows: list[dict[str, Any]],
    batch: int,
    seq: int,
    folders: tuple[Path, Path],
    notes: list[str],
) -> dict[str, Any]:
    """Step 5's choice: a sequence and a streaming deployment from the benchmark's ``rows``,
    written into ``folders[0]``; by mode, with paths as they will be in ``folders[1]``. A mode
    with no choice becomes a note."""
    from edgelstm.benchmarks.tune import choose_deployment, write_deployments

    tmp, final = folders
    chosen: dict[Path, DeploymentConfig] = {}
    for mode, name in (("sequence", "deploy.json"), ("streaming", "deploy.stream.json")):
        try:
            chosen[tmp / name] = choose_deployment(rows, mode=mode, batch=batch, seq=seq)
        except InvalidInputError as exc:
            notes.append(f"no {mode} deployment chosen: {exc}")
    deployments: dict[str, Any] = relocate_paths(
        write_deployments(chosen, relative_to=tmp), tmp, final
    )
    return deployments


def _write_report(document: dict[str, Any], tmp: Path, notes: list[str]) -> list[Path]:
    """Step 5's files: report.json, report.md and (with matplotlib) report.png."""
    from edgelstm.benchmarks.plots import write_plot
    from edgelstm.benchmarks.report import to_markdown
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    files = [tmp / "report.json", tmp / "report.md"]
    write_json_atomic(tmp / "report.json", document)
    write_text_atomic(tmp / "report.md", to_markdown(document, "edgelstm quickstart"))
    try:
        write_plot(document, tmp / "report.png", title="edgelstm quickstart")
        files.append(tmp / "report.png")
    except MissingDependencyError as exc:
        notes.append(f"plots skipped: {exc}")
    return files


def sweep_lengths(lengths: np.ndarray) -> tuple[int, ...]:
    """Sequence lengths worth timing for a dataset: its typical (median) and longest
    sequence, and a stream four times the longest; never fewer than three.

    >>> sweep_lengths(np.array([7, 15, 15, 26]))
    (15, 26, 104)
    >>> sweep_lengths(np.array([100, 100]))  # fixed length: add a middle point
    (100, 200, 400)
    """
    longest = int(lengths.max())
    chosen = {int(np.median(lengths)), longest, 4 * longest}
    if len(chosen) < 3:
        chosen.add(2 * longest)
    return tuple(sorted(chosen))


def _length_sweep(
    plan: BenchmarkPlan, rows: Sequence[dict[str, Any]], seqs: list[int], batch: int
) -> BenchmarkPlan | None:
    """The artifacts that got whole-sequence ``rows`` and PyTorch at more lengths, one batch.

    A second plan rather than more ``seqs`` in the first: that would time every length at
    every batch size, and the streaming artifacts, which do not depend on the length, again.
    Rows of one shape are still timed side by side, so their ratios stay fair.
    """
    import dataclasses

    models = tuple(
        dict.fromkeys(
            Path(r["path"])
            for r in rows
            if r["runtime"] == "onnxruntime" and r["mode"] == "sequence"
        )
    )
    if not seqs or not models:
        return None
    return dataclasses.replace(
        plan, models=models, batches=(batch,), seqs=tuple(seqs), stream=False, eval_run=None
    )


def _artifact(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["model"], row["runtime"], row["provider"], row["precision"], row["mode"])


def _with_scores(
    rows: Sequence[dict[str, Any]], scored: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Copy each artifact's test-split score onto its sweep rows instead of scoring it twice."""
    scores = {(r["path"], r["runtime"], r["precision"]): r for r in scored if "metric" in r}
    copied = ("metric", "metric_value", "clears_chance", "beats_best_baseline")
    out = []
    for row in rows:
        source = scores.get((row["path"], row["runtime"], row["precision"]))
        if source is not None:
            row = {**row, **{k: source[k] for k in copied if k in source}}
        out.append(row)
    return out


def _accuracy_summary(run_dir: Path, accuracy: float) -> str:
    """The trained model's headline test metric beside the baselines its run recorded, and whether
    it clears them: ``0.9757; baselines (accuracy on the same test split): majority ...``."""
    from edgelstm.exporters.audit import CheckpointBaselines

    baselines = CheckpointBaselines.read(run_dir)
    if baselines is None:
        return f"{accuracy:.4f} ({CheckpointBaselines.missing(run_dir)})"
    shortfalls = baselines.shortfalls({"trained": accuracy})
    verdict = "; ".join(shortfalls) if shortfalls else baselines.standing("trained", accuracy)
    return f"{accuracy:.4f}; {baselines.line()}; {verdict}"


def _summary(
    document: dict[str, Any],
    headline: str,
    accuracy: str,
    lengths: tuple[int, ...],
    shape: tuple[int, int],
    dataset: str,
) -> dict[str, str]:
    """The report's summary: the trained model's ``headline`` metric first (speed only means
    something for a model that is any good), then the speed ratios at ``shape`` (batch,
    longest training sequence), then the lengths the sweep timed."""
    batch, longest = shape
    summary = {headline: accuracy, **_speed_summary(document["rows"], longest)}
    if "length_sweep" in document:
        summary["sequence lengths"] = (
            f"{', '.join(map(str, lengths))} steps at batch {batch} for the whole-sequence "
            f"artifacts (typical and longest in {dataset}, and 4x the longest); every other "
            f"row at {longest}"
        )
    return summary


def _speed_summary(rows: list[dict[str, Any]], seq: int) -> dict[str, str]:
    """Headline ratios at batch 1 and the deployment length: each ONNX artifact against
    PyTorch eager FP32."""
    lines: dict[str, str] = {}
    for row in rows:
        if row["runtime"] != "onnxruntime" or row["batch"] != 1:
            continue
        if row["mode"] == "sequence" and row["seq"] != seq:
            continue  # the length sweep has its own panel; the headline is the worst case
        ratio = row.get("vs_torch_fp32")
        if ratio is None:
            continue
        what = f"{row['model']} on {row['provider']}, {row['mode']}"
        lines[what] = f"p50 {ratio:.2f}x PyTorch eager FP32 ({row['p50_ms']:.3f} ms)"
    return lines
