"""The model zoo: one recurrent encoder (LSTM or GRU) with a task head.

Two convolutional variants (see :class:`edgelstm.config.ModelConfig`):

- ``frontend="conv"``: a strided causal Conv1d shortens the sequence before the recurrent
  layers; being causal, it streams with the last ``kernel - 1`` frames as extra state.
- ``arch="lstm-fcn"``: an LSTM branch beside three Conv1d/BatchNorm/ReLU blocks with global
  average pooling (Karim et al., 2017), both pooled vectors joined into the head. The LSTM
  reads the series time-major like every other model here, not the paper's "dimension
  shuffle" (all of it as one multivariate step), which throws away the recurrence.

Inputs are ``[batch, time, features]``. Training passes ``lengths`` so padding never reaches a
valid step: a unidirectional model is causal and runs the padded batch as it is, a
bidirectional one packs it, convolutions mask padded steps and per-series statistics skip
them; exported graphs take unpadded ``x`` only (sequences of one length are batched together
at inference).

This module imports torch at the top: the CLI and ``edgelstm/__init__`` import it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from edgelstm.config import PER_STEP_TASKS, ModelConfig

#: What each recurrent state kind holds.
STATE_KINDS = {"h": "hidden state (its last output)", "c": "cell state"}


@dataclass(frozen=True)
class StreamStateSpec:
    """One state input of :meth:`SequenceModel.step` (and of the streaming export)."""

    name: str
    #: The shape, ``"batch"`` on axis 1 (the one axis that indexes streams).
    shape: tuple[int | str, ...]
    #: What it holds, for the exported model's metadata.
    meaning: str


class SequenceModel(nn.Module):
    """Recurrent encoder + task head; see :class:`edgelstm.config.ModelConfig`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn_input = config.input_size
        self.frontend: CausalConvFrontend | None = None
        if config.frontend == "conv":
            self.frontend = CausalConvFrontend(config)
            rnn_input = config.frontend_channels
        rnn_cls = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            input_size=rnn_input,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        width = config.hidden_size * config.num_directions
        self.fcn: FullyConvolutionalBranch | None = None
        if config.arch == "lstm-fcn":
            self.fcn = FullyConvolutionalBranch(config)
            width += config.fcn_filters[-1]
        self.dropout = nn.Dropout(config.dropout)
        if config.task in ("classify", "tag", "transcribe"):
            # tag: class logits per frame; transcribe: CTC token logits per step, blank last.
            self.head = nn.Linear(width, config.num_classes)
        elif config.task == "forecast":
            self.head = nn.Linear(width, config.horizon * len(config.target_indices))
        else:
            self.head = nn.Linear(width, config.input_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        stats = self._window_stats(x, lengths)
        if stats is not None:
            x = (x - stats[0]) / stats[1]
        steps, steps_lengths = self.front(x, lengths)
        out, _ = self.recur(steps, steps_lengths)
        pooled = self.fcn(x, lengths) if self.fcn is not None else None
        return self.decode(out, steps_lengths, stats, extra=pooled)

    def front(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The recurrent layers' input and lengths: ``x`` itself, or the conv front end's."""
        if self.frontend is None:
            return x, lengths
        steps = self.frontend(x)
        if lengths is not None:
            # Step j reads frames up to j*s: a sequence of L frames has ceil(L/s) valid steps,
            # and (the convolution being causal) none of them saw the padding after frame L.
            lengths = torch.div(lengths - 1, self.config.stride, rounding_mode="floor") + 1
        return steps, lengths

    def recur(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Any]:
        """Recurrent outputs ``[batch, time, hidden*directions]`` and the final state.

        With ``lengths`` the outputs at each sequence's valid steps are exact; the final
        state is exact only for a bidirectional model (the one case that packs).
        """
        if lengths is None or not self.config.bidirectional:
            # A unidirectional RNN is causal: the padding after a sequence's end never reaches
            # its valid steps, so a padded batch runs as it is. Packing costs more than it
            # saves on CPU: PyTorch's packed LSTM backward took 10.7 s for a batch of 32
            # streams of 507 frames that runs in 0.65 s padded (the outputs are the same).
            return self.rnn(x)  # type: ignore[no-any-return]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        return out, state

    def stream_states(self) -> tuple[StreamStateSpec, ...]:
        """Streaming state, in the order :meth:`step` takes and returns it.

        One ``h`` (and ``c`` for LSTM) per recurrent layer, ``layer{i}_h`` ``[directions,
        batch, hidden]``, so each layer's recurrent op reads and writes its own state with no
        split or concat of a stacked state around it; then, with a conv front end, ``frames``
        ``[kernel-1, batch, features]`` (the frames before the chunk). All zeros at the start.
        """
        cfg = self.config
        kinds = ("h", "c") if cfg.cell == "lstm" else ("h",)
        shape: tuple[int | str, ...] = (cfg.num_directions, "batch", cfg.hidden_size)
        specs = [
            StreamStateSpec(
                f"layer{layer}_{kind}",
                shape,
                f"recurrent layer {layer}'s {STATE_KINDS[kind]} [directions, batch, hidden]; "
                "zeros to start",
            )
            for layer in range(cfg.num_layers)
            for kind in kinds
        ]
        if self.frontend is not None:
            specs.append(
                StreamStateSpec(
                    "frames",
                    (cfg.frontend_kernel - 1, "batch", cfg.input_size),
                    "conv front end's last input frames [kernel-1, batch, features]; "
                    "zeros to start",
                )
            )
        return tuple(specs)

    def state_names(self) -> tuple[str, ...]:
        """Names of :meth:`stream_states`, in the order :meth:`step` takes them."""
        return tuple(spec.name for spec in self.stream_states())

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One streaming chunk: the task output for it and the state after it.

        ``state`` is laid out as :meth:`stream_states` says. With a strided front end every
        chunk must hold a multiple of the stride (see
        :meth:`edgelstm.config.ModelConfig.check_streamable`).
        """
        rest = list(state)
        frames: tuple[torch.Tensor, ...] = ()
        if self.frontend is not None:
            x, last = self.frontend.step(x, rest.pop())
            frames = (last,)
        per_layer = 2 if self.config.cell == "lstm" else 1  # h, c or h
        if not isinstance(self.rnn, nn.RNNBase):
            # A dynamically quantized copy (the PyTorch INT8 benchmark row) runs its layers
            # only as a stack: stack the state for it and split the result back.
            stacked = [torch.cat(rest[kind::per_layer]) for kind in range(per_layer)]
            out, after = self.rnn(x, tuple(stacked) if per_layer == 2 else stacked[0])
            return self.decode(out), (*self.layer_states(after), *frames)
        layer_states: list[torch.Tensor] = []
        for layer in range(self.config.num_layers):
            if layer and self.training:
                x = F.dropout(x, self.rnn.dropout, training=True)  # as nn.LSTM between layers
            x, after = self._layer_step(layer, x, rest[layer * per_layer : (layer + 1) * per_layer])
            layer_states.extend(after)
        return self.decode(x), (*layer_states, *frames)

    def _layer_step(
        self, layer: int, x: torch.Tensor, state: list[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Recurrent layer ``layer`` alone over ``x``: its outputs and its new state.

        Calls the op ``self.rnn`` itself runs, with that layer's weights, so the export holds
        one LSTM/GRU node per layer fed straight from its own state inputs.
        """
        cfg = self.config
        suffixes = ("", "_reverse")[: cfg.num_directions]
        weights = [
            getattr(self.rnn, f"{kind}_l{layer}{suffix}")
            for suffix in suffixes
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        bidirectional = cfg.num_directions == 2
        if cfg.cell == "lstm":
            out, h, c = torch._VF.lstm(  # type: ignore[attr-defined]
                x, tuple(state), weights, True, 1, 0.0, self.training, bidirectional, True
            )
            return out, (h, c)
        out, h = torch._VF.gru(  # type: ignore[attr-defined]
            x, state[0], weights, True, 1, 0.0, self.training, bidirectional, True
        )
        return out, (h,)

    def layer_states(self, rnn_state: Any) -> tuple[torch.Tensor, ...]:
        """The recurrent entries of :meth:`stream_states` from the final state :meth:`recur`
        returns (``[layers*directions, batch, hidden]`` per kind): what :meth:`step` would
        hold after the same frames."""
        stacked = rnn_state if isinstance(rnn_state, tuple) else (rnn_state,)
        dirs = self.config.num_directions
        return tuple(
            kind[layer * dirs : (layer + 1) * dirs]
            for layer in range(self.config.num_layers)
            for kind in stacked
        )

    def _window_stats(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each sequence's own mean and std per channel ``[batch, 1, features]`` over its valid
        steps, for the models that normalise by them (forecast ``window_norm``, classify
        ``series_norm``); None for the others."""
        cfg = self.config
        if not (cfg.task == "forecast" and cfg.window_norm) and not (
            cfg.task == "classify" and cfg.series_norm
        ):
            return None
        if lengths is None:
            # Unpadded input (inference, exported graphs): plain reductions over time.
            loc = x.mean(dim=1, keepdim=True)
            return loc, torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-5)
        # Padded training batch: padding must not move a sequence's statistics, so that it is
        # normalised exactly as it would be alone.
        mask = _valid_mask(lengths.to(x.device), x.shape[1]).transpose(1, 2).to(x.dtype)
        count = mask.sum(dim=1, keepdim=True)
        loc = (x * mask).sum(dim=1, keepdim=True) / count
        var = (((x - loc) * mask) ** 2).sum(dim=1, keepdim=True) / count
        return loc, torch.sqrt(var + 1e-5)

    def decode(
        self,
        out: torch.Tensor,
        lengths: torch.Tensor | None = None,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Task head over recurrent outputs ``[batch, time, hidden*directions]``.

        Streaming graphs call this per chunk: the classify/forecast heads read the chunk's last
        step, the per-step heads (anomaly, tag, transcribe) every step. ``extra`` (lstm-fcn:
        the convolutional branch's pooled features) joins the pooled recurrent features before
        the head.
        """
        cfg = self.config
        if cfg.task in PER_STEP_TASKS:
            # Per step: the next frame's prediction (anomaly, normalised units), the frame's
            # class logits (tag) or its CTC token logits (transcribe).
            return self.head(self.dropout(out))  # type: ignore[no-any-return]
        pooled = self._pool(out, lengths)
        if extra is not None:
            pooled = torch.cat([pooled, extra], dim=1)
        y = self.head(self.dropout(pooled))
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


def _valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``[batch, 1, steps]``: 1 at valid steps, 0 at padding (channels-first layout)."""
    arange = torch.arange(steps, device=lengths.device)
    return (arange[None, :] < lengths[:, None]).unsqueeze(1)


class CausalConvFrontend(nn.Module):
    """Strided causal Conv1d + ReLU: ``[batch, T, features]`` → ``[batch, ceil(T/s), channels]``.

    Left padding of ``kernel - 1`` frames makes step j read frames ``j*s - kernel + 1 .. j*s``:
    nothing after them, so it streams (the graph keeps the last ``kernel - 1`` frames as
    state) and padding at the end of a training batch never reaches a valid step.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kernel = config.frontend_kernel
        self.stride = config.frontend_stride
        self.conv = nn.Conv1d(
            config.input_size, config.frontend_channels, self.kernel, stride=self.stride
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))
        return torch.relu(self.conv(y)).transpose(1, 2)

    def step(self, x: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One streaming chunk: ``frames`` ``[kernel-1, batch, features]`` are the frames
        before ``x`` (zeros at the start). Returns the chunk's steps and the new ``frames``.

        With chunks of a multiple of the stride, every chunk starts at a step boundary, so
        its steps are exactly the whole-sequence steps that fall in it.
        """
        joined = torch.cat([frames.transpose(0, 1), x], dim=1)
        steps = torch.relu(self.conv(joined.transpose(1, 2))).transpose(1, 2)
        return steps, joined[:, 1 - self.kernel :].transpose(0, 1)


class FullyConvolutionalBranch(nn.Module):
    """LSTM-FCN's convolutional branch: three Conv1d/BatchNorm/ReLU blocks, then the mean
    over valid steps. Padded steps are zeroed before every block, so a padded sequence sees
    the same zero 'same'-padding as when it runs alone."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = (config.input_size, *config.fcn_filters)
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, kernel)
            for c_in, c_out, kernel in zip(widths[:-1], widths[1:], config.fcn_kernels, strict=True)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in config.fcn_filters)
        self.kernels = tuple(config.fcn_kernels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        y = x.transpose(1, 2)
        mask = None if lengths is None else _valid_mask(lengths.to(x.device), y.shape[2])
        for conv, norm, kernel in zip(self.convs, self.norms, self.kernels, strict=True):
            if mask is not None:
                y = y * mask
            y = F.pad(y, ((kernel - 1) // 2, kernel // 2))  # 'same' length
            y = torch.relu(norm(conv(y)))
        if mask is None:
            return y.mean(dim=2)
        y = y * mask
        return y.sum(dim=2) / mask.sum(dim=2).to(y.dtype)


def build_model(config: ModelConfig) -> SequenceModel:
    """Build the untrained model that ``config`` describes.

    Example:
        >>> from edgelstm.config import PER_STEP_TASKS, ModelConfig
        >>> model = build_model(ModelConfig(task="classify", input_size=12, num_classes=9))
    """
    return SequenceModel(config)
