"""Losses and validation scores of the sequence-labelling tasks (tag, transcribe).

tag trains with cross-entropy over labelled frames (padding and unlabelled frames carry
``-1`` and are ignored); transcribe with CTC (blank = the last output), which needs no
alignment between the frames and the text.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgelstm.ctc import greedy_decode_batch
from edgelstm.labelling import output_lengths, unpad_labels
from edgelstm.sequence_metrics import token_error_rate
from edgelstm.tasks import Split
from edgelstm.training.models import SequenceModel


def _outputs(
    model: SequenceModel, split: Split, idx: np.ndarray, input_noise: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step outputs ``[b, T', classes]`` of the sequences ``idx`` and their frame lengths."""
    assert split.lengths is not None
    lengths = torch.from_numpy(split.lengths[idx])
    # Trim padding beyond the longest sequence of this batch: less work, same result.
    x = torch.from_numpy(split.x[idx])[:, : int(lengths.max())]
    if input_noise > 0:
        x = x + input_noise * torch.randn_like(x)
    return model(x, lengths), lengths


def labelling_loss(
    model: SequenceModel, split: Split, idx: np.ndarray, input_noise: float = 0.0
) -> torch.Tensor:
    """Mean loss of one batch: per-frame cross-entropy (tag) or CTC (transcribe)."""
    assert split.y is not None
    out, lengths = _outputs(model, split, idx, input_noise)
    y = torch.from_numpy(split.y[idx])
    if model.config.task == "tag":
        y = y[:, : out.shape[1]]
        return nn.functional.cross_entropy(
            out.reshape(-1, out.shape[-1]), y.reshape(-1), ignore_index=-1
        )
    steps = torch.from_numpy(output_lengths(lengths.numpy(), model.config.stride))
    log_probs = nn.functional.log_softmax(out, dim=-1).transpose(0, 1)  # [T', b, classes]
    # zero_infinity: a batch whose text cannot be aligned (refused before training, so only
    # a numerical corner) contributes nothing instead of an infinite gradient.
    return nn.functional.ctc_loss(
        log_probs,
        y.clamp(min=0),
        steps,
        (y >= 0).sum(dim=1),
        blank=model.config.num_classes - 1,
        zero_infinity=True,
    )


def labelling_validation(
    model: SequenceModel, split: Split, batch_size: int = 256
) -> tuple[float, str]:
    """The validation loss (lower is better; it decides early stopping) and what the progress
    line shows: frame accuracy (tag) or the greedy error rate (transcribe)."""
    assert split.y is not None and split.lengths is not None
    total = 0.0
    shown_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            idx = np.arange(start, min(start + batch_size, len(split)))
            total += float(labelling_loss(model, split, idx)) * len(idx)
            out, lengths = _outputs(model, split, idx)
            shown_parts.append((idx, out.numpy(), lengths.numpy()))
    loss = total / max(len(split), 1)
    if model.config.task == "tag":
        right = labelled = 0
        for idx, logits, frames in shown_parts:
            for row, truth in zip(logits, unpad_labels(split.y[idx], frames), strict=True):
                mask = truth >= 0
                right += int(np.sum(np.argmax(row[: len(truth)], axis=-1)[mask] == truth[mask]))
                labelled += int(mask.sum())
        return loss, f"val frame acc {right / max(labelled, 1):.3f}"
    references, hypotheses = [], []
    blank = model.config.num_classes - 1
    for idx, logits, frames in shown_parts:
        steps = output_lengths(frames, model.config.stride)
        hypotheses += [d.tokens for d in greedy_decode_batch(logits, steps, blank)]
        references += [tuple(r.tolist()) for r in unpad_labels(split.y[idx])]
    return loss, f"val err {token_error_rate(references, hypotheses):.3f}"
