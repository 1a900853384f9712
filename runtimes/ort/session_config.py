"""How to open a session, as data: :class:`SessionConfig` and what it turns into.

A :class:`SessionConfig` is the frozen description of a session (providers in order of
preference, fallback policy, threads, optimisation level, CUDA/TensorRT settings). It is
written into deployment configs and benchmark rows and read back, so it lives below
everything that opens sessions or stores them. This module also parses ``--provider`` lists
(:func:`parse_provider_list`, :func:`resolve_choice`) and turns a config into the provider
options ONNX Runtime takes (:func:`provider_options`); opening the session is
:func:`edgelstm.runtimes.ort.session.open_session`.

Example::

    >>> from edgelstm.runtimes.ort.session_config import SessionConfig, parse_provider_list
    >>> SessionConfig(providers=parse_provider_list("cuda, cpu"), fallback=True).providers
    ('cuda', 'cpu')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.config import from_dict, to_dict
from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.ort.providers import ProviderSpec, resolve_provider, split_device

__all__ = [
    "GRAPH_OPTIMIZATION_LEVELS",
    "SessionConfig",
    "default_provider_options",
    "parse_provider_list",
    "provider_options",
    "resolve_choice",
]

#: ``--graph-optimization`` values → ``onnxruntime.GraphOptimizationLevel`` member names.
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class SessionConfig:
    """How to open a session: providers in order of preference, policy and options.

    ``providers`` holds short names (``cpu``, ``cuda``, ...), ONNX Runtime names, or ``auto``;
    ``NAME:DEVICE`` picks one device of a provider that offers several (``openvino:GPU``, a
    plugin EP's ``NAME:gpu`` or ``NAME:1``).
    ``intra_op_threads=None`` leaves ONNX Runtime's default (all cores); 1 is the default here
    because recurrent models at small batch gain nothing from more and often lose.
    ``spinning=None`` keeps ONNX Runtime's default (threads spin while waiting).
    ``cuda_graphs`` captures the whole graph once and replays it: it needs fixed input shapes
    for the session's lifetime and runs through IO binding
    (see :class:`edgelstm.runtimes.ort.execution.DeviceRunner`).
    ``fallback`` goes on to the next provider when one is unusable and always ends on the CPU:
    ``("cuda",)`` with fallback tries ``cuda`` then ``cpu``. A list that names the CPU keeps
    it where it is; without fallback the list is strict and nothing is added.
    """

    providers: tuple[str, ...] = ("cpu",)
    fallback: bool = False
    intra_op_threads: int | None = 1
    inter_op_threads: int | None = None
    spinning: bool | None = None
    graph_optimization: str = "all"
    memory_arena: bool = True
    cuda_device: int = 0
    cuda_graphs: bool = False
    tensorrt_fp16: bool = False
    tensorrt_cache: Path | None = None
    #: 4 = fatal only: ONNX Runtime's own error lines would precede edgelstm's one `error:`
    #: line (the failures come back as exceptions and are reported from those).
    log_severity: int = 4

    def __post_init__(self) -> None:
        if not self.providers:
            raise InvalidInputError("give at least one provider (e.g. --provider cpu)")
        for name, value in (
            ("intra-op threads", self.intra_op_threads),
            ("inter-op threads", self.inter_op_threads),
        ):
            if value is not None and value < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {value}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise InvalidInputError(
                f"unknown graph optimization level {self.graph_optimization!r}; choose one of "
                f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}"
            )
        if self.cuda_device < 0:
            raise InvalidInputError(f"CUDA device id must be >= 0, got {self.cuda_device}")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys (benchmark rows and deployment configs use it).

        ``log_severity`` is left out: it only keeps ONNX Runtime's own log lines off the
        console and says nothing about the measurement or the deployment.
        """
        document: dict[str, Any] = to_dict(self)
        del document["log_severity"]
        return document

    @classmethod
    def from_json(cls, document: Any, *, where: str = "session") -> SessionConfig:
        """The inverse of :meth:`to_json`, naming the bad key of a hand-edited document."""
        return from_dict(cls, document, where=where, error=InvalidInputError)


#: Providers whose device is chosen another way than ``NAME:DEVICE``, and how.
_DEVICE_ELSEWHERE = {
    "cpu": "the CPU provider has one device",
    "cuda": "choose the GPU with --cuda-device N",
    "tensorrt": "choose the GPU with --cuda-device N",
}


def resolve_choice(text: str) -> tuple[ProviderSpec, str | None]:
    """One ``--provider`` entry (``NAME`` or ``NAME:DEVICE``) → its spec and device."""
    name, device = split_device(text)
    spec = resolve_provider(name)  # unknown names fail here, with a suggestion
    if device is not None and spec.name in _DEVICE_ELSEWHERE:
        raise InvalidInputError(
            f"--provider {text!r}: {spec.name} takes no ':DEVICE' ({_DEVICE_ELSEWHERE[spec.name]})"
        )
    return spec, device


def parse_provider_list(text: str) -> tuple[str, ...]:
    """``"cuda, cpu"`` → ``("cuda", "cpu")``; empty entries are an error, names are checked."""
    names = tuple(part.strip() for part in text.split(","))
    if not names or any(not n for n in names):
        raise InvalidInputError(
            f"--provider {text!r} has an empty entry; give names separated by commas, "
            "e.g. --provider cuda,cpu"
        )
    for name in names:
        if name.lower() != "auto":
            resolve_choice(name)
    if len(names) > 1 and any(n.lower() == "auto" for n in names):
        raise InvalidInputError("--provider auto cannot be combined with other providers")
    return names


def provider_options(
    spec: ProviderSpec, config: SessionConfig, device: str | None = None
) -> dict[str, str]:
    """The options ONNX Runtime takes for ``spec`` under ``config``, as strings.

    ``device`` is the ``NAME:DEVICE`` part of ``--provider`` (OpenVINO's ``device_type``).
    Providers edgelstm sets nothing for get an empty dict.
    """
    if spec.name == "cuda":
        options = {"device_id": str(config.cuda_device)}
        if config.cuda_graphs:
            options["enable_cuda_graph"] = "1"
        if not config.memory_arena:
            options["arena_extend_strategy"] = "kSameAsRequested"
        return options
    if spec.name == "tensorrt":
        options = {"device_id": str(config.cuda_device)}
        if config.tensorrt_fp16:
            options["trt_fp16_enable"] = "1"
        if config.tensorrt_cache is not None:
            options["trt_engine_cache_enable"] = "1"
            options["trt_engine_cache_path"] = str(config.tensorrt_cache)
        if config.cuda_graphs:
            options["trt_cuda_graph_enable"] = "1"
        return options
    if spec.name == "openvino":
        # ACCURACY keeps the artifact's own precision: OpenVINO's default on GPU/NPU is FP16
        # (and BF16 on CPUs with AMX), which would run something other than what export and
        # quantize validated. Threads follow --threads like the CPU provider's.
        options = {"precision": "ACCURACY"}
        if device is not None:
            options["device_type"] = device
        if config.intra_op_threads is not None:
            options["num_of_threads"] = str(config.intra_op_threads)
        return options
    return {}


def default_provider_options(spec: ProviderSpec) -> dict[str, str]:
    """The provider options edgelstm passes to ``spec`` with default settings (for reports)."""
    return provider_options(spec, SessionConfig())
