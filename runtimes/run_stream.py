"""``edgelstm run --stream``: push frames from a file or stdin through a streaming export.

:func:`stream_model` reads frames lazily (CSV rows with the one CSV dialect of
:func:`edgelstm.data.readers.open_csv`, or one sequence from ``.npy``/``.npz``/``.ts``),
normalises them with the model's stored statistics, pushes them ``chunk`` at a time through
a :class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession` and hands each
chunk's rows (:class:`~edgelstm.runtimes.model_io.stream_rows.StreamRows`, the rows
``serve`` answers too) to ``write_rows`` as soon as they are computed.

:func:`stream_to_output` writes those rows as CSV to stdout or to a file, as ``run --stream``
does.

Example::

    >>> import sys
    >>> stream_to_output("jv.stream.onnx", sys.stdin, sys.stdout, chunk=4)  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgelstm.data.types import Series
from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.features import feature_order
from edgelstm.runtimes.model_io.stream_rows import StreamRows, stream_columns
from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.session import OpenedSession
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = ["StreamResult", "stream_model", "stream_to_output"]


@dataclass(frozen=True)
class StreamResult:
    """What :func:`stream_model` did."""

    frames: int
    chunks: int
    opened: OpenedSession

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary with stable keys."""
        return {"frames": self.frames, "chunks": self.chunks, "session": self.opened.to_json()}


def _text_frames(lines: Iterable[str], source: str, meta: ModelMetadata) -> Iterator[np.ndarray]:
    """Frames from CSV lines, one per row, read lazily with the dialect of every CSV reader
    (:func:`edgelstm.data.csv_files.open_csv`); the columns map onto the model's features as
    for ``run`` on a whole file."""
    from edgelstm.data.csv_files import open_csv

    opened = open_csv(lines, source)
    if opened is None:
        return
    layout, rows = opened
    order, _ = feature_order(layout.feature_names, meta, source)
    for _, values, _ in rows:
        yield np.array([values[i] for i in order], dtype=np.float64)


def _file_frames(path: Path, meta: ModelMetadata) -> Iterator[np.ndarray]:
    """Frames from a CSV file, read lazily; the file closes when the stream ends or fails."""
    # utf-8-sig: a byte-order mark (Excel writes one) must not glue onto the first name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        yield from _text_frames(handle, str(path), meta)


def _array_frames(source: Path, meta: ModelMetadata) -> Iterator[np.ndarray]:
    from edgelstm.data.readers import load_inference_data

    task = meta.task or "anomaly"
    data = load_inference_data(source, task, num_features=len(meta.feature_names))
    if not isinstance(data, Series):
        if len(data) != 1:
            raise InvalidInputError(
                f"{source}: holds {len(data)} sequences; --stream takes one stream at a time "
                "(use the StreamingSession API for a batch of streams)"
            )
        values = data.sequences[0]
    else:
        values = data.values
    order, _ = feature_order(data.feature_names, meta, source)
    yield from values[:, order].astype(np.float64)


def _chunks(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    buffer: list[np.ndarray] = []
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == size:
            yield np.stack(buffer)
            buffer = []
    if buffer:
        yield np.stack(buffer)


def stream_to_output(
    model: Artifact | Path | str,
    input: Path | str | IO[str],
    output: Path | IO[str],
    *,
    chunk: int | None = None,
    session: SessionConfig | None = None,
    overwrite: bool = False,
    on_open: Callable[[OpenedSession], None] | None = None,
    beam: int = 1,
    prune: float = 0.0,
) -> StreamResult:
    """:func:`stream_model` writing CSV rows (:func:`stream_columns`) to ``output``: an open
    text stream (stdout, rows flushed per chunk) or a ``.csv`` file written atomically, so a
    stream that fails part-way leaves no half-written file."""
    from edgelstm.fileio import atomic_file
    from edgelstm.runtimes.model_io.writers import csv_row_writer

    artifact = model if isinstance(model, Artifact) else load_artifact(model, verify=False)
    columns = stream_columns(artifact.edgelstm_metadata(), beam=beam)
    if not isinstance(output, Path):
        return stream_model(
            artifact,
            input,
            csv_row_writer(output, columns),
            chunk=chunk,
            session=session,
            on_open=on_open,
            beam=beam,
            prune=prune,
        )
    if output.suffix.lower() != ".csv":
        raise InvalidInputError(f"--stream writes CSV rows; give --output FILE.csv, not {output}")
    with atomic_file(output, overwrite=overwrite) as tmp, tmp.open("w", encoding="utf-8") as fh:
        return stream_model(
            artifact,
            input,
            csv_row_writer(fh, columns),
            chunk=chunk,
            session=session,
            on_open=on_open,
            beam=beam,
            prune=prune,
        )


def stream_model(
    model: Artifact | Path | str,
    input: Path | str | IO[str],
    write_rows: Callable[[list[dict[str, Any]]], None],
    *,
    chunk: int | None = None,
    session: SessionConfig | None = None,
    on_open: Callable[[OpenedSession], None] | None = None,
    beam: int = 1,
    prune: float = 0.0,
) -> StreamResult:
    """Push frames through a ``--streaming`` export ``chunk`` at a time; rows per chunk.

    ``input`` is a file (``.csv``/``.npy``/``.npz``/``.ts``, one sequence) or an open text
    stream (stdin) read line by line, so a live sensor can pipe frames in. ``write_rows`` is
    called once per chunk, as soon as it is computed. Classification emits one row per chunk
    (the label after the chunk's last frame); anomaly detection one row per frame (score and
    verdict, identical to a whole-series run); tagging one row per frame; transcription one
    row per chunk with the tokens that became final (``beam`` > 1: a prefix beam search,
    whose last tokens become final in one more row when the input ends). NaN/Inf frames are
    always refused: they would poison the recurrent state for every later frame. ``on_open``
    gets the opened session before the first frame is read: a live stream may never end, so
    what can make its rows wrong (:attr:`OpenedSession.warnings`) is shown up front rather
    than after the last row.
    """
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession

    streamer = StreamingSession(model, session=session)
    meta, where = streamer.metadata, streamer.path
    multiple = streamer.chunk_multiple
    per_call = streamer.contract.frames_per_call
    chunk = (per_call or multiple) if chunk is None else chunk
    if per_call is not None and chunk != per_call:
        raise InvalidInputError(
            f"--chunk {chunk}: {where.name} reads exactly {per_call} frame(s) (window(s)) per "
            f"call; use --chunk {per_call} or leave it out"
        )
    if chunk < 1 or chunk % multiple:
        raise InvalidInputError(
            f"--chunk must be a positive multiple of {multiple} frames for {where.name} (its "
            f"front end reads one step per {multiple} frames), got {chunk}"
        )
    stream_rows = StreamRows(meta, where, beam=beam, prune=prune)
    if on_open is not None:
        on_open(streamer.opened)
    if isinstance(input, io.TextIOBase) or hasattr(input, "readline"):
        frames = _text_frames(input, "<stdin>", meta)  # type: ignore[arg-type]
    else:
        path = Path(input)  # type: ignore[arg-type]
        if not path.is_file():
            raise InvalidInputError(f"input file {path} does not exist")
        if path.suffix.lower() == ".csv":
            frames = _file_frames(path, meta)
        else:
            frames = _array_frames(path, meta)
    chunks = 0
    for block in _chunks(frames, chunk):
        x = stream_rows.model_input(block)
        # Only the input's last block can be short; a strided model takes it as final.
        out = streamer.push(x[None], final=len(block) < chunk)
        write_rows(stream_rows.rows(x, out[0]))
        chunks += 1
    if stream_rows.seen == 0:
        raise InvalidInputError(
            "no frames arrived on the input; send one line of numbers per frame"
        )
    last = stream_rows.finish()
    if last:
        write_rows(last)
    return StreamResult(stream_rows.seen, chunks, streamer.opened)
