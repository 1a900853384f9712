"""Built-in datasets: the registry, name lookup, and the real data aeon bundles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgelstm.data.datasets import (
    DatasetSplit,
    dataset_names,
    dataset_table_rows,
    get_dataset_spec,
    list_datasets,
    load_dataset,
)
from edgelstm.data.types import SequenceSet, Series
from edgelstm.errors import DatasetNotFoundError, InvalidInputError


def test_registry_is_exactly_the_ten() -> None:
    specs = list_datasets()
    assert [s.name for s in specs] == [
        "JapaneseVowels",
        "BasicMotions",
        "ACSF1",
        "OSULeaf",
        "ItalyPowerDemand",
        "Airline",
        "KDD-TSAD_135",
        "ActivityStreams",
        "SpeakerTurns",
        "DigitStrings",
    ]
    assert [s.task for s in specs] == ["classify"] * 5 + [
        "forecast",
        "anomaly",
        "tag",
        "tag",
        "transcribe",
    ]
    assert dataset_names() == [s.name for s in specs]
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs[0].name = "x"  # type: ignore[misc]


def test_lookup_ignores_case() -> None:
    assert get_dataset_spec("japanesevowels").name == "JapaneseVowels"
    assert get_dataset_spec("kdd-tsad_135").task == "anomaly"


def test_unknown_name_suggests_close_one() -> None:
    with pytest.raises(DatasetNotFoundError) as exc:
        get_dataset_spec("BasicMotion")
    message = str(exc.value)
    assert "did you mean 'BasicMotions'" in message
    assert "JapaneseVowels" in message
    assert "edgelstm train --list-datasets" in message
    assert isinstance(exc.value, InvalidInputError)  # exit code 2 at the CLI


def test_unknown_name_without_close_match() -> None:
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset("mnist")
    assert "did you mean" not in str(exc.value)
    assert "Airline" in str(exc.value)


def _check_sequences(data: SequenceSet | Series, count: int, features: int) -> SequenceSet:
    assert isinstance(data, SequenceSet)
    assert len(data) == count
    assert data.num_features == features
    assert all(s.dtype == np.float32 and s.shape[1] == features for s in data.sequences)
    assert all(np.isfinite(s).all() for s in data.sequences)
    assert data.labels is not None
    assert len(data.labels) == count
    return data


def test_japanese_vowels() -> None:
    split = load_dataset("JapaneseVowels")
    train = _check_sequences(split.train, 270, 12)
    test = _check_sequences(split.test, 370, 12)
    assert train.feature_names == tuple(f"cepstrum_{i}" for i in range(12))
    assert len(np.unique(train.labels)) == 9  # type: ignore[arg-type]
    lengths = np.concatenate([train.lengths, test.lengths])
    assert (lengths.min(), lengths.max()) == (7, 29)
    assert split.test_start is None


def test_basic_motions() -> None:
    split = load_dataset("BasicMotions")
    train = _check_sequences(split.train, 40, 6)
    _check_sequences(split.test, 40, 6)
    assert train.feature_names == ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    assert set(train.lengths.tolist()) == {100}
    assert len(np.unique(train.labels)) == 4  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "sizes", "length", "classes", "feature"),
    [
        ("ACSF1", (100, 100), 1460, 10, "power"),
        ("OSULeaf", (200, 242), 427, 6, "outline"),
        ("ItalyPowerDemand", (67, 1029), 24, 2, "demand"),
    ],
)
def test_univariate_ucr_sets(
    name: str, sizes: tuple[int, int], length: int, classes: int, feature: str
) -> None:
    split = load_dataset(name)
    train = _check_sequences(split.train, sizes[0], 1)
    test = _check_sequences(split.test, sizes[1], 1)
    assert train.feature_names == test.feature_names == (feature,)
    assert set(np.concatenate([train.lengths, test.lengths]).tolist()) == {length}
    assert len(np.unique(train.labels)) == classes  # type: ignore[arg-type]
    assert set(test.labels.tolist()) <= set(train.labels.tolist())  # type: ignore[union-attr]
    assert split.test_start is None


def test_a_bundled_file_aeon_dropped_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import aeon.datasets

    from edgelstm.errors import MissingDependencyError

    # aeon 1.7 plans to stop bundling ACSF1 and OSULeaf: pretend its data folder is empty.
    monkeypatch.setattr(aeon.datasets, "__file__", str(tmp_path / "__init__.py"))
    with pytest.raises(MissingDependencyError) as exc:
        load_dataset("OSULeaf")
    message = str(exc.value)
    assert "does not bundle OSULeaf" in message
    assert "aeon>=1.0,<1.7" in message
    assert "--data/--test" in message


def test_airline() -> None:
    split = load_dataset("Airline")
    assert isinstance(split.train, Series)
    assert isinstance(split.test, Series)
    assert split.test.values.shape == (144, 1)
    assert split.train.values.shape == (120, 1)
    assert split.test_start == 120
    assert split.test.values.dtype == np.float32
    np.testing.assert_array_equal(split.train.values, split.test.values[:120])
    assert split.test.values[0, 0] == 112.0  # January 1949, the classic first value


def test_kdd_tsad_135() -> None:
    split = load_dataset("KDD-TSAD_135")
    assert isinstance(split.train, Series)
    assert isinstance(split.test, Series)
    assert len(split.train) == 1200
    assert len(split.test) == 7501
    assert split.test_start == 1200
    assert split.train.labels is not None
    assert split.train.labels.sum() == 0
    assert split.test.labels is not None
    assert split.test.labels.dtype == np.int64
    assert int(split.test.labels.sum()) == 12
    anomalous = np.flatnonzero(split.test.labels)
    assert (anomalous[0], anomalous[-1]) == (4187, 4198)
    np.testing.assert_array_equal(split.train.values, split.test.values[:1200])


def test_table_rows() -> None:
    rows = dataset_table_rows()
    assert [r["name"] for r in rows] == dataset_names()
    keys = {"name", "task", "domain", "train", "test", "length", "features", "source"}
    assert all(set(r) == keys for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["JapaneseVowels"]["length"] == "7-29"
    assert by_name["JapaneseVowels"]["train"] == "270 sequences"
    assert by_name["BasicMotions"]["features"] == "6"
    assert by_name["ACSF1"]["length"] == "1460"
    assert by_name["ItalyPowerDemand"]["test"] == "1029 sequences"
    assert by_name["Airline"]["test"] == "24 steps scored (of 144)"


def test_split_is_frozen() -> None:
    split = load_dataset("Airline")
    assert isinstance(split, DatasetSplit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.test_start = 0  # type: ignore[misc]
