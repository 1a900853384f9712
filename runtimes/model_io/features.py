"""What an edgelstm model's inputs and outputs stand for: its normalisation, feature order
and class names, read from the model's metadata.

Every door (``run`` over files, ``run --stream``, ``serve``, the batch engines) maps the
user's columns and classes through these functions, so a column reordered by name or a
class named by index reads the same wherever the model runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.config import Normalization
from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata

__all__ = [
    "PROBABILITY_DECIMALS",
    "check_class_count",
    "class_names",
    "feature_order",
    "forecast_lookback",
    "softmax",
    "stored_normalization",
]

#: Probabilities and confidences in CSV, JSON and stream rows are rounded to this many
#: decimals (a reader wants 0.978969, not 0.97896903753280640); Parquet and ``.npz`` keep
#: the model's float32 values exactly.
PROBABILITY_DECIMALS = 6


def stored_normalization(meta: ModelMetadata, where: Path | str) -> Normalization:
    """The training statistics the model's inputs are normalised with."""
    raw = meta.normalization  # its shape was checked when the metadata was read
    if raw is None:
        raise InvalidInputError(
            f"{where} carries no normalisation statistics; re-export it with `edgelstm export`"
        )
    return Normalization(mean=tuple(raw["mean"]), std=tuple(raw["std"]))


def feature_order(
    names: tuple[str, ...], meta: ModelMetadata, source: str | Path
) -> tuple[list[int], str | None]:
    """Column order mapping the input's features onto the model's, and a notice if it guessed.

    Same names in another order are reordered by name; other names (``dim_0`` from a ``.ts``
    file, ``f0`` from an array) are taken by position, which needs the same count.
    """
    want = meta.feature_names
    if names == want:
        return list(range(len(want))), None
    if set(names) == set(want) and len(names) == len(want):
        order = [names.index(n) for n in want]
        return order, f"{source}: columns reordered by name to match the model"
    if len(names) != len(want):
        raise InvalidInputError(
            f"{source}: has {len(names)} feature(s), the model takes {len(want)} "
            f"({', '.join(want)})"
        )
    generic = all(n == f"f{i}" or n == f"dim_{i}" for i, n in enumerate(names))
    notice = None
    if not generic:
        notice = (
            f"{source}: columns {', '.join(names)} matched by position to the model's features "
            f"{', '.join(want)}"
        )
    return list(range(len(want))), notice


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits along the last axis, computed in float64."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    probs: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probs


def class_names(meta: ModelMetadata) -> tuple[str, ...]:
    """What a classifier's outputs stand for, in output order: its labels, or ``0..n-1``.

    A model exported from a bare module records only its class count (in the run record);
    ``run`` and ``--stream`` both name its classes by index, so their columns agree.
    """
    if meta.class_labels:
        return meta.class_labels
    count = ((meta.run_record or {}).get("model") or {}).get("num_classes")
    if not isinstance(count, int) or count < 1:
        raise InvalidInputError(
            "the model's metadata names no classes (edgelstm.class_labels, or num_classes in "
            "edgelstm.run_record); export it again with `edgelstm export`"
        )
    return tuple(str(i) for i in range(count))


def check_class_count(labels: tuple[str, ...], outputs: int) -> None:
    """Refuse a model whose output width disagrees with the classes its metadata names."""
    if len(labels) != outputs:
        raise InvalidInputError(
            f"the model has {outputs} outputs but its metadata names {len(labels)} classes"
        )


def forecast_lookback(meta: ModelMetadata) -> int | None:
    """How many past steps a forecaster reads (recorded at training time), if known."""
    record = meta.run_record or {}
    value = record.get("dataset", {}).get("details", {}).get("lookback")
    return int(value) if value is not None else None
