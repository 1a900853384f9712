"""Frozen dataclass configs: the architecture, the training run and the checkpoint record.

Everything a later stage (export, run, benchmark) needs to rebuild the model, reproduce its
inputs and interpret its outputs is in :class:`RunRecord`, written as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from edgelstm.errors import CheckpointError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np

Task = Literal["classify", "forecast", "anomaly", "tag", "transcribe"]
#: Tasks whose model outputs one vector per (recurrent) step rather than one per sequence.
PER_STEP_TASKS: tuple[str, ...] = ("anomaly", "tag", "transcribe")
#: Tasks that label the frames of a sequence: one class per frame (tag) or a CTC token
#: distribution per step, blank last (transcribe).
SEQUENCE_LABELLING_TASKS: tuple[str, ...] = ("tag", "transcribe")
#: ``lstm-fcn``: an LSTM branch beside a fully convolutional branch (Karim et al., 2017).
Arch = Literal["lstm", "gru", "lstm-fcn"]
Pooling = Literal["last", "mean"]
#: ``conv``: a strided causal Conv1d that shortens the sequence before the recurrent layers.
Frontend = Literal["none", "conv"]
TASKS: tuple[str, ...] = get_args(Task)
#: What an ONNX model's metadata may say it does: the trained tasks, plus ``raw`` for a model
#: adopted from elsewhere (``edgelstm adopt``), whose rows are its outputs as they are.
MODEL_TASKS: tuple[str, ...] = (*TASKS, "raw")
ARCHS: tuple[str, ...] = get_args(Arch)
POOLINGS: tuple[str, ...] = get_args(Pooling)
FRONTENDS: tuple[str, ...] = get_args(Frontend)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a recurrent model; inputs are always ``[batch, time, features]``.

    Example:
        >>> ModelConfig(task="classify", input_size=12, num_classes=9).arch
        'lstm'
    """

    task: Task
    input_size: int
    arch: Arch = "lstm"
    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.1
    #: classify: how the per-step features become one vector per sequence.
    pooling: Pooling = "last"
    #: classify, tag: number of classes; transcribe: tokens + 1 (the CTC blank, last).
    num_classes: int = 0
    #: forecast: number of future steps predicted at once.
    horizon: int = 0
    #: forecast: indices of the input features that are predicted.
    target_indices: tuple[int, ...] = ()
    #: forecast: normalise each input window by its own mean/std and undo it on the output,
    #: which lets a small model follow trends it never saw in training (RevIN-style).
    window_norm: bool = True
    #: classify: z-normalise each sequence per channel over its own valid steps before the
    #: model, so a series' offset and scale cannot decide its class (only its shape can). The
    #: per-feature normalisation with training statistics still comes first.
    series_norm: bool = False
    #: lstm-fcn: filters of the three Conv1d blocks (kernels :attr:`fcn_kernels`, BatchNorm,
    #: ReLU, then global average pooling). The paper's 128-256-128 holds ~270k weights at 12
    #: features (1.1 MB before the LSTM); 64-128-64 holds a quarter of that, so the whole
    #: exported model stays well under 2 MB with the default 2x128 LSTM.
    fcn_filters: tuple[int, ...] = (64, 128, 64)
    fcn_kernels: tuple[int, ...] = (8, 5, 3)
    #: lstm/gru: ``conv`` puts a causal Conv1d (+ ReLU) before the recurrent layers. It reads
    #: the last ``frontend_kernel`` frames (left padding only) every ``frontend_stride``
    #: frames, at frames 0, s, 2s, ...: a sequence of T frames becomes ceil(T / s) steps.
    frontend: Frontend = "none"
    frontend_channels: int = 64
    frontend_kernel: int = 8
    frontend_stride: int = 4

    def check_streamable(self) -> None:
        """Refuse a model whose output needs the whole sequence at once, saying why.

        The one rule for streaming: export applies it before writing a ``--streaming`` graph
        and the benchmark before timing a PyTorch streaming row, so no row measures a mode no
        export could have. It reads only the configuration, so it needs no torch.
        """
        if self.arch == "lstm-fcn":
            raise InvalidInputError(
                "an LSTM-FCN cannot stream: its convolutional branch averages over the whole "
                "sequence (global average pooling) and its 'same'-padded convolutions read "
                "frames ahead; export without --streaming, or train --arch lstm --frontend conv "
                "for a convolutional model that streams"
            )
        if self.bidirectional:
            raise InvalidInputError(
                "a bidirectional model cannot stream: its backward direction needs the end of "
                "the sequence before the first output; export without --streaming or retrain "
                "without --bidirectional"
            )
        if self.task == "classify" and self.pooling == "mean":
            raise InvalidInputError(
                "a mean-pooled classifier cannot stream (the mean needs every step); export "
                "without --streaming or retrain with --pooling last"
            )
        if self.task == "forecast" and self.window_norm:
            raise InvalidInputError(
                "this forecaster normalises each input window by its own mean/std, which needs "
                "the whole window; export without --streaming (forecast windows are short)"
            )
        if self.series_norm:
            raise InvalidInputError(
                "a classifier with per-series normalisation cannot stream (each sequence's "
                "mean and std need all of it); export without --streaming or retrain with "
                "--no-series-norm"
            )

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.arch not in ARCHS:
            problems.append(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.input_size < 1:
            problems.append(f"input_size must be >= 1, got {self.input_size}")
        if self.hidden_size < 1:
            problems.append(f"hidden size must be >= 1, got {self.hidden_size}")
        if self.num_layers < 1:
            problems.append(f"layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.task in ("classify", "tag") and self.num_classes < 2:
            problems.append(f"{self.task} needs at least 2 classes, got {self.num_classes}")
        if self.task == "transcribe" and self.num_classes < 2:
            problems.append(
                f"transcribe needs at least 1 token plus the blank, got {self.num_classes} outputs"
            )
        if self.task == "forecast":
            if self.horizon < 1:
                problems.append(f"forecast horizon must be >= 1, got {self.horizon}")
            if not self.target_indices:
                problems.append("forecast needs at least one target feature")
            bad = [i for i in self.target_indices if not 0 <= i < self.input_size]
            if bad:
                problems.append(f"target indices {bad} are outside 0..{self.input_size - 1}")
        if self.series_norm and self.task != "classify":
            problems.append(
                f"series_norm (--series-norm) applies to classify only, got task {self.task!r}; "
                "drop it"
            )
        problems.extend(self._conv_problems())
        if self.task == "anomaly" and self.bidirectional:
            problems.append(
                "anomaly models predict the next step, so they cannot be bidirectional "
                "(the backward direction would see the answer); drop --bidirectional"
            )
        if problems:
            raise InvalidInputError("; ".join(problems))

    def _conv_problems(self) -> list[str]:
        problems = []
        if self.frontend not in FRONTENDS:
            problems.append(
                f"frontend must be one of {', '.join(FRONTENDS)}, got {self.frontend!r}"
            )
        if self.arch == "lstm-fcn":
            if self.task != "classify":
                problems.append(
                    f"lstm-fcn is a classifier; for {self.task} use --arch lstm or gru "
                    "(optionally with --frontend conv)"
                )
            if len(self.fcn_filters) != 3 or min(self.fcn_filters, default=0) < 1:
                problems.append(f"fcn filters must be three counts >= 1, got {self.fcn_filters}")
            if len(self.fcn_kernels) != 3 or min(self.fcn_kernels, default=0) < 1:
                problems.append(f"fcn kernels must be three sizes >= 1, got {self.fcn_kernels}")
        if self.frontend == "conv":
            if self.frontend_channels < 1:
                problems.append(f"frontend channels must be >= 1, got {self.frontend_channels}")
            if self.frontend_stride < 1:
                problems.append(f"frontend stride must be >= 1, got {self.frontend_stride}")
            if self.frontend_kernel < max(2, self.frontend_stride):
                problems.append(
                    f"frontend kernel must be >= 2 and >= the stride ({self.frontend_stride}) "
                    f"so that no frame is skipped, got {self.frontend_kernel}"
                )
            if self.task in ("anomaly", "tag") and self.frontend_stride != 1:
                what = "predict every next frame" if self.task == "anomaly" else "label every frame"
                problems.append(
                    f"{self.task} models {what}, so a strided front end would "
                    f"drop frames; use --frontend-stride 1 (got {self.frontend_stride})"
                )
        return problems

    def describe(self) -> str:
        """``LSTM 2x128, conv front end (stride 9, kernel 18), mean pooling`` for summaries."""
        parts = [f"{self.arch.upper()} {self.num_layers}x{self.hidden_size}"]
        if self.bidirectional:
            parts.append("bidirectional")
        if self.frontend != "none":
            parts.append(
                f"{self.frontend} front end (stride {self.frontend_stride}, "
                f"kernel {self.frontend_kernel})"
            )
        if self.task == "classify":
            parts.append(f"{self.pooling} pooling")
        if self.series_norm:
            parts.append("per-series normalisation")
        return ", ".join(parts)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def cell(self) -> Literal["lstm", "gru"]:
        """The recurrent cell: lstm-fcn's recurrent branch is an LSTM."""
        return "gru" if self.arch == "gru" else "lstm"

    @property
    def stride(self) -> int:
        """Input frames per recurrent step (1 without a strided front end)."""
        return self.frontend_stride if self.frontend == "conv" else 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Named presets live in :data:`TRAIN_PRESETS`."""

    epochs: int = 60
    batch_size: int = 32
    #: smaller datasets get smaller batches so that an epoch has at least this many updates.
    min_batches_per_epoch: int = 6
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    #: stop after this many epochs without a better validation score.
    patience: int = 15
    #: fraction of the training data held out for early stopping (stratified for classify).
    val_fraction: float = 0.15
    seed: int = 0
    grad_clip: float = 1.0
    #: std of Gaussian noise added to normalised training inputs; a cheap regulariser that
    #: matters on small datasets (a few hundred sequences).
    input_noise: float = 0.0
    #: classify/forecast: after early stopping, retrain on training + validation data for at
    #: least this many epochs and optimiser updates (see fit_model).
    refit: bool = True
    min_refit_epochs: int = 40
    min_refit_steps: int = 300
    #: forecast/anomaly: length of the input windows cut from a series.
    lookback: int = 48
    #: forecast: steps predicted per window.
    horizon: int = 12

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if self.weight_decay < 0:
            problems.append(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.patience < 1:
            problems.append(f"patience must be >= 1, got {self.patience}")
        if self.grad_clip <= 0:
            problems.append(f"grad clip (gradient norm limit) must be > 0, got {self.grad_clip}")
        if self.min_batches_per_epoch < 1:
            problems.append(f"min batches per epoch must be >= 1, got {self.min_batches_per_epoch}")
        if self.learning_rate <= 0:
            problems.append(f"learning rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.val_fraction < 0.9:
            problems.append(f"validation fraction must be in [0, 0.9), got {self.val_fraction}")
        if self.lookback < 2:
            problems.append(f"lookback must be >= 2, got {self.lookback}")
        if self.horizon < 1:
            problems.append(f"horizon must be >= 1, got {self.horizon}")
        if problems:
            raise InvalidInputError("; ".join(problems))


#: Named presets: ``default`` meets the documented quality targets; ``smoke`` is for tests.
TRAIN_PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "smoke": TrainConfig(
        epochs=2, patience=2, batch_size=16, min_refit_epochs=2, min_refit_steps=2
    ),
}

#: Training settings a task starts from, under the dataset's defaults and the caller's values.
#: transcribe: Gaussian input noise (std 0.3 in normalised units), because a CTC model learns
#: its training strings' handwriting or voices by heart: on DigitStrings (test images never
#: seen in training, seed 0) it took the default model's token error rate from 3.9 % to 1.8 %,
#: and with the front end's 128 filters to 1.3 % (1.55 % mean of seeds 0-2; see
#: benchmarks/results/sequence_labelling.md).
TASK_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {"transcribe": {"input_noise": 0.3}}


@dataclass(frozen=True)
class Normalization:
    """Per-feature statistics computed on training data only."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @functools.cached_property
    def float32_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` as float32 arrays, made once: a server normalises thousands of
        small chunks a second, and converting the tuples took most of each one's time."""
        import numpy as np

        return np.asarray(self.mean, dtype=np.float32), np.asarray(self.std, dtype=np.float32)


@dataclass(frozen=True)
class DatasetInfo:
    """Where the training data came from, so a run can be reproduced."""

    name: str
    source: str
    train_size: int
    test_size: int
    #: classify data of variable length is trained padded + packed (lengths known).
    variable_length: bool = False
    #: forecast/anomaly: the series split point used for the test set.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """Contents of a checkpoint's ``config.json``."""

    model: ModelConfig
    train: TrainConfig
    dataset: DatasetInfo
    feature_names: tuple[str, ...]
    normalization: Normalization
    class_labels: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    anomaly_threshold: float | None = None
    #: ``--arch auto``: the data's shape, the settings chosen from it and why.
    auto: dict[str, Any] | None = None
    edgelstm_version: str = ""
    torch_version: str = ""
    schema: str = "edgelstm.training.checkpoint/1"


T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a config dataclass (tuples become lists, paths strings)."""
    return _jsonable(dataclasses.asdict(obj))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def from_dict(
    cls: type[T],
    data: Any,
    *,
    where: str = "config",
    error: type[InvalidInputError] = CheckpointError,
) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, naming the bad key on failure.

    ``error`` is the exception raised for bad content: :class:`CheckpointError` for checkpoint
    files, :class:`InvalidInputError` for documents a user writes (deployment configs).
    """
    if not isinstance(data, dict):
        raise error(f"{where}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise error(
            f"{where}: unknown keys {unknown} (known: {', '.join(sorted(names))}); "
            "was it written by a newer edgelstm?"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}", error)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise error(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str, error: type[InvalidInputError]) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_dict(hint, value, where=where, error=error)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise error(f"{where}: expected a list, got {type(value).__name__}")
        (item_hint, *_rest) = get_args(hint)
        items = [_convert(item_hint, v, where, error) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected an object, got {type(value).__name__}")
        args = get_args(hint)
        if not args:
            return value
        key_hint, value_hint = args
        return {
            _convert(key_hint, k, where, error): _convert(value_hint, v, f"{where}.{k}", error)
            for k, v in value.items()
        }
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None and type(None) in get_args(hint):
            return None
        if len(options) == 1:
            return _convert(options[0], value, where, error)
        return value
    if hint is bool and not isinstance(value, bool):
        raise error(f"{where}: expected true/false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise error(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is Path:
        if not isinstance(value, str):
            raise error(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    if hint is str and not isinstance(value, str):
        raise error(f"{where}: expected a string, got {value!r}")
    return value
