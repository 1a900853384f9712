"""Weights for a module edgelstm did not train: read a state dict safely, then let the module
load it its own way (``export --model ... --weights W``).

edgelstm does not compare keys itself: the module's own ``load_state_dict`` runs, with any
pre- or post-hook the user registered (key renaming, fused layers), or the loader the factory
returned. Only the one rename everyone needs is done here: the ``module.`` prefix that
``DataParallel`` / ``DistributedDataParallel`` put on every key.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from edgelstm.errors import InvalidInputError

__all__ = ["NPZ_CONVERSION", "Loader", "load_weights", "read_state_dict"]

#: What a factory may return beside its module: called with the state dict as read.
Loader = Callable[[dict[str, torch.Tensor]], object]

_PARALLEL_PREFIX = "module."
#: One line that converts arrays keyed by parameter name into a safetensors file.
NPZ_CONVERSION = (
    'python -c "import numpy as np, torch; from safetensors.torch import save_file; '
    "d = np.load('{path}'); save_file({{k: torch.from_numpy(d[k]).contiguous() for k in "
    "d.files}}, '{target}')\""
)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file or a ``.pt`` state dict (``weights_only``: a pickled whole
    module is refused, since loading it would run arbitrary code)."""
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
    elif path.suffix == ".npz":
        target = path.with_suffix(".safetensors")
        raise InvalidInputError(
            f"--weights {path}: .npz is not read (its keys and layouts are not PyTorch's); if "
            "its arrays are keyed by the module's state_dict names, convert it once: "
            + NPZ_CONVERSION.format(path=path, target=target)
        )
    else:
        raise InvalidInputError(f"--weights {path}: use a .safetensors or .pt state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(
            f"--weights {path} does not hold a state dict of tensors; save `model.state_dict()`"
        )
    return state


def load_weights(module: nn.Module, path: Path, loader: Loader | None = None) -> tuple[str, ...]:
    """Load ``path`` into ``module``; returns notes (a stripped prefix).

    With a ``loader`` (the factory returned ``(module, loader)``) it alone decides. Otherwise
    the module's own ``load_state_dict`` runs, hooks included, and what it reports missing or
    unexpected is the error.
    """
    state = read_state_dict(path)
    if loader is not None:
        try:
            loader(state)
        except Exception as exc:  # the user's loader raises whatever it raises
            raise InvalidInputError(
                f"the loader the factory returned failed on --weights {path}: "
                f"{type(exc).__name__}: {_head(exc)}"
            ) from None
        return ()
    notes: tuple[str, ...] = ()
    own = module.state_dict()
    if (
        state
        and all(k.startswith(_PARALLEL_PREFIX) for k in state)
        and not any(k.startswith(_PARALLEL_PREFIX) for k in own)
    ):
        state = {k[len(_PARALLEL_PREFIX) :]: v for k, v in state.items()}
        notes = (
            f"--weights {path} was saved from a DataParallel/DistributedDataParallel wrapper: "
            "stripped the `module.` prefix of its keys",
        )
    try:
        result = module.load_state_dict(state, strict=False)
    except Exception as exc:  # size mismatches (RuntimeError), or a custom loader's own error
        raise InvalidInputError(f"--weights {path} does not fit the model: {_head(exc)}") from None
    missing = list(getattr(result, "missing_keys", []))
    unexpected = list(getattr(result, "unexpected_keys", []))
    if missing or unexpected:
        raise InvalidInputError(
            f"--weights {path} does not fit the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; rename the keys when saving, or register "
            "a load_state_dict pre-hook on the module (or return (module, loader) from the "
            "factory) to map them"
        )
    return notes


def _head(exc: BaseException) -> str:
    """The informative line of a load error: torch's starts with a generic header line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return (lines or [type(exc).__name__])[0][:300]
