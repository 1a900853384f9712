"""Sequence-labelling data: one class per frame (``--task tag``) or one text per sequence
(``--task transcribe``), read without pickle.

``tag``
  - ``.npz``: ``X`` ``[n, T, F]`` float; ``y`` ``[n, T]`` whole-number class index per frame,
    ``-1`` for an unlabelled frame (anything at or past ``lengths[i]`` is padding and never
    read); optional ``lengths`` ``[n]``, ``classes`` (strings naming indices ``0..K-1``) and
    ``feature_names``. Without ``classes`` the classes are named ``"0"``, ``"1"``, ... up to
    the largest label.
  - ``.csv``: one sequence per file, one row per frame, in the one CSV dialect
    (:mod:`edgelstm.data.csv_files`); the frame's class (a name: text or a number) in a
    column named ``label``, an empty cell (or ``-1``) for an unlabelled frame. The classes are
    the names used, sorted (numerically when all are numbers).

``transcribe``
  - ``.npz``: ``X`` ``[n, T, F]``; ``y`` ``[n]`` a unicode string array
    (``np.array(texts, dtype=str)``; ASCII bytes also read; an empty text is allowed);
    optional ``lengths``, ``tokens`` (strings, for multi-character tokens) and
    ``feature_names``.

Inputs of a trained model (labels optional) may also be ``.npy`` ``[T, F]`` (one sequence) or
``[n, T, F]``, a ``.csv`` without labels (one sequence), an ``.npz`` with a 2-D ``X`` (one
sequence), and ``.parquet`` with one sequence per row (:mod:`edgelstm.data.parquet`) and an
optional ``y`` column: a list of class indices per row for tag, a string for transcribe.

A malformed label is one :class:`~edgelstm.errors.InvalidInputError` naming the file and the
index (``train.npz: y[3, 17] = 2.5 ...``).

Example::

    from pathlib import Path
    from edgelstm.data.labelled import read_tagged

    data = read_tagged(Path("gestures.npz"))
    data.class_names, data.frame_labels[0][:5]  # ("idle", "wave"), array([0, 0, 1, 1, 1])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgelstm.data.arrays import read_arrays
from edgelstm.data.checks import parse_float, require_file
from edgelstm.data.csv_files import CsvLayout, _csv_rows
from edgelstm.data.readers import (
    check_npz_keys,
    npz_feature_names,
    require_x,
    unpadded_sequences,
)
from edgelstm.data.types import TaggedSequences, Transcripts
from edgelstm.errors import InvalidInputError

__all__ = ["read_labelled", "read_parquet_labelled", "read_tagged", "read_transcripts"]

#: Readable suffixes per (task, labels required): training needs labels, which only these
#: formats carry; a trained model's inputs may come in any sequence format.
_SUFFIXES: dict[tuple[str, bool], tuple[str, ...]] = {
    ("tag", True): (".npz", ".csv"),
    ("transcribe", True): (".npz",),
    ("tag", False): (".npz", ".csv", ".npy", ".parquet"),
    ("transcribe", False): (".npz", ".csv", ".npy", ".parquet"),
}
#: Most classes a file may imply by its largest label when it names none: bigger numbers are
#: usually ids rather than indices, and would silently build a head with that many outputs.
_MAX_UNNAMED_CLASSES = 10_000
#: The CSV column holding a frame's class.
_LABEL_COLUMN = "label"

#: Formats an index for a message: (sequence, frame) -> "y[3, 17]".
IndexName = Callable[[int, int], str]


def read_labelled(
    path: Path, task: str, *, require_labels: bool = True
) -> TaggedSequences | Transcripts:
    """Read ``path`` for ``task`` (``"tag"`` or ``"transcribe"``), choosing the format from
    the suffix; ``require_labels=False`` reads a trained model's inputs (labels optional).

    Example::

        train = read_labelled(Path("digits_train.npz"), "transcribe")
    """
    suffixes = _SUFFIXES[(task, require_labels)]
    if path.suffix.lower() not in suffixes:
        what = "training data" if require_labels else "inputs"
        labels = (
            " (the formats that carry per-frame classes)"
            if task == "tag"
            else " (y [n] texts; the format that carries one text per sequence)"
        )
        raise InvalidInputError(
            f"{path}: --task {task} {what} come as {', '.join(suffixes)}"
            f"{labels if require_labels else ''}; got {path.suffix or '(no extension)'!r}"
        )
    if task == "tag":
        return read_tagged(path, require_labels=require_labels)
    return read_transcripts(path, require_labels=require_labels)


def read_tagged(path: Path, *, require_labels: bool = True) -> TaggedSequences:
    """Per-frame labelled sequences from an ``.npz`` or ``.csv`` (inputs also ``.npy`` and
    ``.parquet``)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _tagged_parquet(path, 0, None)
    if suffix == ".csv":
        return _tagged_csv(path, require_labels)
    return _tagged_arrays(path, require_labels)


def read_transcripts(path: Path, *, require_labels: bool = True) -> Transcripts:
    """Sequences with their texts from an ``.npz`` (inputs also ``.csv``, ``.npy`` and
    ``.parquet``)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _transcripts_parquet(path, 0, None)
    if suffix == ".csv":
        values, names, _ = _read_csv_frames(path, "transcribe", require_labels)
        return Transcripts((values,), None, names, source=str(path))
    return _transcripts_arrays(path, require_labels)


def read_parquet_labelled(
    path: Path, task: str, *, start: int = 0, stop: int | None = None
) -> TaggedSequences | Transcripts:
    """Rows ``[start, stop)`` of a Parquet file as sequences for ``task``, with the optional
    ``y`` column: a list of class indices per row (tag) or a string per row (transcribe).

    The batch engines read one partition of rows at a time through here.
    """
    if task == "tag":
        return _tagged_parquet(path, start, stop)
    return _transcripts_parquet(path, start, stop)


def _tagged_arrays(path: Path, require_labels: bool) -> TaggedSequences:
    arrays, sequences, names, single = _read_array_sequences(path, "tag", require_labels)
    classes = _string_list(arrays, "classes", path)
    y = arrays.get("y")
    frame_labels = None
    if y is not None:
        if single and y.ndim == 1:
            y = y[None]
        steps = arrays["X"].shape[-2]
        if y.shape != (len(sequences), steps):
            raise InvalidInputError(
                f"{path}: y has shape {y.shape}; tagging needs one class index per frame, "
                f"shape [{len(sequences)}, {steps}] like the first axes of X"
            )

        def where(i: int, t: int) -> str:
            return f"y[{t}]" if single else f"y[{i}, {t}]"

        rows = [y[i, : len(s)] for i, s in enumerate(sequences)]
        frame_labels = _check_frame_labels(rows, len(classes) if classes else None, path, where)
    if frame_labels is not None and not classes:
        classes = _index_names(frame_labels)
    return TaggedSequences(sequences, frame_labels, names, classes, str(path))


def _transcripts_arrays(path: Path, require_labels: bool) -> Transcripts:
    arrays, sequences, names, single = _read_array_sequences(path, "transcribe", require_labels)
    y = arrays.get("y")
    texts = None
    if y is not None:
        if single and y.ndim == 0:
            y = y[None]
        if y.shape != (len(sequences),):
            raise InvalidInputError(
                f"{path}: y has shape {y.shape}; transcription needs one text per sequence, "
                f"shape [{len(sequences)}]"
            )
        texts = _texts(y, path)
    tokens = _string_list(arrays, "tokens", path)
    return Transcripts(sequences, texts, names, tokens, str(path))


def _tagged_csv(path: Path, require_labels: bool) -> TaggedSequences:
    values, names, labels = _read_csv_frames(path, "tag", require_labels)
    if labels is None:
        return TaggedSequences((values,), None, names, source=str(path))
    classes = _sorted_class_names(labels)
    if not classes:
        raise _nothing_labelled(path)
    index = {name: i for i, name in enumerate(classes)}
    row = np.array([index.get(cell, -1) for cell in labels], dtype=np.int64)
    return TaggedSequences((values,), (row,), names, classes, str(path))


def _tagged_parquet(path: Path, start: int, stop: int | None) -> TaggedSequences:
    from edgelstm.data.parquet import read_parquet_sequences

    data = read_parquet_sequences(path, start=start, stop=stop)
    frame_labels = None
    if data.labels is not None:
        if data.labels.dtype != object:
            raise InvalidInputError(
                f"{path}: column y holds one value per row; for --task tag it must be a list "
                "of class indices per row, one per frame (-1 for an unlabelled frame)"
            )
        rows = list(data.labels)
        for i, (row, sequence) in enumerate(zip(rows, data.sequences, strict=True)):
            if len(row) != len(sequence):
                raise InvalidInputError(
                    f"{path}: row {start + i}: y has {len(row)} labels for {len(sequence)} "
                    "frames; give one class index per frame"
                )
        frame_labels = _check_frame_labels(
            rows, None, path, lambda i, t: f"row {start + i}, y[{t}]"
        )
    classes = _index_names(frame_labels) if frame_labels is not None else ()
    return TaggedSequences(data.sequences, frame_labels, data.feature_names, classes, str(path))


def _transcripts_parquet(path: Path, start: int, stop: int | None) -> Transcripts:
    from edgelstm.data.parquet import read_parquet_sequences

    data = read_parquet_sequences(path, start=start, stop=stop)
    texts = None
    if data.labels is not None:
        if data.labels.dtype.kind != "U":
            raise InvalidInputError(
                f"{path}: column y holds {data.labels.dtype} values; transcription labels "
                "are a string column, one text per row (numbers would lose leading zeros)"
            )
        texts = tuple(str(text) for text in data.labels)
    return Transcripts(data.sequences, texts, data.feature_names, source=str(path))


# --------------------------------------------------------------------------------------------
# arrays


def _read_array_sequences(
    path: Path, task: str, require_labels: bool
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...], tuple[str, ...], bool]:
    """The arrays of an ``.npz``/``.npy``, its unpadded sequences, feature names, and whether
    a 2-D ``X`` was read as one sequence (inputs only: training data is ``[n, T, F]``)."""
    arrays = _read_arrays(path, task)
    check_npz_keys(arrays, task, path)
    X = require_x(arrays, path)
    single = X.ndim == 2 and not require_labels
    if single:
        X = X[None]
        arrays = {**arrays, "X": X}
    if X.ndim != 3:
        shapes = "[n, time, features]" + (
            "" if require_labels else " or one sequence [time, features]"
        )
        raise InvalidInputError(
            f"{path}: X has shape {arrays['X'].shape}; --task {task} reads {shapes} "
            "(one feature: X[..., None])"
        )
    if require_labels and "y" not in arrays:
        example = "y=y" if task == "tag" else "y=np.array(texts, dtype=str)"
        what = "y [n, T], a class index per frame" if task == "tag" else "y [n], one text each"
        raise InvalidInputError(
            f"{path}: --task {task} needs labels: {what} (np.savez(path, X=X, {example}))"
        )
    sequences = unpadded_sequences(X, arrays.get("lengths"), path)
    return arrays, sequences, npz_feature_names(arrays, X.shape[2], path), single


def _read_arrays(path: Path, task: str) -> dict[str, np.ndarray]:
    try:
        return read_arrays(path)
    except InvalidInputError as exc:
        # Texts saved from a list or a pandas column are object arrays: say how to save them.
        if task != "transcribe" or "object (pickled)" not in str(exc):
            raise
        raise InvalidInputError(
            f"{path}: holds an object array, which only pickle can load and edgelstm never "
            "unpickles; save the texts as a unicode array: "
            "np.savez(path, X=X, y=np.array(texts, dtype=str))"
        ) from exc


def _check_frame_labels(
    rows: list[np.ndarray], class_count: int | None, path: Path, where: IndexName
) -> tuple[np.ndarray, ...]:
    """Per-frame labels as int64 rows, each value a class index or -1 (unlabelled).

    ``class_count`` is the number of named classes (None: the file names none).
    """
    limit = class_count if class_count is not None else _MAX_UNNAMED_CLASSES
    out: list[np.ndarray] = []
    for i, row in enumerate(rows):
        if row.dtype.kind not in "iuf":
            raise InvalidInputError(
                f"{path}: y has dtype {row.dtype}; frame labels are class indices (whole "
                "numbers 0..K-1, -1 for an unlabelled frame): save the class names in a "
                "string array 'classes' and y as their indices"
            )
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(row) | (row != np.round(row)) if row.dtype.kind == "f" else None
        if bad is not None and bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"{path}: {where(i, t)} = {row[t].item()!r} is not a class index; frame labels "
                "are whole numbers 0..K-1, or -1 for an unlabelled frame"
            )
        out_of_range = (row < -1) | (row >= limit)
        if out_of_range.any():
            t = int(np.flatnonzero(out_of_range)[0])
            raise InvalidInputError(
                f"{path}: {where(i, t)} = {row[t].item()!r} is out of range; "
                + _range_advice(class_count)
            )
        out.append(row.astype(np.int64))
    if not any((row >= 0).any() for row in out):
        raise _nothing_labelled(path)
    return tuple(out)


def _range_advice(class_count: int | None) -> str:
    if class_count is None:
        return (
            "frame labels are class indices 0..K-1 (-1 for an unlabelled frame), with K at "
            f"most {_MAX_UNNAMED_CLASSES} unless a string array 'classes' names them"
        )
    return (
        f"'classes' names {class_count} classes, so labels run 0..{class_count - 1} "
        "(-1 for an unlabelled frame)"
    )


def _nothing_labelled(path: Path) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: no frame is labelled (every label is -1, empty or padding); tagging needs "
        "labelled frames"
    )


def _index_names(frame_labels: tuple[np.ndarray, ...]) -> tuple[str, ...]:
    """Class names ``"0"``..``"K-1"`` for a file that names none: up to its largest label."""
    largest = max(int(row.max(initial=-1)) for row in frame_labels)
    return tuple(str(i) for i in range(largest + 1))


def _string_list(arrays: dict[str, np.ndarray], name: str, path: Path) -> tuple[str, ...]:
    """The optional string array ``name`` (``classes``, ``tokens``): distinct, non-empty."""
    values = arrays.get(name)
    if values is None:
        return ()
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "US":
        raise InvalidInputError(
            f"{path}: '{name}' has shape {values.shape} dtype {values.dtype}; it must be a 1-D "
            f"array of strings, e.g. np.array([...], dtype=str)"
        )
    strings = _texts(values, path, name)
    seen: dict[str, int] = {}
    for j, text in enumerate(strings):
        if not text:
            raise InvalidInputError(f"{path}: {name}[{j}] is empty; give every entry a name")
        if text in seen:
            raise InvalidInputError(
                f"{path}: {name}[{j}] = {text!r} repeats {name}[{seen[text]}]; entries must be "
                "distinct"
            )
        seen[text] = j
    return strings


def _texts(values: np.ndarray, path: Path, name: str = "y") -> tuple[str, ...]:
    """A 1-D unicode (or ASCII bytes) array as Python strings."""
    if values.dtype.kind == "U":
        return tuple(str(text) for text in values)
    if values.dtype.kind != "S":
        raise InvalidInputError(
            f"{path}: {name} has dtype {values.dtype}; transcription labels are text, one "
            "string per sequence: save np.array(texts, dtype=str) (numbers would lose leading "
            "zeros)"
        )
    texts = []
    for i, raw in enumerate(values.tolist()):
        try:
            texts.append(raw.decode("ascii"))
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{path}: {name}[{i}] is not ASCII ({exc.reason} at byte {exc.start}); save "
                "texts as a unicode array: np.array(texts, dtype=str)"
            ) from exc
    return tuple(texts)


# --------------------------------------------------------------------------------------------
# CSV


def _read_csv_frames(
    path: Path, task: str, require_labels: bool
) -> tuple[np.ndarray, tuple[str, ...], list[str] | None]:
    """One sequence from a CSV: its frames, feature names, and the ``label`` cells (None
    when the file has no label column).

    The dialect's rows and layout are reused as they are; only the label cell differs from
    an anomaly CSV's (a class name here, not 0/1), so it is read raw.
    """
    require_file(path)
    # utf-8-sig drops the byte-order mark Excel writes (as read_csv_series does).
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = _csv_rows(handle, str(path))
        first = next(rows, None)
        if first is None:
            raise InvalidInputError(f"{path}: the file is empty; it needs one row per frame")
        layout = CsvLayout.from_first_row(str(path), *first)
        label = _label_column(layout, path, task, require_labels)
        features = replace(layout, label_column=None)
        frames: list[list[float]] = []
        cells_seen: list[str] = []
        for line, cells in itertools.chain([] if layout.header else [first], rows):
            frames.append(features.parse(line, cells)[0])
            if label is not None:
                cells_seen.append(cells[label])
    if not frames:
        raise InvalidInputError(f"{path}: has a header row but no data rows; add one per frame")
    values = np.asarray(frames, dtype=np.float32)
    return values, layout.feature_names, cells_seen if label is not None else None


def _label_column(layout: CsvLayout, path: Path, task: str, require_labels: bool) -> int | None:
    label = layout.label_column
    if task == "transcribe":
        if label is not None:
            raise InvalidInputError(
                f"{path}: column {layout.names[label]!r} looks like labels, but a transcribe CSV "
                "holds one sequence's frames only; put texts in an .npz y (one per sequence)"
            )
        return None
    if label is not None and layout.names[label].lower() != _LABEL_COLUMN:
        raise InvalidInputError(
            f"{path}: column {layout.names[label]!r} holds anomaly labels; a tag CSV names its "
            f"class column {_LABEL_COLUMN!r}: rename it"
        )
    if label is None and require_labels:
        raise InvalidInputError(
            f"{path}: no {_LABEL_COLUMN!r} column; a tag CSV needs a header row with a column "
            f"named {_LABEL_COLUMN!r} holding each frame's class (empty for an unlabelled frame)"
        )
    return label


def _sorted_class_names(cells: list[str]) -> tuple[str, ...]:
    """The class names a CSV uses, sorted (numerically when all are numbers); an empty cell
    or ``-1`` is an unlabelled frame, not a class."""
    used = {cell for cell in cells if cell and parse_float(cell) != -1}
    numbers = {cell: parse_float(cell) for cell in used}
    if all(value is not None for value in numbers.values()):
        return tuple(sorted(used, key=lambda cell: (numbers[cell], cell)))
    return tuple(sorted(used))
