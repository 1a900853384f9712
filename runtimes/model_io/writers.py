"""Write predictions to files: ``.csv``, ``.json``, ``.npy`` or ``.npz`` by extension.

:func:`write_predictions` writes :class:`~edgelstm.runtimes.model_io.predictions.Predictions`
atomically (nothing half-written on failure); :func:`check_output_format` refuses an
unsupported extension or an existing file *before* the model runs. :func:`table_records`
is the one place a columnar table becomes per-row records (CSV and JSON), and
:func:`csv_row_writer` prints a stream's rows as CSV, flushed chunk by chunk
(``run --stream``). ``.npz`` (and Parquet, written by the batch engines) keep full precision.

Example::

    >>> write_predictions(result.predictions, Path("preds.json"), overwrite=True)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import atomic_file, check_output_path
from edgelstm.runtimes.model_io.features import PROBABILITY_DECIMALS

if TYPE_CHECKING:
    from edgelstm.runtimes.model_io.predictions import Predictions

__all__ = [
    "OUTPUT_FORMATS",
    "check_output_format",
    "csv_row_writer",
    "table_records",
    "write_predictions",
]

#: Output file extensions ``edgelstm run`` writes for one input file.
OUTPUT_FORMATS = (".csv", ".json", ".npy", ".npz")


def check_output_format(output: Path, overwrite: bool) -> str:
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InvalidInputError(
            f"output {output}: unsupported extension {output.suffix or '(none)'!r}; use one of "
            f"{', '.join(OUTPUT_FORMATS)}"
        )
    check_output_path(output, overwrite=overwrite)
    return suffix


def _json_safe(value: Any) -> Any:
    """NaN/Inf (possible with --allow-nonfinite) become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _rounded(name: str, kind: str) -> bool:
    return kind in ("classify", "tag") and (
        name in ("confidence", "mean_confidence") or name.startswith("prob_")
    )


def table_records(predictions: Predictions) -> list[dict[str, Any]] | None:
    """The rows of ``predictions.table`` as records of Python values (None without a table).

    Probabilities are rounded to :data:`PROBABILITY_DECIMALS` decimals, as in stream rows.
    """
    table = predictions.table
    if table is None:
        return None
    columns = {}
    for name, values in table.items():
        items = np.asarray(values).tolist()
        if _rounded(name, predictions.kind):
            items = [round(v, PROBABILITY_DECIMALS) for v in items]
        columns[name] = items
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def write_predictions(predictions: Predictions, output: Path, *, overwrite: bool) -> None:
    """Write ``predictions`` to ``output`` (format by extension), atomically."""
    suffix = check_output_format(output, overwrite)
    if suffix in (".csv", ".json") and predictions.table is None:
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in predictions.arrays.items())
        raise InvalidInputError(
            f"output {output}: the model's outputs ({shapes}) are not one table; write an .npz "
            "(all outputs by name) instead"
        )
    if suffix == ".npy" and predictions.kind == "raw" and len(predictions.arrays) > 1:
        raise InvalidInputError(
            f"output {output}: the model has {len(predictions.arrays)} outputs "
            f"({', '.join(predictions.arrays)}); an .npy holds one, write an .npz instead"
        )
    with atomic_file(output, overwrite=overwrite) as tmp:
        if suffix == ".npz":
            with tmp.open("wb") as handle:
                arrays: dict[str, Any] = predictions.arrays
                np.savez(handle, **arrays)
        elif suffix == ".npy":
            with tmp.open("wb") as handle:
                np.save(handle, predictions.arrays[predictions.primary])
        elif suffix == ".json":
            payload: dict[str, Any] = {"kind": predictions.kind, "summary": predictions.summary}
            payload["records"] = table_records(predictions)
            text = json.dumps(_json_safe(payload), indent=2, allow_nan=False)
            tmp.write_text(text + "\n", "utf-8")
        else:
            records = table_records(predictions) or []
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(predictions.table or {}))
                writer.writeheader()
                writer.writerows(records)


def csv_row_writer(stream: IO[str], columns: list[str]) -> Callable[[list[dict[str, Any]]], None]:
    """A ``write_rows`` for :func:`stream_model` that prints CSV and flushes every chunk."""
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    started: list[bool] = []

    def write(rows: list[dict[str, Any]]) -> None:
        # The header waits for the first rows: a stream that fails to start prints nothing.
        if not started:
            writer.writeheader()
            started.append(True)
        writer.writerows(rows)
        stream.flush()

    return write
