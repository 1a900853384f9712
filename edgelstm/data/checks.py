"""Checks every reader shares: the file exists, values are finite float32, labels are 0/1.

This module owns the refusal rules that do not depend on a file format (NaN/Inf, dtypes,
the float32 range) and the wording of their messages, so a CSV cell, an ``.npz`` array and a
``.ts`` series are refused alike. The format modules (:mod:`edgelstm.data.csv_files`,
:mod:`edgelstm.data.arrays`, :mod:`edgelstm.data.ts`) and the dispatch in
:mod:`edgelstm.data.readers` build on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.errors import InvalidInputError

__all__ = [
    "NAN_ADVICE",
    "as_float32",
    "binary_labels",
    "check_finite",
    "check_numeric",
    "default_names",
    "parse_float",
    "require_file",
]

NAN_ADVICE = "NaN/Inf or missing values are refused: fill or drop them first"


def require_file(path: Path) -> None:
    """Fail early with a plain message; open() errors would otherwise surface as tracebacks."""
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found; check the path and try again")
    if not path.is_file():
        raise InvalidInputError(f"{path}: is not a file (a directory?); give the path of a file")


def parse_float(cell: str) -> float | None:
    """``float(cell)`` or None when the cell is not a number (NaN/Inf still parse)."""
    try:
        return float(cell)
    except ValueError:
        return None


def default_names(count: int) -> tuple[str, ...]:
    return tuple(f"f{i}" for i in range(count))


def check_finite(values: np.ndarray, path: Path, what: str, prefix: tuple[int, ...] = ()) -> None:
    """Refuse NaN/Inf, naming the first offending NumPy index so the user can find it.

    ``prefix`` is prepended to the index when ``values`` is a slice (``X[i]``) of ``what``.
    """
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = tuple(int(i) for i in np.argwhere(~finite)[0])
    index = ", ".join(str(i) for i in (*prefix, *bad))
    count = int((~finite).sum())
    raise InvalidInputError(
        f"{path}: {what}[{index}] is {values[bad].item()!r} ({count} NaN/Inf value(s) in {what}); "
        f"{NAN_ADVICE}"
    )


def check_numeric(values: np.ndarray, path: Path, what: str) -> None:
    """Refuse strings, bools, complex and structured arrays: they are not model inputs."""
    if values.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"{path}: array {what!r} has dtype {values.dtype}, expected numbers (float or int); "
            f"convert it, e.g. np.asarray({what}, dtype=np.float32)"
        )


def as_float32(
    values: np.ndarray, path: Path, what: str, prefix: tuple[int, ...] = ()
) -> np.ndarray:
    """Numeric array → finite float32; anything else (strings, bool, complex) is refused."""
    check_numeric(values, path, what)
    # Check before the cast too: a float64 1e300 would turn into Inf and blame the user's
    # value for a problem the cast created; report both cases at the original index.
    check_finite(values.astype(np.float64, copy=False), path, what, prefix)
    with np.errstate(over="ignore"):  # overflow is reported below, with its index
        out = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        index = ", ".join(str(i) for i in (*prefix, *bad))
        raise InvalidInputError(
            f"{path}: {what}[{index}] = {values[bad].item()!r} is outside the float32 range "
            "(about ±3.4e38); rescale the data"
        )
    return out


def binary_labels(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Per-step anomaly labels as int64 0/1; anything else is refused with its index."""
    if not (
        np.issubdtype(values.dtype, np.integer)
        or np.issubdtype(values.dtype, np.floating)
        or values.dtype == np.bool_
    ):
        raise InvalidInputError(
            f"{path}: anomaly labels {what!r} have dtype {values.dtype}; expected 0/1 numbers"
        )
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        index = int(np.argwhere(bad)[0][0])
        raise InvalidInputError(
            f"{path}: anomaly labels {what}[{index}] = {values[index].item()!r}; labels must be 0 "
            "(normal) or 1 (anomaly)"
        )
    return values.astype(np.int64)
