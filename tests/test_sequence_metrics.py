"""Sequence-labelling metrics against values worked out by hand and a naive edit distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelstm.errors import InvalidInputError
from edgelstm.metrics import macro_f1
from edgelstm.sequence_metrics import (
    Segment,
    edit_distance,
    exact_match,
    frame_metrics,
    segment_f1,
    segments,
    token_error_rate,
)


def _naive_edit_distance(reference: Sequence[int], hypothesis: Sequence[int]) -> int:
    """The textbook full-table dynamic programme."""
    table = [[0] * (len(hypothesis) + 1) for _ in range(len(reference) + 1)]
    for i in range(len(reference) + 1):
        for j in range(len(hypothesis) + 1):
            if i == 0 or j == 0:
                table[i][j] = i + j
                continue
            substitution = table[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1])
            table[i][j] = min(substitution, table[i - 1][j] + 1, table[i][j - 1] + 1)
    return table[-1][-1]


# ============================================================================================
# edit distance, token error rate, exact match


@pytest.mark.parametrize(
    ("reference", "hypothesis", "distance"),
    [
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("", "abc", 3),
        ("abc", "", 3),
        ("", "", 0),
        ("abc", "abc", 0),
        ((1, 2, 3), (3, 2, 1), 2),
        (["ab", "c"], ["ab", "c", "ab"], 1),
    ],
)
def test_edit_distance_by_hand(
    reference: Sequence[object], hypothesis: Sequence[object], distance: int
) -> None:
    assert edit_distance(reference, hypothesis) == distance
    assert isinstance(edit_distance(reference, hypothesis), int)


@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
def test_edit_distance_equals_the_naive_table(reference: list[int], hypothesis: list[int]) -> None:
    assert edit_distance(reference, hypothesis) == _naive_edit_distance(reference, hypothesis)
    assert edit_distance(np.array(reference), hypothesis) == edit_distance(hypothesis, reference)


def test_token_error_rate_sums_edits_over_reference_tokens() -> None:
    # 1 substitution + 1 deletion + 2 insertions over 3 + 1 + 2 reference tokens.
    references = [(1, 2, 3), (4,), (5, 6)]
    hypotheses = [(1, 9, 3), (), (5, 6, 7, 8)]
    assert token_error_rate(references, hypotheses) == pytest.approx(4 / 6)
    assert token_error_rate(["ab"], ["abcde"]) == pytest.approx(1.5)  # insertions: above 1
    assert token_error_rate(references, references) == 0.0


def test_token_error_rate_without_reference_tokens() -> None:
    assert token_error_rate([(), ()], [(), ()]) == 0.0
    assert token_error_rate([(), ()], [(), (1,)]) == 1.0


def test_exact_match_compares_whole_sequences() -> None:
    assert exact_match([(1, 2), (3,), ()], [[1, 2], (3, 3), ()]) == pytest.approx(2 / 3)
    assert exact_match(["ab"], [("a", "b")]) == 1.0


@pytest.mark.parametrize("metric", [token_error_rate, exact_match])
def test_sequence_metrics_refuse_mismatched_or_empty_inputs(metric: object) -> None:
    assert callable(metric)
    with pytest.raises(InvalidInputError, match="2 reference sequences but 1 hypotheses"):
        metric([(1,), (2,)], [(1,)])
    with pytest.raises(InvalidInputError, match="no sequences to score"):
        metric([], [])


# ============================================================================================
# segments and segment F1


def test_segments_are_maximal_runs_split_by_unlabelled_frames() -> None:
    labels = np.array([0, 0, 1, -1, 1, 1, -1, -1, 2, 0])
    assert segments(labels) == [
        Segment(0, 2, 0),
        Segment(2, 3, 1),
        Segment(4, 6, 1),
        Segment(8, 9, 2),
        Segment(9, 10, 0),
    ]
    assert segments(np.array([], dtype=np.int64)) == []
    assert segments(np.array([-1, -1])) == []
    with pytest.raises(InvalidInputError, match="one sequence"):
        segments(np.zeros((2, 2), dtype=np.int64))


def test_segment_f1_is_one_on_identical_labels() -> None:
    labels = [np.array([0, 0, 1, 1, 1, 2, -1]), np.array([3, 3, 3]), np.array([-1, -1])]
    assert segment_f1(labels, [label.copy() for label in labels]) == 1.0
    assert segment_f1([np.array([-1, -1])], [np.array([0, 1])]) == 1.0  # nothing to find
    assert segment_f1([], []) == 1.0


def test_segment_overlap_threshold_is_inclusive() -> None:
    truth = [np.array([0, 0, 0, 0, 1, 1, 1, 1])]
    # Prediction [0, 0, 1, 1, ...]: class 0 shares 2 of 4 frames (IoU exactly 0.5), class 1
    # shares 4 of 6 (0.67): both match.
    assert segment_f1(truth, [np.array([0, 0, 1, 1, 1, 1, 1, 1])]) == 1.0
    # One frame less for class 0: IoU 1/4 for class 0 misses (FP + FN), class 1 (4/7) matches.
    assert segment_f1(truth, [np.array([0, 1, 1, 1, 1, 1, 1, 1])]) == pytest.approx(2 / 4)
    assert segment_f1(truth, [np.array([0, 1, 1, 1, 1, 1, 1, 1])], overlap=0.25) == 1.0
    with pytest.raises(InvalidInputError, match="overlap must be"):
        segment_f1(truth, truth, overlap=0.0)


def test_segment_f1_counts_over_all_sequences() -> None:
    truth = [np.array([0, 0, 1, 1]), np.array([2, 2, 2, 2])]
    # Sequence 0: both segments found (TP 2). Sequence 1: split into three pieces; the middle
    # "2, 2" has IoU 2/4 and matches (TP 1), the two stray pieces are FP.
    predicted = [np.array([0, 0, 1, 1]), np.array([0, 2, 2, 1])]
    assert segment_f1(truth, predicted) == pytest.approx(2 * 3 / (2 * 3 + 2 + 0))


def test_segment_matching_is_one_to_one() -> None:
    # One long prediction over two true "0" segments split by a "1": with a low threshold it
    # qualifies for both but counts once (TP 1); the other "0" and the "1" are missed.
    truth = [np.array([0, 0, 1, 0, 0])]
    predicted = [np.array([0, 0, 0, 0, 0])]
    assert segment_f1(truth, predicted, overlap=0.3) == pytest.approx(2 / (2 + 0 + 2))


def test_predictions_on_unlabelled_frames_are_ignored() -> None:
    truth = [np.array([0, 0, -1, -1, 1, 1])]
    # The prediction's "2" on unlabelled frames neither adds a segment nor breaks the others.
    assert segment_f1(truth, [np.array([0, 0, 2, 2, 1, 1])]) == 1.0
    # A prediction running through the gap is cut there, like the truth.
    assert segment_f1(truth, [np.array([0, 0, 0, 0, 1, 1])]) == 1.0


# ============================================================================================
# frame metrics


def test_frame_metrics_over_labelled_frames() -> None:
    truth = [np.array([0, 0, 1, -1]), np.array([1, 1, -1])]
    predicted = [np.array([0, 1, 1, 0]), np.array([1, 1, 0])]
    metrics = frame_metrics(truth, predicted)
    assert set(metrics) == {"frame_accuracy", "macro_f1", "segment_f1"}
    # Labelled frames: truth 0 0 1 1 1, prediction 0 1 1 1 1.
    assert metrics["frame_accuracy"] == pytest.approx(4 / 5)
    assert metrics["macro_f1"] == pytest.approx(
        macro_f1(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 1]))
    )
    assert metrics["segment_f1"] == segment_f1(truth, predicted)
    assert all(isinstance(value, float) for value in metrics.values())


def test_frame_metrics_refuse_unusable_inputs() -> None:
    with pytest.raises(InvalidInputError, match="no labelled frame"):
        frame_metrics([np.array([-1, -1])], [np.array([0, 0])])
    with pytest.raises(InvalidInputError, match="sequence 1: true labels have shape \\(2,\\)"):
        frame_metrics([np.array([0]), np.array([0, 1])], [np.array([0]), np.array([0])])
    with pytest.raises(InvalidInputError, match="2 true label sequences but 1 predicted"):
        frame_metrics([np.array([0]), np.array([1])], [np.array([0])])
