"""The load generator: a lean HTTP/1.1 client and a WebSocket client per stream, each stream's
request schedule, and the run of all streams at once (with the server sampled meanwhile)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import os
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson

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
            return status, orjson.loads(body)
        return status, {"retry_after": float(_header(head, b"retry-after") or RETRY_AFTER_S)}

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class WsStream:
    """A lean WebSocket client for one stream (RFC 6455 by hand, like :class:`HttpStream`):
    the handshake, then masked frames out and unmasked frames in. ``websockets``' client
    spent about 100 us of this process's CPU per message, half a core at 500 streams, on
    the cores the server under test needs."""

    def __init__(self, port: int, stream_id: str) -> None:
        self.port = port
        self.path = f"/v1/streams/{stream_id}/ws"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._framed: dict[int, bytes] = {}  # each message's frame, masked once

    async def open(self) -> None:
        key = base64.b64encode(os.urandom(16))
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
        )  # fmt: skip
        head = await self.reader.readuntil(b"\r\n\r\n")
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            raise ConnectionError(f"the WebSocket handshake failed: {head[:60]!r}")

    def _frame(self, message: bytes | str) -> bytes:
        framed = self._framed.get(id(message))
        if framed is None:
            if isinstance(message, str):
                opcode, payload = 0x1, message.encode()
            else:
                opcode, payload = 0x2, bytes(message)
            n = len(payload)
            if n < 126:
                size = bytes([0x80 | n])
            elif n < 65536:
                size = struct.pack("!BH", 0x80 | 126, n)
            else:
                size = struct.pack("!BQ", 0x80 | 127, n)
            mask = os.urandom(4)
            key = np.frombuffer((mask * (n // 4 + 1))[:n], np.uint8)
            masked = (np.frombuffer(payload, np.uint8) ^ key).tobytes()
            framed = self._framed[id(message)] = bytes([0x80 | opcode]) + size + mask + masked
        return framed

    async def _receive(self) -> bytes:
        assert self.reader is not None
        first, second = await self.reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(n)
        if first & 0x0F == 0x8:
            raise ConnectionError("the server closed the WebSocket")
        return payload

    async def exchange(self, message: bytes | str) -> tuple[int, Any]:
        if self.writer is None:
            await self.open()
        assert self.writer is not None
        self.writer.write(self._frame(message))
        try:
            reply = orjson.loads(await self._receive())
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise ConnectionError(str(exc)) from exc
        # Error replies carry no Retry-After here: back off as long as over HTTP.
        return (
            (int(reply["status"]), {"retry_after": RETRY_AFTER_S})
            if "error" in reply
            else (200, reply)
        )

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.write(b"\x88\x82" + os.urandom(4) + b"\x03\xe8")  # close, 1000
                self.writer.close()
                await self.writer.wait_closed()
        self.reader = self.writer = None


#: RFC 6455's key suffix for the handshake's Sec-WebSocket-Accept.
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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
