"""Run one partition: read its rows, predict as ``run`` does, write one Parquet file.

:class:`PartitionRunner` is what every engine runs: the local engine holds one, each Ray
actor holds one. It opens its ONNX Runtime session once, then for each
:class:`~edgelstm.runtimes.batch.plan.Partition` reads the rows with the readers ``run``
uses, predicts with :func:`edgelstm.runtimes.model_io.predictions.predict` (normalisation,
bucketing by length, labels, thresholds: nothing is re-implemented here) and writes the
prediction columns, at the model's full precision, atomically.

A partition that cannot be read or predicted comes back as a :class:`PartitionOutcome` with
an ``error`` (the engine decides: stop, or ``--skip-bad``). A partition that kills its worker
(ONNX Runtime crashing on it, the machine running out of memory) is retried by the engine;
an attempt counter beside the output makes the next attempt past ``max_attempts`` report
it as an error instead of crashing workers forever.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.data.types import InferenceData, SequenceSet, Series, TaggedSequences, Transcripts
from edgelstm.errors import EdgeLSTMError, InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.batch.plan import Partition, attempts_marker
from edgelstm.runtimes.model_io.predictions import Predictions, PredictOptions, predict
from edgelstm.runtimes.ort.session import OpenedSession, open_session
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = [
    "PartitionOutcome",
    "PartitionRunner",
    "RunnerConfig",
    "batch_task",
    "pyarrow_module",
]

#: Columns every row may carry beyond what its file gives (labels are optional per file):
#: always written, last and in this order, null where absent, so all partitions share one
#: schema.
_OPTIONAL_COLUMNS = {
    "classify": {"true_label": "string"},
    "anomaly": {"anomaly": "int64", "label": "int64"},
    "tag": {"true_label": "string"},
    "transcribe": {"true_text": "string"},
}


def batch_task(meta: ModelMetadata | None, model: str | Path) -> str:
    """The task of an edgelstm model; any other model is refused, saying what runs it."""
    if meta is None or meta.task is None:
        raise InvalidInputError(
            f"{model}: batch inference needs an edgelstm model (its metadata says how to read "
            "and normalise the inputs); run other ONNX models file by file with `edgelstm "
            "run MODEL --input FILE.npz --output OUT.npz`"
        )
    return meta.task


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
    """What running one partition did: rows written, or the error that stopped it."""

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


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """What every worker builds its :class:`PartitionRunner` from (Ray pickles it to them)."""

    model: str
    session: SessionConfig
    options: PredictOptions
    max_attempts: int = 3


class PartitionRunner:
    """One session for the life of a worker; :meth:`run` reads, predicts and writes one
    partition.

    Example::

        >>> runner = PartitionRunner(RunnerConfig(model="jv.onnx", session=SessionConfig(),
        ...                                       options=PredictOptions()))  # doctest: +SKIP
        >>> runner.run(partition).rows  # doctest: +SKIP
        250
    """

    def __init__(self, config: RunnerConfig) -> None:
        self.opened: OpenedSession = open_session(config.model, config.session)
        meta = self.opened.profile.metadata
        self.task = batch_task(meta, config.model)
        assert meta is not None  # batch_task refused any other model
        self.num_features = len(meta.feature_names)
        self.options = config.options
        self.max_attempts = config.max_attempts
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._cached: tuple[str, InferenceData] | None = None
        self._pa = pyarrow_module()

    def run(self, partition: Partition) -> PartitionOutcome:
        """Read, predict and write ``partition``; input errors come back in the outcome."""
        began, started = time.time(), time.perf_counter()
        attempts = _Attempts(Path(partition.output))
        try:
            if attempts.begin() > self.max_attempts:
                raise InvalidInputError(
                    f"{partition.source}: rows {_span(partition)} killed the worker running "
                    f"them {self.max_attempts} times (ONNX Runtime crashing on them, or out of "
                    "memory?); skip the file with --skip-bad or run it alone with `edgelstm "
                    "run` to see why"
                )
            data = self._read(partition)
            predictions, notices = predict(
                self.opened, data, source=Path(partition.source), options=self.options
            )
            rows = self._write(_prediction_columns(predictions, partition), partition)
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
        # A kill right here leaves the marker beside a complete partition: the partition
        # counts as done (its file is there) and the job removes the marker.
        attempts.end()
        return PartitionOutcome(
            partition.relative,
            partition.part,
            partition.output,
            rows=rows,
            seconds=time.perf_counter() - started,
            worker=self.worker,
            notices=tuple(notices),
            began=began,
        )

    # ----------------------------------------------------------------------------------------

    def _read(self, partition: Partition) -> InferenceData:
        path = Path(partition.source)
        if path.suffix.lower() == ".parquet":
            if self.task == "anomaly":
                from edgelstm.data.readers import load_inference_data

                return load_inference_data(path, self.task)  # refuses it, saying why
            if self.task in ("tag", "transcribe"):
                from edgelstm.data.labelled import read_parquet_labelled

                return read_parquet_labelled(
                    path, self.task, start=partition.start, stop=partition.stop
                )
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
        if isinstance(data, Series) or len(data) < partition.stop:
            raise InvalidInputError(
                f"{path}: changed while being read (rows {_span(partition)} planned, "
                f"{'a series' if isinstance(data, Series) else len(data)} found); "
                "rerun with --resume"
            )
        return _rows_of(data, slice(partition.start, partition.stop))

    def _write(self, columns: dict[str, np.ndarray], partition: Partition) -> int:
        """Write ``columns`` (plus the optional ones, null where absent) as the partition's
        Parquet file; returns the rows written."""
        from edgelstm.fileio import atomic_file

        pa = self._pa
        count = len(columns["index"])
        optional = _OPTIONAL_COLUMNS.get(self.task, {})
        if self.options.segments:
            optional = {}  # a segment is a prediction's run: it has no true label
        arrays = {
            name: pa.array(values) for name, values in columns.items() if name not in optional
        }
        for name, kind in optional.items():
            values = columns.get(name)
            arrays[name] = (
                pa.nulls(count, type=pa.type_for_alias(kind))
                if values is None
                else pa.array(values, type=pa.type_for_alias(kind))
            )
        with atomic_file(Path(partition.output), overwrite=True) as tmp:
            pa.parquet.write_table(pa.table(arrays), tmp)
        return count


def _rows_of(
    data: SequenceSet | TaggedSequences | Transcripts, rows: slice
) -> SequenceSet | TaggedSequences | Transcripts:
    """The sequences ``rows`` of ``data``, with their labels."""
    if isinstance(data, TaggedSequences):
        frames = None if data.frame_labels is None else data.frame_labels[rows]
        return replace(data, sequences=data.sequences[rows], frame_labels=frames)
    if isinstance(data, Transcripts):
        texts = None if data.texts is None else data.texts[rows]
        return replace(data, sequences=data.sequences[rows], texts=texts)
    labels = None if data.labels is None else data.labels[rows]
    return SequenceSet(data.sequences[rows], labels, data.feature_names)


def _prediction_columns(predictions: Predictions, partition: Partition) -> dict[str, np.ndarray]:
    """``run``'s columns (``predictions.table``, values as the model computed them) with
    ``source`` (the relative input path) and ``index`` (the sequence, forecast window or time
    step within the whole file) in front."""
    table = predictions.table
    if table is None:
        raise InvalidInputError(f"{partition.source}: the model's outputs are not one table")
    first = next(iter(table.values()))
    if predictions.kind in ("classify", "tag", "transcribe"):
        index = partition.start + table["index"]
    elif predictions.kind == "forecast":
        index = partition.start + table["window"]
        table = {**table, "window": index}
    else:  # anomaly: a whole series, step by step
        index = table["step"]
    source = np.full(len(first), partition.relative, dtype=object)
    rest = {name: values for name, values in table.items() if name != "index"}
    return {"source": source, "index": index.astype(np.int64), **rest}


def _span(partition: Partition) -> str:
    return f"{partition.start}-{'end' if partition.stop is None else partition.stop}"


class _Attempts:
    """How many times a partition has been started, in its attempts marker (see
    :func:`~edgelstm.runtimes.batch.plan.attempts_marker`).

    Written before the partition runs and removed after (whatever the result), so a count
    survives only when the worker died mid-partition; a shared output folder carries it to
    the retry. A partition is complete when its file exists, marker or not.
    """

    def __init__(self, output: Path) -> None:
        self.path = attempts_marker(output)

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
