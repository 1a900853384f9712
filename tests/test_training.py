"""The Python training API: checkpoint layout, metrics, determinism, round trips, normalisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import (
    TINY_KW,
    WINDOW_KW,
    single_thread,
    write_anomaly_csv,
    write_classify_npz,
    write_forecast_csv,
)

from edgelstm.config import RunRecord, from_dict
from edgelstm.data.csv_files import read_csv_series
from edgelstm.errors import InvalidInputError
from edgelstm.training.checkpoint import load_checkpoint
from edgelstm.training.trainer import TrainResult, train

CHECKPOINT_FILES = {"config.json", "model.safetensors", "metrics.json", "checksums.json"}
CLASSIFY_KEYS = {"accuracy", "macro_f1"}
FORECAST_KEYS = {"mae", "rmse", "smape", "baseline_mae", "baseline_rmse", "baseline_smape"}
ANOMALY_KEYS = {"threshold", "auroc", "f1", "top_score_in_anomaly"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _train(task: str, data: Path, out: Path, **kwargs: Any) -> TrainResult:
    options: dict[str, Any] = {**TINY_KW, **(WINDOW_KW if task != "classify" else {})}
    if task == "anomaly":
        options.pop("horizon")
    options.update(kwargs)
    return train(task, data=data, out=out, **options)


def _data_for(task: str, request: pytest.FixtureRequest) -> Path:
    name = {"classify": "classify_npz", "forecast": "forecast_csv", "anomaly": "anomaly_csv"}
    path: Path = request.getfixturevalue(name[task])
    return path


# --------------------------------------------------------------------------------------------
# layout and metrics


@pytest.mark.parametrize(
    ("task", "keys"),
    [("classify", CLASSIFY_KEYS), ("forecast", FORECAST_KEYS), ("anomaly", ANOMALY_KEYS)],
)
def test_train_writes_checkpoint_with_task_metrics(
    task: str, keys: set[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "run"
    result = _train(task, _data_for(task, request), out)

    assert result.out == out
    assert {p.name for p in out.iterdir()} == CHECKPOINT_FILES
    assert keys <= set(result.metrics), f"missing {keys - set(result.metrics)}"
    # metrics.json is exactly what the API returned, config.json is the record.
    assert json.loads((out / "metrics.json").read_text()) == result.metrics
    record = from_dict(RunRecord, json.loads((out / "config.json").read_text()))
    assert record == result.record
    assert record.model.task == task
    assert record.model.hidden_size == 8
    assert record.model.num_layers == 1
    # Nothing else (temporary folders) is left next to the checkpoint.
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_classify_metrics_are_fractions(trained_classify: TrainResult) -> None:
    for key in CLASSIFY_KEYS:
        assert 0.0 <= trained_classify.metrics[key] <= 1.0
    assert trained_classify.record.class_labels == ("0", "1")
    assert trained_classify.record.feature_names == ("f0", "f1", "f2")
    assert trained_classify.record.dataset.variable_length is True


def test_forecast_metrics_are_consistent(tmp_path: Path, forecast_csv: Path) -> None:
    metrics = _train("forecast", forecast_csv, tmp_path / "run", target="load").metrics
    for prefix in ("", "baseline_"):
        assert metrics[f"{prefix}mae"] >= 0
        # RMSE >= MAE holds for any set of errors.
        assert metrics[f"{prefix}rmse"] >= metrics[f"{prefix}mae"]
        assert 0 <= metrics[f"{prefix}smape"] <= 200


# --------------------------------------------------------------------------------------------
# the fixtures are learnt: each task beats the trivial answer by a wide margin
# (thresholds checked over seeds 0-9; the tiny 2-epoch TINY runs do not clear them)


def test_classifier_beats_the_majority_class(tmp_path: Path) -> None:
    train_npz = write_classify_npz(tmp_path / "train.npz")
    test_npz = write_classify_npz(tmp_path / "test.npz", n=21, seed=5)
    with np.load(test_npz) as arrays:
        majority = np.bincount(arrays["y"]).max() / len(arrays["y"])  # 11 of 21
    result = _train("classify", train_npz, tmp_path / "run", test=test_npz, epochs=10)
    # Every seed 0-9 scores 1.0 (5 epochs already miss with seed 5: 0.48).
    assert result.metrics["accuracy"] >= 0.9 > majority + 0.3, (result.metrics, majority)
    assert result.metrics["macro_f1"] >= 0.9, result.metrics


def test_forecaster_beats_the_naive_baseline(tmp_path: Path, forecast_csv: Path) -> None:
    metrics = _train("forecast", forecast_csv, tmp_path / "run", hidden=16, epochs=150).metrics
    # Seeds 0-7: MAE 0.11-0.17 and RMSE 0.14-0.22 against the naive 0.277 and 0.337 (ratios
    # <= 0.65); the 2-epoch TINY run is 3x worse than the baseline.
    assert metrics["mae"] < 0.8 * metrics["baseline_mae"], metrics
    assert metrics["rmse"] < 0.8 * metrics["baseline_rmse"], metrics


def test_anomaly_model_flags_the_spike(tmp_path: Path, anomaly_csv: Path) -> None:
    normal = write_anomaly_csv(tmp_path / "normal.csv", seed=1, spike=False)
    result = _train("anomaly", normal, tmp_path / "run", test=anomaly_csv, epochs=20)
    metrics = result.metrics
    # Trained on normal data, scored on the fixture: the spike (steps 150-157) gets the top
    # score and is what the threshold flags. Seeds 0-9: AUROC 1.0, F1 0.84-1.0 (at most three
    # neighbouring steps flagged too).
    assert metrics["top_score_in_anomaly"] is True, metrics
    assert 150 <= metrics["top_score_index"] <= 157, metrics
    assert metrics["auroc"] >= 0.95, metrics
    assert metrics["f1"] >= 0.75, metrics


def test_forecast_target_column_is_recorded(tmp_path: Path, forecast_csv: Path) -> None:
    result = _train("forecast", forecast_csv, tmp_path / "run", target="temp")
    assert result.record.target_names == ("temp",)
    assert result.record.model.target_indices == (1,)
    assert result.record.model.horizon == 4


def test_anomaly_threshold_is_recorded(tmp_path: Path, anomaly_csv: Path) -> None:
    result = _train("anomaly", anomaly_csv, tmp_path / "run")
    assert result.record.anomaly_threshold == result.metrics["threshold"]
    assert result.record.anomaly_threshold is not None
    assert result.record.anomaly_threshold > 0
    # The spike is in the training series too, so the threshold sits above it (nothing is
    # flagged), but it still gets the top score.
    assert result.metrics["top_score_in_anomaly"] is True, result.metrics
    assert result.metrics["auroc"] >= 0.95, result.metrics
    # The label column is a label, not an input feature.
    assert result.record.feature_names == ("value",)


def test_anomaly_without_labels_has_no_label_metrics(tmp_path: Path, anomaly_csv: Path) -> None:
    unlabelled = tmp_path / "unlabelled.csv"
    rows = anomaly_csv.read_text().splitlines()
    unlabelled.write_text("\n".join(r.split(",")[0] for r in rows) + "\n")
    metrics = _train("anomaly", unlabelled, tmp_path / "run").metrics
    assert "threshold" in metrics
    assert not {"auroc", "f1", "top_score_in_anomaly"} & set(metrics)


def test_progress_callback_sees_every_epoch(tmp_path: Path, forecast_csv: Path) -> None:
    calls: list[tuple[int, int, float, str]] = []
    _train(
        "forecast",
        forecast_csv,
        tmp_path / "run",
        progress=lambda *args: calls.append(args),
    )
    # Forecast runs train with early stopping, then refit on train + validation data.
    training = [c for c in calls if not c[3].startswith("refit")]
    refit = [c for c in calls if c[3].startswith("refit")]
    assert [c[0] for c in training] == [1, 2]
    assert [c[0] for c in refit] == [1, 2]
    assert all(c[1] == 2 and np.isfinite(c[2]) for c in calls)


# --------------------------------------------------------------------------------------------
# determinism


def test_same_seed_gives_identical_weights(tmp_path: Path, classify_npz: Path) -> None:
    a = _train("classify", classify_npz, tmp_path / "a", seed=3)
    b = _train("classify", classify_npz, tmp_path / "b", seed=3)
    c = _train("classify", classify_npz, tmp_path / "c", seed=4)
    weights = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in "abc"}
    assert weights["a"] == weights["b"]
    assert a.metrics == b.metrics
    assert weights["a"] != weights["c"]
    state_a = load_checkpoint(tmp_path / "a").model.state_dict()
    state_c = load_checkpoint(tmp_path / "c").model.state_dict()
    assert any(not torch.equal(state_a[k], state_c[k]) for k in state_a)
    assert c.record.train.seed == 4


# --------------------------------------------------------------------------------------------
# architectures


@pytest.mark.parametrize(("arch", "bidirectional"), [("gru", False), ("lstm", True), ("gru", True)])
def test_classify_architectures(
    arch: str, bidirectional: bool, tmp_path: Path, classify_npz: Path
) -> None:
    result = _train(
        "classify",
        classify_npz,
        tmp_path / "run",
        arch=arch,
        bidirectional=bidirectional,
        epochs=10,
    )
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.record.model.arch == arch
    assert ckpt.record.model.bidirectional is bidirectional
    rnn_type = torch.nn.GRU if arch == "gru" else torch.nn.LSTM
    assert isinstance(ckpt.model.rnn, rnn_type)
    assert ("rnn.weight_ih_l0_reverse" in ckpt.model.state_dict()) is bidirectional
    # Each architecture learns the fixture (seeds 0-4 all score 1.0 at 10 epochs; the test
    # split is balanced, so the majority class scores 0.5).
    assert result.metrics["accuracy"] >= 0.9, result.metrics


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"arch": "lstm-fcn", "fcn_filters": (8, 16, 8)}, id="lstm-fcn"),
        pytest.param(
            {"frontend": "conv", "frontend_stride": 3, "frontend_kernel": 4}, id="conv-front-end"
        ),
    ],
)
def test_conv_models_train_on_variable_lengths_and_ignore_padding(
    options: dict[str, Any], tmp_path: Path, classify_npz: Path
) -> None:
    result = _train("classify", classify_npz, tmp_path / "run", epochs=6, **options)
    assert result.metrics["accuracy"] >= 0.9, result.metrics
    model = load_checkpoint(tmp_path / "run").model.eval()
    config = model.config
    assert (config.arch, config.frontend) == (
        options.get("arch", "lstm"),
        options.get("frontend", "none"),
    )
    # A sequence padded in a batch (with junk after its end) gives what it gives alone.
    lengths = torch.tensor([20, 13, 7, 1, 11])
    x = torch.randn(5, 20, 3, generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 7.0
    with torch.no_grad():
        batched = model(x, lengths)
        alone = torch.cat([model(x[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_lstm_fcn_is_a_classifier_only(tmp_path: Path, forecast_csv: Path) -> None:
    with pytest.raises(InvalidInputError, match="lstm-fcn is a classifier"):
        _train("forecast", forecast_csv, tmp_path / "run", arch="lstm-fcn")
    assert not (tmp_path / "run").exists()


def test_anomaly_bidirectional_is_refused(tmp_path: Path, anomaly_csv: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(InvalidInputError, match="bidirectional"):
        _train("anomaly", anomaly_csv, out, bidirectional=True)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_and_preset_are_refused(tmp_path: Path, classify_npz: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown task 'regress'"):
        train("regress", data=classify_npz, out=tmp_path / "a")
    with pytest.raises(InvalidInputError, match="unknown preset 'huge'"):
        train("classify", data=classify_npz, out=tmp_path / "b", preset="huge")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# checkpoint round trip


@pytest.mark.parametrize("task", ["classify", "forecast", "anomaly"])
def test_load_checkpoint_predicts_like_the_trained_model(
    task: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelstm.training.trainer as training

    captured: dict[str, Any] = {}
    real_save = training.save_checkpoint  # type: ignore[attr-defined]

    def capture(out: Path, record: RunRecord, model: Any, *args: Any, **kwargs: Any) -> None:
        captured["model"] = model
        real_save(out, record, model, *args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", capture)
    result = _train(task, _data_for(task, request), tmp_path / "run")
    trained = captured["model"]
    ckpt = load_checkpoint(tmp_path / "run")

    assert ckpt.record == result.record
    assert ckpt.metrics == result.metrics
    assert not ckpt.model.training
    features = result.record.model.input_size
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(5, 16, features)).astype("f4"))
    lengths = torch.tensor([16, 9, 3, 12, 16]) if task == "classify" else None
    trained.eval()
    with torch.no_grad():
        expected = trained(x, lengths)
        actual = ckpt.model(x, lengths)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# normalisation comes from training data only


def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.mean(axis=0, dtype=np.float64), values.std(axis=0, dtype=np.float64)


def test_forecast_normalization_uses_train_file_not_test_file(tmp_path: Path) -> None:
    train_csv = write_forecast_csv(tmp_path / "train.csv", seed=1)
    test_csv = write_forecast_csv(tmp_path / "test.csv", steps=60, seed=2, offset=100.0)
    result = train(
        "forecast", data=train_csv, test=test_csv, out=tmp_path / "run", **TINY_KW, **WINDOW_KW
    )
    mean, std = _stats(read_csv_series(train_csv).values)
    norm = load_checkpoint(tmp_path / "run").record.normalization
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(norm.std, std, rtol=1e-9, atol=1e-12)
    assert result.record.normalization == norm
    assert max(abs(v) for v in norm.mean) < 1.0  # the test file sits at 100


def test_forecast_normalization_excludes_held_out_tail(tmp_path: Path) -> None:
    # One file: the last 20 % is the test split; make it wildly different.
    path = tmp_path / "series.csv"
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 2))
    values[160:] += 1000.0
    np.savetxt(path, values, delimiter=",", header="a,b", comments="", fmt="%.6f")
    result = train("forecast", data=path, out=tmp_path / "run", **TINY_KW, **WINDOW_KW)
    mean, std = _stats(read_csv_series(path).values[:160])
    np.testing.assert_allclose(result.record.normalization.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.record.normalization.std, std, rtol=1e-9, atol=1e-12)


def test_classify_normalization_uses_training_sequences(tmp_path: Path) -> None:
    train_npz = write_classify_npz(tmp_path / "train.npz", seed=1)
    test_npz = write_classify_npz(tmp_path / "test.npz", n=20, seed=2, offset=50.0)
    result = train("classify", data=train_npz, test=test_npz, out=tmp_path / "run", **TINY_KW)
    with np.load(train_npz) as arrays:
        steps = np.concatenate([x[:n] for x, n in zip(arrays["X"], arrays["lengths"], strict=True)])
    mean, std = _stats(steps)
    norm = result.record.normalization
    # Stats come from the training part without the validation hold-out: close, not equal.
    np.testing.assert_allclose(norm.mean, mean, atol=0.3)
    np.testing.assert_allclose(norm.std, std, rtol=0.2)
    assert result.record.dataset.test_size == 20


def test_weights_that_do_not_fit_the_config_are_a_checkpoint_error(
    tmp_path: Path, trained_classify: TrainResult
) -> None:
    import shutil

    from edgelstm.errors import CheckpointError

    broken = tmp_path / "broken"
    shutil.copytree(trained_classify.out, broken)
    config = json.loads((broken / "config.json").read_text())
    config["model"]["hidden_size"] += 4
    (broken / "config.json").write_text(json.dumps(config))
    # The checksum manifest catches the edit first; without one (older checkpoints) the
    # shapes themselves still disagree.
    with pytest.raises(CheckpointError, match=r"config\.json does not match the checksum"):
        load_checkpoint(broken)
    (broken / "checksums.json").unlink()
    with pytest.raises(CheckpointError, match=r"does not match config\.json"):
        load_checkpoint(broken)


def test_auto_chooses_from_the_data_shape_not_the_name() -> None:
    from edgelstm.training.architecture import DataFacts, choose_settings

    short = choose_settings(DataFacts("classify", examples=270, median_length=15, channels=12))
    assert short.settings == {"arch": "lstm", "frontend": "none", "pooling": "last"}
    long = choose_settings(DataFacts("classify", examples=40, median_length=427, channels=1))
    assert long.settings["arch"] == "lstm-fcn"
    assert long.settings["frontend"] == "conv"
    assert long.settings["frontend_stride"] == 9  # ceil(427 / 48): about 48 recurrent steps
    assert long.settings["frontend_kernel"] == 18
    assert long.settings["pooling"] == "mean"
    assert any("427 steps" in why for why in long.reasons)
    window = choose_settings(DataFacts("anomaly", examples=500, median_length=400, channels=1))
    assert window.settings == {"arch": "lstm", "frontend": "none"}


def test_auto_is_recorded_and_explicit_settings_win(tmp_path: Path) -> None:
    long_npz = write_classify_npz(tmp_path / "long.npz", n=24, steps=130)
    tiny: dict[str, Any] = {"hidden": 4, "layers": 1, "epochs": 1}
    auto = train("classify", data=long_npz, out=tmp_path / "a", **tiny)
    model = auto.record.model
    assert (model.arch, model.frontend, model.pooling) == ("lstm-fcn", "conv", "mean")
    assert auto.auto is not None and auto.record.auto == auto.auto.to_json()
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["auto"]["chosen"]["frontend"] == "conv"
    assert saved["auto"]["reasons"] and saved["auto"]["data"]["median_length"] >= 65
    # The optimisation settings are explained too; a size typed by the user is not.
    assert any(why.startswith("batch ") for why in saved["auto"]["reasons"])
    assert any("per-feature normalisation" in why for why in saved["auto"]["reasons"])
    kept = train(
        "classify", data=long_npz, out=tmp_path / "b", pooling="last", batch_size=4, **tiny
    )
    assert (kept.record.model.frontend, kept.record.model.pooling) == ("conv", "last")
    assert kept.auto is not None
    assert not any(why.startswith("batch ") for why in kept.auto.reasons)
    chosen = train("classify", data=long_npz, out=tmp_path / "c", arch="lstm", **tiny)
    assert chosen.auto is None and chosen.record.auto is None
    assert (chosen.record.model.frontend, chosen.record.model.pooling) == ("none", "last")
