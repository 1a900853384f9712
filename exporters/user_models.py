"""Export a module edgelstm did not train: ``file.py:factory`` or ``package.module:factory``
with a ``.safetensors`` or ``.pt`` state dict (``edgelstm export --model``).

The module is built by the user's factory, its weights loaded the module's own way (see
:mod:`edgelstm.exporters.user_weights`), its inputs described by shapes or real examples (see
:mod:`edgelstm.exporters.user_inputs`), and it goes through the same
:func:`~edgelstm.exporters.onnx.export` as a checkpoint: the same exporters, the same
validation against PyTorch, the same atomic write.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from edgelstm.errors import InvalidInputError
from edgelstm.exporters.onnx import DEFAULT_ATOL, DEFAULT_OPSET, ExportResult, export
from edgelstm.exporters.user_inputs import parse_shape, resolve_inputs
from edgelstm.exporters.user_weights import Loader, load_weights

__all__ = [
    "export_user_model",
    "load_user_factory",
    "load_user_module",
    "parse_input_shape",
]


def export_user_model(
    model: str,
    weights: Path | str,
    input_shape: str | Sequence[str] | None,
    out: Path | str,
    *,
    streaming: bool = False,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
    example: Path | str | None = None,
    dynamic_axes: Sequence[str] = (),
    validate_shapes: Sequence[str] = (),
    exporter: str = "auto",
) -> ExportResult:
    """Export a module edgelstm did not train: ``file.py:factory`` or ``package.module:factory``.

    ``input_shape`` is one shape per forward() input (``"B,T,F"``, ``"1,1,64,256"``, ...), or
    None with ``example``: a ``.npz`` of real inputs keyed by forward()'s argument names (or
    saved positionally, ``arr_0``, ...). ``dynamic_axes`` holds ``NAME=AXIS[:LABEL],...`` per
    input (default: batch and time for one B,T,F input, else batch); ``validate_shapes``
    ``LABEL=SIZE,...`` per check replaces the derived checks. ``weights`` is a
    ``.safetensors`` file or a ``.pt`` state dict, loaded by the module's own
    ``load_state_dict`` (hooks run), or by the loader the factory returned as
    ``(module, loader)``. ``streaming`` is refused: a foreign module's state is unknown.

    Example:
        >>> export_user_model(
        ...     "net.py:make", "w.safetensors", ["1,1,64,256"], "net.onnx",
        ...     dynamic_axes=["x=0,3"],
        ... )  # doctest: +SKIP
    """
    shapes = [input_shape] if isinstance(input_shape, str) else list(input_shape or ())
    for text in shapes:
        parse_shape(text)  # a malformed shape is refused before the user's code runs
    module, loader = load_user_factory(model)
    notes = load_weights(module, Path(weights), loader)
    inputs, input_notes = resolve_inputs(
        module.eval(),
        shapes=shapes,
        example=Path(example) if example is not None else None,
        dynamic_axes=dynamic_axes,
        validate_shapes=validate_shapes,
    )
    result = export(
        module,
        out,
        streaming=streaming,
        opset=opset,
        atol=atol,
        overwrite=overwrite,
        inputs=inputs,
        exporter=exporter,
    )
    return dataclasses.replace(result, notes=(*notes, *input_notes, *result.notes))


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"B,T,F"`` → ``(B, T, F)``; any rank (``"1,1,64,256"``), all positive."""
    return parse_shape(text)


def load_user_module(reference: str) -> nn.Module:
    """Call ``factory()`` from ``path/to/file.py:factory`` or ``package.module:factory``."""
    return load_user_factory(reference)[0]


def load_user_factory(reference: str) -> tuple[nn.Module, Loader | None]:
    """Call ``factory()`` from ``path/to/file.py:factory`` or ``package.module:factory``:
    a module, or ``(module, loader)`` where ``loader(state_dict)`` loads its weights."""
    location, sep, factory_name = reference.rpartition(":")
    if not sep or not location or not factory_name:
        raise InvalidInputError(
            f"--model {reference!r} must look like path/to/file.py:factory or "
            "package.module:factory"
        )
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise InvalidInputError(f"--model file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"edgelstm_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise InvalidInputError(f"--model file {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise InvalidInputError(
                f"importing {path} failed: {type(exc).__name__}: {exc}"
            ) from None
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise InvalidInputError(
                f"--model module {location} cannot be imported: {exc}"
            ) from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise InvalidInputError(f"--model {location} has no callable {factory_name!r}")
    try:
        built = factory()
    except Exception as exc:
        raise InvalidInputError(
            f"{factory_name}() from {location} failed: {type(exc).__name__}: {exc}"
        ) from None
    loader = None
    if isinstance(built, tuple) and len(built) == 2 and callable(built[1]):
        built, loader = built
    if not isinstance(built, nn.Module):
        raise InvalidInputError(
            f"{factory_name}() returned {type(built).__name__}, not a torch.nn.Module "
            "(or a (module, loader) pair)"
        )
    return built, loader
