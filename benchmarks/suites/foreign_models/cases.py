"""The four artifacts the suite takes through edgelstm: what each is fed and how it streams.

A :class:`Case` holds what a new user would have at hand for one model: the factory's
reference, an example per ``forward()`` argument (what ``export --example`` reads), the
dynamic axes to declare, and, for a stateful model, the contract ``adopt`` is told (state
pairs, constants) and the windows to stream. The G2P model is two artifacts: its encoder
(run over a whole word) and its decoder's step (the stateful one, one token per call).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgelstm.benchmarks.suites.foreign_models import models

__all__ = ["MODULE", "Case", "StreamSpec", "cases", "third_party_export"]

#: Where the factories live, as ``export --model`` and ``benchmark --torch`` take them.
MODULE = "edgelstm.benchmarks.suites.foreign_models.models"


@dataclass(frozen=True)
class StreamSpec:
    """How a stateful model streams: ``adopt``'s contract, and the names a third party's
    ``torch.onnx.export`` gives it (what ``adopt`` reads when edgelstm's export cannot be
    adopted)."""

    states: tuple[tuple[str, str], ...]
    constants: tuple[tuple[str, str], ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    #: The windows to stream, one per call: ``[windows, window]``.
    windows: np.ndarray


@dataclass(frozen=True)
class Case:
    """One artifact: its family (``vad``, ``crnn``, ``g2p``), factory and example inputs."""

    name: str
    family: str
    factory: str
    description: str
    #: Example inputs by ``forward()`` argument name, in order.
    example: dict[str, np.ndarray]
    dynamic_axes: tuple[str, ...]
    stream: StreamSpec | None = None
    not_streaming: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reference(self) -> str:
        """``package.module:factory``, as the commands take it."""
        return f"{MODULE}:{self.factory}"

    def build(self) -> object:
        """The seeded module the factory gives."""
        factory: Callable[[], object] = getattr(models, self.factory)
        return factory()


def _one_hot(indices: np.ndarray, width: int) -> np.ndarray:
    rows: np.ndarray = np.eye(width, dtype=np.float32)[indices]
    return rows


def _vad(rng: np.random.Generator, windows: int) -> Case:
    hidden = models.VAD_HIDDEN
    zeros = np.zeros((1, 1, hidden), np.float32)
    # Noise whose loudness changes every few windows: the state has something to carry.
    gain = np.repeat(rng.uniform(0.05, 1.0, windows // 3 + 1), 3)[:windows, None]
    audio = (rng.standard_normal((windows, models.VAD_WINDOW)) * gain).astype(np.float32)
    sr = np.array(16000, np.int64)
    example: dict[str, np.ndarray] = {"input": audio[:1], "sr": sr, "h": zeros, "c": zeros}
    return Case(
        name="vad", family="vad", factory="vad",
        description="conv + LSTM voice-activity detector, explicit state, one 512-sample "
        "window per call (input [batch, 512], sr int64 scalar, h/c [1, batch, 64])",
        example=example,
        dynamic_axes=("input=0:batch", "h=1:batch", "c=1:batch"),
        stream=StreamSpec(
            states=(("h", "hn"), ("c", "cn")), constants=(("sr", "16000"),),
            input_names=("input", "sr", "h", "c"), output_names=("output", "hn", "cn"),
            windows=audio,
        ),
    )  # fmt: skip


def _crnn(rng: np.random.Generator, width: int) -> Case:
    image = rng.random((1, 1, models.CRNN_HEIGHT, width)).astype(np.float32)
    return Case(
        name="crnn", family="crnn", factory="crnn",
        description=f"CRNN line recognizer: VGG-style convs over a [batch, 1, 32, W] line "
        f"(W = {width}: one step per 4 pixels), 2 bidirectional LSTM layers, CTC head "
        f"over {models.CRNN_CLASSES} classes (blank last)",
        example={"image": image}, dynamic_axes=("image=0:batch,3:width",),
        not_streaming="n/a (bidirectional: needs the whole line)",
    )  # fmt: skip


def _g2p(rng: np.random.Generator, letters: int, tokens: int) -> list[Case]:
    word = _one_hot(rng.integers(0, 26, letters), models.G2P_GRAPHEMES)[None]
    start = models.G2P_PHONEMES - 3  # the start token; the rest are ARPAbet phonemes
    sequence = _one_hot(np.r_[start, rng.integers(0, 39, tokens - 1)], models.G2P_PHONEMES)
    h = np.zeros((1, 1, models.G2P_HIDDEN), np.float32)
    encoder = Case(
        name="g2p_encoder", family="g2p", factory="g2p_encoder",
        description=f"G2P GRU encoder over one-hot graphemes [batch, T, "
        f"{models.G2P_GRAPHEMES}] (T = {letters}) -> final state [1, batch, 64]",
        example={"graphemes": word}, dynamic_axes=("graphemes=0:batch,1:time",),
        not_streaming="n/a (gives one state per word: the decoder's step is what streams)",
    )  # fmt: skip
    decoder = Case(
        name="g2p_decoder_step", family="g2p", factory="g2p_decoder_step",
        description=f"G2P GRU decoder step: one phoneme token per call (one-hot [batch, "
        f"{models.G2P_PHONEMES}]) with explicit state h [1, batch, 64] -> logits, hn",
        example={"token": sequence[:1], "h": h},
        dynamic_axes=("token=0:batch", "h=1:batch"),
        stream=StreamSpec(
            states=(("h", "hn"),), constants=(), input_names=("token", "h"),
            output_names=("logits", "hn"), windows=sequence,
        ),
    )  # fmt: skip
    return [encoder, decoder]


def cases(*, quick: bool = False, seed: int = 0) -> list[Case]:
    """The four artifacts; ``quick`` shortens the inputs and the streams (tests)."""
    rng = np.random.default_rng(seed)
    return [
        _vad(rng, 6 if quick else 30),
        _crnn(rng, 64 if quick else 256),
        *_g2p(rng, 6 if quick else 10, 4 if quick else 12),
    ]


def third_party_export(case: Case, path: Path) -> Path:
    """``torch.onnx.export`` (TorchScript) with named inputs and outputs, as the third party
    that made a model would ship it: what ``adopt`` is given when edgelstm's own export of a
    stateful model cannot be (see the findings in the page)."""
    import torch

    assert case.stream is not None
    spec = case.stream
    module = case.build()
    assert isinstance(module, torch.nn.Module)
    args = tuple(torch.from_numpy(a) for a in case.example.values())
    axes: dict[str, dict[int, str]] = {}
    for name in (*spec.input_names, *spec.output_names):
        state = name in {n for pair in spec.states for n in pair}
        if name not in dict(spec.constants):
            axes[name] = {1: "batch"} if state else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice about its legacy exporter
        torch.onnx.export(
            module, args, str(path), input_names=list(spec.input_names),
            output_names=list(spec.output_names), opset_version=17, dynamo=False,
            dynamic_axes=axes,
        )  # fmt: skip
    return path
