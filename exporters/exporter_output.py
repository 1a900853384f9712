"""What the torch exporters print and raise, turned into what a user can act on.

The exporters print progress, deprecation warnings and, when an operator fails, a whole
Torch IR dump; stdout is reserved for results and a failure is one ``error:`` line. So their
output is captured (kept for ``--debug``) and a refused operator is named with its fix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

from edgelstm.errors import first_line

__all__ = ["captured_output", "explain_export_failure"]


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Everything the exporters print, kept for ``--debug`` instead of shown.

    The TorchScript exporter's C++ side writes a whole Torch IR dump to file descriptor 1 when
    an operator fails, below Python's sys.stdout, and stdout is reserved for results: both
    descriptors and Python's streams are redirected into the buffer this yields. Deprecation
    warnings are dropped (they are not the user's to act on).
    """
    buffer = io.StringIO()
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed" is noise here
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with (
                    warnings.catch_warnings(),
                    contextlib.redirect_stdout(buffer),
                    contextlib.redirect_stderr(buffer),
                ):
                    warnings.simplefilter("ignore")
                    yield buffer
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                sink.seek(0)
                buffer.write(sink.read().decode("utf-8", "replace"))
    finally:
        for fd in saved:
            os.close(fd)
        registration.setLevel(level)


#: The TorchScript exporter's refusal of one operator: "... export of operator NAME, WHY".
_UNSUPPORTED = re.compile(r"ONNX export of operator ([\w:.]+)(?:,\s*([^.\[]+?)\.)?")


def explain_export_failure(exporter: str, exc: BaseException) -> str:
    """One line for an exporter's exception: the operator and what to do when the exporter
    refused one, else the exception's first line."""
    text = str(exc)
    match = _UNSUPPORTED.search(text)
    if match is None:
        return f"export failed ({type(exc).__name__}: {first_line(exc)})"
    operator, why = match.group(1), (match.group(2) or "").strip()
    other = "dynamo" if exporter == "torchscript" else "torchscript"
    if operator.startswith("adaptive_"):
        fix = (
            "use fixed pooling (e.g. nn.AvgPool2d with a kernel size) or keep that axis "
            "static (--dynamic-axes)"
        )
    else:
        fix = "rewrite it with supported operations or keep the axis static (--dynamic-axes)"
    because = f" ({why})" if why else ""
    return f"operator {operator} is not supported{because}: {fix}, or use --exporter {other}"
