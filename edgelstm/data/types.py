"""In-memory shapes of training data, independent of the file they came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class _VariableLengthSequences:
    """What every set of variable-length sequences answers, whatever its labels are."""

    sequences: tuple[np.ndarray, ...]
    feature_names: tuple[str, ...]

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.shape[0] for s in self.sequences], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sequences)


@dataclass(frozen=True)
class SequenceSet(_VariableLengthSequences):
    """Labelled sequences for classification; lengths may differ between sequences.

    ``sequences[i]`` is float32 ``[time_i, features]``; ``labels`` has one entry per sequence
    (any dtype; classification turns them into string class labels).
    """

    sequences: tuple[np.ndarray, ...]
    labels: np.ndarray | None
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class Series:
    """One multivariate series, float32 ``[time, features]``, for forecasting or anomaly detection.

    ``labels`` (anomaly only) marks anomalous time steps with 1, one entry per step.
    """

    values: np.ndarray
    feature_names: tuple[str, ...]
    labels: np.ndarray | None = None

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class WindowSet:
    """Pre-cut forecasting windows: inputs float32 ``[n, lookback, features]`` and
    targets float32 ``[n, horizon, targets]``; ``target_indices`` name the predicted inputs."""

    inputs: np.ndarray
    targets: np.ndarray
    feature_names: tuple[str, ...]
    target_indices: tuple[int, ...]

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class TaggedSequences(_VariableLengthSequences):
    """Sequences with one class per frame, for ``--task tag``.

    ``sequences[i]`` is float32 ``[time_i, features]``; ``frame_labels[i]`` int64 ``[time_i]``
    holds class indices, ``-1`` where a frame is unlabelled (not scored, not trained on).
    ``class_names`` names the indices (``"0"``, ``"1"``, ... when the file names none).
    """

    sequences: tuple[np.ndarray, ...]
    frame_labels: tuple[np.ndarray, ...] | None
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] = ()
    #: where the data came from (a file path), so an error about a label can name it.
    source: str = ""


@dataclass(frozen=True)
class Transcripts(_VariableLengthSequences):
    """Sequences with the text they spell, for ``--task transcribe`` (CTC, no alignment).

    ``sequences[i]`` is float32 ``[time_i, features]``; ``texts[i]`` the label string. ``tokens``
    (optional) lists multi-character tokens, matched longest first; without it every
    character is a token and the alphabet is the training texts' sorted characters.
    """

    sequences: tuple[np.ndarray, ...]
    texts: tuple[str, ...] | None
    feature_names: tuple[str, ...]
    tokens: tuple[str, ...] = ()
    #: where the data came from (a file path), so an error about a text can name it.
    source: str = ""


TrainingData = SequenceSet | Series | WindowSet | TaggedSequences | Transcripts
#: What a trained model's inputs can be read as (labels optional).
InferenceData = SequenceSet | Series | TaggedSequences | Transcripts
