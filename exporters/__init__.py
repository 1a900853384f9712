"""Export room: PyTorch → ONNX export with multi-shape validation, and INT8/FP16 quantization.

Example:
    >>> from edgelstm.exporters import export
    >>> result = export("runs/jv", "jv.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ExportResult", "export", "export_user_model"]

if TYPE_CHECKING:
    from edgelstm.exporters.onnx import ExportResult, export
    from edgelstm.exporters.user_models import export_user_model


def __getattr__(name: str) -> Any:
    # Lazy: importing the room must not import torch.
    if name == "export_user_model":
        from edgelstm.exporters import user_models

        return user_models.export_user_model
    if name in __all__:
        from edgelstm.exporters import onnx

        return getattr(onnx, name)
    raise AttributeError(f"module 'edgelstm.exporters' has no attribute {name!r}")
