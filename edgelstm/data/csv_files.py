"""The one CSV dialect edgelstm reads: training and test files, ``run`` inputs, ``run --stream``.

This module owns the dialect and nothing else: :class:`CsvLayout` (what the first row says
about every row: header or data, time and label columns), :func:`open_csv` (rows read and
checked lazily, so a live stream follows the same rules as a file) and
:func:`read_csv_series` (a whole file as one :class:`~edgelstm.data.types.Series`).

Comma-separated UTF-8; blank lines are skipped; the first row is a header when all its
cells are names and data when all are numbers (a mix is refused); later rows are all data,
with the first row's cell count. There are no comment lines: a skipped line would silently
drop a time step, and a '#N/A' cell (Excel's missing value) would pass for a comment.

Example::

    from pathlib import Path
    from edgelstm.data.csv_files import read_csv_series

    series = read_csv_series(Path("machine.csv"))  # header: timestamp,temp,rpm,is_anomaly
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgelstm.data.checks import NAN_ADVICE, default_names, parse_float, require_file
from edgelstm.data.types import Series
from edgelstm.errors import InvalidInputError

__all__ = [
    "ANOMALY_LABEL_COLUMNS",
    "TIME_COLUMNS",
    "CsvLayout",
    "open_csv",
    "read_csv_series",
]

#: CSV header names (case-insensitive) treated as the time index and dropped.
TIME_COLUMNS: frozenset[str] = frozenset({"timestamp", "time", "date", "datetime"})
#: CSV header names (case-insensitive) read as per-step anomaly labels instead of a feature.
ANOMALY_LABEL_COLUMNS: frozenset[str] = frozenset({"is_anomaly", "anomaly", "label"})

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
    kinds = [parse_float(c) is not None for c in cells]
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
        return f"{source}: row {line}, {column} is empty; {NAN_ADVICE}"
    value = parse_float(cell)
    if value is None:
        return (
            f"{source}: row {line}, {column}: {cell!r} is not a number; every data cell must be "
            "numeric (time stamps only in a column named timestamp/time/date/datetime)"
        )
    if math.isnan(value) or math.isinf(value):
        return f"{source}: row {line}, {column} is {cell!r}; {NAN_ADVICE}"
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
        names = header if header is not None else default_names(len(cells))
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
                value = parse_float(cells[j])
                if value is None or not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
                    raise InvalidInputError(
                        _bad_cell_message(self.source, line, self._column(j), cells[j])
                    )
        if self.label_column is None:
            return values, None
        j = self.label_column
        label = parse_float(cells[j])
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
    require_file(path)
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
