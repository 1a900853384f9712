"""Check arrays against a model's input signature before ONNX Runtime sees them.

ONNX Runtime's own messages for a wrong feed are terse ("Unexpected input data type") or
come from deep inside a kernel; some mistakes (NaN, an int64 array for an int32 input cast by
hand) are not caught at all. :func:`validate_feeds` names the input, the expected and the
actual shape or dtype, and the fix. Conversions are explicit: float64 → float32 (and other
float widths) happens with a notice; integers are converted only when every value fits, also
with a notice; anything else is refused.

Example::

    >>> specs = input_specs(session)  # doctest: +SKIP
    >>> feeds, notices = validate_feeds({"x": x}, specs, source="data.npz")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError

__all__ = [
    "InputSpec",
    "input_specs",
    "numpy_dtype",
    "optional_input_specs",
    "validate_feeds",
]

#: ONNX Runtime type strings → NumPy dtypes.
_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


def numpy_dtype(onnx_type: str) -> Any:
    """``"tensor(float)"`` → ``np.float32``; unsupported types raise InvalidInputError."""
    try:
        return _ORT_TYPES[onnx_type]
    except KeyError:
        raise InvalidInputError(
            f"model input/output type {onnx_type} is not supported by edgelstm run "
            f"(supported: {', '.join(sorted(_ORT_TYPES))})"
        ) from None


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, NumPy dtype and shape (ints fixed, strings/None symbolic)."""

    name: str
    dtype: Any
    shape: tuple[int | str | None, ...]

    def describe(self) -> str:
        """``x: float32 [batch, time, 12]`` for messages."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name} [{dims}]"


def _spec(arg: Any) -> InputSpec:
    dims = tuple(d if isinstance(d, int | str) else None for d in arg.shape)
    return InputSpec(arg.name, numpy_dtype(arg.type), dims)


def input_specs(session: Any) -> tuple[InputSpec, ...]:
    """The required inputs of an ONNX Runtime session, in order."""
    return tuple(_spec(i) for i in session.get_inputs())


def optional_input_specs(session: Any) -> tuple[InputSpec, ...]:
    """Inputs that have a default (initializers callers may override)."""
    return tuple(_spec(i) for i in session.get_overridable_initializers())


def _convert(
    name: str, array: np.ndarray, target: Any, source: str, notices: list[str]
) -> np.ndarray:
    want = np.dtype(target)
    have = array.dtype
    if have == want:
        return array
    if want.kind == "U" and have.kind in "US":
        return array.astype(object)  # ONNX Runtime takes string tensors as object arrays
    if have.kind == "f" and want.kind == "f":
        notices.append(f"{source}: input `{name}` converted {have.name} → {want.name}")
        with np.errstate(over="ignore"):
            converted = array.astype(want)
        if np.isfinite(array).all() and not np.isfinite(converted).all():
            raise InvalidInputError(
                f"{source}: input `{name}` has values outside the {want.name} range; "
                "scale them first"
            )
        return converted
    if have.kind in "iu" and want.kind in "iu":
        info = np.iinfo(want)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidInputError(
                f"{source}: input `{name}` is {have.name} with values outside {want.name} "
                f"({int(array.min())}..{int(array.max())}); the model expects {want.name}"
            )
        notices.append(f"{source}: input `{name}` converted {have.name} → {want.name} (lossless)")
        return array.astype(want)
    raise InvalidInputError(
        f"{source}: input `{name}` has dtype {have.name}, the model expects {want.name}; "
        f"save it as {want.name} (e.g. array.astype(np.{want.name}))"
    )


def validate_feeds(
    arrays: Mapping[str, np.ndarray],
    specs: tuple[InputSpec, ...],
    *,
    source: str,
    allow_nonfinite: bool = False,
    optional: tuple[InputSpec, ...] = (),
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Check and convert ``arrays`` for a model with inputs ``specs``.

    ``optional`` are inputs that may be left out (initializers the model lets callers
    override); when given they are checked like the others.

    Returns the feeds (converted, contiguous) and the notices to show. Raises
    :class:`InvalidInputError` naming ``source``, the input and the expectation for an
    unknown or missing name, a dtype that cannot be converted safely, a wrong rank, a fixed
    dimension that differs, a symbolic dimension with two sizes, an empty array, or NaN/Inf
    (unless ``allow_nonfinite``).
    """
    expected = {s.name: s for s in (*specs, *optional)}
    unknown = sorted(set(arrays) - set(expected))
    if unknown:
        raise InvalidInputError(
            f"{source}: array(s) {', '.join(unknown)} are not inputs of the model; its inputs "
            f"are: {'; '.join(s.describe() for s in specs)}"
        )
    missing = [s for s in specs if s.name not in arrays]
    if missing:
        raise InvalidInputError(
            f"{source}: missing input(s) {', '.join(s.name for s in missing)}; the model "
            f"needs: {'; '.join(s.describe() for s in specs)}"
        )
    notices: list[str] = []
    feeds: dict[str, np.ndarray] = {}
    symbols: dict[str, tuple[int, str]] = {}
    for spec in (*specs, *(o for o in optional if o.name in arrays)):
        array = np.asarray(arrays[spec.name])
        if array.ndim != len(spec.shape):
            raise InvalidInputError(
                f"{source}: input `{spec.name}` has rank {array.ndim} (shape {array.shape}), "
                f"the model expects rank {len(spec.shape)} ({spec.describe()})"
            )
        if array.size == 0:
            raise InvalidInputError(
                f"{source}: input `{spec.name}` is empty (shape {array.shape}); give at least "
                "one element per axis"
            )
        for axis, (dim, size) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if isinstance(dim, int) and dim != size:
                raise InvalidInputError(
                    f"{source}: input `{spec.name}` axis {axis} has size {size}, the model "
                    f"fixes it to {dim} ({spec.describe()}; got shape {array.shape})"
                )
            if isinstance(dim, str):
                seen = symbols.setdefault(dim, (size, spec.name))
                if seen[0] != size:
                    raise InvalidInputError(
                        f"{source}: dimension `{dim}` is {seen[0]} in input `{seen[1]}` but "
                        f"{size} in input `{spec.name}`; inputs sharing a dimension name must "
                        "agree"
                    )
        if array.dtype.kind in "fc" and not allow_nonfinite and not np.isfinite(array).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise InvalidInputError(
                f"{source}: input `{spec.name}` contains NaN or Inf (first at index {where}); "
                "clean the data, or pass --allow-nonfinite to feed it as it is"
            )
        converted = _convert(spec.name, array, spec.dtype, source, notices)
        # ascontiguousarray would turn a scalar (rank 0) into shape [1].
        feeds[spec.name] = converted if converted.ndim == 0 else np.ascontiguousarray(converted)
    return feeds, notices
