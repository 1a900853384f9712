"""Tests for :mod:`edgelstm.hardware`: parsing captured probe output, and the live probes."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from edgelstm import hardware
from edgelstm.errors import MissingDependencyError
from edgelstm.hardware import (
    CpuInfo,
    cpu_info,
    gpu_info,
    int8_note,
    parse_nvidia_smi,
    parse_nvidia_smi_cuda_version,
    parse_proc_cpuinfo,
    parse_sysctl_cpu,
    torch_cuda_info,
)

# Two hyperthreads of one core each on a 2-core Ice Lake cloud VM (trimmed flags line).
ICELAKE_VNNI = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
siblings\t: 4
core id\t\t: 0
cpu cores\t: 2
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush \
mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc sse4_1 sse4_2 avx f16c \
avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bitalg gfni vaes

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 lm avx avx2 avx512f avx512_vnni

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 lm avx avx2 avx512f avx512_vnni

processor\t: 3
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 lm avx avx2 avx512f avx512_vnni
"""

# Zen 3 cloud VM as seen in this project's CI: AVX2, no AVX-512, no VNNI.
EPYC_AVX2 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu vme sse sse2 ht syscall nx lm sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni vaes

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu vme sse sse2 ht syscall nx lm sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni vaes
"""

SAPPHIRE_RAPIDS_AMX = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 lm avx2 avx512f avx512_vnni avx512_bf16 avx_vnni amx_bf16 avx512_fp16 \
amx_tile amx_int8
"""

ALDER_LAKE_AVX_VNNI = """\
processor\t: 0
model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 lm avx avx2 fma avx_vnni
"""

# AWS Graviton2 (Neoverse-N1): aarch64 kernels print no model name, only part codes.
GRAVITON2 = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""

# Raspberry Pi 4 (Cortex-A72) on a 64-bit OS: NEON but no dot product.
RPI4 = """\
processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

NVIDIA_SMI_HEADER = """\
Tue Mar  4 10:12:01 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""

NVIDIA_SMI_QUERY = """\
NVIDIA H100 80GB HBM3, 550.54.15, 81559
NVIDIA H100 80GB HBM3, 550.54.15, 81559
"""


# --------------------------------------------------------------------------- /proc/cpuinfo


def test_x86_with_avx512_vnni() -> None:
    info = parse_proc_cpuinfo(ICELAKE_VNNI)
    assert info.model == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert info.architecture == "x86_64"
    assert info.logical_cores == 4
    assert info.physical_cores == 2  # two hyperthreads per core
    assert info.flags_known
    assert (info.avx2, info.avx512f, info.avx512_vnni) == (True, True, True)
    assert not info.avx_vnni and not info.amx and not info.neon and not info.asimddp
    assert info.has_vnni and not info.reduce_range_advised
    assert int8_note(info).startswith("VNNI (avx512_vnni)")


def test_x86_avx2_without_vnni_advises_reduce_range() -> None:
    info = parse_proc_cpuinfo(EPYC_AVX2)
    assert info.model == "AMD EPYC"
    assert (info.logical_cores, info.physical_cores) == (2, 2)
    assert info.avx2 and not info.avx512f and not info.has_vnni
    assert info.reduce_range_advised
    note = int8_note(info)
    assert "no VNNI (AVX2)" in note
    assert "reduce_range" in note


def test_x86_amx_and_avx_vnni() -> None:
    spr = parse_proc_cpuinfo(SAPPHIRE_RAPIDS_AMX)
    assert spr.amx and spr.avx512_vnni and spr.avx_vnni
    assert "AMX" in int8_note(spr)

    adl = parse_proc_cpuinfo(ALDER_LAKE_AVX_VNNI)
    assert adl.avx_vnni and not adl.avx512_vnni and not adl.avx512f
    assert adl.has_vnni and not adl.reduce_range_advised
    assert int8_note(adl).startswith("VNNI (avx_vnni)")


def test_alternative_vnni_spelling_counts() -> None:
    info = parse_proc_cpuinfo("processor : 0\nflags : lm avx2 avx512f avx512vnni\n")
    assert info.avx512_vnni


def test_aarch64_with_dot_product() -> None:
    info = parse_proc_cpuinfo(GRAVITON2)
    assert info.architecture == "aarch64"
    assert info.model == "Arm Neoverse-N1"
    assert info.logical_cores == 2
    assert info.physical_cores is None  # ARM kernels print no core ids
    assert info.neon and info.asimddp and not info.i8mm
    assert not info.avx2 and not info.reduce_range_advised
    assert "dot product" in int8_note(info)


def test_aarch64_without_dot_product() -> None:
    info = parse_proc_cpuinfo(RPI4)
    assert info.model == "Arm Cortex-A72"
    assert info.neon and not info.asimddp
    assert "without dot product" in int8_note(info)


def test_architecture_argument_overrides_guess() -> None:
    info = parse_proc_cpuinfo(GRAVITON2, architecture="arm64")
    assert info.architecture == "arm64"
    assert info.is_arm and not info.is_x86


def test_empty_cpuinfo_means_flags_unknown() -> None:
    info = parse_proc_cpuinfo("")
    assert not info.flags_known
    assert info.logical_cores is None
    assert not info.reduce_range_advised  # unknown flags advise nothing
    assert "unknown" in int8_note(info)


def test_sysctl_apple_silicon() -> None:
    info = parse_sysctl_cpu(
        {
            "machdep.cpu.brand_string": "Apple M2",
            "hw.logicalcpu": "8",
            "hw.physicalcpu": "8",
            "hw.optional.arm.FEAT_DotProd": "1",
            "hw.optional.arm.FEAT_I8MM": "1",
        },
        architecture="arm64",
    )
    assert info.model == "Apple M2"
    assert (info.logical_cores, info.physical_cores) == (8, 8)
    assert info.neon and info.asimddp and info.i8mm


def test_sysctl_intel_mac() -> None:
    info = parse_sysctl_cpu(
        {
            "machdep.cpu.brand_string": "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",
            "hw.logicalcpu": "16",
            "hw.physicalcpu": "8",
            "machdep.cpu.features": "FPU SSE SSE2 SSE4.1 AVX1.0",
            "machdep.cpu.leaf7_features": "AVX2 BMI1 BMI2",
        },
        architecture="x86_64",
    )
    assert info.avx2 and not info.avx512f and info.reduce_range_advised


def test_int8_note_for_unknown_architecture() -> None:
    info = CpuInfo("RISC-V", "riscv64", 4, flags_known=True)
    assert "riscv64" in int8_note(info)


def test_cpu_info_on_this_machine() -> None:
    info = cpu_info()
    assert info.logical_cores is not None and info.logical_cores >= 1
    assert info.usable_cores is None or info.usable_cores >= 1
    data = info.to_json()
    json.dumps(data)
    assert "flags" not in data
    assert data["int8_note"] == int8_note(info)
    if sys.platform.startswith("linux"):
        assert info.flags_known


# --------------------------------------------------------------------------- nvidia-smi


def test_parse_nvidia_smi_two_gpus_with_header() -> None:
    gpus = parse_nvidia_smi(NVIDIA_SMI_QUERY, NVIDIA_SMI_HEADER)
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert gpus[0].driver_version == "550.54.15"
    assert gpus[0].cuda_version == "12.4"
    assert gpus[0].memory_mib == 81559
    json.dumps(gpus[1].to_json())


def test_parse_nvidia_smi_unknown_fields_and_junk() -> None:
    text = "NVIDIA GH200 480GB, 560.35.03, [N/A]\n\nNo devices were found\n"
    gpus = parse_nvidia_smi(text)
    assert len(gpus) == 1
    assert gpus[0].memory_mib is None
    assert gpus[0].cuda_version is None  # no header given


def test_parse_cuda_version_absent() -> None:
    assert parse_nvidia_smi_cuda_version("NVIDIA-SMI has failed") is None
    assert parse_nvidia_smi_cuda_version(NVIDIA_SMI_HEADER) == "12.4"


def _fake_nvidia_smi(folder: Path, body: str) -> None:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _prepend_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    # Ahead of any real nvidia-smi; the rest of PATH keeps `cat` and `sleep` reachable.
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as nvidia-smi")
def test_gpu_info_runs_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "query.txt").write_text(NVIDIA_SMI_QUERY)
    (tmp_path / "header.txt").write_text(NVIDIA_SMI_HEADER)
    _fake_nvidia_smi(
        tmp_path,
        f'case "$1" in --query-gpu=*) cat {tmp_path}/query.txt;; *) cat {tmp_path}/header.txt;;'
        " esac",
    )
    _prepend_path(monkeypatch, tmp_path)
    gpus = gpu_info()
    assert [(g.name, g.cuda_version) for g in gpus] == [("NVIDIA H100 80GB HBM3", "12.4")] * 2


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as nvidia-smi")
def test_gpu_info_failing_nvidia_smi_gives_empty_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    _prepend_path(monkeypatch, tmp_path)
    assert gpu_info() == []


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell script as nvidia-smi")
def test_gpu_info_hanging_nvidia_smi_gives_empty_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(tmp_path, "exec sleep 5")
    _prepend_path(monkeypatch, tmp_path)
    monkeypatch.setattr(hardware, "PROBE_TIMEOUT_S", 0.2)
    assert gpu_info() == []


def test_gpu_info_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_info() == []


# --------------------------------------------------------------------------- torch


def test_torch_cuda_info_is_consistent() -> None:
    info = torch_cuda_info()
    assert set(info) == {"torch", "cuda_build", "cuda_available", "device_count", "devices"}
    assert info["device_count"] == len(info["devices"])
    if not info["cuda_available"]:
        assert info["device_count"] == 0
    json.dumps(info)


def test_torch_cuda_info_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match="torch"):
        torch_cuda_info()
