"""Configs: validation messages name the field; records survive a JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from edgelstm.config import (
    TRAIN_PRESETS,
    DatasetInfo,
    ModelConfig,
    Normalization,
    RunRecord,
    TrainConfig,
    from_dict,
    to_dict,
)
from edgelstm.errors import CheckpointError, InvalidInputError


def make_record(**model: Any) -> RunRecord:
    return RunRecord(
        model=ModelConfig(task="forecast", input_size=3, horizon=4, target_indices=(0, 2), **model),
        train=TrainConfig(epochs=5, lookback=16, horizon=4),
        dataset=DatasetInfo(
            name="data.csv",
            source="/tmp/data.csv",
            train_size=100,
            test_size=20,
            details={"lookback": 16, "season": 1},
        ),
        feature_names=("a", "b", "c"),
        normalization=Normalization(mean=(0.5, -1.0, 2.0), std=(1.0, 2.0, 0.25)),
        target_names=("a", "c"),
        edgelstm_version="0.1.0",
        torch_version="2.13",
    )


# --------------------------------------------------------------------------------------------
# ModelConfig


def test_model_config_defaults() -> None:
    cfg = ModelConfig(task="classify", input_size=12, num_classes=9)
    assert (cfg.arch, cfg.hidden_size, cfg.num_layers, cfg.pooling) == ("lstm", 128, 2, "last")
    assert cfg.num_directions == 1
    assert dataclasses.replace(cfg, bidirectional=True).num_directions == 2


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"task": "regress"}, ("task", "'regress'", "classify")),
        ({"arch": "rnn"}, ("arch", "'rnn'", "lstm", "gru")),
        ({"pooling": "max"}, ("pooling", "'max'")),
        ({"input_size": 0}, ("input_size", ">= 1", "got 0")),
        ({"hidden_size": 0}, ("hidden size", ">= 1", "got 0")),
        ({"num_layers": 0}, ("layers", ">= 1", "got 0")),
        ({"dropout": 1.0}, ("dropout", "[0, 1)", "got 1.0")),
        ({"dropout": -0.1}, ("dropout", "got -0.1")),
        ({"num_classes": 1}, ("classes", "at least 2", "got 1")),
    ],
)
def test_model_config_rejects_bad_values(kwargs: dict[str, Any], words: tuple[str, ...]) -> None:
    base: dict[str, Any] = {"task": "classify", "input_size": 3, "num_classes": 2}
    with pytest.raises(InvalidInputError) as exc:
        ModelConfig(**{**base, **kwargs})
    for word in words:
        assert word in str(exc.value), f"{word!r} not in {exc.value}"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"horizon": 0, "target_indices": (0,)}, ("horizon", "got 0")),
        ({"horizon": 2, "target_indices": ()}, ("target",)),
        ({"horizon": 2, "target_indices": (0, 3)}, ("target indices [3]", "0..2")),
    ],
)
def test_forecast_model_config(kwargs: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInputError) as exc:
        ModelConfig(task="forecast", input_size=3, **kwargs)
    for word in words:
        assert word in str(exc.value)


def test_anomaly_cannot_be_bidirectional() -> None:
    ModelConfig(task="anomaly", input_size=2)  # fine
    with pytest.raises(InvalidInputError, match="bidirectional"):
        ModelConfig(task="anomaly", input_size=2, bidirectional=True)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(InvalidInputError) as exc:
        ModelConfig(task="classify", input_size=0, hidden_size=0, num_classes=2)
    assert "input_size" in str(exc.value)
    assert "hidden size" in str(exc.value)


def test_configs_are_frozen() -> None:
    cfg = ModelConfig(task="classify", input_size=3, num_classes=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRAIN_PRESETS["default"].epochs = 1  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# TrainConfig


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"epochs": 0}, ("epochs", "got 0")),
        ({"batch_size": 0}, ("batch size", "got 0")),
        ({"learning_rate": 0.0}, ("learning rate", "> 0")),
        ({"learning_rate": -1e-3}, ("learning rate",)),
        ({"val_fraction": 0.95}, ("validation fraction", "0.95")),
        ({"val_fraction": -0.1}, ("validation fraction",)),
        ({"lookback": 1}, ("lookback", ">= 2", "got 1")),
        ({"horizon": 0}, ("horizon", "got 0")),
    ],
)
def test_train_config_rejects_bad_values(kwargs: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInputError) as exc:
        TrainConfig(**kwargs)
    for word in words:
        assert word in str(exc.value), f"{word!r} not in {exc.value}"


@pytest.mark.parametrize(
    ("field", "value"), [("weight_decay", -1e-4), ("patience", 0), ("grad_clip", 0.0)]
)
def test_train_config_rejects_unchecked_fields(field: str, value: float) -> None:
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(InvalidInputError, match=field.replace("_", ".")):
        TrainConfig(**kwargs)


def test_presets() -> None:
    assert set(TRAIN_PRESETS) >= {"default", "smoke"}
    assert TRAIN_PRESETS["default"] == TrainConfig()
    assert TRAIN_PRESETS["smoke"].epochs < TRAIN_PRESETS["default"].epochs


# --------------------------------------------------------------------------------------------
# to_dict / from_dict


def test_run_record_round_trip_through_json() -> None:
    record = make_record(arch="gru", bidirectional=True)
    data = json.loads(json.dumps(to_dict(record)))
    assert data["model"]["target_indices"] == [0, 2]  # tuples are JSON lists
    back = from_dict(RunRecord, data)
    assert back == record
    assert isinstance(back.model, ModelConfig)
    assert back.model.target_indices == (0, 2)
    assert back.normalization.std == (1.0, 2.0, 0.25)
    assert back.anomaly_threshold is None


def test_round_trip_keeps_threshold() -> None:
    record = dataclasses.replace(
        make_record(), model=ModelConfig(task="anomaly", input_size=3), anomaly_threshold=0.25
    )
    assert from_dict(RunRecord, json.loads(json.dumps(to_dict(record)))) == record


def test_unknown_key_is_named() -> None:
    data = to_dict(make_record())
    data["colour"] = "blue"
    with pytest.raises(CheckpointError, match=r"unknown keys \['colour'\]"):
        from_dict(RunRecord, data, where="run/config.json")


def test_unknown_nested_key_names_the_path() -> None:
    data = to_dict(make_record())
    data["model"]["attention"] = True
    with pytest.raises(CheckpointError) as exc:
        from_dict(RunRecord, data, where="run/config.json")
    assert "run/config.json.model" in str(exc.value)
    assert "'attention'" in str(exc.value)


def test_missing_key_and_wrong_shapes() -> None:
    data = to_dict(make_record())
    del data["normalization"]
    with pytest.raises(CheckpointError, match="normalization"):
        from_dict(RunRecord, data)
    with pytest.raises(CheckpointError, match="expected an object, got list"):
        from_dict(RunRecord, [1, 2])
    data = to_dict(make_record())
    data["feature_names"] = "abc"
    with pytest.raises(CheckpointError, match="feature_names: expected a list"):
        from_dict(RunRecord, data)


def test_wrong_scalar_type_is_a_checkpoint_error() -> None:
    data = to_dict(make_record())
    data["model"]["hidden_size"] = 8.5
    with pytest.raises(CheckpointError, match="hidden_size"):
        from_dict(RunRecord, data)


def test_conv_options_default_to_the_plain_recurrent_model() -> None:
    # A config.json from before the convolutional models has none of their keys.
    old = {"task": "classify", "input_size": 3, "arch": "gru", "num_classes": 2}
    config = from_dict(ModelConfig, old)
    assert (config.frontend, config.stride, config.cell) == ("none", 1, "gru")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"frontend": "conv", "frontend_stride": 4, "frontend_kernel": 3}, "kernel must be"),
        ({"frontend": "conv", "frontend_channels": 0}, "channels must be"),
        ({"frontend": "fir"}, "frontend must be one of"),
        ({"arch": "lstm-fcn", "fcn_filters": (8, 8)}, "three counts"),
    ],
)
def test_bad_conv_options_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        ModelConfig(task="classify", input_size=3, num_classes=2, **options)


def test_strided_front_end_cannot_serve_anomaly_but_stride_1_can() -> None:
    with pytest.raises(InvalidInputError, match="--frontend-stride 1"):
        ModelConfig(task="anomaly", input_size=3, frontend="conv", frontend_stride=2)
    ModelConfig(task="anomaly", input_size=3, frontend="conv", frontend_stride=1).check_streamable()
