"""Read user training data from CSV, NumPy and UEA/UCR ``.ts`` files into typed objects.

Every reader turns a bad file into one :class:`~edgelstm.errors.InvalidInputError` whose message
names the file, the place in it (1-based rows and columns as an editor shows them, or a NumPy
index for arrays) and what to do next. Training on silently wrong data is the failure we guard
against, so NaN/Inf, ragged rows and ambiguous headers are refused rather than repaired.

Example::

    from pathlib import Path
    from edgelstm.data.readers import load_training_data

    data = load_training_data(Path("sensors.csv"), task="forecast", target="temp")
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgelstm.data.types import SequenceSet, Series, WindowSet
from edgelstm.errors import InvalidInputError
from edgelstm.extras import missing_dependency

__all__ = [
    "ANOMALY_LABEL_COLUMNS",
    "SUPPORTED_EXTENSIONS",
    "TASKS",
    "TIME_COLUMNS",
    "CsvLayout",
    "load_inference_data",
    "load_training_data",
    "open_csv",
    "read_arrays",
    "read_csv_series",
    "read_ts",
    "resolve_targets",
    "sequence_set_from_aeon",
]

#: Tasks :func:`load_training_data` understands.
TASKS: tuple[str, ...] = ("classify", "forecast", "anomaly")
#: File extensions :func:`load_training_data` dispatches on.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".csv", ".npy", ".npz", ".ts")
#: CSV header names (case-insensitive) treated as the time index and dropped.
TIME_COLUMNS: frozenset[str] = frozenset({"timestamp", "time", "date", "datetime"})
#: CSV header names (case-insensitive) read as per-step anomaly labels instead of a feature.
ANOMALY_LABEL_COLUMNS: frozenset[str] = frozenset({"is_anomaly", "anomaly", "label"})

_NAN_ADVICE = "NaN/Inf or missing values are refused: fill or drop them first"


# --------------------------------------------------------------------------------------------
# helpers shared by the readers


def _require_file(path: Path) -> None:
    """Fail early with a plain message; open() errors would otherwise surface as tracebacks."""
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found; check the path and try again")
    if not path.is_file():
        raise InvalidInputError(f"{path}: is not a file (a directory?); give the path of a file")


def _parse_float(cell: str) -> float | None:
    """``float(cell)`` or None when the cell is not a number (NaN/Inf still parse)."""
    try:
        return float(cell)
    except ValueError:
        return None


def _default_names(count: int) -> tuple[str, ...]:
    return tuple(f"f{i}" for i in range(count))


def _check_finite(values: np.ndarray, path: Path, what: str, prefix: tuple[int, ...] = ()) -> None:
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
        f"{_NAN_ADVICE}"
    )


def _check_numeric(values: np.ndarray, path: Path, what: str) -> None:
    """Refuse strings, bools, complex and structured arrays: they are not model inputs."""
    if values.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"{path}: array {what!r} has dtype {values.dtype}, expected numbers (float or int); "
            f"convert it, e.g. np.asarray({what}, dtype=np.float32)"
        )


def _as_float32(
    values: np.ndarray, path: Path, what: str, prefix: tuple[int, ...] = ()
) -> np.ndarray:
    """Numeric array → finite float32; anything else (strings, bool, complex) is refused."""
    _check_numeric(values, path, what)
    # Check before the cast too: a float64 1e300 would turn into Inf and blame the user's
    # value for a problem the cast created; report both cases at the original index.
    _check_finite(values.astype(np.float64, copy=False), path, what, prefix)
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


def _binary_labels(values: np.ndarray, path: Path, what: str) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# CSV: one dialect for every reader (training and test files, `run` inputs, `run --stream`)
#
# Comma-separated UTF-8; blank lines are skipped; the first row is a header when all its
# cells are names and data when all are numbers (a mix is refused); later rows are all data,
# with the first row's cell count. There are no comment lines: a skipped line would silently
# drop a time step, and a '#N/A' cell (Excel's missing value) would pass for a comment.

#: Largest float32 magnitude: a CSV value beyond it would become Inf in the model's input.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _csv_rows(lines: Iterable[str], source: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, cells)`` for non-blank rows, lazily; numbers are 1-based like
    editors show them. ``lines`` is an open file (``newline=""``) or any line iterable."""
    reader = csv.reader(lines)
    try:
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line (often a trailing newline): not data
            stripped = [c.strip() for c in cells]
            if stripped[0].startswith("#"):
                raise InvalidInputError(
                    f"{source}: row {reader.line_num} starts with '#'; CSV input has no "
                    "comment lines (skipping one would silently drop a time step): remove it "
                    "(np.savetxt writes its header as a comment unless given comments='')"
                )
            yield reader.line_num, stripped
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{source}: is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
        ) from exc
    except csv.Error as exc:
        raise InvalidInputError(f"{source}: is not a readable CSV file ({exc})") from exc


def _read_header(source: str, line: int, cells: list[str]) -> tuple[str, ...] | None:
    """Return header names when the first row is a header, None when it is already data.

    A header is a row of names only. A row mixing names and numbers (``1.0,temp,3``) is
    refused: guessing would either lose a data row or turn a data row into column names.
    """
    kinds = [_parse_float(c) is not None for c in cells]
    if all(kinds):
        return None
    if any(kinds):
        numeric = [f"column {j + 1} ({cells[j]!r})" for j, k in enumerate(kinds) if k]
        raise InvalidInputError(
            f"{source}: row {line} mixes names and numbers ({', '.join(numeric[:3])} look like "
            "numbers); a header row must be all names, and a data row all numbers. Rename those "
            "columns (e.g. 'sensor_1' instead of '1') or remove the row"
        )
    names = tuple(cells)
    for j, name in enumerate(names):
        if not name:
            raise InvalidInputError(
                f"{source}: column {j + 1} has no name in the header row (row {line}); name it "
                "or remove the column (an unnamed first column is often a pandas index: save "
                "with index=False)"
            )
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        if name in seen:
            raise InvalidInputError(
                f"{source}: columns {seen[name] + 1} and {j + 1} are both named {name!r}; "
                "column names must be unique"
            )
        seen[name] = j
    return names


def _bad_cell_message(source: str, line: int, column: str, cell: str) -> str:
    if not cell:
        return f"{source}: row {line}, {column} is empty; {_NAN_ADVICE}"
    value = _parse_float(cell)
    if value is None:
        return (
            f"{source}: row {line}, {column}: {cell!r} is not a number; every data cell must be "
            "numeric (time stamps only in a column named timestamp/time/date/datetime)"
        )
    if math.isnan(value) or math.isinf(value):
        return f"{source}: row {line}, {column} is {cell!r}; {_NAN_ADVICE}"
    return (
        f"{source}: row {line}, {column}: {cell!r} is outside the float32 range (about ±3.4e38); "
        "rescale the data"
    )


@dataclass(frozen=True)
class CsvLayout:
    """What a CSV's first row says about every row: the names and which cells hold what.

    Without a header the names are ``f0, f1, ...`` and every cell is a feature. With one,
    ``timestamp``/``time``/``date``/``datetime`` cells are skipped (the model sees steps, not
    clock times) and one ``is_anomaly``/``anomaly``/``label`` cell is the step's 0/1 label.
    """

    source: str
    names: tuple[str, ...]
    header: bool
    first_line: int
    feature_columns: tuple[int, ...]
    label_column: int | None

    @classmethod
    def from_first_row(cls, source: str, line: int, cells: list[str]) -> CsvLayout:
        """The layout a file's first non-blank row (header or data) sets."""
        header = _read_header(source, line, cells)
        names = header if header is not None else _default_names(len(cells))
        lowered = [n.lower() for n in names] if header is not None else []
        labels = [j for j, n in enumerate(lowered) if n in ANOMALY_LABEL_COLUMNS]
        if len(labels) > 1:
            listed = ", ".join(repr(names[j]) for j in labels)
            raise InvalidInputError(
                f"{source}: several label columns ({listed}); keep exactly one anomaly label column"
            )
        skipped = {j for j, n in enumerate(lowered) if n in TIME_COLUMNS | ANOMALY_LABEL_COLUMNS}
        features = tuple(j for j in range(len(names)) if j not in skipped)
        if not features:
            raise InvalidInputError(
                f"{source}: no feature columns left after removing the time and label columns "
                f"({', '.join(names)}); add at least one numeric feature column"
            )
        return cls(source, names, header is not None, line, features, labels[0] if labels else None)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.names[j] for j in self.feature_columns)

    def _column(self, j: int) -> str:
        return f"column {self.names[j]!r}" if self.header else f"column {j + 1}"

    def parse(self, line: int, cells: list[str]) -> tuple[list[float], int | None]:
        """One data row: its feature values (finite, within float32) and its 0/1 label."""
        if len(cells) != len(self.names):
            raise InvalidInputError(
                f"{self.source}: row {line} has {len(cells)} columns, expected "
                f"{len(self.names)} (as in row {self.first_line}); fix the row or check the "
                "delimiter (comma expected)"
            )
        try:
            # Fast path: the usual all-good row costs one comprehension and one range check
            # (NaN fails the comparison too, so it takes the slow path, which names it).
            values = [float(cells[j]) for j in self.feature_columns]
        except ValueError:
            values = []
        if len(values) != len(self.feature_columns) or not all(
            -_FLOAT32_MAX <= v <= _FLOAT32_MAX for v in values
        ):
            for j in self.feature_columns:
                value = _parse_float(cells[j])
                if value is None or not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
                    raise InvalidInputError(
                        _bad_cell_message(self.source, line, self._column(j), cells[j])
                    )
        if self.label_column is None:
            return values, None
        j = self.label_column
        label = _parse_float(cells[j])
        if label not in (0.0, 1.0):
            raise InvalidInputError(
                f"{self.source}: row {line}, {self._column(j)}: {cells[j]!r} is not a valid "
                "label; anomaly labels must be 0 (normal) or 1 (anomaly)"
            )
        return values, int(label == 1.0)


def open_csv(
    lines: Iterable[str], source: str
) -> tuple[CsvLayout, Iterator[tuple[int, list[float], int | None]]] | None:
    """Read the first row of ``lines`` now and the data rows lazily (None: no rows at all).

    The rows come as ``(line number, feature values, label)``, each checked as it is read,
    so a live stream (``run --stream`` on stdin) is read with the same rules as a file.
    """
    rows = _csv_rows(lines, source)
    first = next(rows, None)
    if first is None:
        return None
    layout = CsvLayout.from_first_row(source, *first)
    pending = [] if layout.header else [first]

    def data() -> Iterator[tuple[int, list[float], int | None]]:
        for line, cells in itertools.chain(pending, rows):
            yield (line, *layout.parse(line, cells))

    return layout, data()


def read_csv_series(path: Path) -> Series:
    """Read one multivariate series from a CSV file: rows are time steps, columns features.

    The first row is a header when its cells are names (see :class:`CsvLayout` for the time
    and label columns); header names become feature names (otherwise ``f0, f1, ...``).

    Example::

        series = read_csv_series(Path("machine.csv"))  # header: timestamp,temp,rpm,is_anomaly
        series.values.shape  # (steps, 2); series.labels.shape == (steps,)
    """
    _require_file(path)
    # utf-8-sig drops the byte-order mark Excel writes, which would else glue onto the first
    # header name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        opened = open_csv(handle, str(path))
        if opened is None:
            raise InvalidInputError(f"{path}: the file is empty; it needs one row per time step")
        layout, rows = opened
        data_rows: list[list[float]] = []
        labels: list[int] = []
        for _, values, label in rows:  # stream: files can be large
            data_rows.append(values)
            if label is not None:
                labels.append(label)
    if not data_rows:
        raise InvalidInputError(
            f"{path}: has a header row but no data rows; add one row per time step"
        )
    return Series(
        values=np.asarray(data_rows, dtype=np.float32),
        feature_names=layout.feature_names,
        labels=np.asarray(labels, dtype=np.int64) if layout.label_column is not None else None,
    )


# --------------------------------------------------------------------------------------------
# NumPy


#: Largest array total edgelstm loads from one file: half the machine's memory (or 8 GiB
#: when that cannot be read). Bigger inputs need splitting, not a machine-wide swap storm.
def _memory_budget() -> int:
    try:
        budget = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (ValueError, OSError, AttributeError):
        budget = 8 * 2**30
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        limit = -1
    if limit > 0:  # a memory-limited process (ulimit -v): stay well inside its limit
        budget = min(budget, limit // 2)
    return budget


def _declared_bytes(handle: BinaryIO, where: str) -> int | None:
    """Bytes the ``.npy`` header in ``handle`` promises (None when it is not an .npy header)."""
    from numpy.lib import format as npy_format

    # NumPy's format helpers are untyped; the header is (shape, fortran_order, dtype).
    format_module: Any = npy_format
    try:
        version = format_module.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = format_module.read_array_header_1_0(handle)
        else:
            shape, _, dtype = format_module.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError, SyntaxError):
        return None  # np.load reports the malformed header itself
    if dtype.hasobject:
        return 0  # object arrays are refused later, with the pickle explanation
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * int(dtype.itemsize)


def _check_declared_sizes(path: Path) -> None:
    """Refuse files whose headers claim more data than they hold or than memory allows.

    A forged or truncated header (``shape=(10**7, 10**6, 40)`` in a 1 kB file) would make
    NumPy try to allocate terabytes before noticing; checking first keeps the machine up.
    """
    budget = _memory_budget()
    total = 0
    try:
        if path.suffix.lower() == ".npy":
            with path.open("rb") as handle:
                declared = _declared_bytes(handle, str(path))
                available = path.stat().st_size - handle.tell()
            members = [(path.name, declared, available)]
        else:
            members = []
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with archive.open(info) as member:
                        declared = _declared_bytes(member, info.filename)  # type: ignore[arg-type]
                        available = info.file_size - member.tell()
                    members.append((info.filename, declared, available))
    except (OSError, zipfile.BadZipFile):
        return  # np.load gives the precise error for unreadable files
    for name, declared, available in members:
        if declared is None:
            continue
        if declared > available:
            raise InvalidInputError(
                f"{path}: array {name} claims {_size(declared)} but the file holds "
                f"{_size(max(available, 0))}; it is truncated or its header is forged: save it "
                "again with np.save / np.savez"
            )
        total += declared
    if total > budget:
        raise InvalidInputError(
            f"{path}: holds {_size(total)} of arrays, more than edgelstm loads at once "
            f"({_size(budget)}, half of the memory this process may use); split it into "
            "smaller files"
        )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Load a ``.npy`` (as ``{"X": array}``) or ``.npz`` file into a dict of arrays.

    Pickle is never allowed: an object array in a file someone sent you could run arbitrary
    code when loaded, so such files are refused with an explanation.

    Example::

        arrays = read_arrays(Path("train.npz"))  # {"X": ..., "y": ..., "lengths": ...}
    """
    _require_file(path)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InvalidInputError(f"{path}: expected a .npy or .npz file, got {path.suffix!r}")
    _check_declared_sizes(path)
    try:
        # We own the file handle: np.load(path) leaks it when the zip is corrupt.
        with path.open("rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"X": loaded}
            with loaded as archive:
                arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InvalidInputError(
                f"{path}: holds an object (pickled) array; object arrays are refused for safety "
                "because loading them can run code. Save plain numeric arrays, e.g. "
                "np.savez(path, X=np.asarray(X, dtype=np.float32), y=np.asarray(y))"
            ) from exc
        raise InvalidInputError(
            f"{path}: is not a valid NumPy file ({exc}); it may be truncated or corrupt: "
            "save it again with np.save / np.savez"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InvalidInputError(
            f"{path}: could not be read as a NumPy file ({type(exc).__name__}: {exc}); it may be "
            "truncated or corrupt: save it again with np.save / np.savez"
        ) from exc
    if not arrays:
        raise InvalidInputError(f"{path}: the .npz archive holds no arrays; expected at least X")
    return arrays


# --------------------------------------------------------------------------------------------
# UEA/UCR .ts


def read_ts(path: Path) -> SequenceSet:
    """Read a UEA/UCR ``.ts`` file (the classification archive format) into a SequenceSet.

    Equal- and variable-length files both give one float32 ``[time, channels]`` array per
    sequence; labels are the class strings from the file (None when the file has none).
    Parsing is delegated to aeon, an optional dependency (``pip install 'edgelstm[data]'``).

    Example::

        train = read_ts(Path("JapaneseVowels_TRAIN.ts"))
        len(train), train.num_features  # (270, 12)
    """
    _require_file(path)
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as exc:
        raise missing_dependency(exc, f"reading {path} (a .ts file)") from exc
    try:
        X, y = load_from_ts_file(str(path))
    except (ValueError, OSError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{path}: could not be parsed as a .ts file ({exc}); check its @-header lines "
            "against the data (see https://www.aeon-toolkit.org for the format)"
        ) from exc
    return sequence_set_from_aeon(X, y, path)


def sequence_set_from_aeon(X: object, y: object, path: Path) -> SequenceSet:
    """Convert aeon's ``(X, y)`` into a :class:`SequenceSet` of float32 ``[time, channels]``.

    aeon gives an array ``[n, channels, time]`` for equal-length data and a list of
    ``[channels, time_i]`` arrays for variable-length data; both become one array per
    sequence. ``path`` only names the source in error messages.
    """
    raw: list[np.ndarray] = (
        [np.asarray(x) for x in X] if isinstance(X, list) else list(np.asarray(X))
    )
    if not raw or all(x.size == 0 for x in raw):
        raise InvalidInputError(
            f"{path}: no series found; a .ts file needs its @-header lines followed by "
            "@data and one series per line"
        )
    sequences: list[np.ndarray] = []
    channels = raw[0].shape[0] if raw[0].ndim == 2 else 1
    for i, x in enumerate(raw):
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if x2.shape[0] != channels:
            raise InvalidInputError(
                f"{path}: series {i + 1} has {x2.shape[0]} channels, expected {channels}"
            )
        if x2.shape[1] == 0:
            raise InvalidInputError(f"{path}: series {i + 1} is empty")
        seq = np.ascontiguousarray(x2.T, dtype=np.float32)
        finite = np.isfinite(seq)
        if not finite.all():
            t, c = (int(v) for v in np.argwhere(~finite)[0])
            raise InvalidInputError(
                f"{path}: series {i + 1}, channel {c}, time step {t + 1} is missing or NaN/Inf "
                f"('?' in the file); {_NAN_ADVICE}"
            )
        sequences.append(seq)
    labels_arr = np.asarray(y)
    labels: np.ndarray | None = None
    if labels_arr.size:
        if labels_arr.shape[0] != len(sequences):
            raise InvalidInputError(
                f"{path}: {labels_arr.shape[0]} labels for {len(sequences)} series; every series "
                "line must end with ':<class label>'"
            )
        labels = labels_arr.astype(str)
    return SequenceSet(
        sequences=tuple(sequences),
        labels=labels,
        feature_names=tuple(f"dim_{c}" for c in range(channels)),
    )


# --------------------------------------------------------------------------------------------
# targets


def resolve_targets(
    feature_names: tuple[str, ...], target: str | None, *, source: Path | None = None
) -> tuple[int, ...]:
    """Turn ``--target`` (comma-separated column names or 0-based indices) into indices.

    None means every feature is a target. Names win over indices, so a column literally named
    ``"0"`` is found by name; names then match case-insensitively when that is unambiguous.
    ``source`` (the data file) prefixes error messages.

    Example::

        resolve_targets(("temp", "rpm", "load"), "load,0")  # (2, 0)
    """
    if target is None:
        return tuple(range(len(feature_names)))
    where = f"{source}: " if source is not None else ""
    available = ", ".join(f"{i}={n!r}" for i, n in enumerate(feature_names))
    tokens = [t.strip() for t in target.split(",")]
    if not target.strip() or any(not t for t in tokens):
        raise InvalidInputError(
            f"{where}--target {target!r} has an empty entry; give comma-separated column names or "
            f"0-based indices from: {available}"
        )
    lowered = [n.lower() for n in feature_names]
    indices: list[int] = []
    for token in tokens:
        if token in feature_names:
            index = feature_names.index(token)
        elif lowered.count(token.lower()) == 1:
            index = lowered.index(token.lower())
        elif token.isascii() and token.isdigit() and int(token) < len(feature_names):
            index = int(token)
        else:
            raise InvalidInputError(
                f"{where}--target {token!r} is not a column of the data; available columns: "
                f"{available}"
            )
        if index in indices:
            raise InvalidInputError(
                f"{where}--target names column {feature_names[index]!r} twice; list each "
                "target once"
            )
        indices.append(index)
    return tuple(indices)


# --------------------------------------------------------------------------------------------
# dispatch


def load_training_data(
    path: Path, task: str, target: str | None = None
) -> SequenceSet | Series | WindowSet:
    """Load a training (or test) file for ``task``, choosing the reader from the extension.

    - ``classify``: ``.ts``, or ``.npz`` with ``X`` ``[n, T, F]`` (or ``[n, T]``), ``y`` ``[n]``
      and optional ``lengths`` ``[n]`` → :class:`SequenceSet`.
    - ``forecast``: ``.csv``, ``.npy``, or ``.npz`` with only ``X`` ``[T, F]`` → :class:`Series`;
      ``.npz`` with ``X`` ``[n, L, F]`` and ``y`` ``[n]``/``[n, H]``/``[n, H, Ft]`` →
      :class:`WindowSet`. ``target`` picks the predicted columns (names or 0-based indices).
    - ``anomaly``: ``.csv`` (optional label column), ``.npy``/``.npz`` ``X`` ``[T, F]`` with
      optional 0/1 ``y`` ``[T]`` → :class:`Series`.

    An ``.npz`` may also hold ``feature_names`` (strings, one per feature), used for names
    instead of ``f0, f1, ...``, and, for windows, ``target_indices``.

    Example::

        train = load_training_data(Path("train.npz"), task="classify")
    """
    if task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if target is not None and task != "forecast":
        raise InvalidInputError(
            f"--target applies only to --task forecast (it picks the predicted columns); "
            f"remove it for --task {task}"
        )
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise InvalidInputError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    _require_file(path)
    if task == "classify":
        return _load_classify(path, suffix)
    if suffix == ".ts":
        raise InvalidInputError(
            f"{path}: .ts files hold labelled sequences for --task classify; for --task {task} "
            "give a .csv, .npy or .npz series"
        )
    if task == "forecast":
        return _load_forecast(path, suffix, target)
    return _load_anomaly(path, suffix)


def load_inference_data(
    path: Path, task: str, *, num_features: int | None = None
) -> SequenceSet | Series:
    """Load inputs for a trained model of ``task``; labels are optional (used when present).

    - ``classify``: like :func:`load_training_data` without requiring ``y``; a ``.csv`` (or a
      2-D ``X`` with ``num_features`` columns when that is not 1) is one sequence.
    - ``forecast``: a series (``.csv``, 2-D ``X``) → :class:`Series`, forecast from its end;
      pre-cut windows (3-D ``X``) → :class:`SequenceSet`, one forecast per window.
    - ``anomaly``: a series, as for training (optional labels).

    Example::

        data = load_inference_data(Path("new.ts"), "classify")
    """
    if task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise InvalidInputError(
            f"{path}: unsupported input file type {path.suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    _require_file(path)
    if suffix == ".ts" and task != "classify":
        raise InvalidInputError(
            f"{path}: .ts files hold sequences for classification; a {task} model needs a "
            ".csv, .npy or .npz series"
        )
    if task == "anomaly":
        return _load_anomaly(path, suffix)
    arrays = read_arrays(path) if suffix in (".npy", ".npz") else {}
    if arrays:
        _check_keys(arrays, task, path)
    X = _get_x(arrays, path) if arrays else None
    if task == "classify":
        if X is not None and X.ndim == 2 and num_features not in (None, 1):
            if X.shape[1] != num_features:
                raise InvalidInputError(
                    f"{path}: X has shape {X.shape}; the model takes {num_features} features, "
                    f"so give one sequence [time, {num_features}] or many [n, time, "
                    f"{num_features}]"
                )
            values = _as_float32(X, path, "X")
            return SequenceSet((values,), None, _feature_names(arrays, X.shape[1], path))
        return _load_classify(path, suffix, require_labels=False)
    if X is not None and X.ndim == 3:
        windows = _as_float32(X, path, "X")
        names = _feature_names(arrays, X.shape[2], path)
        return SequenceSet(tuple(windows), None, names)
    if suffix == ".csv":
        return read_csv_series(path)
    assert X is not None
    values, names = _series_from_x(X, arrays, path, "forecast")
    return Series(values=values, feature_names=names)


#: Arrays an .npz may hold, per task; anything else is refused (a misspelt `lenghts` would
#: otherwise be ignored and the padding read as data).
_NPZ_KEYS = {
    "classify": ("X", "y", "lengths", "feature_names"),
    "forecast": ("X", "y", "feature_names", "target_indices"),
    "anomaly": ("X", "y", "feature_names"),
}


def _check_keys(arrays: dict[str, np.ndarray], task: str, path: Path) -> None:
    if "X" not in arrays:
        return  # the missing X is the first thing to fix; _get_x says so
    allowed = _NPZ_KEYS[task]
    unknown = sorted(set(arrays) - set(allowed))
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise InvalidInputError(
            f"{path}: unknown array(s) {', '.join(hints)}; a {task} .npz holds {', '.join(allowed)}"
        )


def _feature_names(arrays: dict[str, np.ndarray], count: int, path: Path) -> tuple[str, ...]:
    names = arrays.get("feature_names")
    if names is None:
        return _default_names(count)
    if names.ndim != 1 or names.shape[0] != count or names.dtype.kind not in "US":
        raise InvalidInputError(
            f"{path}: 'feature_names' must be {count} strings (one per feature), got "
            f"shape {names.shape} dtype {names.dtype}"
        )
    result = tuple(str(n) for n in names)
    if len(set(result)) != len(result):
        raise InvalidInputError(f"{path}: 'feature_names' has duplicates; names must be unique")
    return result


def _get_x(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray:
    if "X" not in arrays:
        raise InvalidInputError(
            f"{path}: no array named 'X' (found: {', '.join(sorted(arrays))}); save the inputs "
            "as X, e.g. np.savez(path, X=X, y=y)"
        )
    X = arrays["X"]
    if X.size == 0:
        raise InvalidInputError(f"{path}: X is empty (shape {X.shape}); it needs data")
    return X


def _load_classify(path: Path, suffix: str, *, require_labels: bool = True) -> SequenceSet:
    needs_labels = (
        f"{path}: classification needs labels; use an .npz with arrays X [sequences, time, "
        "features] and y [sequences] (np.savez(path, X=X, y=y)), or a .ts file"
    )
    if suffix == ".ts":
        data = read_ts(path)
        if data.labels is None and require_labels:
            raise InvalidInputError(
                needs_labels.replace("use an", "this .ts file has none; use an")
            )
        return data
    if require_labels and suffix in (".csv", ".npy"):
        raise InvalidInputError(needs_labels)
    if suffix == ".csv":
        series = read_csv_series(path)
        return SequenceSet((series.values,), None, series.feature_names)
    arrays = read_arrays(path)
    _check_keys(arrays, "classify", path)
    if require_labels and "y" not in arrays:
        raise InvalidInputError(needs_labels)
    X = _get_x(arrays, path)
    if X.ndim == 2:
        X = X[:, :, None]  # [n, T] is univariate: one feature per step
    if X.ndim != 3:
        raise InvalidInputError(
            f"{path}: X has shape {X.shape}; classification expects [sequences, time, features] "
            "(or [sequences, time] for one feature)"
        )
    n, steps, features = X.shape
    y = arrays.get("y")
    if y is None:
        pass
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y is not None and (y.ndim != 1 or y.shape[0] != n):
        raise InvalidInputError(
            f"{path}: y has shape {y.shape} but X holds {n} sequences; y needs one label per "
            f"sequence, shape [{n}]"
        )
    if (
        y is not None
        and y.dtype.kind not in "iubUS"
        and not (y.dtype.kind == "f" and np.isfinite(y).all())
    ):
        raise InvalidInputError(
            f"{path}: y has dtype {y.dtype} (or NaN); labels must be integers or strings"
        )
    lengths = arrays.get("lengths")
    if lengths is None:
        values = _as_float32(X, path, "X")
        sequences = tuple(values[i] for i in range(n))
    else:
        lengths = _check_lengths(lengths, n, steps, path)
        _check_numeric(X, path, "X")
        # Only the valid part of each sequence is checked: padding past `lengths` may be
        # anything (NaN padding is common) because it is never read.
        sequences = tuple(_as_float32(X[i, : lengths[i]], path, "X", (i,)) for i in range(n))
    return SequenceSet(
        sequences=sequences, labels=y, feature_names=_feature_names(arrays, features, path)
    )


def _check_lengths(lengths: np.ndarray, n: int, steps: int, path: Path) -> np.ndarray:
    if lengths.ndim != 1 or lengths.shape[0] != n:
        raise InvalidInputError(
            f"{path}: lengths has shape {lengths.shape}; expected [{n}], one per sequence"
        )
    if lengths.dtype.kind not in "iu":
        raise InvalidInputError(
            f"{path}: lengths has dtype {lengths.dtype}; expected integers (np.int64)"
        )
    bad = (lengths < 1) | (lengths > steps)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise InvalidInputError(
            f"{path}: lengths[{i}] = {int(lengths[i])} is out of range; each length must be "
            f"between 1 and the time axis of X ({steps})"
        )
    return lengths.astype(np.int64)


def _series_from_x(
    X: np.ndarray, arrays: dict[str, np.ndarray], path: Path, task: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        hint = (
            "; pre-cut windows [n, lookback, features] need targets y in an .npz"
            if task == "forecast" and X.ndim == 3
            else ""
        )
        raise InvalidInputError(
            f"{path}: X has shape {X.shape}; a series must be [time, features] or [time]{hint}"
        )
    values = _as_float32(X, path, "X")
    return values, _feature_names(arrays, values.shape[1], path)


def _load_forecast(path: Path, suffix: str, target: str | None) -> Series | WindowSet:
    if suffix == ".csv":
        series = read_csv_series(path)
        # Validate now so a typo fails before training starts, not after.
        resolve_targets(series.feature_names, target, source=path)
        return series
    arrays = read_arrays(path)
    _check_keys(arrays, "forecast", path)
    X = _get_x(arrays, path)
    if "y" not in arrays:
        values, names = _series_from_x(X, arrays, path, "forecast")
        resolve_targets(names, target, source=path)
        return Series(values=values, feature_names=names)
    if X.ndim != 3:
        raise InvalidInputError(
            f"{path}: with y present, X must be pre-cut windows [n, lookback, features], got "
            f"shape {X.shape}; for one long series save X alone ([time, features]) and let "
            "edgelstm cut the windows"
        )
    n, _, features = X.shape
    inputs = _as_float32(X, path, "X")
    y = arrays["y"]
    if y.shape[:1] != (n,) or y.ndim > 3:
        raise InvalidInputError(
            f"{path}: y has shape {y.shape}; expected [{n}], [{n}, horizon] or "
            f"[{n}, horizon, targets] to match the {n} windows in X"
        )
    # [n] is one step of one target, [n, H] is H steps of one target.
    y3 = y.reshape(n, 1, 1) if y.ndim == 1 else (y[:, :, None] if y.ndim == 2 else y)
    targets = _as_float32(y3, path, "y")
    names = _feature_names(arrays, features, path)
    n_targets = targets.shape[2]
    if target is not None:
        indices = resolve_targets(names, target, source=path)
        source = f"--target {target!r}"
    elif "target_indices" in arrays:
        raw = arrays["target_indices"]
        if raw.dtype.kind not in "iu" or raw.ndim != 1:
            raise InvalidInputError(
                f"{path}: target_indices must be a 1-D integer array, got shape {raw.shape} "
                f"dtype {raw.dtype}"
            )
        if ((raw < 0) | (raw >= features)).any() or len(set(raw.tolist())) != raw.size:
            raise InvalidInputError(
                f"{path}: target_indices {raw.tolist()} must be distinct feature indices in "
                f"0..{features - 1}"
            )
        indices = tuple(int(i) for i in raw)
        source = "target_indices"
    elif n_targets == features:
        indices = tuple(range(features))
        source = ""
    else:
        raise InvalidInputError(
            f"{path}: y has {n_targets} target(s) per step but X has {features} features; say "
            "which features y holds with --target (names or 0-based indices, e.g. --target 0) "
            "or save an int array 'target_indices' in the .npz"
        )
    if len(indices) != n_targets:
        raise InvalidInputError(
            f"{path}: {source} names {len(indices)} column(s) but y has {n_targets} target(s) "
            "per step; they must match"
        )
    return WindowSet(inputs=inputs, targets=targets, feature_names=names, target_indices=indices)


def _load_anomaly(path: Path, suffix: str) -> Series:
    if suffix == ".csv":
        return read_csv_series(path)
    arrays = read_arrays(path)
    _check_keys(arrays, "anomaly", path)
    X = _get_x(arrays, path)
    values, names = _series_from_x(X, arrays, path, "anomaly")
    labels = arrays.get("y")
    if labels is not None:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.shape != (values.shape[0],):
            raise InvalidInputError(
                f"{path}: y has shape {labels.shape}; anomaly labels need one 0/1 entry per time "
                f"step, shape [{values.shape[0]}]"
            )
        labels = _binary_labels(labels, path, "y")
    return Series(values=values, feature_names=names, labels=labels)
