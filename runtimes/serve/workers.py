"""``edgelstm serve --workers N``: N server processes on one port, one supervisor over them.

One Python process spends a core on HTTP, WebSocket and JSON long before the model needs
one, so the server runs N workers, each a whole server (uvicorn, batcher, its own model
session with one thread) on the port the supervisor claimed (on Linux each worker listens
on it with ``SO_REUSEPORT``, and the kernel spreads connections over them). A stream's
state lives in the worker the :mod:`.directory` names (the one its first request reached);
a request that lands elsewhere is passed there (:mod:`.peers`). The stream limits are
counted across all workers (:mod:`.quota`). SIGHUP is passed to every worker (each swaps
the model in, :mod:`.swap`).

The supervisor never half-serves: if a worker exits while the server is up (its batcher
died, the kernel killed it), the streams it held are gone, so the supervisor stops the
others and exits non-zero for systemd or Kubernetes to restart the whole server. SIGTERM or
SIGINT stops every worker gracefully (in-flight requests finish) and exits 0.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from edgelstm.errors import EdgeLSTMError, InvalidInputError, first_line

__all__ = ["WorkerFailedError", "WorkerPlan", "default_workers", "serve_workers"]

#: More workers than this rarely pays on an edge gateway: each holds a model session and a
#: state table, and past a few cores the model, not request handling, is the limit.
MAX_DEFAULT_WORKERS = 8


class WorkerFailedError(EdgeLSTMError):
    """A worker stopped while the server was up; the server stopped with it."""

    exit_code = 1


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers narrow)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def default_workers(threads: int) -> int:
    """One worker per ``threads`` usable cores, at most :data:`MAX_DEFAULT_WORKERS`: N
    workers of T model threads each should not ask for more cores than there are."""
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cores() // max(1, threads)))


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker process is given (picklable: workers start fresh interpreters)."""

    model: Path
    options: dict[str, Any]


#: Linux spreads connections evenly over sockets sharing a port with SO_REUSEPORT (by a
#: hash of each connection's addresses); one shared listening socket lets whichever worker
#: wakes first take a burst of connects, and every stream of a WebSocket follows its
#: connection. Elsewhere (macOS does not balance reused ports) the workers share a socket.
SPREAD_BY_KERNEL = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _socket(host: str, port: int, *, reuse_port: bool, listen: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _claim_port(host: str, port: int) -> socket.socket:
    """The port the workers will listen on, held by this process, checked free here so a
    port in use fails once, in one line, before any worker starts. With
    :data:`SPREAD_BY_KERNEL` the held socket only reserves the port (it never listens, so
    it never takes a connection); otherwise it is the listening socket the workers share."""
    try:
        if not SPREAD_BY_KERNEL:
            return _socket(host, port, reuse_port=False, listen=True)
        # First without SO_REUSEPORT: that bind fails if anything (another server of ours
        # included, which would otherwise share this port's connections) holds the port.
        probe = _socket(host, port, reuse_port=False, listen=False)
        port = probe.getsockname()[1]
        probe.close()
        return _socket(host, port, reuse_port=True, listen=False)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or "
            "--host"
        ) from None


def _worker_main(plan: WorkerPlan, seat: Any, held: socket.socket, ready: Connection) -> None:
    """A worker process: the app for its seat, on its own socket of the held port (or on
    the held socket itself, where the kernel does not spread connections)."""
    from edgelstm.runtimes.serve import run_app

    _stop_with_parent()
    if SPREAD_BY_KERNEL:
        host, port = held.getsockname()[:2]
        sock = _socket(host, port, reuse_port=True, listen=True)
        held.close()
    else:
        sock = held
    try:
        run_app(plan.model, sockets=[sock], on_ready=ready.send, seat=seat, **plan.options)
    except EdgeLSTMError as exc:  # the batcher died: say why, exit non-zero
        print(f"error: worker {seat.worker}: {first_line(exc)}", flush=True)
        raise SystemExit(1) from None


def _stop_with_parent(period_s: float = 0.5) -> None:
    """Stop this worker (SIGTERM to itself: a graceful shutdown) once its supervisor is
    gone, however it went (SIGKILL, the OOM killer): an orphaned worker would keep serving
    part of the streams on the port, unsupervised, and block a restarted server."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="edgelstm-parent-watch", daemon=True).start()


def serve_workers(
    model: Path,
    *,
    workers: int,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None,
    **options: Any,
) -> None:
    """Serve ``model`` from ``workers`` processes until SIGINT/SIGTERM (see the module
    docstring); ``options`` are :func:`~edgelstm.runtimes.serve.serve`'s, for each worker."""
    sock = _claim_port(host, port)
    folder = Path(tempfile.mkdtemp(prefix="edgelstm-serve-"))  # mode 0700: ours alone
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    from edgelstm.runtimes.serve.directory import StreamDirectory
    from edgelstm.runtimes.serve.peers import WorkerSeat
    from edgelstm.runtimes.serve.quota import StreamQuota

    access = options.get("access")
    counts = StreamQuota.shared_counts(context, access.owners if access is not None else ())
    claims = StreamDirectory.shared_table(context, workers)
    receive_ready, send_ready = context.Pipe(duplex=False)
    plan = WorkerPlan(model, options)
    processes = [
        context.Process(
            target=_worker_main,
            args=(plan, WorkerSeat(worker, workers, folder, counts, claims), sock, send_ready),
            name=f"edgelstm-serve-{worker}",
        )
        for worker in range(workers)
    ]
    stopping: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: stopping.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    if hasattr(signal, "SIGHUP"):  # every worker swaps the model in (see run_app)
        previous[signal.SIGHUP] = signal.signal(
            signal.SIGHUP, lambda signum, _frame: _signal_all(processes, signum)
        )
    try:
        for process in processes:
            process.start()
        failed = _supervise(processes, receive_ready, stopping, on_ready)
    finally:
        # Our handlers stay until the workers are gone: a second SIGTERM (systemd's, a
        # terminal's second Ctrl-C) must not kill this process and orphan them.
        _stop(processes, options.get("graceful_timeout_s", 10))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
    if failed is not None:
        raise WorkerFailedError(
            f"the server stopped: its worker {failed.name} exited (code {failed.exitcode}) and "
            "the streams it held are lost; restart it (a supervisor such as systemd with "
            "Restart=on-failure does)"
        )


def _supervise(
    processes: list[Any],
    ready: Connection,
    stopping: list[int],
    on_ready: Callable[[str], None] | None,
) -> Any:
    """Wait until a signal (None) or a worker's unexpected exit (that worker)."""
    waiting_for = len(processes)
    while not stopping:
        sentinels = [p.sentinel for p in processes]
        for event in wait([ready, *sentinels], timeout=0.5):
            if event is ready:
                url = ready.recv()
                waiting_for -= 1
                if waiting_for == 0 and on_ready is not None:
                    on_ready(url)
            else:
                return next(p for p in processes if p.sentinel == event)
    return None


def _signal_all(processes: list[Any], signum: int) -> None:
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)


def _stop(processes: list[Any], graceful_timeout_s: float) -> None:
    """SIGTERM every worker still running, wait for their graceful shutdown, then kill."""
    _signal_all(processes, signal.SIGTERM)
    for process in processes:
        if process.pid is not None:
            process.join(graceful_timeout_s + 5)
            if process.is_alive():
                process.kill()
                process.join()
