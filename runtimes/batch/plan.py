"""What a batch run will do: which files, cut into which partitions, written where.

The plan is the same for every engine, so ``--engine local`` and ``--engine ray`` write the
same partitions with the same rows. A *partition* is a contiguous row range of one input
file (the whole file when it cannot be split: text formats, a single series); its output is
one Parquet file named after the input, ``<relative input path>.part-<k>.parquet``, written
atomically. Names depend only on the input and ``partition_rows``, so a retried or resumed
partition replaces its own file: never a duplicate row.

Planning reads headers only (``.npz``/``.npy`` array headers, Parquet footers): a broken file
is not refused here but by the partition that reads it, where ``--skip-bad`` applies.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError

__all__ = [
    "Partition",
    "attempts_marker",
    "batch_file_kind",
    "find_inputs",
    "is_complete_partition",
    "marked_partition",
    "partition_path",
    "plan_partitions",
]

# --------------------------------------------------------------------------------------------
# file names: the one place that makes and recognises the names of a batch run's files

#: ``rec0.npz.part-00003.parquet``: the input's relative path, then the partition number.
_PARTITION_NAME = r".+\.part-\d{5,}\.parquet"
_FILE_KINDS = {
    "partition": re.compile(_PARTITION_NAME),
    # ``.NAME.attempts`` beside partition NAME (see ``partitions._Attempts``).
    "attempts": re.compile(rf"\.(?P<partition>{_PARTITION_NAME})\.attempts"),
    # ``.NAME.<random>.tmp``: the temporary sibling that ``fileio.atomic_file`` renames.
    "temporary": re.compile(rf"\.{_PARTITION_NAME}\..+\.tmp"),
}


def partition_path(folder: Path, relative: str, part: int) -> Path:
    """Where partition ``part`` of the input ``relative`` (to the input root) is written."""
    return folder / f"{relative}.part-{part:05d}.parquet"


def attempts_marker(partition: Path) -> Path:
    """The hidden file beside ``partition`` that counts the attempts to write it."""
    return partition.with_name(f".{partition.name}.attempts")


def batch_file_kind(path: Path) -> str | None:
    """What ``path`` is to a batch run: ``partition``, ``attempts`` (a partition's attempt
    marker), ``temporary`` (a partition being written) or None (not a partition's file)."""
    for kind, pattern in _FILE_KINDS.items():
        if pattern.fullmatch(path.name):
            return kind
    return None


def marked_partition(marker: Path) -> Path:
    """The partition an attempts marker counts for (the inverse of :func:`attempts_marker`)."""
    match = _FILE_KINDS["attempts"].fullmatch(marker.name)
    if match is None:
        raise ValueError(f"{marker} is not an attempts marker")
    return marker.with_name(match["partition"])


# --------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class Partition:
    """Rows ``[start, stop)`` of one input file (``stop=None``: the whole file) and where
    their predictions go. ``source`` is absolute (workers elsewhere must find it);
    ``relative`` is what output rows carry."""

    source: str
    relative: str
    start: int
    stop: int | None
    part: int
    output: str

    def to_row(self) -> dict[str, Any]:
        """A flat row (Ray Data carries these to its workers); :meth:`from_row` inverts it."""
        return {
            "source": self.source,
            "relative": self.relative,
            "start": self.start,
            "stop": -1 if self.stop is None else self.stop,
            "part": self.part,
            "output": self.output,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Partition:
        stop = int(row["stop"])
        return cls(
            source=str(row["source"]),
            relative=str(row["relative"]),
            start=int(row["start"]),
            stop=None if stop < 0 else stop,
            part=int(row["part"]),
            output=str(row["output"]),
        )

    @property
    def rows(self) -> int | None:
        """Rows in the partition, when the plan knows it (not for whole text files)."""
        return None if self.stop is None else self.stop - self.start


def find_inputs(spec: str, output: Path) -> tuple[Path, list[Path]]:
    """The input root and the files ``spec`` names: a folder (searched recursively), a glob
    pattern (``**`` allowed) or one file. Hidden files and anything under ``output`` are
    left out, so an output folder inside the input folder is never read back as input."""
    from edgelstm.data.readers import INFERENCE_EXTENSIONS

    output = output.resolve()
    path = Path(spec)
    if path.is_dir():
        root = path
        candidates = [p for p in path.rglob("*") if p.is_file()]
    elif path.is_file():
        root = path.parent
        candidates = [path]
    elif glob.has_magic(spec):
        root = _glob_root(spec)
        candidates = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    else:
        raise InvalidInputError(
            f"--input {spec}: no such file or folder; give a folder, a glob such as "
            "'data/**/*.npz' (quoted), or a file"
        )
    root = root.resolve()
    resolved = [p.resolve() for p in candidates]
    files = sorted(
        {
            p
            for p in resolved
            if p.suffix.lower() in INFERENCE_EXTENSIONS
            and p.is_relative_to(root)
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and not p.is_relative_to(output)
        }
    )
    if not files:
        raise InvalidInputError(
            f"--input {spec}: matches no input files ({', '.join(INFERENCE_EXTENSIONS)})"
        )
    return root, files


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def row_count(path: Path, task: str) -> int | None:
    """Sequences in ``path`` when it can be split into row ranges, else None.

    Splittable: Parquet (one sequence per row) and ``.npz``/``.npy`` holding a 3-D ``X``
    ``[sequences, time, features]``. A series (anomaly, or a forecast from a series' end),
    ``.csv`` and ``.ts`` files are read whole.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            from edgelstm.data.parquet import parquet_row_count

            return parquet_row_count(path)
        if suffix in (".npz", ".npy") and task != "anomaly":
            from edgelstm.data.arrays import array_shape

            shape = array_shape(path)
            return shape[0] if shape is not None and len(shape) == 3 else None
    except InvalidInputError:
        return None  # the partition that reads it reports the problem (or skips it)
    return None


def plan_partitions(
    root: Path, files: list[Path], output: Path, *, task: str, partition_rows: int
) -> list[Partition]:
    """Cut each file into partitions of at most ``partition_rows`` sequences (>= 1: the
    job's :class:`~edgelstm.runtimes.batch.job.BatchOptions` refuses less)."""
    output = output.resolve()
    plan: list[Partition] = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        count = row_count(path, task)
        ranges: list[tuple[int, int | None]] = (
            [(0, None)]
            if count is None or count == 0
            else [(s, min(s + partition_rows, count)) for s in range(0, count, partition_rows)]
        )
        for part, (start, stop) in enumerate(ranges):
            destination = os.fspath(partition_path(output, relative, part))
            plan.append(Partition(str(path), relative, start, stop, part, destination))
    return plan


def is_complete_partition(path: Path) -> bool:
    """True when ``path`` is a finished partition: partitions are only ever renamed into
    place once written, so a file there is complete; the Parquet footer magic is checked as
    well, against a file copied in by hand or cut short on another file system."""
    try:
        with path.open("rb") as handle:
            if path.stat().st_size < 12:
                return False
            head = handle.read(4)
            handle.seek(-4, os.SEEK_END)
            return head == b"PAR1" and handle.read(4) == b"PAR1"
    except OSError:
        return False
