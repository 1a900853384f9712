"""``edgelstm providers``: what this machine's ONNX Runtime can run, and how to show it.

:func:`provider_report` collects the install (distributions, version, device), the available
providers from the registry in :mod:`edgelstm.runtimes.ort.providers`, what ``--provider auto``
picks per precision and why, the CPU's INT8 instruction sets and the GPUs nvidia-smi sees,
optionally probing each provider with a one-node session (:func:`probe_provider`, which
opens it exactly as ``run`` would). :meth:`ProviderReport.to_json` is the stable ``--json``
form; :func:`render_provider_report` the rich tables.

Example::

    >>> report = provider_report()
    >>> report.to_json()["schema"]
    'edgelstm.providers/1'
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from edgelstm.errors import InvalidInputError, ProviderUnavailableError
from edgelstm.hardware import CpuInfo, GpuInfo, cpu_info, gpu_info
from edgelstm.runtimes.ort.onnxruntime_import import (
    conflict_warning,
    import_onnxruntime,
    installed_onnxruntime_distributions,
)
from edgelstm.runtimes.ort.plugin_eps import PluginPackage, openvino_device_ids, plugin_packages
from edgelstm.runtimes.ort.providers import (
    ARTIFACT_MODES,
    ProviderSpec,
    artifact_support,
    available_providers,
    explain_auto,
    resolve_provider,
    split_device,
)
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import SessionConfig, default_provider_options

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "REPORT_SCHEMA",
    "ProbeResult",
    "ProviderReport",
    "print_provider_report",
    "probe_provider",
    "provider_report",
    "render_provider_report",
]

#: ``schema`` value of :meth:`ProviderReport.to_json`; bump on incompatible changes.
REPORT_SCHEMA = "edgelstm.providers/1"


@dataclass(frozen=True)
class ProbeResult:
    """Whether a session asked for ``provider`` actually placed a node on it."""

    provider: str
    usable: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {"provider": self.provider, "usable": self.usable, "detail": self.detail}


def probe_provider(name: str) -> ProbeResult:
    """Open a one-node model on ``name`` (``NAME`` or ``NAME:DEVICE``), strictly, and report.

    Catches the silent fallback: ONNX Runtime asked for CUDA on a machine without the CUDA
    libraries logs a warning and runs everything on CPU. The session is opened exactly as
    ``run`` opens one (:func:`~edgelstm.runtimes.ort.session.open_session`: built-in or plugin
    provider, device choice, placement), so a probe that passes means ``run`` works. Never
    raises for a provider that fails; the reason goes into :attr:`ProbeResult.detail`.
    TensorRT probes can take seconds.

    Example::

        >>> probe_provider("cpu").usable
        True
    """
    from onnx import TensorProto, helper, save  # only a probe builds a model

    base, device = split_device(name)
    spec = resolve_provider(base)
    label = spec.name if device is None else f"{spec.name}:{device}"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "edgelstm_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)  # loadable by older onnxruntime too
    with tempfile.TemporaryDirectory(prefix="edgelstm-probe-") as folder:
        path = Path(folder) / "probe.onnx"
        save(model, str(path))
        try:
            opened = open_session(path, SessionConfig(providers=(label,)))
        except ProviderUnavailableError as exc:
            detail = "; ".join(r.removeprefix(f"{spec.name}: ") for r in exc.reasons)
            return ProbeResult(label, False, detail)
        except InvalidInputError as exc:  # e.g. a device the provider does not offer
            return ProbeResult(label, False, str(exc))
        used = ", ".join(str(p) for p in opened.session.get_providers())
        where = f" on {opened.device}" if opened.device else ""
        return ProbeResult(label, True, f"session providers{where}: {used}")


@dataclass(frozen=True)
class ProviderReport:
    """Everything ``edgelstm providers`` shows: install, providers, auto choices, hardware."""

    onnxruntime_version: str
    onnxruntime_device: str
    distributions: tuple[tuple[str, str], ...]
    providers: tuple[ProviderSpec, ...]
    auto: Mapping[str, str]
    auto_reasons: Mapping[str, str]
    cpu: CpuInfo
    gpus: tuple[GpuInfo, ...]
    probes: tuple[ProbeResult, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    #: short provider name -> the devices it offers here (OpenVINO's names, plugin devices,
    #: GPUs); providers absent from the mapping choose no device.
    devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    plugins: tuple[PluginPackage, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; keys are stable under schema ``edgelstm.providers/1``.

        ``auto`` maps ``fp32``, ``fp16``, ``int8`` (an INT8 graph with ``DynamicQuantizeLSTM``)
        and ``streaming`` (fp32, one frame per call) to a short provider name.
        """
        return {
            "schema": REPORT_SCHEMA,
            "onnxruntime": {
                "version": self.onnxruntime_version,
                "device": self.onnxruntime_device,
                "distributions": [{"name": n, "version": v} for n, v in self.distributions],
            },
            "providers": [
                {
                    **p.to_json(),
                    "devices": list(self.devices.get(p.name, ())),
                    "options": default_provider_options(p),
                    "artifacts": {
                        mode: {"native": native, "note": note}
                        for mode, (native, note) in artifact_support(p.name).items()
                    },
                }
                for p in self.providers
            ],
            "plugins": [p.to_json() for p in self.plugins],
            "auto": dict(self.auto),
            "auto_reasons": dict(self.auto_reasons),
            "probes": [p.to_json() for p in self.probes],
            "cpu": self.cpu.to_json(),
            "gpus": [g.to_json() for g in self.gpus],
            "warnings": list(self.warnings),
        }


def _hardware_warnings(providers: Iterable[ProviderSpec], gpus: Sequence[GpuInfo]) -> list[str]:
    names = {p.name for p in providers}
    warnings: list[str] = []
    if gpus and "cuda" not in names:
        warnings.append(
            f"nvidia-smi sees {len(gpus)} GPU(s) ({gpus[0].name}) but this onnxruntime has no "
            "CUDAExecutionProvider: pip uninstall -y onnxruntime && pip install 'edgelstm[gpu]'"
        )
    if "cuda" in names and not gpus:
        warnings.append(
            "CUDAExecutionProvider is built in but nvidia-smi found no GPU: sessions asking for "
            "cuda will fall back to CPU (check the driver, or run with probe to confirm)"
        )
    return warnings


def provider_report(*, probe: bool = False) -> ProviderReport:
    """Collect the provider report for this machine.

    With ``probe=True`` every available provider except Azure (a remote endpoint, not a
    device) gets a one-node session (:func:`probe_provider`), the CPU included: it proves the
    install itself runs. The ``auto`` choices then only count providers that passed.

    Raises:
        MissingDependencyError: onnxruntime is not installed (the message names the extra).

    Example::

        >>> report = provider_report()
        >>> report.to_json()["schema"]
        'edgelstm.providers/1'
    """
    ort = import_onnxruntime()
    dists = installed_onnxruntime_distributions()
    plugins = plugin_packages()
    built_in = available_providers()
    # A provider only a plugin brings is listed when the plugin offers a device here; the
    # others appear in the plugin table with the reason.
    from_plugins = [
        resolve_provider(ep)
        for plugin in plugins
        for ep in plugin.ep_names
        if any(d.ep_name == ep for d in plugin.devices) and ep not in {p.ep_name for p in built_in}
    ]
    providers = tuple(built_in + from_plugins)
    gpus = tuple(gpu_info())
    cpu = cpu_info()
    devices = _devices(ort, providers, plugins, gpus)
    devices["cpu"] = (f"CPU: {cpu.model}",)
    warnings: list[str] = []
    conflict = conflict_warning(dists)
    if conflict:
        warnings.append(conflict)
    warnings.extend(_hardware_warnings(providers, gpus))

    probes: tuple[ProbeResult, ...] = ()
    usable = [p.ep_name for p in providers]
    if probe:
        probes = tuple(probe_provider(p.ep_name) for p in providers if p.name != "azure")
        failed = {r.provider for r in probes if not r.usable}
        usable = [p.ep_name for p in providers if p.name not in failed]
        warnings.extend(f"{r.provider}: {r.detail}" for r in probes if not r.usable)

    cases: dict[str, dict[str, Any]] = {
        "fp32": {"precision": "fp32"},
        "fp16": {"precision": "fp16"},
        "int8": {"precision": "int8", "has_dynamic_quant_lstm": True},
        "streaming": {"precision": "fp32", "streaming": True},
    }
    explained = {key: explain_auto(usable, **kwargs) for key, kwargs in cases.items()}
    return ProviderReport(
        onnxruntime_version=str(ort.__version__),
        onnxruntime_device=str(ort.get_device()),
        distributions=tuple(dists),
        providers=providers,
        auto=MappingProxyType({k: v[0] for k, v in explained.items()}),
        auto_reasons=MappingProxyType({k: v[1] for k, v in explained.items()}),
        cpu=cpu,
        gpus=gpus,
        probes=probes,
        warnings=tuple(warnings),
        devices=MappingProxyType(devices),
        plugins=plugins,
    )


def _devices(
    ort: Any,
    providers: Sequence[ProviderSpec],
    plugins: Sequence[PluginPackage],
    gpus: Sequence[GpuInfo],
) -> dict[str, tuple[str, ...]]:
    """What each provider can run on here, as ``--provider NAME:DEVICE`` would name it."""
    found: dict[str, tuple[str, ...]] = {}
    names = {p.name for p in providers}
    if "openvino" in names:
        found["openvino"] = tuple(openvino_device_ids(ort))
    for name in ("cuda", "tensorrt"):
        if name in names:
            found[name] = tuple(f"GPU {g.index}: {g.name}" for g in gpus)
    for plugin in plugins:
        for device in plugin.devices:
            short = resolve_provider(device.ep_name).name
            found[short] = (*found.get(short, ()), device.label)
    return found


def render_provider_report(report: ProviderReport) -> list[RenderableType]:
    """Rich renderables for the report, in print order (header, providers, auto, hardware)."""
    from rich.text import Text

    dists = ", ".join(f"{n} {v}" for n, v in report.distributions) or "unknown distribution"
    items: list[RenderableType] = [
        Text.assemble(
            ("onnxruntime ", "bold"),
            f"{report.onnxruntime_version} ({dists}; device {report.onnxruntime_device})",
        ),
        _providers_table(report),
    ]
    if report.plugins:
        items.append(_plugins_table(report.plugins))
    items.append(_artifacts_table(report.providers))
    items.append(_auto_table(report))
    items.append(_hardware_table(report.cpu, report.gpus))
    items.extend(Text(f"warning: {w}", style="yellow") for w in report.warnings)
    return items


def _providers_table(report: ProviderReport) -> RenderableType:
    """One row per provider: names, kind, devices, and notes (probe outcome, options)."""
    from rich.table import Table
    from rich.text import Text

    probes = {p.provider: p for p in report.probes}
    table = Table(title="Execution providers (ONNX Runtime priority order)", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("ONNX Runtime name")
    table.add_column("kind")
    table.add_column("devices")
    table.add_column("notes")
    for spec in report.providers:
        probe = probes.get(spec.name)
        note = spec.description
        if probe is not None:
            note += f" [probe: {'ok' if probe.usable else 'FAILED'}]"
        options = default_provider_options(spec)
        if options:
            note += "; options: " + ", ".join(f"{k}={v}" for k, v in options.items())
        devices = report.devices.get(spec.name)
        table.add_row(
            spec.name,
            spec.ep_name,
            "accelerator" if spec.accelerator else "host",
            "default" if devices is None else ", ".join(devices) or "none found",
            Text(note),  # plain text: rich would read "[probe: ok]" as markup and drop it
        )
    return table


def _plugins_table(plugins: Sequence[PluginPackage]) -> RenderableType:
    """The installed plugin EP packages and whether each is usable here."""
    from rich.table import Table

    table = Table(title="Plugin execution providers (onnxruntime-ep-*)", title_justify="left")
    table.add_column("package", style="bold")
    table.add_column("provides")
    table.add_column("status")
    for plugin in plugins:
        table.add_row(
            f"{plugin.distribution} {plugin.version}",
            ", ".join(plugin.ep_names) or "?",
            plugin.status,
        )
    return table


def _artifacts_table(providers: Sequence[ProviderSpec]) -> RenderableType:
    """How each ``edgelstm quantize`` artifact runs on each provider edgelstm knows about."""
    from rich.table import Table

    table = Table(
        title="Artifacts per provider (edgelstm quantize --mode; * = runs natively)",
        title_justify="left",
    )
    table.add_column("provider", style="bold")
    for mode in ARTIFACT_MODES:
        table.add_column(mode)
    for spec in providers:
        support = artifact_support(spec.name)
        if support:
            table.add_row(
                spec.name,
                *(("* " if support[m][0] else "") + support[m][1] for m in ARTIFACT_MODES),
            )
    return table


def _auto_table(report: ProviderReport) -> RenderableType:
    """What ``--provider auto`` picks per kind of model, and why."""
    from rich.table import Table

    table = Table(title="--provider auto", title_justify="left")
    table.add_column("model")
    table.add_column("provider", style="bold")
    table.add_column("why")
    for key, choice in report.auto.items():
        table.add_row(key, choice, report.auto_reasons.get(key, ""))
    return table


def _hardware_table(cpu: CpuInfo, gpus: Sequence[GpuInfo]) -> RenderableType:
    """The CPU (cores, INT8 instruction sets) and the GPUs nvidia-smi sees."""
    from rich.table import Table

    isa = [
        n
        for n in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "neon", "asimddp", "i8mm")
        if getattr(cpu, n)
    ]
    table = Table(title="Hardware", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    cores = f"{cpu.logical_cores} logical"
    if cpu.physical_cores is not None:
        cores += f", {cpu.physical_cores} physical"
    if cpu.usable_cores is not None and cpu.usable_cores != cpu.logical_cores:
        cores += f", {cpu.usable_cores} usable by this process"
    table.add_row("CPU", f"{cpu.model} ({cpu.architecture}; {cores})")
    table.add_row("INT8 ISA", ", ".join(isa) if cpu.flags_known else "unknown")
    table.add_row("INT8 note", cpu.to_json()["int8_note"])
    for gpu in gpus:
        mem = f"{gpu.memory_mib} MiB" if gpu.memory_mib is not None else "memory unknown"
        driver = f"driver {gpu.driver_version or '?'}, CUDA {gpu.cuda_version or '?'}"
        table.add_row(f"GPU {gpu.index}", f"{gpu.name} ({mem}; {driver})")
    if not gpus:
        table.add_row("GPU", "none found by nvidia-smi")
    return table


def print_provider_report(report: ProviderReport, console: Console) -> None:
    """Print :func:`render_provider_report` to ``console`` (the CLI passes its own)."""
    for item in render_provider_report(report):
        console.print(item)
