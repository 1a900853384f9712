"""``edgelstm run``: inference over whole files on an explicit provider, per task.

Two ways in:

- **edgelstm models** (``edgelstm.*`` metadata): inputs in original units (``.ts``, ``.csv``,
  ``.npy``, ``.npz``) are normalised with the stored training statistics, variable-length
  sequences are bucketed by length, and outputs come back as class labels with
  probabilities, forecasts in original units, or per-step anomaly scores with the stored
  threshold's verdict.
- **any ONNX model**: an ``.npz`` whose keys are the model's input names is fed as it is
  (validated against the signature first) and every output is written under its name. A
  model with one input also takes a ``.npy``.

Outputs go to ``.csv``, ``.json``, ``.npy`` or ``.npz`` by extension, written atomically
(:mod:`edgelstm.runtimes.model_io.writers`). Streaming over files and stdin (``run --stream``) is
:mod:`edgelstm.runtimes.run_stream`; it reuses this module's per-task scoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.config import Normalization
from edgelstm.data.types import SequenceSet, Series
from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.feeding import Progress, run_bucketed, zero_state
from edgelstm.runtimes.model_io.writers import check_output_format, write_predictions
from edgelstm.runtimes.ort.artifact import Artifact
from edgelstm.runtimes.ort.execution import run_interruptible
from edgelstm.runtimes.ort.feeds import input_specs, optional_input_specs, validate_feeds
from edgelstm.runtimes.ort.session import OpenedSession, SessionConfig, open_session
from edgelstm.tasks import normalize

__all__ = [
    "Predictions",
    "RunOptions",
    "RunResult",
    "class_names",
    "describe_run",
    "predict",
    "run_model",
]


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_model` feeds the session.

    ``batch_size`` bounds the rows per ``session.run`` (and so the memory of one call);
    ``allow_nonfinite`` passes NaN/Inf through instead of refusing them.
    """

    batch_size: int = 256
    allow_nonfinite: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Predictions:
    """Model outputs in user terms.

    ``arrays`` go to ``.npz`` (``primary`` alone to ``.npy``); ``records`` are the rows of
    ``.csv`` and ``.json`` (None when outputs are not tabular); ``summary`` holds counts and,
    when the input carried labels, the matching metric.
    """

    kind: str  # classify, forecast, anomaly or raw
    arrays: dict[str, np.ndarray]
    primary: str
    records: list[dict[str, Any]] | None
    summary: dict[str, Any] = field(default_factory=dict)


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


# --------------------------------------------------------------------------------------------
# running batches


class _Feeder:
    """Adds zero recurrent state for streaming graphs and runs one batch."""

    def __init__(self, opened: OpenedSession, options: RunOptions, source: str) -> None:
        self.session = opened.session
        self.specs = input_specs(opened.session)
        self.options = options
        self.source = source
        self.notices: list[str] = []

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        arrays = {self.specs[0].name: x, **zero_state(self.specs[1:], x.shape[0])}
        feeds, notices = validate_feeds(
            arrays, self.specs, source=self.source, allow_nonfinite=self.options.allow_nonfinite
        )
        for notice in notices:
            if notice not in self.notices:
                self.notices.append(notice)
        outputs: list[np.ndarray] = run_interruptible(self.session, None, feeds, where=self.source)
        return outputs

    def first(self, x: np.ndarray) -> np.ndarray:
        """The task output (the first one) of one batch."""
        return self(x)[0]


# --------------------------------------------------------------------------------------------
# edgelstm models: original units in, user terms out


def stored_normalization(meta: ModelMetadata, where: Path) -> Normalization:
    raw = meta.normalization  # its shape was checked when the metadata was read
    if raw is None:
        raise InvalidInputError(
            f"{where} carries no normalisation statistics; re-export it with `edgelstm export`"
        )
    return Normalization(mean=tuple(raw["mean"]), std=tuple(raw["std"]))


def feature_order(
    names: tuple[str, ...], meta: ModelMetadata, source: str | Path
) -> tuple[list[int], str | None]:
    """Column order mapping the input's features onto the model's, and a notice if it guessed.

    Same names in another order are reordered by name; other names (``dim_0`` from a ``.ts``
    file, ``f0`` from an array) are taken by position, which needs the same count.
    """
    want = meta.feature_names
    if names == want:
        return list(range(len(want))), None
    if set(names) == set(want) and len(names) == len(want):
        return [
            names.index(n) for n in want
        ], f"{source}: columns reordered by name to match the model"
    if len(names) != len(want):
        raise InvalidInputError(
            f"{source}: has {len(names)} feature(s), the model takes {len(want)} "
            f"({', '.join(want)})"
        )
    generic = all(n == f"f{i}" or n == f"dim_{i}" for i, n in enumerate(names))
    notice = None
    if not generic:
        notice = (
            f"{source}: columns {', '.join(names)} matched by position to the model's features "
            f"{', '.join(want)}"
        )
    return list(range(len(want))), notice


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    probs: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probs


def class_names(meta: ModelMetadata) -> tuple[str, ...]:
    """What a classifier's outputs stand for, in output order: its labels, or ``0..n-1``.

    A model exported from a bare module records only its class count (in the run record);
    ``run`` and ``--stream`` both name its classes by index, so their columns agree.
    """
    if meta.class_labels:
        return meta.class_labels
    count = ((meta.run_record or {}).get("model") or {}).get("num_classes")
    if not isinstance(count, int) or count < 1:
        raise InvalidInputError(
            "the model's metadata names no classes (edgelstm.class_labels, or num_classes in "
            "edgelstm.run_record); export it again with `edgelstm export`"
        )
    return tuple(str(i) for i in range(count))


def check_class_count(labels: tuple[str, ...], outputs: int) -> None:
    if len(labels) != outputs:
        raise InvalidInputError(
            f"the model has {outputs} outputs but its metadata names {len(labels)} classes"
        )


def class_record(probs: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """One classification row (``label``, ``confidence``, ``prob_<class>``...), as ``run``
    and ``--stream`` write it."""
    record: dict[str, Any] = {"label": labels[int(probs.argmax())]}
    record["confidence"] = round(float(probs.max()), 6)
    record.update({f"prob_{c}": round(float(p), 6) for c, p in zip(labels, probs, strict=True)})
    return record


def _classify(
    feed: _Feeder,
    data: SequenceSet,
    meta: ModelMetadata,
    norm: Normalization,
    order: list[int],
    options: RunOptions,
    progress: Progress | None,
) -> Predictions:
    sequences = [normalize(s[:, order], norm) for s in data.sequences]
    logits = run_bucketed(feed.first, sequences, batch_size=options.batch_size, progress=progress)
    probs = softmax(logits)
    labels = class_names(meta)
    check_class_count(labels, probs.shape[1])
    predicted = np.array([labels[i] for i in probs.argmax(axis=1)])
    records: list[dict[str, Any]] = []
    for i, row in enumerate(probs):
        record: dict[str, Any] = {"index": i, **class_record(row, labels)}
        if data.labels is not None:
            record["true_label"] = str(data.labels[i])
        records.append(record)
    summary: dict[str, Any] = {"sequences": len(sequences)}
    if data.labels is not None:
        truth = np.array([str(v) for v in data.labels.tolist()])
        summary["accuracy"] = float(np.mean(truth == predicted))
    arrays = {
        "labels": predicted,
        "probabilities": probs.astype(np.float32),
        "logits": logits,
        "class_labels": np.array(labels),
    }
    return Predictions("classify", arrays, "probabilities", records, summary)


def _lookback(meta: ModelMetadata) -> int | None:
    record = meta.run_record or {}
    value = record.get("dataset", {}).get("details", {}).get("lookback")
    return int(value) if value is not None else None


def _forecast(
    feed: _Feeder,
    data: SequenceSet | Series,
    meta: ModelMetadata,
    norm: Normalization,
    order: list[int],
    options: RunOptions,
    progress: Progress | None,
    source: Path,
) -> Predictions:
    lookback = _lookback(meta)
    if isinstance(data, Series):
        values = data.values[:, order]
        if lookback is not None:
            if len(values) < lookback:
                raise InvalidInputError(
                    f"{source}: the series has {len(values)} steps; the model forecasts from "
                    f"the last {lookback} (its lookback): give at least {lookback}"
                )
            values = values[-lookback:]
        windows = [normalize(values, norm)]
    else:
        windows = [normalize(w[:, order], norm) for w in data.sequences]
    from edgelstm.tasks import denormalize

    raw = run_bucketed(feed.first, windows, batch_size=options.batch_size, progress=progress)
    indices = meta.target_indices or tuple(range(raw.shape[-1]))
    forecast = denormalize(raw, norm, indices)
    names = meta.target_names or tuple(meta.feature_names[i] for i in indices)
    records = [
        {"window": w, "step_ahead": h + 1, **{n: float(v) for n, v in zip(names, row, strict=True)}}
        for w, steps in enumerate(forecast)
        for h, row in enumerate(steps)
    ]
    arrays = {"forecast": forecast.astype(np.float32), "target_names": np.array(names)}
    summary = {"windows": len(windows), "horizon": int(forecast.shape[1]), "targets": list(names)}
    return Predictions("forecast", arrays, "forecast", records, summary)


def _anomaly(
    feed: _Feeder,
    data: Series,
    meta: ModelMetadata,
    norm: Normalization,
    order: list[int],
    progress: Progress | None,
) -> Predictions:
    from edgelstm.tasks import anomaly_scores

    x = normalize(data.values[:, order], norm)
    prediction = feed.first(x[None])[0]
    if progress is not None:
        progress(1, 1)
    scores = anomaly_scores(x, prediction)
    threshold = meta.anomaly_threshold
    flags = (scores > threshold).astype(np.int64) if threshold is not None else None
    records = []
    for t, score in enumerate(scores):
        record: dict[str, Any] = {"step": t, "score": float(score)}
        if flags is not None:
            record["anomaly"] = int(flags[t])
        if data.labels is not None:
            record["label"] = int(data.labels[t])
        records.append(record)
    arrays: dict[str, np.ndarray] = {"scores": scores}
    summary: dict[str, Any] = {
        "steps": len(scores),
        "threshold": threshold,
        "top_score_step": int(np.argmax(scores)),
    }
    if flags is not None:
        arrays["anomaly"] = flags
        summary["anomalous_steps"] = int(flags.sum())
    return Predictions("anomaly", arrays, "scores", records, summary)


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


def predict(
    opened: OpenedSession,
    data: SequenceSet | Series,
    *,
    source: Path,
    options: RunOptions,
    progress: Progress | None = None,
) -> tuple[Predictions, list[str]]:
    """An edgelstm model's predictions for ``data`` in user terms, and the notices it raised.

    The one scoring path from data in original units to labels, forecasts or anomaly scores:
    ``run`` calls it per file, the batch engines (:mod:`edgelstm.runtimes.batch`) per
    partition. ``source`` names the data in messages.
    """
    meta = opened.profile.metadata
    if meta is None or meta.task is None:
        raise InvalidInputError(f"{opened.path} carries no edgelstm task metadata")
    norm = stored_normalization(meta, opened.path)
    order, notice = feature_order(data.feature_names, meta, source)
    feed = _Feeder(opened, options, str(source))
    if notice is not None:
        feed.notices.append(notice)
    if meta.task == "classify":
        if not isinstance(data, SequenceSet):
            raise InvalidInputError(f"{source}: a classifier takes sequences, not one series")
        predictions = _classify(feed, data, meta, norm, order, options, progress)
    elif meta.task == "forecast":
        predictions = _forecast(feed, data, meta, norm, order, options, progress, source)
    else:
        if not isinstance(data, Series):
            raise InvalidInputError(f"{source}: an anomaly model scores one series")
        predictions = _anomaly(feed, data, meta, norm, order, progress)
    return predictions, feed.notices


# --------------------------------------------------------------------------------------------
# any ONNX model: arrays by input name


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


def _batch_axis(opened: OpenedSession, feeds: dict[str, np.ndarray]) -> str | None:
    """The batch axis to split a foreign model's inputs along, or None to run them whole.

    Only an axis 0 that every required input and every output share, *named* like a batch
    (``batch``, ``batch_size``, ``N``...), and no overridden initializer among the feeds:
    a time-major recurrent model also has a symbolic axis 0, and cutting time into pieces
    would restart its state in every piece.
    """
    session = opened.session
    required = {i.name for i in session.get_inputs()}
    if set(feeds) != required:
        return None
    firsts = {i.shape[0] if i.shape else None for i in session.get_inputs()}
    firsts |= {o.shape[0] if o.shape else None for o in session.get_outputs()}
    if len(firsts) != 1:
        return None
    (symbol,) = firsts
    if not isinstance(symbol, str) or not _looks_like_batch(symbol):
        return None
    return symbol if len({a.shape[0] for a in feeds.values()}) == 1 else None


def _looks_like_batch(symbol: str) -> bool:
    name = symbol.lower()
    return "batch" in name or name in ("n", "b", "bs")


def _raw_predictions(
    opened: OpenedSession, source: Path, options: RunOptions, progress: Progress | None
) -> tuple[Predictions, list[str]]:
    arrays = _raw_arrays(source, opened)
    feeds, notices = validate_feeds(
        arrays,
        input_specs(opened.session),
        optional=optional_input_specs(opened.session),
        source=str(source),
        allow_nonfinite=options.allow_nonfinite,
    )
    names = [o.name for o in opened.session.get_outputs()]
    axis = _batch_axis(opened, feeds)
    total = next(iter(feeds.values())).shape[0] if axis is not None else 0
    if axis is None or total <= options.batch_size:
        outputs = run_interruptible(opened.session, None, feeds, where=str(source))
        if progress is not None:
            progress(1, 1)
    else:
        parts: list[list[np.ndarray]] = []
        for start in range(0, total, options.batch_size):
            batch = {k: v[start : start + options.batch_size] for k, v in feeds.items()}
            parts.append(run_interruptible(opened.session, None, batch, where=str(source)))
            if progress is not None:
                progress(min(start + options.batch_size, total), total)
        outputs = [np.concatenate(column, axis=0) for column in zip(*parts, strict=True)]
    result = {name: np.asarray(value) for name, value in zip(names, outputs, strict=True)}
    records = None
    if len(result) == 1 and next(iter(result.values())).ndim <= 2:
        (name, value) = next(iter(result.items()))
        table = value.reshape(len(value), -1) if value.ndim else value.reshape(1, 1)
        columns = [name] if table.shape[1] == 1 else [f"{name}_{j}" for j in range(table.shape[1])]
        records = [dict(zip(columns, map(_scalar, row), strict=True)) for row in table]
    summary = {"outputs": {k: list(v.shape) for k, v in result.items()}}
    return Predictions("raw", result, names[0], records, summary), notices


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


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
        predictions, notices = _raw_predictions(opened, source, options, progress)
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
        "raw": ", ".join(f"{k} {v}" for k, v in summary.get("outputs", {}).items()),
    }[kind]
    text = f"wrote {result.output}: {counts}; {result.opened.describe()}"
    if "accuracy" in summary:
        text += f"; accuracy {summary['accuracy']:.4f} against the labels in the input"
    return text
