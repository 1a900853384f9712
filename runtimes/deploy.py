"""Deployment configs: the provider, options and artifact ``edgelstm benchmark --tune`` chose.

A deployment config is a small JSON file (schema ``edgelstm.deploy/1``) that
``edgelstm run --config deploy.json`` reads instead of ``MODEL`` and the session flags, so
what was measured is exactly what runs. The model path is stored relative to the config
file when it lives next to it, so the pair can be copied to a device together.

Example::

    >>> config = read_deployment(Path("deploy.json"))  # doctest: +SKIP
    >>> config.model, config.session.providers  # doctest: +SKIP
    (PosixPath('out/model.int8.onnx'), ('cpu',))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import read_json, write_json_atomic
from edgelstm.runtimes.session import SessionConfig

__all__ = ["DEPLOY_SCHEMA", "DeploymentConfig", "read_deployment", "write_deployment"]

DEPLOY_SCHEMA = "edgelstm.deploy/1"

_SESSION_FIELDS: dict[str, Any] = {
    "providers": tuple,
    "fallback": bool,
    "intra_op_threads": (int, type(None)),
    "inter_op_threads": (int, type(None)),
    "spinning": (bool, type(None)),
    "graph_optimization": str,
    "memory_arena": bool,
    "cuda_device": int,
    "cuda_graphs": bool,
    "tensorrt_fp16": bool,
    "tensorrt_cache": (str, type(None)),
}


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


def _session_from_json(raw: Any, where: Path) -> SessionConfig:
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where}: 'session' must be an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        expected = _SESSION_FIELDS.get(key)
        if expected is None:
            raise InvalidInputError(f"{where}: unknown session setting {key!r}")
        if expected is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInputError(f"{where}: session.{key} must be a list of names")
            value = tuple(value)
        elif not isinstance(value, expected) or (
            isinstance(value, bool)
            and key not in ("fallback", "spinning", "memory_arena", "cuda_graphs", "tensorrt_fp16")
        ):
            raise InvalidInputError(f"{where}: session.{key} has the wrong type ({value!r})")
        if key == "tensorrt_cache" and value is not None:
            value = Path(value)
        values[key] = value
    return SessionConfig(**values)


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
        session=_session_from_json(raw.get("session", {}), path),
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
