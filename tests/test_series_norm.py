"""Per-series normalisation (``ModelConfig.series_norm``): padding-free statistics, ONNX
export, the streaming refusal and ``--arch auto``'s rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY, CliRunner, single_thread, write_classify_npz

from edgelstm.config import ModelConfig
from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.training.architecture import DataFacts, choose_settings
from edgelstm.training.models import SequenceModel, build_model

FEATURES = 2


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _model(**extra: Any) -> SequenceModel:
    settings: dict[str, Any] = {"arch": "lstm-fcn", "frontend": "conv", "frontend_stride": 2}
    settings.update(frontend_kernel=4, pooling="mean", fcn_filters=(4, 6, 4))
    settings.update(extra)
    config = ModelConfig(
        task="classify",
        input_size=FEATURES,
        num_classes=3,
        hidden_size=5,
        num_layers=1,
        series_norm=True,
        **settings,
    )
    torch.manual_seed(0)
    return build_model(config).eval()


def _sequences(lengths: tuple[int, ...]) -> list[torch.Tensor]:
    rng = np.random.default_rng(3)
    return [
        torch.from_numpy((rng.standard_normal((n, FEATURES)) * 4 + 7).astype(np.float32))
        for n in lengths
    ]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="lstm-fcn-conv-mean"),
        pytest.param({"arch": "lstm", "frontend": "none", "pooling": "last"}, id="lstm-last"),
    ],
)
def test_padded_batch_equals_each_sequence_alone(extra: dict[str, Any]) -> None:
    model = _model(**extra)
    sequences = _sequences((9, 14, 5))
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=50.0)
    with torch.no_grad():
        batch = model(padded, torch.tensor([len(s) for s in sequences]))
        alone = torch.cat([model(s[None]) for s in sequences])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)


def test_a_series_gain_and_offset_do_not_change_the_output() -> None:
    model = _model()
    (x,) = _sequences((12,))
    gain = torch.tensor([3.0, 0.2])
    offset = torch.tensor([-5.0, 40.0])
    with torch.no_grad():
        torch.testing.assert_close(
            model(x[None] * gain + offset), model(x[None]), atol=1e-4, rtol=0
        )


def test_export_validates_against_pytorch(tmp_path: Path) -> None:
    result = export(_model(), tmp_path / "m.onnx")
    assert result.report.passed, result.report.summary()


def test_streaming_export_is_refused_with_the_reason(tmp_path: Path) -> None:
    model = _model(arch="lstm", pooling="last")
    with pytest.raises(InvalidInputError, match="per-series normalisation") as info:
        export(model, tmp_path / "s.onnx", streaming=True)
    assert "--no-series-norm" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_only_classifiers_take_it() -> None:
    with pytest.raises(
        InvalidInputError, match=r"series_norm \(--series-norm\) applies to classify only"
    ):
        ModelConfig(task="tag", input_size=1, num_classes=2, series_norm=True)


def test_describe_mentions_it() -> None:
    assert "per-series normalisation" in _model().config.describe()


def _facts(channels: int, length: int) -> DataFacts:
    return DataFacts("classify", examples=36, median_length=length, channels=channels, classes=3)


def test_auto_normalises_long_univariate_series() -> None:
    choice = choose_settings(_facts(channels=1, length=251))
    assert choice.settings["series_norm"] is True
    assert any("per-series normalisation" in reason for reason in choice.reasons)


@pytest.mark.parametrize(("channels", "length"), [(3, 251), (1, 24)])
def test_auto_leaves_multivariate_and_short_series_as_they_are(channels: int, length: int) -> None:
    assert "series_norm" not in choose_settings(_facts(channels, length)).settings


@pytest.mark.parametrize(
    ("flag", "expected"),
    [pytest.param((), True, id="auto"), pytest.param(("--no-series-norm",), False, id="off")],
)
def test_cli_flag_overrides_auto(
    cli: CliRunner, tmp_path: Path, flag: tuple[str, ...], expected: bool
) -> None:
    # One long channel: auto chooses per-series normalisation unless told otherwise.
    data = write_classify_npz(tmp_path / "uni.npz", n=24, steps=160, features=1)
    out = tmp_path / "run"
    args = ["--fcn-filters", "4,6,4", *flag]
    result = cli("train", "--task", "classify", "--data", data, "--out", out, *TINY, *args)
    assert result.code == 0, result.err
    assert ("per-series normalisation" in result.err) is True
    assert ("used instead: series_norm=False" in result.err) is not expected
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["series_norm"] is expected
