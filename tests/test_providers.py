"""Tests for :mod:`edgelstm.runtimes.ort.providers` (registry, names, ``auto`` policy) and
:mod:`edgelstm.runtimes.ort.provider_report` (the report)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
from rich.console import Console

from edgelstm.errors import InvalidInputError, MissingDependencyError
from edgelstm.hardware import GpuInfo
from edgelstm.runtimes.ort import onnxruntime_import
from edgelstm.runtimes.ort import provider_report as report_module
from edgelstm.runtimes.ort.onnxruntime_import import (
    import_onnxruntime,
    installed_onnxruntime_distributions,
)
from edgelstm.runtimes.ort.provider_report import (
    REPORT_SCHEMA,
    print_provider_report,
    probe_provider,
    provider_report,
)
from edgelstm.runtimes.ort.providers import (
    PROVIDERS,
    ProviderSpec,
    available_providers,
    choose_auto,
    explain_auto,
    resolve_provider,
)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"

# --------------------------------------------------------------------------- registry


def test_registry_names_and_invariants() -> None:
    for short in (
        "cpu",
        "cuda",
        "tensorrt",
        "openvino",
        "directml",
        "coreml",
        "rocm",
        "migraphx",
        "qnn",
        "xnnpack",
        "webgpu",
    ):
        assert short in PROVIDERS
    assert PROVIDERS["directml"].ep_name == "DmlExecutionProvider"
    assert PROVIDERS["webgpu"].ep_name == "WebGpuExecutionProvider"
    ep_names = [spec.ep_name for spec in PROVIDERS.values()]
    assert len(set(ep_names)) == len(ep_names)
    for short, spec in PROVIDERS.items():
        assert spec.name == short
        assert spec.ep_name.endswith("ExecutionProvider")
        assert spec.description and spec.install and spec.registered
    # Only the CPU provider has a DynamicQuantizeLSTM kernel.
    assert [s.name for s in PROVIDERS.values() if s.dynamic_quant_lstm] == ["cpu"]
    assert PROVIDERS["cuda"].accelerator and not PROVIDERS["cpu"].accelerator
    assert "edgelstm[gpu]" in PROVIDERS["cuda"].install
    assert "onnxruntime-openvino" in PROVIDERS["openvino"].install
    assert "onnxruntime-directml" in PROVIDERS["directml"].install
    assert "onnxruntime-qnn" in PROVIDERS["qnn"].install


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        PROVIDERS["mine"] = PROVIDERS["cpu"]  # type: ignore[index]


# --------------------------------------------------------------------------- resolve


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cpu", "cpu"),
        ("CUDA", "cuda"),
        (" cuda ", "cuda"),
        ("CUDAExecutionProvider", "cuda"),
        ("cudaexecutionprovider", "cuda"),
        ("TensorRT", "tensorrt"),
        ("trt", "tensorrt"),
        ("dml", "directml"),
        ("DmlExecutionProvider", "directml"),
        ("Dml", "directml"),
        ("OpenVINO", "openvino"),
    ],
)
def test_resolve_provider_accepts_short_full_and_alias(name: str, expected: str) -> None:
    assert resolve_provider(name).name == expected


def test_resolve_provider_unknown_suggests_closest() -> None:
    with pytest.raises(InvalidInputError) as info:
        resolve_provider("cdua")
    message = str(info.value)
    assert "did you mean 'cuda'?" in message
    assert "cpu, cuda, tensorrt" in message


def test_resolve_provider_misspelled_full_name_suggests_short_name() -> None:
    with pytest.raises(InvalidInputError, match="did you mean 'tensorrt'"):
        resolve_provider("TensorRTExecutionProvide")


def test_resolve_provider_nonsense_has_no_suggestion() -> None:
    with pytest.raises(InvalidInputError) as info:
        resolve_provider("zzzz")
    assert "did you mean" not in str(info.value)
    assert "Valid names:" in str(info.value)


def test_resolve_provider_accepts_ort_names_outside_registry() -> None:
    ort = import_onnxruntime()
    registered = {spec.ep_name for spec in PROVIDERS.values()}
    extra = [str(ep) for ep in ort.get_all_providers() if str(ep) not in registered]
    if not extra:
        pytest.skip("this onnxruntime names no provider outside edgelstm's registry")
    spec = resolve_provider(extra[0].upper())
    assert spec.ep_name == extra[0]
    assert not spec.registered and not spec.dynamic_quant_lstm


# --------------------------------------------------------------------------- auto


@pytest.mark.parametrize(
    ("available", "precision", "dq_lstm", "streaming", "expected"),
    [
        ([CPU_EP], "fp32", False, False, "cpu"),
        ([CUDA_EP, CPU_EP], "fp32", False, False, "cuda"),
        ([TRT_EP, CUDA_EP, CPU_EP], "fp32", False, False, "cuda"),
        ([TRT_EP, CUDA_EP, CPU_EP], "fp16", False, False, "cuda"),
        ([TRT_EP, CPU_EP], "fp16", False, False, "cpu"),  # never TensorRT by itself
        ([CPU_EP], "fp16", False, False, "cpu"),
        ([CUDA_EP, CPU_EP], "int8", True, False, "cpu"),
        ([CUDA_EP, CPU_EP], "int8", False, False, "cpu"),
        ([CUDA_EP, CPU_EP], "fp32", True, False, "cpu"),  # the op decides, not the label
        ([CUDA_EP, CPU_EP], "fp32", False, True, "cpu"),
        (["AzureExecutionProvider", CPU_EP], "fp32", False, False, "cpu"),
        (["DmlExecutionProvider", "CoreMLExecutionProvider", CPU_EP], "fp32", False, False, "cpu"),
        (["cuda", "cpu"], "fp32", False, False, "cuda"),  # short names work too
        ([], "fp32", False, False, "cpu"),
    ],
)
def test_choose_auto_matrix(
    available: list[str], precision: str, dq_lstm: bool, streaming: bool, expected: str
) -> None:
    choice = choose_auto(
        available, precision=precision, has_dynamic_quant_lstm=dq_lstm, streaming=streaming
    )
    assert choice == expected


def test_choose_auto_rejects_unknown_precision() -> None:
    with pytest.raises(InvalidInputError, match="fp32, fp16, int8"):
        choose_auto([CPU_EP], precision="bf16")


def test_explain_auto_gives_reason() -> None:
    choice, reason = explain_auto([CUDA_EP, CPU_EP], precision="int8", has_dynamic_quant_lstm=True)
    assert choice == "cpu"
    assert "DynamicQuantizeLSTM" in reason


# --------------------------------------------------------------------------- installed onnxruntime


def test_available_providers_include_cpu() -> None:
    specs = available_providers()
    assert "cpu" in [s.name for s in specs]
    assert all(isinstance(s, ProviderSpec) for s in specs)


def test_available_providers_keep_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = import_onnxruntime()
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["FancyNpuExecutionProvider", CPU_EP]
    )
    specs = available_providers()
    assert [s.name for s in specs] == ["fancynpu", "cpu"]
    assert not specs[0].registered and specs[0].ep_name == "FancyNpuExecutionProvider"


def test_installed_distributions_include_the_imported_one() -> None:
    ort = import_onnxruntime()
    dists = installed_onnxruntime_distributions()
    assert dists, "onnxruntime imports, so some distribution must ship it"
    assert all(name.startswith("onnxruntime") for name, _ in dists)
    assert ort.__version__ in [version for _, version in dists]


def test_missing_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(onnxruntime_import, "installed_onnxruntime_distributions", lambda: [])
    with pytest.raises(MissingDependencyError) as info:
        import_onnxruntime()
    assert "onnxruntime is not installed" in str(info.value)
    assert "edgelstm[cpu]" in str(info.value)
    assert info.value.exit_code == 2


def test_broken_onnxruntime_still_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real distribution metadata stays: installed, but the import fails.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"edgelstm\[cpu\]"):
        import_onnxruntime()
    with pytest.raises(MissingDependencyError):
        provider_report()


def test_conflicting_distributions_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    two = [("onnxruntime", "1.32.0"), ("onnxruntime-gpu", "1.32.0")]
    monkeypatch.setattr(onnxruntime_import, "installed_onnxruntime_distributions", lambda: two)
    monkeypatch.setattr(report_module, "installed_onnxruntime_distributions", lambda: two)
    report = provider_report()
    assert len(report.distributions) == 2
    (warning,) = [w for w in report.warnings if "distributions are installed" in w]
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in warning

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="overwrite each other"):
        import_onnxruntime()


# --------------------------------------------------------------------------- probe


def test_probe_cpu_is_usable() -> None:
    result = probe_provider("cpu")
    assert result.usable, result.detail
    assert result.provider == "cpu"


def test_probe_reports_provider_not_built_in() -> None:
    ort = import_onnxruntime()
    if "CoreMLExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CoreML built in")
    result = probe_provider("coreml")
    assert not result.usable
    assert "not built into this onnxruntime" in result.detail


def test_probe_catches_silent_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = import_onnxruntime()
    if CUDA_EP in ort.get_available_providers():
        pytest.skip("CUDA is built in here; the fallback cannot be simulated this way")
    # Pretend CUDA is built in: the session then quietly runs on CPU, the case to catch.
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, *real])
    result = probe_provider("cuda")
    assert not result.usable
    # The session is created (no "session creation failed"), but on CPU: the fallback is named.
    assert result.detail.startswith(
        f"asked for {CUDA_EP}, ONNX Runtime silently replaced it with {CPU_EP} (silent fallback"
    ), result.detail
    assert "edgelstm[gpu]" in result.detail


# --------------------------------------------------------------------------- report


def test_provider_report_json_is_stable_and_serialisable() -> None:
    ort = import_onnxruntime()
    data = provider_report().to_json()
    json.dumps(data)
    assert data["schema"] == REPORT_SCHEMA == "edgelstm.providers/1"
    assert set(data) == {
        "schema",
        "onnxruntime",
        "providers",
        "auto",
        "auto_reasons",
        "probes",
        "cpu",
        "gpus",
        "warnings",
        "plugins",
    }
    assert data["onnxruntime"]["version"] == ort.__version__
    cpu = next(p for p in data["providers"] if p["name"] == "cpu")
    assert cpu["artifacts"]["dynamic-int8"] == {
        "native": True,
        "note": "native: DynamicQuantizeLSTM and MatMulInteger kernels",
    }
    assert "cpu" in [p["name"] for p in data["providers"]]
    assert set(data["auto"]) == {"fp32", "fp16", "int8", "streaming"}
    assert data["auto"]["int8"] == "cpu"
    assert data["auto"]["streaming"] == "cpu"
    assert data["probes"] == []
    assert "int8_note" in data["cpu"]


def test_provider_report_probes_every_available_provider_but_azure() -> None:
    # The CPU is probed too: its probe proves the install itself runs a session, and it gives
    # this test, on a machine with only the CPU provider, something to check.
    report = provider_report(probe=True)
    expected = [p.name for p in available_providers() if p.name != "azure"]
    assert [r.provider for r in report.probes] == expected
    cpu = next(r for r in report.probes if r.provider == "cpu")
    assert cpu.usable, cpu.detail
    assert "CPUExecutionProvider" in cpu.detail
    data = json.loads(json.dumps(report.to_json()))
    assert {"provider": "cpu", "usable": True, "detail": cpu.detail} in data["probes"]
    console = Console(record=True, width=300, color_system=None)
    print_provider_report(report, console)
    assert "[probe: ok]" in console.export_text()


def test_provider_report_with_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = import_onnxruntime()
    if CUDA_EP in ort.get_available_providers():
        pytest.skip("CUDA is built in here; the failing probe cannot be simulated this way")
    # A CUDA provider that is "built in" but silently falls back (see the test above): without
    # a probe auto picks it, with one the report names the failure and auto stays on CPU.
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, *real])
    monkeypatch.setattr(report_module, "gpu_info", lambda: [])
    assert provider_report().auto["fp32"] == "cuda"
    report = provider_report(probe=True)
    probe = next(p for p in report.probes if p.provider == "cuda")  # openvino may be probed too
    assert (probe.provider, probe.usable) == ("cuda", False)
    assert "silent fallback" in probe.detail
    assert f"cuda: {probe.detail}" in report.warnings
    assert report.auto["fp32"] == "cpu"
    data = json.loads(json.dumps(report.to_json()))
    assert {"provider": "cuda", "usable": False, "detail": probe.detail} in data["probes"]


def test_gpu_without_cuda_provider_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = import_onnxruntime()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU_EP])
    gpu = GpuInfo(0, "NVIDIA L4", "550.54.15", "12.4", 23034)
    monkeypatch.setattr(report_module, "gpu_info", lambda: [gpu])
    report = provider_report()
    assert report.gpus == (gpu,)
    assert any("edgelstm[gpu]" in w and "NVIDIA L4" in w for w in report.warnings)
    assert report.auto["fp32"] == "cpu"


def test_cuda_provider_without_gpu_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = import_onnxruntime()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, CPU_EP])
    monkeypatch.setattr(report_module, "gpu_info", lambda: [])
    report = provider_report()
    assert report.auto["fp32"] == "cuda"
    assert report.auto["int8"] == "cpu"
    assert any("nvidia-smi found no GPU" in w for w in report.warnings)


def test_print_provider_report() -> None:
    console = Console(record=True, width=200, color_system=None)
    gpu = GpuInfo(0, "NVIDIA H100 80GB HBM3", "550.54.15", "12.4", 81559)
    report = replace(provider_report(), gpus=(gpu,), warnings=("look here",))
    print_provider_report(report, console)
    text = console.export_text()
    assert "CPUExecutionProvider" in text
    assert "--provider auto" in text
    assert "NVIDIA H100 80GB HBM3 (81559 MiB; driver 550.54.15, CUDA 12.4)" in text
    assert "warning: look here" in text
