"""Import onnxruntime, and tell which installed wheels ship it when that goes wrong.

onnxruntime, onnxruntime-gpu, onnxruntime-openvino and the other builds all install the same
``onnxruntime`` import package, so "is it installed" and "which one" are questions about the
installed distributions, not about the import. This is the bottom of the ONNX Runtime side:
every module that needs onnxruntime imports it through :func:`import_onnxruntime`, inside a
function, so importing edgelstm costs nothing and a missing install surfaces as
:class:`~edgelstm.errors.MissingDependencyError` naming the extra to install.

Example::

    >>> from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime
    >>> "CPUExecutionProvider" in import_onnxruntime().get_available_providers()
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from edgelstm.errors import MissingDependencyError
from edgelstm.extras import install_hint

__all__ = ["conflict_warning", "import_onnxruntime", "installed_onnxruntime_distributions"]

_INSTALL_HINT = install_hint("cpu")


def installed_onnxruntime_distributions() -> list[tuple[str, str]]:
    """``(distribution, version)`` for every installed wheel that ships ``import onnxruntime``.

    onnxruntime, onnxruntime-gpu, onnxruntime-openvino, onnxruntime-directml, ... all install
    the same ``onnxruntime`` package folder, so with two installed the last one wins file by
    file and the result can be a CPU build that claims to be GPU (or a broken mix). Companion
    wheels with their own import package (onnxruntime-genai, onnxruntime-extensions) are not
    counted. Sorted by name; an empty list when none is installed.
    """
    import importlib.metadata  # ~30 ms (email parsing); only the report and errors need it

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        raw_name = dist.metadata["Name"] or ""
        name = raw_name.lower().replace("_", "-")
        if not name.startswith("onnxruntime") or name in found:
            continue
        files = dist.files
        if files:
            ships = any(f.parts and f.parts[0] == "onnxruntime" for f in files)
        else:  # no RECORD: fall back to the naming convention
            companions = ("genai", "extensions", "tools", "ep-")  # own import packages
            ships = name == "onnxruntime" or not name.startswith(
                tuple(f"onnxruntime-{c}" for c in companions)
            )
        if ships:
            found[name] = dist.version
    return sorted(found.items())


def conflict_warning(dists: Sequence[tuple[str, str]]) -> str | None:
    """How to fix two onnxruntime distributions installed side by side; None for one or none."""
    if len(dists) < 2:
        return None
    listed = ", ".join(f"{n} {v}" for n, v in dists)
    names = " ".join(n for n, _ in dists)
    return (
        f"{len(dists)} onnxruntime distributions are installed ({listed}); they ship the same "
        "`onnxruntime` package and overwrite each other's files. Keep exactly one: "
        f"pip uninstall -y {names} && pip install 'edgelstm[cpu]' (or 'edgelstm[gpu]', or "
        "'edgelstm[openvino]')"
    )


def import_onnxruntime() -> ModuleType:
    """Import and return ``onnxruntime``, or raise :class:`MissingDependencyError` with the fix.

    Example::

        >>> ort = import_onnxruntime()
        >>> "CPUExecutionProvider" in ort.get_available_providers()
        True
    """
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        dists = installed_onnxruntime_distributions()
        if not dists:
            message = f"onnxruntime is not installed: {_INSTALL_HINT}"
        else:
            listed = ", ".join(f"{n} {v}" for n, v in dists)
            message = f"onnxruntime is installed ({listed}) but failed to import: {exc}"
            conflict = conflict_warning(dists)
            message += f". {conflict}" if conflict else f". Reinstall it: {_INSTALL_HINT}"
        raise MissingDependencyError(message) from exc
