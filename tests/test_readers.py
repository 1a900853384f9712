"""Readers: good files load into the right shapes, every bad file gets a precise message."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgelstm.data.arrays import read_arrays
from edgelstm.data.csv_files import open_csv, read_csv_series
from edgelstm.data.readers import load_training_data, resolve_targets
from edgelstm.data.ts import read_ts
from edgelstm.data.types import SequenceSet, Series, WindowSet
from edgelstm.errors import InvalidInputError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def expect_error(exc: pytest.ExceptionInfo[InvalidInputError], *words: str) -> None:
    """Assert the message of the InvalidInputError just raised holds every word."""
    message = str(exc.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# --------------------------------------------------------------------------------------------
# CSV: good inputs


def test_csv_with_header_drops_time_and_extracts_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "machine.csv",
        "Timestamp,temp,rpm,is_anomaly\n"
        "2024-01-01 00:00,20.5,1000,0\n"
        "2024-01-01 00:01,21.0,1010,1\n"
        "\n"  # a blank line is not a data row
        "2024-01-01 00:02,21.5,990,0\n",
    )
    series = read_csv_series(path)
    assert series.feature_names == ("temp", "rpm")
    assert series.values.dtype == np.float32
    np.testing.assert_array_equal(series.values, [[20.5, 1000], [21.0, 1010], [21.5, 990]])
    assert series.labels is not None
    assert series.labels.dtype == np.int64
    assert series.labels.tolist() == [0, 1, 0]


def test_csv_without_header_uses_default_names(tmp_path: Path) -> None:
    path = write(tmp_path, "plain.csv", "1,2,3\n4,5,6\n")
    series = read_csv_series(path)
    assert series.feature_names == ("f0", "f1", "f2")
    assert series.values.shape == (2, 3)
    assert series.labels is None


def test_csv_excel_bom_and_quoted_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes('\ufeff"date","load"\n2020-01-01,1.5\n'.encode())
    series = read_csv_series(path)
    assert series.feature_names == ("load",)
    assert series.values[:, 0].tolist() == [1.5]


# --------------------------------------------------------------------------------------------
# CSV: bad inputs


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(tmp_path / "nope.csv")
    expect_error(exc, "nope.csv", "not found")


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_csv_empty(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "empty.csv", text))
    expect_error(exc, "empty.csv", "empty")


def test_csv_header_only(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "head.csv", "temp,rpm\n"))
    expect_error(exc, "head.csv", "no data rows")


def test_csv_ragged_row(tmp_path: Path) -> None:
    rows = "a,b,c,d\n" + "1,2,3,4\n" * 5 + "1,2,3\n"
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "ragged.csv", rows))
    expect_error(exc, "ragged.csv", "row 7 has 3 columns, expected 4")


def test_csv_non_numeric_cell(tmp_path: Path) -> None:
    rows = "temp,rpm\n" + "1,2\n" * 10 + "abc,2\n"
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "bad.csv", rows))
    expect_error(exc, "bad.csv", "row 12, column 'temp': 'abc' is not a number")


def test_csv_non_numeric_cell_without_header_names_column_number(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "bad.csv", "1,2\n3,x\n"))
    expect_error(exc, "bad.csv", "row 2, column 2", "'x' is not a number")


def test_csv_header_mixed_with_numbers(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "mixed.csv", "1.0,temp,3\n1,2,3\n"))
    expect_error(exc, "mixed.csv", "row 1", "header row must be all names", "column 1")


@pytest.mark.parametrize(("cell", "word"), [("nan", "'nan'"), ("inf", "'inf'"), ("", "empty")])
def test_csv_nan_inf_empty_refused(tmp_path: Path, cell: str, word: str) -> None:
    path = write(tmp_path, "holes.csv", f"temp,rpm\n1,2\n3,{cell}\n")
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(path)
    expect_error(exc, "holes.csv", "row 3, column 'rpm'", word, "fill or drop")


def test_csv_float32_overflow(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "big.csv", "a\n1\n1e300\n"))
    expect_error(exc, "big.csv", "row 3", "float32")


def test_csv_no_feature_columns(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "nofeat.csv", "time,label\n2020-01-01,0\n"))
    expect_error(exc, "nofeat.csv", "no feature columns")


def test_csv_bad_label_value(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "lab.csv", "x,anomaly\n1,0\n2,2\n"))
    expect_error(exc, "lab.csv", "row 3", "'anomaly'", "0 (normal) or 1")


def test_csv_empty_and_duplicate_header_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "idx.csv", ",a\n0,1\n"))
    expect_error(exc, "idx.csv", "column 1 has no name", "index=False")
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "dup.csv", "a,a\n0,1\n"))
    expect_error(exc, "dup.csv", "columns 1 and 2", "'a'")


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("température\n1\n".encode("latin-1"))
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(path)
    expect_error(exc, "latin.csv", "UTF-8")


@pytest.mark.parametrize(
    ("text", "row"),
    [("# temp,rpm\n1,2\n", "row 1"), ("temp,rpm\n1,2\n#N/A,3\n", "row 3")],
    ids=["savetxt-header", "excel-missing-value"],
)
def test_csv_comment_lines_are_refused(tmp_path: Path, text: str, row: str) -> None:
    """No comment lines in the one CSV dialect: skipping one would drop a time step."""
    with pytest.raises(InvalidInputError) as exc:
        read_csv_series(write(tmp_path, "hash.csv", text))
    expect_error(exc, "hash.csv", row, "starts with '#'", "comments=''")


def test_open_csv_reads_rows_only_when_asked() -> None:
    """The stream reader's contract: the header now, each data row when it is taken."""
    lines = iter(["temp,is_anomaly\n", "\n", "1.5,0\n", "x,1\n"])
    opened = open_csv(lines, "<stdin>")
    assert opened is not None
    layout, rows = opened
    assert layout.feature_names == ("temp",)
    assert next(rows) == (3, [1.5], 0)
    assert next(lines) == "x,1\n"  # the bad row is still unread: nothing was read ahead
    assert open_csv(iter(["\n"]), "<stdin>") is None


# --------------------------------------------------------------------------------------------
# NumPy files


def test_read_arrays_npy_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(6.0).reshape(3, 2))
    assert set(read_arrays(tmp_path / "a.npy")) == {"X"}
    np.savez(tmp_path / "b.npz", X=np.zeros((2, 3)), y=np.array([0, 1]))
    arrays = read_arrays(tmp_path / "b.npz")
    assert set(arrays) == {"X", "y"}
    assert arrays["X"].shape == (2, 3)


def test_read_arrays_refuses_object_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(tmp_path / "obj.npy")
    expect_error(exc, "obj.npy", "object", "refused for safety")
    np.savez(tmp_path / "obj.npz", X=np.array([[1.0]]), y=np.array([None], dtype=object))
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(tmp_path / "obj.npz")
    expect_error(exc, "obj.npz", "refused for safety")


def test_read_arrays_corrupt_and_truncated(tmp_path: Path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(tmp_path / "junk.npy")
    # "corrupt" alone matched this test's own tmp_path; the message names the real problem.
    expect_error(exc, "junk.npy", "not a NumPy .npy file", "np.save(")

    np.save(tmp_path / "cut.npy", np.zeros((100, 10)))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(tmp_path / "cut.npy")
    expect_error(exc, "cut.npy", "corrupt")

    np.savez(tmp_path / "cut.npz", X=np.zeros((100, 10)))
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(tmp_path / "cut.npz")
    expect_error(exc, "cut.npz", "corrupt")


def test_read_arrays_bad_member_crc(tmp_path: Path) -> None:
    path = tmp_path / "crc.npz"
    np.savez(path, X=np.arange(1000.0))
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # flip one payload byte: the zip CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(path)
    expect_error(exc, "crc.npz")


def test_read_arrays_empty_npz(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "none.npz", "w"):
        pass
    with pytest.raises(InvalidInputError) as exc:
        read_arrays(tmp_path / "none.npz")
    expect_error(exc, "none.npz", "no arrays")


# --------------------------------------------------------------------------------------------
# .ts files

TS_EQUAL = """# a comment line
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true up down
@data
1,2,3:4,5,6:up
3,2,1:6,5,4:down
"""

TS_VARIABLE = """@problemName TinyVar
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3,4:5,6,7,8:a
1,2:3,4:b
"""


def test_ts_equal_length(tmp_path: Path) -> None:
    data = read_ts(write(tmp_path, "tiny.ts", TS_EQUAL))
    assert isinstance(data, SequenceSet)
    assert len(data) == 2
    assert data.feature_names == ("dim_0", "dim_1")
    assert data.sequences[0].dtype == np.float32
    # [time, channels]: the first column is channel 0 over time
    np.testing.assert_array_equal(data.sequences[0], [[1, 4], [2, 5], [3, 6]])
    assert data.labels is not None
    assert data.labels.tolist() == ["up", "down"]


def test_ts_variable_length(tmp_path: Path) -> None:
    data = read_ts(write(tmp_path, "var.ts", TS_VARIABLE))
    assert data.lengths.tolist() == [4, 2]
    np.testing.assert_array_equal(data.sequences[1], [[1, 3], [2, 4]])
    assert data.labels is not None
    assert data.labels.tolist() == ["a", "b"]


def test_ts_through_load_training_data(tmp_path: Path) -> None:
    data = load_training_data(write(tmp_path, "var.ts", TS_VARIABLE), task="classify")
    assert isinstance(data, SequenceSet)
    assert len(data) == 2


def test_ts_bad_number(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_ts(write(tmp_path, "bad.ts", TS_EQUAL.replace("3,2,1", "3,x,1")))
    expect_error(exc, "bad.ts", "could not be parsed")


def test_ts_without_data(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        read_ts(write(tmp_path, "garbage.ts", "hello\n1,2,3\n"))
    expect_error(exc, "garbage.ts", "no series found")


def test_ts_missing_values_refused(tmp_path: Path) -> None:
    text = TS_EQUAL.replace("@missing false", "@missing true").replace("3,2,1", "3,?,1")
    with pytest.raises(InvalidInputError) as exc:
        read_ts(write(tmp_path, "gaps.ts", text))
    expect_error(exc, "gaps.ts", "series 2", "time step 2", "fill or drop")


def test_ts_without_labels_cannot_classify(tmp_path: Path) -> None:
    text = TS_EQUAL.replace("@classLabel true up down", "@classLabel false")
    text = text.replace(":up", "").replace(":down", "")
    path = write(tmp_path, "nolab.ts", text)
    assert read_ts(path).labels is None
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="classify")
    expect_error(exc, "nolab.ts", "needs labels")


# --------------------------------------------------------------------------------------------
# classify


def test_classify_npz_with_lengths(tmp_path: Path) -> None:
    X = np.full((3, 5, 2), np.nan)  # NaN padding past `lengths` is never read
    X[0, :5] = 1.0
    X[1, :2] = 2.0
    X[2, :1] = 3.0
    path = tmp_path / "train.npz"
    np.savez(path, X=X, y=np.array(["a", "b", "a"]), lengths=np.array([5, 2, 1]))
    data = load_training_data(path, task="classify")
    assert isinstance(data, SequenceSet)
    assert data.lengths.tolist() == [5, 2, 1]
    assert all(s.dtype == np.float32 and s.shape[1] == 2 for s in data.sequences)
    assert data.labels is not None
    assert data.labels.tolist() == ["a", "b", "a"]


def test_classify_npz_univariate_and_feature_names(tmp_path: Path) -> None:
    path = tmp_path / "uni.npz"
    np.savez(path, X=np.ones((4, 6)), y=np.arange(4), feature_names=np.array(["volts"]))
    data = load_training_data(path, task="classify")
    assert isinstance(data, SequenceSet)
    assert data.sequences[0].shape == (6, 1)
    assert data.feature_names == ("volts",)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_classify_needs_labels(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"nolabels{suffix}"
    if suffix == ".csv":
        path.write_text("1,2\n3,4\n")
    else:
        np.save(path, np.zeros((2, 3, 1)))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="classify")
    expect_error(exc, path.name, "needs labels", ".npz", ".ts")


def test_classify_npz_without_y(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", X=np.zeros((2, 3, 1)))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "x.npz", task="classify")
    expect_error(exc, "x.npz", "needs labels")


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"X": np.zeros((3, 4, 2)), "y": np.arange(2)}, ["y has shape (2,)", "[3]"]),
        ({"X": np.zeros((0, 4, 2)), "y": np.arange(0)}, ["X is empty"]),
        ({"X": np.array([["a", "b"]]), "y": np.arange(1)}, ["dtype", "expected numbers"]),
        ({"X": np.zeros((2, 3, 1, 1)), "y": np.arange(2)}, ["X has shape (2, 3, 1, 1)"]),
        ({"y": np.arange(2)}, ["no array named 'X'"]),
        (
            {"X": np.zeros((2, 3, 1)), "y": np.arange(2), "lengths": np.array([3, 4])},
            ["lengths[1] = 4", "between 1 and", "(3)"],
        ),
        (
            {"X": np.zeros((2, 3, 1)), "y": np.arange(2), "lengths": np.array([0, 3])},
            ["lengths[0] = 0"],
        ),
        (
            {"X": np.zeros((2, 3, 1)), "y": np.arange(2), "lengths": np.array([1.0, 3.0])},
            ["lengths has dtype float64", "integers"],
        ),
    ],
)
def test_classify_npz_errors(
    tmp_path: Path, arrays: dict[str, np.ndarray], words: list[str]
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="classify")
    expect_error(exc, "bad.npz", *words)


def test_classify_nan_location(tmp_path: Path) -> None:
    X = np.zeros((3, 4, 2))
    X[2, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(3))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "nan.npz", task="classify")
    expect_error(exc, "nan.npz", "X[2, 1, 1]", "fill or drop")


def test_classify_nan_inside_length_is_caught(tmp_path: Path) -> None:
    X = np.zeros((2, 4, 1))
    X[1, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", X=X, y=np.arange(2), lengths=np.array([4, 2]))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "inf.npz", task="classify")
    expect_error(exc, "inf.npz", "X[1, 0, 0]")


# --------------------------------------------------------------------------------------------
# forecast


def test_forecast_csv_series_and_target_validation(tmp_path: Path) -> None:
    path = write(tmp_path, "f.csv", "time,temp,rpm\n0,1,2\n1,3,4\n")
    data = load_training_data(path, task="forecast", target="rpm")
    assert isinstance(data, Series)
    assert data.feature_names == ("temp", "rpm")
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="forecast", target="pressure")
    expect_error(exc, "f.csv", "'pressure'", "available columns", "'temp'", "'rpm'")


def test_forecast_npy_series(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.arange(10.0))
    data = load_training_data(tmp_path / "s.npy", task="forecast")
    assert isinstance(data, Series)
    assert data.values.shape == (10, 1)
    assert data.values.dtype == np.float32


def test_forecast_windows_with_target(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    X = np.random.default_rng(0).normal(size=(5, 8, 3))
    np.savez(path, X=X, y=np.zeros((5, 2)), feature_names=np.array(["a", "b", "c"]))
    data = load_training_data(path, task="forecast", target="c")
    assert isinstance(data, WindowSet)
    assert data.inputs.shape == (5, 8, 3)
    assert data.targets.shape == (5, 2, 1)
    assert data.targets.dtype == np.float32
    assert data.target_indices == (2,)


@pytest.mark.parametrize(
    ("y_shape", "extra", "expected"),
    [
        ((5,), {"target_indices": np.array([1])}, ((5, 1, 1), (1,))),
        ((5, 4, 3), {}, ((5, 4, 3), (0, 1, 2))),
        ((5, 4, 2), {"target_indices": np.array([2, 0])}, ((5, 4, 2), (2, 0))),
    ],
)
def test_forecast_window_target_sources(
    tmp_path: Path,
    y_shape: tuple[int, ...],
    extra: dict[str, np.ndarray],
    expected: tuple[tuple[int, ...], tuple[int, ...]],
) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, X=np.zeros((5, 8, 3)), y=np.zeros(y_shape), **extra)  # type: ignore[arg-type]
    data = load_training_data(path, task="forecast")
    assert isinstance(data, WindowSet)
    assert (data.targets.shape, data.target_indices) == expected


def test_forecast_windows_need_target(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", X=np.zeros((5, 8, 3)), y=np.zeros((5, 2)))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "w.npz", task="forecast")
    expect_error(exc, "w.npz", "--target", "3 features")


def test_forecast_windows_target_count_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", X=np.zeros((5, 8, 3)), y=np.zeros((5, 2)))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "w.npz", task="forecast", target="0,1")
    expect_error(exc, "w.npz", "2 column(s)", "1 target(s)")


def test_forecast_windows_bad_y(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", X=np.zeros((5, 8, 1)), y=np.zeros((4, 2)))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "w.npz", task="forecast")
    expect_error(exc, "w.npz", "y has shape (4, 2)", "5 windows")
    y = np.zeros((5, 2))
    y[3, 1] = np.nan
    np.savez(tmp_path / "n.npz", X=np.zeros((5, 8, 1)), y=y)
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "n.npz", task="forecast")
    expect_error(exc, "n.npz", "y[3, 1, 0]")


def test_forecast_npy_3d_needs_y(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.zeros((5, 8, 3)))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "w.npy", task="forecast")
    expect_error(exc, "w.npy", "[time, features]", "targets y")


def test_resolve_targets() -> None:
    names = ("temp", "rpm", "Load")
    assert resolve_targets(names, None) == (0, 1, 2)
    assert resolve_targets(names, "load, 0") == (2, 0)
    assert resolve_targets(("0", "x"), "0") == (0,)  # a name wins over an index
    for bad, word in [("7", "'7'"), ("temp,,rpm", "empty entry"), ("rpm,1", "twice")]:
        with pytest.raises(InvalidInputError, match="--target") as exc:
            resolve_targets(names, bad)
        expect_error(exc, word)


# --------------------------------------------------------------------------------------------
# anomaly and dispatch


def test_anomaly_npz_with_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", X=np.arange(6.0), y=np.array([0, 0, 1, 1, 0, 0]))
    data = load_training_data(tmp_path / "a.npz", task="anomaly")
    assert isinstance(data, Series)
    assert data.values.shape == (6, 1)
    assert data.labels is not None
    assert data.labels.tolist() == [0, 0, 1, 1, 0, 0]


def test_anomaly_labels_checked(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", X=np.arange(3.0), y=np.array([0, 2, 1]))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "a.npz", task="anomaly")
    expect_error(exc, "a.npz", "y[1] = 2", "0 (normal) or 1")
    np.savez(tmp_path / "b.npz", X=np.arange(3.0), y=np.array([0, 1]))
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "b.npz", task="anomaly")
    expect_error(exc, "b.npz", "y has shape (2,)", "[3]")


def test_anomaly_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "v,label\n1,0\n2,1\n")
    data = load_training_data(path, task="anomaly")
    assert isinstance(data, Series)
    assert data.labels is not None
    assert data.labels.tolist() == [0, 1]


def test_target_only_for_forecast(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "v\n1\n")
    for task in ("classify", "anomaly"):
        with pytest.raises(InvalidInputError) as exc:
            load_training_data(path, task=task, target="v")
        expect_error(exc, "only to --task forecast")


def test_unsupported_extension_and_task(tmp_path: Path) -> None:
    path = write(tmp_path, "data.parquet", "x")
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="forecast")
    expect_error(exc, "data.parquet", ".csv", ".npy", ".npz", ".ts")
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="regress")
    expect_error(exc, "'regress'", "classify", "forecast", "anomaly")


def test_ts_refused_for_series_tasks(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny.ts", TS_EQUAL)
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(path, task="anomaly")
    expect_error(exc, "tiny.ts", "classify")


def test_missing_file_via_dispatch(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        load_training_data(tmp_path / "gone.npz", task="classify")
    expect_error(exc, "gone.npz", "not found")
