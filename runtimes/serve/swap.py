"""Swapping the served model without losing a stream: what a new model must share with the
old one, so every open stream's state and rows carry over.

A stream's state is a row of the batcher's state table, and its rows are built by a
:class:`~edgelstm.runtimes.model_io.stream_rows.StreamRows` holding its labels, vocabulary
or decoder. A new model can take over both only if it reads and writes the same state
(names, shapes, frames per step) and means the same by its outputs (task, features,
classes, tokens, columns). Its weights and normalisation may differ: that is the point of a
swap (a retrained model, a quantized one). The check runs before anything changes, so a
refused swap leaves the old model serving.
"""

from __future__ import annotations

from pathlib import Path

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.contract import StreamContract
from edgelstm.runtimes.model_io.features import class_names
from edgelstm.runtimes.model_io.stream_rows import stream_columns

__all__ = ["check_swappable"]


def check_swappable(old: ModelMetadata, new: ModelMetadata, where: Path | str) -> None:
    """Refuse (InvalidInputError naming the difference) a ``new`` model whose streams
    would not continue those of ``old``."""
    old_contract, new_contract = StreamContract.of(old, where), StreamContract.of(new, where)
    same = {
        "task": (old.task, new.task),
        "features": (tuple(old.feature_names), tuple(new.feature_names)),
        "state": (dict(old_contract.shapes), dict(new_contract.shapes)),
        "frames per step": (old_contract.chunk_multiple, new_contract.chunk_multiple),
        "columns": (stream_columns(old), stream_columns(new)),
        "classes": (_classes(old), _classes(new)),
        "tokens": ((tuple(old.tokens), old.blank_index), (tuple(new.tokens), new.blank_index)),
    }
    for what, (before, after) in same.items():
        if before != after:
            raise InvalidInputError(
                f"{where}: not swapped in, its {what} differ from the served model's "
                f"({after} vs {before}); open streams could not continue on it. Serve it "
                "with a restart instead"
            )


def _classes(meta: ModelMetadata) -> tuple[str, ...]:
    return tuple(class_names(meta)) if meta.task in ("classify", "tag") else ()
