"""Metrics against values worked out by hand, the seasonal-naive baseline, anomaly scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgelstm import metrics as m
from edgelstm.tasks import anomaly_metrics, anomaly_scores, choose_threshold, seasonal_naive


def test_accuracy() -> None:
    assert m.accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75
    assert m.accuracy(np.array(["a", "b"]), np.array(["a", "b"])) == 1.0
    assert isinstance(m.accuracy(np.array([1]), np.array([1])), float)


def test_macro_f1_by_hand() -> None:
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: tp 0 -> 0
    assert m.macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_classes_only_predicted() -> None:
    # class 0: tp 1, fn 1 -> 2/3; class 1 (never true, predicted once): 0
    assert m.macro_f1(np.array([0, 0]), np.array([0, 1])) == pytest.approx(1 / 3)
    assert m.macro_f1(np.array([2, 1, 2]), np.array([2, 1, 2])) == 1.0


def test_mae_rmse() -> None:
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([2.0, 2.0, 5.0])  # errors 1, 0, 2
    assert m.mae(y_true, y_pred) == pytest.approx(1.0)
    assert m.rmse(y_true, y_pred) == pytest.approx(math.sqrt(5 / 3))
    assert m.mae(y_true, y_true) == 0.0
    assert m.rmse(y_true, y_true) == 0.0


def test_mae_rmse_multidimensional() -> None:
    y_true = np.zeros((2, 3, 1))
    y_pred = np.full((2, 3, 1), -2.0)
    assert m.mae(y_true, y_pred) == 2.0
    assert m.rmse(y_true, y_pred) == 2.0


def test_smape_with_zeros() -> None:
    y_true = np.array([0.0, 0.0, 1.0, -1.0])
    y_pred = np.array([0.0, 1.0, 1.0, 1.0])
    # both zero -> 0; 2*1/1 = 2; exact -> 0; 2*2/2 = 2  => mean 1 => 100 %
    assert m.smape(y_true, y_pred) == pytest.approx(100.0)
    assert m.smape(np.zeros(3), np.zeros(3)) == 0.0
    assert m.smape(np.array([2.0]), np.array([1.0])) == pytest.approx(100 * 2 / 3)


def test_auroc_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    assert m.auroc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert m.auroc(labels, np.array([0.0, 0.1, 0.5, 0.9])) == 1.0
    assert m.auroc(labels, np.array([0.9, 0.5, 0.1, 0.0])) == 0.0


def test_auroc_ties_count_half() -> None:
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.2, 0.9])
    # pos 0.5: tie with neg 0.5 (1/2) + beats 0.2 (1); pos 0.9 beats both (2) -> 3.5/4
    assert m.auroc(labels, scores) == pytest.approx(0.875)
    assert m.auroc(labels, np.ones(4)) == pytest.approx(0.5)
    # Boolean labels work the same.
    assert m.auroc(labels.astype(bool), scores) == pytest.approx(0.875)


def test_auroc_one_class_is_nan() -> None:
    assert math.isnan(m.auroc(np.zeros(3), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(m.auroc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_binary_f1() -> None:
    labels = np.array([1, 1, 0, 0, 1])
    flagged = np.array([1, 0, 1, 0, 1])  # tp 2, fp 1, fn 1 -> 4/6
    assert m.binary_f1(labels, flagged) == pytest.approx(2 / 3)
    assert m.binary_f1(labels, labels) == 1.0
    assert m.binary_f1(np.zeros(4), np.zeros(4)) == 0.0
    assert m.binary_f1(np.array([1, 0]), np.array([0, 1])) == 0.0


# --------------------------------------------------------------------------------------------
# seasonal naive


def _ramp(lookback: int = 6) -> np.ndarray:
    return np.arange(lookback, dtype=np.float64).reshape(1, lookback, 1)  # 0, 1, ..., 5


def test_seasonal_naive_repeats_the_last_season() -> None:
    # Steps 6, 7, 8 repeat 3, 4, 5; step 9 is two seasons back from the window: 3 again.
    forecast = seasonal_naive(_ramp(), horizon=4, season=3)
    assert forecast.shape == (1, 4, 1)
    assert forecast[0, :, 0].tolist() == [3.0, 4.0, 5.0, 3.0]


@pytest.mark.parametrize("season", [1, 7, 100])
def test_seasonal_naive_falls_back_to_last_value(season: int) -> None:
    assert seasonal_naive(_ramp(), horizon=3, season=season)[0, :, 0].tolist() == [5.0, 5.0, 5.0]


def test_seasonal_naive_season_equal_to_lookback() -> None:
    assert seasonal_naive(_ramp(), horizon=2, season=6)[0, :, 0].tolist() == [0.0, 1.0]


def test_seasonal_naive_keeps_batch_and_targets() -> None:
    windows = np.stack([_ramp()[0, :, 0], 10 * _ramp()[0, :, 0]], axis=-1)  # [6, 2]
    windows = np.stack([windows, -windows])  # [2, 6, 2]
    forecast = seasonal_naive(windows, horizon=2, season=2)
    assert forecast.shape == (2, 2, 2)
    np.testing.assert_array_equal(forecast[0], [[4.0, 40.0], [5.0, 50.0]])
    np.testing.assert_array_equal(forecast[1], -forecast[0])


# --------------------------------------------------------------------------------------------
# anomaly scores


def test_anomaly_scores_by_hand() -> None:
    x = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0], [2.0, 2.0]])  # [T=4, F=2]
    # predictions[t] predicts x[t + 1]; the last one has nothing to predict.
    predictions = np.array([[1.0, 1.0], [3.0, 3.0], [0.0, 1.0], [9.0, 9.0]])
    # step 0: no prediction -> 0
    # step 1: ((1-1)^2 + (1-2)^2) / 2 = 0.5
    # step 2: ((3-3)^2 + (3-1)^2) / 2 = 2.0
    # step 3: ((0-2)^2 + (1-2)^2) / 2 = 2.5
    scores = anomaly_scores(x, predictions)
    assert scores.dtype == np.float64
    assert scores.tolist() == [0.0, 0.5, 2.0, 2.5]


def test_anomaly_threshold_and_metrics_by_hand() -> None:
    assert choose_threshold(np.array([0.5, 2.0, 1.0])) == pytest.approx(2.1)  # 5 % above max
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([0.1, 2.5, 3.0, 1.0, 0.2])
    result = anomaly_metrics(labels, scores, threshold=2.1)
    # flagged: steps 1 and 2 -> tp 1 (step 2), fp 1 (step 1), fn 1 (step 3) -> F1 1/2
    # AUROC: pos 3.0 beats all 3 negatives, pos 1.0 beats 0.1 and 0.2 -> 5/6
    assert result == {
        "threshold": 2.1,
        "flagged_fraction": pytest.approx(0.4),
        "top_score_index": 2,
        "auroc": pytest.approx(5 / 6),
        "f1": pytest.approx(0.5),
        "top_score_in_anomaly": True,
    }
