"""A timing worker in a fresh interpreter, reached over a pipe.

On POSIX the worker is ``python -I -c BOOT FD``, not multiprocessing's ``spawn``: spawn runs
the caller's main script again in the child (as ``__mp_main__``), so a user's script that
calls :func:`~edgelstm.benchmarks.harness.run_benchmark` without an
``if __name__ == "__main__":`` guard would train and export again in every worker and then
fail, and a program read from stdin (``python - <<EOF``) could not start one at all. The
child reads the parent's ``sys.path`` from the pipe before importing anything of ours, so it
imports the same edgelstm as the parent (``-I`` keeps the working folder off the path: a
checkout's root holds an ``edgelstm/`` folder without the rooms). Windows has no ``pass_fds``:
there the worker is a spawned process, with spawn's usual need for the guard.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["WorkerProcess"]

#: The child's first lines: Ctrl-C in the terminal reaches the whole process group, and the
#: parent answers it by killing its workers, so the child ignores it (no second traceback);
#: the connection from argv[1], the parent's import path, then the target
#: ``module:function`` and its argument, called as ``function(connection, argument)``.
_BOOT = """\
import importlib, signal, sys
from multiprocessing.connection import Connection
signal.signal(signal.SIGINT, signal.SIG_IGN)
connection = Connection(int(sys.argv[1]))
sys.path[:] = connection.recv()
module, function = connection.recv().split(":")
argument = connection.recv()
getattr(importlib.import_module(module), function)(connection, argument)
"""


class WorkerProcess:
    """``target(connection, argument)`` running in a new Python process; ``connection`` is
    this side of the pipe. The child is killed if it outlives :meth:`close`."""

    def __init__(self, target: str, argument: Any) -> None:
        pipe: tuple[Connection, Connection] = multiprocessing.Pipe()
        self.connection, child = pipe
        self._process: subprocess.Popen[bytes] | None = None
        self._spawned: Any = None
        if sys.platform == "win32":
            module, function = target.split(":")
            context = multiprocessing.get_context("spawn")
            callable_ = getattr(importlib.import_module(module), function)
            self._spawned = context.Process(target=callable_, args=(child, argument), daemon=True)
            self._spawned.start()
            child.close()
            return
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        for message in (sys.path, target, argument):
            self.connection.send(message)

    @property
    def exitcode(self) -> int | None:
        """The exit status once the child has ended, else None."""
        if self._spawned is not None:
            code: int | None = self._spawned.exitcode
            return code
        return None if self._process is None else self._process.poll()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the child to end."""
        if self._spawned is not None:
            self._spawned.join(timeout_s)
        elif self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout_s)

    def close(self) -> None:
        """Kill the child if it still runs, reap it and close the pipe."""
        if self.exitcode is None:
            if self._spawned is not None:
                self._spawned.kill()
            elif self._process is not None:
                self._process.kill()
        self.join(5)
        self.connection.close()
