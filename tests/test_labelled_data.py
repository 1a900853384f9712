"""Sequence-labelling data: tag and transcribe files read into the right shapes, each malformed
label refused in one line naming the file and index, and the built-in labelling sets built
the same way every time from disjoint train and test items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelstm.data.datasets import dataset_table_rows, get_dataset_spec, load_dataset
from edgelstm.data.labelled import read_labelled, read_tagged, read_transcripts
from edgelstm.data.labelled_datasets import (
    ACTIVITY_STREAMS,
    DIGIT_FEATURE_NAMES,
    compose_digit_strings,
    compose_tag_streams,
    digit_image_split,
    load_digit_images,
)
from edgelstm.data.readers import TASKS, load_inference_data, load_training_data
from edgelstm.data.types import SequenceSet, TaggedSequences, Transcripts
from edgelstm.errors import InvalidInputError


def npz(tmp_path: Path, name: str = "train.npz", /, **arrays: Any) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def refused(call: Any, *words: str) -> str:
    """Run ``call``, expecting one InvalidInputError line holding every word."""
    with pytest.raises(InvalidInputError) as exc:
        call()
    message = str(exc.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def _x(n: int = 3, steps: int = 5, features: int = 2) -> np.ndarray:
    return np.arange(n * steps * features, dtype=np.float32).reshape(n, steps, features)


# --------------------------------------------------------------------------------------------
# tag .npz


def test_tag_npz_round_trip_trims_to_lengths_and_keeps_unlabelled(tmp_path: Path) -> None:
    X = _x()
    X[1, 4] = np.nan  # padding past lengths[1] is never read
    y = np.array([[0, 0, 1, 1, 2], [2, -1, 1, 7, 7], [-1, -1, -1, -1, -1]])
    path = npz(
        tmp_path,
        X=X,
        y=y,
        lengths=np.array([5, 3, 2]),
        classes=np.array(["idle", "walk", "run"]),
        feature_names=np.array(["ax", "ay"]),
    )
    data = load_training_data(path, "tag")
    assert isinstance(data, TaggedSequences)
    assert data.lengths.tolist() == [5, 3, 2]
    assert data.feature_names == ("ax", "ay")
    assert data.class_names == ("idle", "walk", "run")
    assert data.source == str(path)
    assert data.frame_labels is not None
    assert [row.tolist() for row in data.frame_labels] == [[0, 0, 1, 1, 2], [2, -1, 1], [-1, -1]]
    assert all(row.dtype == np.int64 for row in data.frame_labels)
    assert all(s.dtype == np.float32 for s in data.sequences)
    np.testing.assert_array_equal(data.sequences[1], X[1, :3])


def test_tag_npz_without_classes_names_indices_and_accepts_whole_floats(tmp_path: Path) -> None:
    path = npz(tmp_path, X=_x(2, 3), y=np.array([[0.0, 3.0, -1.0], [1.0, 1.0, 0.0]]))
    data = read_tagged(path)
    assert data.class_names == ("0", "1", "2", "3")
    assert data.frame_labels is not None
    assert data.frame_labels[0].tolist() == [0, 3, -1]


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"y": np.array([[0, 1, 2.5], [0, 0, 0]])}, ("y[0, 2] = 2.5", "whole numbers")),
        ({"y": np.array([[0, 1, 1], [0, np.nan, 0]])}, ("y[1, 1] = nan",)),
        ({"y": np.array([["a", "b", "c"], ["a", "a", "a"]])}, ("dtype <U1", "'classes'")),
        ({"y": np.zeros((2, 4), dtype=np.int64)}, ("y has shape (2, 4)", "[2, 3]")),
        ({"y": np.zeros(2, dtype=np.int64)}, ("y has shape (2,)",)),
        ({"y": np.array([[0, 1, 1], [0, -2, 0]])}, ("y[1, 1] = -2", "out of range")),
        (
            {"y": np.array([[0, 1, 1], [0, 0, 2]]), "classes": np.array(["a", "b"])},
            ("y[1, 2] = 2", "'classes' names 2 classes", "0..1"),
        ),
        ({"y": np.array([[0, 1, 1], [0, 0, 10**6]])}, ("y[1, 2] = 1000000", "'classes'")),
        ({"y": np.full((2, 3), -1)}, ("no frame is labelled",)),
        (
            {"y": np.array([[0, 1, 1], [0, 0, -1]]), "lengths": np.array([3, 0])},
            ("lengths[1] = 0", "between 1 and"),
        ),
        ({"y": np.zeros((2, 3), dtype=int), "lenghts": np.array([3, 3])}, ("did you mean",)),
        ({}, ("needs labels", "y [n, T]")),
        (
            {"y": np.zeros((2, 3), dtype=int), "classes": np.array(["a", "a"])},
            ("classes[1] = 'a' repeats classes[0]",),
        ),
    ],
)
def test_tag_npz_errors_name_file_and_index(
    tmp_path: Path, arrays: dict[str, np.ndarray], words: tuple[str, ...]
) -> None:
    path = npz(tmp_path, X=_x(2, 3), **arrays)
    refused(lambda: load_training_data(path, "tag"), "train.npz", *words)


def test_tag_npz_nan_inside_a_sequence_is_refused_with_its_index(tmp_path: Path) -> None:
    X = _x(2, 3)
    X[1, 1, 0] = np.inf
    path = npz(tmp_path, X=X, y=np.zeros((2, 3), dtype=np.int64))
    refused(lambda: read_tagged(path), "train.npz", "X[1, 1, 0]", "NaN/Inf")


def test_tag_training_needs_three_axes(tmp_path: Path) -> None:
    path = npz(tmp_path, X=np.zeros((4, 2)), y=np.zeros(4, dtype=int))
    refused(lambda: read_tagged(path), "train.npz", "[n, time, features]", "X[..., None]")


# --------------------------------------------------------------------------------------------
# tag .csv


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tag_csv_class_names_sorted_and_empty_cells_unlabelled(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "walk.csv",
        "time,ax,ay,label\n0,1,2,walk\n1,3,4,walk\n2,5,6,\n3,7,8,idle\n4,9,10,-1\n",
    )
    data = load_training_data(path, "tag")
    assert isinstance(data, TaggedSequences)
    assert data.feature_names == ("ax", "ay")
    assert data.class_names == ("idle", "walk")
    assert data.frame_labels is not None
    assert data.frame_labels[0].tolist() == [1, 1, -1, 0, -1]
    np.testing.assert_array_equal(data.sequences[0][:, 0], [1, 3, 5, 7, 9])


def test_tag_csv_numeric_class_names_sort_as_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "n.csv", "a,label\n1,10\n2,2\n3,0\n")
    data = read_tagged(path)
    assert data.class_names == ("0", "2", "10")
    assert data.frame_labels is not None
    assert data.frame_labels[0].tolist() == [2, 1, 0]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a,b\n1,2\n", ("no 'label' column", "header row")),
        ("1,2\n3,4\n", ("no 'label' column",)),
        ("a,is_anomaly\n1,0\n", ("'is_anomaly'", "class column 'label'")),
        ("a,label\n1,\n2,-1\n", ("no frame is labelled",)),
        ("a,label\n1,x\nzz,y\n", ("row 3", "not a number")),
        ("", ("empty",)),
        ("a,label\n", ("no data rows",)),
    ],
)
def test_tag_csv_errors(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    path = write(tmp_path, "frames.csv", text)
    refused(lambda: load_training_data(path, "tag"), "frames.csv", *words)


def test_tag_csv_without_labels_is_one_input_sequence(tmp_path: Path) -> None:
    path = write(tmp_path, "new.csv", "a,b\n1,2\n3,4\n5,6\n")
    data = load_inference_data(path, "tag")
    assert isinstance(data, TaggedSequences)
    assert data.frame_labels is None
    assert len(data) == 1 and data.sequences[0].shape == (3, 2)


# --------------------------------------------------------------------------------------------
# transcribe .npz


def test_transcribe_npz_round_trip(tmp_path: Path) -> None:
    texts = np.array(["4071", "", "héllo"])
    path = npz(
        tmp_path,
        X=_x(),
        y=texts,
        lengths=np.array([5, 4, 1]),
        tokens=np.array(["ll", "h", "é", "o"]),
    )
    data = load_training_data(path, "transcribe")
    assert isinstance(data, Transcripts)
    assert data.texts == ("4071", "", "héllo")
    assert data.tokens == ("ll", "h", "é", "o")
    assert data.lengths.tolist() == [5, 4, 1]
    assert data.feature_names == ("f0", "f1")
    assert data.source == str(path)


def test_transcribe_npz_ascii_bytes_are_read(tmp_path: Path) -> None:
    path = npz(tmp_path, X=_x(2), y=np.array([b"ab", b"c"]))
    assert read_transcripts(path).texts == ("ab", "c")


def test_transcribe_object_texts_get_the_unicode_hint(tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    np.savez(path, X=_x(2), y=np.array(["ab", "c"], dtype=object))  # saved with pickle
    refused(lambda: read_transcripts(path), "train.npz", "np.array(texts, dtype=str)", "pickle")


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"y": np.array([4071, 12])}, ("y has dtype int64", "dtype=str", "leading zeros")),
        ({"y": np.array(["a", "b", "c"])}, ("y has shape (3,)", "[2]")),
        ({"y": np.array([b"a", b"\xff"])}, ("y[1] is not ASCII",)),
        ({"y": np.array(["a", "b"]), "tokens": np.array(["a", ""])}, ("tokens[1] is empty",)),
        ({"y": np.array(["a", "b"]), "tokens": np.array([1, 2])}, ("'tokens'", "strings")),
        ({"y": np.array(["a", "b"]), "classes": np.array(["a"])}, ("unknown array", "'classes'")),
        ({}, ("needs labels", "np.array(texts, dtype=str)")),
    ],
)
def test_transcribe_npz_errors(
    tmp_path: Path, arrays: dict[str, np.ndarray], words: tuple[str, ...]
) -> None:
    path = npz(tmp_path, X=_x(2), **arrays)
    refused(lambda: load_training_data(path, "transcribe"), "train.npz", *words)


# --------------------------------------------------------------------------------------------
# inputs of a trained model, and the dispatch


def test_npy_inputs_one_or_many_sequences(tmp_path: Path) -> None:
    one, many = tmp_path / "one.npy", tmp_path / "many.npy"
    np.save(one, np.ones((7, 3), dtype=np.float32))
    np.save(many, np.ones((2, 7, 3), dtype=np.float32))
    for task in ("tag", "transcribe"):
        single = load_inference_data(one, task, num_features=3)
        assert isinstance(single, TaggedSequences | Transcripts)
        assert len(single) == 1 and single.sequences[0].shape == (7, 3)
        assert len(load_inference_data(many, task)) == 2


def test_npz_input_with_2d_x_is_one_sequence_with_optional_labels(tmp_path: Path) -> None:
    tagged = npz(tmp_path, "t.npz", X=np.ones((4, 2)), y=np.array([0, 1, 1, 0]))
    data = load_inference_data(tagged, "tag")
    assert isinstance(data, TaggedSequences) and data.frame_labels is not None
    assert data.frame_labels[0].tolist() == [0, 1, 1, 0]
    bad = npz(tmp_path, "b.npz", X=np.ones((4, 2)), y=np.array([0, 1, 9.5, 0]))
    refused(lambda: load_inference_data(bad, "tag"), "b.npz", "y[2] = 9.5")
    spoken = npz(tmp_path, "s.npz", X=np.ones((4, 2)), y=np.array("hi"))
    text = load_inference_data(spoken, "transcribe")
    assert isinstance(text, Transcripts) and text.texts == ("hi",)
    unlabelled = npz(tmp_path, "u.npz", X=_x())
    assert read_labelled(unlabelled, "transcribe", require_labels=False).texts is None  # type: ignore[union-attr]


def test_transcribe_csv_input_is_one_sequence_and_refuses_labels(tmp_path: Path) -> None:
    data = load_inference_data(write(tmp_path, "a.csv", "a,b\n1,2\n3,4\n"), "transcribe")
    assert isinstance(data, Transcripts) and data.texts is None and len(data) == 1
    labelled = write(tmp_path, "l.csv", "a,label\n1,2\n")
    refused(lambda: load_inference_data(labelled, "transcribe"), "l.csv", ".npz y")


def test_dispatch_knows_the_tasks_and_their_formats(tmp_path: Path) -> None:
    assert {"tag", "transcribe"} <= set(TASKS)
    csv = write(tmp_path, "a.csv", "a,label\n1,x\n")
    refused(lambda: load_training_data(csv, "transcribe"), "a.csv", ".npz", "one text")
    ts = write(tmp_path, "a.ts", "@data\n1,2:a\n")
    refused(lambda: load_training_data(ts, "tag"), "a.ts", ".npz, .csv")
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones((2, 3, 1)))
    refused(lambda: load_training_data(npy, "tag"), "x.npy", "per-frame classes")
    refused(lambda: load_inference_data(tmp_path / "x.txt", "tag"), "x.txt", "unsupported")
    refused(lambda: load_training_data(tmp_path / "gone.npz", "tag"), "gone.npz", "not found")


def _parquet(path: Path, **columns: Any) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_inputs_with_per_frame_labels_and_texts(tmp_path: Path) -> None:
    X = [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0]]]
    tagged = _parquet(tmp_path / "t.parquet", X=X, y=[[0, 2, -1], [1]])
    data = load_inference_data(tagged, "tag")
    assert isinstance(data, TaggedSequences) and data.frame_labels is not None
    assert [row.tolist() for row in data.frame_labels] == [[0, 2, -1], [1]]
    assert data.class_names == ("0", "1", "2")
    assert data.sequences[0].shape == (3, 2)
    spoken = _parquet(tmp_path / "s.parquet", X=X, y=["ab", ""])
    text = load_inference_data(spoken, "transcribe")
    assert isinstance(text, Transcripts) and text.texts == ("ab", "")
    bare = load_inference_data(_parquet(tmp_path / "b.parquet", X=X), "tag")
    assert isinstance(bare, TaggedSequences) and bare.frame_labels is None


@pytest.mark.parametrize(
    ("task", "y", "words"),
    [
        ("tag", [[0, 1], [1]], ("row 0: y has 2 labels for 3 frames",)),
        ("tag", [[0, 1.5, 0], [1]], ("row 0, y[1] = 1.5",)),
        ("tag", [[0, None, 0], [1]], ("missing (null) frame labels", "-1")),
        ("tag", [0, 1], ("one value per row", "list of class indices")),
        ("transcribe", [12, 3], ("string column", "leading zeros")),
    ],
)
def test_parquet_label_errors(
    tmp_path: Path, task: str, y: list[Any], words: tuple[str, ...]
) -> None:
    X = [[[1.0], [2.0], [3.0]], [[4.0]]]
    path = _parquet(tmp_path / "in.parquet", X=X, y=y)
    refused(lambda: load_inference_data(path, task), "in.parquet", *words)


# --------------------------------------------------------------------------------------------
# built-in datasets


def _equal(a: Any, b: Any) -> None:
    assert len(a.sequences) == len(b.sequences)
    for x, y in zip(a.sequences, b.sequences, strict=True):
        np.testing.assert_array_equal(x, y)
    if isinstance(a, TaggedSequences):
        assert a.frame_labels is not None and b.frame_labels is not None
        for x, y in zip(a.frame_labels, b.frame_labels, strict=True):
            np.testing.assert_array_equal(x, y)
        assert a.class_names == b.class_names
    else:
        assert a.texts == b.texts


@pytest.mark.parametrize("name", ["ActivityStreams", "SpeakerTurns", "DigitStrings"])
def test_labelling_sets_are_built_the_same_every_time(name: str) -> None:
    first, second = load_dataset(name), load_dataset(name)
    _equal(first.train, second.train)
    _equal(first.test, second.test)
    assert first.test_start is None
    assert first.spec.task == ("transcribe" if name == "DigitStrings" else "tag")


def _frames(recordings: SequenceSet) -> set[bytes]:
    return {frame.tobytes() for s in recordings.sequences for frame in s}


def test_activity_streams_keep_the_archive_split_and_change_class_at_each_piece() -> None:
    motions = load_dataset("BasicMotions")
    assert isinstance(motions.train, SequenceSet) and isinstance(motions.test, SequenceSet)
    split = load_dataset("ActivityStreams")
    train, test = split.train, split.test
    assert isinstance(train, TaggedSequences) and isinstance(test, TaggedSequences)
    assert (len(train), len(test)) == (200, 100)
    assert train.class_names == tuple(sorted(set(motions.train.labels.tolist())))  # type: ignore[union-attr]
    assert train.feature_names == motions.train.feature_names
    # Every test frame is a frame of a TEST recording, and none of a TRAIN recording.
    test_frames = {frame.tobytes() for s in test.sequences for frame in s}
    assert test_frames <= _frames(motions.test)
    assert not test_frames & _frames(motions.train)
    assert {frame.tobytes() for s in train.sequences for frame in s} <= _frames(motions.train)
    assert test.frame_labels is not None
    for row in test.frame_labels:
        runs = np.split(row, np.flatnonzero(np.diff(row)) + 1)  # segments of one class
        assert 3 <= len(runs) <= 6
        assert all(40 <= len(run) <= 100 for run in runs)
        assert (row >= 0).all()


def test_tag_stream_sources_index_the_recordings_they_show() -> None:
    motions = load_dataset("BasicMotions")
    assert isinstance(motions.test, SequenceSet) and motions.test.labels is not None
    names = ("badminton", "running", "standing", "walking")
    data, sources = compose_tag_streams(ACTIVITY_STREAMS, motions.test, names, "test")
    assert data.frame_labels is not None
    for row, chosen in zip(data.frame_labels, sources, strict=True):
        classes = [names.index(str(motions.test.labels[i])) for i in chosen]
        # No class twice in a row, so each recording is exactly one run of its class.
        runs = np.split(row, np.flatnonzero(np.diff(row)) + 1)
        assert [int(run[0]) for run in runs] == classes


def test_speaker_turns() -> None:
    split = load_dataset("SpeakerTurns")
    assert isinstance(split.train, TaggedSequences)
    assert split.train.class_names == tuple(str(i) for i in range(1, 10))
    assert split.train.num_features == 12
    assert split.sizes["classes"] == "9"


def test_digit_strings_never_show_a_training_image_in_test() -> None:
    images, digits = load_digit_images()
    assert images.shape == (1797, 8, 8)
    train_ids, test_ids = digit_image_split(len(images))
    assert not set(train_ids.tolist()) & set(test_ids.tolist())
    assert len(train_ids) + len(test_ids) == len(images) and len(train_ids) == 1258
    train, train_sources = compose_digit_strings(images, digits, train_ids, "train")
    test, test_sources = compose_digit_strings(images, digits, test_ids, "test")
    assert (len(train), len(test)) == (3000, 1000)
    used_in_test = set(np.concatenate(test_sources).tolist())
    assert used_in_test <= set(test_ids.tolist())
    assert not used_in_test & set(np.concatenate(train_sources).tolist())
    assert test.texts is not None
    for sequence, text, shown in zip(test.sequences, test.texts, test_sources, strict=True):
        count = len(shown)
        assert 3 <= count <= 6 and text == "".join(str(d) for d in digits[shown])
        # 8 frames per digit, 0-3 blank frames between digits and 0-2 at each end.
        assert 8 * count <= len(sequence) <= 8 * count + 3 * (count - 1) + 4
        assert sequence.shape[1] == 8 and sequence.min() >= 0 and sequence.max() <= 1
        # Each digit's image appears, column by column, somewhere in the string.
        first = images[shown[0]].T / 16
        assert any(np.array_equal(sequence[t : t + 8], first) for t in range(len(sequence) - 7))


def test_digit_strings_registered() -> None:
    split = load_dataset("DigitStrings")
    assert isinstance(split.train, Transcripts)
    assert split.train.feature_names == DIGIT_FEATURE_NAMES == tuple(f"row{i}" for i in range(8))
    assert split.train.tokens == ()
    assert split.sizes == {
        "train": "3000 sequences",
        "test": "1000 sequences",
        "length": split.sizes["length"],
        "features": "8",
        "classes": "10",
    }
    assert get_dataset_spec("digitstrings").task == "transcribe"


def test_table_rows_list_the_labelling_sets() -> None:
    rows = {row["name"]: row for row in dataset_table_rows()}
    assert rows["ActivityStreams"]["task"] == "tag"
    assert rows["ActivityStreams"]["train"] == "200 sequences"
    assert rows["SpeakerTurns"]["features"] == "12"
    assert rows["DigitStrings"]["task"] == "transcribe"
    assert rows["DigitStrings"]["test"] == "1000 sequences"
