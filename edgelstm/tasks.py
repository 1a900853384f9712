"""Turn loaded data into normalised model-ready arrays, per task, and measure predictions.

This is the single place that knows how a task's inputs are cut and normalised and how its
outputs are measured, so training, export checks and accuracy gates agree on every number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgelstm import metrics as m
from edgelstm.config import Normalization
from edgelstm.data.types import SequenceSet, Series, WindowSet
from edgelstm.errors import InvalidInputError


@dataclass(frozen=True)
class Split:
    """One split in normalised units.

    classify: ``x`` padded ``[n, T, F]``, ``lengths`` ``[n]``, ``y`` class indices ``[n]``.
    forecast: ``x`` windows ``[n, lookback, F]``, ``y`` targets ``[n, horizon, targets]``.
    anomaly:  ``x`` windows ``[n, T, F]`` (training) or the whole series ``[1, T, F]``; ``y``
    per-step 0/1 labels ``[T]`` when known.
    """

    x: np.ndarray
    y: np.ndarray | None
    lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class PreparedData:
    """Train/validation/test splits plus everything needed to go back to original units."""

    task: str
    train: Split
    val: Split
    test: Split
    normalization: Normalization
    feature_names: tuple[str, ...]
    class_labels: tuple[str, ...] = ()
    target_indices: tuple[int, ...] = ()
    #: anomaly: normalised training series ``[1, T, F]`` used to choose the threshold.
    reference: Split | None = None
    #: anomaly: index into the test series where evaluation starts.
    test_start: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


def fit_normalization(values: np.ndarray) -> Normalization:
    """Per-feature mean/std of ``values`` ``[N, F]``; constant features get std 1."""
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    std = np.where(std < 1e-8, 1.0, std)
    return Normalization(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def normalize(values: np.ndarray, norm: Normalization) -> np.ndarray:
    """Apply ``norm`` along the last axis, as float32."""
    mean, std = norm.float32_arrays
    normalized: np.ndarray = ((values - mean) / std).astype(np.float32)
    return normalized


def denormalize(values: np.ndarray, norm: Normalization, indices: tuple[int, ...]) -> np.ndarray:
    """Undo ``norm`` for the features ``indices`` (the last axis of ``values``), as float64.

    Forecasts are measured (training, gates) and written (``run``) in original units through
    this one function.
    """
    mean = np.asarray([norm.mean[i] for i in indices], dtype=np.float64)
    std = np.asarray([norm.std[i] for i in indices], dtype=np.float64)
    return values.astype(np.float64) * std + mean


def concat_padded(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate outputs along axis 0; per-step outputs ``[n, T_i, ...]`` of batches with
    different ``T_i`` are zero-padded to the longest first (scorers read them up to each
    sequence's own length)."""
    if len({p.shape[1:] for p in parts}) <= 1:
        return np.concatenate(parts, axis=0)
    steps = max(p.shape[1] for p in parts)
    padded = []
    for p in parts:
        widths = [(0, 0), (0, steps - p.shape[1])] + [(0, 0)] * (p.ndim - 2)
        padded.append(np.pad(p, widths))
    return np.concatenate(padded, axis=0)


def _stratified_holdout(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, holdout) with about ``fraction`` of each class held out."""
    holdout: list[int] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        holdout.extend(idx[:k].tolist())
    hold = np.array(sorted(holdout), dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), hold)
    return keep, hold


def _pad(sequences: tuple[np.ndarray, ...] | list[np.ndarray], num_features: int) -> np.ndarray:
    longest = max(s.shape[0] for s in sequences)
    out = np.zeros((len(sequences), longest, num_features), dtype=np.float32)
    for i, s in enumerate(sequences):
        out[i, : s.shape[0]] = s
    return out


def _sort_labels(labels: np.ndarray) -> tuple[str, ...]:
    names = sorted({str(v) for v in labels.tolist()})
    # Numeric labels ("1".."10") sort as numbers, so class 10 does not land between 1 and 2.
    try:
        return tuple(sorted(names, key=float))
    except ValueError:
        return tuple(names)


def prepare_classify(
    train: SequenceSet,
    test: SequenceSet | None,
    *,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
) -> PreparedData:
    """Normalise, split and pad classification data (validation is stratified)."""
    if train.labels is None:
        raise InvalidInputError("classification needs labels; the training data has none")
    labels = np.asarray([str(v) for v in train.labels.tolist()])
    classes = _sort_labels(labels)
    if len(classes) < 2:
        raise InvalidInputError(
            f"classification needs at least 2 classes; the training data has only {classes}"
        )
    sequences = list(train.sequences)
    if test is None:
        keep, hold = _stratified_holdout(labels, test_fraction, rng)
        test_seqs = [sequences[i] for i in hold]
        test_labels = labels[hold]
        sequences = [sequences[i] for i in keep]
        labels = labels[keep]
    else:
        if test.labels is None:
            raise InvalidInputError("the test data has no labels; classification needs them")
        if test.num_features != train.num_features:
            raise InvalidInputError(
                f"test data has {test.num_features} features, training data "
                f"{train.num_features}; they must match"
            )
        test_seqs = list(test.sequences)
        test_labels = np.asarray([str(v) for v in test.labels.tolist()])
        unknown = sorted(set(test_labels.tolist()) - set(classes))
        if unknown:
            raise InvalidInputError(
                f"test labels {unknown[:5]} never occur in the training data (classes: "
                f"{', '.join(classes)}); a classifier cannot predict them"
            )
    keep, hold = _stratified_holdout(labels, val_fraction, rng)
    norm = fit_normalization(np.concatenate([sequences[i] for i in keep], axis=0))
    index = {c: i for i, c in enumerate(classes)}

    def split(seqs: list[np.ndarray], labs: np.ndarray) -> Split:
        normed = [normalize(s, norm) for s in seqs]
        y = np.array([index[str(v)] for v in labs.tolist()], dtype=np.int64)
        lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
        return Split(x=_pad(normed, train.num_features), y=y, lengths=lengths)

    return PreparedData(
        task="classify",
        train=split([sequences[i] for i in keep], labels[keep]),
        val=split([sequences[i] for i in hold], labels[hold]),
        test=split(test_seqs, test_labels),
        normalization=norm,
        feature_names=train.feature_names,
        class_labels=classes,
        details={"variable_length": len({s.shape[0] for s in train.sequences}) > 1},
    )


def _windows(
    series: np.ndarray, lookback: int, horizon: int, targets: tuple[int, ...], origins: range
) -> Split:
    x = np.stack([series[o : o + lookback] for o in origins]).astype(np.float32)
    y = np.stack(
        [series[o + lookback : o + lookback + horizon][:, list(targets)] for o in origins]
    ).astype(np.float32)
    return Split(x=x, y=y)


def prepare_forecast(
    train: Series | WindowSet,
    test: Series | WindowSet | None,
    *,
    targets: tuple[int, ...],
    lookback: int,
    horizon: int,
    val_fraction: float,
    test_fraction: float,
    test_start: int | None = None,
) -> PreparedData:
    """Cut windows (lookback → horizon) and normalise with training statistics.

    From a series, test windows are those whose forecast targets start at or after
    ``test_start`` (the training part ends there); validation is the chronologically last
    windows of the training part.
    """
    if isinstance(train, WindowSet):
        return _prepare_forecast_windows(train, test, val_fraction, test_fraction)
    if test is not None and not isinstance(test, Series):
        raise InvalidInputError("forecast test data must be a series like the training data")
    if test is None:
        full = train.values
        start = round(len(full) * (1 - test_fraction)) if test_start is None else test_start
        train_values = full[:start]
    elif test_start is None:
        # A separate test file continues the training series.
        if test.num_features != train.num_features:
            raise InvalidInputError(
                f"test data has {test.num_features} columns, training data "
                f"{train.num_features}; they must match"
            )
        full = np.concatenate([train.values, test.values], axis=0)
        start, train_values = len(train), train.values
    else:
        full, start, train_values = test.values, test_start, train.values
    needed = lookback + horizon
    n_train = len(train_values) - needed + 1
    if n_train < 4:
        raise InvalidInputError(
            f"the training series has {len(train_values)} steps; lookback {lookback} + horizon "
            f"{horizon} leaves {max(n_train, 0)} windows (need at least 4): use a shorter "
            "--lookback/--horizon or more data"
        )
    norm = fit_normalization(train_values)
    n_val = max(1, round(n_train * val_fraction))
    train_norm = normalize(train_values, norm)
    full_norm = normalize(full, norm)
    test_origins = range(max(start - lookback, 0), len(full) - needed + 1)
    if len(test_origins) == 0:
        raise InvalidInputError(
            f"no test window fits: the series has {len(full)} steps, test starts at {start}, "
            f"and each window needs {needed}; use a shorter --lookback/--horizon"
        )
    return PreparedData(
        task="forecast",
        train=_windows(train_norm, lookback, horizon, targets, range(0, n_train - n_val)),
        val=_windows(train_norm, lookback, horizon, targets, range(n_train - n_val, n_train)),
        test=_windows(full_norm, lookback, horizon, targets, test_origins),
        normalization=norm,
        feature_names=train.feature_names,
        target_indices=targets,
        test_start=start,
        details={"lookback": lookback, "horizon": horizon, "test_start": start},
    )


def _prepare_forecast_windows(
    train: WindowSet, test: Series | WindowSet | None, val_fraction: float, test_fraction: float
) -> PreparedData:
    if test is not None and not isinstance(test, WindowSet):
        raise InvalidInputError("forecast test data must be windows (X, y) like the training data")
    n = len(train)
    if test is None:
        n_test = max(1, round(n * test_fraction))
        test = WindowSet(
            train.inputs[n - n_test :],
            train.targets[n - n_test :],
            train.feature_names,
            train.target_indices,
        )
        train = WindowSet(
            train.inputs[: n - n_test],
            train.targets[: n - n_test],
            train.feature_names,
            train.target_indices,
        )
        n -= n_test
    if n < 4:
        raise InvalidInputError(f"only {n} training windows; need at least 4")
    norm = fit_normalization(train.inputs.reshape(-1, train.num_features))
    tgt = train.target_indices
    tnorm = Normalization(
        mean=tuple(norm.mean[i] for i in tgt), std=tuple(norm.std[i] for i in tgt)
    )
    n_val = max(1, round(n * val_fraction))

    def split(ws: WindowSet, sl: slice) -> Split:
        return Split(x=normalize(ws.inputs[sl], norm), y=normalize(ws.targets[sl], tnorm))

    return PreparedData(
        task="forecast",
        train=split(train, slice(0, n - n_val)),
        val=split(train, slice(n - n_val, n)),
        test=split(test, slice(None)),
        normalization=norm,
        feature_names=train.feature_names,
        target_indices=tgt,
        details={"lookback": int(train.inputs.shape[1]), "horizon": int(train.targets.shape[1])},
    )


def prepare_anomaly(
    train: Series,
    test: Series | None,
    *,
    lookback: int,
    val_fraction: float,
    test_start: int | None = None,
) -> PreparedData:
    """Windows of normal data for a next-step predictor; the test series is scored whole.

    Validation is the chronologically last part of the training series.
    """
    values = train.values
    n_val_steps = max(lookback + 1, round(len(values) * val_fraction))
    if len(values) - n_val_steps < 2 * lookback:
        raise InvalidInputError(
            f"the training series has {len(values)} steps; anomaly training with lookback "
            f"{lookback} needs at least {2 * lookback + n_val_steps}: use a shorter --lookback"
        )
    fit_part, val_part = values[: len(values) - n_val_steps], values[len(values) - n_val_steps :]
    norm = fit_normalization(fit_part)
    stride = max(1, lookback // 8)

    def windows(part: np.ndarray) -> Split:
        normed = normalize(part, norm)
        origins = range(0, len(normed) - lookback + 1, stride)
        return Split(x=np.stack([normed[o : o + lookback] for o in origins]), y=None)

    if test is None:
        test_series, start = train, 0
    else:
        if test.num_features != train.num_features:
            raise InvalidInputError(
                f"test data has {test.num_features} columns, training data "
                f"{train.num_features}; they must match"
            )
        test_series, start = test, (test_start or 0)
    return PreparedData(
        task="anomaly",
        train=windows(fit_part),
        val=Split(x=normalize(val_part, norm)[None], y=None),
        test=Split(x=normalize(test_series.values, norm)[None], y=test_series.labels),
        normalization=norm,
        feature_names=train.feature_names,
        reference=Split(x=normalize(values, norm)[None], y=None),
        test_start=start,
        details={"lookback": lookback, "test_start": start},
    )


def anomaly_scores(
    x: np.ndarray, predictions: np.ndarray, *, previous: np.ndarray | None = None
) -> np.ndarray:
    """Per-step score: mean squared error of the next-step prediction (step 0 scores 0).

    ``x`` and ``predictions`` are ``[T, F]`` in normalised units; ``predictions[t]`` predicts
    ``x[t + 1]``. A stream scored chunk by chunk passes the prediction made before ``x[0]``
    (the previous chunk's last one) as ``previous``, so its scores equal the whole series'.
    """
    scores = np.zeros(x.shape[0], dtype=np.float64)
    scores[1:] = np.mean((predictions[:-1] - x[1:]) ** 2, axis=-1)
    if previous is not None:
        scores[0] = np.mean((previous - x[0]) ** 2)
    return scores


def choose_threshold(reference_scores: np.ndarray) -> float:
    """Anomaly threshold from scores on normal (training) data: just above the largest one."""
    return float(np.max(reference_scores) * 1.05)


def classify_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    pred = np.argmax(logits, axis=-1)
    return {"accuracy": m.accuracy(y_true, pred), "macro_f1": m.macro_f1(y_true, pred)}


def seasonal_naive(windows: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Seasonal-naive forecast from input windows ``[n, L, Ft]`` (original units).

    Step h repeats the value one season earlier; with ``season`` 1 (or longer than the window)
    this is the plain naive forecast (repeat the last value).
    """
    lookback = windows.shape[1]
    if season < 1 or season > lookback:
        season = 1
    steps = []
    for h in range(1, horizon + 1):
        back = season * math.ceil(h / season)
        steps.append(windows[:, lookback - 1 + h - back])
    forecast: np.ndarray = np.stack(steps, axis=1)
    return forecast


def forecast_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, baseline: np.ndarray
) -> dict[str, float]:
    """MAE/RMSE/sMAPE of the model and of the seasonal-naive baseline (original units)."""
    return {
        "mae": m.mae(y_true, y_pred),
        "rmse": m.rmse(y_true, y_pred),
        "smape": m.smape(y_true, y_pred),
        "baseline_mae": m.mae(y_true, baseline),
        "baseline_rmse": m.rmse(y_true, baseline),
        "baseline_smape": m.smape(y_true, baseline),
    }


def anomaly_metrics(
    labels: np.ndarray | None, scores: np.ndarray, threshold: float
) -> dict[str, Any]:
    """AUROC, F1 of the threshold verdicts, and whether the top score lies in a labelled region."""
    flagged = scores > threshold
    result: dict[str, Any] = {
        "threshold": threshold,
        "flagged_fraction": float(np.mean(flagged)),
        "top_score_index": int(np.argmax(scores)),
    }
    if labels is not None and labels.any() and not labels.all():
        result["auroc"] = m.auroc(labels, scores)
        result["f1"] = m.binary_f1(labels, flagged)
        result["top_score_in_anomaly"] = bool(labels[int(np.argmax(scores))])
    return result


# --------------------------------------------------------------------------------------------
# headline metrics and accuracy gates
#
# Here, not in ``exporters`` or ``training``: a task's headline metric names its quality for
# training's baseline checks, the quantization gate (exporters), the benchmark's ``--eval``
# and the tuner's budget (benchmarks) alike. In the core every room can import it, so which
# number that is, and which way is better, is written once.


@dataclass(frozen=True)
class HeadlineMetric:
    """The one number that names a task's quality, and which way is better.

    ``key`` is its name in the test metrics (``metrics.json``); ``label`` is how a sentence
    names it ("test AUROC 0.52 is not clearly better than random scores").

    Example:
        >>> HEADLINE_METRICS["forecast"]
        HeadlineMetric(key='mae', higher_is_better=False, label='MAE')
    """

    key: str
    higher_is_better: bool
    label: str


#: Per task: classify by test accuracy, forecast by MAE in original units, anomaly by the
#: AUROC of the per-step scores against the labels, tag by the macro F1 over labelled frames,
#: transcribe by the token (character) error rate of greedy CTC decoding.
HEADLINE_METRICS: dict[str, HeadlineMetric] = {
    "classify": HeadlineMetric("accuracy", higher_is_better=True, label="accuracy"),
    "forecast": HeadlineMetric("mae", higher_is_better=False, label="MAE"),
    "anomaly": HeadlineMetric("auroc", higher_is_better=True, label="AUROC"),
    "tag": HeadlineMetric("macro_f1", higher_is_better=True, label="macro F1"),
    "transcribe": HeadlineMetric("error_rate", higher_is_better=False, label="error rate"),
}


def headline_metric(task: str) -> HeadlineMetric:
    """The headline metric of ``task``; an unknown task is refused with the known ones."""
    if task not in HEADLINE_METRICS:
        *others, last = HEADLINE_METRICS
        raise InvalidInputError(f"unknown task {task!r}; choose {', '.join(others)} or {last}")
    return HEADLINE_METRICS[task]


def metric_label(key: str) -> str:
    """How a sentence names the metric ``key`` (``auroc`` -> ``AUROC``); unknown keys as is."""
    return next((m.label for m in HEADLINE_METRICS.values() if m.key == key), key)


#: Slack for float rounding in :meth:`Gate.accepts`: a drop of exactly the allowed amount
#: (accuracy 0.95 -> 0.94 with 0.01 allowed computes as 0.010000000000000009) passes.
_ROUNDING_SLACK = 1e-12


@dataclass(frozen=True)
class Gate:
    """How much a task's headline metric may get worse, e.g. from FP32 to INT8.

    ``relative`` gates measure the loss as a fraction of the value before (2 % of an MAE);
    the others in the metric's own units (0.01 accuracy).

    Example:
        >>> gate = DEFAULT_GATES["forecast"]
        >>> round(gate.degradation(2.0, 2.03), 4), gate.passes(2.0, 2.03)
        (0.015, True)
    """

    metric: str
    higher_is_better: bool
    allowed: float
    relative: bool = False

    def degradation(self, before: float, after: float) -> float:
        """How much worse ``after`` is than ``before`` (negative when it improved).

        A relative loss from a value of 0 is infinite, so a relative gate on it never passes.
        """
        change = (before - after) if self.higher_is_better else (after - before)
        if self.relative:
            return change / abs(before) if before else math.inf
        return change

    def accepts(self, degradation: float) -> bool:
        """Whether a :meth:`degradation` is within ``allowed`` (NaN and infinity never are)."""
        return math.isfinite(degradation) and degradation <= self.allowed + _ROUNDING_SLACK

    def passes(self, before: float, after: float) -> bool:
        """Whether going from ``before`` to ``after`` stays within the gate."""
        return self.accepts(self.degradation(before, after))

    def with_allowed(self, allowed: float | None) -> Gate:
        """This gate with another allowance (``--max-degradation``); None keeps the default."""
        return self if allowed is None else replace(self, allowed=allowed)


def _headline_gate(task: str, allowed: float, *, relative: bool = False) -> Gate:
    metric = HEADLINE_METRICS[task]
    return Gate(metric.key, metric.higher_is_better, allowed, relative)


#: Default gate per task: on the task's headline metric, how much of it a cheaper artifact
#: may lose (quantization gate and ``--tune`` budget alike).
DEFAULT_GATES: dict[str, Gate] = {
    "classify": _headline_gate("classify", allowed=0.01),
    "forecast": _headline_gate("forecast", allowed=0.02, relative=True),
    "anomaly": _headline_gate("anomaly", allowed=0.01),
    "tag": _headline_gate("tag", allowed=0.01),
    # Half a point of character error rate: one more wrong character in 200.
    "transcribe": _headline_gate("transcribe", allowed=0.005),
}


def gate_for_metric(metric: str) -> Gate | None:
    """The default gate whose metric is ``metric`` (None for a metric no task gates on)."""
    return next((g for g in DEFAULT_GATES.values() if g.metric == metric), None)
