"""Open ONNX Runtime sessions on an explicit provider, strictly, and say what really ran.

ONNX Runtime's defaults hurt users: a CUDA provider that cannot load becomes the CPU with
only a log line, nodes can land on the CPU without notice, and every option has to be
spelled as a string in the right dict. :func:`open_session` takes a frozen
:class:`~edgelstm.runtimes.ort.session_config.SessionConfig` (re-exported here, as the
argument of :func:`open_session`) and:

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

    >>> from edgelstm.runtimes.ort.session import SessionConfig, open_session
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

from edgelstm.errors import (
    InvalidInputError,
    ProviderUnavailableError,
    first_line,
    more_details,
)
from edgelstm.runtimes.ort.artifact import Artifact, ModelProfile, load_artifact
from edgelstm.runtimes.ort.measured_choice import measured_choice
from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime
from edgelstm.runtimes.ort.plugin_eps import openvino_device_ids, plugin_for_ep, select_devices
from edgelstm.runtimes.ort.providers import (
    ProviderSpec,
    assigned_ops,
    explain_auto,
    resolve_provider,
)
from edgelstm.runtimes.ort.session_config import (
    GRAPH_OPTIMIZATION_LEVELS,
    SessionConfig,
    provider_options,
    resolve_choice,
)

if TYPE_CHECKING:
    from edgelstm.hardware import CpuInfo

__all__ = [
    "OpenedSession",
    "SessionConfig",
    "limit_memory",
    "open_session",
    "reduce_range_warning",
]


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

    ``provider`` is the short name of the provider that runs the graph and ``device`` the
    device asked of it (``GPU`` for ``openvino:GPU``; None when the provider's default was
    used); ``requested`` the list as resolved (``auto`` replaced by its choice); ``notes`` one
    line per provider that
    was skipped or per caveat (why, and what to install); ``placement`` maps each provider to
    the number of nodes it runs, when ONNX Runtime reports it (empty otherwise), and
    ``cpu_ops`` lists the op types the CPU runs for another provider; ``warnings``
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
    device: str | None = None
    cpu_ops: tuple[str, ...] = ()

    @property
    def fell_back(self) -> bool:
        """True when the provider that runs is not the first one requested."""
        return self.provider != self.requested[0]

    def describe(self) -> str:
        """One line for logs: which provider ran and how the nodes are placed."""
        text = f"provider {self.provider}"
        if self.device is not None:
            text += f" (device {self.device})"
        if self.fell_back:
            text += f" (fell back from {self.requested[0]})"
        if len(self.placement) > 1:
            parts = ", ".join(f"{n} nodes on {ep}" for ep, n in self.placement.items())
            text += f"; partial placement: {parts}"
        elif self.placement and self.provider != "cpu":
            text += f"; all {sum(self.placement.values())} nodes on {self.provider}"
        return text

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "model": str(self.path),
            "provider": self.provider,
            "device": self.device,
            "requested": list(self.requested),
            "fell_back": self.fell_back,
            "precision": self.profile.precision,
            "notes": list(self.notes),
            "placement": dict(self.placement),
            "cpu_ops": list(self.cpu_ops),
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


@dataclass(frozen=True)
class _Candidate:
    """One provider to try: its spec and, for ``NAME:DEVICE``, the device asked of it."""

    spec: ProviderSpec
    device: str | None = None


def _resolve_requested(
    names: tuple[str, ...],
    profile: ModelProfile,
    available: list[str],
    *,
    fallback: bool,
    path: Path,
) -> tuple[tuple[_Candidate, ...], list[str]]:
    """Providers in the order to try them, plus notes on how ``auto`` chose.

    ``auto`` follows a measurement when a deployment config or benchmark report beside the
    model timed this same file on this host (:mod:`edgelstm.runtimes.ort.measured_choice`), and
    the fixed policy of :func:`explain_auto` otherwise. With ``fallback`` the CPU is appended
    when the list lacks it: falling back means "run somewhere", and the CPU provider is built
    into every onnxruntime.
    """
    notes: list[str] = []
    cpu = _Candidate(resolve_provider("cpu"))
    if len(names) == 1 and names[0].lower() == "auto":
        measured = measured_choice(path, available, streaming=profile.streaming)
        notes.extend(measured.notes)
        if measured.provider is not None:
            choice, reason = measured.provider, measured.reason
        else:
            choice, reason = explain_auto(
                available,
                precision=profile.precision,
                has_dynamic_quant_lstm="DynamicQuantizeLSTM" in profile.op_types,
                streaming=profile.streaming,
            )
        notes.append(f"auto chose {choice}: {reason}")
        chosen = _Candidate(*resolve_choice(choice))
        # auto may always fall back to the CPU
        return ((chosen,) if chosen.spec == cpu.spec else (chosen, cpu)), notes
    candidates: list[_Candidate] = []
    for name in names:
        spec, device = resolve_choice(name)
        if any(c.spec == spec for c in candidates):
            raise InvalidInputError(f"provider {spec.name} is listed twice in --provider")
        candidates.append(_Candidate(spec, device))
    if fallback and all(c.spec != cpu.spec for c in candidates):
        candidates.append(cpu)
    return tuple(candidates), notes


def open_session(
    model: Artifact | Path | str, config: SessionConfig | None = None
) -> OpenedSession:
    """Open ``model`` (a path, or an :class:`Artifact` already read) on the first usable
    provider of ``config.providers``.

    Strict by default: when the first provider is not built into the installed onnxruntime
    (nor brought by an installed plugin EP package with a device here), fails to initialise,
    or is silently replaced by the CPU, this raises
    :class:`~edgelstm.errors.ProviderUnavailableError` (exit 2) saying why and what to
    install. With ``config.fallback`` the next provider is tried and the reason goes into
    :attr:`OpenedSession.notes`; the CPU is the last resort even when the list omits it (a
    note says it was added). ``auto`` is never strict about the CPU it falls back to.

    Example::

        >>> opened = open_session("jv.onnx")  # doctest: +SKIP
        >>> opened.session.run(None, {"x": x})  # doctest: +SKIP
    """
    path = _model_path(model)
    config = config or SessionConfig()
    ort = import_onnxruntime()
    # Parsed once; the checksum refuses an edgelstm artifact changed since it was written.
    artifact = model.verify() if isinstance(model, Artifact) else load_artifact(path)
    profile = artifact.profile
    available = [str(p) for p in ort.get_available_providers()]
    is_auto = len(config.providers) == 1 and config.providers[0].lower() == "auto"
    candidates, notes = _resolve_requested(
        config.providers, profile, available, fallback=config.fallback, path=path
    )
    # auto appends the CPU itself; anything else that ends on an unlisted CPU was added here.
    cpu_added = not is_auto and len(candidates) > len(config.providers)
    allow_next = config.fallback or is_auto
    failures: list[str] = []
    for index, candidate in enumerate(candidates):
        last = index == len(candidates) - 1
        try:
            # An InvalidInputError passes through: the model itself is bad, and another
            # provider will not help.
            session, ops, device = _try_open(ort, path, candidate, config, available)
        except ProviderUnavailableError as exc:
            failures.append(str(exc))
            if allow_next and not last:
                continue
            break
        notes.extend(failures)
        if cpu_added and last:
            notes.append(
                "cpu: added as the last resort (--fallback ends on the CPU; --provider "
                f"{','.join(config.providers)} did not list it)"
            )
        return _opened_session(
            session,
            ops,
            path=path,
            spec=candidate.spec,
            device=device,
            requested=tuple(c.spec.name for c in candidates),
            config=config,
            profile=profile,
            notes=notes,
        )
    hint = "" if allow_next else "; add --fallback to go on with the next provider (the CPU last)"
    if allow_next:
        hint = " (no provider in the list was usable)"
    raise ProviderUnavailableError("; ".join(failures) + hint, tuple(failures))


def _model_path(model: Artifact | Path | str) -> Path:
    """The model's file; a folder or a missing file is refused before ONNX Runtime sees it."""
    path = model.path if isinstance(model, Artifact) else Path(model)
    if path.is_dir():
        raise InvalidInputError(f"model path {path} is a folder; give the .onnx file inside it")
    if not path.is_file():
        raise InvalidInputError(f"model file {path} does not exist")
    return path


def _opened_session(
    session: Any,
    ops: dict[str, list[str]],
    *,
    path: Path,
    spec: ProviderSpec,
    device: str | None,
    requested: tuple[str, ...],
    config: SessionConfig,
    profile: ModelProfile,
    notes: list[str],
) -> OpenedSession:
    """The :class:`OpenedSession` for a session that opened on ``spec``, with the notes and
    warnings its placement and the model's weights call for."""
    placement = {name: len(names) for name, names in ops.items()}
    cpu_ops = tuple(ops.get("cpu", ())) if spec.name != "cpu" else ()
    warning = reduce_range_warning(path, profile, provider=spec.name)
    return OpenedSession(
        session=session,
        path=path,
        provider=spec.name,
        requested=requested,
        config=config,
        profile=profile,
        notes=(*notes, *_placement_notes(spec, profile, placement, cpu_ops)),
        placement=placement,
        warnings=() if warning is None else (warning,),
        device=device,
        cpu_ops=cpu_ops,
    )


def _placement_notes(
    spec: ProviderSpec,
    profile: ModelProfile,
    placement: dict[str, int],
    cpu_ops: tuple[str, ...] = (),
) -> list[str]:
    """What a user of ``spec`` should know about where the nodes really run.

    When ONNX Runtime reports the placement it is the truth and the note names the op types
    left on the CPU; otherwise the graph's CPU-only INT8 ops are the best guess.
    """
    if spec.name == "cpu":
        return []
    others = {ep: n for ep, n in placement.items() if ep != spec.name}
    if not placement:
        if not profile.cpu_only_ops:
            return []
        return [
            f"{', '.join(profile.cpu_only_ops)} has only a CPU kernel: those nodes run on the "
            f"host inside this {spec.name} session (copies each call); use --provider cpu for "
            "INT8 models"
        ]
    if not others:
        return []
    total = sum(placement.values())
    moved = ", ".join(f"{n} on {ep}" for ep, n in others.items())
    kept = total - sum(others.values())
    note = f"partial placement: {kept} of {total} nodes on {spec.name}, {moved}"
    if cpu_ops:
        counted = sorted({op: cpu_ops.count(op) for op in cpu_ops}.items())
        note += " (" + ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counted) + ")"
    stuck = sorted(set(cpu_ops) & set(profile.cpu_only_ops))
    if stuck:
        note += (
            f"; {', '.join(stuck)} has only a CPU kernel, so each call copies between them: "
            "use --provider cpu for this INT8 model"
        )
    return [note]


def _try_open(
    ort: Any, path: Path, candidate: _Candidate, config: SessionConfig, available: list[str]
) -> tuple[Any, dict[str, list[str]], str | None]:
    """A session on ``candidate``, the op types each provider runs in it and the device, or
    ProviderUnavailableError saying why not.

    A provider compiled into this onnxruntime is asked for by name; one that only a plugin EP
    package brings is placed on the plugin's devices (``add_provider_for_devices``).
    """
    spec, device = candidate.spec, candidate.device
    options = _session_options(ort, config)
    providers: list[Any] | None = None
    if spec.ep_name in available:
        device = _built_in_device(ort, spec, device)
        options_for_ep = provider_options(spec, config, device)
        providers = [(spec.ep_name, options_for_ep) if options_for_ep else spec.ep_name]
        if spec.name != "cpu":
            providers.append("CPUExecutionProvider")  # nodes the accelerator lacks run here
    else:
        devices = _plugin_devices(spec, device)
        # No providers= list then: the session runs on these devices, and the CPU provider
        # stays the fallback for nodes they do not take.
        options.add_provider_for_devices(devices, provider_options(spec, config, device))
    try:
        with warnings.catch_warnings():
            # ONNX Runtime's own fallback warning is what we turn into an error or a note.
            warnings.simplefilter("ignore")
            if providers is None:
                session = ort.InferenceSession(str(path), options)
            else:
                session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises Fail/InvalidGraph/NoSuchFile/RuntimeException
        message = first_line(exc)
        if spec.name == "cpu" or _is_model_error(message):
            failure = InvalidInputError(f"ONNX Runtime cannot load {path}: {message}")
            raise more_details(failure, exc) from None
        unusable = ProviderUnavailableError(
            f"{spec.name}: failed to initialise ({message}); check: {spec.install}"
        )
        raise more_details(unusable, exc) from None
    used = [str(p) for p in session.get_providers()]
    if spec.ep_name not in used:
        raise ProviderUnavailableError(
            f"{spec.name}: asked for {spec.ep_name}, ONNX Runtime silently replaced it with "
            f"{', '.join(used) or 'nothing'} (silent fallback: its libraries did not load); "
            f"check: {spec.install}"
        )
    ops = assigned_ops(session)
    if ops and spec.name != "cpu" and not ops.get(spec.name):
        raise ProviderUnavailableError(
            f"{spec.name}: the session accepted it but placed no node on it (all "
            f"{sum(map(len, ops.values()))} ran on {', '.join(ops)}); this model does not "
            f"run on {spec.name}"
        )
    return session, ops, device


def _built_in_device(ort: Any, spec: ProviderSpec, device: str | None) -> str | None:
    """The device for a compiled-in provider; only OpenVINO's build takes one by name."""
    if device is None:
        return None
    if spec.name != "openvino":
        raise ProviderUnavailableError(
            f"{spec.name}: this build's {spec.ep_name} offers no device choice; drop ':{device}'"
        )
    name = device.upper()  # OpenVINO's device names are upper case (CPU, GPU.1, NPU)
    offered = openvino_device_ids(ort)
    if offered and name not in offered and name not in {d.split(".")[0] for d in offered}:
        raise ProviderUnavailableError(
            f"openvino: OpenVINO finds no {name} device here; it finds {', '.join(offered)}"
        )
    return name


def _plugin_devices(spec: ProviderSpec, device: str | None) -> list[Any]:
    """The plugin EP devices for ``spec``, or ProviderUnavailableError saying why none."""
    plugin = plugin_for_ep(spec.ep_name)
    if plugin is None:
        raise ProviderUnavailableError(
            f"{spec.name}: not built into this onnxruntime; install: {spec.install}"
        )
    if plugin.error is not None or not plugin.devices:
        raise ProviderUnavailableError(
            f"{spec.name}: {plugin.distribution} {plugin.version} is {plugin.status}"
        )
    devices: list[Any] = select_devices(spec.ep_name, device)
    return devices


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
