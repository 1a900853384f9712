"""Data-driven defaults: what ``edgelstm train`` (``--arch auto``, the default) chooses.

The choice reads only the shape of the training data (how long the sequences are, how many
channels and examples, how many classes), never the dataset's name, so a user's unseen data
gets the same reasoning as the built-in sets. Each setting comes with the reason it was
chosen; ``train`` prints them and records them in the checkpoint's ``config.json``. Anything
the user gives explicitly is kept as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgelstm.config import TrainConfig
from edgelstm.tasks import PreparedData

__all__ = [
    "AutoChoice",
    "DataFacts",
    "choose_settings",
    "frontend_kernel_for",
    "training_reasons",
]

#: Above this many steps an LSTM reading every frame learns slowly and carries little from
#: early frames to the end; a strided convolution shortens the sequence first.
LONG_SEQUENCE = 64
#: About this many recurrent steps are left after a strided front end.
TARGET_STEPS = 48


@dataclass(frozen=True)
class DataFacts:
    """The shape of the training data that the defaults are chosen from."""

    task: str
    examples: int
    median_length: int
    channels: int
    classes: int = 0
    #: transcribe: median frames per token the CTC head must emit (frames / text length).
    frames_per_token: float = 0.0

    @classmethod
    def from_prepared(cls, prepared: PreparedData) -> DataFacts:
        train = prepared.train
        if train.lengths is not None:
            median = int(np.median(train.lengths))
        else:
            median = int(train.x.shape[1])
        frames_per_token = 0.0
        if prepared.task == "transcribe" and train.y is not None and train.lengths is not None:
            tokens = np.maximum((train.y >= 0).sum(axis=1), 1)
            frames_per_token = float(np.median(train.lengths / tokens))
        return cls(
            task=prepared.task,
            examples=len(train) + len(prepared.val),
            median_length=median,
            channels=prepared.num_features,
            classes=len(prepared.class_labels),
            frames_per_token=frames_per_token,
        )

    def describe(self) -> str:
        if self.task in ("classify", "tag", "transcribe"):
            what = f"{self.examples} training sequences of median length {self.median_length}"
        else:
            what = f"{self.examples} training windows of {self.median_length} steps"
        channels = f"{self.channels} channel" + ("" if self.channels == 1 else "s")
        classes = f", {self.classes} classes" if self.classes else ""
        return f"{what}, {channels}{classes}"


@dataclass(frozen=True)
class AutoChoice:
    """The settings chosen (``train`` keyword names) and one reason per setting group."""

    facts: DataFacts
    settings: dict[str, Any]
    reasons: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "data": {
                "examples": self.facts.examples,
                "median_length": self.facts.median_length,
                "channels": self.facts.channels,
                "classes": self.facts.classes,
            },
            "chosen": dict(self.settings),
            "reasons": list(self.reasons),
        }

    def overridden_by(self, given: dict[str, Any]) -> AutoChoice:
        """This choice with a last reason naming the settings ``given`` explicitly that differ
        from it, so the note never leaves a reason standing for a setting that was not used."""
        changed = {k: v for k, v in given.items() if k in self.settings and self.settings[k] != v}
        if not changed:
            return self
        listed = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        note = f"given explicitly, and used instead: {listed}"
        return replace(self, reasons=(*self.reasons, note))


@dataclass(frozen=True)
class ModelRequest:
    """The model settings given to :func:`train`; None leaves a setting to ``arch="auto"``
    (:func:`edgelstm.training.architecture.choose_settings`, from the training data's shape;
    its choice and reasons go to ``config.json``), then to ``ModelConfig``'s default.
    ``arch="lstm-fcn"`` (classify) adds a fully convolutional branch with ``fcn_filters``;
    ``frontend="conv"`` puts a causal Conv1d with ``frontend_channels`` filters of
    ``frontend_kernel`` frames every ``frontend_stride`` frames before the recurrent layers.
    ``series_norm`` (classify) z-normalises each sequence by its own mean and std."""

    arch: str
    layers: int
    hidden: int
    bidirectional: bool
    dropout: float
    pooling: str | None
    frontend: str | None
    frontend_stride: int | None
    frontend_kernel: int | None
    frontend_channels: int | None
    fcn_filters: tuple[int, ...]
    series_norm: bool | None = None

    def given(self) -> dict[str, Any]:
        """The settings ``arch="auto"`` may choose that were given explicitly."""
        given = {
            "arch": None if self.arch == "auto" else self.arch,
            "pooling": self.pooling,
            "frontend": self.frontend,
            "frontend_stride": self.frontend_stride,
            "frontend_kernel": self.frontend_kernel,
            "frontend_channels": self.frontend_channels,
            "series_norm": self.series_norm,
        }
        return {key: value for key, value in given.items() if value is not None}


def frontend_kernel_for(stride: int) -> int:
    """The front end's kernel when only its stride is known: two strides, so neighbouring
    steps overlap by half and no frame is read by one step alone."""
    return max(2, 2 * stride)


def choose_settings(facts: DataFacts) -> AutoChoice:
    """Architecture and pooling for ``facts`` (classification), with the reasons.

    Short sequences go to a plain LSTM read to its last step. Long ones go to LSTM-FCN, whose
    convolutional branch reads every frame, with a strided causal convolution before its LSTM
    sized to leave about :data:`TARGET_STEPS` recurrent steps, and mean pooling so every step's
    gradient reaches the encoder; a long univariate series is also z-normalised by its own
    statistics (``series_norm``, :data:`SERIES_NORM_REASON`).
    Forecast and anomaly models read fixed windows (``--lookback``) and stay plain LSTMs;
    sequence labellers are chosen by :func:`_labelling_settings`.
    """
    if facts.task in ("tag", "transcribe"):
        return _labelling_settings(facts)
    if facts.task != "classify":
        return AutoChoice(
            facts,
            {"arch": "lstm", "frontend": "none"},
            (f"lstm: {facts.task} models read windows of --lookback steps",),
        )
    if facts.median_length <= LONG_SEQUENCE:
        return AutoChoice(
            facts,
            {"arch": "lstm", "frontend": "none", "pooling": "last"},
            (
                f"lstm read to its last step: sequences of {facts.median_length} steps "
                f"(<= {LONG_SEQUENCE}) are short enough for the LSTM alone",
            ),
        )
    stride = max(2, math.ceil(facts.median_length / TARGET_STEPS))
    kernel = frontend_kernel_for(stride)
    settings = {
        "arch": "lstm-fcn",
        "frontend": "conv",
        "frontend_stride": stride,
        "frontend_kernel": kernel,
        "pooling": "mean",
    }
    steps = math.ceil(facts.median_length / stride)
    reasons: tuple[str, ...] = (
        f"lstm-fcn: sequences of {facts.median_length} steps (> {LONG_SEQUENCE}) are long for "
        "an LSTM alone; a fully convolutional branch pooled over every frame reads their "
        "shape (it does not stream: for a streaming model give --arch lstm --frontend conv)",
        f"conv front end for the LSTM branch, stride {stride}, kernel {kernel}: "
        f"{facts.median_length} frames become {steps} recurrent steps",
        "mean pooling: every recurrent step reaches the classifier",
    )
    if facts.channels == 1:
        settings["series_norm"] = True
        reasons += (SERIES_NORM_REASON,)
    return AutoChoice(facts, settings, reasons)


#: Why a long univariate series is normalised by its own statistics (see the study in
#: benchmarks/results/small_data_study.md).
SERIES_NORM_REASON = (
    "per-series normalisation: one long channel is classified by its shape, so each sequence "
    "is z-normalised by its own mean and std inside the model (as the 1-NN baselines "
    "compare univariate series), and a recording's level or gain cannot decide its class; "
    "give --no-series-norm when they carry the class"
)


#: transcribe: recurrent steps a conv front end leaves per token, at least (median).
STEPS_PER_TOKEN = 4
#: transcribe: the conv front end's filters. With input noise, 128 rather than the default 64
#: took DigitStrings from 1.8 % to 1.0-1.3 % token error rate (seed 0, test images unseen).
TRANSCRIBE_FRONTEND_CHANNELS = 128
#: transcribe: the largest front-end stride auto chooses.
MAX_TRANSCRIBE_STRIDE = 4


def _labelling_settings(facts: DataFacts) -> AutoChoice:
    """A unidirectional LSTM (it streams) for tag and transcribe; a transcriber with many
    frames per token gets a strided conv front end, which shortens what the LSTM reads while
    leaving :data:`STEPS_PER_TOKEN` steps per token for CTC's blanks and repeats."""
    if facts.task == "tag":
        return AutoChoice(
            facts,
            {"arch": "lstm", "frontend": "none"},
            (
                "lstm, one step per frame: every frame gets a label, and a unidirectional "
                "LSTM streams them as they arrive",
            ),
        )
    stride = min(MAX_TRANSCRIBE_STRIDE, int(facts.frames_per_token // STEPS_PER_TOKEN))
    if stride < 2:
        return AutoChoice(
            facts,
            {"arch": "lstm", "frontend": "none"},
            (
                f"lstm reading every frame: {facts.frames_per_token:.1f} frames per token leave "
                f"no room for a strided front end (CTC needs about {STEPS_PER_TOKEN} steps "
                "per token)",
            ),
        )
    kernel = frontend_kernel_for(stride)
    settings = {
        "arch": "lstm",
        "frontend": "conv",
        "frontend_stride": stride,
        "frontend_kernel": kernel,
        "frontend_channels": TRANSCRIBE_FRONTEND_CHANNELS,
    }
    return AutoChoice(
        facts,
        settings,
        (
            f"conv front end, stride {stride}, kernel {kernel}: {facts.frames_per_token:.1f} "
            f"frames per token become {facts.frames_per_token / stride:.1f} CTC steps per "
            f"token (>= {STEPS_PER_TOKEN}), and the LSTM reads {stride}x fewer steps; "
            f"{TRANSCRIBE_FRONTEND_CHANNELS} filters, so the steps it reads are as wide as "
            "the default LSTM",
            "lstm: unidirectional, so the model streams (the front end keeps its last frames "
            "as state)",
        ),
    )


def training_reasons(
    config: TrainConfig, batch: int, train_examples: int, given: frozenset[str]
) -> tuple[str, ...]:
    """Why the optimisation settings are what they are, for the ones the user did not give
    (``given`` holds ``train`` keyword names), so ``config.json`` explains the whole run."""
    reasons = [
        "per-feature normalisation with the training split's statistics, stored in the "
        "model so run and run --stream normalise exactly as training did"
    ]
    if "batch_size" not in given:
        if batch < config.batch_size:
            reasons.append(
                f"batch {batch}: {train_examples} training examples at {config.batch_size} "
                f"would give fewer than {config.min_batches_per_epoch} updates per epoch"
            )
        else:
            reasons.append(f"batch {batch}")
    if config.input_noise > 0 and "input_noise" not in given:
        reasons.append(
            f"Gaussian noise of std {config.input_noise:g} (normalised units) on the training "
            "inputs: a recogniser otherwise learns its training strings' writers or voices by "
            "heart (--input-noise 0 turns it off)"
        )
    if "epochs" not in given or "learning_rate" not in given:
        stopping = (
            f"up to {config.epochs} epochs at learning rate {config.learning_rate:g}, stopped "
            f"after {config.patience} without a better validation score"
        )
        if config.refit:
            stopping += (
                f", then a refit on training + validation data of at least "
                f"{config.min_refit_epochs} epochs and {config.min_refit_steps} updates"
            )
        reasons.append(stopping)
    return tuple(reasons)
