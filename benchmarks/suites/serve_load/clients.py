"""The load generator: a lean HTTP/1.1 client and a WebSocket client per stream, each stream's
request schedule, and the run of all streams at once (with the server sampled meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from edgelstm.benchmarks.suites.serve_load.plan import LoadPlan, StreamLog
from edgelstm.benchmarks.suites.serve_load.server import Server

__all__ = ["Client", "HttpStream", "LoadOutcome", "WsStream", "drive", "run_async", "run_schedule"]

#: Back-off after a 429/503 that names none (the server's own Retry-After is 1 s).
RETRY_AFTER_S = 1.0

_T = TypeVar("_T")


@dataclass
class LoadOutcome:
    """What one point's load saw: each stream's log, the server's ``(seconds since the
    schedule began, resident MiB, CPU seconds)`` every 0.5 s, the window the achieved
    frames/s are counted over, and the cores the server and this client used meanwhile."""

    logs: list[StreamLog]
    samples: list[tuple[float, float, float]]
    window_s: float
    cpu: dict[str, float]


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


async def run_schedule(
    index: int,
    plan: LoadPlan,
    client: Client,
    messages: list[bytes | str],
    t0: float,
    log: StreamLog,
) -> None:
    """Send stream ``index``'s requests, counting what happens in ``log``: request j is due
    at t0 + offset + j * period; a late stream sends at once (a sensor's buffered frames)
    but never has two requests in flight. A stream refused with 429/503 waits out
    Retry-After and drops the frames due meanwhile."""
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


async def drive(plan: LoadPlan, server: Server, messages: list[bytes | str]) -> LoadOutcome:
    """Connect every stream, run the schedule (bounded by duration + grace), sample the
    server's RSS and CPU every 0.5 s."""
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
        asyncio.create_task(run_schedule(i, plan, c, messages, t0, log))
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
    return LoadOutcome(logs, samples, window, cpu)


def run_async(coro: Coroutine[Any, Any, _T]) -> _T:
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
