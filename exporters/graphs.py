"""The torch modules that get exported: what each graph variant takes and returns.

``sequence``: ``x [batch, time, features]`` → the task output.
``streaming``: ``x`` plus the recurrent state, one entry per layer (``layer0_h``, and
``layer0_c`` for LSTM, then ``layer1_h``, ... each ``[directions, batch, hidden]``; with a conv
front end also ``frames`` ``[kernel-1, batch, features]``, the last input frames it has read;
see :meth:`SequenceModel.stream_states`) → the task output for the chunk plus the new state
(``layer0_h_out``, ..., ``frames_out``), so a caller can feed a long sequence chunk by chunk.
Every state entry has the batch on axis 1, so zero state and per-stream reset treat them
alike. Per-layer entries let each layer's recurrent node read and write its own state: a
stacked ``[layers*directions, batch, hidden]`` state (the layout of streaming files before
it, which still run) costs a split and a concat around the layers every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgelstm.config import PER_STEP_TASKS
from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.model_io.contract import FRAMES_INPUT, STEPS_AXIS, state_output_name
from edgelstm.training.models import SequenceModel

#: Output name per task and what it holds (stored in the model's metadata).
TASK_OUTPUTS: dict[str, tuple[str, str]] = {
    "classify": ("logits", "class logits [batch, classes]; softmax gives probabilities"),
    "forecast": (
        "forecast",
        "next horizon steps of the target features [batch, horizon, targets], normalised units",
    ),
    "anomaly": (
        "prediction",
        "prediction of the next frame at every step [batch, time, features], normalised units",
    ),
    "tag": ("logits", "class logits of every frame [batch, time, classes]; softmax per frame"),
    "transcribe": (
        "logits",
        "CTC token logits of every step [batch, steps, tokens + blank], the blank last; "
        "a conv front end of stride s gives one step per s frames",
    ),
}


@dataclass(frozen=True)
class GraphSpec:
    """Names and dynamic axes of one graph variant."""

    variant: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    #: name -> {axis index: axis name}
    dynamic_axes: dict[str, dict[int, str]]
    inputs_meaning: dict[str, str]
    outputs_meaning: dict[str, str]
    #: streaming: state name -> its shape, "batch" on axis 1
    state_shapes: dict[str, list[int | str]]
    #: streaming: every chunk must hold a multiple of this many frames (a strided front end)
    chunk_multiple: int = 1


class SequenceGraph(nn.Module):
    """``x`` → task output, without lengths (sequences of one length are batched together)."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # type: ignore[no-any-return]


class StreamingGraph(nn.Module):
    """``(x, *state)`` → ``(output, *state_out)`` for one chunk (see :meth:`SequenceModel.step`)."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output, new = self.model.step(x, state)
        return (output, *new)


def state_shapes(model: SequenceModel) -> dict[str, list[int | str]]:
    """The streaming state's shapes by name, in the order the graph takes them."""
    return {spec.name: list(spec.shape) for spec in model.stream_states()}


def build_graph(model: SequenceModel, variant: str) -> tuple[nn.Module, GraphSpec]:
    """The module to export for ``variant`` and its names/axes."""
    cfg = model.config
    output, meaning = TASK_OUTPUTS[cfg.task]
    per_step = cfg.task in PER_STEP_TASKS
    # A strided front end writes one step per `stride` frames: its own axis, not "time".
    out_axes = (
        {0: "batch", 1: STEPS_AXIS if cfg.stride > 1 else "time"} if per_step else {0: "batch"}
    )
    inputs_meaning = {FRAMES_INPUT: "normalised features [batch, time, features]"}
    if variant == "sequence":
        return SequenceGraph(model).eval(), GraphSpec(
            variant="sequence",
            input_names=(FRAMES_INPUT,),
            output_names=(output,),
            dynamic_axes={FRAMES_INPUT: {0: "batch", 1: "time"}, output: out_axes},
            inputs_meaning=inputs_meaning,
            outputs_meaning={output: meaning},
            state_shapes={},
        )
    if variant != "streaming":
        raise InvalidInputError(f"unknown graph variant {variant!r}; use sequence or streaming")
    model.config.check_streamable()
    states = state_shapes(model)
    state_names = tuple(states)
    state_meaning = {spec.name: spec.meaning for spec in model.stream_states()}
    outputs = (output, *(state_output_name(name) for name in state_names))
    axes: dict[str, dict[int, str]] = {FRAMES_INPUT: {0: "batch", 1: "time"}, output: out_axes}
    for name in state_names:
        axes[name] = {1: "batch"}
        axes[state_output_name(name)] = {1: "batch"}
    chunk_meaning = meaning + (" for the chunk's last step" if not per_step else " for the chunk")
    if cfg.stride > 1:
        chunk_meaning += f"; chunks must hold a multiple of {cfg.stride} frames"
    return StreamingGraph(model).eval(), GraphSpec(
        variant="streaming",
        input_names=(FRAMES_INPUT, *state_names),
        output_names=outputs,
        dynamic_axes=axes,
        inputs_meaning={**inputs_meaning, **state_meaning},
        outputs_meaning={
            output: chunk_meaning,
            **{
                state_output_name(n): ("front end frames" if n == "frames" else "recurrent state")
                + f" after the chunk; feed back as {n}"
                for n in state_names
            },
        },
        state_shapes=states,
        chunk_multiple=cfg.stride,
    )
