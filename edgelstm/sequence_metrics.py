"""Sequence-labelling metrics in plain numpy: edit distance, token error rate, segment F1.

``transcribe`` is scored by edit distance between the decoded and the true token sequences
(:func:`token_error_rate`, :func:`exact_match`); ``tag`` per frame (:func:`frame_metrics`)
and per segment, a maximal run of one label (:func:`segment_f1`), because a tagger that gets
most frames right can still break one activity into many pieces. Frames labelled -1 (any
negative value) are unlabelled or padding and count nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.metrics import macro_f1


def edit_distance(
    reference: Sequence[Any] | np.ndarray, hypothesis: Sequence[Any] | np.ndarray
) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions.

    Items are compared by equality (they must be hashable). Each row of the dynamic programme
    is one numpy step: insertions chain within a row, which a running minimum resolves.

    Example::

        >>> edit_distance("kitten", "sitting")
        3
    """
    ids: dict[Any, int] = {}
    ref = np.array([ids.setdefault(item, len(ids)) for item in reference], dtype=np.int64)
    hyp = np.array([ids.setdefault(item, len(ids)) for item in hypothesis], dtype=np.int64)
    offsets = np.arange(len(hyp) + 1)
    row = offsets.copy()
    for done, item in enumerate(ref, start=1):
        best = np.empty_like(row)
        best[0] = done
        best[1:] = np.minimum(row[:-1] + (hyp != item), row[1:] + 1)
        # An insertion after column k costs one per column: row[j] = min_k best[k] + (j - k).
        row = np.minimum.accumulate(best - offsets) + offsets
    return int(row[-1])


def _pairs(
    references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]
) -> list[tuple[Sequence[Any], Sequence[Any]]]:
    if len(references) != len(hypotheses):
        raise InvalidInputError(
            f"{len(references)} reference sequences but {len(hypotheses)} hypotheses; "
            "score one hypothesis per reference"
        )
    if not len(references):
        raise InvalidInputError("no sequences to score; give at least one reference")
    return list(zip(references, hypotheses, strict=True))


def token_error_rate(
    references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]
) -> float:
    """Total edit distance over total reference tokens (character error rate for characters).

    Summing before dividing weights long sequences by their length, as speech and handwriting
    results are reported. It can exceed 1 (many insertions). With no reference tokens at all
    there is nothing to divide by: 0.0 when every hypothesis is empty too, else 1.0 (anything
    written is wrong).

    Example::

        >>> token_error_rate(["abc", "d"], ["abd", ""])  # 1 + 1 edits over 4 tokens
        0.5
    """
    pairs = _pairs(references, hypotheses)
    total = sum(len(reference) for reference, _ in pairs)
    if total == 0:
        return 0.0 if all(len(hypothesis) == 0 for _, hypothesis in pairs) else 1.0
    return sum(edit_distance(reference, hypothesis) for reference, hypothesis in pairs) / total


def exact_match(references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]) -> float:
    """Fraction of hypotheses identical to their reference (sequence accuracy)."""
    pairs = _pairs(references, hypotheses)
    return sum(tuple(ref) == tuple(hyp) for ref, hyp in pairs) / len(pairs)


@dataclass(frozen=True)
class Segment:
    """Frames ``start`` to ``end`` (exclusive) all labelled ``label``."""

    start: int
    end: int
    label: int


def segments(labels: np.ndarray) -> list[Segment]:
    """Maximal runs of one label; unlabelled frames (-1) belong to none and split runs.

    Example::

        >>> [(s.start, s.end, s.label) for s in segments(np.array([0, 0, -1, 0, 2, 2]))]
        [(0, 2, 0), (3, 4, 0), (4, 6, 2)]
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InvalidInputError(f"labels must be one sequence [time], got shape {array.shape}")
    if not array.size:
        return []
    starts = np.concatenate([[0], np.flatnonzero(array[1:] != array[:-1]) + 1])
    ends = np.append(starts[1:], array.size)
    return [
        Segment(int(start), int(end), int(array[start]))
        for start, end in zip(starts, ends, strict=True)
        if array[start] >= 0
    ]


def _matches(truth: list[Segment], predicted: list[Segment], overlap: float) -> int:
    """How many predicted segments match a true one, each true segment matched at most once.

    A match shares the label and has intersection over union >= ``overlap``; pairs are taken
    greedily by decreasing IoU. From 0.5 up a segment qualifies with at most one segment of
    the other side (two would each have to fill half of it and touch, and touching runs of
    one label are one segment), so the choice matters only for lower thresholds.
    """
    candidates = []
    for t, true_segment in enumerate(truth):
        for p, guess in enumerate(predicted):
            if guess.label != true_segment.label:
                continue
            shared = min(guess.end, true_segment.end) - max(guess.start, true_segment.start)
            union = (guess.end - guess.start) + (true_segment.end - true_segment.start) - shared
            if shared > 0 and shared / union >= overlap:
                candidates.append((shared / union, t, p))
    taken_true: set[int] = set()
    taken_predicted: set[int] = set()
    for _, t, p in sorted(candidates, key=lambda candidate: -candidate[0]):
        if t not in taken_true and p not in taken_predicted:
            taken_true.add(t)
            taken_predicted.add(p)
    return len(taken_true)


def _checked_pairs(
    true_labels: Sequence[np.ndarray], predicted_labels: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each (truth, prediction) as 1-D arrays, the prediction masked to -1 where truth is."""
    if len(true_labels) != len(predicted_labels):
        raise InvalidInputError(
            f"{len(true_labels)} true label sequences but {len(predicted_labels)} predicted; "
            "give one prediction per sequence"
        )
    pairs = []
    for index, (truth, predicted) in enumerate(zip(true_labels, predicted_labels, strict=True)):
        truth, predicted = np.asarray(truth), np.asarray(predicted)
        if truth.ndim != 1 or truth.shape != predicted.shape:
            raise InvalidInputError(
                f"sequence {index}: true labels have shape {truth.shape} but predictions "
                f"{predicted.shape}; give one label per frame for both"
            )
        pairs.append((truth, np.where(truth < 0, -1, predicted)))
    return pairs


def segment_f1(
    true_labels: Sequence[np.ndarray],
    predicted_labels: Sequence[np.ndarray],
    *,
    overlap: float = 0.5,
) -> float:
    """F1 of predicted segments against true segments, counted over all sequences.

    A predicted segment is a true positive when it matches a true segment of the same label
    with intersection over union >= ``overlap`` (each true segment matched once); unmatched
    predictions are false positives, unmatched true segments false negatives. Predictions on
    unlabelled frames (-1 in the truth) are ignored. With no segment on either side the
    prediction is perfect: 1.0.

    Example::

        >>> truth = [np.array([0, 0, 0, 0, 1, 1])]
        >>> segment_f1(truth, [np.array([0, 0, 1, 1, 1, 1])])  # IoU 2/4 and 2/4: both match
        1.0
        >>> segment_f1(truth, [np.array([0, 1, 1, 1, 1, 1])])  # IoU 1/4 and 2/5: neither
        0.0
    """
    if not 0.0 < overlap <= 1.0:
        raise InvalidInputError(
            f"segment overlap must be an intersection-over-union in (0, 1], got {overlap!r}"
        )
    true_positives = false_positives = false_negatives = 0
    for truth, predicted in _checked_pairs(true_labels, predicted_labels):
        true_segments, predicted_segments = segments(truth), segments(predicted)
        matched = _matches(true_segments, predicted_segments, overlap)
        true_positives += matched
        false_positives += len(predicted_segments) - matched
        false_negatives += len(true_segments) - matched
    denominator = 2 * true_positives + false_positives + false_negatives
    return 2 * true_positives / denominator if denominator else 1.0


def frame_metrics(
    true_labels: Sequence[np.ndarray], predicted_labels: Sequence[np.ndarray]
) -> dict[str, float]:
    """Per-frame accuracy and macro F1 over the labelled frames, and :func:`segment_f1`.

    Example::

        >>> frame_metrics([np.array([0, 0, 1, -1])], [np.array([0, 1, 1, 0])])["frame_accuracy"]
        0.6666666666666666
    """
    pairs = _checked_pairs(true_labels, predicted_labels)
    truth = np.concatenate([t[t >= 0] for t, _ in pairs]) if pairs else np.empty(0)
    predicted = np.concatenate([p[t >= 0] for t, p in pairs]) if pairs else np.empty(0)
    if not truth.size:
        raise InvalidInputError(
            "no labelled frame to score (every true label is -1 or there are no sequences)"
        )
    return {
        "frame_accuracy": float(np.mean(truth == predicted)),
        "macro_f1": macro_f1(truth, predicted),
        "segment_f1": segment_f1(true_labels, predicted_labels),
    }
