"""Export a module edgelstm did not train: ``file.py:factory`` or ``package.module:factory``
with a ``.safetensors`` or ``.pt`` state dict (``edgelstm export --model``).

The module is built by the user's factory, its weights loaded strictly, and it goes through
the same :func:`~edgelstm.exporters.onnx.export` as a checkpoint: the same exporters, the same
multi-shape validation, the same atomic write.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from edgelstm.errors import InvalidInputError
from edgelstm.exporters.onnx import DEFAULT_ATOL, DEFAULT_OPSET, ExportResult, export

__all__ = ["export_user_model", "load_user_module", "parse_input_shape"]


def export_user_model(
    model: str,
    weights: Path | str,
    input_shape: str,
    out: Path | str,
    *,
    streaming: bool = False,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
) -> ExportResult:
    """Export a module edgelstm did not train: ``file.py:factory`` or ``package.module:factory``.

    ``streaming`` is refused (by :func:`export`): a foreign module's recurrent state is unknown.

    ``weights`` is a ``.safetensors`` file or a ``.pt`` state dict (loaded with
    ``weights_only=True``; a pickled whole module is refused).
    """
    shape = parse_input_shape(input_shape)
    module = load_user_module(model)
    module.load_state_dict(_load_state_dict(Path(weights), module), strict=True)
    return export(
        module.eval(),
        out,
        streaming=streaming,
        input_shape=shape,
        opset=opset,
        atol=atol,
        overwrite=overwrite,
    )


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"B,T,F"`` → ``(B, T, F)``, all positive."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise InvalidInputError(
            f"--input-shape {text!r} must be three positive integers B,T,F (e.g. 1,100,40)"
        )
    return values  # type: ignore[return-value]


def load_user_module(reference: str) -> nn.Module:
    """Call ``factory()`` from ``path/to/file.py:factory`` or ``package.module:factory``."""
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
    if not isinstance(built, nn.Module):
        raise InvalidInputError(
            f"{factory_name}() returned {type(built).__name__}, not a torch.nn.Module"
        )
    return built


def _load_state_dict(path: Path, module: nn.Module) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InvalidInputError(f"--weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InvalidInputError(
                f"--weights {path} is not a readable safetensors file ({exc})"
            ) from None
    elif path.suffix in (".pt", ".pth", ".bin"):
        try:
            with warnings.catch_warnings():
                # torch warns about pickle protocols before refusing; the refusal is the message.
                warnings.simplefilter("ignore")
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for whole modules, others for junk
            raise InvalidInputError(
                f"--weights {path} is not a plain state dict ({type(exc).__name__}); a pickled "
                "whole module is refused because loading it runs arbitrary code: save "
                "`model.state_dict()` with torch.save or safetensors instead"
            ) from None
    else:
        raise InvalidInputError(f"--weights {path}: use a .safetensors or .pt state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(
            f"--weights {path} does not hold a state dict of tensors; save `model.state_dict()`"
        )
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise InvalidInputError(
            f"--weights {path} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return state
