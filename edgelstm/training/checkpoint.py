"""Checkpoint folders: ``config.json`` + ``model.safetensors`` + ``metrics.json``, no pickle.

A checkpoint holds everything later stages need: the architecture to rebuild the model,
normalization statistics and labels to reproduce inputs and interpret outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.config import RunRecord, from_dict, to_dict
from edgelstm.errors import CheckpointError
from edgelstm.fileio import atomic_folder, file_sha256, read_json, recover_interrupted_replace

if TYPE_CHECKING:
    from edgelstm.training.models import SequenceModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the record, the model in eval mode and its test metrics."""

    path: Path
    record: RunRecord
    model: SequenceModel
    metrics: dict[str, Any]


#: Manifest of SHA-256 digests of the files above, written last and checked on load.
CHECKSUMS_FILE = "checksums.json"
CHECKSUMS_SCHEMA = "edgelstm.checksums/1"
#: Files whose bytes the manifest covers (metrics are a report, not an input).
_CHECKED_FILES = (CONFIG_FILE, WEIGHTS_FILE)


def verify_checksums(run_dir: Path) -> bool:
    """Compare a checkpoint's files with its manifest; False when it has none (older runs).

    Raises :class:`CheckpointError` naming the first file whose bytes changed since
    training wrote it.
    """
    path = Path(run_dir) / CHECKSUMS_FILE
    if not path.is_file():
        return False
    manifest = read_json(path, what="checksum manifest", error=CheckpointError)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("schema") != CHECKSUMS_SCHEMA or not isinstance(files, dict):
        raise CheckpointError(f"{path} is not an edgelstm checksum manifest; retrain or restore it")
    for name, expected in files.items():
        target = Path(run_dir) / str(name)
        if not target.is_file() or file_sha256(target) != expected:
            raise CheckpointError(
                f"{target} does not match the checksum stored when edgelstm wrote it: the file "
                "was modified or is corrupt; retrain or restore it"
            )
    return True


def save_checkpoint(
    out: Path,
    record: RunRecord,
    model: SequenceModel,
    metrics: dict[str, Any],
    *,
    overwrite: bool = False,
) -> None:
    """Write the checkpoint folder atomically (a failure leaves no partial folder)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_folder(Path(out), overwrite=overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(to_dict(record), indent=2) + "\n")
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        manifest = {
            "schema": CHECKSUMS_SCHEMA,
            "files": {name: file_sha256(tmp / name) for name in _CHECKED_FILES},
        }
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def read_run_record(run_dir: Path) -> RunRecord:
    """Read and validate ``config.json`` of a checkpoint folder."""
    run_dir = Path(run_dir)
    # A replace killed between its two renames (where folders cannot be swapped atomically)
    # left the old checkpoint beside the path: put it back rather than call it missing.
    recover_interrupted_replace(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(
            f"checkpoint folder {run_dir} does not exist; train one with `edgelstm train --out`"
        )
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; {run_dir} is not an edgelstm checkpoint folder")
    data = read_json(path, what="config", error=CheckpointError, fix="; retrain or restore it")
    return from_dict(RunRecord, data, where=str(path))


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """Load a checkpoint folder written by :func:`save_checkpoint`.

    Example:
        >>> ckpt = load_checkpoint(Path("runs/jv"))  # doctest: +SKIP
        >>> ckpt.record.class_labels  # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from edgelstm.training.models import build_model

    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the checkpoint is incomplete, retrain it")
    verify_checksums(run_dir)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} cannot be read ({exc}); retrain or restore it") from None
    model = build_model(record.model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch between config.json and the weights
        # torch puts the useful line (which tensor, which shapes) last
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
        raise CheckpointError(f"{weights} does not match {CONFIG_FILE}: {first}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match {CONFIG_FILE}: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    model.eval()
    metrics_path = run_dir / METRICS_FILE
    metrics: dict[str, Any] = {}
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return Checkpoint(path=run_dir, record=record, model=model, metrics=metrics)
