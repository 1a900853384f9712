"""Calibration data for static INT8: real sequences the quantizer measures activations on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata

__all__ = ["CalibrationReader", "calibration_reader"]


class CalibrationReader:
    """ONNX Runtime CalibrationDataReader over real sequences, one sample per call."""

    def __init__(self, samples: list[np.ndarray], input_name: str, description: str) -> None:
        self.samples = samples
        self.input_name = input_name
        self.description = description
        self._iter: Iterator[np.ndarray] = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._iter, None)
        return None if sample is None else {self.input_name: sample}

    def rewind(self) -> None:
        self._iter = iter(self.samples)


def calibration_reader(
    calibration: Path | str | None,
    run_dir: Path | None,
    meta: ModelMetadata | None,
    limit: int,
) -> CalibrationReader:
    """Calibration samples for static-int8: ``calibration`` (an array file of normalised
    inputs ``X``) or, without it, the training split of ``run_dir``."""
    if meta is not None and meta.variant == "streaming":
        raise InvalidInputError(
            "static-int8 calibrates the sequence graph; quantize the sequence export (without "
            "--streaming) or use dynamic-int8"
        )
    if calibration is not None:
        from edgelstm.data.arrays import read_arrays

        arrays = read_arrays(Path(calibration))
        x = arrays.get("X")
        if x is None or x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
            raise InvalidInputError(
                f"--calibration {calibration} needs an array X [sequences, time, features] of "
                "model inputs (normalised as the model expects)"
            )
        if not np.isfinite(x).all():
            raise InvalidInputError(f"--calibration {calibration} contains NaN or Inf")
        samples = [x[i : i + 1].astype(np.float32) for i in range(min(len(x), limit))]
        return CalibrationReader(samples, "x", f"{len(samples)} sequences from {calibration}")
    if run_dir is None:
        raise InvalidInputError(
            "static-int8 needs calibration data: pass --calibration DATA.npz or --eval RUN_DIR "
            "(or quantize a model exported from a checkpoint that still exists)"
        )
    from edgelstm.training.evaluation import prepare_for_evaluation

    prepared, _ = prepare_for_evaluation(run_dir)
    train = prepared.train
    samples = []
    for i in range(min(len(train), limit)):
        steps = int(train.lengths[i]) if train.lengths is not None else train.x.shape[1]
        samples.append(np.ascontiguousarray(train.x[i : i + 1, :steps]))
    return CalibrationReader(samples, "x", f"{len(samples)} training sequences of {run_dir}")
