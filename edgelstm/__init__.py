"""edgelstm: LSTM/GRU models from PyTorch training to verified edge inference with ONNX Runtime.

The public API is imported lazily so ``import edgelstm`` (and ``edgelstm --help``) stays fast:
torch, onnxruntime and aeon load only when a function that needs them is called.

Example:
    >>> import edgelstm
    >>> result = edgelstm.train("classify", dataset="JapaneseVowels", out="runs/jv")
    >>> result.metrics["accuracy"]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgelstm.version import __version__

# name -> module that defines it; the contents of `__all__` are guarded by a test.
_EXPORTS: dict[str, str] = {
    "EdgeLSTMError": "edgelstm.errors",
    "InvalidInputError": "edgelstm.errors",
    "CheckFailedError": "edgelstm.errors",
    "MissingDependencyError": "edgelstm.errors",
    "ProviderUnavailableError": "edgelstm.errors",
    "ModelConfig": "edgelstm.config",
    "TrainConfig": "edgelstm.config",
    "TRAIN_PRESETS": "edgelstm.config",
    "RunRecord": "edgelstm.config",
    "build_model": "edgelstm.training.models",
    "train": "edgelstm.training.trainer",
    "TrainResult": "edgelstm.training.trainer",
    "load_checkpoint": "edgelstm.training.checkpoint",
    "Checkpoint": "edgelstm.training.checkpoint",
    "list_datasets": "edgelstm.data.datasets",
    "load_dataset": "edgelstm.data.datasets",
    "load_training_data": "edgelstm.data.readers",
}

__all__ = [
    "TRAIN_PRESETS",
    "CheckFailedError",
    "Checkpoint",
    "EdgeLSTMError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelConfig",
    "ProviderUnavailableError",
    "RunRecord",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "build_model",
    "list_datasets",
    "load_checkpoint",
    "load_dataset",
    "load_training_data",
    "train",
]

if TYPE_CHECKING:
    from edgelstm.config import TRAIN_PRESETS, ModelConfig, RunRecord, TrainConfig
    from edgelstm.data.datasets import list_datasets, load_dataset
    from edgelstm.data.readers import load_training_data
    from edgelstm.errors import (
        CheckFailedError,
        EdgeLSTMError,
        InvalidInputError,
        MissingDependencyError,
        ProviderUnavailableError,
    )
    from edgelstm.training.checkpoint import Checkpoint, load_checkpoint
    from edgelstm.training.models import build_model
    from edgelstm.training.trainer import TrainResult, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgelstm' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        # e.g. edgelstm.train on a device install without torch: name the extra to install.
        from edgelstm.extras import missing_dependency, missing_module

        if missing_module(exc) is None:
            raise
        raise missing_dependency(exc, f"edgelstm.{name}") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
