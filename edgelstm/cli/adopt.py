"""``edgelstm adopt``: a foreign stateful ONNX model's streaming contract, declared once in a
copy (:mod:`edgelstm.exporters.adopt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgelstm.cli.app import print_notes
from edgelstm.errors import InvalidInputError

_Model = Annotated[Path, typer.Argument(help="The ONNX model to adopt (left as it is).")]
_Out = Annotated[Path, typer.Option(help="The adopted copy to write.", show_default=False)]
_State = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        "--state",
        help="A state pair IN=OUT (repeat: --state h=hn --state c=cn).",
        show_default=False,
    ),
]
_Constant = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--constant", help="An input fed the same value every call: NAME=VALUE.", show_default=False
    ),
]
_Frames = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="The frame input (default: the float input left).", show_default=False),
]
_Output = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="The output that makes the rows (default: the first).", show_default=False),
]
_Task = Annotated[str, typer.Option(help="raw (outputs as they are) or classify (logits).")]
_Classes = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="classify: class names in output order, comma-separated.", show_default=False
    ),
]
_Overwrite = Annotated[bool, typer.Option(help="Replace an existing --out.")]


def _pairs(items: list[str] | None, option: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise InvalidInputError(f"{option} {item}: give NAME=VALUE, e.g. {option} h=hn")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def adopt(
    model: _Model,
    out: _Out,
    state: _State = None,
    constant: _Constant = None,
    frames: _Frames = None,
    output: _Output = None,
    task: _Task = "raw",
    classes: _Classes = None,
    overwrite: _Overwrite = False,
) -> None:
    """Declare a foreign stateful model's streaming contract in a copy, checked by running it."""
    from edgelstm.cli.console import stderr_console
    from edgelstm.exporters.adopt import AdoptOptions
    from edgelstm.exporters.adopt import adopt as adopt_model

    options = AdoptOptions(
        frames=frames,
        states=_pairs(state, "--state"),
        constants=_pairs(constant, "--constant"),
        output=output,
        task=task,
        classes=tuple(c.strip() for c in (classes or "").split(",") if c.strip()),
        overwrite=overwrite,
    )
    result = adopt_model(model, out, options)
    console = stderr_console()
    print_notes(console, [f"checked: {line}" for line in result.checked])
    print_notes(console, [f"not checked: {line}" for line in result.unchecked])
    print_notes(console, result.notes)
    meta = result.metadata
    per_call = " (one window per call)" if meta.stream_frames_per_call == 1 else ""
    typer.echo(
        f"wrote {result.path}: streaming{per_call}, state {', '.join(meta.state)}, "
        f"{len(meta.feature_names)} features per frame, task {meta.task}; stream it with "
        f"edgelstm run {result.path} --stream or edgelstm serve {result.path}"
    )
