"""Baselines: hand-checkable 1-NN and majority scores, the DTW budget, and training that never
ships a chance-level model silently (metrics.json, the warning, --min-accuracy and
--require-baseline)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, TINY_KW, CliRunner, assert_nothing_written, write_classify_npz

from edgelstm.data.types import SequenceSet
from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.tasks import DEFAULT_GATES, HEADLINE_METRICS
from edgelstm.training.baselines import (
    BaselineAccuracies,
    chance_margin,
    classification_baselines,
    compare_with_baselines,
    nearest_dtw,
    nearest_euclidean,
)
from edgelstm.training.quality_checks import QualityChecks


def _set(series: list[list[float]] | list[np.ndarray], labels: list[str]) -> SequenceSet:
    """Univariate sequences from plain lists (or ready ``[time, channels]`` arrays)."""
    arrays = tuple(
        np.asarray(s, dtype=np.float32).reshape(len(s), -1)
        if not isinstance(s, np.ndarray)
        else s.astype(np.float32)
        for s in series
    )
    return SequenceSet(
        arrays, np.asarray(labels), tuple(f"f{i}" for i in range(arrays[0].shape[1]))
    )


def _no_dtw(train: SequenceSet, test: SequenceSet) -> BaselineAccuracies:
    return classification_baselines(train, test, dtw_budget_s=0)


# --------------------------------------------------------------------------------------------
# majority class and 1-NN Euclidean, by hand


def test_majority_is_the_training_majority_scored_on_test() -> None:
    train = _set([[0, 1], [1, 0], [2, 2]], ["a", "a", "b"])
    test = _set([[0, 1], [1, 0], [2, 2], [3, 3]], ["a", "b", "b", "b"])
    assert _no_dtw(train, test).majority == 0.25  # "a" is right once in four


def test_majority_tie_goes_to_the_label_that_sorts_first() -> None:
    train = _set([[0, 1], [1, 0]], ["b", "a"])
    test = _set([[0, 1], [1, 0], [2, 2]], ["a", "a", "b"])
    assert _no_dtw(train, test).majority == pytest.approx(2 / 3)


def test_euclidean_nearest_neighbour_by_hand() -> None:
    train = _set([[0, 1, 2, 3], [3, 2, 1, 0]], ["up", "down"])
    # The first test ramp rises, the second falls; one label is deliberately wrong.
    test = _set([[0, 1, 2, 4], [9, 5, 2, 0]], ["up", "up"])
    scores = _no_dtw(train, test)
    assert scores.nn_euclidean == 0.5
    assert nearest_euclidean(train.sequences, test.sequences).tolist() == [0, 1]


def test_univariate_series_are_z_normalised_multivariate_are_not() -> None:
    # Univariate: a ramp 100x larger and shifted is still the ramp (UCR convention).
    train = _set([[0, 1, 2, 3], [3, 2, 1, 0]], ["up", "down"])
    test = _set([[100, 200, 300, 400]], ["up"])
    assert _no_dtw(train, test).nn_euclidean == 1.0
    # Multivariate: the channel levels are the information (UEA convention), kept as given.
    level = [np.full((4, 2), 0.0), np.full((4, 2), 10.0)]
    train2 = _set(level, ["low", "high"])
    test2 = _set([np.full((4, 2), 9.0), np.full((4, 2), 1.0)], ["high", "low"])
    assert _no_dtw(train2, test2).nn_euclidean == 1.0


def test_euclidean_ties_go_to_the_first_training_series() -> None:
    twins = [[0, 1, 0, 1], [0, 1, 0, 1]]
    test = _set([[0, 1, 0, 1]], ["x"])
    assert _no_dtw(_set(twins, ["x", "y"]), test).nn_euclidean == 1.0
    assert _no_dtw(_set(twins, ["y", "x"]), test).nn_euclidean == 0.0


def test_euclidean_resamples_variable_lengths_to_the_longest() -> None:
    up4 = [0, 1, 2, 3]
    down8 = [7, 6, 5, 4, 3, 2, 1, 0]
    # A 6-step rise resampled to 8 steps is a rise: it matches the 4-step ramp, not the fall.
    test = _set([[0, 2, 4, 6, 8, 10], [5, 4, 3, 2, 1, 0]], ["up", "down"])
    assert _no_dtw(_set([up4, down8], ["up", "down"]), test).nn_euclidean == 1.0


def test_euclidean_matches_a_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(int(rng.integers(5, 30)), 3)) for _ in range(40)]
    test = [rng.normal(size=(int(rng.integers(5, 30)), 3)) for _ in range(25)]
    from edgelstm.training.baselines import _resample, distance_ready

    length = max(s.shape[0] for s in train + test)
    flat = [distance_ready(_resample(s, length)).ravel() for s in train]
    expected = [
        int(
            np.argmin(
                [np.sum((distance_ready(_resample(t, length)).ravel() - f) ** 2) for f in flat]
            )
        )
        for t in test
    ]
    # Small blocks exercise the blocked loop too.
    assert nearest_euclidean(train, test, block_bytes=8 * 40 * 3).tolist() == expected


# --------------------------------------------------------------------------------------------
# DTW


def _pulse(at: int, *, width: int = 2, n: int = 40) -> list[float]:
    x = np.zeros(n)
    x[at : at + width] = 1.0
    return x.tolist()


def _hump(at: int, n: int = 40) -> list[float]:
    t = np.arange(n)
    return np.exp(-(((t - at) / 6.0) ** 2)).tolist()


def test_dtw_wins_on_a_shifted_pattern_where_euclidean_fails() -> None:
    train = _set([_pulse(8), _hump(30)], ["pulse", "hump"])
    # Each test pattern sits where the *other* class sits in training: Euclidean distance
    # matches position and picks the wrong class; DTW warps time and matches the shape.
    test = _set([_pulse(30), _hump(10)], ["pulse", "hump"])
    scores = classification_baselines(train, test)
    assert scores.nn_euclidean == 0.0
    assert scores.nn_dtw == 1.0
    assert scores.dtw_note is None
    assert scores.best() == ("1-NN DTW", 1.0)


def test_dtw_matches_shapes_across_unequal_lengths_where_euclidean_cannot() -> None:
    # Four lengths; each test pattern sits, relative to its length, where the other class
    # sits in training. Euclidean distance resamples to one length and compares position by
    # position, so it picks the wrong class both times; DTW warps time and matches the shape.
    # A DTW that fell back to Euclidean distance would fail here.
    train = _set([_pulse(5, n=36), _hump(32, n=44)], ["pulse", "hump"])
    test = _set([_pulse(25, n=30), _hump(8, n=50)], ["pulse", "hump"])
    assert nearest_euclidean(train.sequences, test.sequences).tolist() == [1, 0]
    found, note = nearest_dtw(train.sequences, test.sequences, budget_s=60.0)
    assert note is None and found is not None
    assert found.tolist() == [0, 1]
    accuracies = classification_baselines(train, test)
    assert (accuracies.nn_euclidean, accuracies.nn_dtw) == (0.0, 1.0)


def _readings(*seconds: float) -> Callable[[], float]:
    """A clock that reads ``seconds`` in turn and fails the test if read once more."""
    values = iter(seconds)
    return lambda: next(values)


def test_dtw_stops_at_twice_its_budget_when_the_estimate_was_far_off() -> None:
    train = _set([_pulse(8), _hump(30)], ["pulse", "hump"])
    test = _set([_pulse(30), _hump(10)], ["pulse", "hump"])
    # Calibration reads 0 -> 0.001 s: an estimate far within the 1 s budget. The run starts
    # at 10 and its first block (of two: one test series each) ends at 13: 3 s, over twice
    # the budget. The clock has no fifth reading, so a second block would fail the test.
    clock = _readings(0.0, 0.001, 10.0, 13.0)
    found, note = nearest_dtw(train.sequences, test.sequences, budget_s=1.0, clock=clock)
    assert found is None
    assert note == (
        "stopped after 3 s (estimate 0 s) for 2 x 2 series of length 40, over twice the 1 s budget"
    )


def test_dtw_within_twice_its_budget_finishes() -> None:
    train = _set([_pulse(8), _hump(30)], ["pulse", "hump"])
    test = _set([_pulse(30), _hump(10)], ["pulse", "hump"])
    # The first block ends 1.9 s in: over the budget but not twice it, so the run goes on.
    clock = _readings(0.0, 0.001, 10.0, 11.9, 99.0)
    found, note = nearest_dtw(train.sequences, test.sequences, budget_s=1.0, clock=clock)
    assert note is None and found is not None
    assert found.tolist() == [0, 1]


def test_dtw_over_budget_is_skipped_with_a_note() -> None:
    train = _set([_pulse(8), _hump(30)], ["pulse", "hump"])
    test = _set([_pulse(30), _hump(10)], ["pulse", "hump"])
    scores = classification_baselines(train, test, dtw_budget_s=1e-9)
    assert scores.nn_dtw is None
    assert scores.dtw_note is not None
    assert "skipped: estimated" in scores.dtw_note
    assert "1e-09 s budget" in scores.dtw_note
    assert "2 x 2 series of length 40" in scores.dtw_note
    assert scores.best() == ("majority", 0.5)  # a skipped baseline is never the best
    assert scores.to_json()["1-NN DTW"] is None
    assert scores.to_json()["dtw_note"] == scores.dtw_note


def test_dtw_without_aeon_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aeon.distances", None)  # import raises ImportError
    train = _set([[0, 1, 2, 3], [3, 2, 1, 0]], ["up", "down"])
    scores = classification_baselines(train, train)
    assert scores.nn_dtw is None
    assert scores.dtw_note == "aeon is not installed (pip install 'edgelstm[data]')"
    assert scores.nn_euclidean == 1.0


def test_scores_json_and_equality_leave_out_the_timings() -> None:
    a = BaselineAccuracies(0.5, 0.9, None, "skipped", seconds={"1-NN ED": 0.1})
    b = BaselineAccuracies(0.5, 0.9, None, "skipped", seconds={"1-NN ED": 9.9})
    assert a == b
    assert a.to_json() == {
        "majority": 0.5,
        "1-NN ED": 0.9,
        "1-NN DTW": None,
        "dtw_note": "skipped",
    }


def test_baselines_refuse_unlabelled_data() -> None:
    data = SequenceSet((np.zeros((3, 1), np.float32),), None, ("v",))
    with pytest.raises(InvalidInputError, match="no labels"):
        classification_baselines(data, data)


# --------------------------------------------------------------------------------------------
# chance margin and the comparison


@pytest.mark.parametrize(
    ("majority", "required"), [(0.5, 0.55), (0.1, 0.19), (0.9, 0.91), (1.0, 1.0), (0.0, 0.1)]
)
def test_chance_margin(majority: float, required: float) -> None:
    assert chance_margin(majority) == pytest.approx(required)


def test_chance_margin_refuses_a_non_fraction() -> None:
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        chance_margin(1.5)


def test_classify_comparison() -> None:
    scores = BaselineAccuracies(0.5, 0.9, None, "skipped: too slow")
    near = compare_with_baselines("classify", {"accuracy": 0.54}, scores)
    assert near.clears_chance is False  # above the majority, but not clearly
    assert near.required == pytest.approx(0.55)
    good = compare_with_baselines("classify", {"accuracy": 0.9}, scores).to_json()
    assert good["clears_chance"] is True
    assert good["best"] == "1-NN ED"
    assert good["beats_best"] is True  # a tie counts
    assert good["beaten"] == {"majority": True, "1-NN ED": True, "1-NN DTW": None}
    assert good["notes"] == {"1-NN DTW": "skipped: too slow"}


def test_require_baseline_fails_a_model_that_clears_chance_but_loses_to_a_baseline() -> None:
    accuracies = BaselineAccuracies(0.5, 0.9, 0.85, None)
    comparison = compare_with_baselines("classify", {"accuracy": 0.8}, accuracies)
    assert comparison.clears_chance is True  # 0.8 >= 0.55: the failure is the baseline's
    checks = QualityChecks(min_accuracy=None, require_baseline=True, dtw_budget_s=60.0)
    assert checks.failures(comparison) == [
        "test accuracy 0.8000 is worse than the strongest baseline, 1-NN ED 0.9000 "
        "(--require-baseline)"
    ]
    assert replace(checks, require_baseline=False).failures(comparison) == []


def test_headline_metric_and_direction_come_from_the_task() -> None:
    for task, headline in HEADLINE_METRICS.items():
        metrics = {
            headline.key: 0.7,
            "baseline_mae": 0.9,  # forecast's seasonal naive
            "baseline_majority_macro_f1": 0.3,  # tag's majority frame
            "constant_error_rate": 0.9,  # transcribe's most frequent text
        }
        accuracies = BaselineAccuracies(0.5, 0.6, None, None)
        comparison = compare_with_baselines(task, metrics, accuracies)
        assert comparison.metric == headline.key
        assert comparison.higher_is_better is headline.higher_is_better
        assert comparison.model == 0.7
        assert DEFAULT_GATES[task].metric == headline.key
        assert DEFAULT_GATES[task].higher_is_better is headline.higher_is_better
    with pytest.raises(InvalidInputError, match="unknown task 'regress'; choose classify, fore"):
        compare_with_baselines("regress", {})


def test_anomaly_and_forecast_comparisons() -> None:
    anomaly = compare_with_baselines("anomaly", {"auroc": 0.52}).to_json()
    assert anomaly["values"] == {"random scores": 0.5}
    assert anomaly["required"] == pytest.approx(0.55)
    assert anomaly["clears_chance"] is False
    unlabelled = compare_with_baselines("anomaly", {"threshold": 1.0}).to_json()
    assert unlabelled["model"] is None and unlabelled["clears_chance"] is None
    forecast = compare_with_baselines("forecast", {"mae": 2.0, "baseline_mae": 3.0}).to_json()
    assert forecast["values"] == {"seasonal naive": 3.0}
    assert forecast["higher_is_better"] is False
    assert forecast["clears_chance"] is True
    worse = compare_with_baselines("forecast", {"mae": 3.5, "baseline_mae": 3.0}).to_json()
    assert worse["clears_chance"] is False and worse["beats_best"] is False


# --------------------------------------------------------------------------------------------
# training: metrics.json, the warning, the checks


@pytest.fixture(scope="module")
def chance_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Training labels that are noise, and a test set of one sequence repeated with labels
    half 0, half 1: every model (and every baseline) scores exactly 0.5 there."""
    folder = tmp_path_factory.mktemp("chance")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 12, 2)).astype(np.float32)
    np.savez(folder / "train.npz", X=X, y=np.arange(40) % 2)
    test = np.repeat(X[:1], 10, axis=0)
    np.savez(folder / "test.npz", X=test, y=np.arange(10) % 2)
    return folder / "train.npz", folder / "test.npz"


@pytest.fixture(scope="module")
def separable_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("separable")
    train = write_classify_npz(folder / "train.npz")
    test = write_classify_npz(folder / "test.npz", n=21, seed=5)
    return train, test


def test_metrics_json_holds_the_baselines_of_the_same_split(
    tmp_path: Path, separable_data: tuple[Path, Path]
) -> None:
    from edgelstm.training.trainer import train

    data, test = separable_data
    out = tmp_path / "run"
    result = train("classify", data=data, test=test, out=out, **TINY_KW)
    baselines = json.loads((out / "metrics.json").read_text())["baselines"]
    assert baselines == result.metrics["baselines"]
    assert baselines["metric"] == "accuracy"
    assert baselines["model"] == result.metrics["accuracy"]
    # Training classes tie 30/30, so the majority rule says "0": 11 of the 21 test labels.
    assert baselines["values"]["majority"] == pytest.approx(11 / 21)
    assert baselines["required"] == pytest.approx(chance_margin(11 / 21))
    # The classes differ by the sign of their mean, so 1-NN ED cannot miss.
    assert baselines["values"]["1-NN ED"] == 1.0
    assert set(baselines["values"]) == {"majority", "1-NN ED", "1-NN DTW"}
    assert baselines["trivial"] == "majority"


@pytest.mark.parametrize("task", ["forecast", "anomaly"])
def test_forecast_and_anomaly_record_their_baseline(
    tmp_path: Path, task: str, request: pytest.FixtureRequest
) -> None:
    from edgelstm.training.trainer import train

    data = request.getfixturevalue(f"{task}_csv")
    options = {"lookback": 16, **({"horizon": 4} if task == "forecast" else {})}
    result = train(task, data=data, out=tmp_path / "run", **TINY_KW, **options)
    baselines = result.metrics["baselines"]
    if task == "forecast":
        assert baselines["values"] == {"seasonal naive": result.metrics["baseline_mae"]}
        assert baselines["model"] == result.metrics["mae"]
    else:
        assert baselines["values"] == {"random scores": 0.5}
        assert baselines["model"] == result.metrics["auroc"]


def test_chance_level_model_warns_loudly(
    cli: CliRunner, tmp_path: Path, chance_data: tuple[Path, Path]
) -> None:
    data, test = chance_data
    out = tmp_path / "run"
    result = cli("train", "--task", "classify", "--data", data, "--test", test, "--out", out, *TINY)
    assert result.code == 0, result.err
    assert out.is_dir()  # without a check option the run still writes, but says so
    warnings = [line for line in result.err_lines if line.startswith("warning:")]
    assert len(warnings) == 1, result.err
    block = result.err[result.err.index("warning:") :]
    assert "test accuracy 0.5000 is not clearly better than the majority class" in warnings[0]
    assert "0.5500 needed" in warnings[0]
    for word in ("likely causes", "training examples", "--epochs 4", "--lr", "--min-accuracy"):
        assert word in block, word
    # The summary table shows the baselines beside the model's metrics.
    assert "baseline majority" in result.out
    assert "baseline 1-NN ED" in result.out
    assert "better than chance" in result.out


def test_good_model_passes_both_checks_without_a_warning(
    cli: CliRunner, tmp_path: Path, separable_data: tuple[Path, Path]
) -> None:
    data, test = separable_data
    out = tmp_path / "run"
    result = cli(
        "train", "--task", "classify", "--data", data, "--test", test, "--out", out,
        *TINY, "--epochs", "10", "--min-accuracy", "0.9", "--require-baseline",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "warning:" not in result.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baselines"]["clears_chance"] is True
    assert metrics["baselines"]["beats_best"] is True


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--min-accuracy", "0.9"], ["test accuracy 0.5000 is below --min-accuracy 0.9"]),
        (
            ["--require-baseline"],
            ["not clearly better than the majority class", "--require-baseline"],
        ),
    ],
)
def test_failed_check_exits_1_and_writes_nothing(
    cli: CliRunner,
    tmp_path: Path,
    chance_data: tuple[Path, Path],
    option: list[str],
    words: list[str],
) -> None:
    data, test = chance_data
    out = tmp_path / "run"
    result = cli(
        "train", "--task", "classify", "--data", data, "--test", test, "--out", out,
        *TINY, *option,
    )  # fmt: skip
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    assert result.out == ""
    # Progress lines came first (training ran); one error line ends it, no warning block.
    line = result.err_lines[-1]
    assert line.startswith("error: "), result.err
    assert sum(x.startswith(("error:", "warning:")) for x in result.err_lines) == 1
    for word in [*words, "majority 0.5000", f"nothing was written to {out}", "--epochs"]:
        assert word in line, word
    assert_nothing_written(out)


def test_require_baseline_exits_1_when_a_baseline_beats_a_model_above_chance(
    cli: CliRunner,
    tmp_path: Path,
    chance_data: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgelstm.training.evaluation

    # Every model scores exactly 0.5 on chance_data's test split. Baselines of majority 0.25
    # (0.325 clears chance) and 1-NN ED 0.75 put it above chance but below the strongest.
    def baselines(train: SequenceSet, test: SequenceSet, **_: float) -> BaselineAccuracies:
        return BaselineAccuracies(0.25, 0.75, None, "skipped: budget")

    monkeypatch.setattr(edgelstm.training.evaluation, "classification_baselines", baselines)
    data, test = chance_data
    out = tmp_path / "run"
    result = cli(
        "train", "--task", "classify", "--data", data, "--test", test, "--out", out,
        *TINY, "--require-baseline",
    )  # fmt: skip
    assert result.code == 1, result.err
    assert result.out == ""
    assert sum(x.startswith(("error:", "warning:")) for x in result.err_lines) == 1
    assert result.err_lines[-1].startswith(
        "error: test accuracy 0.5000 is worse than the strongest baseline, 1-NN ED 0.7500 "
        "(--require-baseline) (baselines on the same test split: majority 0.2500, "
        f"1-NN ED 0.7500, 1-NN DTW skipped); nothing was written to {out}. Try "
    ), result.err
    assert_nothing_written(out)


def test_failed_check_leaves_an_existing_checkpoint_untouched(
    tmp_path: Path, chance_data: tuple[Path, Path]
) -> None:
    from edgelstm.training.trainer import train

    data, test = chance_data
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("old result")
    with pytest.raises(CheckFailedError, match="--require-baseline") as exc:
        train(
            "classify", data=data, test=test, out=out, overwrite=True,
            require_baseline=True, **TINY_KW,
        )  # fmt: skip
    assert exc.value.exit_code == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_min_accuracy_on_a_forecast_is_refused_before_training(
    cli: CliRunner, tmp_path: Path, forecast_csv: Path
) -> None:
    out = tmp_path / "run"
    result = cli(
        "train", "--task", "forecast", "--data", forecast_csv, "--out", out,
        "--min-accuracy", "0.5",
    )  # fmt: skip
    assert result.code == 2
    assert result.err_lines == [
        "error: --min-accuracy applies to classify (test accuracy), anomaly (test AUROC) "
        "and tag (frame macro F1); a forecast is scored by its MAE: use --require-baseline "
        "to require beating the seasonal-naive forecast"
    ]
    assert_nothing_written(out)


def test_anomaly_checks_need_labelled_test_data(tmp_path: Path, anomaly_csv: Path) -> None:
    from conftest import write_anomaly_csv

    from edgelstm.training.trainer import train

    unlabelled = write_anomaly_csv(tmp_path / "normal.csv", spike=False)
    with pytest.raises(InvalidInputError, match="no labels marking both"):
        train(
            "anomaly", data=anomaly_csv, test=unlabelled, out=tmp_path / "run",
            lookback=16, min_accuracy=0.5, **TINY_KW,
        )  # fmt: skip
    assert_nothing_written(tmp_path / "run")
