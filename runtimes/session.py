"""Open ONNX Runtime sessions on an explicit provider, strictly, and say what really ran.

ONNX Runtime's defaults hurt users: a CUDA provider that cannot load becomes the CPU with
only a log line, nodes can land on the CPU without notice, and every option has to be
spelled as a string in the right dict. :func:`open_session` takes a frozen
:class:`SessionConfig` and:

- resolves ``--provider`` names (one, an ordered list, or ``auto``) through the registry;
- refuses a provider that is not built in or fails to initialise, with the reason and what to
  install, unless ``fallback`` allows the next one; with ``fallback`` the CPU ends the list
  when it does not name it (the last resort users and ONNX Runtime itself expect); the result
  records which provider ran and why the others did not;
- detects ONNX Runtime's silent fallback (the requested provider missing from the session's
  providers) and records the node placement where ONNX Runtime exposes it;
- applies session and provider options with defaults chosen for recurrent models (one
  intra-op thread: at batch 1 a second thread made INT8 LSTM slower, 0.24 → 0.58 ms).

Example::

    >>> from edgelstm.runtimes.session import SessionConfig, open_session
    >>> opened = open_session("jv.onnx", SessionConfig(providers=("cuda", "cpu"), fallback=True))
    ... # doctest: +SKIP
    >>> opened.provider, opened.notes  # doctest: +SKIP
    ('cpu', ('cuda: not built into this onnxruntime; install: ...',))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.config import from_dict, to_dict
from edgelstm.errors import InvalidInputError, ProviderUnavailableError
from edgelstm.runtimes.artifact import Artifact, ModelProfile, load_artifact
from edgelstm.runtimes.providers import (
    ProviderSpec,
    explain_auto,
    import_onnxruntime,
    node_placement,
    resolve_provider,
)

if TYPE_CHECKING:
    from edgelstm.hardware import CpuInfo

__all__ = [
    "GRAPH_OPTIMIZATION_LEVELS",
    "OpenedSession",
    "SessionConfig",
    "limit_memory",
    "open_session",
    "parse_provider_list",
    "reduce_range_warning",
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

    ``providers`` holds short names (``cpu``, ``cuda``, ...), ONNX Runtime names, or ``auto``.
    ``intra_op_threads=None`` leaves ONNX Runtime's default (all cores); 1 is the default here
    because recurrent models at small batch gain nothing from more and often lose.
    ``spinning=None`` keeps ONNX Runtime's default (threads spin while waiting).
    ``cuda_graphs`` captures the whole graph once and replays it: it needs fixed input shapes
    for the session's lifetime and runs through IO binding
    (see :class:`edgelstm.runtimes.execution.DeviceRunner`).
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
            resolve_provider(name)  # unknown names fail here, with a suggestion
    if len(names) > 1 and any(n.lower() == "auto" for n in names):
        raise InvalidInputError("--provider auto cannot be combined with other providers")
    return names


def reduce_range_warning(
    path: Path, profile: ModelProfile, *, provider: str = "cpu", cpu: CpuInfo | None = None
) -> str | None:
    """A warning when ``cpu`` (default: this one) needs 7-bit INT8 weights the model lacks.

    ONNX Runtime's x86 u8s8 kernels without VNNI add pairs of u8*s8 products in 16 bits,
    which saturates with 8-bit weights: outputs change without any error. Models quantized
    with ``--reduce-range off`` (or ``auto`` on a VNNI machine) say so in their metadata;
    models that record nothing get no warning, since their weight range is unknown.
    """
    if profile.precision != "int8" or profile.reduce_range is not False:
        return None
    if provider != "cpu" and not profile.cpu_only_ops:
        return None  # an accelerator runs every node with its own INT8 kernels
    from edgelstm.hardware import cpu_info

    cpu = cpu or cpu_info()
    if not cpu.reduce_range_advised:
        return None
    return (
        f"{path.name} has 8-bit INT8 weights (quantized with reduce_range off) and this CPU "
        f"({cpu.model}) is x86 without VNNI: ONNX Runtime's u8s8 products can saturate and "
        "change the outputs silently; quantize it again with --reduce-range on, or run it on a "
        "CPU with VNNI"
    )


@dataclass(frozen=True)
class OpenedSession:
    """An ONNX Runtime session plus the truth about where it runs.

    ``provider`` is the short name of the provider that runs the graph; ``requested`` the
    list as resolved (``auto`` replaced by its choice); ``notes`` one line per provider that
    was skipped or per caveat (why, and what to install); ``placement`` maps each provider to
    the number of nodes it runs, when ONNX Runtime reports it (empty otherwise); ``warnings``
    holds what can make the outputs wrong here (see :func:`reduce_range_warning`).
    """

    session: Any
    path: Path
    provider: str
    requested: tuple[str, ...]
    config: SessionConfig
    profile: ModelProfile
    notes: tuple[str, ...] = ()
    placement: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def fell_back(self) -> bool:
        """True when the provider that runs is not the first one requested."""
        return self.provider != self.requested[0]

    def describe(self) -> str:
        """One line for logs: which provider ran and how the nodes are placed."""
        text = f"provider {self.provider}"
        if self.fell_back:
            text += f" (fell back from {self.requested[0]})"
        if len(self.placement) > 1:
            parts = ", ".join(f"{n} nodes on {ep}" for ep, n in self.placement.items())
            text += f"; partial placement: {parts}"
        return text

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "model": str(self.path),
            "provider": self.provider,
            "requested": list(self.requested),
            "fell_back": self.fell_back,
            "precision": self.profile.precision,
            "notes": list(self.notes),
            "placement": dict(self.placement),
            "warnings": list(self.warnings),
            "session_config": self.config.to_json(),
        }


def _session_options(ort: Any, config: SessionConfig) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = config.log_severity
    if config.intra_op_threads is not None:
        options.intra_op_num_threads = config.intra_op_threads
    if config.inter_op_threads is not None:
        options.inter_op_num_threads = config.inter_op_threads
    if config.spinning is not None:
        flag = "1" if config.spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVELS[config.graph_optimization]
    )
    options.enable_cpu_mem_arena = config.memory_arena
    # Node placement is only recorded on request (ONNX Runtime >= 1.23 understands the key;
    # older versions ignore unknown keys).
    options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return options


def _provider_options(spec: ProviderSpec, config: SessionConfig) -> dict[str, str]:
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
    return {}


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 300 characters): ONNX Runtime errors run to pages."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _resolve_requested(
    names: tuple[str, ...], profile: ModelProfile, available: list[str], *, fallback: bool
) -> tuple[tuple[ProviderSpec, ...], list[str]]:
    """Provider specs in the order to try them, plus notes on how ``auto`` chose.

    With ``fallback`` the CPU is appended when the list lacks it: falling back means "run
    somewhere", and the CPU provider is built into every onnxruntime.
    """
    notes: list[str] = []
    if len(names) == 1 and names[0].lower() == "auto":
        choice, reason = explain_auto(
            available,
            precision=profile.precision,
            has_dynamic_quant_lstm="DynamicQuantizeLSTM" in profile.op_types,
            streaming=profile.streaming,
        )
        notes.append(f"auto chose {choice}: {reason}")
        specs = [resolve_provider(choice)]
        if choice != "cpu":
            specs.append(resolve_provider("cpu"))  # auto may always fall back to the CPU
        return tuple(specs), notes
    specs = []
    for name in names:
        spec = resolve_provider(name)
        if spec in specs:
            raise InvalidInputError(f"provider {spec.name} is listed twice in --provider")
        specs.append(spec)
    cpu = resolve_provider("cpu")
    if fallback and cpu not in specs:
        specs.append(cpu)
    return tuple(specs), notes


def open_session(
    model: Artifact | Path | str, config: SessionConfig | None = None
) -> OpenedSession:
    """Open ``model`` (a path, or an :class:`Artifact` already read) on the first usable
    provider of ``config.providers``.

    Strict by default: when the first provider is not built into the installed onnxruntime,
    fails to initialise, or is silently replaced by the CPU, this raises
    :class:`~edgelstm.errors.ProviderUnavailableError` (exit 2) saying why and what to
    install. With ``config.fallback`` the next provider is tried and the reason goes into
    :attr:`OpenedSession.notes`; the CPU is the last resort even when the list omits it (a
    note says it was added). ``auto`` is never strict about the CPU it falls back to.

    Example::

        >>> opened = open_session("jv.onnx")  # doctest: +SKIP
        >>> opened.session.run(None, {"x": x})  # doctest: +SKIP
    """
    artifact: Artifact | None = None
    if isinstance(model, Artifact):
        artifact, path = model, model.path
    else:
        path = Path(model)
    config = config or SessionConfig()
    if path.is_dir():
        raise InvalidInputError(f"model path {path} is a folder; give the .onnx file inside it")
    if not path.is_file():
        raise InvalidInputError(f"model file {path} does not exist")
    ort = import_onnxruntime()
    # Parsed once; the checksum refuses an edgelstm artifact changed since it was written.
    artifact = load_artifact(path) if artifact is None else artifact.verify()
    profile = artifact.profile
    available = [str(p) for p in ort.get_available_providers()]
    is_auto = len(config.providers) == 1 and config.providers[0].lower() == "auto"
    specs, notes = _resolve_requested(
        config.providers, profile, available, fallback=config.fallback
    )
    # auto appends the CPU itself; anything else that ends on an unlisted CPU was added here.
    cpu_added = not is_auto and len(specs) > len(config.providers)
    allow_next = config.fallback or is_auto
    failures: list[str] = []
    for index, spec in enumerate(specs):
        last = index == len(specs) - 1
        if spec.ep_name not in available:
            reason = f"{spec.name}: not built into this onnxruntime; install: {spec.install}"
            failures.append(reason)
            if allow_next and not last:
                continue
            break
        try:
            opened = _try_open(ort, path, spec, config)
        except InvalidInputError:
            raise  # the model itself is bad; another provider will not help
        except ProviderUnavailableError as exc:
            failures.append(str(exc))
            if allow_next and not last:
                continue
            break
        session, placement = opened
        requested = tuple(s.name for s in specs)
        notes.extend(failures)
        if cpu_added and last:
            notes.append(
                "cpu: added as the last resort (--fallback ends on the CPU; --provider "
                f"{','.join(config.providers)} did not list it)"
            )
        notes.extend(_placement_notes(spec, profile, placement))
        warning = reduce_range_warning(path, profile, provider=spec.name)
        return OpenedSession(
            session=session,
            path=path,
            provider=spec.name,
            requested=requested,
            config=config,
            profile=profile,
            notes=tuple(notes),
            placement=placement,
            warnings=() if warning is None else (warning,),
        )
    hint = "" if allow_next else "; add --fallback to go on with the next provider (the CPU last)"
    if allow_next:
        hint = " (no provider in the list was usable)"
    raise ProviderUnavailableError("; ".join(failures) + hint)


def _placement_notes(
    spec: ProviderSpec, profile: ModelProfile, placement: dict[str, int]
) -> list[str]:
    notes = []
    if spec.name != "cpu" and profile.cpu_only_ops:
        notes.append(
            f"{', '.join(profile.cpu_only_ops)} has only a CPU kernel: those nodes run on the "
            f"host inside this {spec.name} session (copies each call); use --provider cpu for "
            "INT8 models"
        )
    others = {ep: n for ep, n in placement.items() if ep != spec.name}
    if others and spec.name != "cpu":
        total = sum(placement.values())
        moved = ", ".join(f"{n} on {ep}" for ep, n in others.items())
        notes.append(
            f"partial placement: {total - sum(others.values())} of {total} nodes on "
            f"{spec.name}, {moved}"
        )
    return notes


def _try_open(
    ort: Any, path: Path, spec: ProviderSpec, config: SessionConfig
) -> tuple[Any, dict[str, int]]:
    options = _session_options(ort, config)
    provider_options = _provider_options(spec, config)
    providers: list[Any] = [(spec.ep_name, provider_options) if provider_options else spec.ep_name]
    if spec.name != "cpu":
        providers.append("CPUExecutionProvider")  # nodes the accelerator lacks run here
    try:
        with warnings.catch_warnings():
            # ONNX Runtime's own fallback warning is what we turn into an error or a note.
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises Fail/InvalidGraph/NoSuchFile/RuntimeException
        message = first_line(exc)
        if spec.name == "cpu" or _is_model_error(message):
            raise InvalidInputError(f"ONNX Runtime cannot load {path}: {message}") from None
        raise ProviderUnavailableError(
            f"{spec.name}: failed to initialise ({message}); check: {spec.install}"
        ) from None
    used = [str(p) for p in session.get_providers()]
    if spec.ep_name not in used:
        raise ProviderUnavailableError(
            f"{spec.name}: ONNX Runtime silently replaced it with {', '.join(used) or 'nothing'} "
            f"(its libraries did not load); check: {spec.install}"
        )
    placement = node_placement(session)
    if placement and spec.name != "cpu" and not placement.get(spec.name):
        raise ProviderUnavailableError(
            f"{spec.name}: the session accepted it but placed no node on it (all "
            f"{sum(placement.values())} ran on {', '.join(placement)}); this model does not "
            f"run on {spec.name}"
        )
    return session, placement


def _is_model_error(message: str) -> bool:
    lowered = message.lower()
    return any(
        marker in lowered
        for marker in ("protobuf parsing failed", "invalid_graph", "invalid model", "no_suchfile")
    )


def limit_memory(gib: float) -> None:
    """Cap this process's address space at ``gib`` GiB (POSIX ``RLIMIT_AS``).

    ONNX Runtime sizes some outputs from input *values* (``ConstantOfShape``, ``Expand``...);
    an untrusted model can ask for more memory than the machine has. Under a cap the
    allocation fails, ONNX Runtime raises, and the run ends with one error line.
    """
    try:
        import resource
    except ImportError:
        raise InvalidInputError("--memory-limit needs a POSIX system (Linux, macOS)") from None
    limit = int(gib * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and limit > hard:
        raise InvalidInputError(f"--memory-limit {gib} GiB is above this process's hard limit")
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:
        raise InvalidInputError(f"--memory-limit {gib} GiB could not be applied ({exc})") from None
