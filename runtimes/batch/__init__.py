"""Batch inference over many files: a folder, a glob or a Parquet archive into a folder of
Parquet, in this process or on a Ray cluster (``edgelstm run --engine local|ray``).

Example:
    >>> from edgelstm.runtimes.batch import BatchOptions, run_batch
    >>> run_batch("jv.onnx", "recordings/", "predictions/",
    ...           batch=BatchOptions(engine="ray"))  # doctest: +SKIP
"""

from __future__ import annotations

from edgelstm.runtimes.batch.engines import RayOptions
from edgelstm.runtimes.batch.job import BatchOptions, BatchResult, describe_batch, run_batch

__all__ = ["BatchOptions", "BatchResult", "RayOptions", "describe_batch", "run_batch"]
