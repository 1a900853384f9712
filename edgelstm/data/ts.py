"""UEA/UCR ``.ts`` files (the time-series classification archive format), parsed by aeon.

This module owns turning aeon's ``(X, y)`` into a :class:`~edgelstm.data.types.SequenceSet`:
for ``.ts`` files here and for the datasets bundled with aeon
(:mod:`edgelstm.data.datasets`). aeon is optional (``pip install 'edgelstm[data]'``) and
imported only when a file is read.

Example::

    from pathlib import Path
    from edgelstm.data.ts import read_ts

    train = read_ts(Path("JapaneseVowels_TRAIN.ts"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.data.checks import NAN_ADVICE, require_file
from edgelstm.data.types import SequenceSet
from edgelstm.errors import InvalidInputError
from edgelstm.extras import missing_dependency

__all__ = ["read_ts", "sequence_set_from_aeon"]


def read_ts(path: Path) -> SequenceSet:
    """Read a UEA/UCR ``.ts`` file (the classification archive format) into a SequenceSet.

    Equal- and variable-length files both give one float32 ``[time, channels]`` array per
    sequence; labels are the class strings from the file (None when the file has none).
    Parsing is delegated to aeon, an optional dependency (``pip install 'edgelstm[data]'``).

    Example::

        train = read_ts(Path("JapaneseVowels_TRAIN.ts"))
        len(train), train.num_features  # (270, 12)
    """
    require_file(path)
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as exc:
        raise missing_dependency(exc, f"reading {path} (a .ts file)") from exc
    try:
        X, y = load_from_ts_file(str(path))
    except (ValueError, OSError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{path}: could not be parsed as a .ts file ({exc}); check its @-header lines "
            "against the data (see https://www.aeon-toolkit.org for the format)"
        ) from exc
    return sequence_set_from_aeon(X, y, path)


def sequence_set_from_aeon(X: object, y: object, path: Path) -> SequenceSet:
    """Convert aeon's ``(X, y)`` into a :class:`SequenceSet` of float32 ``[time, channels]``.

    aeon gives an array ``[n, channels, time]`` for equal-length data and a list of
    ``[channels, time_i]`` arrays for variable-length data; both become one array per
    sequence. ``path`` only names the source in error messages.
    """
    raw: list[np.ndarray] = (
        [np.asarray(x) for x in X] if isinstance(X, list) else list(np.asarray(X))
    )
    if not raw or all(x.size == 0 for x in raw):
        raise InvalidInputError(
            f"{path}: no series found; a .ts file needs its @-header lines followed by "
            "@data and one series per line"
        )
    sequences: list[np.ndarray] = []
    channels = raw[0].shape[0] if raw[0].ndim == 2 else 1
    for i, x in enumerate(raw):
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if x2.shape[0] != channels:
            raise InvalidInputError(
                f"{path}: series {i + 1} has {x2.shape[0]} channels, expected {channels}"
            )
        if x2.shape[1] == 0:
            raise InvalidInputError(f"{path}: series {i + 1} is empty")
        seq = np.ascontiguousarray(x2.T, dtype=np.float32)
        finite = np.isfinite(seq)
        if not finite.all():
            t, c = (int(v) for v in np.argwhere(~finite)[0])
            raise InvalidInputError(
                f"{path}: series {i + 1}, channel {c}, time step {t + 1} is missing or NaN/Inf "
                f"('?' in the file); {NAN_ADVICE}"
            )
        sequences.append(seq)
    labels_arr = np.asarray(y)
    labels: np.ndarray | None = None
    if labels_arr.size:
        if labels_arr.shape[0] != len(sequences):
            raise InvalidInputError(
                f"{path}: {labels_arr.shape[0]} labels for {len(sequences)} series; every series "
                "line must end with ':<class label>'"
            )
        labels = labels_arr.astype(str)
    return SequenceSet(
        sequences=tuple(sequences),
        labels=labels,
        feature_names=tuple(f"dim_{c}" for c in range(channels)),
    )
