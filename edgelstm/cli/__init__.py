"""The ``edgelstm`` command line: parse, call one library function, print.

Errors from the library (:class:`edgelstm.errors.EdgeLSTMError`) are caught once, in
:func:`main`, and become one ``error:`` line on stderr with exit code 2 (bad input) or 1
(a check failed). ``--debug`` shows the traceback instead.

This module owns that boundary and the order of the commands; the app and what the commands
share are in :mod:`edgelstm.cli.app`, each command group in its own module. Heavy imports
(torch, onnxruntime, aeon) happen inside the commands, so ``edgelstm --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

from edgelstm.cli import adopt, benchmark, device, export, inference, providers, serve, train
from edgelstm.cli.app import app, state
from edgelstm.errors import EdgeLSTMError
from edgelstm.extras import missing_dependency, missing_module

__all__ = ["app", "main", "run"]

# Registered here, not by decorators in each module, so `edgelstm --help` lists them in the
# order of the pipeline whatever order the modules are imported in.
for _name, _command in (
    ("train", train.train),
    ("export", export.export),
    ("quantize", export.quantize),
    ("adopt", adopt.adopt),
    ("providers", providers.providers),
    ("run", inference.run_command),
    ("serve", serve.serve),
    ("benchmark", benchmark.benchmark),
    ("quickstart", benchmark.quickstart),
    ("bundle", device.bundle),
    ("verify", device.verify),
):
    app.command(name=_name)(_command)


def _framework_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """(usage errors, exits, aborts) raised by typer's command-line parser.

    Older typers raise click's classes and re-export them; typer >= 0.20 vendors its own copy
    of click and no longer installs click. Both expose ``Exit``, ``Abort`` and
    ``BadParameter``, whose ancestry names the usage-error base, so nothing here imports click
    (a module edgelstm does not declare) or typer's private modules.
    """
    usage = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return (usage,), (typer.Exit,), (typer.Abort, KeyboardInterrupt)


def _usage_message(exc: BaseException) -> str:
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    where = ctx.command_path if ctx is not None else "edgelstm"
    return f"error: {message} (see '{where} --help')"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    usage, exits, aborts = _framework_exceptions()
    try:
        state["argv"] = list(sys.argv[1:] if argv is None else argv)
        code = app(args=argv, standalone_mode=False, prog_name="edgelstm")
    except EdgeLSTMError as exc:
        if state["debug"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except exits as exc:
        return int(getattr(exc, "exit_code", 0))
    except ImportError as exc:
        # An extra's module imported by a command (torch for train/export, aeon for .ts files
        # ...) on an install without that extra: one line naming the extra, not a traceback.
        if state["debug"] or missing_module(exc) is None:
            raise
        command = next((a for a in state["argv"] if not a.startswith("-")), "")
        print(f"error: {missing_dependency(exc, f'edgelstm {command}'.strip())}", file=sys.stderr)
        return 2
    except MemoryError:
        if state["debug"]:
            raise
        print(
            "error: out of memory; use a smaller input or --batch-size, or a machine with more "
            "memory",
            file=sys.stderr,
        )
        return 2
    except aborts:
        print("interrupted", file=sys.stderr)
        return 130
    except usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)  # type: ignore[attr-defined]
            return 2
        print(_usage_message(exc), file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    if isinstance(code, int) and code != 0:
        # typer turns Ctrl-C into a return value of 130 when not in standalone mode.
        if code == 130:
            print("interrupted", file=sys.stderr)
        return code
    return 0


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
