"""Predictions per task: from data in original units to labels, forecasts or anomaly scores.

:func:`predict` is the one path from an edgelstm model's inputs to what its outputs mean:
``run`` calls it per file, the batch engines per partition. The result is columnar
(:class:`Predictions`): arrays as the model computed them, and the table of named columns
that every writer (CSV, JSON, Parquet) reads, so no door rebuilds rows of its own.
:func:`predict_raw` runs a model without edgelstm metadata on arrays named after its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.config import Normalization
from edgelstm.data.types import InferenceData, SequenceSet, Series, TaggedSequences, Transcripts
from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.features import (
    check_class_count,
    class_names,
    feature_order,
    forecast_lookback,
    softmax,
    stored_normalization,
)
from edgelstm.runtimes.model_io.feeding import Progress, run_bucketed, zero_state
from edgelstm.runtimes.model_io.labelling import tag_table, tag_truth, transcribe_table
from edgelstm.runtimes.ort.execution import run_interruptible
from edgelstm.runtimes.ort.feeds import input_specs, optional_input_specs, validate_feeds
from edgelstm.runtimes.ort.session import OpenedSession
from edgelstm.tasks import anomaly_scores, denormalize, normalize

__all__ = ["PredictOptions", "Predictions", "predict", "predict_raw"]


@dataclass(frozen=True)
class PredictOptions:
    """How a session is fed: ``batch_size`` bounds the rows per ``session.run`` (and so the
    memory of one call); ``allow_nonfinite`` passes NaN/Inf through instead of refusing them.
    """

    batch_size: int = 256
    allow_nonfinite: bool = False
    #: transcribe: 1 decodes greedily; more runs a CTC prefix beam search this wide.
    beam: int = 1
    #: transcribe, beam search: tokens below this probability at a step are not tried.
    prune: float = 0.0
    #: tag: one row per segment (a run of one label) instead of one per frame.
    segments: bool = False
    #: transcribe: add each token's input frame (``frames``).
    timestamps: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.beam < 1:
            raise InvalidInputError(f"--beam is a beam width >= 1 (1: greedy), got {self.beam}")
        if not 0.0 <= self.prune < 1.0:
            raise InvalidInputError(f"--prune is a probability in [0, 1), got {self.prune}")

    def check_task(self, task: str, model: Path | str) -> None:
        """Refuse an option the model's task does not read, rather than ignore it."""
        wrong = [
            flag
            for flag, value, owner in (
                ("--segments", self.segments, "tag"),
                ("--timestamps", self.timestamps, "transcribe"),
                ("--beam", self.beam > 1, "transcribe"),
                ("--prune", self.prune > 0, "transcribe"),
            )
            if value and task != owner
        ]
        if wrong:
            raise InvalidInputError(
                f"{', '.join(wrong)} shape the output of sequence labellers (--segments: "
                f"tag; --timestamps, --beam, --prune: transcribe); {model} is a {task} model"
            )


@dataclass(frozen=True)
class Predictions:
    """Model outputs in user terms, as columns.

    ``arrays`` go to ``.npz`` (``primary`` alone to ``.npy``); ``table`` holds the named
    columns of ``.csv``, ``.json`` and Parquet rows, in order, one value per row (None when
    the outputs are not one table); ``summary`` holds counts and, when the input carried
    labels, the matching metric.
    """

    kind: str  # classify, forecast, anomaly, tag, transcribe or raw
    arrays: dict[str, np.ndarray]
    primary: str
    table: dict[str, np.ndarray] | None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """How many rows :attr:`table` has (0 without a table)."""
        return len(next(iter(self.table.values()))) if self.table else 0


class _Feeder:
    """Adds zero recurrent state for streaming graphs and runs one batch."""

    def __init__(self, opened: OpenedSession, options: PredictOptions, source: str) -> None:
        self.session = opened.session
        self.specs = input_specs(opened.session)
        self.options = options
        self.source = source
        self.notices: list[str] = []

    def first(self, x: np.ndarray) -> np.ndarray:
        """The task output (the first one) of one batch."""
        arrays = {self.specs[0].name: x, **zero_state(self.specs[1:], x.shape[0])}
        feeds, notices = validate_feeds(
            arrays, self.specs, source=self.source, allow_nonfinite=self.options.allow_nonfinite
        )
        self.notices.extend(n for n in notices if n not in self.notices)
        outputs = run_interruptible(self.session, None, feeds, where=self.source)
        first: np.ndarray = outputs[0]
        return first


def _classify(
    feed: _Feeder, data: SequenceSet, meta: ModelMetadata, sequences: list[np.ndarray],
    progress: Progress | None,
) -> Predictions:  # fmt: skip
    logits = run_bucketed(
        feed.first, sequences, batch_size=feed.options.batch_size, progress=progress
    )
    probs = softmax(logits).astype(np.float32)
    labels = class_names(meta)
    check_class_count(labels, probs.shape[1])
    predicted = np.array(labels)[probs.argmax(axis=1)]
    table: dict[str, np.ndarray] = {
        "index": np.arange(len(probs)),
        "label": predicted,
        "confidence": probs.max(axis=1),
        **{f"prob_{c}": probs[:, j] for j, c in enumerate(labels)},
    }
    summary: dict[str, Any] = {"sequences": len(sequences)}
    if data.labels is not None:
        truth = np.array([str(v) for v in data.labels.tolist()])
        table["true_label"] = truth
        summary["accuracy"] = float(np.mean(truth == predicted))
    arrays = {
        "labels": predicted,
        "probabilities": probs,
        "logits": logits,
        "class_labels": np.array(labels),
    }
    return Predictions("classify", arrays, "probabilities", table, summary)


def _forecast_windows(
    data: SequenceSet | Series, meta: ModelMetadata, order: list[int], source: Path
) -> list[np.ndarray]:
    """The windows to forecast from, in original units: a series gives its last lookback."""
    if not isinstance(data, Series):
        return [w[:, order] for w in data.sequences]
    values = data.values[:, order]
    lookback = forecast_lookback(meta)
    if lookback is not None:
        if len(values) < lookback:
            raise InvalidInputError(
                f"{source}: the series has {len(values)} steps; the model forecasts from "
                f"the last {lookback} (its lookback): give at least {lookback}"
            )
        values = values[-lookback:]
    return [values]


def _forecast(
    feed: _Feeder,
    meta: ModelMetadata,
    norm: Normalization,
    windows: list[np.ndarray],
    progress: Progress | None,
) -> Predictions:
    raw = run_bucketed(feed.first, windows, batch_size=feed.options.batch_size, progress=progress)
    indices = meta.target_indices or tuple(range(raw.shape[-1]))
    forecast = denormalize(raw, norm, indices)  # float64, original units
    names = meta.target_names or tuple(meta.feature_names[i] for i in indices)
    count, horizon = forecast.shape[:2]
    table: dict[str, np.ndarray] = {
        "window": np.repeat(np.arange(count), horizon),
        "step_ahead": np.tile(np.arange(1, horizon + 1), count),
        **{n: forecast[:, :, j].reshape(-1) for j, n in enumerate(names)},
    }
    arrays = {"forecast": forecast.astype(np.float32), "target_names": np.array(names)}
    summary = {"windows": len(windows), "horizon": int(horizon), "targets": list(names)}
    return Predictions("forecast", arrays, "forecast", table, summary)


def _anomaly(
    feed: _Feeder, data: Series, meta: ModelMetadata, x: np.ndarray, progress: Progress | None
) -> Predictions:
    prediction = feed.first(x[None])[0]
    if progress is not None:
        progress(1, 1)
    scores = anomaly_scores(x, prediction)
    threshold = meta.anomaly_threshold
    table: dict[str, np.ndarray] = {"step": np.arange(len(scores)), "score": scores}
    arrays: dict[str, np.ndarray] = {"scores": scores}
    summary: dict[str, Any] = {
        "steps": len(scores),
        "threshold": threshold,
        "top_score_step": int(np.argmax(scores)),
    }
    if threshold is not None:
        flags = (scores > threshold).astype(np.int64)
        table["anomaly"] = arrays["anomaly"] = flags
        summary["anomalous_steps"] = int(flags.sum())
    if data.labels is not None:
        table["label"] = np.asarray(data.labels).astype(np.int64)
    return Predictions("anomaly", arrays, "scores", table, summary)


def _labelled(
    feed: _Feeder,
    data: SequenceSet | TaggedSequences | Transcripts,
    meta: ModelMetadata,
    sequences: list[np.ndarray],
    progress: Progress | None,
) -> Predictions:
    """A tagger's per-frame rows (or segments) or a transcriber's decoded texts."""
    logits = run_bucketed(
        feed.first, sequences, batch_size=feed.options.batch_size, progress=progress
    )
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    options = feed.options
    if meta.task == "tag":
        truth = None
        if isinstance(data, TaggedSequences) and data.frame_labels is not None:
            truth = tag_truth(data, class_names(meta), feed.source)
        table, arrays, summary = tag_table(
            logits, lengths, meta, segments_only=options.segments, truth=truth
        )
        return Predictions("tag", arrays, "probabilities", table, summary)
    texts = data.texts if isinstance(data, Transcripts) else None
    table, arrays, summary = transcribe_table(
        logits,
        lengths,
        meta,
        beam=options.beam,
        prune=options.prune,
        timestamps=options.timestamps,
        truth=texts,
        source=feed.source,
    )
    return Predictions("transcribe", arrays, "text", table, summary)


def predict(
    opened: OpenedSession,
    data: InferenceData,
    *,
    source: Path,
    options: PredictOptions | None = None,
    progress: Progress | None = None,
) -> tuple[Predictions, list[str]]:
    """An edgelstm model's predictions for ``data`` in user terms, and the notices it raised.

    ``data`` is in original units with the input's own feature order: columns are mapped
    onto the model's features (by name, else by position) and normalised with the stored
    statistics. ``source`` names the data in messages.

    Example::

        >>> predictions, notices = predict(opened, data, source=Path("test.ts"))
        ... # doctest: +SKIP
        >>> predictions.table["label"][:3]  # doctest: +SKIP
    """
    meta = opened.profile.metadata
    if meta is None or meta.task is None:
        raise InvalidInputError(f"{opened.path} carries no edgelstm task metadata")
    options = options or PredictOptions()
    options.check_task(meta.task, opened.path)
    norm = stored_normalization(meta, opened.path)
    order, notice = feature_order(data.feature_names, meta, source)
    feed = _Feeder(opened, options, str(source))
    if notice is not None:
        feed.notices.append(notice)
    if meta.task in ("tag", "transcribe"):
        if isinstance(data, Series):
            raise InvalidInputError(f"{source}: a {meta.task} model takes sequences")
        sequences = [normalize(s[:, order], norm) for s in data.sequences]
        predictions = _labelled(feed, data, meta, sequences, progress)
    elif meta.task == "classify":
        if not isinstance(data, SequenceSet):
            raise InvalidInputError(f"{source}: a classifier takes sequences, not one series")
        sequences = [normalize(s[:, order], norm) for s in data.sequences]
        predictions = _classify(feed, data, meta, sequences, progress)
    elif meta.task == "forecast":
        if not isinstance(data, SequenceSet | Series):
            raise InvalidInputError(f"{source}: a forecaster takes a series or windows")
        windows = [normalize(w, norm) for w in _forecast_windows(data, meta, order, source)]
        predictions = _forecast(feed, meta, norm, windows, progress)
    else:
        if not isinstance(data, Series):
            raise InvalidInputError(f"{source}: an anomaly model scores one series")
        x = normalize(data.values[:, order], norm)
        predictions = _anomaly(feed, data, meta, x, progress)
    return predictions, feed.notices


# --------------------------------------------------------------------------------------------
# any ONNX model: arrays by input name


def _batch_axis_symbol(opened: OpenedSession, feeds: Mapping[str, np.ndarray]) -> str | None:
    """The symbolic axis 0 to split a foreign model's inputs along, or None to run them whole.

    Only an axis 0 that every required input and every output share, *named* like a batch
    (``batch``, ``batch_size``, ``N``...), and no overridden initializer among the feeds:
    a time-major recurrent model also has a symbolic axis 0, and cutting time into pieces
    would restart its state in every piece.
    """
    session = opened.session
    if set(feeds) != {i.name for i in session.get_inputs()}:
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


def _run_raw(
    opened: OpenedSession,
    feeds: dict[str, np.ndarray],
    source: str,
    options: PredictOptions,
    progress: Progress | None,
) -> list[np.ndarray]:
    """Run the feeds whole, or in slices of ``batch_size`` along a batch axis they share."""
    axis = _batch_axis_symbol(opened, feeds)
    total = next(iter(feeds.values())).shape[0] if axis is not None else 0
    if axis is None or total <= options.batch_size:
        outputs: list[np.ndarray] = run_interruptible(opened.session, None, feeds, where=source)
        if progress is not None:
            progress(1, 1)
        return outputs
    parts: list[list[np.ndarray]] = []
    for start in range(0, total, options.batch_size):
        batch = {k: v[start : start + options.batch_size] for k, v in feeds.items()}
        parts.append(run_interruptible(opened.session, None, batch, where=source))
        if progress is not None:
            progress(min(start + options.batch_size, total), total)
    return [np.concatenate(column, axis=0) for column in zip(*parts, strict=True)]


def predict_raw(
    opened: OpenedSession,
    arrays: Mapping[str, np.ndarray],
    *,
    source: str,
    options: PredictOptions | None = None,
    progress: Progress | None = None,
) -> tuple[Predictions, list[str]]:
    """Every output of a model without edgelstm metadata, by name, for inputs by name.

    The inputs are validated against the model's signature first. One output of at most two
    axes also makes a table (one column, or ``<name>_<j>`` per column).
    """
    options = options or PredictOptions()
    feeds, notices = validate_feeds(
        dict(arrays),
        input_specs(opened.session),
        optional=optional_input_specs(opened.session),
        source=source,
        allow_nonfinite=options.allow_nonfinite,
    )
    names = [o.name for o in opened.session.get_outputs()]
    outputs = _run_raw(opened, feeds, source, options, progress)
    result = {name: np.asarray(value) for name, value in zip(names, outputs, strict=True)}
    table = None
    if len(result) == 1 and next(iter(result.values())).ndim <= 2:
        (name, value) = next(iter(result.items()))
        matrix = value.reshape(len(value), -1) if value.ndim else value.reshape(1, 1)
        if matrix.shape[1] == 1:
            table = {name: matrix[:, 0]}
        else:
            table = {f"{name}_{j}": matrix[:, j] for j in range(matrix.shape[1])}
    summary = {"outputs": {k: list(v.shape) for k, v in result.items()}}
    return Predictions("raw", result, names[0], table, summary), notices
