"""Load user data for a task: the reader is chosen from the file's extension.

This module owns the dispatch (:func:`load_training_data`, :func:`load_inference_data`),
what the arrays of an ``.npz`` mean for each task (``X``, ``y``, ``lengths``,
``feature_names``, ``target_indices``) and ``--target`` column selection
(:func:`resolve_targets`). The formats live in their own modules: the CSV dialect in
:mod:`edgelstm.data.csv_files`, ``.npy``/``.npz`` in :mod:`edgelstm.data.arrays`, ``.ts`` in
:mod:`edgelstm.data.ts`, and the checks they share in :mod:`edgelstm.data.checks`. The
sequence-labelling tasks (``tag``, ``transcribe``) read through :mod:`edgelstm.data.labelled`,
which reuses the ``.npz`` helpers here (:func:`check_npz_keys`, :func:`require_x`,
:func:`unpadded_sequences`, :func:`npz_feature_names`).

Every reader turns a bad file into one :class:`~edgelstm.errors.InvalidInputError` whose message
names the file, the place in it (1-based rows and columns as an editor shows them, or a NumPy
index for arrays) and what to do next. Training on silently wrong data is the failure we guard
against, so NaN/Inf, ragged rows and ambiguous headers are refused rather than repaired.

Example::

    from pathlib import Path
    from edgelstm.data.readers import load_training_data

    data = load_training_data(Path("sensors.csv"), task="forecast", target="temp")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.data.arrays import read_arrays
from edgelstm.data.checks import (
    as_float32,
    binary_labels,
    check_numeric,
    default_names,
    require_file,
)
from edgelstm.data.csv_files import read_csv_series
from edgelstm.data.ts import read_ts
from edgelstm.data.types import InferenceData, SequenceSet, Series, TrainingData, WindowSet
from edgelstm.errors import InvalidInputError

__all__ = [
    "INFERENCE_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "TASKS",
    "check_lengths",
    "check_npz_keys",
    "load_inference_data",
    "load_training_data",
    "npz_feature_names",
    "require_x",
    "resolve_targets",
    "unpadded_sequences",
]

#: Tasks whose labels are sequences themselves, read by :mod:`edgelstm.data.labelled`.
_LABELLING_TASKS: tuple[str, ...] = ("tag", "transcribe")
#: Tasks :func:`load_training_data` understands.
TASKS: tuple[str, ...] = ("classify", "forecast", "anomaly", *_LABELLING_TASKS)
#: File extensions :func:`load_training_data` dispatches on.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".csv", ".npy", ".npz", ".ts")
#: File extensions :func:`load_inference_data` reads: the above and Parquet (one sequence per
#: row), which archives scored by ``run --engine`` often come in.
INFERENCE_EXTENSIONS: tuple[str, ...] = (*SUPPORTED_EXTENSIONS, ".parquet")


# --------------------------------------------------------------------------------------------
# targets


def resolve_targets(
    feature_names: tuple[str, ...], target: str | None, *, source: Path | None = None
) -> tuple[int, ...]:
    """Turn ``--target`` (comma-separated column names or 0-based indices) into indices.

    None means every feature is a target. Names win over indices, so a column literally named
    ``"0"`` is found by name; names then match case-insensitively when that is unambiguous.
    ``source`` (the data file) prefixes error messages.

    Example::

        resolve_targets(("temp", "rpm", "load"), "load,0")  # (2, 0)
    """
    if target is None:
        return tuple(range(len(feature_names)))
    where = f"{source}: " if source is not None else ""
    available = ", ".join(f"{i}={n!r}" for i, n in enumerate(feature_names))
    tokens = [t.strip() for t in target.split(",")]
    if not target.strip() or any(not t for t in tokens):
        raise InvalidInputError(
            f"{where}--target {target!r} has an empty entry; give comma-separated column names or "
            f"0-based indices from: {available}"
        )
    lowered = [n.lower() for n in feature_names]
    indices: list[int] = []
    for token in tokens:
        if token in feature_names:
            index = feature_names.index(token)
        elif lowered.count(token.lower()) == 1:
            index = lowered.index(token.lower())
        elif token.isascii() and token.isdigit() and int(token) < len(feature_names):
            index = int(token)
        else:
            raise InvalidInputError(
                f"{where}--target {token!r} is not a column of the data; available columns: "
                f"{available}"
            )
        if index in indices:
            raise InvalidInputError(
                f"{where}--target names column {feature_names[index]!r} twice; list each "
                "target once"
            )
        indices.append(index)
    return tuple(indices)


# --------------------------------------------------------------------------------------------
# dispatch


def load_training_data(path: Path, task: str, target: str | None = None) -> TrainingData:
    """Load a training (or test) file for ``task``, choosing the reader from the extension.

    - ``classify``: ``.ts``, or ``.npz`` with ``X`` ``[n, T, F]`` (or ``[n, T]``), ``y`` ``[n]``
      and optional ``lengths`` ``[n]`` → :class:`SequenceSet`.
    - ``forecast``: ``.csv``, ``.npy``, or ``.npz`` with only ``X`` ``[T, F]`` → :class:`Series`;
      ``.npz`` with ``X`` ``[n, L, F]`` and ``y`` ``[n]``/``[n, H]``/``[n, H, Ft]`` →
      :class:`WindowSet`. ``target`` picks the predicted columns (names or 0-based indices).
    - ``anomaly``: ``.csv`` (optional label column), ``.npy``/``.npz`` ``X`` ``[T, F]`` with
      optional 0/1 ``y`` ``[T]`` → :class:`Series`.
    - ``tag``: ``.npz`` with ``y`` ``[n, T]`` class indices, or a ``.csv`` with a ``label``
      column → :class:`TaggedSequences`; ``transcribe``: ``.npz`` with ``y`` ``[n]`` strings →
      :class:`Transcripts` (see :mod:`edgelstm.data.labelled`).

    An ``.npz`` may also hold ``feature_names`` (strings, one per feature), used for names
    instead of ``f0, f1, ...``, and, for windows, ``target_indices``.

    Example::

        train = load_training_data(Path("train.npz"), task="classify")
    """
    if target is not None and task != "forecast":
        raise InvalidInputError(
            f"--target applies only to --task forecast (it picks the predicted columns); "
            f"remove it for --task {task}"
        )
    suffix = _readable_suffix(path, task)
    if task in _LABELLING_TASKS:
        from edgelstm.data.labelled import read_labelled

        return read_labelled(path, task)
    if task == "classify":
        return _load_classify(path, suffix)
    if suffix == ".ts":
        raise InvalidInputError(
            f"{path}: .ts files hold labelled sequences for --task classify; for --task {task} "
            "give a .csv, .npy or .npz series"
        )
    if task == "forecast":
        return _load_forecast(path, suffix, target)
    return _load_anomaly(path, suffix)


def _readable_suffix(path: Path, task: str) -> str:
    """The file's lower-case suffix, once the task is known and the file exists with a
    suffix some reader takes: the checks both loaders make before reading a byte."""
    if task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise InvalidInputError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    require_file(path)
    return suffix


def load_inference_data(path: Path, task: str, *, num_features: int | None = None) -> InferenceData:
    """Load inputs for a trained model of ``task``; labels are optional (used when present).

    - ``classify``: like :func:`load_training_data` without requiring ``y``; a ``.csv`` (or a
      2-D ``X`` with ``num_features`` columns when that is not 1) is one sequence.
    - ``forecast``: a series (``.csv``, 2-D ``X``) → :class:`Series`, forecast from its end;
      pre-cut windows (3-D ``X``) → :class:`SequenceSet`, one forecast per window.
    - ``anomaly``: a series, as for training (optional labels).
    - ``tag``/``transcribe``: ``.npz`` (optional ``y``), ``.csv`` or ``.npy`` ``[T, F]`` (one
      sequence) or ``[n, T, F]``, ``.parquet`` (optional ``y`` column) →
      :class:`TaggedSequences`/:class:`Transcripts` with labels None when absent.

    A ``.parquet`` file holds one sequence (or forecast window) per row
    (:mod:`edgelstm.data.parquet`).

    Example::

        data = load_inference_data(Path("new.ts"), "classify")
    """
    if task in _LABELLING_TASKS:
        from edgelstm.data.labelled import read_labelled

        if path.suffix.lower() != ".parquet":
            _readable_suffix(path, task)
        return read_labelled(path, task, require_labels=False)
    if path.suffix.lower() == ".parquet" and task in TASKS:
        if task == "anomaly":
            raise InvalidInputError(
                f"{path}: an anomaly model scores one series per file; give a .csv, .npy or "
                ".npz series (Parquet rows hold classification sequences or forecast windows)"
            )
        from edgelstm.data.parquet import read_parquet_sequences

        return read_parquet_sequences(path)
    suffix = _readable_suffix(path, task)
    if suffix == ".ts" and task != "classify":
        raise InvalidInputError(
            f"{path}: .ts files hold sequences for classification; a {task} model needs a "
            ".csv, .npy or .npz series"
        )
    if task == "anomaly":
        return _load_anomaly(path, suffix)
    arrays = read_arrays(path) if suffix in (".npy", ".npz") else {}
    if arrays:
        check_npz_keys(arrays, task, path)
    X = require_x(arrays, path) if arrays else None
    if task == "classify":
        if X is not None and X.ndim == 2 and num_features not in (None, 1):
            if X.shape[1] != num_features:
                raise InvalidInputError(
                    f"{path}: X has shape {X.shape}; the model takes {num_features} features, "
                    f"so give one sequence [time, {num_features}] or many [n, time, "
                    f"{num_features}]"
                )
            values = as_float32(X, path, "X")
            return SequenceSet((values,), None, npz_feature_names(arrays, X.shape[1], path))
        return _load_classify(path, suffix, require_labels=False)
    if X is not None and X.ndim == 3:
        windows = as_float32(X, path, "X")
        names = npz_feature_names(arrays, X.shape[2], path)
        return SequenceSet(tuple(windows), None, names)
    if suffix == ".csv":
        return read_csv_series(path)
    assert X is not None
    values, names = _series_from_x(X, arrays, path, "forecast")
    return Series(values=values, feature_names=names)


#: Arrays an .npz may hold, per task; anything else is refused (a misspelt `lenghts` would
#: otherwise be ignored and the padding read as data).
_NPZ_KEYS = {
    "classify": ("X", "y", "lengths", "feature_names"),
    "forecast": ("X", "y", "feature_names", "target_indices"),
    "anomaly": ("X", "y", "feature_names"),
    "tag": ("X", "y", "lengths", "classes", "feature_names"),
    "transcribe": ("X", "y", "lengths", "tokens", "feature_names"),
}


def check_npz_keys(arrays: dict[str, np.ndarray], task: str, path: Path) -> None:
    if "X" not in arrays:
        return  # the missing X is the first thing to fix; require_x says so
    allowed = _NPZ_KEYS[task]
    unknown = sorted(set(arrays) - set(allowed))
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise InvalidInputError(
            f"{path}: unknown array(s) {', '.join(hints)}; a {task} .npz holds {', '.join(allowed)}"
        )


def npz_feature_names(arrays: dict[str, np.ndarray], count: int, path: Path) -> tuple[str, ...]:
    names = arrays.get("feature_names")
    if names is None:
        return default_names(count)
    if names.ndim != 1 or names.shape[0] != count or names.dtype.kind not in "US":
        raise InvalidInputError(
            f"{path}: 'feature_names' must be {count} strings (one per feature), got "
            f"shape {names.shape} dtype {names.dtype}"
        )
    result = tuple(str(n) for n in names)
    if len(set(result)) != len(result):
        raise InvalidInputError(f"{path}: 'feature_names' has duplicates; names must be unique")
    return result


def require_x(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray:
    if "X" not in arrays:
        raise InvalidInputError(
            f"{path}: no array named 'X' (found: {', '.join(sorted(arrays))}); save the inputs "
            "as X, e.g. np.savez(path, X=X, y=y)"
        )
    X = arrays["X"]
    if X.size == 0:
        raise InvalidInputError(f"{path}: X is empty (shape {X.shape}); it needs data")
    return X


def _load_classify(path: Path, suffix: str, *, require_labels: bool = True) -> SequenceSet:
    needs_labels = (
        f"{path}: classification needs labels; use an .npz with arrays X [sequences, time, "
        "features] and y [sequences] (np.savez(path, X=X, y=y)), or a .ts file"
    )
    if suffix == ".ts":
        data = read_ts(path)
        if data.labels is None and require_labels:
            raise InvalidInputError(
                needs_labels.replace("use an", "this .ts file has none; use an")
            )
        return data
    if require_labels and suffix in (".csv", ".npy"):
        raise InvalidInputError(needs_labels)
    if suffix == ".csv":
        series = read_csv_series(path)
        return SequenceSet((series.values,), None, series.feature_names)
    arrays = read_arrays(path)
    check_npz_keys(arrays, "classify", path)
    if require_labels and "y" not in arrays:
        raise InvalidInputError(needs_labels)
    X = require_x(arrays, path)
    if X.ndim == 2:
        X = X[:, :, None]  # [n, T] is univariate: one feature per step
    if X.ndim != 3:
        raise InvalidInputError(
            f"{path}: X has shape {X.shape}; classification expects [sequences, time, features] "
            "(or [sequences, time] for one feature)"
        )
    n, _, features = X.shape
    y = arrays.get("y")
    if y is None:
        pass
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y is not None and (y.ndim != 1 or y.shape[0] != n):
        raise InvalidInputError(
            f"{path}: y has shape {y.shape} but X holds {n} sequences; y needs one label per "
            f"sequence, shape [{n}]"
        )
    if (
        y is not None
        and y.dtype.kind not in "iubUS"
        and not (y.dtype.kind == "f" and np.isfinite(y).all())
    ):
        raise InvalidInputError(
            f"{path}: y has dtype {y.dtype} (or NaN); labels must be integers or strings"
        )
    sequences = unpadded_sequences(X, arrays.get("lengths"), path)
    return SequenceSet(
        sequences=sequences, labels=y, feature_names=npz_feature_names(arrays, features, path)
    )


def unpadded_sequences(
    X: np.ndarray, lengths: np.ndarray | None, path: Path
) -> tuple[np.ndarray, ...]:
    """The sequences of ``X`` ``[n, T, F]``, each cut to its ``lengths`` entry (all ``T``
    when None), as finite float32: the one place padded ``X`` becomes sequences."""
    n, steps = X.shape[:2]
    if lengths is None:
        values = as_float32(X, path, "X")
        return tuple(values[i] for i in range(n))
    lengths = check_lengths(lengths, n, steps, path)
    check_numeric(X, path, "X")
    # Only the valid part of each sequence is checked: padding past `lengths` may be
    # anything (NaN padding is common) because it is never read.
    return tuple(as_float32(X[i, : lengths[i]], path, "X", (i,)) for i in range(n))


def check_lengths(lengths: np.ndarray, n: int, steps: int, path: Path) -> np.ndarray:
    if lengths.ndim != 1 or lengths.shape[0] != n:
        raise InvalidInputError(
            f"{path}: lengths has shape {lengths.shape}; expected [{n}], one per sequence"
        )
    if lengths.dtype.kind not in "iu":
        raise InvalidInputError(
            f"{path}: lengths has dtype {lengths.dtype}; expected integers (np.int64)"
        )
    bad = (lengths < 1) | (lengths > steps)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise InvalidInputError(
            f"{path}: lengths[{i}] = {int(lengths[i])} is out of range; each length must be "
            f"between 1 and the time axis of X ({steps})"
        )
    return lengths.astype(np.int64)


def _series_from_x(
    X: np.ndarray, arrays: dict[str, np.ndarray], path: Path, task: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        hint = (
            "; pre-cut windows [n, lookback, features] need targets y in an .npz"
            if task == "forecast" and X.ndim == 3
            else ""
        )
        raise InvalidInputError(
            f"{path}: X has shape {X.shape}; a series must be [time, features] or [time]{hint}"
        )
    values = as_float32(X, path, "X")
    return values, npz_feature_names(arrays, values.shape[1], path)


def _load_forecast(path: Path, suffix: str, target: str | None) -> Series | WindowSet:
    if suffix == ".csv":
        series = read_csv_series(path)
        # Validate now so a typo fails before training starts, not after.
        resolve_targets(series.feature_names, target, source=path)
        return series
    arrays = read_arrays(path)
    check_npz_keys(arrays, "forecast", path)
    X = require_x(arrays, path)
    if "y" not in arrays:
        values, names = _series_from_x(X, arrays, path, "forecast")
        resolve_targets(names, target, source=path)
        return Series(values=values, feature_names=names)
    if X.ndim != 3:
        raise InvalidInputError(
            f"{path}: with y present, X must be pre-cut windows [n, lookback, features], got "
            f"shape {X.shape}; for one long series save X alone ([time, features]) and let "
            "edgelstm cut the windows"
        )
    n, _, features = X.shape
    inputs = as_float32(X, path, "X")
    y = arrays["y"]
    if y.shape[:1] != (n,) or y.ndim > 3:
        raise InvalidInputError(
            f"{path}: y has shape {y.shape}; expected [{n}], [{n}, horizon] or "
            f"[{n}, horizon, targets] to match the {n} windows in X"
        )
    # [n] is one step of one target, [n, H] is H steps of one target.
    y3 = y.reshape(n, 1, 1) if y.ndim == 1 else (y[:, :, None] if y.ndim == 2 else y)
    targets = as_float32(y3, path, "y")
    names = npz_feature_names(arrays, features, path)
    n_targets = targets.shape[2]
    if target is not None:
        indices = resolve_targets(names, target, source=path)
        source = f"--target {target!r}"
    elif "target_indices" in arrays:
        raw = arrays["target_indices"]
        if raw.dtype.kind not in "iu" or raw.ndim != 1:
            raise InvalidInputError(
                f"{path}: target_indices must be a 1-D integer array, got shape {raw.shape} "
                f"dtype {raw.dtype}"
            )
        if ((raw < 0) | (raw >= features)).any() or len(set(raw.tolist())) != raw.size:
            raise InvalidInputError(
                f"{path}: target_indices {raw.tolist()} must be distinct feature indices in "
                f"0..{features - 1}"
            )
        indices = tuple(int(i) for i in raw)
        source = "target_indices"
    elif n_targets == features:
        indices = tuple(range(features))
        source = ""
    else:
        raise InvalidInputError(
            f"{path}: y has {n_targets} target(s) per step but X has {features} features; say "
            "which features y holds with --target (names or 0-based indices, e.g. --target 0) "
            "or save an int array 'target_indices' in the .npz"
        )
    if len(indices) != n_targets:
        raise InvalidInputError(
            f"{path}: {source} names {len(indices)} column(s) but y has {n_targets} target(s) "
            "per step; they must match"
        )
    return WindowSet(inputs=inputs, targets=targets, feature_names=names, target_indices=indices)


def _load_anomaly(path: Path, suffix: str) -> Series:
    if suffix == ".csv":
        return read_csv_series(path)
    arrays = read_arrays(path)
    check_npz_keys(arrays, "anomaly", path)
    X = require_x(arrays, path)
    values, names = _series_from_x(X, arrays, path, "anomaly")
    labels = arrays.get("y")
    if labels is not None:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.shape != (values.shape[0],):
            raise InvalidInputError(
                f"{path}: y has shape {labels.shape}; anomaly labels need one 0/1 entry per time "
                f"step, shape [{values.shape[0]}]"
            )
        labels = binary_labels(labels, path, "y")
    return Series(values=values, feature_names=names, labels=labels)
