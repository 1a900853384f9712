"""The bar for ``--task transcribe``: a plain PyTorch LSTM-CTC script, as a user would write it.

Issue 24 holds edgelstm's default transcriber against what a user gets from about 40 lines
of PyTorch: a strided Conv1d front end (kernel 4, stride 2) with ReLU, 2 x LSTM-128, a linear
layer to the tokens plus the CTC blank, CTC loss, Adam at 1e-3, a fixed number of epochs
(30) in batches of 32, and greedy decoding. No validation split, early stopping, schedule or
clipping: that is the point of a bar. The section between the two rulers below is that
script; the rest only feeds it the same data edgelstm trains on and scores it the same way.

Data: the built-in ``DigitStrings`` set (:func:`edgelstm.data.datasets.load_dataset`), every
training string (edgelstm holds 15 % out for early stopping; this script has no use for them),
normalised per feature with the training frames' mean and standard deviation; the test split
untouched but for that normalisation. Scores: token (character) error rate by edit distance
(:func:`edgelstm.sequence_metrics.token_error_rate`) and exact-match accuracy, as edgelstm
reports them. ``seconds`` runs from reading the data to the last decoded test string, as
edgelstm's training seconds do (less its baselines)::

    python -m edgelstm.benchmarks.suites.torch_ctc_baseline [--seed 0] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from edgelstm.data.types import Transcripts
from edgelstm.errors import InvalidInputError
from edgelstm.sequence_metrics import exact_match, token_error_rate

__all__ = ["BAR_EPOCHS", "BAR_HIDDEN", "CTCModel", "main", "train_and_evaluate"]

#: The bar's settings (``train_and_evaluate`` takes others only so tests can run it small).
BAR_EPOCHS, BAR_HIDDEN, BAR_BATCH = 30, 128, 32

# --------------------------------------------------------------------------------------------
# the plain script: model, training loop, greedy decoding


class CTCModel(nn.Module):
    def __init__(self, features: int, tokens: int, hidden: int = BAR_HIDDEN) -> None:
        super().__init__()
        self.conv = nn.Conv1d(features, hidden, kernel_size=4, stride=2, padding=1)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, tokens + 1)  # index 0 is the CTC blank

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, time, features]
        x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        logits: torch.Tensor = self.head(self.lstm(x)[0])
        return logits  # [batch, steps, tokens + 1]


def steps(lengths: torch.Tensor) -> torch.Tensor:
    return (lengths + 2 * 1 - 4) // 2 + 1  # the conv's output length


def batch(xs: list[torch.Tensor], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(xs[i]) for i in idx])
    return nn.utils.rnn.pad_sequence([xs[i] for i in idx], batch_first=True), lengths


def fit(model: CTCModel, xs: list[torch.Tensor], ys: list[torch.Tensor], epochs: int,
        seed: int) -> None:  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for start in range(0, len(xs), BAR_BATCH):
            idx = order[start : start + BAR_BATCH]
            x, lengths = batch(xs, idx)
            log_probs = model(x).log_softmax(-1).transpose(0, 1)  # [steps, batch, classes]
            targets = torch.cat([ys[i] for i in idx])
            target_lengths = torch.tensor([len(ys[i]) for i in idx])
            loss = ctc(log_probs, targets, steps(lengths), target_lengths)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()


def greedy_decode(model: CTCModel, xs: list[torch.Tensor], alphabet: str) -> list[str]:
    model.eval()
    texts = []
    with torch.no_grad():
        for start in range(0, len(xs), 256):
            x, lengths = batch(xs, np.arange(start, min(start + 256, len(xs))))
            best = model(x).argmax(-1)
            for path, n in zip(best.tolist(), steps(lengths).tolist(), strict=True):
                kept = [
                    k for j, k in enumerate(path[:n]) if k != 0 and (j == 0 or k != path[j - 1])
                ]
                texts.append("".join(alphabet[k - 1] for k in kept))
    return texts


# --------------------------------------------------------------------------------------------
# the same data and scores as edgelstm


def train_and_evaluate(
    train: Transcripts,
    test: Transcripts,
    *,
    seed: int = 0,
    epochs: int = BAR_EPOCHS,
    hidden: int = BAR_HIDDEN,
) -> dict[str, Any]:
    """Train the bar on ``train`` and score its greedy transcripts of ``test``: error rate,
    exact match, seconds and parameters (``DigitStrings``: pass ``load_dataset(...)``'s
    ``train`` and ``test``)."""
    started = time.perf_counter()
    if train.texts is None or test.texts is None:
        raise InvalidInputError(
            "the plain PyTorch bar needs y texts in both the training and the test data"
        )
    torch.manual_seed(seed)
    frames = np.concatenate(train.sequences, axis=0)
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-8

    def tensors(data: Transcripts) -> list[torch.Tensor]:
        return [torch.from_numpy(((s - mean) / std).astype(np.float32)) for s in data.sequences]

    alphabet = "".join(sorted(set("".join(train.texts))))
    ys = [torch.tensor([alphabet.index(c) + 1 for c in text]) for text in train.texts]
    model = CTCModel(train.num_features, len(alphabet), hidden)
    fit(model, tensors(train), ys, epochs, seed)
    trained = time.perf_counter()
    texts = greedy_decode(model, tensors(test), alphabet)
    references = list(test.texts)
    return {
        "error_rate": token_error_rate(references, texts),
        "exact_match": exact_match(references, texts),
        "seconds": round(time.perf_counter() - started, 1),
        "train_loop_seconds": round(trained - started, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "hidden": hidden,
        "train_sequences": len(train),
        "test_sequences": len(test),
        "torch_threads": torch.get_num_threads(),
        "architecture": f"Conv1d k4/s2 x{hidden} + ReLU, LSTM 2x{hidden}, CTC, Adam 1e-3, "
        f"batch {BAR_BATCH}, {epochs} epochs, greedy",
    }


def main(argv: Sequence[str] | None = None) -> int:
    from edgelstm.data.datasets import load_dataset

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=BAR_EPOCHS)
    args = parser.parse_args(argv)
    split = load_dataset("DigitStrings")
    assert isinstance(split.train, Transcripts) and isinstance(split.test, Transcripts)
    result = train_and_evaluate(split.train, split.test, seed=args.seed, epochs=args.epochs)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
