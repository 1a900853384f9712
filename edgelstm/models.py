"""The model zoo: one recurrent encoder (LSTM or GRU) with a task head.

Inputs are ``[batch, time, features]``. Training passes ``lengths`` so variable-length batches
are packed and never see padding; exported graphs take unpadded ``x`` only (sequences of one
length are batched together at inference).

This module imports torch at the top: the CLI and ``edgelstm/__init__`` import it lazily.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from edgelstm.config import ModelConfig


class SequenceModel(nn.Module):
    """Recurrent encoder + task head; see :class:`edgelstm.config.ModelConfig`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn_cls = nn.LSTM if config.arch == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            input_size=config.input_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        width = config.hidden_size * config.num_directions
        self.dropout = nn.Dropout(config.dropout)
        if config.task == "classify":
            self.head = nn.Linear(width, config.num_classes)
        elif config.task == "forecast":
            self.head = nn.Linear(width, config.horizon * len(config.target_indices))
        else:
            self.head = nn.Linear(width, config.input_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        stats = self._window_stats(x)
        if stats is not None:
            x = (x - stats[0]) / stats[1]
        if lengths is not None:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        else:
            out, _ = self.rnn(x)
        return self.decode(out, lengths, stats)

    def _window_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.config.task != "forecast" or not self.config.window_norm:
            return None
        loc = x.mean(dim=1, keepdim=True)
        scale = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-5)
        return loc, scale

    def decode(
        self,
        out: torch.Tensor,
        lengths: torch.Tensor | None = None,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Task head over recurrent outputs ``[batch, time, hidden*directions]``.

        Streaming graphs call this per chunk: the classify/forecast heads read the chunk's last
        step, the anomaly head every step.
        """
        cfg = self.config
        if cfg.task == "anomaly":
            # Per step: the prediction of the next frame (normalised units).
            return self.head(self.dropout(out))  # type: ignore[no-any-return]
        y = self.head(self.dropout(self._pool(out, lengths)))
        if cfg.task == "classify":
            return y  # type: ignore[no-any-return]
        y = y.reshape(out.shape[0], cfg.horizon, len(cfg.target_indices))
        if stats is not None:
            idx = list(cfg.target_indices)
            y = y * stats[1][:, :, idx] + stats[0][:, :, idx]
        return y  # type: ignore[no-any-return]

    def _pool(self, out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        if lengths is None:
            # Unpadded input (inference, exported graphs): plain slicing keeps the graph small.
            if cfg.pooling == "mean":
                return out.mean(dim=1)
            last = out[:, -1]
        else:
            lengths = lengths.to(out.device)
            batch, steps, _ = out.shape
            if cfg.pooling == "mean":
                mask = torch.arange(steps, device=out.device)[None, :] < lengths[:, None]
                total = (out * mask[:, :, None]).sum(dim=1)
                return total / lengths[:, None].to(out.dtype)
            last = out[torch.arange(batch, device=out.device), lengths - 1]
        if not cfg.bidirectional:
            return last
        # The backward direction has read the whole sequence at step 0, not at the end.
        h = cfg.hidden_size
        return torch.cat([last[:, :h], out[:, 0, h:]], dim=1)


def build_model(config: ModelConfig) -> SequenceModel:
    """Build the untrained model that ``config`` describes.

    Example:
        >>> from edgelstm.config import ModelConfig
        >>> model = build_model(ModelConfig(task="classify", input_size=12, num_classes=9))
    """
    return SequenceModel(config)
