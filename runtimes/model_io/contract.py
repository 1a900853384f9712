"""The streaming contract: how a ``--streaming`` export carries state from call to call.

A streaming graph takes the frames ``x`` ``[batch, frames, features]`` plus one input per
state, each with one symbolic batch axis, and returns the task output followed by the new
state under ``<state>_out``. Exports carry one state per recurrent layer (``layer0_h``,
``layer0_c`` for an LSTM, ... ``[directions, batch, hidden]``) and ``frames``
``[kernel-1, batch, features]`` for a conv front end; older files carry one stacked ``h``
(and ``c``) ``[layers*directions, batch, hidden]``. Nothing here depends on which: the
names and shapes come from the model's metadata. A strided front end reads one step per
``chunk_multiple`` frames, so chunks hold multiples of it.

The exporter writes this contract (graph names and metadata); export validation,
:class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession`, the server's batcher
and the quantizer's drift report read it from here, so the naming exists once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata

__all__ = ["FRAMES_INPUT", "STEPS_AXIS", "StreamContract", "state_output_name"]

#: The frames input of every edgelstm graph.
FRAMES_INPUT = "x"
#: The time axis of a per-step output behind a strided front end: one step per
#: ``stream_chunk_multiple`` frames (``time`` when every frame gives a step).
STEPS_AXIS = "steps"


def state_output_name(state: str) -> str:
    """The output that carries the new value of state input ``state``
    (``layer0_h`` → ``layer0_h_out``)."""
    return f"{state}_out"


@dataclass(frozen=True)
class StreamContract:
    """State names, shapes and batch axes of a streaming export, and its chunk multiple.

    ``shapes`` maps each state input to its declared shape: integers, and exactly one
    symbolic (batch) axis.
    """

    shapes: Mapping[str, tuple[int | str, ...]]
    chunk_multiple: int = 1
    #: every call takes exactly this many frames (a model adopted with one window per call)
    frames_per_call: int | None = None
    #: at most this many streams share a call (1: a model adopted whose state has no batch
    #: axis; its size-1 axis stands for one stream)
    max_streams_per_call: int | None = None

    def __post_init__(self) -> None:
        for name, shape in self.shapes.items():
            symbolic = [d for d in shape if isinstance(d, str)]
            if len(symbolic) != 1:
                raise InvalidInputError(
                    f"state `{name}` has shape {list(shape)}: a streaming model needs exactly "
                    "one symbolic (batch) axis; export the model again with "
                    "`edgelstm export --streaming`"
                )
        object.__setattr__(self, "shapes", MappingProxyType(dict(self.shapes)))

    @classmethod
    def of(cls, meta: ModelMetadata, where: Path | str) -> StreamContract:
        """The contract recorded in a model's metadata; refuses a model that cannot stream."""
        if meta.variant != "streaming" or not meta.state:
            raise InvalidInputError(
                f"{where} is a {meta.variant} model without state inputs; export it with "
                "`edgelstm export RUN_DIR --streaming` to stream it, or, for a model with its "
                "state as inputs and outputs, declare them: `edgelstm adopt MODEL --state IN=OUT`"
            )
        shapes = {name: tuple(_dim(d) for d in shape) for name, shape in meta.state.items()}
        return cls(
            shapes, meta.stream_chunk_multiple, meta.stream_frames_per_call, meta.stream_max_batch
        )

    @property
    def state_names(self) -> tuple[str, ...]:
        """State inputs, in the graph's input order after ``x``."""
        return tuple(self.shapes)

    @property
    def state_outputs(self) -> tuple[str, ...]:
        """The outputs carrying the new state, in the order of :attr:`state_names`."""
        return tuple(state_output_name(name) for name in self.shapes)

    def batch_axis(self, name: str) -> int:
        """The axis of state ``name`` that indexes streams."""
        return next(i for i, d in enumerate(self.shapes[name]) if isinstance(d, str))

    def state_shape(self, name: str, streams: int) -> tuple[int, ...]:
        """The concrete shape of state ``name`` for ``streams`` streams side by side."""
        return tuple(d if isinstance(d, int) else streams for d in self.shapes[name])

    def check_frames_per_call(self, frames: int) -> None:
        """Refuse a chunk of another size than a one-window-per-call model takes."""
        if self.frames_per_call is not None and frames != self.frames_per_call:
            raise InvalidInputError(
                f"a chunk of {frames} frames: this model reads exactly {self.frames_per_call} "
                f"frame(s) (window(s)) per call; send {self.frames_per_call} per push or request"
            )

    def check_chunk(self, frames: int) -> None:
        """Refuse a chunk the graph cannot take: empty, or not a multiple of its stride."""
        if frames < 1:
            raise InvalidInputError("a chunk needs at least one frame")
        self.check_frames_per_call(frames)
        if frames % self.chunk_multiple:
            raise InvalidInputError(
                f"a chunk of {frames} frames: this model reads one step per "
                f"{self.chunk_multiple} frames (a strided conv front end); send chunks of a "
                f"multiple of {self.chunk_multiple} frames (buffer the rest until then)"
            )


def _dim(value: Any) -> int | str:
    return value if isinstance(value, str) else int(value)
