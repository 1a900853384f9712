"""Deployment configs: the provider, options and artifact ``edgelstm benchmark --tune`` chose.

A deployment config is a small JSON file (schema ``edgelstm.deploy/1``) that
``edgelstm run --config deploy.json`` reads instead of ``MODEL`` and the session flags, so
what was measured is what runs: a streaming deployment streams ``chunk`` frames per push, a
sequence deployment runs ``batch`` sequences per call. A setting given explicitly beside the
config overrides it, and :func:`resolve_deployment` names each override in a note. The model
path is stored relative to the config file when it lives next to it, so the pair can be
copied to a device together.

Example::

    >>> config = read_deployment(Path("deploy.json"))  # doctest: +SKIP
    >>> config.model, config.session.providers  # doctest: +SKIP
    (PosixPath('out/model.int8.onnx'), ('cpu',))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import read_json, write_json_atomic
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = [
    "DEPLOY_SCHEMA",
    "DeploymentConfig",
    "ResolvedDeployment",
    "read_deployment",
    "resolve_deployment",
    "write_deployment",
]

DEPLOY_SCHEMA = "edgelstm.deploy/1"
_SESSION_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SessionConfig))


@dataclass(frozen=True)
class DeploymentConfig:
    """Which artifact to run, how, and the measurement that justified it."""

    model: Path
    mode: str  # sequence or streaming
    session: SessionConfig
    batch: int = 1
    chunk: int | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The config document; ``model`` relative to ``relative_to`` when it is inside it."""
        model = self.model
        if relative_to is not None:
            try:
                model = Path(os.path.relpath(self.model.resolve(), relative_to.resolve()))
            except ValueError:  # another drive on Windows
                model = self.model.resolve()
        return {
            "schema": DEPLOY_SCHEMA,
            "model": model.as_posix(),
            "mode": self.mode,
            "batch": self.batch,
            "chunk": self.chunk,
            "session": self.session.to_json(),
            "measured": self.measured,
            "reason": self.reason,
        }


def _positive_int(value: Any) -> bool:
    # bool is an int subclass: `true` must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def read_deployment(path: Path) -> DeploymentConfig:
    """Read and check a deployment config; the model path resolves against its folder."""
    path = Path(path)
    raw = read_json(path, what="deployment config")
    if not isinstance(raw, dict) or raw.get("schema") != DEPLOY_SCHEMA:
        raise InvalidInputError(
            f"{path} is not an edgelstm deployment config (schema {DEPLOY_SCHEMA}); write one "
            "with `edgelstm benchmark --tune`"
        )
    model = raw.get("model")
    mode = raw.get("mode")
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f"{path}: 'model' must be a path")
    if mode not in ("sequence", "streaming"):
        raise InvalidInputError(f"{path}: 'mode' must be sequence or streaming, got {mode!r}")
    batch = raw.get("batch", 1)
    chunk = raw.get("chunk")
    if not _positive_int(batch):
        raise InvalidInputError(f"{path}: 'batch' must be a positive integer")
    if chunk is not None and not _positive_int(chunk):
        raise InvalidInputError(f"{path}: 'chunk' must be a positive integer or null")
    measured = raw.get("measured") or {}
    if not isinstance(measured, dict):
        raise InvalidInputError(f"{path}: 'measured' must be an object")
    model_path = Path(model)
    if not model_path.is_absolute():
        model_path = path.parent / model_path
    return DeploymentConfig(
        model=model_path,
        mode=mode,
        session=SessionConfig.from_json(raw.get("session", {}), where=f"{path}: session"),
        batch=batch,
        chunk=chunk,
        measured=dict(measured),
        reason=str(raw.get("reason", "")),
    )


def write_deployment(config: DeploymentConfig, path: Path, *, overwrite: bool = False) -> None:
    """Write ``config`` to ``path`` atomically, with the model path relative to its folder."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    write_json_atomic(path, config.to_json(relative_to=parent), overwrite=overwrite)


#: The ``edgelstm run`` option behind each setting, so a note names what the user typed.
_OPTIONS = {
    "providers": "--provider",
    "fallback": "--fallback",
    "intra_op_threads": "--threads",
    "inter_op_threads": "--inter-op-threads",
    "spinning": "--spinning",
    "graph_optimization": "--graph-optimization",
    "memory_arena": "--memory-arena",
    "cuda_device": "--cuda-device",
    "tensorrt_fp16": "--tensorrt-fp16",
    "tensorrt_cache": "--tensorrt-cache",
    "batch": "--batch-size",
    "chunk": "--chunk",
}


def _typed(name: str, value: Any) -> str:
    """How the option that sets ``name`` to ``value`` reads on the command line."""
    option = _OPTIONS.get(name)
    if option is None:  # a setting run has no option for (cuda_graphs): the Python spelling
        return f"{name}={value!r}"
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    if name == "providers":
        return f"{option} {','.join(value)}"
    if name == "intra_op_threads" and value is None:
        return f"{option} 0"
    return f"{option} {value}"


def _shown(name: str, value: Any) -> str:
    """A setting's value for a note."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none" if name == "tensorrt_cache" else "ONNX Runtime's default"
    return str(value)


def _override_note(name: str, value: Any, old: Any, source: Path | str) -> str:
    return f"{_typed(name, value)} overrides {source} ({name} was {_shown(name, old)})"


@dataclass(frozen=True)
class ResolvedDeployment:
    """A deployment config with the caller's explicit overrides applied, and what to say."""

    config: DeploymentConfig
    #: one line per override, naming the option, the config and the value it replaced.
    notes: tuple[str, ...]

    @property
    def streams(self) -> bool:
        """Whether the run streams frames (a streaming deployment) or takes whole sequences."""
        return self.config.mode == "streaming"

    @property
    def frames_per_push(self) -> int:
        """Frames per streaming push: the config's chunk, or one frame at a time."""
        return self.config.chunk or 1


def resolve_deployment(
    deployment: DeploymentConfig,
    *,
    source: Path | str = "the deployment config",
    session: Mapping[str, Any] | None = None,
    batch: int | None = None,
    chunk: int | None = None,
    stream: bool | None = None,
) -> ResolvedDeployment:
    """What ``run --config`` runs: the config, with what the caller gave explicitly on top.

    ``session`` holds only the :class:`SessionConfig` settings the caller set (a CLI flag
    left at its default is not a choice and must not replace the tuned value); ``batch``,
    ``chunk`` and ``stream`` are None unless given. An override that changes a value replaces
    it and adds a note naming it, because the config's measured numbers no longer describe
    the run; one the deployment's mode cannot honour is an error, never dropped: ``chunk``
    or ``stream`` on a sequence deployment (its model takes whole sequences), ``batch`` or
    ``stream=False`` on a streaming one.

    Example::

        >>> config = read_deployment(Path("deploy.json"))  # doctest: +SKIP
        >>> resolve_deployment(config, source="deploy.json", session={"cuda_device": 1}).notes
        ... # doctest: +SKIP
        ('--cuda-device 1 overrides deploy.json (cuda_device was 0)',)
    """
    if deployment.mode == "sequence":
        wrong = "--chunk" if chunk is not None else "--stream" if stream else None
        what = f"{deployment.model.name} takes whole sequences"
    else:
        wrong = "--batch-size" if batch is not None else "--no-stream" if stream is False else None
        what = f"frames are pushed {deployment.chunk or 1} at a time; --chunk changes that"
    if wrong is not None:
        raise InvalidInputError(
            f"{wrong} does not apply to {source}, a {deployment.mode} deployment ({what}); "
            f"drop {wrong}"
        )
    given = dict(session or {})
    for name in given:
        if name not in _SESSION_FIELD_NAMES:
            raise InvalidInputError(f"unknown session setting {name!r} to override {source}")
    current = deployment.session
    notes = [
        _override_note(name, value, getattr(current, name), source)
        for name, value in given.items()
        if value != getattr(current, name)
    ]
    # A streaming config without a chunk pushes one frame at a time: the result says so.
    chunk_before = (deployment.chunk or 1) if deployment.mode == "streaming" else None
    batch_now = deployment.batch if batch is None else batch
    chunk_now = chunk_before if chunk is None else chunk
    for name, before, now in (
        ("batch", deployment.batch, batch_now),
        ("chunk", chunk_before, chunk_now),
    ):
        if now != before:
            notes.append(_override_note(name, now, before, source))
    if deployment.mode == "streaming" and deployment.batch > 1:
        # run feeds one stream; the config's per-frame numbers were for several at once.
        notes.append(
            f"{source} was measured with {deployment.batch} streams at once; this run feeds "
            "one stream, so its per-frame latency differs"
        )
    config = dataclasses.replace(
        deployment,
        session=dataclasses.replace(current, **given),
        batch=batch_now,
        chunk=chunk_now,
    )
    return ResolvedDeployment(config, tuple(notes))
