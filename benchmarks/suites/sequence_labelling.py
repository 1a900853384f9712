"""Sequence labelling end to end: default training, FP32/INT8/streaming metrics, stream = offline.

Beside it, for transcription, a plain PyTorch LSTM-CTC script: the bar a user holds it against.

Results land in ``benchmark-results/`` unless told ``--out``; from the repository root,
``--out benchmarks/results`` updates the committed ones::

    python -m edgelstm.benchmarks.suites.sequence_labelling [--seeds 0,1,2]
        [--datasets DigitStrings,ActivityStreams,SpeakerTurns]

For each dataset (``DigitStrings``, transcribe; ``ActivityStreams``, tag; ``SpeakerTurns``,
tag, on request) and seed, exactly what a user does with default settings:

1. ``edgelstm train --task TASK --dataset NAME --seed S`` (no tuning arguments): the test
   metrics and baselines it stores, training seconds (without the baselines' own time),
   parameters and the architecture ``--arch auto`` chose.
2. ``edgelstm export`` (sequence graph), ``export --streaming`` and ``quantize --mode
   dynamic-int8`` with its defaults, gated on the checkpoint: each artifact's task metrics on
   the checkpoint's test split, through the code the quantization gate uses
   (:class:`~edgelstm.training.evaluation.EvaluationData`,
   :class:`~edgelstm.runtimes.model_io.feeding.SplitPredictor`).
3. Streaming equal to offline: every test sequence, in original units, pushed through a
   :class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession` in chunks of
   several sizes (multiples of the model's frame multiple, the last chunk ``final``) with the
   rows ``run --stream`` and ``serve`` emit (:class:`StreamRows`), against the rows ``run``
   writes from the sequence export: the final greedy text per sequence (transcribe), the label
   of every frame (tag).
4. For transcription, the bar: a plain PyTorch LSTM-CTC script
   (:mod:`edgelstm.benchmarks.suites.torch_ctc_baseline`) on the same data and seeds.

``--quick`` (1 epoch, hidden 8, seed 0, 20 streamed sequences per dataset) checks that the
suite runs; its numbers are not results. Timings are wall-clock on whatever machine runs it;
the JSON records the machine and the load average at the start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option, suite_environment
from edgelstm.benchmarks.suites.sequence_labelling_report import (
    ARTIFACTS,
    artifact_rows,
    headline_text,
    summarise,
    targets,
    to_markdown,
)
from edgelstm.benchmarks.suites.training_quality import seed_list
from edgelstm.data.types import TaggedSequences, Transcripts
from edgelstm.errors import CheckFailedError, EdgeLSTMError, InvalidInputError
from edgelstm.fileio import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from edgelstm.training.evaluation import EvaluationData
    from edgelstm.training.trainer import TrainResult

COMMAND = "python -m edgelstm.benchmarks.suites.sequence_labelling"
SCHEMA = "edgelstm.sequence-labelling/1"
#: The built-in sequence-labelling sets and their tasks; the first two run by default.
LABELLING_SETS = {"DigitStrings": "transcribe", "ActivityStreams": "tag", "SpeakerTurns": "tag"}
DEFAULT_DATASETS = ("DigitStrings", "ActivityStreams")
#: Chunk sizes of the streaming check, in multiples of the model's frame multiple: one step
#: per push, a few, and many.
CHUNK_MULTIPLES = (1, 3, 16)
Labelled = TaggedSequences | Transcripts


@dataclass(frozen=True)
class Settings:
    """What varies between a result run (all None: defaults) and a quick check."""

    seeds: tuple[int, ...] = (0, 1, 2)
    #: epochs of edgelstm's training and of the bar; None: edgelstm's default, the bar's 30
    epochs: int | None = None
    #: hidden size of both; None: edgelstm's default (``--arch auto``), the bar's 128
    hidden: int | None = None
    #: test sequences streamed per chunk size; None: every one
    stream_sequences: int | None = None
    quick: bool = False

    def train_kwargs(self) -> dict[str, Any]:
        given = {"epochs": self.epochs, "hidden": self.hidden}
        return {key: value for key, value in given.items() if value is not None}


#: ``--quick``: enough to see every stage run, in a few minutes for all three sets.
QUICK = Settings(seeds=(0,), epochs=1, hidden=8, stream_sequences=20, quick=True)


@dataclass(frozen=True)
class LabellingSet:
    """Where a run's data comes from: a built-in set by name, or training and test files
    (``data``/``test``, as ``edgelstm train --data --test`` reads them; without ``test``
    training holds a test split out of ``data``, and the whole of ``data`` is streamed)."""

    name: str
    task: str
    data: Path | None = None
    test: Path | None = None

    @classmethod
    def builtin(cls, name: str) -> LabellingSet:
        return cls(name, LABELLING_SETS[name])

    def train(self, out: Path, seed: int, settings: Settings) -> TrainResult:
        from edgelstm.training.trainer import train

        source: dict[str, Any] = {"dataset": self.name}
        if self.data is not None:
            source = {"data": self.data, "test": self.test}
        return train(self.task, out=out, seed=seed, **source, **settings.train_kwargs())

    def splits(self) -> tuple[Labelled, Labelled]:
        """(training, test) data in original units."""
        if self.data is None:
            from edgelstm.data.datasets import load_dataset

            split = load_dataset(self.name)
            pair: tuple[object, object] = (split.train, split.test)
        else:
            from edgelstm.data.readers import load_training_data

            test = self.test or self.data
            pair = (load_training_data(self.data, self.task), load_training_data(test, self.task))
        train, test_data = pair
        assert isinstance(train, Labelled) and isinstance(test_data, Labelled)
        return train, test_data


# --------------------------------------------------------------------------------------------
# artifacts and their metrics


def export_artifacts(run_dir: Path, work: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """The sequence export, the streaming export and dynamic INT8 (``quantize``'s defaults,
    gated on ``run_dir``): paths of those written, and what quantization reported."""
    from edgelstm.exporters import export

    paths: dict[str, Path] = {}
    report: dict[str, Any] = {"notes": []}
    for name, streaming in (("fp32", False), ("streaming", True)):
        try:
            paths[name] = export(run_dir, work / f"{name}.onnx", streaming=streaming).out
        except EdgeLSTMError as exc:
            report["notes"].append(f"{name} export failed: {exc}")
    if "fp32" in paths:
        int8, quantized = quantize_int8(paths["fp32"], run_dir, work / "int8.onnx")
        report.update(quantized)
        if int8 is not None:
            paths["int8"] = int8
    return paths, report


def quantize_int8(fp32: Path, run_dir: Path, out: Path) -> tuple[Path | None, dict[str, Any]]:
    """``quantize --mode dynamic-int8`` with its defaults; when its gate refuses, quantized
    again without the gate so the table can show by how much it missed."""
    from edgelstm.exporters.quantize import quantize

    refused = None
    try:
        result = quantize(fp32, out, mode="dynamic-int8", eval_run=run_dir)
    except CheckFailedError as exc:
        refused = str(exc)
        try:
            result = quantize(fp32, out, mode="dynamic-int8", eval_run=run_dir, max_degradation=1e9)
        except EdgeLSTMError as again:
            return None, {"int8_refused": refused, "int8_error": str(again)}
    gate = result.gate
    return out, {
        "int8_refused": refused,
        "gate": None if gate is None else {**gate.__dict__, "passed": refused is None},
        "size_ratio": round(result.audit.ratio, 4),
        "kernels": result.audit.kernels,
    }


def onnx_metrics(path: Path, data: EvaluationData) -> dict[str, Any]:
    """Every test metric of the ONNX model at ``path`` on the checkpoint's test split: the
    predictor and scorer of the quantization gate
    (:func:`~edgelstm.runtimes.model_io.accuracy.evaluate_onnx`), all metrics kept."""
    from edgelstm.runtimes.model_io.feeding import SplitPredictor, cpu_session
    from edgelstm.training.evaluation import task_metrics

    predictor = SplitPredictor(cpu_session(path))
    metrics, _ = task_metrics(predictor, data.prepared, season=data.season, stride=data.stride)
    return metrics


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) and k != "beam_width"}


def baseline_values(metrics: dict[str, Any]) -> dict[str, float]:
    """The baselines training set beside the model, by name."""
    values = (metrics.get("baselines") or {}).get("values") or {}
    return {str(k): float(v) for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------------------------
# streaming equal to offline


def _first(data: Labelled, count: int | None) -> Labelled:
    if count is None or count >= len(data):
        return data
    if isinstance(data, Transcripts):
        texts = None if data.texts is None else data.texts[:count]
        return replace(data, sequences=data.sequences[:count], texts=texts)
    labels = None if data.frame_labels is None else data.frame_labels[:count]
    return replace(data, sequences=data.sequences[:count], frame_labels=labels)


def offline_outputs(sequence_path: Path, data: Labelled) -> list[Any]:
    """What ``edgelstm run`` writes for each sequence: its greedy text (transcribe) or its
    frames' labels (tag)."""
    from edgelstm.runtimes.model_io.predictions import predict
    from edgelstm.runtimes.ort.session import open_session
    from edgelstm.runtimes.ort.session_config import SessionConfig

    opened = open_session(sequence_path, SessionConfig())
    predictions, _ = predict(opened, data, source=sequence_path)
    assert predictions.table is not None
    table = predictions.table
    if isinstance(data, Transcripts):
        return [str(text) for text in table["text"]]
    index, labels = table["index"], table["label"]
    return [[str(v) for v in labels[index == i]] for i in range(len(data))]


def stream_one(session: Any, rows: Any, frames: np.ndarray, chunk: int) -> Any:
    """Push one sequence ``chunk`` frames at a time (the last chunk ``final``) from zero
    state; its final text (transcribe) or its frames' labels (tag)."""
    session.reset()
    rows.reset()
    emitted: list[dict[str, Any]] = []
    for start in range(0, len(frames), chunk):
        x = rows.model_input(frames[start : start + chunk])
        out = session.push(x[None], final=start + chunk >= len(frames))
        emitted += rows.rows(x, out[0])
    emitted += rows.finish()
    if rows.task == "transcribe":
        return emitted[-1]["text"] if emitted else ""
    return [str(row["label"]) for row in emitted]


def streaming_equality(
    stream_path: Path, sequence_path: Path, data: Labelled, count: int | None = None
) -> dict[str, Any]:
    """The first ``count`` sequences of ``data`` (None: all) streamed in each chunk size of
    :data:`CHUNK_MULTIPLES`, against the offline rows of the sequence export.

    ``items`` counts what is compared: sequences' texts (transcribe) or frames (tag).
    """
    from edgelstm.runtimes.model_io.stream_rows import StreamRows
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession

    data = _first(data, count)
    expected = offline_outputs(sequence_path, data)
    session = StreamingSession(stream_path)
    rows = StreamRows(session.metadata, stream_path)
    chunks: list[dict[str, int]] = []
    differences: list[dict[str, Any]] = []
    for multiple in CHUNK_MULTIPLES:
        chunk = multiple * session.chunk_multiple
        items = identical = whole = 0
        for i, (frames, offline) in enumerate(zip(data.sequences, expected, strict=True)):
            streamed = stream_one(session, rows, frames, chunk)
            if isinstance(offline, str):
                items, same = items + 1, int(streamed == offline)
            else:
                items += len(offline)
                same = sum(a == b for a, b in zip(streamed, offline, strict=False))
                same -= abs(len(streamed) - len(offline))  # a missing frame is no match
            identical += same
            whole += int(streamed == offline)
            if streamed != offline and len(differences) < 3:
                differences.append({"index": i, "chunk": chunk, "offline": offline,
                                    "streamed": streamed})  # fmt: skip
        chunks.append({"chunk_frames": chunk, "items": items, "identical": identical,
                       "sequences_identical": whole})  # fmt: skip
    return {
        "unit": "texts" if isinstance(data, Transcripts) else "frames",
        "sequences": len(data),
        "chunks": chunks,
        "identical_fraction": min(c["identical"] / max(c["items"], 1) for c in chunks),
        "all_identical": all(c["identical"] == c["items"] for c in chunks),
        "differences": differences,
    }


# --------------------------------------------------------------------------------------------
# one run


class _StageClock:
    """Wall-clock seconds of each stage of a run, so the lead can size the next one."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(now - self._last, 1)
        self._last = now


def run_one(dataset: LabellingSet, seed: int, settings: Settings, test: Labelled) -> dict[str, Any]:
    """Train ``dataset`` with ``seed``, export, quantize, score every artifact, stream."""
    from edgelstm.training.evaluation import EvaluationData

    clock = _StageClock()
    with tempfile.TemporaryDirectory(prefix="edgelstm-labelling-") as tmp:
        work = Path(tmp)
        result = dataset.train(work / "run", seed, settings)
        clock.lap("train")
        paths, quantized = export_artifacts(result.out, work)
        clock.lap("export_and_quantize")
        data = EvaluationData.from_run(result.out)
        artifacts: dict[str, dict[str, Any]] = {
            "pytorch": {"bytes": None, "metrics": _numbers(result.metrics)}
        }
        for name in (a for a in ARTIFACTS[1:] if a in paths):
            scores = _numbers(onnx_metrics(paths[name], data))
            artifacts[name] = {"bytes": paths[name].stat().st_size, "metrics": scores}
        clock.lap("evaluate_artifacts")
        streaming = None
        if "streaming" in paths and "fp32" in paths:
            streaming = streaming_equality(
                paths["streaming"], paths["fp32"], test, settings.stream_sequences
            )
        clock.lap("streaming_check")
    metrics = result.metrics
    return {
        "dataset": dataset.name,
        "task": dataset.task,
        "seed": seed,
        "command": f"edgelstm train --task {dataset.task} --dataset {dataset.name} --seed {seed}"
        + "".join(f" --{key} {given}" for key, given in settings.train_kwargs().items()),
        "architecture": result.record.model.describe(),
        "parameters": metrics["parameters"],
        "weights_mb": metrics["weights_mb"],
        "seconds": round(result.seconds - result.baseline_seconds, 1),
        "baseline_seconds": round(result.baseline_seconds, 1),
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "baselines": baseline_values(metrics),
        "warnings": list(result.warnings),
        "artifacts": artifacts,
        "quantize": quantized,
        "streaming": streaming,
        "stage_seconds": clock.laps,
    }


def run_bar(train: Labelled, test: Labelled, seed: int, settings: Settings) -> dict[str, Any]:
    """The plain PyTorch LSTM-CTC script on the same data and seed."""
    from edgelstm.benchmarks.suites import torch_ctc_baseline as bar

    assert isinstance(train, Transcripts) and isinstance(test, Transcripts)
    result: dict[str, Any] = bar.train_and_evaluate(
        train,
        test,
        seed=seed,
        epochs=settings.epochs or bar.BAR_EPOCHS,
        hidden=settings.hidden or bar.BAR_HIDDEN,
    )
    return result


def run(datasets: Sequence[LabellingSet], settings: Settings) -> dict[str, Any]:
    """Every dataset with every seed (and the bar for transcription): the result document
    without its command and environment (:func:`main` adds those)."""
    runs = []
    for dataset in datasets:
        train, test = dataset.splits()
        for seed in settings.seeds:
            row = run_one(dataset, seed, settings, test)
            if dataset.task == "transcribe":
                row["plain_pytorch"] = run_bar(train, test, seed, settings)
            runs.append(row)
            print(f"{dataset.name:16s} seed {seed}  {headline_text(row)}", file=sys.stderr)
    return {
        "schema": SCHEMA,
        "settings": {**settings.__dict__, "seeds": list(settings.seeds)},
        "chunk_multiples": list(CHUNK_MULTIPLES),
        "runs": runs,
        "rows": artifact_rows(runs),
        "summary": summarise(runs),
        "targets": targets(runs),
    }


# --------------------------------------------------------------------------------------------
# command line


def _datasets(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in LABELLING_SETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"--datasets takes names from {', '.join(LABELLING_SETS)}, got {text!r}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--datasets", type=_datasets, default=DEFAULT_DATASETS,
        help=f"comma-separated (default {','.join(DEFAULT_DATASETS)}; also SpeakerTurns)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=seed_list, default=None, help="default 0,1,2")
    parser.add_argument(
        "--epochs", type=int, default=None,
        help="epochs for edgelstm and the bar (default: edgelstm's default, the bar's 30)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="1 epoch, hidden 8, seed 0, 20 streamed sequences: checks the suite runs",
    )  # fmt: skip
    add_out_option(parser)
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else Settings()
    if args.seeds is not None:
        settings = replace(settings, seeds=args.seeds)
    if args.epochs is not None:
        if args.epochs < 1:
            raise InvalidInputError(f"--epochs must be >= 1, got {args.epochs}")
        settings = replace(settings, epochs=args.epochs)
    return settings


def write_results(doc: dict[str, Any], out: Path) -> None:
    """``sequence_labelling.json`` and ``.md`` in ``out``."""
    write_json_atomic(out / "sequence_labelling.json", doc, overwrite=True)
    write_text_atomic(out / "sequence_labelling.md", to_markdown(doc), overwrite=True)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    settings = settings_from(args)
    environment = suite_environment(("torch", "onnxruntime", "scikit-learn"))
    environment["torch_threads"] = torch.get_num_threads()
    started = time.perf_counter()
    doc = run([LabellingSet.builtin(name) for name in args.datasets], settings)
    doc["command"] = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    doc["environment"] = environment
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    write_results(doc, args.out)
    print(to_markdown(doc))
    return 0 if all(t["met"] for t in doc["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
