"""Calibration data for static INT8: real samples the quantizer measures activations on.

The samples come from ``--calibration FILE`` or, without it, the training split of the
checkpoint. A file follows the convention of every model-input file edgelstm reads: one
array per model input, keyed by the input's name, samples on axis 0 (an array of the input's
own rank is cut into batches of one, ``a[i:i+1]``, when the input's first axis is a batch
axis; an array with one more axis is fed sample by sample, ``a[i]``, which also serves
state inputs such as ``h [layers, batch, hidden]``); a model with a single input may take
its array as ``X``. The samples are matched to the model's inputs before ONNX Runtime sees
them, so a wrong file is one clear error, never a traceback from inside the calibrator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.ort.feeds import InputSpec

__all__ = ["CalibrationReader", "calibration_reader", "model_inputs", "split_samples"]

#: The key of a file holding the samples of a model's only input, whatever its name.
SINGLE_INPUT_KEY = "X"


class CalibrationReader:
    """ONNX Runtime CalibrationDataReader over real samples, one feed per call.

    The samples are keyed as their source keys them (``X`` or the model's input names) until
    :meth:`bind` matches them to a model's inputs; ONNX Runtime reads them only after that.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray | Sequence[np.ndarray]],
        description: str,
        source: str,
    ) -> None:
        #: per key, an array with samples on axis 0 or (variable lengths) a list of samples
        self.arrays = dict(arrays)
        #: what the samples are, for the audit's notes: ``4 sequences from cal.npz``
        self.description = description
        #: where they come from, to begin an error: ``--calibration cal.npz``
        self.source = source
        self.samples: list[dict[str, np.ndarray]] = []
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.samples)

    def bind(self, inputs: Sequence[InputSpec]) -> None:
        """Match the samples to the model's ``inputs``; :class:`InvalidInputError` if they
        do not fit (see :func:`split_samples`)."""
        self.samples = split_samples(self.arrays, inputs, source=self.source)
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.samples)


def model_inputs(model: Any) -> tuple[InputSpec, ...]:
    """The inputs an ONNX ``model`` must be fed (initializers listed as inputs excluded)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim
        )
        specs.append(InputSpec(value.name, tensor_dtype_to_np_dtype(tensor.elem_type), dims))
    return tuple(specs)


def split_samples(
    arrays: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    inputs: Sequence[InputSpec],
    *,
    source: str,
) -> list[dict[str, np.ndarray]]:
    """One feed per sample for a model with ``inputs``, from ``arrays`` keyed by the input
    names (or ``X`` for a model's only input), samples on axis 0.

    Raises one :class:`InvalidInputError`, starting with ``source``, that names the model's
    inputs and the keys of ``arrays`` when they do not match, or the input and the shape it
    needs when an array's samples cannot be its feeds.
    """
    names = [spec.name for spec in inputs]
    keys = {name: name for name in names}
    if set(arrays) == {SINGLE_INPUT_KEY} and len(names) == 1:
        keys = {names[0]: SINGLE_INPUT_KEY}
    if set(arrays) != set(keys.values()):
        held = ", ".join(sorted(arrays)) or "no arrays"
        if len(names) == 1:
            raise InvalidInputError(
                f"{source} needs an array X (or {names[0]}) of samples on axis 0 for the "
                f"model's input {inputs[0].describe()}; the file holds {held}"
            )
        raise InvalidInputError(
            f"{source} needs one array per model input, keyed by its name, samples on axis "
            f"0: {'; '.join(s.describe() for s in inputs)}; the file holds {held}"
        )
    counts = {name: _count(arrays[key]) for name, key in keys.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        sizes = ", ".join(f"{keys[name]} {count}" for name, count in counts.items())
        raise InvalidInputError(
            f"{source}: every input needs the same number of samples on axis 0, at least "
            f"one; the file has {sizes}"
        )
    per_input = {s.name: _feeds(arrays[keys[s.name]], s, keys[s.name], source) for s in inputs}
    return [{name: feeds[i] for name, feeds in per_input.items()} for i in range(counts[names[0]])]


def _count(samples: np.ndarray | Sequence[np.ndarray]) -> int:
    return 0 if isinstance(samples, np.ndarray) and samples.ndim == 0 else len(samples)


def _feeds(
    samples: np.ndarray | Sequence[np.ndarray], spec: InputSpec, key: str, source: str
) -> list[np.ndarray]:
    """The feeds of one input: ``samples[i]`` with one axis more than the input,
    ``samples[i:i+1]`` with as many (the first axis a batch axis), each checked."""
    rank = len(spec.shape)
    batch_first = rank > 0 and not (isinstance(spec.shape[0], int) and spec.shape[0] != 1)
    feeds = []
    for i in range(len(samples)):
        sample = np.asarray(samples[i])
        if sample.ndim == rank - 1 and batch_first:
            sample = sample[np.newaxis]
        fits = sample.ndim == rank and all(
            not isinstance(d, int) or d == n for d, n in zip(spec.shape, sample.shape, strict=True)
        )
        if not fits or not np.issubdtype(sample.dtype, np.number) or sample.size == 0:
            raise InvalidInputError(
                f"{source} needs an array {key} of numbers, samples on axis 0, each fitting "
                f"the model's input {spec.describe()} (the array has the input's rank when its "
                f"first axis is the batch, or one axis more); sample {i} has shape "
                f"{sample.shape} ({sample.dtype})"
            )
        if np.issubdtype(sample.dtype, np.floating) and not np.isfinite(sample).all():
            raise InvalidInputError(f"{source}: array {key} contains NaN or Inf")
        feeds.append(np.ascontiguousarray(sample.astype(spec.dtype, copy=False)))
    return feeds


def calibration_reader(
    calibration: Path | str | None,
    run_dir: Path | None,
    meta: ModelMetadata | None,
    limit: int,
    model: Any = None,
) -> CalibrationReader:
    """Calibration samples for static-int8: ``calibration`` (an array file, see the module
    docstring) or, without it, the training split of ``run_dir``; at most ``limit``.

    With ``model`` (the ONNX model to quantize) the samples are matched to its inputs here,
    so a wrong file is refused before any work; otherwise :meth:`CalibrationReader.bind`
    must be called before ONNX Runtime reads them.
    """
    if meta is not None and meta.variant == "streaming":
        raise InvalidInputError(
            "static-int8 calibrates the sequence graph; quantize the sequence export (without "
            "--streaming) or use dynamic-int8"
        )
    if calibration is not None:
        from edgelstm.data.arrays import read_arrays

        arrays = read_arrays(Path(calibration))
        count = min(min((_count(a) for a in arrays.values()), default=0), limit)
        kind = "sequences" if set(arrays) == {SINGLE_INPUT_KEY} else "samples"
        reader = CalibrationReader(
            {key: a[:limit] if a.ndim else a for key, a in arrays.items()},
            f"{count} {kind} from {calibration}",
            f"--calibration {calibration}",
        )
    elif run_dir is None:
        raise InvalidInputError(
            "static-int8 needs calibration data: pass --calibration DATA.npz or --eval RUN_DIR "
            "(or quantize a model exported from a checkpoint that still exists)"
        )
    else:
        reader = _training_samples(run_dir, limit)
    if model is not None:
        reader.bind(model_inputs(model))
    return reader


def _training_samples(run_dir: Path, limit: int) -> CalibrationReader:
    """The first ``limit`` training sequences of ``run_dir``, each at its own length."""
    from edgelstm.training.evaluation import prepare_for_evaluation

    prepared, _ = prepare_for_evaluation(run_dir)
    train = prepared.train
    samples = []
    for i in range(min(len(train), limit)):
        steps = int(train.lengths[i]) if train.lengths is not None else train.x.shape[1]
        samples.append(np.ascontiguousarray(train.x[i : i + 1, :steps]))
    text = f"{len(samples)} training sequences of {run_dir}"
    return CalibrationReader({SINGLE_INPUT_KEY: samples}, text, f"the training split of {run_dir}")
