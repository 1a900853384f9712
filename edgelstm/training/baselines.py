"""Reference results a trained model must beat before it is worth exporting and deploying.

A sequence classifier with accuracy 0.48 on a two-class problem is no model at all, yet its
training run looks like any other. This module computes, on the same train/test split the
model is evaluated on, what the time-series classification archives (UCR/UEA) report for every
dataset: the majority-class rate, 1-nearest-neighbour with Euclidean distance and
1-nearest-neighbour with dynamic time warping (DTW). It also turns a model's test metrics into
one comparison per task (:func:`compare_with_baselines`): accuracy against those three,
anomaly AUROC against the 0.5 of random scores, forecast MAE against seasonal naive.

numpy only; aeon (``pip install 'edgelstm[data]'``) supplies DTW and is imported only when
DTW runs. No torch, so device installs can read and report these numbers too.

Example:
    >>> from edgelstm.data.datasets import load_dataset  # doctest: +SKIP
    >>> split = load_dataset("ItalyPowerDemand")  # doctest: +SKIP
    >>> accuracies = classification_baselines(split.train, split.test)  # doctest: +SKIP
    >>> accuracies.best()  # doctest: +SKIP
    ('1-NN ED', 0.9553)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm.data.types import SequenceSet
from edgelstm.errors import InvalidInputError
from edgelstm.tasks import headline_metric

__all__ = [
    "BaselineAccuracies",
    "BaselineComparison",
    "chance_margin",
    "classification_baselines",
    "compare_with_baselines",
]

#: Names of the classification baselines, as they appear in reports and ``metrics.json``.
MAJORITY = "majority"
NN_ED = "1-NN ED"
NN_DTW = "1-NN DTW"
#: anomaly: the AUROC of scores that carry no information.
RANDOM_SCORES = "random scores"
#: forecast: repeat the value one season earlier (see :func:`edgelstm.tasks.seasonal_naive`).
SEASONAL_NAIVE = "seasonal naive"
#: tag: the most frequent training class for every frame.
MAJORITY_FRAME = "majority frame"
#: tag: logistic regression on the last :data:`WINDOW_FRAMES` frames, one frame at a time.
WINDOW_CLASSIFIER = "window logistic regression"
#: transcribe: always write the most frequent training text.
CONSTANT_TEXT = "most frequent text"
#: tag: frames the window baseline reads (the current one and those before it). A recurrent
#: model's receptive field is its whole past; a fixed causal window is what a per-frame
#: classifier can match, and wider windows cost the baseline time without changing the verdict.
WINDOW_FRAMES = 16
#: tag: training frames the window baseline learns from (a random sample beyond that).
WINDOW_TRAIN_FRAMES = 20_000

#: Share of the trivial rule's errors a model must remove to count as better than chance.
CHANCE_MARGIN_SHARE = 0.1


@dataclass(frozen=True)
class BaselineAccuracies:
    """Test accuracies of the standard classification baselines on one train/test split.

    ``seconds`` holds how long each took (reporting only: it is left out of :meth:`to_json`
    and of equality, so ``metrics.json`` stays identical between identical runs).
    """

    majority: float
    nn_euclidean: float
    nn_dtw: float | None
    dtw_note: str | None
    seconds: Mapping[str, float] = field(default_factory=dict, compare=False)

    def values(self) -> dict[str, float | None]:
        """Baseline name → accuracy (None for a skipped DTW), in report order."""
        return {MAJORITY: self.majority, NN_ED: self.nn_euclidean, NN_DTW: self.nn_dtw}

    def best(self) -> tuple[str, float]:
        """Name and accuracy of the strongest baseline computed (ties: the simpler one)."""
        computed = [(name, v) for name, v in self.values().items() if v is not None]
        return max(computed, key=lambda item: item[1])

    def to_json(self) -> dict[str, Any]:
        """``{"majority": .., "1-NN ED": .., "1-NN DTW": .. or None, "dtw_note": ..}``."""
        return {**self.values(), "dtw_note": self.dtw_note}


def chance_margin(majority: float) -> float:
    """The value a model must reach to count as better than chance, given the trivial rule's.

    The model must remove at least a tenth of the errors the trivial rule makes: with classes
    balanced 50/50 (majority 0.5) that is 0.55, with ten balanced classes (0.1) 0.19, with a
    0.9 majority 0.91. The same rule serves anomaly AUROC, whose chance level is 0.5.

    Example:
        >>> chance_margin(0.5)
        0.55
    """
    if not 0.0 <= majority <= 1.0:
        raise InvalidInputError(f"a majority-class rate is a fraction in [0, 1], got {majority}")
    return round(majority + CHANCE_MARGIN_SHARE * (1.0 - majority), 12)


def classification_baselines(
    train: SequenceSet, test: SequenceSet, *, dtw_budget_s: float = 60.0
) -> BaselineAccuracies:
    """Majority class, 1-NN Euclidean and 1-NN DTW test accuracies for a labelled split.

    The data is used as given (raw units, not edgelstm's training normalisation), with the
    conventions of the archives whose published 1-NN accuracies these are meant to match:

    - univariate data: each series is z-normalised (its own mean 0, std 1; a constant series
      becomes 0), as in the UCR archive, where a series' shape is what matters and offsets
      and scales between recordings would otherwise dominate the distance;
    - multivariate data: used as given, as in the UEA archive, because the levels of the
      channels carry the information (JapaneseVowels' cepstra: 1-NN DTW reaches 0.95 on
      the raw data, the published figure, and 0.66 after per-series z-normalisation).

    Labels compare as strings, as training does.

    - ``majority``: always predict the most frequent training class (ties: the class whose
      label sorts first).
    - ``nn_euclidean``: Euclidean distance over all channels and steps, vectorised numpy.
      Series of different lengths are first resampled by linear interpolation to the
      longest length in train and test, so a distance compares the same relative positions.
      Ties between training series go to the first one in training order.
    - ``nn_dtw``: full-window dependent DTW (one warping path for all channels; aeon's
      ``dtw_distance``), which handles different lengths natively (no resampling). It runs
      only when aeon is installed and the estimated time (pairs x length², calibrated by
      timing a few real pairs) fits ``dtw_budget_s``; a run that overshoots its estimate by
      a lot is stopped at twice the budget. Otherwise it is None and ``dtw_note`` says why.

    Example:
        >>> accuracies = classification_baselines(train, test, dtw_budget_s=10)  # doctest: +SKIP
        >>> accuracies.majority, accuracies.nn_euclidean, accuracies.nn_dtw  # doctest: +SKIP
        (0.499, 0.955, 0.95)
    """
    train_labels = _labels(train, "training")
    test_labels = _labels(test, "test")
    if len(train) == 0 or len(test) == 0:
        raise InvalidInputError(
            f"baselines need training and test sequences; got {len(train)} and {len(test)}"
        )
    if train.num_features != test.num_features:
        raise InvalidInputError(
            f"test data has {test.num_features} features, training data {train.num_features}"
        )
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    classes, counts = np.unique(train_labels, return_counts=True)
    majority = float(np.mean(test_labels == classes[int(np.argmax(counts))]))
    seconds[MAJORITY] = time.perf_counter() - started

    started = time.perf_counter()
    nearest = nearest_euclidean(train.sequences, test.sequences)
    nn_euclidean = float(np.mean(train_labels[nearest] == test_labels))
    seconds[NN_ED] = time.perf_counter() - started

    started = time.perf_counter()
    nn_dtw: float | None = None
    found, dtw_note = nearest_dtw(train.sequences, test.sequences, budget_s=dtw_budget_s)
    if found is not None:
        nn_dtw = float(np.mean(train_labels[found] == test_labels))
    seconds[NN_DTW] = time.perf_counter() - started
    return BaselineAccuracies(
        majority=majority,
        nn_euclidean=nn_euclidean,
        nn_dtw=nn_dtw,
        dtw_note=dtw_note,
        seconds=seconds,
    )


def _labels(data: SequenceSet, which: str) -> np.ndarray:
    if data.labels is None:
        raise InvalidInputError(f"the {which} data has no labels; baselines need them")
    return np.asarray([str(v) for v in np.asarray(data.labels).tolist()])


def distance_ready(series: np.ndarray) -> np.ndarray:
    """One ``[time, channels]`` series as the 1-NN baselines compare it (float64).

    Univariate: z-normalised (mean 0, std 1; a constant series is only centred, to zeros).
    Multivariate: unchanged. See :func:`classification_baselines` for why.
    """
    values = np.asarray(series, dtype=np.float64)
    if values.shape[1] > 1:
        return values
    std = values.std(axis=0)
    scaled: np.ndarray = (values - values.mean(axis=0)) / np.where(std < 1e-8, 1.0, std)
    return scaled


def _resample(series: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of ``[time, channels]`` onto ``length`` evenly spaced points."""
    steps = series.shape[0]
    if steps == length:
        return np.asarray(series, dtype=np.float64)
    if steps == 1:
        return np.repeat(np.asarray(series, dtype=np.float64), length, axis=0)
    where = np.linspace(0.0, steps - 1, length)
    index = np.arange(steps)
    return np.stack([np.interp(where, index, series[:, c]) for c in range(series.shape[1])], 1)


def _flat_znormalized(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    return np.stack([distance_ready(_resample(s, length)).reshape(-1) for s in sequences])


def nearest_euclidean(
    train: Sequence[np.ndarray], test: Sequence[np.ndarray], *, block_bytes: int = 1 << 26
) -> np.ndarray:
    """Index of each test series' nearest training series by Euclidean distance.

    Sequences are ``[time, channels]``, prepared by :func:`distance_ready`; different lengths
    are resampled to the longest (see :func:`classification_baselines`). Distances use
    ``|a|² - 2a·b + |b|²`` in blocks of test rows (a matrix product: 1000 x 1000 series of
    length 1000 take well under a second).
    """
    length = max(int(s.shape[0]) for s in (*train, *test))
    a = _flat_znormalized(train, length)
    b = _flat_znormalized(test, length)
    a_norms = np.einsum("ij,ij->i", a, a)
    rows = max(1, block_bytes // (8 * len(a)))
    nearest = np.empty(len(b), dtype=np.int64)
    for start in range(0, len(b), rows):
        block = b[start : start + rows]
        # |b|² is the same for every candidate of a row: leaving it out keeps the argmin.
        distances = a_norms[None, :] - 2.0 * (block @ a.T)
        nearest[start : start + rows] = np.argmin(distances, axis=1)
    return nearest


def nearest_dtw(
    train: Sequence[np.ndarray],
    test: Sequence[np.ndarray],
    *,
    budget_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[np.ndarray | None, str | None]:
    """Index of each test series' nearest training series by full-window DTW, or why not.

    Returns ``(indices, None)``, or ``(None, note)`` when aeon is missing, the estimated
    time is over ``budget_s``, or the run passed twice ``budget_s`` (the estimate was far
    off). ``clock`` (seconds) times the calibration and the run. Series are prepared by
    :func:`distance_ready`, not resampled.
    """
    try:
        from aeon.distances import dtw_pairwise_distance as aeon_dtw
    except ImportError:
        return None, "aeon is not installed (pip install 'edgelstm[data]')"

    def dtw_pairwise_distance(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray:
        # numba inside aeon warns about its own integer casts; nothing a user can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            distances: np.ndarray = aeon_dtw(x, y)
        return distances

    # aeon takes [channels, time]; a list keeps different lengths apart.
    a = [np.ascontiguousarray(distance_ready(s).T) for s in train]
    b = [np.ascontiguousarray(distance_ready(s).T) for s in test]
    train_steps = np.array([s.shape[1] for s in a], dtype=np.float64)
    test_steps = np.array([s.shape[1] for s in b], dtype=np.float64)
    # The cost of a pair is the area of its warping matrix; calibrate seconds per cell on a
    # few real pairs (the first call also compiles aeon's numba code, so it is not timed).
    sample_a = a[:: max(1, len(a) // 3)][:3]
    sample_b = b[:: max(1, len(b) // 2)][:2]
    sample_cells = float(sum(x.shape[1] for x in sample_b) * sum(y.shape[1] for y in sample_a))
    dtw_pairwise_distance(sample_b, sample_a)
    started = clock()
    dtw_pairwise_distance(sample_b, sample_a)
    per_cell = (clock() - started) / sample_cells
    total_cells = float(test_steps.sum() * train_steps.sum())
    estimate = per_cell * total_cells
    size = (
        f"{len(b)} x {len(a)} series of length "
        f"{_length_range(np.concatenate([train_steps, test_steps]))}"
    )
    if estimate > budget_s:
        return None, (
            f"skipped: estimated {estimate:.0f} s for {size}, over the {budget_s:g} s budget"
        )
    started = clock()
    nearest = np.empty(len(b), dtype=np.int64)
    # Blocks of about a tenth of the work, so an estimate that was far off cannot hang a run.
    rows = max(1, math.ceil(len(b) / 10))
    for start in range(0, len(b), rows):
        distances = dtw_pairwise_distance(b[start : start + rows], a)
        nearest[start : start + rows] = np.argmin(distances, axis=1)
        elapsed = clock() - started
        if start + rows < len(b) and elapsed > 2 * budget_s:
            return None, (
                f"stopped after {elapsed:.0f} s (estimate {estimate:.0f} s) for {size}, "
                f"over twice the {budget_s:g} s budget"
            )
    return nearest, None


def _length_range(steps: np.ndarray) -> str:
    low, high = int(steps.min()), int(steps.max())
    return str(low) if low == high else f"{low}-{high}"


# --------------------------------------------------------------------------------------------
# a model against its baselines, the same way for every task


@dataclass(frozen=True)
class BaselineComparison:
    """A model's headline test metric beside the baselines of its task.

    ``trivial`` is the rule that knows nothing (majority class, random anomaly scores,
    seasonal naive); ``required`` is the value the model must reach to count as better than
    it (:func:`chance_margin`; for a forecast, below the seasonal-naive MAE). ``model`` is
    None when the test data cannot give the metric (an anomaly series without labels).
    """

    metric: str
    higher_is_better: bool
    model: float | None
    values: dict[str, float | None]
    trivial: str
    required: float
    notes: dict[str, str] = field(default_factory=dict)

    def beats(self, value: float | None) -> bool | None:
        """Whether the model does at least as well as ``value`` (None when either is missing).

        A tie counts: a perfect model cannot do better than a perfect baseline. Beating
        chance is the stricter :attr:`clears_chance`.
        """
        if self.model is None or value is None or math.isnan(self.model):
            return None
        if self.higher_is_better:
            return self.model >= value - 1e-12
        return self.model <= value + 1e-12 * abs(value)

    @property
    def clears_chance(self) -> bool | None:
        """Whether the model reaches :attr:`required` (None when it has no value)."""
        if self.model is None or math.isnan(self.model):
            return None
        if self.higher_is_better:
            return self.model >= self.required - 1e-12
        return self.model < self.required

    def best(self) -> tuple[str, float]:
        """The strongest baseline computed: its name and value."""
        computed = [(k, v) for k, v in self.values.items() if v is not None]
        sign = 1.0 if self.higher_is_better else -1.0
        return max(computed, key=lambda item: sign * item[1])

    def to_json(self) -> dict[str, Any]:
        """The ``baselines`` entry of ``metrics.json``."""
        best_name, _ = self.best()
        result: dict[str, Any] = {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "model": self.model,
            "values": dict(self.values),
            "beaten": {k: self.beats(v) for k, v in self.values.items()},
            "trivial": self.trivial,
            "required": self.required,
            "clears_chance": self.clears_chance,
            "best": best_name,
            "beats_best": self.beats(self.best()[1]),
        }
        if self.notes:
            result["notes"] = dict(self.notes)
        return result


def compare_with_baselines(
    task: str, metrics: Mapping[str, Any], accuracies: BaselineAccuracies | None = None
) -> BaselineComparison:
    """One comparison for any task, from its test ``metrics`` (and classify ``accuracies``).

    The model is judged by its task's headline metric (:data:`edgelstm.tasks.HEADLINE_METRICS`):
    classify accuracy vs majority / 1-NN ED / 1-NN DTW; anomaly AUROC vs the 0.5 of random
    scores; forecast MAE vs seasonal naive (``metrics["baseline_mae"]``).
    """
    headline = headline_metric(task)
    model = _number(metrics.get(headline.key))
    values: dict[str, float | None]
    notes: dict[str, str] = {}
    if task == "classify":
        if accuracies is None:
            raise InvalidInputError("a classify comparison needs the classification baselines")
        if accuracies.dtw_note:
            notes[NN_DTW] = accuracies.dtw_note
        values, trivial = accuracies.values(), MAJORITY
        required = chance_margin(accuracies.majority)
    elif task == "tag":
        majority = float(metrics["baseline_majority_macro_f1"])
        values = {
            MAJORITY_FRAME: majority,
            WINDOW_CLASSIFIER: _number(metrics.get("baseline_window_macro_f1")),
        }
        trivial, required = MAJORITY_FRAME, chance_margin(majority)
    elif task == "transcribe":
        constant = float(metrics["constant_error_rate"])
        values, trivial, required = {CONSTANT_TEXT: constant}, CONSTANT_TEXT, constant
    elif task == "anomaly":
        if model is None:
            notes[RANDOM_SCORES] = "the test series has no anomaly labels, so no AUROC"
        values, trivial, required = {RANDOM_SCORES: 0.5}, RANDOM_SCORES, chance_margin(0.5)
    else:
        naive = float(metrics["baseline_mae"])
        values, trivial, required = {SEASONAL_NAIVE: naive}, SEASONAL_NAIVE, naive
    return BaselineComparison(
        metric=headline.key,
        higher_is_better=headline.higher_is_better,
        model=model,
        values=values,
        trivial=trivial,
        required=required,
        notes=notes,
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def tagging_baselines(prepared: Any) -> dict[str, float]:
    """Macro F1 over the test frames of the two per-frame baselines of ``--task tag``.

    ``baseline_majority_macro_f1``: every frame gets the most frequent training class.
    ``baseline_window_macro_f1``: scikit-learn's logistic regression on the last
    :data:`WINDOW_FRAMES` frames (normalised units; zeros before the start), trained on a
    sample of the training frames: what a model that reads no further back than a fixed window
    reaches. ``prepared`` is the tag :class:`~edgelstm.tasks.PreparedData` the model used.
    """
    from edgelstm.labelling import unpad_labels
    from edgelstm.metrics import macro_f1

    def frames(split: Any) -> tuple[np.ndarray, np.ndarray]:
        windows, labels = [], []
        for x, y in zip(split.x, unpad_labels(split.y, split.lengths), strict=True):
            padded = np.concatenate([np.zeros((WINDOW_FRAMES - 1, x.shape[1]), x.dtype), x])
            view = np.lib.stride_tricks.sliding_window_view(
                padded[: len(y) + WINDOW_FRAMES - 1], WINDOW_FRAMES, axis=0
            )
            keep = y >= 0
            windows.append(view.reshape(len(y), -1)[keep])
            labels.append(y[keep])
        return np.concatenate(windows), np.concatenate(labels)

    train_x, train_y = frames(prepared.train)
    test_x, test_y = frames(prepared.test)
    majority = int(np.bincount(train_y).argmax())
    result = {"baseline_majority_macro_f1": macro_f1(test_y, np.full_like(test_y, majority))}
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        from edgelstm.extras import missing_dependency

        raise missing_dependency(exc, "the tagging baselines") from exc
    rng = np.random.default_rng(0)
    if len(train_y) > WINDOW_TRAIN_FRAMES:
        pick = rng.choice(len(train_y), WINDOW_TRAIN_FRAMES, replace=False)
        train_x, train_y = train_x[pick], train_y[pick]
    if len(np.unique(train_y)) < 2:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter: the baseline is a reference
        classifier = LogisticRegression(max_iter=300).fit(train_x, train_y)
    result["baseline_window_macro_f1"] = macro_f1(test_y, classifier.predict(test_x))
    return result
