"""Device targets a bundle can be built for, and the onnxruntime each one can have.

A target is an operating system and CPU architecture (``linux-aarch64``), the device's
Python (``3.11``) and its C library (glibc ``2.28``): the three decide which wheels
install there. :func:`resolve_target` refuses, with the reason and the alternatives, the
targets no wheel exists for (32-bit ARM above all) before anything is downloaded;
:func:`runtime_for` picks the onnxruntime distribution the deployment's providers need and
refuses a provider the target cannot get from the package index.

Example::

    >>> target = resolve_target("linux-aarch64", python="3.11", glibc="2.28")
    >>> target.platform_tags()[:2]
    ('manylinux_2_28_aarch64', 'manylinux_2_27_aarch64')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from edgelstm.errors import InvalidInputError

__all__ = [
    "SUPPORTED_TARGETS",
    "DeviceRuntime",
    "DeviceTarget",
    "resolve_target",
    "runtime_for",
]

#: target name -> the machine name ``uname -m`` prints on it.
SUPPORTED_TARGETS: dict[str, str] = {"linux-x86_64": "x86_64", "linux-aarch64": "aarch64"}

#: Names people type for the supported targets.
_ALIASES = {
    "linux-arm64": "linux-aarch64",
    "linux-amd64": "linux-x86_64",
    "aarch64": "linux-aarch64",
    "arm64": "linux-aarch64",
    "x86_64": "linux-x86_64",
    "amd64": "linux-x86_64",
}

_SUPPORTED_HINT = (
    "supported: linux-aarch64 (Raspberry Pi 3/4/5 with a 64-bit OS, Jetson, i.MX 8, most "
    "ARM gateways) and linux-x86_64"
)

#: Targets people ask for that no onnxruntime wheel exists for, and what to do instead.
_UNSUPPORTED = {
    "armv7l": (
        "the package index has no onnxruntime wheels for 32-bit ARM (armv7l/armhf) at all; "
        "install a 64-bit OS on the device (Raspberry Pi OS 64-bit on a Pi 3, 4 or 5) and use "
        "--target linux-aarch64, or build ONNX Runtime from source for armv7l"
    ),
    "armv6l": (
        "the package index has no onnxruntime wheels for 32-bit ARM (armv6l: Pi Zero/1); a Pi "
        "Zero 2 W runs a 64-bit OS: use --target linux-aarch64 there"
    ),
    "i686": "the package index has no 32-bit x86 onnxruntime wheels for Linux; use a 64-bit OS",
    "riscv64": "the package index has no onnxruntime wheels for riscv64; build ONNX Runtime "
    "from source for it",
    "windows": "bundles install with a POSIX shell script and manylinux wheels; on Windows "
    "install with pip ('pip install edgelstm[cpu]') and copy the models",
    "macos": "bundles install with manylinux wheels; on macOS install with pip "
    "('pip install edgelstm[cpu]') and copy the models",
}
_UNSUPPORTED_ALIASES = {
    "armhf": "armv7l",
    "arm": "armv7l",
    "armv7": "armv7l",
    "armv8l": "armv7l",
    "x86": "i686",
    "win": "windows",
    "darwin": "macos",
}

#: Oldest glibc any manylinux wheel targets (manylinux2014 = manylinux_2_17).
_OLDEST_GLIBC = 17
_PYTHON = re.compile(r"^3\.(\d{1,2})$")
_GLIBC = re.compile(r"^2\.(\d{1,2})$")


@dataclass(frozen=True)
class DeviceTarget:
    """Where a bundle installs: ``linux-aarch64``, CPython ``3.11``, glibc ``2.28``."""

    name: str
    machine: str  # what `uname -m` prints on the device
    python: str
    glibc: str

    @property
    def abi(self) -> str:
        """The CPython ABI tag, ``cp311``."""
        return "cp" + self.python.replace(".", "")

    def platform_tags(self) -> tuple[str, ...]:
        """Wheel platform tags that install on this device, newest glibc first.

        A device with glibc 2.N takes ``manylinux_2_M`` wheels for every M <= N;
        ``manylinux2014`` is ``manylinux_2_17``; ``linux_<arch>`` is what vendors' own wheels
        (NVIDIA's Jetson builds) carry.
        """
        newest = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(newest, _OLDEST_GLIBC - 1, -1)]
        return (*tags, f"manylinux2014_{self.machine}", f"linux_{self.machine}")

    def describe(self) -> str:
        """``linux-aarch64, CPython 3.11, glibc >= 2.28`` for messages."""
        return f"{self.name}, CPython {self.python}, glibc >= {self.glibc}"

    def to_json(self) -> dict[str, object]:
        """The manifest's ``target`` entry."""
        return {
            "name": self.name,
            "machine": self.machine,
            "python": self.python,
            "glibc": self.glibc,
            "platforms": list(self.platform_tags()),
        }


def resolve_target(name: str, *, python: str = "3.11", glibc: str = "2.28") -> DeviceTarget:
    """The :class:`DeviceTarget` for ``name``; unsupported ones are refused with the fix.

    ``python`` is the device's ``python3 --version`` (major.minor) and ``glibc`` its
    ``ldd --version`` (2.N): they decide which wheels install there. Whether the index holds
    wheels for that combination is learnt when they are fetched.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SUPPORTED_TARGETS:
        arch = key.removeprefix("linux-")
        arch = _UNSUPPORTED_ALIASES.get(arch, arch)
        reason = _UNSUPPORTED.get(arch)
        if reason is not None:
            raise InvalidInputError(f"--target {name} is not supported: {reason}")
        raise InvalidInputError(f"--target {name} is not a known target; {_SUPPORTED_HINT}")
    minor = _PYTHON.match(python.strip())
    if minor is None or not 10 <= int(minor.group(1)) <= 14:
        raise InvalidInputError(
            f"--python {python}: give the device's Python as major.minor, 3.10 to 3.14 "
            "(edgelstm needs 3.10 or newer; run 'python3 --version' on the device)"
        )
    glibc_minor = _GLIBC.match(glibc.strip())
    if glibc_minor is None or int(glibc_minor.group(1)) < _OLDEST_GLIBC:
        raise InvalidInputError(
            f"--glibc {glibc}: give the device's glibc as 2.N, 2.17 or newer (run 'ldd "
            "--version' on the device; no manylinux wheel runs on an older one)"
        )
    return DeviceTarget(key, SUPPORTED_TARGETS[key], python.strip(), glibc.strip())


@dataclass(frozen=True)
class DeviceRuntime:
    """The onnxruntime distribution a bundle ships.

    ``extra`` is the edgelstm extra that brings it from the index (``cpu``, ``gpu``,
    ``openvino``); None when the user's own wheel (``--wheel``) is the runtime.
    """

    distribution: str
    extra: str | None
    providers: tuple[str, ...]


#: provider -> (the edgelstm extra that brings it, distribution, targets the index has it for)
_INDEX_RUNTIMES: dict[str, tuple[str, str, frozenset[str]]] = {
    "cpu": ("cpu", "onnxruntime", frozenset(SUPPORTED_TARGETS)),
    "cuda": ("gpu", "onnxruntime-gpu", frozenset({"linux-x86_64"})),
    "tensorrt": ("gpu", "onnxruntime-gpu", frozenset({"linux-x86_64"})),
    "openvino": ("openvino", "onnxruntime-openvino", frozenset({"linux-x86_64"})),
}

_NO_INDEX_WHEEL = {
    ("cuda", "linux-aarch64"): (
        "onnxruntime-gpu has no linux-aarch64 wheels on the package index; on a Jetson, "
        "download NVIDIA's onnxruntime-gpu wheel for your JetPack and Python and pass it with "
        "--wheel PATH"
    ),
    ("openvino", "linux-aarch64"): (
        "onnxruntime-openvino has no linux-aarch64 wheels (OpenVINO runs on Intel hardware); "
        "deploy with the cpu provider there"
    ),
}


def runtime_for(
    providers: Iterable[str], target: DeviceTarget, *, user_runtime: str | None = None
) -> DeviceRuntime:
    """The onnxruntime distribution that gives the deployments' ``providers`` on ``target``.

    ``auto`` counts as the CPU (it falls back to it). ``user_runtime`` is the distribution
    of an onnxruntime wheel given with ``--wheel``: it is taken as it is, trusted to carry
    the providers its builder put in. A provider the index has no wheel for on this target,
    or two that need different distributions (one install holds one onnxruntime), are
    refused with the alternatives.
    """
    names = tuple(dict.fromkeys(p.split(":")[0].lower() or "cpu" for p in providers)) or ("cpu",)
    names = tuple(dict.fromkeys("cpu" if p == "auto" else p for p in names))
    if user_runtime is not None:
        return DeviceRuntime(user_runtime, None, names)
    extras: dict[str, str] = {}
    for provider in names:
        known = _INDEX_RUNTIMES.get(provider)
        if known is None:
            raise InvalidInputError(
                f"provider {provider} is not available for {target.name} from the package "
                "index; pass the wheel of an onnxruntime build that has it with --wheel PATH, "
                "or deploy with the cpu provider"
            )
        extra, distribution, targets = known
        if target.name not in targets:
            reason = _NO_INDEX_WHEEL.get((provider, target.name), "")
            raise InvalidInputError(
                f"provider {provider} cannot be had on {target.name}: {reason or 'no wheel'}"
            )
        extras[distribution] = extra
    # The CPU provider is built into every distribution: it never decides alone.
    needed = {d: e for d, e in extras.items() if d != "onnxruntime"} or extras
    if len(needed) > 1:
        raise InvalidInputError(
            f"the deployments need {' and '.join(sorted(needed))}, but one install holds one "
            "onnxruntime distribution; bundle them separately"
        )
    distribution, extra = next(iter(needed.items()))
    return DeviceRuntime(distribution, extra, names)
