"""The rows a stream yields: what ``run --stream`` prints and ``serve`` answers.

:class:`StreamRows` is the one path from a stream's frames in original units to its rows:
:meth:`~StreamRows.model_input` normalises a chunk with the model's stored statistics, and
:meth:`~StreamRows.rows` turns the model's output for that chunk into rows. Classification
gives one row per chunk (the label after the chunk's last frame); anomaly detection one row
per frame (score and verdict), which needs the previous chunk's last prediction; tagging one
row per frame (its label); transcription one row per chunk: the tokens that became final in
it, with their frames, and the text so far, which needs the stream's CTC decoder. So one
object belongs to one stream and sees its chunks in order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.features import (
    PROBABILITY_DECIMALS,
    check_class_count,
    class_names,
    softmax,
    stored_normalization,
)
from edgelstm.runtimes.model_io.labelling import (
    frames_per_step,
    stream_decoder,
    token_text,
    vocabulary,
)
from edgelstm.tasks import anomaly_scores, normalize

__all__ = ["STREAMING_TASKS", "StreamRows", "batch_rows", "class_row", "stream_columns"]

#: Tasks whose models can run frame by frame.
STREAMING_TASKS = ("classify", "anomaly", "tag", "transcribe", "raw")


def class_row(probs: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """One classification row (``label``, ``confidence``, ``prob_<class>``...), as ``run``
    writes it to CSV and ``--stream`` prints it."""
    # numpy rounds the vector in one call (a server builds this row per frame per stream);
    # it agrees with decimal rounding except within ~1e-10 of a half, where the two may
    # differ in the last printed digit. Every door builds rows here, so they agree.
    rounded = np.round(probs, PROBABILITY_DECIMALS).tolist()
    best = int(probs.argmax())
    row: dict[str, Any] = {"label": labels[best], "confidence": rounded[best]}
    row.update(zip(_probability_keys(labels), rounded, strict=True))
    return row


@functools.lru_cache(maxsize=64)
def _probability_keys(labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"prob_{label}" for label in labels)


def stream_columns(meta: ModelMetadata, *, beam: int = 1) -> list[str]:
    """The columns of a stream's rows for this model.

    transcribe: ``frame`` (the chunk's last), ``tokens`` and ``token_frames`` (what became
    final in the chunk, space-separated) and ``text`` (all final text so far); a beam decoder
    adds ``partial``, its best guess including what is not final yet.
    """
    if meta.task in ("classify", "tag"):
        return ["frame", "label", "confidence", *[f"prob_{c}" for c in class_names(meta)]]
    if meta.task == "transcribe":
        return ["frame", "tokens", "token_frames", "text", *(["partial"] if beam > 1 else [])]
    if meta.task == "raw":
        return ["frame", *meta.target_names]
    return ["frame", "score", *(["anomaly"] if meta.anomaly_threshold is not None else [])]


class StreamRows:
    """One stream's rows from its chunks (see the module docstring)."""

    def __init__(
        self, meta: ModelMetadata, where: Path | str, *, beam: int = 1, prune: float = 0.0
    ) -> None:
        if meta.task not in STREAMING_TASKS:
            raise InvalidInputError(
                f"{where}: streaming supports {', '.join(STREAMING_TASKS)} models; this one "
                f"is {meta.task}"
            )
        self.task = meta.task
        self.labels = class_names(meta) if meta.task in ("classify", "tag") else ()
        self.beam = beam
        if meta.task == "transcribe":
            self.vocab = vocabulary(meta)
            self.stride = frames_per_step(meta)
            self.decoder = stream_decoder(meta, beam=beam, prune=prune)
        self.threshold = meta.anomaly_threshold
        #: raw: the column of each output value
        self.columns = meta.target_names if meta.task == "raw" else ()
        self.normalization = stored_normalization(meta, where)
        #: frames seen so far; the next chunk's first frame has this index
        self.seen = 0
        self._previous: np.ndarray | None = None  # anomaly: last frame's next-step prediction

    def model_input(self, frames: np.ndarray) -> np.ndarray:
        """A chunk ``[k, features]`` in original units, normalised for the model (float32).

        The arithmetic runs in float64 whatever the frames' type, so the same numbers give
        the same rows whether they came as CSV text, JSON or binary float32.
        """
        return normalize(np.asarray(frames, dtype=np.float64), self.normalization)

    def rows(
        self, x: np.ndarray, out: np.ndarray, *, probs: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """Rows for one chunk: ``x`` its normalised frames ``[k, features]``, ``out`` this
        stream's model output for the chunk (``[classes]`` logits or ``[k, features]``);
        ``probs``: the softmax of ``out`` when already computed (see :func:`batch_rows`)."""
        rows: list[dict[str, Any]] = []
        if self.task == "classify":
            probs = softmax(out[None])[0] if probs is None else probs
            if not self.seen:
                check_class_count(self.labels, len(probs))
            rows.append({"frame": self.seen + len(x) - 1, **class_row(probs, self.labels)})
        elif self.task == "tag":
            probs = softmax(out) if probs is None else probs
            if not self.seen:
                check_class_count(self.labels, probs.shape[-1])
            rows.extend(
                {"frame": self.seen + k, **class_row(p, self.labels)} for k, p in enumerate(probs)
            )
        elif self.task == "transcribe":
            rows.append(self._transcript_row(self.decoder.feed(out), self.seen + len(x) - 1))
        elif self.task == "raw":
            rows.extend(self._raw_rows(x, out))
        else:
            scores = anomaly_scores(x, out, previous=self._previous)
            self._previous = out[-1]
            for k, score in enumerate(scores.tolist()):
                row: dict[str, Any] = {"frame": self.seen + k, "score": score}
                if self.threshold is not None:
                    row["anomaly"] = int(score > self.threshold)
                rows.append(row)
        self.seen += len(x)
        return rows

    def _raw_rows(self, x: np.ndarray, out: np.ndarray) -> list[dict[str, Any]]:
        """An adopted model's output as it is: one row per call (output ``[values]``), or
        one per frame (``[frames, values]``), a column per value (float32 printed exactly)."""
        values = np.asarray(out, dtype=np.float64)
        if values.ndim <= 1:
            flat = values.reshape(1, -1)
            first = self.seen + len(x) - 1
        else:
            flat = values.reshape(values.shape[0], -1)
            first = self.seen
        if flat.shape[1] != len(self.columns):
            raise InvalidInputError(
                f"the model gave {flat.shape[1]} value(s) per row, its metadata names "
                f"{len(self.columns)} ({', '.join(self.columns)}); adopt it again"
            )
        return [
            {"frame": first + k, **dict(zip(self.columns, row, strict=True))}
            for k, row in enumerate(flat.tolist())
        ]

    def _transcript_row(self, final: list[tuple[int, int]], frame: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "frame": frame,
            "tokens": token_text(self.vocab, [t for t, _ in final]),
            # Steps count from the stream's start; step j has read input frames up to j*s.
            "token_frames": " ".join(str(step * self.stride) for _, step in final),
            "text": self.vocab.decode(self.decoder.tokens),
        }
        if self.beam > 1:
            row["partial"] = self.vocab.decode(self.decoder.partial)
        return row

    def finish(self) -> list[dict[str, Any]]:
        """Rows for the end of the stream: a beam decoder's last tokens become final (none
        for greedy decoding, whose tokens are final once emitted, or for other tasks)."""
        if self.task != "transcribe" or self.beam <= 1 or self.seen == 0:
            return []
        return [self._transcript_row(self.decoder.finish(), self.seen - 1)]

    def reset(self) -> None:
        """Start over, as a stream with zero state does (the decoder too)."""
        self.seen = 0
        self._previous = None
        if self.task == "transcribe":
            self.decoder.reset()


def batch_rows(
    streams: Sequence[StreamRows], x: np.ndarray, output: np.ndarray
) -> list[list[dict[str, Any]]]:
    """Each stream's rows from one batched model call: stream ``i`` read ``x[i]`` and got
    ``output[i]``. The same rows as :meth:`StreamRows.rows` one by one; classification and
    tagging take their softmax once for the whole batch (per stream it cost more than the
    rows themselves)."""
    batched = bool(streams) and streams[0].task in ("classify", "tag")
    probs = softmax(output) if batched else None
    return [
        stream.rows(x[i], output[i], probs=None if probs is None else probs[i])
        for i, stream in enumerate(streams)
    ]
