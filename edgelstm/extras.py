"""Optional dependencies: which extra brings each module, and one way to say it is missing.

The core install (``pip install "edgelstm[cpu]"``) is what a device needs to run, stream and
benchmark exported models: numpy, onnx, typer, rich and an ONNX Runtime. Everything heavier
is an extra, and code that needs one imports it inside a function and turns the ImportError
into a :class:`~edgelstm.errors.MissingDependencyError` naming the extra to install::

    try:
        import torch
    except ImportError as exc:
        raise missing_dependency(exc, "training") from exc

The CLI does the same for any import of these modules that escapes a command, so a device
without torch gets one ``error:`` line with the fix instead of a traceback.
"""

from __future__ import annotations

import importlib.util

from edgelstm.errors import MissingDependencyError

#: Top-level import name -> the extra that installs it (see pyproject.toml).
EXTRA_FOR_MODULE: dict[str, str] = {
    "torch": "train",
    "safetensors": "train",
    "onnxscript": "train",
    "aeon": "data",
    "sklearn": "data",
    "matplotlib": "plot",
    "onnxruntime": "cpu",
    "uvicorn": "serve",
    "starlette": "serve",
    "websockets": "serve",
    "pyarrow": "parquet",
    "ray": "scale",
}


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refused it, or sys.modules holds None for it
        return False


def install_hint(extra: str) -> str:
    """The command that installs ``extra``; ONNX Runtime has three exclusive flavours."""
    if extra == "cpu":
        return (
            "pip install 'edgelstm[cpu]' (or 'edgelstm[gpu]' for CUDA, 'edgelstm[openvino]' for "
            "OpenVINO; install exactly one ONNX Runtime)"
        )
    return f"pip install 'edgelstm[{extra}]'"


def missing_module(exc: ImportError) -> str | None:
    """The optional top-level module that ``exc`` failed to import, or None if not one of them.

    ``exc.name`` names the module that could not be imported; a dependency missing *inside*
    an optional package (say, a library torch itself needs) is not that package's absence.
    """
    name = (exc.name or "").split(".")[0]
    return name if name in EXTRA_FOR_MODULE else None


def missing_dependency(exc: ImportError, purpose: str) -> MissingDependencyError:
    """A MissingDependencyError saying ``purpose`` needs the module ``exc`` failed to import.

    A module that is installed but fails to import (a broken or mismatched build) is reported
    with its own error, since reinstalling the extra is then the fix rather than installing it.
    """
    module = missing_module(exc)
    if module is None:
        return MissingDependencyError(
            f"{purpose} could not import {exc.name or 'a module'} ({exc}); install it or "
            "reinstall edgelstm with the extras you use"
        )
    hint = install_hint(EXTRA_FOR_MODULE[module])
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == module:
        return MissingDependencyError(f"{purpose} needs {module}, which is not installed: {hint}")
    return MissingDependencyError(
        f"{purpose} needs {module}, which is installed but failed to import ({exc}); "
        f"reinstall it: {hint.replace('pip install', 'pip install --force-reinstall', 1)}"
    )
