"""Workers of one server, and the calls they pass to each other.

With ``--workers N`` the server is N processes accepting on one socket, each with its own
batcher and state table. A stream's state lives in exactly one of them, the one the
:class:`~.directory.StreamDirectory` names (the worker its first request reached). A
request that lands elsewhere (a new HTTP connection, a proxy's pooled one) travels to that
worker over a Unix socket as it came, body unparsed, and the reply travels back encoded,
so the receiving worker only moves bytes. One holder per stream is what keeps a stream's
frames in order: its batcher runs a stream's chunks one at a time, in arrival order.

Wire format, both ways a 4-byte little-endian length, then:

- call: ``<I B H H`` (call id, :class:`~.calls.StreamCall`, owner and stream id lengths),
  the token owner and stream id (UTF-8), the body; call kind 0 cancels call id (the client
  hung up, so a chunk the model has not taken is withdrawn);
- reply: ``<I H d`` (call id, status, seconds to wait or -1), the reply body.

The sockets live in a directory only this user can open (``mkdtemp``), so only the server's
own processes reach them; the token was checked by the worker the client reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.runtimes.serve.calls import Reply, StreamCall
from edgelstm.runtimes.serve.directory import StreamDirectory
from edgelstm.runtimes.serve.metrics import ServerMetrics

__all__ = [
    "PeerLink",
    "PeerListener",
    "StreamRouter",
    "WorkerSeat",
    "worker_socket",
]

_LENGTH = struct.Struct("<I")
_CALL = struct.Struct("<IBHH")
_REPLY = struct.Struct("<IHd")
_CANCEL = 0
#: How long a worker waits for a peer that is not listening yet (all start together).
CONNECT_TIMEOUT_S = 10.0

#: perform(call, owner, stream id, body): the owner's side of a call
Perform = Callable[[StreamCall, str, str, bytes], Awaitable[Reply]]


def worker_socket(folder: Path, worker: int) -> Path:
    """Where worker ``worker`` listens for its peers."""
    return folder / f"worker-{worker}.sock"


def _unavailable(message: str) -> Reply:
    return Reply(503, message.encode(), 1.0)


class PeerLink:
    """One worker's connection to a peer: calls multiplexed by id, replies as they finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._connecting = asyncio.Lock()
        self._reader_task: asyncio.Task[None] | None = None

    async def _connected(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT_S
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(str(self.path))
                    break
                except OSError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_replies(reader))
            return writer

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(4))
                message = await reader.readexactly(length)
                call_id, status, retry = _REPLY.unpack_from(message)
                future = self._pending.pop(call_id, None)
                if future is not None and not future.done():
                    body = message[_REPLY.size :]
                    future.set_result(Reply(status, body, None if retry < 0 else retry))
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:  # the peer went away: every call waiting on it is answered, not left hanging
            self._writer = None
            for future in self._pending.values():
                if not future.done():
                    future.set_result(_unavailable("a worker of this server stopped; retry"))
            self._pending.clear()

    async def call(self, call: StreamCall, owner: str, stream_id: str, body: bytes) -> Reply:
        """Run ``call`` on the peer; cancelling this cancels it there too."""
        try:
            writer = await self._connected()
        except OSError:
            return _unavailable("a worker of this server is not reachable; retry")
        call_id = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        key, sid = owner.encode(), stream_id.encode("utf-8", "surrogatepass")
        message = _CALL.pack(call_id, call, len(key), len(sid)) + key + sid + body
        writer.write(_LENGTH.pack(len(message)) + message)
        try:
            return await future
        except asyncio.CancelledError:
            self._pending.pop(call_id, None)
            if not writer.is_closing():
                cancel = _CALL.pack(call_id, _CANCEL, 0, 0)
                writer.write(_LENGTH.pack(len(cancel)) + cancel)
            raise

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)


class PeerListener:
    """A worker's side of its peers' calls: each call runs as its own task (a slow stream
    never holds up another), and its reply is written when it finishes."""

    def __init__(self, path: Path, perform: Perform) -> None:
        self.path = path
        self.perform = perform
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running: dict[int, asyncio.Task[None]] = {}
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(4))
                message = await reader.readexactly(length)
                call_id, kind, key_len, sid_len = _CALL.unpack_from(message)
                if kind == _CANCEL:
                    if call_id in running:
                        running[call_id].cancel()
                    continue
                start = _CALL.size
                owner = message[start : start + key_len].decode()
                stream_id = message[start + key_len : start + key_len + sid_len].decode(
                    "utf-8", "surrogatepass"
                )
                body = message[start + key_len + sid_len :]
                running[call_id] = asyncio.create_task(
                    self._answer(writer, running, call_id, StreamCall(kind), owner, stream_id, body)
                )
        except (asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass
        finally:
            for work in running.values():
                work.cancel()
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        running: dict[int, asyncio.Task[None]],
        call_id: int,
        call: StreamCall,
        owner: str,
        stream_id: str,
        body: bytes,
    ) -> None:
        try:
            reply = await self.perform(call, owner, stream_id, body)
        except asyncio.CancelledError:
            return
        finally:
            running.pop(call_id, None)
        retry = -1.0 if reply.retry_after is None else reply.retry_after
        message = _REPLY.pack(call_id, reply.status, retry) + reply.body
        if not writer.is_closing():
            writer.write(_LENGTH.pack(len(message)) + message)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class WorkerSeat:
    """One process's place in the server: worker ``worker`` of ``workers``, whose peers
    listen in ``folder``, and the shared memory all workers use: ``stream_counts`` (the
    :class:`~.quota.StreamQuota`'s counts) and ``claims`` (the
    :class:`~.directory.StreamDirectory`'s table, stream counts and lock). The default is
    a lone worker."""

    worker: int = 0
    workers: int = 1
    folder: Path | None = None
    stream_counts: Any = None
    claims: tuple[Any, Any, Any] | None = None

    def __post_init__(self) -> None:
        if self.workers > 1 and (self.folder is None or self.claims is None):
            raise ValueError("workers > 1 need their sockets' folder and the shared claims")

    def directory(self) -> StreamDirectory:
        if self.claims is None:
            return StreamDirectory.alone()
        return StreamDirectory(self.worker, *self.claims)


class StreamRouter:
    """Sends each call to the worker that owns its stream: this one (``perform`` directly)
    or a peer over its :class:`PeerLink`. A single worker has no peers."""

    def __init__(
        self,
        perform: Perform,
        seat: WorkerSeat,
        directory: StreamDirectory,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.perform = perform
        self.metrics = metrics or ServerMetrics()
        self.directory = directory
        self.worker = seat.worker
        self.workers = seat.workers
        self.folder = seat.folder
        self._links: dict[int, PeerLink] = {}
        self._listener: PeerListener | None = None

    @property
    def peers(self) -> list[int]:
        return [w for w in range(self.workers) if w != self.worker]

    def _link(self, worker: int) -> PeerLink:
        assert self.folder is not None
        link = self._links.get(worker)
        if link is None:
            link = self._links[worker] = PeerLink(worker_socket(self.folder, worker))
        return link

    async def start(self) -> None:
        """Listen for the peers' calls (before this worker serves clients)."""
        if self.workers > 1:
            assert self.folder is not None
            path = worker_socket(self.folder, self.worker)
            self._listener = PeerListener(path, self.answer_peer)
            await self._listener.start()

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        if self._listener is not None:
            await self._listener.close()

    async def call(self, call: StreamCall, owner: str, stream_id: str, body: bytes) -> Reply:
        """Run ``call`` where ``stream_id`` lives."""
        target = self.directory.owner(stream_id)
        if target == self.worker:
            return await self.perform(call, owner, stream_id, body)
        self.metrics.forwarded += 1
        return await self._link(target).call(call, owner, stream_id, body)

    async def answer_peer(self, call: StreamCall, owner: str, stream_id: str, body: bytes) -> Reply:
        """A peer's call: run here, or, if the stream's bucket changed hands on the way (it
        was freed, with its last stream, and claimed again), pass it on to the new holder."""
        if call in (StreamCall.METRICS, StreamCall.HEALTH):
            return await self.perform(call, owner, stream_id, body)
        return await self.call(call, owner, stream_id, body)

    async def ask_all(self, call: StreamCall, timeout_s: float = 2.0) -> list[Reply]:
        """``call`` (metrics, health) on every worker, this one first; a peer that does not
        answer within ``timeout_s`` counts as unavailable."""

        async def ask(worker: int) -> Reply:
            try:
                return await asyncio.wait_for(self._link(worker).call(call, "", "", b""), timeout_s)
            except asyncio.TimeoutError:
                return _unavailable(f"worker {worker} did not answer within {timeout_s:g} s")

        mine = await self.perform(call, "", "", b"")
        return [mine, *await asyncio.gather(*(ask(w) for w in self.peers))]
