"""What a foreign module's graph looks like, learned by running it in PyTorch: its outputs and
which of their axes vary, the shortest length it accepts, and the validation checks with
PyTorch's answers (:class:`~edgelstm.exporters.validation.ValidationCase`).

The shortest length is probed, not assumed: a conv front end cannot take one frame, and a
check at a length the module itself refuses proves nothing about the export.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgelstm.errors import InvalidInputError, first_line
from edgelstm.exporters.user_inputs import BATCH, UserInputs
from edgelstm.exporters.validation import ValidationCase

__all__ = ["UserGraph", "probe_user_graph"]

#: How much each probe grows a label: a distinct step tells batch from length in the outputs.
_GROWTH = {BATCH: 1}
_LENGTH_GROWTH = 3
#: Lengths tried one by one when probing the shortest one; longer examples continue doubling.
_LINEAR_PROBE = 16


@dataclass(frozen=True)
class UserGraph:
    """Output names and axes, the validation checks, and notes for the user."""

    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    cases: tuple[ValidationCase, ...]
    notes: tuple[str, ...]


def probe_user_graph(module: nn.Module, inputs: UserInputs) -> UserGraph:
    """Run ``module`` at the example and at grown sizes to name its outputs' dynamic axes,
    then at the validation sizes to record PyTorch's outputs."""
    sizes = inputs.label_sizes()
    outputs = _run(module, _feeds(inputs, sizes, seed=0), _describe(sizes), example=True)
    names = ("output",) if len(outputs) == 1 else tuple(f"output_{i}" for i in range(len(outputs)))
    axes = {name: dict(inputs.dynamic_axes.get(name, {})) for name in inputs.names}
    changed: dict[tuple[int, int], list[str]] = {}
    for label, size in sizes.items():
        grown = _grown(module, inputs, sizes, label)
        if grown is None:
            continue
        probe, step = grown
        if len(probe) != len(outputs):
            raise InvalidInputError(
                "the model returns a different number of outputs when "
                f"{label} is {size + step} instead of {size}"
            )
        for i, (value, other) in enumerate(zip(outputs, probe, strict=True)):
            for axis in range(min(value.ndim, other.ndim)):
                delta = other.shape[axis] - value.shape[axis]
                if delta:
                    changed.setdefault((i, axis), []).append(label if delta == step else "")
    for i, name in enumerate(names):
        # An axis that grows exactly with one input label is that label; any other growth
        # (a strided conv halves time) is dynamic under a name of its own.
        axes[name] = {
            axis: labels[0] if len(labels) == 1 and labels[0] else f"{name}_dim{axis}"
            for (index, axis), labels in sorted(changed.items())
            if index == i
        }
    cases, notes = _cases(module, inputs, sizes)
    return UserGraph(names, axes, cases, notes)


def _describe(sizes: dict[str, int]) -> str:
    return ", ".join(f"{label} {size}" for label, size in sizes.items())


def _feeds(inputs: UserInputs, sizes: dict[str, int], seed: int) -> list[np.ndarray]:
    """Inputs at these label sizes: the real example wrapped or cut to size, or fresh random
    numbers when the example itself was random."""
    rng = np.random.default_rng(seed)
    feeds = []
    for name, example in zip(inputs.names, inputs.examples, strict=True):
        shape = list(example.shape)
        for axis, label in inputs.dynamic_axes.get(name, {}).items():
            shape[axis] = sizes[label]
        if not inputs.real:
            feeds.append(rng.standard_normal(shape).astype(example.dtype))
            continue
        array = example
        for axis, size in enumerate(shape):
            if size != array.shape[axis]:
                array = np.take(array, np.arange(size) % array.shape[axis], axis=axis)
        feeds.append(np.ascontiguousarray(array))
    return feeds


def _run(
    module: nn.Module, feeds: list[np.ndarray], where: str, *, example: bool = False
) -> tuple[np.ndarray, ...]:
    try:
        with torch.no_grad():
            result = module(*(torch.from_numpy(f) for f in feeds))
    except Exception as exc:  # the user's module raises whatever it raises
        hint = "check --input-shape or --example" if example else "check --validate-shapes"
        raise InvalidInputError(
            f"the model fails in PyTorch at {where or 'the example'}: "
            f"{type(exc).__name__}: {first_line(exc)}; {hint}"
        ) from None
    outputs = (result,) if isinstance(result, torch.Tensor) else tuple(result)
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise InvalidInputError("the model must return a tensor or a tuple of tensors")
    return tuple(o.detach().numpy() for o in outputs)


def _runs(module: nn.Module, inputs: UserInputs, sizes: dict[str, int]) -> bool:
    try:
        _run(module, _feeds(inputs, sizes, seed=0), "")
    except InvalidInputError:
        return False
    return True


def _grown(
    module: nn.Module, inputs: UserInputs, sizes: dict[str, int], label: str
) -> tuple[tuple[np.ndarray, ...], int] | None:
    """Outputs with ``label`` alone grown, and by how much (None: no grown size runs)."""
    steps = [_GROWTH[label]] if label in _GROWTH else [_LENGTH_GROWTH, sizes[label]]
    for step in steps:
        grown = {**sizes, label: sizes[label] + step}
        if _runs(module, inputs, grown):
            return _run(module, _feeds(inputs, grown, seed=0), _describe(grown)), step
    return None


def shortest_length(module: nn.Module, inputs: UserInputs, label: str) -> int:
    """The first size of ``label`` the module runs at: 1, 2, ... then doubling to the
    example's size (which runs, so a size is always found)."""
    sizes = inputs.label_sizes()
    candidates = list(range(1, min(_LINEAR_PROBE, sizes[label]) + 1))
    while candidates[-1] < sizes[label]:
        candidates.append(min(2 * candidates[-1], sizes[label]))
    for size in candidates:
        if _runs(module, inputs, {**sizes, label: size}):
            return size
    return sizes[label]


def _default_checks(module: nn.Module, inputs: UserInputs) -> list[dict[str, int]]:
    """Batch 1 and >= 3 at the shortest lengths, one long run, and one of neither size: the
    checks that catch axes frozen to the example (as for edgelstm's own models)."""
    sizes = inputs.label_sizes()
    lengths = [label for label in sizes if label != BATCH]
    short = {label: shortest_length(module, inputs, label) for label in lengths}
    long = {label: max(10 * sizes[label], 20) for label in lengths}
    grown = {label: sizes[label] + 3 for label in lengths}
    batch = sizes.get(BATCH)
    checks = [short, long, grown]
    if batch is not None:
        big = max(3, batch + 2)
        checks = [{BATCH: 1, **short}, {BATCH: 3, **short}, {BATCH: 1, **long}]
        checks.append({BATCH: big, **grown})
    unique = [c for i, c in enumerate(checks) if c not in checks[:i] and c != sizes]
    return unique or [sizes]


def _cases(
    module: nn.Module, inputs: UserInputs, sizes: dict[str, int]
) -> tuple[tuple[ValidationCase, ...], tuple[str, ...]]:
    chosen = inputs.validate or tuple(_default_checks(module, inputs))
    cases, notes = [], []
    for seed, check in enumerate(chosen):
        full = {**sizes, **check}
        where = _describe(full)
        feeds = _feeds(inputs, full, seed=seed + 1)
        if not inputs.validate and not _runs(module, inputs, full):
            # A size derived here that the module itself refuses (a stride that must divide
            # the length) is skipped, not blamed on the export.
            notes.append(f"PyTorch itself fails at {where}; not validated there")
            continue
        expected = _run(module, feeds, where)
        named = dict(zip(inputs.names, feeds, strict=True))
        cases.append(ValidationCase(where, named, expected))
    if not cases:
        feeds = _feeds(inputs, sizes, seed=1)
        expected = _run(module, feeds, _describe(sizes), example=True)
        cases.append(
            ValidationCase(_describe(sizes), dict(zip(inputs.names, feeds, strict=True)), expected)
        )
    return tuple(cases), tuple(notes)
