"""What the host offers for inference: CPU ISA flags for INT8, NVIDIA GPUs, torch's CUDA view.

edgelstm uses this to explain results, not to guess them: whether dynamic INT8 pays off depends
on the CPU's dot-product instructions (VNNI on x86, ``asimddp`` on ARM), and whether ONNX
Runtime's CUDA provider can run depends on the driver. Every probe here is cheap, never
raises for a missing tool, and keeps its parsing in a pure function so tests can feed it
captured text from other machines.

Example::

    >>> from edgelstm.hardware import cpu_info, int8_note
    >>> print(int8_note(cpu_info()))  # doctest: +SKIP
    VNNI (avx512_vnni): u8s8 dynamic INT8 runs at full speed, no saturation
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgelstm.extras import missing_dependency

__all__ = [
    "CpuInfo",
    "GpuInfo",
    "cpu_info",
    "gpu_info",
    "int8_note",
    "parse_nvidia_smi",
    "parse_nvidia_smi_cuda_version",
    "parse_proc_cpuinfo",
    "parse_sysctl_cpu",
    "torch_cuda_info",
]

#: Seconds any external probe (``nvidia-smi``, ``sysctl``) may take before it is abandoned.
PROBE_TIMEOUT_S = 5.0

# ARM "CPU implementer" / "CPU part" codes from /proc/cpuinfo; aarch64 kernels print no
# model name, so without this the report would only say "aarch64".
_ARM_IMPLEMENTERS: Mapping[str, str] = {
    "0x41": "Arm",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0xc0": "Ampere",
}
_ARM_PARTS: Mapping[str, str] = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU as far as INT8/FP32 inference cares.

    ISA booleans are ``False`` both when the flag is absent and when flags could not be read;
    ``flags_known`` tells the two apart. ``usable_cores`` is the CPU affinity of this process
    (what a container or ``taskset`` allows), which is what thread counts should be sized by;
    ``logical_cores`` is what the machine has.
    """

    model: str
    architecture: str
    logical_cores: int | None
    physical_cores: int | None = None
    usable_cores: int | None = None
    flags_known: bool = False
    avx2: bool = False
    avx512f: bool = False
    avx512_vnni: bool = False
    avx_vnni: bool = False
    amx: bool = False
    neon: bool = False
    asimddp: bool = False
    i8mm: bool = False
    flags: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)

    @property
    def is_x86(self) -> bool:
        """True for x86/x86-64 (where ONNX Runtime's u8s8 saturation question arises)."""
        return _is_x86(self.architecture)

    @property
    def is_arm(self) -> bool:
        """True for 32- and 64-bit ARM."""
        return _is_arm(self.architecture)

    @property
    def has_vnni(self) -> bool:
        """x86 VNNI in either form (AVX-512 VNNI or the VEX-encoded AVX-VNNI)."""
        return self.avx512_vnni or self.avx_vnni

    @property
    def reduce_range_advised(self) -> bool:
        """True when INT8 weights should be quantized to 7 bits (``reduce_range``).

        ONNX Runtime's x86 u8s8 kernels without VNNI sum pairs of u8*s8 products in 16-bit
        registers, which can saturate; 7-bit weights keep the sums in range. Only known x86
        CPUs without VNNI qualify: ARM kernels have no such issue, and unknown flags say nothing.
        """
        return self.flags_known and self.is_x86 and not self.has_vnni

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys (raw ``flags`` omitted: hundreds of entries)."""
        data = asdict(self)
        del data["flags"]
        data["int8_note"] = int8_note(self)
        return data


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as ``nvidia-smi`` reports it.

    ``cuda_version`` is the newest CUDA the *driver* supports (the ``nvidia-smi`` header), not
    the toolkit any library was built with: onnxruntime-gpu and torch each bundle or expect
    their own, and need a driver at least that new.
    """

    index: int
    name: str
    driver_version: str | None
    cuda_version: str | None
    memory_mib: int | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return asdict(self)


# --------------------------------------------------------------------------- CPU


def _is_x86(arch: str) -> bool:
    return arch.lower() in {"x86_64", "amd64", "x86", "i386", "i686", "x64"}


def _is_arm(arch: str) -> bool:
    a = arch.lower()
    return a.startswith(("arm", "aarch64")) or a == "arm64"


def _flags_to_fields(flags: frozenset[str]) -> dict[str, bool]:
    """Map raw flag names (Linux spellings, lower case) to :class:`CpuInfo` booleans."""
    return {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        # Linux says avx512_vnni; macOS sysctl and some tools say avx512vnni.
        "avx512_vnni": bool(flags & {"avx512_vnni", "avx512vnni"}),
        "avx_vnni": bool(flags & {"avx_vnni", "avxvnni"}),
        "amx": bool(flags & {"amx_int8", "amx_tile", "amxint8", "amxtile"}),
        # aarch64 calls Advanced SIMD "asimd"; 32-bit ARM kernels say "neon".
        "neon": bool(flags & {"asimd", "neon"}),
        "asimddp": bool(flags & {"asimddp", "dotprod", "feat_dotprod"}),
        "i8mm": bool(flags & {"i8mm", "feat_i8mm"}),
    }


def parse_proc_cpuinfo(text: str, *, architecture: str | None = None) -> CpuInfo:
    """Parse Linux ``/proc/cpuinfo`` text into a :class:`CpuInfo`.

    Works for x86 (``model name``, ``flags``, ``physical id``/``core id``) and ARM
    (``Features``, ``CPU implementer``/``CPU part``). ``architecture`` overrides the guess made
    from the text (x86 has a ``flags`` line, ARM a ``Features`` line). Physical cores are the
    distinct ``(physical id, core id)`` pairs, ``None`` when the kernel does not print them.

    Example::

        >>> info = parse_proc_cpuinfo("processor : 0\\nmodel name : X\\nflags : sse avx2\\n")
        >>> (info.model, info.logical_cores, info.avx2, info.avx512_vnni)
        ('X', 1, True, False)
    """
    processors = 0
    model: str | None = None
    hardware: str | None = None
    implementer: str | None = None
    part: str | None = None
    flag_line: str | None = None
    feature_line: str | None = None
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for raw in text.splitlines():
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "processor" and value.isdigit():
            processors += 1
        elif key == "model name" and model is None:
            model = value
        elif key == "hardware" and hardware is None:
            hardware = value
        elif key == "cpu implementer" and implementer is None:
            implementer = value.lower()
        elif key == "cpu part" and part is None:
            part = value.lower()
        elif key == "flags" and flag_line is None:
            flag_line = value
        elif key == "features" and feature_line is None:
            feature_line = value
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))

    raw_flags = flag_line if flag_line is not None else feature_line
    flags = frozenset(raw_flags.lower().split()) if raw_flags is not None else frozenset()
    if architecture is None:
        if flag_line is not None:
            architecture = "x86_64" if "lm" in flags else "x86"
        elif feature_line is not None:
            architecture = "aarch64" if "asimd" in flags else "armv7l"
        else:
            architecture = "unknown"
    if model is None and implementer is not None:
        vendor = _ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer}")
        core = _ARM_PARTS.get(part or "", f"part {part}" if part else "")
        model = f"{vendor} {core}".strip()
    if model is None:
        model = hardware or architecture
    return CpuInfo(
        model=model,
        architecture=architecture,
        logical_cores=processors or None,
        physical_cores=len(cores) or None,
        flags_known=raw_flags is not None,
        flags=flags,
        **_flags_to_fields(flags),
    )


def parse_sysctl_cpu(values: Mapping[str, str], *, architecture: str) -> CpuInfo:
    """Build a :class:`CpuInfo` from macOS ``sysctl`` values (name → printed value).

    Uses ``machdep.cpu.brand_string``, ``hw.logicalcpu``, ``hw.physicalcpu``; on Intel Macs
    the ``machdep.cpu.features``/``leaf7_features`` word lists, on Apple silicon the
    ``hw.optional.arm.FEAT_*`` booleans (NEON is always present there).
    """
    words: set[str] = set()
    for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
        words.update(values.get(key, "").lower().replace(".", "_").split())
    for key, value in values.items():
        if key.startswith("hw.optional.arm.") and value.strip() == "1":
            words.add(key.removeprefix("hw.optional.arm.").lower())
    if _is_arm(architecture):
        words.add("asimd")
    known = bool(words)

    def _int(key: str) -> int | None:
        value = values.get(key, "").strip()
        return int(value) if value.isdigit() else None

    flags = frozenset(words)
    return CpuInfo(
        model=values.get("machdep.cpu.brand_string", "").strip() or architecture,
        architecture=architecture,
        logical_cores=_int("hw.logicalcpu"),
        physical_cores=_int("hw.physicalcpu"),
        flags_known=known,
        flags=flags,
        **_flags_to_fields(flags),
    )


def _run(cmd: list[str]) -> str | None:
    """stdout of ``cmd``, or ``None`` on any failure (missing tool, timeout, non-zero exit)."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _darwin_cpu() -> CpuInfo | None:
    keys = [
        "machdep.cpu.brand_string",
        "hw.logicalcpu",
        "hw.physicalcpu",
        "machdep.cpu.features",
        "machdep.cpu.leaf7_features",
        "hw.optional.arm.FEAT_DotProd",
        "hw.optional.arm.FEAT_I8MM",
    ]
    values: dict[str, str] = {}
    for key in keys:
        out = _run(["sysctl", "-n", key])
        if out is not None:
            values[key] = out.strip()
    if not values:
        return None
    return parse_sysctl_cpu(values, architecture=platform.machine() or "unknown")


def _usable_cores() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        with contextlib.suppress(OSError):
            return len(os.sched_getaffinity(0))
    return os.cpu_count()


def cpu_info() -> CpuInfo:
    """Describe this machine's CPU; never raises.

    Linux reads ``/proc/cpuinfo``; macOS asks ``sysctl``; elsewhere only
    ``platform.processor()`` and ``os.cpu_count()`` are known and ``flags_known`` is False.

    Example::

        >>> info = cpu_info()
        >>> info.logical_cores is None or info.logical_cores >= 1
        True
    """
    arch = platform.machine() or "unknown"
    info: CpuInfo | None = None
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                info = parse_proc_cpuinfo(fh.read(), architecture=arch)
        except OSError:
            info = None
    elif sys.platform == "darwin":
        info = _darwin_cpu()
    if info is None:
        info = CpuInfo(
            model=platform.processor() or arch, architecture=arch, logical_cores=os.cpu_count()
        )
    if info.logical_cores is None:
        info = replace(info, logical_cores=os.cpu_count())
    return replace(info, usable_cores=_usable_cores())


def int8_note(cpu: CpuInfo) -> str:
    """One factual sentence on what this CPU means for ONNX Runtime INT8 (u8s8) inference.

    Example::

        >>> print(int8_note(CpuInfo("X", "x86_64", 2, flags_known=True, avx2=True)))
        no VNNI (AVX2): ONNX Runtime's u8s8 INT8 products can saturate; quantize with reduce_range (7-bit weights)
    """  # noqa: E501
    if not cpu.flags_known:
        return "CPU flags unknown: benchmark INT8 against FP32 before relying on it"
    if cpu.is_x86:
        if cpu.has_vnni:
            which = "avx512_vnni" if cpu.avx512_vnni else "avx_vnni"
            extra = " (AMX also present)" if cpu.amx else ""
            return f"VNNI ({which}): u8s8 dynamic INT8 runs at full speed, no saturation{extra}"
        if cpu.avx2 or cpu.avx512f:
            isa = "AVX-512" if cpu.avx512f else "AVX2"
            return (
                f"no VNNI ({isa}): ONNX Runtime's u8s8 INT8 products can saturate; "
                "quantize with reduce_range (7-bit weights)"
            )
        return (
            "no AVX2: INT8 falls back to SSE kernels (slow, can saturate); "
            "quantize with reduce_range or stay in FP32"
        )
    if cpu.is_arm:
        if cpu.asimddp:
            extra = " and i8mm" if cpu.i8mm else ""
            return f"ARM dot product (asimddp{extra}): INT8 runs at full speed"
        if cpu.neon:
            return "NEON without dot product: INT8 works, with a smaller gain over FP32"
        return "ARM without NEON: INT8 runs on scalar code; stay in FP32"
    return f"no known INT8 SIMD for {cpu.architecture}: benchmark INT8 against FP32"


# --------------------------------------------------------------------------- GPU

_CUDA_HEADER = re.compile(r"CUDA Version\s*:\s*([0-9][0-9.]*)")


def parse_nvidia_smi_cuda_version(header: str) -> str | None:
    """The driver's CUDA version from plain ``nvidia-smi`` output, or ``None``."""
    match = _CUDA_HEADER.search(header)
    return match.group(1) if match else None


def parse_nvidia_smi(query_csv: str, header: str | None = None) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=name,driver_version,memory.total`` CSV.

    Expects ``--format=csv,noheader,nounits``: one ``name, driver, MiB`` line per GPU.
    ``[N/A]`` or non-numeric memory becomes ``None``; lines with fewer than three fields are
    skipped. ``header`` is plain ``nvidia-smi`` output, read for the CUDA version.

    Example::

        >>> parse_nvidia_smi("NVIDIA H100 80GB HBM3, 550.54.15, 81559\\n")[0].memory_mib
        81559
    """
    cuda = parse_nvidia_smi_cuda_version(header) if header else None
    gpus: list[GpuInfo] = []
    for line in query_csv.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0]:
            continue
        # Names have no commas in practice, but take the last two fields from the right.
        name = ", ".join(parts[:-2])
        driver = parts[-2] if parts[-2] and not parts[-2].startswith("[") else None
        mem = parts[-1]
        gpus.append(
            GpuInfo(
                index=len(gpus),
                name=name,
                driver_version=driver,
                cuda_version=cuda,
                memory_mib=int(mem) if mem.isdigit() else None,
            )
        )
    return gpus


def gpu_info() -> list[GpuInfo]:
    """NVIDIA GPUs via ``nvidia-smi`` (5 s timeout); an empty list on any failure, never raises.

    Example::

        >>> isinstance(gpu_info(), list)
        True
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = _run(
        [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"]
    )
    if query is None:
        return []
    header = _run([exe])
    try:
        return parse_nvidia_smi(query, header)
    except Exception:  # a diagnostics probe must never take the caller down
        return []


def torch_cuda_info() -> dict[str, Any]:
    """torch's view of CUDA: version, the CUDA it was built with, visible devices.

    Imports torch lazily (seconds) so importing this module stays instant. ``cuda_build`` is
    ``None`` for CPU-only torch wheels.

    Example::

        >>> sorted(torch_cuda_info())  # doctest: +SKIP
        ['cuda_available', 'cuda_build', 'device_count', 'devices', 'torch']
    """
    try:
        import torch
    except ImportError as exc:
        raise missing_dependency(exc, "the PyTorch CUDA report") from exc
    available = bool(torch.cuda.is_available())
    count = int(torch.cuda.device_count()) if available else 0
    return {
        "torch": str(torch.__version__),
        "cuda_build": torch.version.cuda,
        "cuda_available": available,
        "device_count": count,
        "devices": [str(torch.cuda.get_device_name(i)) for i in range(count)],
    }
