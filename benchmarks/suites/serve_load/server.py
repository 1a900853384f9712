"""The server under load: ``edgelstm serve`` in a subprocess of this interpreter, started on a
free loopback port, asked outside the load, and stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.benchmarks.suites.serve_load.sampling import parse_metrics, process_usage

__all__ = ["Server", "recover", "start_server", "stop_server"]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str, method: str = "GET", body: str | None = None) -> tuple[int, str]:
        """A plain request outside the load (http.client: no proxy settings apply)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            return reply.status, reply.read().decode()
        finally:
            conn.close()

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.get("/metrics")[1])

    def sample(self) -> tuple[float, float]:
        """(resident MiB, CPU seconds so far) of the server process."""
        return process_usage(self.process.pid)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(model: Path, flags: Sequence[str], log: Path, timeout_s: float = 60) -> Server:
    """``edgelstm serve`` in a subprocess of this interpreter, once ``/healthz`` says ok."""
    port = free_port()
    cmd = [sys.executable, "-m", "edgelstm", "serve", str(model), "--port", str(port), *flags]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited {process.returncode}: {log.read_text()[-800:]}")
        with contextlib.suppress(OSError):
            if server.get("/healthz")[0] == 200:
                return server
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"the server did not become healthy in {timeout_s:g} s")


def stop_server(server: Server, timeout_s: float = 30) -> int | None:
    """SIGTERM, then the exit code (None: it had to be killed)."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        return None


def recover(server: Server, streams: int, message: str) -> dict[str, Any]:
    """After the load: end its streams, then /healthz and one request on a fresh stream (a
    server that was overloaded must serve again)."""
    ended = Counter(server.get(f"/v1/streams/s{i}", "DELETE")[0] for i in range(streams))
    health = server.get("/healthz")[0]
    status, _ = server.get("/v1/streams/after-load/frames", "POST", message)
    ended_by_status = {str(k): v for k, v in sorted(ended.items())}
    return {"ended": ended_by_status, "healthz": health, "request": status,
            "ok": health == status == 200}  # fmt: skip
