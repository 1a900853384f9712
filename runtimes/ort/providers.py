"""ONNX Runtime execution providers: the registry, name resolution, ``auto`` policy, placement.

One place knows every provider edgelstm can name: its short name (``cuda``), ONNX Runtime's
name (``CUDAExecutionProvider``), which install provides it, and whether it can run the
``DynamicQuantizeLSTM`` kernel that makes INT8 LSTMs fast (only the CPU provider can).
``edgelstm providers`` prints :func:`edgelstm.runtimes.ort.provider_report.provider_report`.

onnxruntime is imported lazily, through
:func:`~edgelstm.runtimes.ort.onnxruntime_import.import_onnxruntime`: importing this module
costs nothing. Whether a provider really runs here is a probe, a layer up
(:func:`edgelstm.runtimes.ort.provider_report.probe_provider`), since it opens a session.

Example::

    >>> from edgelstm.runtimes.ort.providers import resolve_provider, choose_auto
    >>> resolve_provider("CUDA").ep_name
    'CUDAExecutionProvider'
    >>> choose_auto(["CUDAExecutionProvider", "CPUExecutionProvider"], precision="int8",
    ...             has_dynamic_quant_lstm=True)
    'cpu'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from edgelstm.errors import InvalidInputError, MissingDependencyError
from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime
from edgelstm.runtimes.ort.plugin_eps import plugin_packages

__all__ = [
    "ARTIFACT_MODES",
    "PROVIDERS",
    "ProviderSpec",
    "artifact_support",
    "assigned_ops",
    "available_providers",
    "choose_auto",
    "explain_auto",
    "node_placement",
    "resolve_provider",
    "short_name",
    "split_device",
]

#: Precisions :func:`choose_auto` understands (the ones ``edgelstm quantize`` produces).
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ProviderSpec:
    """What edgelstm knows about one ONNX Runtime execution provider.

    ``accelerator`` marks providers that run on a GPU/NPU rather than host cores;
    ``dynamic_quant_lstm`` marks providers with a ``DynamicQuantizeLSTM`` kernel (only CPU:
    elsewhere an INT8 LSTM graph fails to load or falls back node by node to the CPU).
    ``registered`` is False for names ONNX Runtime reports that this registry does not know.
    """

    name: str
    ep_name: str
    description: str
    install: str
    accelerator: bool = False
    dynamic_quant_lstm: bool = False
    registered: bool = True

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "name": self.name,
            "ep_name": self.ep_name,
            "description": self.description,
            "install": self.install,
            "accelerator": self.accelerator,
            "dynamic_quant_lstm": self.dynamic_quant_lstm,
            "registered": self.registered,
        }


def _spec(
    name: str, ep: str, description: str, install: str, *, accelerator: bool = False
) -> ProviderSpec:
    return ProviderSpec(name, ep, description, install, accelerator, dynamic_quant_lstm=False)


_REGISTRY: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        "cpu",
        "CPUExecutionProvider",
        "host CPU (MLAS kernels); the only provider with DynamicQuantizeLSTM (INT8 LSTM)",
        "pip install 'edgelstm[cpu]' (the onnxruntime wheel); built into every build",
        accelerator=False,
        dynamic_quant_lstm=True,
    ),
    _spec(
        "cuda",
        "CUDAExecutionProvider",
        "NVIDIA GPU through CUDA/cuDNN",
        "pip install 'edgelstm[gpu]' (onnxruntime-gpu, instead of onnxruntime) + NVIDIA driver, "
        "CUDA 12/13 and cuDNN 9 matching the onnxruntime-gpu build",
        accelerator=True,
    ),
    _spec(
        "tensorrt",
        "TensorrtExecutionProvider",
        "NVIDIA GPU through TensorRT engines (slow first build, parse limits)",
        "pip install 'edgelstm[gpu]' + TensorRT libraries matching the onnxruntime-gpu build",
        accelerator=True,
    ),
    _spec(
        "openvino",
        "OpenVINOExecutionProvider",
        "Intel CPU, integrated GPU or NPU through OpenVINO (choose one: openvino:GPU)",
        "pip install 'edgelstm[openvino]' (onnxruntime-openvino, instead of onnxruntime), or "
        "the plugin beside onnxruntime >= 1.23: pip install onnxruntime-ep-openvino (Intel "
        "hardware only)",
        accelerator=True,
    ),
    _spec(
        "directml",
        "DmlExecutionProvider",
        "any DirectX 12 GPU on Windows through DirectML",
        "pip install onnxruntime-directml (Windows, instead of onnxruntime)",
        accelerator=True,
    ),
    _spec(
        "coreml",
        "CoreMLExecutionProvider",
        "Apple GPU / Neural Engine through Core ML",
        "macOS: included in the standard onnxruntime wheel",
        accelerator=True,
    ),
    _spec(
        "rocm",
        "ROCMExecutionProvider",
        "AMD GPU through ROCm (absent from current ONNX Runtime releases; use migraphx)",
        "older AMD ROCm builds of onnxruntime only",
        accelerator=True,
    ),
    _spec(
        "migraphx",
        "MIGraphXExecutionProvider",
        "AMD GPU through MIGraphX",
        "AMD's ROCm build of onnxruntime (see AMD's ROCm install docs)",
        accelerator=True,
    ),
    _spec(
        "qnn",
        "QNNExecutionProvider",
        "Qualcomm Snapdragon NPU (HTP) through the QNN SDK",
        "pip install onnxruntime-qnn (Windows on ARM); Android packages",
        accelerator=True,
    ),
    _spec(
        "xnnpack",
        "XnnpackExecutionProvider",
        "ARM/x86 CPU kernels from XNNPACK (mobile, float only)",
        "ONNX Runtime Android/iOS packages, or a source build with --use_xnnpack",
    ),
    _spec(
        "webgpu",
        "WebGpuExecutionProvider",
        "GPU through WebGPU (browsers; native Dawn builds)",
        "onnxruntime-web in browsers, or a source build with --use_webgpu",
        accelerator=True,
    ),
    _spec(
        "dnnl",
        "DnnlExecutionProvider",
        "Intel oneDNN CPU kernels",
        "a source build with --use_dnnl",
    ),
    _spec(
        "acl",
        "ACLExecutionProvider",
        "Arm Compute Library CPU kernels (Cortex-A, Neoverse)",
        "a source build with --use_acl",
    ),
    _spec(
        "armnn",
        "ArmNNExecutionProvider",
        "Arm NN (Cortex-A CPUs, Mali GPUs)",
        "a source build with --use_armnn (older releases)",
        accelerator=True,
    ),
    _spec(
        "cann",
        "CANNExecutionProvider",
        "Huawei Ascend NPU through CANN",
        "pip install onnxruntime-cann + the Ascend CANN toolkit",
        accelerator=True,
    ),
    _spec(
        "nnapi",
        "NnapiExecutionProvider",
        "Android Neural Networks API (phone GPU/DSP/NPU)",
        "the onnxruntime-android package (Android only)",
        accelerator=True,
    ),
    _spec(
        "vitisai",
        "VitisAIExecutionProvider",
        "AMD Ryzen AI NPU / Xilinx FPGAs through Vitis AI",
        "the onnxruntime build shipped with AMD's Ryzen AI software",
        accelerator=True,
    ),
    _spec(
        "azure",
        "AzureExecutionProvider",
        "calls a remote Azure endpoint; not a local device (never chosen by auto)",
        "included in the standard onnxruntime wheel",
    ),
)

#: The artifacts ``edgelstm quantize`` writes, by mode.
ARTIFACT_MODES = ("fp32", "dynamic-int8", "static-int8", "fp16")

# How each artifact runs on each provider: (native?, what happens). "measured" rows were
# checked node by node with ONNX Runtime's placement report (1.32 CPU; onnxruntime-openvino
# 1.24.1 on a CPU device); the CUDA/TensorRT rows follow their operator documentation.
_ARTIFACT_SUPPORT: Mapping[str, Mapping[str, tuple[bool, str]]] = MappingProxyType(
    {
        "cpu": {
            "fp32": (True, "native"),
            "dynamic-int8": (True, "native: DynamicQuantizeLSTM and MatMulInteger kernels"),
            "static-int8": (True, "runs; the LSTM stays float between Q/DQ pairs"),
            "fp16": (False, "runs the LSTM in FP32 between inserted Casts: no speed-up"),
        },
        "openvino": {
            "fp32": (True, "native: the whole graph is one OpenVINO subgraph (measured)"),
            "dynamic-int8": (
                False,
                "partial: DynamicQuantizeLSTM stays on the CPU provider, copies each call "
                "(measured)",
            ),
            "static-int8": (True, "native: every node on OpenVINO (measured)"),
            "fp16": (True, "native: every node on OpenVINO (measured)"),
        },
        "cuda": {
            "fp32": (True, "native (cuDNN LSTM)"),
            "dynamic-int8": (False, "partial: DynamicQuantizeLSTM has only a CPU kernel"),
            "static-int8": (True, "runs; Q/DQ on the GPU, the LSTM stays float"),
            "fp16": (True, "native (cuDNN FP16)"),
        },
        "tensorrt": {
            "fp32": (True, "native"),
            "dynamic-int8": (False, "cannot parse DynamicQuantizeLSTM: those nodes go to CUDA/CPU"),
            "static-int8": (True, "native: explicit Q/DQ quantization"),
            "fp16": (True, "native"),
        },
    }
)


def artifact_support(provider: str) -> dict[str, tuple[bool, str]]:
    """Artifact mode → (runs natively, what happens) on ``provider``; empty when unknown.

    Example::

        >>> artifact_support("openvino")["dynamic-int8"][0]
        False
    """
    return dict(_ARTIFACT_SUPPORT.get(short_name(provider), {}))


#: Short name → :class:`ProviderSpec`, in preference/display order. Read-only.
PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType({s.name: s for s in _REGISTRY})

# Extra spellings people type; resolved case-insensitively like everything else.
_ALIASES: Mapping[str, str] = MappingProxyType(
    {"trt": "tensorrt", "dml": "directml", "onednn": "dnnl", "ov": "openvino"}
)
_BY_EP: Mapping[str, ProviderSpec] = MappingProxyType({s.ep_name.lower(): s for s in _REGISTRY})
_SUFFIX = "executionprovider"


def _generic_spec(ep_name: str) -> ProviderSpec:
    """Spec for an ONNX Runtime provider name this registry does not know."""
    short = ep_name[: -len(_SUFFIX)] if ep_name.lower().endswith(_SUFFIX) else ep_name
    return ProviderSpec(
        name=short.lower(),
        ep_name=ep_name,
        description="reported by ONNX Runtime; not in edgelstm's registry",
        install="see https://onnxruntime.ai/docs/execution-providers/",
        registered=False,
    )


# --------------------------------------------------------------------------- names


def resolve_provider(name: str) -> ProviderSpec:
    """Look up a provider by short name, alias or ONNX Runtime name, case-insensitively.

    ``"cuda"``, ``"CUDA"`` and ``"CUDAExecutionProvider"`` give the same spec. A full
    ``...ExecutionProvider`` name outside the registry is accepted when the installed
    onnxruntime knows it (``get_all_providers()``), as a generic spec.

    Raises:
        InvalidInputError: unknown name; the message lists the valid names and the closest one.

    Example::

        >>> resolve_provider("trt").ep_name
        'TensorrtExecutionProvider'
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in PROVIDERS:
        return PROVIDERS[key]
    for candidate in (key, key + _SUFFIX):
        if candidate in _BY_EP:
            return _BY_EP[candidate]
    plugin = _plugin_spec(key)
    if plugin is not None:
        return plugin
    if key.endswith(_SUFFIX):
        try:
            all_eps = list(import_onnxruntime().get_all_providers())
        except MissingDependencyError:
            all_eps = []
        for ep in all_eps:
            if str(ep).lower() == key:
                return _generic_spec(str(ep))
    import difflib

    choices = [*PROVIDERS, *_ALIASES, *_BY_EP]
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    hint = ""
    if close:
        match = close[0]
        suggestion = _BY_EP[match].name if match in _BY_EP else _ALIASES.get(match, match)
        hint = f"; did you mean {suggestion!r}?"
    raise InvalidInputError(
        f"unknown execution provider {name!r}{hint} Valid names: {', '.join(PROVIDERS)} "
        "(or ONNX Runtime's full names, e.g. CUDAExecutionProvider)"
    )


def _plugin_spec(key: str) -> ProviderSpec | None:
    """A spec for a provider that only an installed plugin EP package brings, by name."""
    try:
        packages = plugin_packages()
    except MissingDependencyError:
        return None
    for package in packages:
        for ep in package.ep_names:
            if key in {ep.lower(), ep.lower().removesuffix(_SUFFIX)}:
                return replace(
                    _generic_spec(ep),
                    description=f"plugin execution provider from {package.distribution}",
                    install=f"pip install {package.distribution}",
                )
    return None


def split_device(text: str) -> tuple[str, str | None]:
    """``"openvino:GPU"`` → ``("openvino", "GPU")``; ``"cpu"`` → ``("cpu", None)``.

    The part after the first colon picks one of the provider's devices: OpenVINO's device
    names (``CPU``, ``GPU``, ``GPU.1``, ``NPU``) or a plugin EP's device kind or index.
    """
    name, sep, device = text.strip().partition(":")
    if sep and not device.strip():
        raise InvalidInputError(
            f"--provider {text!r} ends with ':'; give a device after it (e.g. openvino:GPU) or "
            "leave the colon out"
        )
    return name.strip(), device.strip() or None


def _spec_for_ep(ep_name: str) -> ProviderSpec:
    return _BY_EP.get(ep_name.lower()) or _generic_spec(ep_name)


def available_providers() -> list[ProviderSpec]:
    """Specs for the providers compiled into the installed onnxruntime, in its priority order.

    "Available" means built in, not usable: onnxruntime-gpu lists CUDA even when the CUDA or
    cuDNN libraries are missing, and a session asked for it then quietly runs on CPU. Use
    :func:`edgelstm.runtimes.ort.provider_report.probe_provider` to find out.

    Example::

        >>> "cpu" in [p.name for p in available_providers()]
        True
    """
    ort = import_onnxruntime()
    return [_spec_for_ep(str(ep)) for ep in ort.get_available_providers()]


# --------------------------------------------------------------------------- auto


def explain_auto(
    available: Sequence[str],
    *,
    precision: str = "fp32",
    has_dynamic_quant_lstm: bool = False,
    streaming: bool = False,
) -> tuple[str, str]:
    """:func:`choose_auto` plus the one-line reason for the choice (for logs and reports)."""
    if precision not in PRECISIONS:
        raise InvalidInputError(
            f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}"
        )
    names = {short_name(a) for a in available}
    if has_dynamic_quant_lstm:
        return "cpu", "DynamicQuantizeLSTM has only a CPU kernel"
    if precision == "int8":
        return "cpu", "edgelstm's INT8 graphs target the CPU provider's INT8 kernels"
    if streaming:
        return "cpu", "per-call overhead dominates one frame (53 µs CPU vs 174-268 µs CUDA)"
    if "cuda" in names:
        return "cuda", f"{precision} on an NVIDIA GPU; benchmark batch 1 against cpu"
    reason = (
        "no CUDA provider; FP16 on CPU runs the LSTM in FP32 between Casts"
        if precision == "fp16"
        else "no usable CUDA provider"
    )
    return "cpu", reason


def choose_auto(
    available: Sequence[str],
    *,
    precision: str = "fp32",
    has_dynamic_quant_lstm: bool = False,
    streaming: bool = False,
) -> str:
    """The short provider name ``--provider auto`` means, as a pure function of its inputs.

    ``available`` holds ONNX Runtime or short provider names (``get_available_providers()``).
    The policy, in order:

    1. A graph with ``DynamicQuantizeLSTM``, or any INT8 model → ``cpu``: the INT8 LSTM
       kernel exists only there (measured: 0.24 ms vs 0.54 ms FP32 on one CPU core).
    2. ``streaming`` (one frame per call) → ``cpu``: per-call overhead dominates; measured on
       an H200 host, a frame took 53 µs on ONNX Runtime CPU vs 174-268 µs on ONNX Runtime CUDA.
    3. fp32/fp16 → ``cuda`` when available, else ``cpu``. TensorRT is never picked
       automatically: engines take minutes to build and reject some graphs; ask for it.
       FP16 on the CPU provider runs the LSTM in FP32 between Casts (smaller file, no speed).

    This is a guess from availability, not a measurement. At batch 1 the CPU also won whole
    sequences (0.81 ms vs 2.3-3.3 ms plain ``run`` on ONNX Runtime CUDA, 0.84 ms with IO
    binding and CUDA graphs); CUDA only wins at large batches (batch 64: 2.3 ms vs 3.7 ms on 16
    CPU threads). ``edgelstm benchmark`` measures the real answer for a given model and host.

    Example::

        >>> choose_auto(["CUDAExecutionProvider", "CPUExecutionProvider"])
        'cuda'
        >>> choose_auto(["CPUExecutionProvider"], precision="fp16")
        'cpu'
    """
    return explain_auto(
        available,
        precision=precision,
        has_dynamic_quant_lstm=has_dynamic_quant_lstm,
        streaming=streaming,
    )[0]


def short_name(name: str) -> str:
    """The registry's short name for an ONNX Runtime or short provider name; a provider
    edgelstm does not know is compared as written (lower case)."""
    try:
        return resolve_provider(name).name
    except InvalidInputError:
        return name.strip().lower()


# --------------------------------------------------------------------------- placement


def assigned_ops(session: Any) -> dict[str, list[str]]:
    """Short provider name -> op types of the nodes it runs in ``session``; empty when unknown.

    Needs the session option ``session.record_ep_graph_assignment_info=1`` (ONNX Runtime 1.23+
    records it; older versions report nothing).
    """
    getter = getattr(session, "get_provider_graph_assignment_info", None)
    if getter is None:
        return {}
    try:
        assigned = getter()
    except Exception:  # recording not enabled or not supported: placement unknown
        return {}
    ops: dict[str, list[str]] = {}
    for subgraph in assigned:
        name = short_name(str(subgraph.ep_name))
        ops.setdefault(name, []).extend(str(n.op_type) for n in subgraph.get_nodes())
    return ops


def node_placement(session: Any) -> dict[str, int]:
    """Short provider name -> number of nodes it runs in ``session``; empty when unknown."""
    return {name: len(ops) for name, ops in assigned_ops(session).items()}
