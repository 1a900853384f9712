"""The arrays a benchmark row feeds: an edgelstm-shaped sequence, the user's own inputs, or
inputs synthesised from any model's signature.

Three cases, in order:

1. ``--inputs inputs.npz``: the arrays, keyed by input name, checked and converted like
   ``edgelstm run``'s (:func:`~edgelstm.runtimes.ort.feeds.validate_feeds`). A row's
   ``batch`` and ``seq`` are the first and second axes of the model's first input.
2. A first input ``[batch, time, features]`` with a fixed feature axis (every edgelstm
   export, and many others): seeded standard-normal frames at the row's batch and length,
   zeros for the other inputs (the recurrent state a streaming export starts from).
3. Anything else: every input synthesised from its signature. A symbolic axis takes its
   ``--dim name=value``, else the row's batch when it is named like a batch (or is the first
   unnamed axis), else the row's length when named like time; other axes need ``--dim``.
   Floats are seeded standard-normal, integers zero; a note says the inputs are synthetic,
   since a model may branch on values (a sample rate, a mask) that zeros do not exercise.

Example::

    >>> feeds, notes, shape = benchmark_feeds(specs, batch=1, seq=100)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from edgelstm.data.arrays import read_arrays
from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.ort.feeds import InputSpec, validate_feeds

__all__ = ["benchmark_feeds", "parse_dims", "read_input_arrays", "row_shape", "sequence_frames"]

#: Every row sees the same numbers for a given shape.
_SEED = 1234
_BATCH_NAMES = re.compile(r"batch|^n$|^b$|^N$|^B$", re.IGNORECASE)
_TIME_NAMES = re.compile(r"time|seq|len|step|frame|^t$|^T$", re.IGNORECASE)


def sequence_frames(batch: int, seq: int, features: int) -> np.ndarray:
    """Seeded standard-normal frames ``[batch, seq, features]``: the same numbers for every
    runtime (ONNX Runtime and PyTorch rows) at a given shape."""
    rng = np.random.default_rng(_SEED)
    return rng.standard_normal((batch, seq, features)).astype(np.float32)


def row_shape(inputs: Path | str, first_input: str) -> tuple[int, int]:
    """(batch, seq) of a row fed from ``inputs``: the first two axes of the array for the
    model's first input (1 where it has fewer)."""
    arrays = read_input_arrays(inputs)
    if first_input not in arrays:
        raise InvalidInputError(
            f"--inputs {inputs} has no array `{first_input}` (the model's first input); it "
            f"has: {', '.join(sorted(arrays)) or 'nothing'}"
        )
    shape = arrays[first_input].shape
    return (shape[0] if len(shape) > 0 else 1, shape[1] if len(shape) > 1 else 1)


def parse_dims(items: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """``["seq_len=64", "n=2"]`` → ``(("seq_len", 64), ("n", 2))``; bad items are refused."""
    dims: list[tuple[str, int]] = []
    for item in items:
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise InvalidInputError(
                f"--dim {item}: give a symbolic axis and its size, such as --dim seq_len=64"
            )
        dims.append((name.strip(), int(value)))
    return tuple(dims)


def read_input_arrays(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, by name (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"--inputs {path} does not exist")
    try:  # the one NumPy reader: no pickles, and a CSV under an .npz name is called that
        return read_arrays(path)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--inputs {exc} (arrays keyed by input name)") from None


def _size(dim: int | str | None, position: int, axes: dict[str, int], batch: int, seq: int,
          where: str) -> int:  # fmt: skip
    if isinstance(dim, int):
        return dim
    if dim is not None and dim in axes:
        return axes[dim]
    if (dim is not None and _BATCH_NAMES.search(dim)) or (dim is None and position == 0):
        return batch
    if dim is not None and _TIME_NAMES.search(dim):
        return seq
    name = dim or f"axis {position}"
    raise InvalidInputError(
        f"{where}: cannot tell the size of `{name}`; give it with --dim "
        f"{dim or 'NAME'}=SIZE, or real inputs with --inputs inputs.npz"
    )


def _synthesised(
    specs: tuple[InputSpec, ...], batch: int, seq: int, dims: Mapping[str, int]
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, dtype, shape = spec.name, np.dtype(spec.dtype), spec.shape
        where = f"input {spec.describe()}"
        sizes = [_size(d, i, dict(dims), batch, seq, where) for i, d in enumerate(shape)]
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(sizes).astype(dtype)
        elif dtype.kind in "iub":
            feeds[name] = np.zeros(sizes, dtype)
        else:
            raise InvalidInputError(
                f"{where}: benchmark cannot make up {dtype} values; give --inputs inputs.npz"
            )
    return feeds


def benchmark_feeds(
    specs: tuple[InputSpec, ...],
    *,
    batch: int,
    seq: int,
    inputs: Path | str | None = None,
    dims: tuple[tuple[str, int], ...] = (),
) -> tuple[dict[str, np.ndarray], list[str], tuple[int, int]]:
    """(feeds, notes, (batch, seq) the row really has) for a model with inputs ``specs``
    (:class:`~edgelstm.runtimes.ort.feeds.InputSpec`); see the module docstring."""
    if inputs is not None:
        feeds, notes = validate_feeds(read_input_arrays(inputs), specs, source=str(inputs))
        shape = row_shape(inputs, specs[0].name)
        return feeds, [*notes, f"inputs from {inputs} ({_shapes(feeds)})"], shape
    x = specs[0]
    shape3 = x.shape
    if len(shape3) == 3 and isinstance(shape3[2], int) and not dims:
        feeds = {x.name: sequence_frames(batch, seq, shape3[2])}
        for spec in specs[1:]:  # the state a streaming export starts from
            size = [d if isinstance(d, int) else batch for d in spec.shape]
            feeds[spec.name] = np.zeros(size, spec.dtype)
        return feeds, [], (batch, seq)
    feeds = _synthesised(specs, batch, seq, dict(dims))
    note = (
        f"synthetic inputs from the model's signature ({_shapes(feeds)}; seeded N(0, 1) "
        "floats, zero integers); a model that branches on values times differently on real "
        "ones: --inputs inputs.npz"
    )
    return feeds, [note], (batch, seq)


def _shapes(feeds: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())
