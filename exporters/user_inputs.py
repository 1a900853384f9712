"""The inputs of a module edgelstm did not build: their names, example values, which axes
vary, and the sizes validation checks (``export --model`` with ``--input-shape``,
``--example``, ``--dynamic-axes`` and ``--validate-shapes``).

A dynamic axis carries a *label* (the ONNX ``dim_param``): axes with the same label have the
same size, in every input, in the example and in every validation check. ``batch`` is the
batch; every other label is a length (time, image width, ...) whose shortest valid size is
learned from the module (see :mod:`edgelstm.exporters.user_graph`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgelstm.data.arrays import read_arrays
from edgelstm.errors import InvalidInputError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "BATCH",
    "UserInputs",
    "forward_names",
    "inputs_from_shapes",
    "parse_shape",
    "resolve_inputs",
]

BATCH = "batch"
TIME = "time"
#: The name of the only input of a one-input module: edgelstm's run/serve contract reads `x`.
SINGLE_INPUT = "x"
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_AXES_SYNTAX = "NAME=AXIS[:LABEL],... (e.g. x=0,3 or x=0:batch,3:time)"


@dataclass(frozen=True)
class UserInputs:
    """What a foreign module is exported with: one entry per forward() input, in order."""

    names: tuple[str, ...]
    examples: tuple[np.ndarray, ...]
    #: input name -> {axis: label}; axes not listed keep the example's size.
    dynamic_axes: dict[str, dict[int, str]]
    #: validation checks given by the user, each label -> size; empty: derive them.
    validate: tuple[dict[str, int], ...] = ()
    #: the examples are real data (``--example``), not random numbers from a shape.
    real: bool = False

    def label_sizes(self) -> dict[str, int]:
        """Each label's size in the example, batch first."""
        sizes: dict[str, int] = {}
        for name, array in zip(self.names, self.examples, strict=True):
            for axis, label in sorted(self.dynamic_axes.get(name, {}).items()):
                sizes.setdefault(label, int(array.shape[axis]))
        return dict(sorted(sizes.items(), key=lambda item: item[0] != BATCH))


def parse_shape(text: str, option: str = "--input-shape") -> tuple[int, ...]:
    """``"1,1,64,256"`` → ``(1, 1, 64, 256)``: positive integers, any rank."""
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise InvalidInputError(
            f"{option} {text!r} must be positive integers separated by commas, one per axis "
            "(e.g. 1,100,40 for B,T,F or 1,1,64,256 for an image)"
        )
    return values


def forward_names(module: nn.Module) -> tuple[tuple[str, ...], int, bool]:
    """forward()'s positional parameter names, how many are required, and whether it takes
    ``*args`` (then any number of inputs fits)."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin or compiled forward has no signature
        return (), 0, True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in parameters if p.kind in kinds]
    required = sum(p.default is inspect.Parameter.empty for p in positional)
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    return tuple(p.name for p in positional), required, varargs


def inputs_from_shapes(shapes: Sequence[tuple[int, ...]]) -> UserInputs:
    """Random float32 examples of these shapes, default dynamic axes, input names ``x`` (one)
    or ``input_0``, ... (the Python API's ``export(module, input_shape=...)``)."""
    names = _graph_names((), len(shapes))
    examples = tuple(_random(shape, seed=0) for shape in shapes)
    return UserInputs(names, examples, _default_axes(names, examples))


def resolve_inputs(
    module: nn.Module,
    *,
    shapes: Sequence[str] = (),
    example: Path | None = None,
    dynamic_axes: Sequence[str] = (),
    validate_shapes: Sequence[str] = (),
) -> tuple[UserInputs, tuple[str, ...]]:
    """Parse the command-line texts against ``module``'s forward(); returns the inputs and
    notes (defaults the user may want to change)."""
    params, required, varargs = forward_names(module)
    if example is not None:
        if shapes:
            raise InvalidInputError("give --input-shape or --example, not both")
        names, examples = _load_example(example, params)
        real = True
    elif shapes:
        names = _graph_names(params, len(shapes))
        examples = tuple(_random(parse_shape(s), seed=i) for i, s in enumerate(shapes))
        real = False
    else:
        raise InvalidInputError("--model needs --input-shape (once per input) or --example")
    if len(names) < required or (len(names) > len(params) and not varargs):
        wanted = ", ".join(params) or "?"
        raise InvalidInputError(
            f"the model's forward() takes {required} to {len(params)} inputs ({wanted}) but "
            f"{len(names)} were given: repeat --input-shape once per input, or pass --example "
            "inputs.npz with one array per input"
        )
    notes: tuple[str, ...] = ()
    if dynamic_axes:
        axes = _parse_dynamic_axes(dynamic_axes, names, params, examples)
    else:
        axes = _default_axes(names, examples)
        if axes != {SINGLE_INPUT: {0: BATCH, 1: TIME}}:
            notes = (
                "only axis 0 (batch) of each input is dynamic; name the others with "
                f"--dynamic-axes {names[0]}=0,{examples[0].ndim - 1}",
            )
    inputs = UserInputs(names, examples, axes, real=real)
    _check_labels(inputs)
    checks = tuple(_parse_check(text, inputs) for text in validate_shapes)
    return UserInputs(names, examples, axes, checks, real), notes


def _graph_names(params: Sequence[str], count: int) -> tuple[str, ...]:
    if count == 1:
        return (SINGLE_INPUT,)
    return tuple(params[i] if i < len(params) else f"input_{i}" for i in range(count))


def _random(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _default_axes(
    names: tuple[str, ...], examples: tuple[np.ndarray, ...]
) -> dict[str, dict[int, str]]:
    # One B,T,F input keeps what export always did (batch and time vary); anything else
    # varies only in batch until the user says which axes are lengths.
    if len(names) == 1 and examples[0].ndim == 3:
        return {names[0]: {0: BATCH, 1: TIME}}
    return {n: ({0: BATCH} if a.ndim else {}) for n, a in zip(names, examples, strict=True)}


def _resolve_name(given: str, names: tuple[str, ...], params: Sequence[str]) -> str:
    """A graph input name, also accepting forward()'s own name for the single input `x`."""
    if given in names:
        return given
    if len(names) == 1 and (given in params[:1] or not given):
        return names[0]
    raise InvalidInputError(f"no input named {given!r}; the inputs are {', '.join(names)}")


def _load_example(
    path: Path, params: Sequence[str]
) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    if not path.is_file():
        raise InvalidInputError(f"--example file {path} does not exist")
    try:  # the one NumPy reader: no pickles, and a CSV under an .npz name is called that
        arrays = read_arrays(path)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--example {exc}") from None
    positional = [f"arr_{i}" for i in range(len(arrays))]
    if sorted(arrays) == sorted(positional):
        ordered = [arrays[key] for key in positional]  # np.savez(path, a, b): forward() order
    else:
        unknown = sorted(set(arrays) - set(params))
        if unknown:
            raise InvalidInputError(
                f"--example {path} has arrays {unknown} that are not forward() arguments "
                f"({', '.join(params)}); key them by argument name or save them positionally"
            )
        present = [p for p in params if p in arrays]
        if present != list(params[: len(present)]):
            raise InvalidInputError(
                f"--example {path} skips a forward() argument: it has {present} of {list(params)}"
            )
        ordered = [arrays[p] for p in present]
    # Name inputs as forward() does (a positional arr_1 is the second argument), and take
    # 0-d arrays as they are: a sample rate or a flag is a scalar input.
    for key, array in zip(params, ordered, strict=False):
        if array.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"--example {path}: input {key} is {array.dtype} of shape {array.shape}; "
                "inputs must be numeric arrays"
            )
    # numpy saves float64 by default, but a float32 module rejects it: export in float32.
    converted = tuple(a.astype(np.float32) if a.dtype == np.float64 else a for a in ordered)
    return _graph_names(params, len(converted)), converted


def _parse_dynamic_axes(
    texts: Sequence[str],
    names: tuple[str, ...],
    params: Sequence[str],
    examples: tuple[np.ndarray, ...],
) -> dict[str, dict[int, str]]:
    axes = _default_axes(names, examples)
    for text in texts:
        given, sep, spec = text.rpartition("=")
        if not sep and len(names) > 1:
            raise InvalidInputError(f"--dynamic-axes {text!r}: name the input, {_AXES_SYNTAX}")
        name = _resolve_name(given.strip(), names, params)
        rank = examples[names.index(name)].ndim
        chosen: dict[int, str | None] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            axis_text, _, label = part.partition(":")
            try:
                axis = int(axis_text)
            except ValueError:
                raise InvalidInputError(f"--dynamic-axes {text!r}: use {_AXES_SYNTAX}") from None
            if not -rank <= axis < rank:
                raise InvalidInputError(
                    f"--dynamic-axes {text!r}: input {name} has {rank} axes (0 to {rank - 1})"
                )
            if label and not _LABEL.match(label):
                raise InvalidInputError(f"--dynamic-axes {text!r}: label {label!r} is no name")
            chosen[axis % rank] = label or None
        lengths = [a for a, label in chosen.items() if a != 0 and label is None]
        axes[name] = {
            axis: label or _default_label(name, axis, rank, len(lengths))
            for axis, label in sorted(chosen.items())
        }
    return axes


def _default_label(name: str, axis: int, rank: int, unlabelled_lengths: int) -> str:
    if axis == 0:
        return BATCH
    if unlabelled_lengths == 1 or (rank == 3 and axis == 1):
        return TIME
    return f"{name}_dim{axis}"


def _check_labels(inputs: UserInputs) -> None:
    seen: dict[str, tuple[str, int, int]] = {}
    for name, array in zip(inputs.names, inputs.examples, strict=True):
        for axis, label in inputs.dynamic_axes.get(name, {}).items():
            size = int(array.shape[axis])
            first = seen.setdefault(label, (name, axis, size))
            if first[2] != size:
                raise InvalidInputError(
                    f"axes labelled {label!r} must have one size, but {first[0]} axis "
                    f"{first[1]} is {first[2]} and {name} axis {axis} is {size}; give them "
                    f"different labels (--dynamic-axes {name}={axis}:{label}_{name})"
                )


def _parse_check(text: str, inputs: UserInputs) -> dict[str, int]:
    """``batch=1,time=8`` (labels) or, for one input, a whole shape ``1,1,64,8``."""
    labels = inputs.label_sizes()
    if "=" not in text:
        if len(inputs.names) != 1:
            raise InvalidInputError(
                f"--validate-shapes {text!r}: with several inputs give label sizes, e.g. "
                + ",".join(f"{label}={size}" for label, size in labels.items())
            )
        shape = parse_shape(text, "--validate-shapes")
        example = inputs.examples[0].shape
        axes = inputs.dynamic_axes.get(inputs.names[0], {})
        fixed = [a for a in range(len(example)) if a not in axes]
        if len(shape) != len(example) or any(shape[a] != example[a] for a in fixed):
            raise InvalidInputError(
                f"--validate-shapes {text!r} must keep the example's rank and static sizes "
                f"{tuple(example)}; only axes {sorted(axes)} are dynamic (--dynamic-axes)"
            )
        return {label: shape[axis] for axis, label in sorted(axes.items())}
    check: dict[str, int] = {}
    for part in text.split(","):
        label, _, value = part.partition("=")
        label = label.strip()
        if label not in labels:
            raise InvalidInputError(
                f"--validate-shapes {text!r}: {label!r} is no dynamic axis; they are "
                f"{', '.join(labels) or 'none (see --dynamic-axes)'}"
            )
        check[label] = parse_shape(value, "--validate-shapes")[0]
    return check
