"""One exception hierarchy for everything edgelstm reports to a user.

The CLI catches :class:`EdgeLSTMError` once, prints ``error: <message>`` and exits with
:attr:`EdgeLSTMError.exit_code`. Library users catch the same classes.
"""

from __future__ import annotations


class EdgeLSTMError(Exception):
    """Base class. The message says what is wrong and what to do next."""

    #: Exit code the CLI uses: 2 = bad usage or bad input, 1 = a check failed.
    exit_code: int = 2


class InvalidInputError(EdgeLSTMError):
    """A file, array or option the user gave cannot be used as it is."""


class DatasetNotFoundError(InvalidInputError):
    """A named built-in dataset does not exist."""


class OutputExistsError(InvalidInputError):
    """The output path exists and ``overwrite`` was not given."""


class MissingDependencyError(EdgeLSTMError):
    """An optional dependency (an extra) is not installed."""


class CheckpointError(InvalidInputError):
    """A checkpoint folder is missing files or holds inconsistent content."""


class ProviderUnavailableError(EdgeLSTMError):
    """A requested ONNX Runtime execution provider cannot be used here.

    ``reasons`` holds one line per provider that was tried (the message adds advice on top).
    """

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons or (message,)


class CheckFailedError(EdgeLSTMError):
    """A verification ran and failed (tolerance, accuracy gate, partial quantization)."""

    exit_code = 1


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message, at most ``limit`` characters.

    ONNX Runtime's and the exporters' errors run to pages, and a one-line report needs only
    the head. An exception with no message (``MemoryError()``) gives its class name, so a
    handler that reports a failure can never fail itself on an empty message.

    Example::

        >>> first_line(RuntimeError("bad graph\\n  at node 3"))
        'bad graph'
        >>> first_line(MemoryError())
        'MemoryError'
    """
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def add_details(exc: BaseException, text: str) -> BaseException:
    """Attach ``text`` (a whole error message, an exporter's output) to ``exc`` for
    ``--debug``, whose traceback prints it under the one-line message; returns ``exc``.

    Exception notes print from Python 3.11 on; on 3.10 they are kept in ``__notes__`` (where
    3.11 keeps them) without being printed, rather than failing on a missing ``add_note``.
    """
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]
    return exc


def more_details(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc`` with ``cause``'s whole message attached for ``--debug`` (see
    :func:`add_details`) when it says more than its first line, which ``exc`` already
    carries; returns ``exc``."""
    whole = str(cause).strip()
    if whole and whole != first_line(cause):
        add_details(exc, f"the whole message:\n{whole}")
    return exc
