"""``edgelstm run`` over whole files: read a file, predict on an explicit provider, write.

Two ways in:

- **edgelstm models** (``edgelstm.*`` metadata): inputs in original units (``.ts``, ``.csv``,
  ``.npy``, ``.npz``, ``.parquet``) go through
  :func:`edgelstm.runtimes.model_io.predictions.predict`: normalised with the stored training
  statistics, bucketed by length, and returned as class labels with probabilities, forecasts
  in original units, or per-step anomaly scores with the stored threshold's verdict.
- **any ONNX model**: an ``.npz`` whose keys are the model's input names is fed as it is
  (validated against the signature first) and every output is written under its name. A
  model with one input also takes a ``.npy``.

Outputs go to ``.csv``, ``.json``, ``.npy`` or ``.npz`` by extension, written atomically
(:mod:`edgelstm.runtimes.model_io.writers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.feeding import Progress
from edgelstm.runtimes.model_io.predictions import Predictions, PredictOptions, predict, predict_raw
from edgelstm.runtimes.model_io.writers import check_output_format, write_predictions
from edgelstm.runtimes.ort.artifact import Artifact
from edgelstm.runtimes.ort.feeds import input_specs
from edgelstm.runtimes.ort.session import OpenedSession, open_session
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = ["RunOptions", "RunResult", "describe_run", "run_model"]


@dataclass(frozen=True)
class RunOptions(PredictOptions):
    """How :func:`run_model` feeds the session (see
    :class:`~edgelstm.runtimes.model_io.predictions.PredictOptions`) and whether it may
    replace an existing output file."""

    overwrite: bool = False


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_model` did: where it wrote, on which provider, with which notices."""

    output: Path
    opened: OpenedSession
    predictions: Predictions
    notices: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary with stable keys (``edgelstm run --json``)."""
        return {
            "output": str(self.output),
            "kind": self.predictions.kind,
            "summary": self.predictions.summary,
            "session": self.opened.to_json(),
            "notices": list(self.notices),
        }


def _task_predictions(
    opened: OpenedSession,
    meta: ModelMetadata,
    source: Path,
    options: RunOptions,
    progress: Progress | None,
) -> tuple[Predictions, list[str]]:
    from edgelstm.data.readers import load_inference_data

    assert meta.task is not None
    data = load_inference_data(source, meta.task, num_features=len(meta.feature_names))
    return predict(opened, data, source=source, options=options, progress=progress)


def _raw_arrays(source: Path, opened: OpenedSession) -> dict[str, np.ndarray]:
    from edgelstm.data.arrays import read_arrays

    specs = input_specs(opened.session)
    suffix = source.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise InvalidInputError(
            f"{source}: a model without edgelstm metadata takes an .npz whose keys are its input "
            f"names ({', '.join(s.name for s in specs)}), or an .npy when it has one input"
        )
    arrays = read_arrays(source)
    if suffix == ".npy" or (set(arrays) == {"X"} and all(s.name != "X" for s in specs)):
        if len(specs) != 1:
            raise InvalidInputError(
                f"{source}: the model has {len(specs)} inputs "
                f"({', '.join(s.name for s in specs)}); save them in an .npz under those names"
            )
        return {specs[0].name: arrays["X"]}
    return arrays


def _is_raw_npz(source: Path, opened: OpenedSession) -> bool:
    if source.suffix.lower() != ".npz":
        return False
    import zipfile

    # Only the member names are needed: the arrays themselves are read once, later.
    try:
        with zipfile.ZipFile(source) as archive:
            keys = {n.removesuffix(".npy") for n in archive.namelist()}
    except (OSError, zipfile.BadZipFile):
        return False  # the reader that comes next reports the broken file
    names = {s.name for s in input_specs(opened.session)}
    return bool(names & keys)


# --------------------------------------------------------------------------------------------
# the entry point


def run_model(
    model: Artifact | Path | str,
    input: Path | str,
    output: Path | str,
    *,
    session: SessionConfig | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run ``model`` over the file ``input`` and write ``output``; the Python face of ``run``.

    ``model`` is a path or an :class:`~edgelstm.runtimes.ort.artifact.Artifact` already read.

    Raises :class:`~edgelstm.errors.ProviderUnavailableError` when the requested provider
    cannot run (strict unless ``session.fallback``) and
    :class:`~edgelstm.errors.InvalidInputError` for inputs that do not match the model;
    nothing is written then.

    Example::

        >>> result = run_model("jv.onnx", "JapaneseVowels_TEST.ts", "preds.csv")  # doctest: +SKIP
        >>> result.predictions.summary["accuracy"]  # doctest: +SKIP
        0.9757
    """
    source, target = Path(input), Path(output)
    options = options or RunOptions()
    check_output_format(target, options.overwrite)
    if not source.is_file():
        raise InvalidInputError(f"input file {source} does not exist")
    opened = open_session(model, session)
    # Read with the session, once; a model whose edgelstm metadata is corrupt never gets here
    # (it must not run as a foreign model: its outputs would be raw and un-normalised).
    meta = opened.profile.metadata
    if meta is not None and meta.task and not _is_raw_npz(source, opened):
        predictions, notices = _task_predictions(opened, meta, source, options, progress)
    else:
        arrays = _raw_arrays(source, opened)
        predictions, notices = predict_raw(
            opened, arrays, source=str(source), options=options, progress=progress
        )
    write_predictions(predictions, target, overwrite=options.overwrite)
    return RunResult(target, opened, predictions, tuple([*opened.notes, *notices]))


def describe_run(result: RunResult) -> str:
    """One human line: what was written, how much, on which provider, and the metric."""
    summary = result.predictions.summary
    kind = result.predictions.kind
    counts = {
        "classify": f"{summary.get('sequences')} sequences",
        "forecast": f"{summary.get('windows')} forecast(s) of {summary.get('horizon')} steps",
        "anomaly": f"{summary.get('steps')} steps, {summary.get('anomalous_steps', 0)} flagged",
        "tag": f"{summary.get('sequences')} sequences, {summary.get('frames')} frames"
        + (f", {summary['segments']} segments" if "segments" in summary else ""),
        "transcribe": f"{summary.get('sequences')} sequences ({summary.get('decoder')} decoding)",
        "raw": ", ".join(f"{k} {v}" for k, v in summary.get("outputs", {}).items()),
    }[kind]
    text = f"wrote {result.output}: {counts}; {result.opened.describe()}"
    if "accuracy" in summary:
        text += f"; accuracy {summary['accuracy']:.4f} against the labels in the input"
    if "macro_f1" in summary:
        text += (
            f"; frame macro F1 {summary['macro_f1']:.4f}, segment F1 "
            f"{summary['segment_f1']:.4f} against the labels in the input"
        )
    if "error_rate" in summary:
        text += (
            f"; error rate {summary['error_rate']:.4f}, exact match "
            f"{summary['exact_match']:.4f} against the texts in the input"
        )
    return text
