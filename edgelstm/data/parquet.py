"""Sequences stored in Parquet: one row per sequence, in one of two layouts.

Archives that outgrow ``.npz`` files usually live in Parquet, written by pandas, Spark or
Ray. A row holds one sequence, either

- **nested**: a column ``X`` (or ``x``) of ``list<list<number>>``, time-major
  (``[time][features]``), as ``pandas`` writes ``df["X"] = [seq.tolist() for seq in seqs]``;
- **one list column per feature**: columns of ``list<number>`` (``pressure``,
  ``temperature``...), one value per time step, the same length within a row.

An optional column ``y`` (or ``label``) carries the labels: a scalar per row (a class, a
transcript string) or a list of numbers per row (one class per frame, for ``--task tag``,
returned as an object array holding one numeric array per row); other scalar columns (ids,
timestamps) are ignored. Sequences may differ in length from row to row. Only the requested
rows are read: :func:`parquet_row_count` reads the footer, and :func:`read_parquet_sequences`
reads the row groups that cover ``[start, stop)``.

Example::

    from pathlib import Path
    from edgelstm.data.parquet import read_parquet_sequences

    data = read_parquet_sequences(Path("calls.parquet"), start=0, stop=1000)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.data.checks import as_float32, require_file
from edgelstm.data.types import SequenceSet
from edgelstm.errors import InvalidInputError

__all__ = ["parquet_row_count", "read_parquet_sequences"]

_NESTED = ("X", "x")
_LABELS = ("y", "label")


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        from edgelstm.extras import missing_dependency

        raise missing_dependency(exc, "reading Parquet") from exc
    return pq


def _open(path: Path) -> Any:
    require_file(path)
    pq = _pyarrow()
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses for bad files
        raise InvalidInputError(
            f"{path}: not a readable Parquet file ({exc}); write it with pandas.to_parquet or "
            "pyarrow.parquet.write_table"
        ) from exc


def parquet_row_count(path: Path) -> int:
    """Rows (sequences) in the Parquet file at ``path``, from its footer."""
    return int(_open(path).metadata.num_rows)


def read_parquet_sequences(path: Path, *, start: int = 0, stop: int | None = None) -> SequenceSet:
    """The sequences in rows ``[start, stop)`` of ``path`` (all rows by default)."""
    import pyarrow as pa

    handle = _open(path)
    total = int(handle.metadata.num_rows)
    stop = total if stop is None else min(stop, total)
    if total == 0 or start >= stop:
        raise InvalidInputError(f"{path}: holds no rows in [{start}, {stop}) ({total} rows)")
    schema = handle.schema_arrow
    nested = next((n for n in _NESTED if n in schema.names), None)
    label = next((n for n in _LABELS if n in schema.names), None)
    features = [
        f.name for f in schema if f.name not in (nested, label) and _is_numeric_list(f.type, pa)
    ]
    if nested is None and not features:
        found = ", ".join(f"{f.name} ({f.type})" for f in schema) or "none"
        raise InvalidInputError(
            f"{path}: no sequence columns (found: {found}); give a column X of "
            "list<list<number>> ([time][features] per row) or one list<number> column per "
            "feature"
        )
    columns = [nested] if nested is not None else features
    if label is not None:
        columns.append(label)
    table = _read_rows(handle, columns, start, stop)
    if nested is not None:
        sequences, names = _nested_sequences(table.column(nested), nested, path, start, pa)
    else:
        sequences, names = _per_feature_sequences(table, features, path, start, pa)
    labels = None
    if label is not None:
        column = table.column(label)
        if column.null_count:
            raise InvalidInputError(f"{path}: column {label!r} has missing labels")
        if _is_numeric_list(column.type, pa):
            labels = _per_frame_labels(column.combine_chunks(), f"{path}: column {label!r}", start)
        else:
            labels = np.asarray(column.to_numpy(zero_copy_only=False))
            if labels.dtype.kind == "O":
                labels = labels.astype(str)
    return SequenceSet(tuple(sequences), labels, names)


def _per_frame_labels(array: Any, where: str, row0: int) -> np.ndarray:
    """A list<number> label column as an object array of one numeric array per row
    (the tag reader checks they are whole class indices and match the row's frames)."""
    steps = _list_lengths(array, where, row0)
    flat = array.flatten()
    if flat.null_count:
        raise InvalidInputError(
            f"{where}: holds missing (null) frame labels; mark an unlabelled frame with -1"
        )
    values = np.asarray(flat.to_numpy(zero_copy_only=False))
    bounds = np.concatenate([[0], np.cumsum(steps)])
    rows = np.empty(len(steps), dtype=object)
    for i in range(len(steps)):
        rows[i] = values[bounds[i] : bounds[i + 1]]
    return rows


def _is_numeric_list(kind: Any, pa: Any) -> bool:
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    value = kind.value_type
    return bool(pa.types.is_floating(value) or pa.types.is_integer(value))


def _read_rows(handle: Any, columns: list[str], start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of ``columns``, reading only the row groups that hold them."""
    metadata = handle.metadata
    groups, first_row, offset = [], None, 0
    for index in range(metadata.num_row_groups):
        rows = metadata.row_group(index).num_rows
        if offset + rows > start and offset < stop:
            groups.append(index)
            first_row = offset if first_row is None else first_row
        offset += rows
    table = handle.read_row_groups(groups, columns=columns)
    return table.slice(start - (first_row or 0), stop - start)


def _list_lengths(array: Any, where: str, row0: int) -> np.ndarray:
    """Per-row lengths of a list array, refusing missing rows."""
    if array.null_count:
        bad = int(np.flatnonzero(np.asarray(array.is_null()))[0])
        raise InvalidInputError(f"{where}: row {row0 + bad} is missing (null); drop or fill it")
    offsets = np.asarray(array.offsets)
    return np.diff(offsets).astype(np.int64)


def _nested_sequences(
    column: Any, name: str, path: Path, row0: int, pa: Any
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    outer = column.combine_chunks()
    kind = outer.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not _is_numeric_list(
        kind.value_type, pa
    ):
        raise InvalidInputError(
            f"{path}: column {name!r} has type {kind}; it must be list<list<number>>, "
            "[time][features] per row"
        )
    where = f"{path}: column {name!r}"
    steps = _list_lengths(outer, where, row0)
    inner = outer.flatten()
    widths = _list_lengths(inner, where + " (a time step)", row0)
    if len(widths) and (widths != widths[0]).any():
        raise InvalidInputError(
            f"{where}: time steps have {widths.min()} to {widths.max()} features; every step "
            "needs the same number"
        )
    width = int(widths[0]) if len(widths) else 0
    values = np.asarray(inner.flatten().to_numpy(zero_copy_only=False)).reshape(-1, width)
    return _split(values, steps, path, row0, name), tuple(f"f{i}" for i in range(width))


def _per_feature_sequences(
    table: Any, features: list[str], path: Path, row0: int, pa: Any
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    steps = None
    columns = []
    for name in features:
        array = table.column(name).combine_chunks()
        lengths = _list_lengths(array, f"{path}: column {name!r}", row0)
        if steps is not None and (lengths != steps).any():
            bad = int(np.flatnonzero(lengths != steps)[0])
            raise InvalidInputError(
                f"{path}: row {row0 + bad}: column {name!r} has {lengths[bad]} steps, "
                f"{features[0]!r} has {steps[bad]}; a row's feature columns need equal lengths"
            )
        steps = lengths
        columns.append(np.asarray(array.flatten().to_numpy(zero_copy_only=False)))
    assert steps is not None
    values = np.stack(columns, axis=1)
    return _split(values, steps, path, row0, "the feature columns"), tuple(features)


def _split(
    values: np.ndarray, steps: np.ndarray, path: Path, row0: int, what: str
) -> list[np.ndarray]:
    if (steps == 0).any():
        bad = int(np.flatnonzero(steps == 0)[0])
        raise InvalidInputError(f"{path}: row {row0 + bad} of {what} is an empty sequence")
    bounds = np.concatenate([[0], np.cumsum(steps)])
    return [
        as_float32(values[bounds[i] : bounds[i + 1]], path, what, (row0 + i,))
        for i in range(len(steps))
    ]
