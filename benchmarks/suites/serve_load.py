"""Load harness for ``edgelstm serve``: many streams at a fixed frame rate against the real server.

It starts ``edgelstm serve`` as a subprocess on a free loopback port, drives N streams that each
send K-frame requests at HZ/K requests per second (HTTP/1.1 keep-alive or WebSocket), then
stops the server with SIGTERM and expects exit 0. Per point it reports offered vs achieved
frames/s, end-to-end latency measured by the client, the server's batch sizes (from
``/metrics``), rejected/lost/reordered requests, server RSS and CPU over time, whether the
server serves again afterwards, and rows of a few streams checked against an offline
:class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession` run.
``--baseline`` runs each point
again against ``--max-batch 1`` (one model call per request), so the batcher's gain is a ratio
measured side by side; a list in ``--streams`` (or ``--sweep``) finds the saturation point.

Run from the repository root (results land in ``benchmarks/results/``)::

    python -m edgelstm.benchmarks.suites.serve_load --model reference --streams 100,500 --baseline
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import itertools
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COMMAND = "python -m edgelstm.benchmarks.suites.serve_load"
SCHEMA = "edgelstm.serve-load/1"
#: Back-off after a 429/503 that names none (the server's own Retry-After is 1 s).
RETRY_AFTER_S = 1.0
DEFAULT_SWEEP = (100, 250, 500, 750, 1000)
#: ``edgelstm serve`` flags the harness forwards when given.
SERVER_FLAGS = ("--max-streams", "--max-batch", "--max-delay-ms", "--idle-timeout",
                "--max-frames", "--provider", "--threads")  # fmt: skip


@dataclass(frozen=True)
class LoadPlan:
    """One point's load: ``streams`` streams, each sending ``frames_per_request`` frames per
    request at ``rate_hz`` frames per second for ``duration_s`` seconds."""

    streams: int
    rate_hz: float = 100.0
    frames_per_request: int = 10
    duration_s: float = 10.0
    protocol: str = "http"  # "http" or "ws"
    binary: bool = False  # ws only: raw float32 frames instead of JSON
    grace_s: float = 10.0  # after the schedule ends, how long late streams may catch up
    check_streams: int = 3

    @property
    def period_s(self) -> float:
        return self.frames_per_request / self.rate_hz

    @property
    def requests_per_stream(self) -> int:
        return max(1, round(self.duration_s / self.period_s))

    @property
    def label(self) -> str:
        return "http" if self.protocol == "http" else f"ws-{'binary' if self.binary else 'json'}"


@dataclass
class StreamLog:
    """What one client stream saw."""

    sent: int = 0
    ok: int = 0
    lost: int = 0
    reordered: int = 0
    dropped: int = 0  # due while backing off after a 429/503: never sent
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    max_lag: float = 0.0
    next_frame: int = 0  # frames the server has accepted from this stream
    checked: list[tuple[int, list[dict[str, Any]]]] | None = None  # (block, rows) per reply


def frame_pool(features: int, norm: Mapping[str, Any] | None, source: Path | None) -> np.ndarray:
    """Frames in original units ``[n, features]``: the valid frames of ``source``'s sequences,
    or normal draws around the model's stored statistics (a sensor's own scale)."""
    if source is not None:
        with np.load(source) as data:
            x = np.asarray(data["X"], np.float64)
            lengths = data["lengths"] if "lengths" in data.files else [x.shape[1]] * len(x)
        pool: np.ndarray = np.concatenate([s[: int(n)] for s, n in zip(x, lengths, strict=True)])
    else:
        pool = np.random.default_rng(0).standard_normal((4096, features))
        if norm is not None:
            pool = pool * np.asarray(norm["std"]) + np.asarray(norm["mean"])
    if pool.ndim != 2 or pool.shape[1] != features:
        raise SystemExit(f"error: frames of shape {list(pool.shape)}; the model takes {features}")
    # Six decimals, as a sensor would send them; the offline check decodes the same bytes.
    return pool.round(6)


def encode_blocks(pool: np.ndarray, k: int, plan: LoadPlan) -> list[bytes | str]:
    """Each K-frame block as the message the protocol sends, encoded once before the load
    (encoding per request would spend the client's CPU on the load generator itself)."""
    blocks = pool[: len(pool) // k * k].reshape(-1, k, pool.shape[1])
    if not len(blocks):
        raise SystemExit(f"error: fewer than {k} frames to send")
    if plan.binary:
        return [b.astype("<f4").tobytes() for b in blocks]
    text = [json.dumps({"frames": b.tolist()}, separators=(",", ":")) for b in blocks]
    if plan.protocol == "ws":
        return list(text)  # a text message; bytes would be read as raw float32
    return [f"{len(t)}\r\n\r\n{t}".encode() for t in text]  # HTTP: Content-Length onwards


def decode_block(message: bytes | str, binary: bool, features: int) -> np.ndarray:
    """The frames the server parsed from ``message``, as float64 (what it normalises)."""
    if isinstance(message, bytes) and binary:
        return np.frombuffer(message, "<f4").reshape(-1, features).astype(np.float64)
    text = message if isinstance(message, str) else message.decode()
    return np.asarray(json.loads(text[text.index("{") :])["frames"], np.float64)


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
        """(resident MiB, CPU seconds so far) of the server process (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return rss / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{"name{labels}": value}``."""
    lines = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, _, value in lines if name}


def batch_sizes(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    """Model calls by batch size between two scrapes (histogram buckets made per-range)."""
    prefix = 'edgelstm_batch_size_bucket{le="'
    bounds = sorted(
        (float(k[len(prefix) : -2]), k) for k in after if k.startswith(prefix) and "+Inf" not in k
    )
    ranges: dict[str, int] = {}
    low, below = 1.0, 0.0
    for bound, key in [*bounds, (float("inf"), prefix + '+Inf"}')]:
        cumulative = after.get(key, 0) - before.get(key, 0)
        label = f">{low - 1:g}" if bound == float("inf") else f"{low:g}-{bound:g}"
        ranges[label if low != bound else f"{bound:g}"] = int(cumulative - below)
        low, below = bound + 1, cumulative
    calls = after.get("edgelstm_batch_size_count", 0) - before.get("edgelstm_batch_size_count", 0)
    total = after.get("edgelstm_batch_size_sum", 0) - before.get("edgelstm_batch_size_sum", 0)
    return {"calls": int(calls), "mean": total / calls if calls else None, "histogram": ranges}


def _labelled(samples: Mapping[str, float], name: str, label: str) -> dict[str, float]:
    prefix = f'{name}{{{label}="'
    return {k[len(prefix) : -2]: v for k, v in samples.items() if k.startswith(prefix)}


def _header(head: bytes, name: bytes) -> bytes:
    at = head.find(b"\r\n" + name + b":")
    return b"" if at < 0 else head[at + len(name) + 3 : head.index(b"\r\n", at + 2)].strip()


class HttpStream:
    """A lean HTTP/1.1 keep-alive client for one stream: one connection, one request at a
    time, a prebuilt request head; a general client (httpx) would spend more CPU per request
    than the server it is loading."""

    def __init__(self, port: int, stream_id: str) -> None:
        self.port = port
        self.head = (
            f"POST /v1/streams/{stream_id}/frames HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, message: bytes | str) -> tuple[int, Any]:
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        self.writer.write(self.head + (message.encode() if isinstance(message, str) else message))
        try:
            head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
            body = await self.reader.readexactly(int(_header(head, b"content-length")))
        except asyncio.IncompleteReadError as exc:
            raise ConnectionError("the server closed the connection") from exc
        status = int(head[9:12])
        if status == 200:
            return status, json.loads(body)
        return status, {"retry_after": float(_header(head, b"retry-after") or RETRY_AFTER_S)}

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class WsStream:
    """One stream on the WebSocket route (``websockets``' client, no compression or pings)."""

    def __init__(self, port: int, stream_id: str) -> None:
        self.uri = f"ws://127.0.0.1:{port}/v1/streams/{stream_id}/ws"
        self.socket: Any = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.socket = await connect(
            self.uri, compression=None, ping_interval=None, max_size=2**22, open_timeout=60
        )

    async def exchange(self, message: bytes | str) -> tuple[int, Any]:
        if self.socket is None:
            await self.open()
        from websockets.exceptions import ConnectionClosed

        try:
            await self.socket.send(message)
            reply = json.loads(await self.socket.recv())
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from exc
        # Error replies carry no Retry-After here: back off as long as over HTTP.
        return (
            (int(reply["status"]), {"retry_after": RETRY_AFTER_S})
            if "error" in reply
            else (200, reply)
        )

    async def close(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await self.socket.close()
        self.socket = None


Client = HttpStream | WsStream


async def _stream(
    index: int,
    plan: LoadPlan,
    client: Client,
    messages: list[bytes | str],
    t0: float,
    log: StreamLog,
) -> None:
    """Send the schedule: request j is due at t0 + offset + j * period; a late stream sends
    at once (a sensor's buffered frames) but never has two requests in flight. A stream
    refused with 429/503 waits out Retry-After and drops the frames due meanwhile."""
    period, k = plan.period_s, plan.frames_per_request
    first = t0 + period * index / plan.streams  # streams spread over one period
    resume = 0.0
    for j in range(plan.requests_per_stream):
        due = first + j * period
        if due < resume:
            log.dropped += 1
            continue
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        block = (index * 31 + j) % len(messages)
        sent = time.perf_counter()
        log.max_lag = max(log.max_lag, sent - due)
        log.sent += 1
        try:
            status, reply = await client.exchange(messages[block])
        except ConnectionError:
            log.lost += 1
            log.checked = None  # the server may have run that chunk: later rows may differ
            await client.close()  # reconnect on the next request
            continue
        except asyncio.CancelledError:
            log.lost += 1  # the run's deadline passed with this request unanswered
            raise
        log.statuses[status] += 1
        if status != 200:
            if status in (429, 503):
                resume = time.perf_counter() + reply["retry_after"]
            continue
        log.latencies.append(time.perf_counter() - sent)  # served requests only
        log.ok += 1
        rows = reply["rows"]
        # Classification: one row per chunk at its last frame; anomaly: one per frame.
        if rows[-1]["frame"] != log.next_frame + k - 1:
            log.reordered += 1
        log.next_frame = rows[-1]["frame"] + 1
        if log.checked is not None:
            log.checked.append((block, rows))


async def drive(plan: LoadPlan, server: Server, messages: list[bytes | str]) -> dict[str, Any]:
    """Connect every stream, run the schedule (bounded by duration + grace), sample the
    server's RSS and CPU every 0.5 s; return the stream logs and the samples."""
    kind = HttpStream if plan.protocol == "http" else WsStream
    clients = [kind(server.port, f"s{i}") for i in range(plan.streams)]
    sample = np.linspace(0, plan.streams - 1, min(plan.check_streams, plan.streams))
    checked = {int(i) for i in sample.round()}
    logs = [StreamLog(checked=[] if i in checked else None) for i in range(plan.streams)]
    gate = asyncio.Semaphore(64)  # connect in waves: a burst of SYNs overflows the backlog

    async def connect(client: Client) -> None:
        async with gate:
            await client.open()

    await asyncio.gather(*(connect(c) for c in clients))
    samples: list[tuple[float, float, float]] = []

    async def sampler() -> None:
        while True:
            rss, cpu = server.sample()
            samples.append((time.perf_counter() - t0, rss, cpu))
            await asyncio.sleep(0.5)

    gc.collect()
    gc.freeze()  # the client's own GC pauses would read as server latency
    t0 = time.perf_counter() + 0.5
    watch = asyncio.create_task(sampler())
    started, cpu0, server0 = time.perf_counter(), time.process_time(), server.sample()[1]
    tasks = [
        asyncio.create_task(_stream(i, plan, c, messages, t0, log))
        for i, (c, log) in enumerate(zip(clients, logs, strict=True))
    ]
    _, late = await asyncio.wait(tasks, timeout=plan.duration_s + plan.grace_s + 0.5)
    for task in late:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):  # a harness bug, not a server fault: say so
            raise outcome
    end = time.perf_counter()
    client_cpu, server_cpu = time.process_time() - cpu0, server.sample()[1] - server0
    watch.cancel()
    await asyncio.gather(*(c.close() for c in clients), watch, return_exceptions=True)
    gc.unfreeze()
    window, busy = max(end - t0, plan.duration_s), end - started
    cpu = {"server_cores": server_cpu / busy, "client_cores": client_cpu / busy}
    return {"logs": logs, "samples": samples, "window_s": window, "cpu": cpu}


def run_async(coro: Any) -> Any:
    """Run ``coro`` on uvloop when installed (the serve extra): the client's per-request
    cost is what limits a load generator sharing the server's cores."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def expected_rows(model: Path, chunks: Sequence[np.ndarray]) -> list[list[dict[str, Any]]]:
    """Rows ``edgelstm run --stream`` would print for these chunks, computed the way
    ``runtimes/stream.py::stream_model`` does (stored normalisation, one StreamingSession,
    one ChunkScorer)."""
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession
    from edgelstm.runtimes.run_files import stored_normalization
    from edgelstm.runtimes.run_stream import ChunkScorer
    from edgelstm.tasks import normalize

    streamer = StreamingSession(model)
    scorer = ChunkScorer(streamer.metadata, streamer.path)
    norm = stored_normalization(streamer.metadata, streamer.path)
    rows = []
    for block in chunks:
        x = normalize(block, norm)
        rows.append(scorer.rows(x, streamer.push(x[None])[0]))
    return rows


def compare_rows(
    expected: Sequence[Sequence[Mapping[str, Any]]],
    got: Sequence[Sequence[Mapping[str, Any]]],
    atol: float = 1e-5,
) -> tuple[int, float]:
    """(mismatched chunks, max abs difference): numbers within ``atol`` (the rows carry six
    decimals and a batched call may round the last one differently), the rest equal."""
    mismatched, worst = abs(len(expected) - len(got)), 0.0
    for want_rows, got_rows in zip(expected, got, strict=False):
        bad = len(want_rows) != len(got_rows)
        for want, have in zip(want_rows, got_rows, strict=False):
            bad |= want.keys() != have.keys()
            for key, value in want.items():
                other = have.get(key)
                if isinstance(value, float) and isinstance(other, int | float):
                    worst = max(worst, abs(value - other))
                    bad |= abs(value - other) > atol
                else:
                    bad |= value != other
        mismatched += bad
    return mismatched, worst


def correctness(
    model: Path, logs: Sequence[StreamLog], messages: list[bytes | str], plan: LoadPlan, width: int
) -> dict[str, Any]:
    """Compare the sampled streams' rows with an offline run over the frames they sent."""
    # A request lost at the deadline comes after every reply compared: those still count.
    checked = [log for log in logs if log.checked]
    mismatched, worst, chunks = 0, 0.0, 0
    for log in checked:
        assert log.checked is not None
        blocks = [decode_block(messages[b], plan.binary, width) for b, _ in log.checked]
        bad, diff = compare_rows(expected_rows(model, blocks), [r for _, r in log.checked])
        mismatched, worst, chunks = mismatched + bad, max(worst, diff), chunks + len(blocks)
    return {"streams": len(checked), "chunks": chunks, "mismatched_chunks": mismatched,
            "max_abs_diff": worst, "passed": bool(chunks) and not mismatched}  # fmt: skip


def recover(server: Server, streams: int, message: str) -> dict[str, Any]:
    """After the load: end its streams, then /healthz and one request on a fresh stream (a
    server that was overloaded must serve again)."""
    ended = Counter(server.get(f"/v1/streams/s{i}", "DELETE")[0] for i in range(streams))
    health = server.get("/healthz")[0]
    status, _ = server.get("/v1/streams/after-load/frames", "POST", message)
    ended_by_status = {str(k): v for k, v in sorted(ended.items())}
    return {"ended": ended_by_status, "healthz": health, "request": status,
            "ok": health == status == 200}  # fmt: skip


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ms = np.asarray(values) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]).tolist()
    return {"p50": p50, "p90": p90, "p99": p99, "max": float(ms.max())}


def run_point(
    model: Path, plan: LoadPlan, flags: Sequence[str], pool: np.ndarray, variant: str, work: Path
) -> dict[str, Any]:
    """One server, one load: the row the report shows for it."""
    messages = encode_blocks(pool, plan.frames_per_request, plan)
    server = start_server(model, flags, work / f"server-{plan.label}-{variant}-{plan.streams}.log")
    try:
        before = server.metrics()
        load = run_async(drive(plan, server, messages))
        after = server.metrics()
        rss_after_load = server.sample()[0]
        first = pool[: plan.frames_per_request].tolist()
        recovery = recover(server, plan.streams, json.dumps({"frames": first}))
    finally:
        exit_code = stop_server(server)
    logs: list[StreamLog] = load["logs"]
    k, period = plan.frames_per_request, plan.period_s
    statuses = sum((log.statuses for log in logs), Counter[int]())
    scheduled = plan.streams * plan.requests_per_stream
    sent, ok = sum(log.sent for log in logs), sum(log.ok for log in logs)
    rss = [s[1] for s in load["samples"]]
    # Memory is flat when it stops growing once the streams are open (the first second).
    steady = [mb for t, mb, _ in load["samples"] if t >= 1.0] or [float("nan")]
    rejections, quantiles = "edgelstm_rejections_total", "edgelstm_latency_seconds"
    # fmt: off
    dropped = sum(log.dropped for log in logs)
    requests = {"scheduled": scheduled, "sent": sent, "ok": ok, "dropped": dropped,
                "unsent": scheduled - sent - dropped,
                "rejected": sum(n for s, n in statuses.items() if s != 200),
                "rejected_by_status": {str(s): n for s, n in sorted(statuses.items()) if s != 200},
                "lost": sum(log.lost for log in logs),
                "reordered": sum(log.reordered for log in logs)}
    samples = [[round(t, 2), round(mb, 1)] for t, mb, _ in load["samples"]]
    return {
        "protocol": plan.label, "variant": variant, "streams": plan.streams,
        "server_flags": list(flags), "offered_frames_per_s": plan.streams * plan.rate_hz,
        "achieved_frames_per_s": ok * k / load["window_s"], "window_s": load["window_s"],
        "sustained_streams": sum(
            log.ok == plan.requests_per_stream and log.max_lag <= period for log in logs),
        "requests": requests,
        "latency_ms": _quantiles([v for log in logs for v in log.latencies]),
        "max_schedule_lag_ms": max(log.max_lag for log in logs) * 1000,
        "batch_size": batch_sizes(before, after),
        "server_rejections": {r: int(v - _labelled(before, rejections, "reason").get(r, 0))
                              for r, v in _labelled(after, rejections, "reason").items()},
        "server_latency_ms": {q: v * 1e3
                              for q, v in _labelled(after, quantiles, "quantile").items()},
        "cpu": load["cpu"],
        "rss_mb": {"start": rss[0] if rss else None, "peak": max(rss, default=None),
                   "growth_after_1s": steady[-1] - steady[0], "after_load": rss_after_load,
                   "samples": samples},
        "after_load": recovery, "exit_code": exit_code,
        "correctness": correctness(model, logs, messages, plan, pool.shape[1]),
    }
    # fmt: on


def failures(point: Mapping[str, Any], p99_limit_ms: float = 50.0) -> list[str]:
    """Why a point does not count as served (empty: it does)."""
    requests, p99 = point["requests"], point["latency_ms"]["p99"]
    why = [f"{requests[k]} {k}" for k in ("lost", "reordered", "rejected", "unsent") if requests[k]]
    if p99 is None or p99 > p99_limit_ms:
        why.insert(0, f"p99 {p99 if p99 is None else round(p99, 1)} ms > {p99_limit_ms:g} ms")
    return why


def saturation(points: Sequence[Mapping[str, Any]], p99_limit_ms: float = 50.0) -> dict[str, Any]:
    """The largest stream count served (p99 <= limit, nothing lost, reordered, rejected or
    unsent) with every smaller count served too, and the first count that was not."""
    best, first_failure, why = None, None, []
    for point in sorted(points, key=lambda p: p["streams"]):
        problems = failures(point, p99_limit_ms)
        if problems and first_failure is None:
            first_failure, why = point["streams"], problems
        elif not problems and first_failure is None:
            best = point["streams"]
    return {"streams": best, "first_failure": first_failure, "why": why, "limit_ms": p99_limit_ms}


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    from edgelstm.benchmarks.measure import environment as base
    from edgelstm.hardware import cpu_info

    env = base((1,))
    env["loadavg_at_start"] = os.getloadavg()  # someone else's load would show here
    # The server measured is this checkout's: its commit, and whether it had local edits.
    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, check=True)
        edits = subprocess.run([*git, "status", "--porcelain", "--", ".."], capture_output=True)
        env["git"] = {"commit": commit.stdout.decode().strip(), "edited": edits.stdout.decode()}
    for dist in ("uvicorn", "starlette", "websockets", "uvloop", "httptools"):
        with contextlib.suppress(md.PackageNotFoundError):
            env["libraries"][dist] = md.version(dist)
    env["cpu_flags"] = sorted({"avx2", "avx512f", "avx512_vnni", "fma"} & cpu_info().flags)
    return env


def reference_artifact(folder: Path) -> Path:
    """The reference streaming LSTM (2 x 128, 40 features, 10 classes) exported from a
    checkpoint, so it carries identity normalisation and class labels the server needs."""
    from edgelstm.benchmarks.suites.reference import reference_checkpoint
    from edgelstm.exporters.onnx import export

    out = folder / "reference.stream.onnx"
    export(reference_checkpoint(folder / "reference"), out, streaming=True)
    return out


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _point_cells(p: Mapping[str, Any]) -> list[str]:
    r, lat, rss, check = p["requests"], p["latency_ms"], p["rss_mb"], p["correctness"]
    mean = p["batch_size"]["mean"]
    return [
        p["protocol"], p["variant"], str(p["streams"]), f"{p['offered_frames_per_s']:,.0f}",
        f"{p['achieved_frames_per_s']:,.0f}", str(p["sustained_streams"]),
        *(_ms(lat[q]) for q in ("p50", "p90", "p99")),
        (", ".join(f"{n}x{s}" for s, n in r["rejected_by_status"].items()) or "0")
        + (f" ({r['dropped']} dropped)" if r["dropped"] else ""),
        str(r["lost"]), str(r["reordered"]), "—" if mean is None else f"{mean:.1f}",
        f"{p['cpu']['server_cores']:.2f}", f"{p['cpu']['client_cores']:.2f}",
        f"{_ms(rss['start'])}/{_ms(rss['peak'])} ({rss['growth_after_1s']:+.1f})",
        f"{'ok' if p['after_load']['ok'] else 'FAILED'}, exit {p['exit_code']}",
        f"{check['chunks'] - check['mismatched_chunks']}/{check['chunks']} chunks "
        f"(max diff {check['max_abs_diff']:.1g})",
    ]  # fmt: skip


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [f"| {' | '.join(row)} |" for row in [header, ["---"] * len(header), *rows]]


def to_markdown(doc: Mapping[str, Any]) -> str:
    env, load, points = doc["environment"], doc["load"], doc["points"]
    header = ["protocol", "server", "streams", "offered fr/s", "achieved fr/s", "sustained",
              "p50 ms", "p90 ms", "p99 ms", "rejected", "lost", "reordered", "mean batch",
              "server cores", "client cores", "server RSS MB start/peak (growth after 1 s)",
              "after load", "rows check"]  # fmt: skip
    bins = list(points[0]["batch_size"]["histogram"]) if points else []
    batches = [[*_point_cells(p)[:3], *map(str, p["batch_size"]["histogram"].values())]
               for p in points]  # fmt: skip
    lines = [
        f"# Serve load: {doc['model']['label']}", "", f"Command: `{doc['command']}`", "",
        f"Machine: {env['cpu'].get('model')}, {env['cpu_count']} cores, CPU flags "
        f"{' '.join(env['cpu_flags']) or 'unknown'}; onnxruntime "
        f"{env['libraries'].get('onnxruntime')}, uvicorn {env['libraries'].get('uvicorn')}, "
        f"Python {env['python']}. Client and server share these cores over loopback.", "",
        f"Load per stream: {load['rate_hz']:g} frames/s in requests of "
        f"{load['frames_per_request']} frames for {load['duration_s']:g} s; frames from "
        f"{load['frames']}. `batched`: the server with the flags given; `baseline`: the same "
        "with `--max-batch 1`. Latency: send to reply of served requests, at the client. A "
        f"point is served when p99 <= {doc['p99_limit_ms']:g} ms with nothing lost, reordered,"
        " rejected or unsent; a stream is sustained when every request was served and sent at"
        " most one request period late.", "",
        "## Summary", "", *(f"- {line}" for line in doc["summary"]), "",
        "## Points", "", *_table(header, [_point_cells(p) for p in points]), "",
        "## Batch sizes (model calls per batch-size range)", "",
        *_table(["protocol", "server", "streams", *bins], batches),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def summarise(points: Sequence[Mapping[str, Any]], limit_ms: float) -> tuple[Any, list[str]]:
    """Saturation per protocol and server, and batched/baseline ratios at each count."""
    found, lines, most = {}, [], {}
    for key in dict.fromkeys((p["protocol"], p["variant"]) for p in points):
        mine = [p for p in points if (p["protocol"], p["variant"]) == key]
        found["/".join(key)] = sat = saturation(mine, limit_ms)
        most[key] = max(p["achieved_frames_per_s"] for p in mine)
        past = f"; at {sat['first_failure']}: {', '.join(sat['why'])}" if sat["why"] else ""
        lines.append(f"{key[0]} {key[1]}: saturation {sat['streams']} streams{past}; at most "
                     f"{most[key]:,.0f} frames/s achieved")  # fmt: skip
    for (protocol, variant), frames in most.items():
        if variant == "batched" and most.get((protocol, "baseline")):
            lines.append(f"{protocol}: the batcher's capacity gain (most frames/s, batched / "
                         f"baseline) {frames / most[(protocol, 'baseline')]:.2f}x")  # fmt: skip
    base = {(p["protocol"], p["streams"]): p for p in points if p["variant"] == "baseline"}
    for p in points:
        b = base.get((p["protocol"], p["streams"])) if p["variant"] == "batched" else None
        if b is not None and b["achieved_frames_per_s"]:
            lines.append(
                f"{p['protocol']} at {p['streams']} streams: batched/baseline achieved frames/s "
                f"{p['achieved_frames_per_s'] / b['achieved_frames_per_s']:.2f}x, p99 "
                f"{_ms(p['latency_ms']['p99'])} vs {_ms(b['latency_ms']['p99'])} ms"
            )
    return found, lines


def main(argv: list[str] | None = None) -> int:
    from edgelstm.fileio import write_json_atomic, write_text_atomic
    from edgelstm.runtimes.ort.artifact import load_artifact

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--model", required=True, help="a streaming export, or `reference` (exported here)")
    add("--name", help="report name: serve_load_NAME.{json,md} (default: from the model)")
    add("--streams", default="500", help="stream count, or a comma list (a sweep)")
    add("--sweep", action="store_true", help=f"sweep {','.join(map(str, DEFAULT_SWEEP))} streams")
    add("--rate", type=float, default=100.0, help="frames per second per stream")
    add("--frames-per-request", type=int, default=10)
    add("--duration", type=float, default=10.0, help="seconds of load per point")
    add("--grace", type=float, default=10.0, help="seconds a late stream may catch up")
    add("--protocol", default="http", help="http, ws, or a comma list")
    add("--binary", action="store_true", help="ws: send raw float32 frames")
    add("--frames", type=Path, help=".npz with X [sequences, time, features] (and lengths)")
    add("--baseline", action="store_true", help="also run each point with --max-batch 1")
    add("--check-streams", type=int, default=3, help="streams whose rows are checked offline")
    add("--p99-limit-ms", type=float, default=50.0)
    add("--out", type=Path, default=Path("benchmarks/results"))
    for flag in SERVER_FLAGS:
        add(flag, help=f"passed to `edgelstm serve {flag}`")
    args = parser.parse_args(argv)
    counts = list(DEFAULT_SWEEP) if args.sweep else [int(s) for s in args.streams.split(",")]
    protocols = args.protocol.split(",")
    if set(protocols) - {"http", "ws"} or args.rate <= 0 or args.frames_per_request < 1:
        parser.error("--protocol takes http and/or ws; --rate and --frames-per-request > 0")
    # Each stream holds a socket here and one in the server (which inherits this limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < max(counts) + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    given = {f: getattr(args, f[2:].replace("-", "_")) for f in SERVER_FLAGS}
    flags = [x for f, v in given.items() if v is not None for x in (f, v)]
    baseline = [
        x for f, v in {**given, "--max-batch": "1"}.items() if v is not None for x in (f, v)
    ]
    variants = [("batched", flags)] + [("baseline", baseline)] * args.baseline
    points, env = [], environment()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model == "reference":
            model, name = reference_artifact(work), args.name or "reference"
            label = "reference streaming LSTM (2 x 128, 40 features, 10 classes, random weights)"
        else:
            model, name = Path(args.model), args.name or Path(args.model).stem.split(".")[0]
            label = f"{model.name} ({name})"
        meta = load_artifact(model, verify=False).edgelstm_metadata()
        pool = frame_pool(len(meta.feature_names), meta.normalization, args.frames)
        for protocol, streams, (variant, server_flags) in itertools.product(
            protocols, counts, variants
        ):
            binary = args.binary and protocol == "ws"
            plan = LoadPlan(streams, args.rate, args.frames_per_request, args.duration, protocol,
                            binary, args.grace, args.check_streams)  # fmt: skip
            points.append(point := run_point(model, plan, server_flags, pool, variant, work))
            problems = "; ".join(failures(point, args.p99_limit_ms)) or "served"
            sys.stderr.write(f"{plan.label} {variant} {streams} streams: {problems}\n")
    found, lines = summarise(points, args.p99_limit_ms)
    frames = str(args.frames) if args.frames else "normal draws around the model's statistics"
    document = {
        "schema": SCHEMA,
        "command": shlex.join([*COMMAND.split(), *(sys.argv[1:] if argv is None else argv)]),
        "environment": env,
        "model": {"label": label, "task": meta.task, "features": len(meta.feature_names),
                  "classes": len(meta.class_labels), "state": dict(meta.state)},
        "load": {"rate_hz": args.rate, "frames_per_request": args.frames_per_request,
                 "duration_s": args.duration, "grace_s": args.grace, "frames": frames},
        "p99_limit_ms": args.p99_limit_ms,
        "saturation": found,
        "summary": lines,
        "points": points,
    }  # fmt: skip
    write_json_atomic(args.out / f"serve_load_{name}.json", document, overwrite=True)
    write_text_atomic(args.out / f"serve_load_{name}.md", to_markdown(document), overwrite=True)
    sys.stdout.write(to_markdown(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
