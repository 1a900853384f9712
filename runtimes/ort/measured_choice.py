"""``--provider auto`` from measurements: the provider that was timed fastest for this very
model on this very host, read from the documents edgelstm wrote next to it.

:func:`~edgelstm.runtimes.ort.providers.explain_auto` guesses from a fixed table; a measurement
beats a guess. ``edgelstm benchmark --tune`` and ``edgelstm quickstart`` write deployment
configs (``deploy.json``, schema ``edgelstm.deploy/1``) and ``edgelstm benchmark --json``
writes reports (``edgelstm.benchmark/1``). :func:`measured_choice` reads those lying in the
model's folder and returns the measured winner with the document it came from, or no
provider (and notes on what it ignored and why) so the caller keeps the fixed policy.

A document counts only when it measured the same file (``os.path.samefile``), in the
model's mode (``streaming`` for a streaming export, else ``sequence``), on a host with the
same CPU model and GPU names as this one (:func:`host_fingerprint`, which the deployment
writer stores too), and when the winner is built into this onnxruntime. A measurement from
another machine says nothing about this one: which provider wins depends on the CPU's
instruction set (AVX2, AVX-512, VNNI) and on the GPU, so a winner timed on one machine can
lose on another.

Example::

    >>> from edgelstm.runtimes.ort.measured_choice import measured_choice
    >>> found = measured_choice(Path("out/model.onnx"), ["CPUExecutionProvider"],
    ...                         streaming=False)  # doctest: +SKIP
    >>> found.provider, found.reason  # doctest: +SKIP
    ('cpu', 'measured fastest in deploy.json: p50 0.21 ms per call on cpu at batch 1 (...)')
    >>> found.notes  # doctest: +SKIP
    ()
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import read_json
from edgelstm.runtimes.ort.deploy import DEPLOY_SCHEMA, read_deployment
from edgelstm.runtimes.ort.providers import short_name, split_device

__all__ = [
    "MAX_DOCUMENTS",
    "MAX_DOCUMENT_BYTES",
    "MeasuredChoice",
    "host_fingerprint",
    "measured_choice",
]

#: At most this many ``*.json`` files of the model's folder are read (the newest first), so
#: a model kept beside a folder of data files does not slow ``run`` down.
MAX_DOCUMENTS = 50
#: Larger JSON files are skipped unread: a deployment config is under 1 KB and a benchmark
#: report of a few hundred rows well under 1 MB.
MAX_DOCUMENT_BYTES = 2 * 2**20

# The writer's constant is edgelstm.benchmarks.harness.BENCHMARK_SCHEMA, which a runtime module
# must not import (layering); tests/test_measured_auto.py pins the two together.
_BENCHMARK_SCHEMA = "edgelstm.benchmark/1"

#: A host as compared: the CPU model string and the sorted GPU names.
_Host = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class MeasuredChoice:
    """What the measurements next to a model say ``--provider auto`` should pick.

    ``provider`` is a short provider name (``cpu``, ``cuda``, ``openvino``, with the device
    after a colon when the measurement named one, e.g. ``openvino:GPU``), or None when no
    document qualified: then the fixed policy decides, and ``notes`` say which documents were
    ignored and why. ``reason`` is one line naming the document and the time that won;
    ``source`` is that document.
    """

    provider: str | None
    reason: str = ""
    source: Path | None = None
    notes: tuple[str, ...] = ()


def host_fingerprint() -> dict[str, Any]:
    """This host as measurements are matched to it: ``{"cpu": model, "gpus": [names]}``.

    The one definition both sides use: the deployment writer stores it under ``measured``
    as ``host``, :func:`measured_choice` compares it (benchmark reports carry the same facts
    in their ``environment``). Core counts, versions and clocks are left out on purpose: they
    change with a container's limits or an upgrade, while the winner follows the hardware.

    Example::

        >>> sorted(host_fingerprint())
        ['cpu', 'gpus']
    """
    from edgelstm.hardware import cpu_info, gpu_info  # nvidia-smi: only when needed

    return {"cpu": cpu_info().model, "gpus": [gpu.name for gpu in gpu_info()]}


@dataclass(frozen=True)
class _Measured:
    """One document's winner for the model, before the host and availability checks."""

    provider: str
    summary: str  # "p50 0.21 ms per call on cpu at batch 1 ..."
    provenance: str  # "deployment config edgelstm.deploy/1, written 2026-05-01"
    host: _Host | None
    weights_sha256: str | None
    #: why this winner cannot stand for ``run --provider auto`` even on this host, if it can't
    blocker: str | None = None


def measured_choice(
    model: Path,
    available: Sequence[str],
    *,
    streaming: bool,
    weights_sha256: str | None = None,
    host: Mapping[str, Any] | None = None,
) -> MeasuredChoice:
    """The provider measured fastest for ``model`` on this host, from documents beside it.

    ``available`` holds ONNX Runtime or short provider names (``get_available_providers()``);
    ``streaming`` is the model's mode (a streaming export is judged per frame, anything else
    per call). ``weights_sha256`` is the model's recorded weights checksum, when known: a
    document that recorded a different one measured an older export and is ignored. ``host``
    is this host's :func:`host_fingerprint` (computed only when a document needs it).

    Reads at most :data:`MAX_DOCUMENTS` ``*.json`` files of the model's folder (no
    subfolders), each under :data:`MAX_DOCUMENT_BYTES`, newest first by modification time
    (then by name); the first that qualifies wins and older ones are not read. Unreadable,
    foreign or malformed JSON, and documents about other files or the other mode, are skipped
    without a note. A document about this model that cannot be used (another host, no host
    recorded, other weights, a winner not built in here) adds a note and the search goes on.

    What qualifies:

    - a deployment config (``edgelstm.deploy/1``) whose ``model``, resolved against its
      folder, is ``model``, whose ``mode`` matches, and whose ``measured.host`` is this host;
      its first provider wins. One tuned with CUDA graphs is ignored: only
      ``run --config`` replays them, and plain CUDA calls are several times slower.
    - a benchmark report (``edgelstm.benchmark/1``) from this host (its ``environment``)
      with ONNX Runtime rows of this mode whose ``path`` is ``model`` (a relative path is
      tried against the report's folder, then the working folder); CUDA-graph rows are
      left out for the same reason. At the smallest measured batch (and, for whole
      sequences, the shortest length measured there) the lowest ``p50_ms`` wins, per frame
      (``frame_p50_ms``) when streaming.

    Never raises for what it reads; returns ``MeasuredChoice(None, notes=...)`` when nothing
    qualified.

    Example::

        >>> found = measured_choice(Path("out/model.onnx"), ["CPUExecutionProvider"],
        ...                         streaming=False)  # doctest: +SKIP
        >>> found.provider, found.source  # doctest: +SKIP
        ('cpu', PosixPath('out/deploy.json'))
    """
    model = Path(model)
    mode = "streaming" if streaming else "sequence"
    here_names = {short_name(name) for name in available}
    here_host: list[_Host | None] = []  # filled on first use: nvidia-smi is not free

    def this_host() -> _Host | None:
        if not here_host:
            here_host.append(_host_from_fingerprint(host_fingerprint() if host is None else host))
        return here_host[0]

    notes: list[str] = []
    for path, mtime_ns in _documents(model.parent):
        document = _load(path)
        schema = None if document is None else document.get("schema")
        if document is None or schema not in (DEPLOY_SCHEMA, _BENCHMARK_SCHEMA):
            continue
        if schema == _BENCHMARK_SCHEMA:
            measured = _from_report(document, path, model, mode, mtime_ns)
        else:
            measured = _from_deployment(path, model, mode, mtime_ns)
        if measured is None:
            continue  # not about this model in this mode: nothing to say
        ignored = _why_ignored(measured, path, model, this_host(), here_names, weights_sha256)
        if ignored is not None:
            notes.append(ignored)
            continue
        reason = f"measured fastest in {path.name}: {measured.summary} ({measured.provenance})"
        return MeasuredChoice(measured.provider, reason, path, tuple(notes))
    return MeasuredChoice(None, notes=tuple(notes))


def _why_ignored(
    measured: _Measured,
    path: Path,
    model: Path,
    here: _Host | None,
    available: set[str],
    weights_sha256: str | None,
) -> str | None:
    """The note for a document about this model that cannot decide here; None if it can."""
    name = path.name
    if measured.host is None:
        return (
            f"ignored {name}: it does not record the host it was measured on; measure on this "
            "host (`edgelstm benchmark --tune` or `--json`) for auto to use it"
        )
    if here is None or measured.host != here:
        return (
            f"ignored {name}: measured on another host ({_describe(measured.host)}; this host: "
            f"{_describe(here)})"
        )
    recorded = measured.weights_sha256
    if weights_sha256 and recorded and recorded != weights_sha256:
        return (
            f"ignored {name}: it measured other weights than {model.name} has now (sha256 "
            f"{recorded[:12]}... vs {weights_sha256[:12]}...); benchmark it again"
        )
    if measured.blocker is not None:
        return f"ignored {name}: {measured.blocker}"
    base = measured.provider.partition(":")[0]
    if base not in available:
        listed = ", ".join(sorted(available)) or "none"
        return (
            f"ignored {name}: measured fastest was {measured.summary}, but {base} is not "
            f"available here (available: {listed})"
        )
    return None


# --------------------------------------------------------------------------------------------
# finding and reading documents


def _documents(folder: Path) -> Iterator[tuple[Path, int]]:
    """The folder's small ``*.json`` files, newest first, at most :data:`MAX_DOCUMENTS`."""
    found: list[tuple[int, str, Path]] = []
    try:
        with os.scandir(folder if str(folder) else ".") as entries:
            for entry in entries:
                if not entry.name.lower().endswith(".json"):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    stat = entry.stat()
                except OSError:
                    continue
                if stat.st_size <= MAX_DOCUMENT_BYTES:
                    found.append((-stat.st_mtime_ns, entry.name, folder / entry.name))
    except OSError:  # an unreadable folder holds no usable measurement
        return
    for negative_mtime, _, path in sorted(found)[:MAX_DOCUMENTS]:
        yield path, -negative_mtime


def _load(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None for anything else, never an error."""
    try:
        document = read_json(path, what="measurement")
    except (InvalidInputError, OSError, ValueError, RecursionError):
        # Corrupt, unreadable, gone since listed, or absurdly nested/huge numbers: not ours.
        return None
    return document if isinstance(document, dict) else None


def _same_file(candidate: Path, model: Path) -> bool:
    try:
        return os.path.samefile(candidate, model)
    except (OSError, ValueError):  # missing, unreadable, or a NUL byte in the path
        return False


def _from_deployment(path: Path, model: Path, mode: str, mtime_ns: int) -> _Measured | None:
    """A deployment config's choice for ``model`` in ``mode``; None when it is about another."""
    try:
        # One parser for deployment configs: it resolves `model` against the config's folder.
        config = read_deployment(path)
    except (InvalidInputError, OSError, ValueError, TypeError, RecursionError):
        return None
    if config.mode != mode or not _same_file(config.model, model):
        return None
    if not config.session.providers:
        return None
    provider = _provider(config.session.providers[0])
    measured = config.measured
    key, unit = ("frame_p50_ms", "per frame") if mode == "streaming" else ("p50_ms", "per call")
    value = _milliseconds(measured.get(key))
    timing = f"p50 {_ms(value)} ms {unit} on {provider}" if value is not None else provider
    shape = f"batch {config.batch}" + (f", chunk {config.chunk}" if config.chunk else "")
    blocker = None
    if config.session.cuda_graphs:
        blocker = (
            f"its {provider} time was measured with CUDA graphs, which only `edgelstm run "
            f"--config {path.name}` replays"
        )
    recorded = measured.get("weights_sha256")
    return _Measured(
        provider=provider,
        summary=f"{timing} at {shape}",
        provenance=f"deployment config {DEPLOY_SCHEMA}, written {_date(mtime_ns)}",
        host=_host_from_fingerprint(measured.get("host")),
        weights_sha256=recorded if isinstance(recorded, str) else None,
        blocker=blocker,
    )


def _from_report(
    document: dict[str, Any], path: Path, model: Path, mode: str, mtime_ns: int
) -> _Measured | None:
    """A benchmark report's fastest row for ``model`` in ``mode``; None without such rows."""
    rows = document.get("rows")
    if not isinstance(rows, list):
        return None
    key = "frame_p50_ms" if mode == "streaming" else "p50_ms"
    same: dict[str, bool] = {}  # many rows name the same few paths

    def about_model(row: dict[str, Any]) -> bool:
        text = row.get("path")
        if not isinstance(text, str) or not text:
            return False
        if text not in same:
            candidate = Path(text)
            # Rows keep the path as typed, relative to where the benchmark ran: try the
            # report's folder, then the working folder.
            tries = [candidate] if candidate.is_absolute() else [path.parent / candidate, candidate]
            same[text] = any(_same_file(c, model) for c in tries)
        return same[text]

    usable = [
        row
        for row in rows
        if isinstance(row, dict)
        and row.get("runtime") == "onnxruntime"
        and row.get("mode") == mode
        and not row.get("cuda_graphs")  # `run --provider auto` never captures CUDA graphs
        and isinstance(row.get("provider"), str)
        and _positive_int(row.get("batch"))
        and _milliseconds(row.get(key)) is not None
        and about_model(row)
    ]
    if mode == "sequence":
        usable = [row for row in usable if _positive_int(row.get("seq"))]
    if not usable:
        return None
    batch = min(row["batch"] for row in usable)
    at_shape = [row for row in usable if row["batch"] == batch]
    if mode == "sequence":
        # A shorter sequence is always faster: compare providers at one length only.
        seq = min(row["seq"] for row in at_shape)
        at_shape = [row for row in at_shape if row["seq"] == seq]
        shape = f"batch {batch} x {seq} steps"
    else:
        shape = f"batch {batch}"  # every chunk size competes per frame, as --tune does

    def cost(row: dict[str, Any]) -> tuple[float, str]:
        return (float(row[key]), str(row["provider"]))  # the name breaks ties: deterministic

    best = min(at_shape, key=cost)
    provider = _provider(best["provider"])
    unit = "per frame" if mode == "streaming" else "per call"
    chunk = f", chunk {best['chunk']}" if mode == "streaming" and best.get("chunk") else ""
    summary = f"p50 {_ms(float(best[key]))} ms {unit} on {provider} at {shape}{chunk}"
    others = [row for row in at_shape if _provider(row["provider"]) != provider]
    if others:
        runner_up = min(others, key=cost)
        summary += f", next {_provider(runner_up['provider'])} {_ms(float(runner_up[key]))} ms"
    environment = document.get("environment")
    environment = environment if isinstance(environment, dict) else {}
    stamp = environment.get("timestamp")
    when = stamp[:10] if isinstance(stamp, str) and stamp else _date(mtime_ns)
    recorded = best.get("weights_sha256")
    return _Measured(
        provider=provider,
        summary=summary,
        provenance=f"benchmark report {_BENCHMARK_SCHEMA}, measured {when}",
        host=_host_from_environment(environment),
        weights_sha256=recorded if isinstance(recorded, str) else None,
    )


# --------------------------------------------------------------------------------------------
# small pure helpers


def _host_from_fingerprint(value: Any) -> _Host | None:
    """A :func:`host_fingerprint` document as compared; None when it is not one."""
    if not isinstance(value, Mapping):
        return None
    cpu, gpus = value.get("cpu"), value.get("gpus")
    if not isinstance(cpu, str) or not cpu.strip() or not isinstance(gpus, list):
        return None
    if not all(isinstance(name, str) for name in gpus):
        return None
    # GPU order is nvidia-smi's enumeration order, not a property of the machine.
    return cpu.strip(), tuple(sorted(name.strip() for name in gpus))


def _host_from_environment(environment: Mapping[str, Any]) -> _Host | None:
    """The host of a benchmark report's ``environment`` (``cpu.model``, ``gpus[].name``)."""
    cpu = environment.get("cpu")
    gpus = environment.get("gpus")
    if not isinstance(cpu, Mapping) or not isinstance(gpus, list):
        return None
    if not all(isinstance(gpu, Mapping) for gpu in gpus):
        return None
    return _host_from_fingerprint({"cpu": cpu.get("model"), "gpus": [g.get("name") for g in gpus]})


def _describe(host: _Host | None) -> str:
    if host is None:
        return "unknown"
    cpu, gpus = host
    return f"CPU {cpu!r}, " + (f"GPUs {', '.join(gpus)}" if gpus else "no NVIDIA GPU")


def _provider(text: str) -> str:
    """A measured provider as ``--provider`` takes it: short name, then ``:device`` if any."""
    # --provider's own "name:device" spelling (openvino:GPU); the device part is kept so auto
    # runs where the measurement ran.
    try:
        name, device = split_device(text)
    except InvalidInputError:  # "name:" with nothing after it: no device
        name, device = text.strip().rstrip(":"), None
    return short_name(name) + (f":{device}" if device else "")


def _positive_int(value: Any) -> bool:
    # bool is an int subclass: `true` must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _milliseconds(value: Any) -> float | None:
    """A usable timing: a finite, non-negative number (not a bool); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _ms(value: float) -> str:
    return f"{value:.3g}"


def _date(mtime_ns: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(mtime_ns / 1e9))
