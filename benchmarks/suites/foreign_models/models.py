"""Three small recurrent models of public architectures, built here with random weights.

They stand for models a user brings from elsewhere (no downloads: the architectures are the
point, not the weights), so the suite can take each through edgelstm the way a new user
would, by reference: ``edgelstm export --model
edgelstm.benchmarks.suites.foreign_models.models:vad --weights vad.safetensors ...``.

- :func:`vad`: a conv + LSTM voice-activity detector with explicit state, one 512-sample
  window per call (``input`` ``[batch, 512]``, ``sr`` int64 scalar, ``h``/``c``
  ``[1, batch, 64]`` -> ``output`` ``[batch, 1]`` sigmoid, ``hn``, ``cn``), the interface of a
  widely used VAD.
- :func:`crnn`: a CRNN line recognizer: a VGG-style conv stack over a ``[batch, 1, 32, W]``
  grey line image (one time step per 4 pixels of width), two bidirectional LSTM layers and a
  linear CTC head over 37 classes (10 digits, 26 letters, blank last) -> ``[batch, W/4, 37]``.
- :func:`g2p_encoder` / :func:`g2p_decoder_step`: a grapheme-to-phoneme GRU encoder-decoder;
  the encoder reads one-hot graphemes ``[batch, T, 28]`` and gives its final state, the
  decoder's step takes one phoneme token per call (one-hot ``[batch, 42]``) with explicit
  state ``h`` and gives the next token's logits and ``hn``: the stateful model that streams.

Every factory seeds torch, so the same call gives the same weights on every machine.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "CRNN",
    "CRNN_CLASSES",
    "G2P_GRAPHEMES",
    "G2P_HIDDEN",
    "G2P_PHONEMES",
    "VAD",
    "VAD_HIDDEN",
    "VAD_WINDOW",
    "G2PDecoderStep",
    "G2PEncoder",
    "crnn",
    "g2p_decoder_step",
    "g2p_encoder",
    "vad",
]

VAD_WINDOW = 512
VAD_HIDDEN = 64
#: 10 digits + 26 letters + the CTC blank, last.
CRNN_CLASSES = 37
CRNN_HEIGHT = 32
#: Pixels of width per output step (two 2x2 poolings).
CRNN_STRIDE = 4
#: 26 letters, apostrophe, end of word.
G2P_GRAPHEMES = 28
#: 39 ARPAbet phonemes, start, end, padding.
G2P_PHONEMES = 42
G2P_HIDDEN = 64


class VAD(nn.Module):
    """Conv front end over one window, one LSTM step with the caller's state, sigmoid head.

    The convolutions turn 512 samples into 64 features (a learned filter bank, then a mixing
    layer, averaged over the window's frames); ``sr`` scales them, as a model that supports
    8 and 16 kHz would switch on it; the LSTM carries ``h``/``c`` from window to window.
    """

    def __init__(self) -> None:
        super().__init__()
        self.filters = nn.Conv1d(1, 32, kernel_size=64, stride=32)
        self.mix = nn.Conv1d(32, VAD_HIDDEN, kernel_size=3, stride=2)
        self.lstm = nn.LSTM(VAD_HIDDEN, VAD_HIDDEN, batch_first=True)
        self.head = nn.Linear(VAD_HIDDEN, 1)

    def forward(
        self, input: torch.Tensor, sr: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = torch.relu(self.filters(input.unsqueeze(1)))
        z = torch.relu(self.mix(z)).mean(dim=2, keepdim=True).transpose(1, 2)
        z = z * (sr.to(z.dtype) / 16000.0)
        y, (hn, cn) = self.lstm(z, (h, c))
        return torch.sigmoid(self.head(y[:, -1])), hn, cn


def _block(inp: int, out: int, pool: tuple[int, int]) -> list[nn.Module]:
    return [nn.Conv2d(inp, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(pool, pool)]


class CRNN(nn.Module):
    """VGG-style convs (height 32 -> 1, width / 4), 2 bidirectional LSTM layers, CTC head.

    The conv stack pools the height away and the width by 4, so each output step sees a
    4-pixel strip (and, through the receptive field, its neighbours); the LSTMs read the
    strips both ways, which is why the model needs the whole line and cannot stream.
    """

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *_block(1, 16, (2, 2)),
            *_block(16, 32, (2, 2)),
            *_block(32, 48, (2, 1)),
            *_block(48, 64, (2, 1)),
            *_block(64, 64, (2, 1)),
        )
        self.lstm = nn.LSTM(64, 64, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(128, CRNN_CLASSES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        z = self.convs(image).squeeze(2).transpose(1, 2)  # [batch, W/4, 64]
        y, _ = self.lstm(z)
        logits: torch.Tensor = self.head(y)
        return logits


class G2PEncoder(nn.Module):
    """A GRU over one-hot graphemes; its final state starts the decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(G2P_GRAPHEMES, 32, bias=False)
        self.gru = nn.GRU(32, G2P_HIDDEN, batch_first=True)

    def forward(self, graphemes: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.embed(graphemes))
        state: torch.Tensor = h
        return state


class G2PDecoderStep(nn.Module):
    """One decoder step: the previous phoneme (one-hot) and ``h`` in; logits and ``hn`` out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(G2P_PHONEMES, 32, bias=False)
        self.gru = nn.GRU(32, G2P_HIDDEN, batch_first=True)
        self.head = nn.Linear(G2P_HIDDEN, G2P_PHONEMES)

    def forward(self, token: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, hn = self.gru(self.embed(token).unsqueeze(1), h)
        return self.head(y[:, 0]), hn


def vad() -> VAD:
    """The voice-activity detector, seeded (eval mode)."""
    torch.manual_seed(0)
    return VAD().eval()


def crnn() -> CRNN:
    """The line recognizer, seeded (eval mode)."""
    torch.manual_seed(1)
    return CRNN().eval()


def g2p_encoder() -> G2PEncoder:
    """The G2P encoder, seeded (eval mode)."""
    torch.manual_seed(2)
    return G2PEncoder().eval()


def g2p_decoder_step() -> G2PDecoderStep:
    """The G2P decoder's step, seeded (eval mode)."""
    torch.manual_seed(3)
    return G2PDecoderStep().eval()
