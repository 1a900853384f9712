"""Plugin execution providers and the devices every provider offers.

Since ONNX Runtime 1.23 an execution provider can ship as its own wheel beside the standard
``onnxruntime`` (``onnxruntime-ep-openvino``, ``onnxruntime-ep-webgpu``, ...) instead of a
whole rebuilt ONNX Runtime. Such a package holds a shared library that is registered at run
time (``onnxruntime.register_execution_provider_library``); its factory then reports the
devices it can drive (``onnxruntime.get_ep_devices``), and a session is placed on chosen
devices with ``SessionOptions.add_provider_for_devices`` instead of a ``providers=`` list.

This module finds those packages by their convention (a distribution named
``onnxruntime-ep-*`` whose import package has ``get_library_path()`` and ``get_ep_names()``),
registers each once per process, and lists the devices. A plugin that registers but offers no
device for this machine (``onnxruntime-ep-openvino`` on an AMD CPU accepts Intel hardware
only) is reported as such, never as a crash or a quiet run on the CPU.

The devices of built-in providers are listed here too, so ``edgelstm providers`` and
``--provider NAME:DEVICE`` read one source: OpenVINO's own device names in the
``onnxruntime-openvino`` build (CPU, GPU, GPU.1, NPU) and the CPU.

Example::

    >>> from edgelstm.runtimes.ort.plugin_eps import plugin_packages
    >>> [(p.distribution, p.devices) for p in plugin_packages()]  # doctest: +SKIP
    [('onnxruntime-ep-openvino', ())]
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgelstm.errors import InvalidInputError, first_line
from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime

__all__ = [
    "EpDevice",
    "PluginPackage",
    "ep_devices",
    "openvino_device_ids",
    "plugin_for_ep",
    "plugin_packages",
    "select_devices",
]

#: Distributions following ONNX Runtime's plugin EP packaging convention start with this.
PLUGIN_PREFIX = "onnxruntime-ep-"


@dataclass(frozen=True)
class EpDevice:
    """One device an execution provider's factory offered (``onnxruntime.OrtEpDevice``).

    ``kind`` is ``cpu``, ``gpu`` or ``npu``; ``vendor_id``/``device_id`` are the PCI-style ids
    ONNX Runtime reports (0 when unknown); ``index`` counts devices of the same provider.
    """

    ep_name: str
    ep_vendor: str
    kind: str
    vendor: str
    vendor_id: int
    device_id: int
    index: int

    @property
    def label(self) -> str:
        """Human form, e.g. ``GPU 0 (Intel, 8086:56a0)``."""
        ids = f", {self.vendor_id:04x}:{self.device_id:04x}" if self.vendor_id else ""
        return f"{self.kind.upper()} {self.index} ({self.vendor or 'unknown vendor'}{ids})"

    def matches(self, wanted: str) -> bool:
        """Whether ``--provider NAME:wanted`` names this device: its kind or its index."""
        key = wanted.strip().lower()
        return key == self.kind or key == str(self.index) or key == f"{self.kind}{self.index}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "ep_name": self.ep_name,
            "ep_vendor": self.ep_vendor,
            "kind": self.kind,
            "vendor": self.vendor,
            "vendor_id": self.vendor_id,
            "device_id": self.device_id,
            "index": self.index,
        }


@dataclass(frozen=True)
class PluginPackage:
    """An installed plugin EP package and what registering it gave.

    ``error`` holds why it could not be registered (a library that fails to load, an ONNX
    Runtime too old for plugins); ``devices`` the devices its providers offer on this machine;
    ``hardware`` what ONNX Runtime found on this machine at all (so a plugin that offers
    nothing can be told apart from a machine with nothing to offer).
    """

    distribution: str
    version: str
    module: str
    ep_names: tuple[str, ...]
    library: str | None
    error: str | None
    devices: tuple[EpDevice, ...]
    hardware: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """One line for reports: usable with which devices, or why not."""
        if self.error is not None:
            return f"installed; not usable: {self.error}"
        if not self.devices:
            names = ", ".join(self.ep_names) or "its provider"
            seen = ", ".join(self.hardware) or "nothing"
            return (
                "installed; no supported device on this machine: the plugin registered "
                f"{names}, whose factory offered no device for this hardware (ONNX Runtime "
                f"sees: {seen})"
            )
        return "registered; devices: " + ", ".join(d.label for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "ep_names": list(self.ep_names),
            "library": self.library,
            "error": self.error,
            "status": self.status,
            "devices": [d.to_json() for d in self.devices],
            "hardware": list(self.hardware),
        }


# Registration is per process and ONNX Runtime refuses a second one under the same name, so
# the outcome is remembered; the lock keeps two threads opening sessions from racing it.
_REGISTERED: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {}
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _installed_plugins() -> tuple[tuple[str, str, str], ...]:
    """``(distribution, version, import name)`` of every installed plugin EP package."""
    import importlib.metadata  # only provider listing and session opening get here

    found: dict[str, tuple[str, str, str]] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith(PLUGIN_PREFIX) or name in found:
            continue
        top_level = (dist.read_text("top_level.txt") or "").split()
        module = top_level[0] if top_level else name.replace("-", "_")
        found[name] = (name, dist.version, module)
    return tuple(sorted(found.values()))


def _register(
    ort: Any, distribution: str, module_name: str
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """Register one package's library once: ``(library, error, ep_names)``."""
    with _LOCK:
        if distribution in _REGISTERED:
            return _REGISTERED[distribution]
        library: str | None = None
        names: tuple[str, ...] = ()
        error: str | None = None
        try:
            module = importlib.import_module(module_name)
            library = str(module.get_library_path())
            if hasattr(module, "get_ep_names"):
                names = tuple(str(n) for n in module.get_ep_names())
            elif hasattr(module, "get_ep_name"):
                names = (str(module.get_ep_name()),)
            register = getattr(ort, "register_execution_provider_library", None)
            if register is None:
                error = (
                    f"onnxruntime {ort.__version__} cannot load plugin execution providers "
                    "(needs 1.23 or newer): pip install -U 'edgelstm[cpu]'"
                )
            else:
                register(distribution, library)
        except Exception as exc:  # a plugin fails in its own way; report it, never crash
            # Registered earlier in this process (by the user's code, say): usable as is.
            if "already registered" not in str(exc):
                error = f"registering it failed: {first_line(exc)}"
        _REGISTERED[distribution] = (library, error, names)
        return _REGISTERED[distribution]


def _kind(device: Any) -> str:
    text = str(getattr(device, "type", "")).rsplit(".", 1)[-1].lower()
    return text if text in {"cpu", "gpu", "npu"} else text or "unknown"


def _raw_devices(ort: Any) -> list[Any]:
    getter = getattr(ort, "get_ep_devices", None)
    if getter is None:
        return []
    try:
        return list(getter())
    except Exception:  # an ONNX Runtime without the plugin API: there are no EP devices
        return []


def _describe(raw_devices: Sequence[Any]) -> list[tuple[EpDevice, Any]]:
    """Pair each ``OrtEpDevice`` with its description, counting per provider and kind."""
    counts: dict[tuple[str, str], int] = {}
    out: list[tuple[EpDevice, Any]] = []
    for raw in raw_devices:
        name, hardware = str(raw.ep_name), raw.device
        kind = _kind(hardware)
        index = counts.get((name, kind), 0)
        counts[(name, kind)] = index + 1
        device = EpDevice(
            ep_name=name,
            ep_vendor=str(getattr(raw, "ep_vendor", "")),
            kind=kind,
            vendor=str(getattr(hardware, "vendor", "")),
            vendor_id=int(getattr(hardware, "vendor_id", 0) or 0),
            device_id=int(getattr(hardware, "device_id", 0) or 0),
            index=index,
        )
        out.append((device, raw))
    return out


def ep_devices(ep_name: str | None = None) -> list[tuple[EpDevice, Any]]:
    """Every device ONNX Runtime's registered EP factories offer, after registering plugins.

    Each entry pairs the description with ONNX Runtime's own ``OrtEpDevice`` (what
    ``add_provider_for_devices`` takes); ``ep_name`` keeps one provider's devices.
    """
    ort = import_onnxruntime()
    plugin_packages()  # registers installed plugins, so their devices are listed too
    described = _describe(_raw_devices(ort))
    return [(d, raw) for d, raw in described if ep_name is None or d.ep_name == ep_name]


def plugin_packages() -> tuple[PluginPackage, ...]:
    """Every installed plugin EP package, registered (once per process), with its devices."""
    installed = _installed_plugins()
    if not installed:
        return ()
    ort = import_onnxruntime()
    registered = [(d, v, m, *_register(ort, d, m)) for d, v, m in installed]
    described = [d for d, _ in _describe(_raw_devices(ort))]
    hardware = tuple(
        sorted({f"{d.kind.upper()} ({d.vendor or 'unknown vendor'})" for d in described})
    )
    return tuple(
        PluginPackage(
            dist,
            version,
            module,
            names,
            library,
            error,
            tuple(d for d in described if d.ep_name in names),
            hardware,
        )
        for dist, version, module, library, error, names in registered
    )


def plugin_for_ep(ep_name: str) -> PluginPackage | None:
    """The installed plugin package that provides ``ep_name``, if any."""
    return next((p for p in plugin_packages() if ep_name in p.ep_names), None)


def select_devices(ep_name: str, wanted: str | None) -> list[Any]:
    """ONNX Runtime's devices of ``ep_name`` matching ``wanted`` (kind or index; None = all).

    Raises:
        InvalidInputError: ``wanted`` names no device the provider offers (the message lists
            the ones it does).
    """
    offered = ep_devices(ep_name)
    if wanted is None:
        return [raw for _, raw in offered]
    chosen = [raw for device, raw in offered if device.matches(wanted)]
    if offered and not chosen:
        listed = ", ".join(d.label for d, _ in offered)
        raise InvalidInputError(
            f"{ep_name} offers no device {wanted!r} here; it offers: {listed} (give the kind, "
            "e.g. gpu, or the index)"
        )
    return chosen


def openvino_device_ids(ort: Any | None = None) -> list[str]:
    """OpenVINO's device names in an ``onnxruntime-openvino`` build (``CPU``, ``GPU.0``...).

    Empty for any other build. These are the values ``--provider openvino:DEVICE`` accepts
    (OpenVINO's ``device_type`` option).
    """
    ort = ort or import_onnxruntime()
    if "OpenVINOExecutionProvider" not in [str(p) for p in ort.get_available_providers()]:
        return []
    try:
        state = importlib.import_module("onnxruntime.capi._pybind_state")
        return [str(d) for d in state.get_available_openvino_device_ids()]
    except Exception:  # an OpenVINO build that does not expose the list: unknown, not none
        return []
