"""What a sequence labeller's outputs mean: per-frame tags and CTC transcripts as columns.

A tagger (``task tag``) writes class logits for every frame; a transcriber (``task
transcribe``) writes CTC token logits for every recurrent step, the blank last, one step per
``stride`` frames. This module turns them into the tables ``run`` writes (one row per frame,
per segment or per sequence) and builds the decoder a stream carries, so ``run``, the batch
engines, ``run --stream`` and ``serve`` read the same outputs the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgelstm.ctc import (
    BeamStreamDecoder,
    Decoded,
    GreedyStreamDecoder,
    StreamDecoder,
    Vocabulary,
    greedy_decode_batch,
    prefix_beam_search,
)
from edgelstm.data.types import TaggedSequences
from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.features import check_class_count, class_names, softmax
from edgelstm.sequence_metrics import exact_match, frame_metrics, segments, token_error_rate

__all__ = [
    "frames_per_step",
    "stream_decoder",
    "tag_table",
    "tag_truth",
    "token_text",
    "transcribe_table",
    "vocabulary",
]


def frames_per_step(meta: ModelMetadata) -> int:
    """Input frames per output step: a conv front end's stride (1 without one)."""
    model = (meta.run_record or {}).get("model") or {}
    if model.get("frontend") == "conv":
        stride = model.get("frontend_stride")
        if isinstance(stride, int) and stride >= 1:
            return stride
    return max(1, meta.stream_chunk_multiple)


def vocabulary(meta: ModelMetadata) -> Vocabulary:
    """A transcriber's tokens (output ``i`` writes ``tokens[i]``; the blank is last)."""
    if meta.task != "transcribe" or not meta.tokens:
        raise InvalidInputError("the model's metadata names no tokens; export it again")
    return Vocabulary(meta.tokens)


def stream_decoder(meta: ModelMetadata, *, beam: int = 1, prune: float = 0.0) -> StreamDecoder:
    """The CTC decoder one stream carries: greedy (``beam`` 1) or a prefix beam search."""
    blank = vocabulary(meta).blank
    if beam <= 1:
        return GreedyStreamDecoder(blank)
    return BeamStreamDecoder(blank, beam_width=beam, prune=prune)


def token_text(vocab: Vocabulary, tokens: Sequence[int]) -> str:
    """Tokens as a space-separated string (``"4 0 7"``): multi-character tokens stay apart."""
    return " ".join(vocab.tokens[t] for t in tokens)


def _frames_text(frames: Sequence[int]) -> str:
    return " ".join(str(int(f)) for f in frames)


def tag_table(
    logits: np.ndarray,
    lengths: np.ndarray,
    meta: ModelMetadata,
    *,
    segments_only: bool = False,
    truth: Sequence[np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(table, arrays, summary) of a tagger's per-frame ``logits`` ``[n, T, classes]``.

    Rows are ``index, step, label, confidence, prob_<class>...`` per frame, or with
    ``segments_only`` ``index, start, end, label, mean_confidence`` per run of one label
    (``end`` exclusive; the mean of that label's probability over the run). ``truth`` (the
    input's frame labels as class indices, ``-1`` unlabelled) adds ``true_label`` and the
    frame and segment metrics to the summary.
    """
    labels = class_names(meta)
    check_class_count(labels, logits.shape[-1])
    probs = softmax(logits).astype(np.float32)
    predicted = [probs[i, : int(n)].argmax(axis=-1) for i, n in enumerate(lengths.tolist())]
    names = np.array(labels)
    summary: dict[str, Any] = {"sequences": len(lengths), "frames": int(np.sum(lengths))}
    if truth is not None:
        summary.update(frame_metrics(list(truth), predicted))
    arrays = {
        "probabilities": probs,
        "predicted": _padded(predicted),
        "lengths": np.asarray(lengths, dtype=np.int64),
        "class_labels": names,
    }
    if segments_only:
        segment_rows = _segment_table(probs, predicted, names)
        summary["segments"] = len(segment_rows["index"])
        return segment_rows, arrays, summary
    index = np.concatenate([np.full(len(p), i) for i, p in enumerate(predicted)])
    step = np.concatenate([np.arange(len(p)) for p in predicted])
    frame_probs = np.concatenate([probs[i, : len(p)] for i, p in enumerate(predicted)])
    table: dict[str, np.ndarray] = {
        "index": index,
        "step": step,
        "label": names[np.concatenate(predicted)] if len(index) else names[:0],
        "confidence": frame_probs.max(axis=-1) if len(index) else np.zeros(0, np.float32),
        **{f"prob_{c}": frame_probs[:, j] for j, c in enumerate(labels)},
    }
    if truth is not None:
        true = np.concatenate([np.asarray(t) for t in truth])
        table["true_label"] = np.where(true >= 0, names[np.maximum(true, 0)], "")
    return table, arrays, summary


def tag_truth(data: TaggedSequences, labels: Sequence[str], source: str) -> list[np.ndarray]:
    """An input's frame labels as the model's class indices (``-1`` stays unlabelled).

    Labels are matched by class name when the input names its classes, else taken as the
    model's indices; a class the model does not know is refused by name.
    """
    assert data.frame_labels is not None
    names = data.class_names or tuple(str(i) for i in range(len(labels)))
    if names == tuple(str(i) for i in range(len(names))) and not set(names) <= set(labels):
        # A file that names no classes gets index names from its reader: indices they are.
        names = tuple(labels) + names[len(labels) :]
    index = {name: i for i, name in enumerate(labels)}
    lookup = np.array([index.get(n, -2) for n in names] + [-1], dtype=np.int64)
    mapped = []
    for i, row in enumerate(data.frame_labels):
        if row.size and int(row.max()) >= len(names):
            raise InvalidInputError(
                f"{source}: y[{i}] holds class {int(row.max())}; the model has "
                f"{len(labels)} classes ({', '.join(labels)})"
            )
        out = lookup[row]
        if (out == -2).any():
            bad = names[int(row[out == -2][0])]
            raise InvalidInputError(
                f"{source}: y[{i}] is labelled {bad!r}, a class the model does not know "
                f"({', '.join(labels)})"
            )
        mapped.append(out)
    return mapped


def _padded(rows: Sequence[np.ndarray]) -> np.ndarray:
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _segment_table(
    probs: np.ndarray, predicted: Sequence[np.ndarray], names: np.ndarray
) -> dict[str, np.ndarray]:
    rows: dict[str, list[Any]] = {k: [] for k in ("index", "start", "end", "label")}
    confidence: list[float] = []
    for i, frames in enumerate(predicted):
        for seg in segments(frames):
            rows["index"].append(i)
            rows["start"].append(seg.start)
            rows["end"].append(seg.end)
            rows["label"].append(names[seg.label])
            confidence.append(float(probs[i, seg.start : seg.end, seg.label].mean()))
    table = {k: np.asarray(v, dtype=np.int64) for k, v in rows.items() if k != "label"}
    return {
        "index": table["index"],
        "start": table["start"],
        "end": table["end"],
        "label": np.asarray(rows["label"], dtype=str),
        "mean_confidence": np.asarray(confidence, dtype=np.float32),
    }


def decode_transcripts(
    logits: np.ndarray, steps: np.ndarray, blank: int, *, beam: int = 1, prune: float = 0.0
) -> list[Decoded]:
    """Greedy (``beam`` 1, vectorised) or prefix-beam decodings of padded step ``logits``."""
    if beam <= 1:
        return greedy_decode_batch(logits, steps, blank)
    return [
        prefix_beam_search(logits[i, : int(n)], blank, beam_width=beam, prune=prune)
        for i, n in enumerate(steps.tolist())
    ]


def transcribe_table(
    logits: np.ndarray,
    lengths: np.ndarray,
    meta: ModelMetadata,
    *,
    beam: int = 1,
    prune: float = 0.0,
    timestamps: bool = False,
    truth: Sequence[str] | None = None,
    source: str = "input",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(table, arrays, summary) of a transcriber's step ``logits`` ``[n, T', tokens + 1]``.

    One row per sequence: ``index, text, tokens`` (space-separated), with ``timestamps`` the
    input frame of each token (``frames``), with ``truth`` the ``true_text``; the summary
    then holds the token error rate and exact-match accuracy.
    """
    vocab = vocabulary(meta)
    if logits.shape[-1] != vocab.size:
        raise InvalidInputError(
            f"the model has {logits.shape[-1]} outputs but its metadata names "
            f"{len(vocab.tokens)} tokens plus the blank"
        )
    stride = frames_per_step(meta)
    steps = (np.asarray(lengths, dtype=np.int64) - 1) // stride + 1
    decoded = decode_transcripts(logits, steps, vocab.blank, beam=beam, prune=prune)
    texts = np.array([vocab.decode(d.tokens) for d in decoded], dtype=str)
    table: dict[str, np.ndarray] = {
        "index": np.arange(len(decoded)),
        "text": texts,
        "tokens": np.array([token_text(vocab, d.tokens) for d in decoded], dtype=str),
    }
    if timestamps:
        table["frames"] = np.array(
            [_frames_text([f * stride for f in d.frames]) for d in decoded], dtype=str
        )
    summary: dict[str, Any] = {
        "sequences": len(decoded),
        "decoder": "greedy" if beam <= 1 else f"beam {beam}",
    }
    if truth is not None:
        table["true_text"] = np.array(list(truth), dtype=str)
        references = [vocab.encode(t, where=f"{source}: y[{i}]") for i, t in enumerate(truth)]
        hypotheses = [d.tokens for d in decoded]
        summary["error_rate"] = token_error_rate(references, hypotheses)
        summary["exact_match"] = exact_match(references, hypotheses)
    arrays = {"text": texts, "logits": logits, "steps": steps, "tokens": np.array(vocab.tokens)}
    return table, arrays, summary
