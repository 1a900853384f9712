"""Score one partition: read its rows, predict through ``run``'s path, write one Parquet file.

:class:`PartitionScorer` is what every engine runs: the local engine holds one, each Ray
actor holds one. It opens its ONNX Runtime session once, then for each
:class:`~edgelstm.runtimes.batch.plan.Partition` reads the rows with the readers ``run``
uses, scores them with :func:`edgelstm.runtimes.run_files.predict` (normalisation, bucketing by
length, labels, thresholds: nothing is re-implemented here) and writes the rows atomically.

A partition that cannot be read or scored comes back as a :class:`PartitionOutcome` with an
``error`` (the engine decides: stop, or ``--skip-bad``). A partition that kills its worker
(ONNX Runtime crashing on it, the machine running out of memory) is retried by the engine;
an attempt counter beside the output makes the next attempt past ``max_attempts`` report
it as an error instead of crashing workers forever.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.data.types import SequenceSet, Series
from edgelstm.errors import EdgeLSTMError, InvalidInputError
from edgelstm.runtimes.batch.plan import Partition
from edgelstm.runtimes.ort.session import OpenedSession, SessionConfig, open_session
from edgelstm.runtimes.run_files import Predictions, RunOptions, predict

__all__ = ["PartitionOutcome", "PartitionScorer", "pyarrow_module"]

#: Columns every row may carry beyond what its file gives (labels are optional per file):
#: always written, null where absent, so all partitions share one schema.
_OPTIONAL_COLUMNS = {
    "classify": {"true_label": "string"},
    "anomaly": {"anomaly": "int64", "label": "int64"},
}


def pyarrow_module() -> Any:
    """pyarrow, or a MissingDependencyError naming the extra that brings it."""
    try:
        import pyarrow
        import pyarrow.parquet  # the writer below needs the submodule loaded
    except ImportError as exc:
        from edgelstm.extras import missing_dependency

        raise missing_dependency(exc, "writing Parquet partitions") from exc
    return pyarrow


@dataclass(frozen=True)
class PartitionOutcome:
    """What scoring one partition did: rows written, or the error that stopped it."""

    relative: str
    part: int
    output: str
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None
    worker: str = ""
    notices: tuple[str, ...] = field(default_factory=tuple)
    #: Wall-clock time (``time.time()``) the worker began the partition: engines measure
    #: their start-up against it, since outcomes may reach the driver late and in bunches.
    began: float = 0.0

    def to_row(self) -> dict[str, Any]:
        """Flat, for Ray Data; :meth:`from_row` inverts it."""
        return {
            "relative": self.relative,
            "part": self.part,
            "output": self.output,
            "rows": self.rows,
            "seconds": self.seconds,
            "error": self.error or "",
            "worker": self.worker,
            "notices": "\n".join(self.notices),
            "began": self.began,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PartitionOutcome:
        notices = str(row["notices"])
        return cls(
            relative=str(row["relative"]),
            part=int(row["part"]),
            output=str(row["output"]),
            rows=int(row["rows"]),
            seconds=float(row["seconds"]),
            error=str(row["error"]) or None,
            worker=str(row["worker"]),
            notices=tuple(notices.split("\n")) if notices else (),
            began=float(row["began"]),
        )


class PartitionScorer:
    """One session for the life of a worker; :meth:`score` handles one partition.

    Example::

        >>> scorer = PartitionScorer("jv.onnx", SessionConfig(), RunOptions())  # doctest: +SKIP
        >>> scorer.score(partition).rows  # doctest: +SKIP
        250
    """

    def __init__(
        self,
        model: str | Path,
        session: SessionConfig,
        options: RunOptions,
        *,
        max_attempts: int = 3,
    ) -> None:
        self.opened: OpenedSession = open_session(model, session)
        meta = self.opened.profile.metadata
        if meta is None or meta.task is None:
            raise InvalidInputError(
                f"{model}: batch scoring needs an edgelstm model (its metadata says how to "
                "read and normalise the inputs); run other ONNX models file by file with "
                "`edgelstm run MODEL --input FILE.npz --output OUT.npz`"
            )
        self.task: str = meta.task
        self.num_features = len(meta.feature_names)
        self.options = options
        self.max_attempts = max_attempts
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._cached: tuple[str, SequenceSet | Series] | None = None
        self._pa = pyarrow_module()

    def score(self, partition: Partition) -> PartitionOutcome:
        """Read, score and write ``partition``; input errors come back in the outcome."""
        began, started = time.time(), time.perf_counter()
        attempts = _Attempts(Path(partition.output))
        try:
            if attempts.begin() > self.max_attempts:
                raise InvalidInputError(
                    f"{partition.source}: rows {_span(partition)} killed the worker scoring "
                    f"them {self.max_attempts} times (ONNX Runtime crashing on them, or out of "
                    "memory?); skip the file with --skip-bad or score it alone with `edgelstm "
                    "run` to see why"
                )
            data = self._read(partition)
            predictions, notices = predict(
                self.opened, data, source=Path(partition.source), options=self.options
            )
            rows = self._rows(predictions, partition)
            self._write(rows, Path(partition.output))
        except EdgeLSTMError as exc:
            attempts.end()
            return PartitionOutcome(
                partition.relative,
                partition.part,
                partition.output,
                seconds=time.perf_counter() - started,
                error=str(exc),
                worker=self.worker,
                began=began,
            )
        attempts.end()
        return PartitionOutcome(
            partition.relative,
            partition.part,
            partition.output,
            rows=len(rows),
            seconds=time.perf_counter() - started,
            worker=self.worker,
            notices=tuple(notices),
            began=began,
        )

    # ----------------------------------------------------------------------------------------

    def _read(self, partition: Partition) -> SequenceSet | Series:
        path = Path(partition.source)
        if path.suffix.lower() == ".parquet":
            if self.task == "anomaly":
                from edgelstm.data.readers import load_inference_data

                return load_inference_data(path, self.task)  # refuses it, saying why
            from edgelstm.data.parquet import read_parquet_sequences

            return read_parquet_sequences(path, start=partition.start, stop=partition.stop)
        if self._cached is None or self._cached[0] != partition.source:
            from edgelstm.data.readers import load_inference_data

            # A large file cut into several partitions is read once per worker, not once
            # per partition, when its partitions reach the same worker in a row.
            self._cached = None
            data = load_inference_data(path, self.task, num_features=self.num_features)
            self._cached = (partition.source, data)
        data = self._cached[1]
        if partition.stop is None:
            return data
        if not isinstance(data, SequenceSet) or len(data) < partition.stop:
            raise InvalidInputError(
                f"{path}: changed while being scored (rows {_span(partition)} planned, "
                f"{len(data) if isinstance(data, SequenceSet) else 'a series'} found); "
                "rerun with --resume"
            )
        rows = slice(partition.start, partition.stop)
        labels = None if data.labels is None else data.labels[rows]
        return SequenceSet(data.sequences[rows], labels, data.feature_names)

    def _rows(self, predictions: Predictions, partition: Partition) -> list[dict[str, Any]]:
        """``run``'s records with ``source`` (the relative input path) and ``index`` (the
        sequence, forecast window or time step within the whole file) in front."""
        records = predictions.records or []
        rows = []
        for record in records:
            row: dict[str, Any] = {"source": partition.relative}
            if predictions.kind == "classify":
                row["index"] = partition.start + int(record["index"])
            elif predictions.kind == "forecast":
                row["index"] = partition.start + int(record["window"])
                record = {**record, "window": row["index"]}
            else:
                row["index"] = int(record["step"])
            row.update({k: v for k, v in record.items() if k != "index"})
            rows.append(row)
        return rows

    def _write(self, rows: list[dict[str, Any]], output: Path) -> None:
        from edgelstm.fileio import atomic_file

        pa = self._pa
        table = pa.Table.from_pylist(rows)
        for name, kind in _OPTIONAL_COLUMNS.get(self.task, {}).items():
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(len(rows), type=pa.type_for_alias(kind)))
        with atomic_file(output, overwrite=True) as tmp:
            pa.parquet.write_table(table, tmp)


def _span(partition: Partition) -> str:
    return f"{partition.start}-{'end' if partition.stop is None else partition.stop}"


class _Attempts:
    """How many times a partition has been started, in ``.NAME.attempts`` beside its output.

    Written before scoring and removed after (whatever the result), so a count survives only
    when the worker died mid-partition; a shared output folder carries it to the retry.
    """

    def __init__(self, output: Path) -> None:
        self.path = output.parent / f".{output.name}.attempts"

    def begin(self) -> int:
        try:
            count = int(self.path.read_text(encoding="utf-8").strip() or 0) + 1
        except (OSError, ValueError):
            count = 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(str(count), encoding="utf-8")
        return count

    def end(self) -> None:
        self.path.unlink(missing_ok=True)
