"""The ``edgelstm`` typer app and what every command shares.

Owns the app object, its command group (booleans shown as flags in ``--help``), the root
options (``--debug``, ``--version``), the state they leave for :func:`edgelstm.cli.main`, and
the ``note:`` / ``warning:`` printers. The commands live in their own modules and are
registered, in ``--help`` order, by :mod:`edgelstm.cli`.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from edgelstm.version import __version__


def _without_flag_metavars(params: list[Any]) -> list[Any]:
    """Give on/off flags an empty metavar: the help prints it instead of ``<bool>``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Group(TyperGroup):
    """typer's command group, with boolean flags shown as flags in every ``--help``.

    typer >= 0.20's rich help prints a type next to every option, so ``--debug <bool>`` reads
    as if the flag took a value; it takes none. The group fixes its own options and those of
    each command it resolves (``--help`` included), so a new command needs nothing extra.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_metavars(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _without_flag_metavars(command.get_params(ctx))
        return command


app = typer.Typer(
    cls=_Group,
    name="edgelstm",
    help="Train LSTM/GRU models and take them to fast, verified edge inference with ONNX Runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

#: ``--overwrite`` of the commands that write a folder (``train``, ``quickstart``).
OverwriteFolderOption = Annotated[bool, typer.Option(help="Replace an existing --out folder.")]


def above_zero(value: float | None) -> float | None:
    """Option callback for a float that must be > 0 (or left out).

    typer's ``min=`` is inclusive and has no open bound, so ``min=0.0`` showed ``x>=0.0`` in
    ``--help`` for options the library then refused at 0; the parser refuses 0 here instead,
    with a usage error (exit 2) that matches the help's "must be > 0". NaN fails ``> 0`` too.
    """
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


#: Set by the root callback and main(): ``debug`` (show tracebacks) and ``argv`` (the
#: arguments main() got, recorded in reports so a run can be repeated).
state: dict[str, Any] = {"debug": False, "argv": []}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgelstm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one error line.")
    ] = False,
    version: Annotated[
        Optional[bool],  # noqa: UP045 - typer needs Optional on Python 3.10
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    state["debug"] = debug


def typed_on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` was typed, not left at its default.

    Flags beside ``--config`` override the config only when typed: a default is no choice and
    must not replace the tuned value, even when it equals the value the user typed.
    """
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def print_notes(console: Any, notes: Any) -> None:
    """``note:`` lines (stderr): facts worth knowing that do not make results wrong."""
    from rich.markup import escape

    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def print_warnings(console: Any, warnings: Any) -> None:
    """``warning:`` lines (stderr): things that can make results wrong, unlike notes."""
    from rich.markup import escape

    for warning in warnings:
        console.print(f"[bold red]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
