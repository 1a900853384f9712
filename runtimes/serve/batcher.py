"""The sequence batcher: frames from many streams, one ONNX Runtime call per batch.

Each stream owns one row (a *slot*) of a preallocated state table. A request's chunk waits in
its stream's queue; the batcher takes the head chunk of up to ``max_batch`` ready streams
whose chunks have the same length (a batched call needs one ``[batch, frames, features]``
tensor, and padding would run the LSTM over frames that were never sent), gathers their state
rows, runs the streaming export once, scatters the new state back and builds each stream's
rows with its own :class:`~edgelstm.runtimes.model_io.stream_rows.StreamRows` (the rows
``run --stream`` prints). The state table is a
:class:`~edgelstm.runtimes.model_io.stream_state.StreamState`, the one owner of stream state
that :class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession` uses too. A
stream has at most one chunk in flight, so its chunks run in the order they came.

The model runs on one worker thread (ONNX Runtime releases the GIL), so the event loop keeps
parsing requests while a batch computes: the chunks that arrive meanwhile form the next batch.
When the worker is idle, the first ready chunk waits at most ``max_delay_ms`` for company.

Everything is bounded: streams (``max_streams``), frames per request, frames queued per stream
and in total; past a bound a request is refused at once (:class:`RequestRejected`), never
queued without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError, first_line
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.contract import FRAMES_INPUT, StreamContract
from edgelstm.runtimes.model_io.stream_rows import StreamRows, batch_rows
from edgelstm.runtimes.model_io.stream_state import StreamState
from edgelstm.runtimes.ort.session import OpenedSession
from edgelstm.runtimes.serve.call_limits import capped_limits
from edgelstm.runtimes.serve.directory import StreamDirectory
from edgelstm.runtimes.serve.metrics import ServerMetrics
from edgelstm.runtimes.serve.quota import StreamQuota
from edgelstm.runtimes.serve.rejections import RequestRejected
from edgelstm.runtimes.serve.swap import check_swappable

__all__ = ["RequestRejected", "SequenceBatcher", "ServeLimits"]

#: Longest stream id accepted: ids are kept per stream, so their size is bounded too.
MAX_STREAM_ID = 128


@dataclass(frozen=True)
class ServeLimits:
    """The server's bounds and batching policy (``edgelstm serve`` flags).

    ``max_batch`` streams per model call; ``max_delay_ms`` how long a ready chunk may wait
    for others when the model is idle; streams idle for ``idle_timeout_s`` are evicted and
    their state freed. Queues are bounded per stream and in total, in frames.
    """

    max_streams: int = 1024
    max_batch: int = 64
    max_delay_ms: float = 2.0
    idle_timeout_s: float = 300.0
    max_frames_per_request: int = 1000
    max_queued_frames_per_stream: int = 4000
    max_queued_frames: int = 200_000
    max_body_bytes: int = 4 * 2**20
    #: seconds a request body may take to arrive (a trickling client holds a connection).
    body_timeout_s: float = 10.0
    #: seconds a request's headers (a WebSocket's upgrade request too) may take to arrive.
    header_timeout_s: float = 10.0
    #: streams one token may hold at once (None: only --max-streams bounds them).
    max_streams_per_token: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_streams",
            "max_batch",
            "max_frames_per_request",
            "max_queued_frames_per_stream",
            "max_queued_frames",
            "max_body_bytes",
        ):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{_FLAGS[name]} must be >= 1, got {getattr(self, name)}")
        if self.max_delay_ms < 0:
            raise InvalidInputError(f"--max-delay-ms must be >= 0, got {self.max_delay_ms}")
        if self.max_streams_per_token is not None and self.max_streams_per_token < 1:
            raise InvalidInputError(
                f"--token-streams must be >= 1, got {self.max_streams_per_token}"
            )
        if self.body_timeout_s <= 0:
            raise InvalidInputError(f"--body-timeout must be > 0, got {self.body_timeout_s}")
        if self.header_timeout_s <= 0:
            raise InvalidInputError(f"--header-timeout must be > 0, got {self.header_timeout_s}")
        if self.idle_timeout_s <= 0:
            raise InvalidInputError(f"--idle-timeout must be > 0, got {self.idle_timeout_s}")
        if self.max_queued_frames_per_stream < self.max_frames_per_request:
            raise InvalidInputError(
                "the per-stream queue must hold at least one request: max queued frames per "
                f"stream {self.max_queued_frames_per_stream} < max frames per request "
                f"{self.max_frames_per_request}"
            )


#: The ``edgelstm serve`` flag that sets each limit, for messages a user can act on.
_FLAGS = {
    "max_streams": "--max-streams",
    "max_batch": "--max-batch",
    "max_frames_per_request": "--max-frames",
    "max_queued_frames_per_stream": "--max-queued-frames-per-stream",
    "max_queued_frames": "--max-queued-frames",
    "max_body_bytes": "--max-body-bytes",
}


@dataclass(eq=False)
class _Chunk:
    """One request's frames (in original units, as received) and the future its rows go
    to. Frames are normalised per batch, in one call, when the batch runs."""

    stream: _Stream
    frames: np.ndarray
    future: asyncio.Future[list[dict[str, Any]]]
    queued_at: float
    taken: bool = False


@dataclass(eq=False)
class _Stream:
    id: str
    slot: int
    rows: StreamRows
    #: who opened it (a token's fingerprint; "" without authentication): only they reach it
    owner: str = ""
    queue: deque[_Chunk] = field(default_factory=deque)
    busy: bool = False
    last_seen: float = 0.0
    queued_frames: int = 0
    closing: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class SequenceBatcher:
    """Streams, their state and the batched model calls (see the module docstring).

    Create it inside the event loop that serves requests; :meth:`start` launches the batching
    and eviction tasks, :meth:`close` finishes queued chunks and stops them.
    """

    def __init__(
        self,
        opened: OpenedSession,
        meta: ModelMetadata,
        limits: ServeLimits,
        metrics: ServerMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        quota: StreamQuota | None = None,
        directory: StreamDirectory | None = None,
    ) -> None:
        self.contract = StreamContract.of(meta, opened.path)
        limits, _ = capped_limits(limits, self.contract)
        # Refuses tasks that cannot stream, before serving; normalises every batch (the
        # statistics are the model's, the same for every stream).
        self._model_input = StreamRows(meta, opened.path).model_input
        self.opened = opened
        self.meta = meta
        self.limits = limits
        self.metrics = metrics or ServerMetrics()
        self.clock = clock
        #: streams held in total and per token (shared by the workers of one server)
        self.quota = quota or StreamQuota(limits.max_streams, limits.max_streams_per_token)
        #: which worker holds which streams (told as this one's streams open and end)
        self.directory = directory or StreamDirectory.alone()
        self.num_features = len(meta.feature_names) or _feature_count(opened)
        self.chunk_multiple = self.contract.chunk_multiple
        self._table = StreamState(self.contract, limits.max_streams)
        self._free = list(range(limits.max_streams - 1, -1, -1))
        # Keyed by (owner, id): two clients' streams never meet, whatever ids they choose.
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._ready: deque[_Stream] = deque()
        self._queued_frames = 0
        self._wake = asyncio.Event()
        self._output_names = [o.name for o in opened.session.get_outputs()]
        #: set when the batching loop itself died: nothing queued will ever run again
        self.failure: BaseException | None = None
        # One worker: the model call (and the numpy around it) leaves the event loop free.
        self._worker: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._on_failure: Callable[[BaseException], None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Launch the batching loop and the idle-stream eviction (in the running loop).

        ``on_failure`` hears if either loop itself dies (a failing *batch* only fails its
        requests): the server then stops, so that a supervisor restarts it.
        """
        self._on_failure = on_failure
        self._closing = False
        # Made here, not in __init__: they belong to the loop that serves (an app's lifespan
        # may run more than once, each time in its own loop).
        self._wake = asyncio.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="edgelstm-batcher")
        self._tasks = [
            asyncio.create_task(self._batch_loop(), name="edgelstm-batcher"),
            asyncio.create_task(self._evict_loop(), name="edgelstm-evict"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        failure = None if task.cancelled() else task.exception()
        if failure is None:
            return
        self.failure = failure
        refusal = f"the server's batcher stopped ({first_line(failure)}); retry later"
        for stream in self._streams.values():
            for chunk in stream.queue:
                if not chunk.future.done():
                    chunk.future.set_exception(RequestRejected(503, "batcher_failed", refusal))
        if self._on_failure is not None:
            self._on_failure(failure)

    @property
    def running(self) -> bool:
        """Serving: started, not shutting down, and both loops alive."""
        return bool(self._tasks) and not self._closing and self.failure is None

    async def close(self) -> None:
        """Refuse new chunks, let queued and in-flight ones finish, then stop."""
        self._closing = True
        while self.failure is None and (self._ready or any(s.busy for s in self._streams.values())):
            self._wake.set()
            await asyncio.sleep(0.005)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._worker is not None:
            self._worker.shutdown(wait=True)

    async def swap_model(self, opened: OpenedSession, meta: ModelMetadata) -> None:
        """Serve ``opened`` from the next batch on, every stream keeping its state; refused
        (InvalidInputError, nothing changes) unless its streams continue the old model's
        (:func:`~edgelstm.runtimes.serve.swap.check_swappable`)."""
        check_swappable(self.meta, meta, opened.path)
        model_input = StreamRows(meta, opened.path).model_input
        outputs = [o.name for o in opened.session.get_outputs()]

        def swap() -> None:  # on the model thread: between two batches, never inside one
            self.opened, self.meta, self._model_input = opened, meta, model_input
            self._output_names = outputs

        assert self._worker is not None, "start() the batcher first"
        await asyncio.get_running_loop().run_in_executor(self._worker, swap)
        for stream in self._streams.values():  # the one per-stream setting a model may change
            stream.rows.threshold = meta.anomaly_threshold
        self.metrics.model_swaps += 1

    # ------------------------------------------------------------------ requests

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def queued_frames(self) -> int:
        return self._queued_frames

    def metrics_snapshot(self) -> dict[str, Any]:
        """This batcher's metrics and gauges, for ``/metrics`` to add up across workers."""
        return self.metrics.snapshot(
            active_streams=self.active_streams, queued_frames=self.queued_frames
        )

    def check_frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames in original units ``[k, features]``, checked, or RequestRejected (4xx)."""
        if frames.ndim != 2 or frames.shape[0] == 0:
            raise RequestRejected(
                422, "bad_frames",
                f"frames must be a non-empty list of frames, each a list of "
                f"{self.num_features} numbers; got an array of shape {list(frames.shape)}",
            )  # fmt: skip
        k, width = frames.shape
        if width != self.num_features:
            raise RequestRejected(
                422, "bad_width",
                f"each frame must hold {self.num_features} values (the model's features), "
                f"got {width}",
            )  # fmt: skip
        if k > self.limits.max_frames_per_request:
            raise RequestRejected(
                413, "too_many_frames",
                f"{k} frames in one request; send at most {self.limits.max_frames_per_request} "
                "per request",
            )  # fmt: skip
        per_call = self.contract.frames_per_call
        if per_call is not None and k != per_call:
            raise RequestRejected(
                422, "bad_chunk",
                f"{k} frames: this model reads exactly {per_call} frame(s) (window(s)) per "
                f"call, send {per_call} per request",
            )  # fmt: skip
        if k % self.chunk_multiple:
            raise RequestRejected(
                422, "bad_chunk",
                f"{k} frames: this model reads one step per {self.chunk_multiple} frames, send "
                f"a multiple of {self.chunk_multiple} per request",
            )  # fmt: skip
        if not np.isfinite(frames).all():
            raise RequestRejected(
                422, "nonfinite",
                "frames contain NaN or Inf; they would poison the stream's recurrent state",
            )  # fmt: skip
        return frames

    async def submit(
        self, stream_id: str, frames: np.ndarray, *, owner: str = ""
    ) -> list[dict[str, Any]]:
        """Queue ``frames`` for ``owner``'s stream ``stream_id`` (a new id starts a stream
        with zero state) and return its rows once its batch ran. Cancelling before the batch
        took the chunk withdraws it: the stream's state then never saw those frames."""
        if self._closing or self.failure is not None:
            raise RequestRejected(503, "shutting_down", "the server is shutting down", 1.0)
        if not 0 < len(stream_id) <= MAX_STREAM_ID:
            raise RequestRejected(
                400, "bad_stream_id", f"stream ids are 1 to {MAX_STREAM_ID} characters long"
            )
        frames = self.check_frames(frames)
        k = len(frames)
        stream = self._streams.get((owner, stream_id))
        if stream is not None and stream.closing:
            raise RequestRejected(409, "stream_closing", f"stream {stream_id!r} is being ended")
        if (
            stream is not None
            and stream.queued_frames + k > self.limits.max_queued_frames_per_stream
        ):
            raise RequestRejected(
                429, "stream_queue_full",
                f"stream {stream_id!r} already has {stream.queued_frames} frames queued (limit "
                f"{self.limits.max_queued_frames_per_stream}); wait for its replies before "
                "sending more",
                retry_after=1.0,
            )  # fmt: skip
        if self._queued_frames + k > self.limits.max_queued_frames:
            raise RequestRejected(
                503, "overloaded",
                f"the server has {self._queued_frames} frames queued (limit "
                f"{self.limits.max_queued_frames}); retry shortly",
                retry_after=1.0,
            )  # fmt: skip
        # A new stream opens only once its request is accepted: a refused one (server queue
        # full) used to keep its slot until evicted, so a flood of refused new ids used up
        # --max-streams and turned every other client's new stream into a 429.
        stream = stream or self._open_stream(stream_id, owner)
        now = self.clock()
        chunk = _Chunk(
            stream,
            frames,
            asyncio.get_running_loop().create_future(),
            time.perf_counter(),
        )
        stream.queue.append(chunk)
        stream.queued_frames += k
        stream.last_seen = now
        stream.idle.clear()
        self._queued_frames += k
        if not stream.busy and len(stream.queue) == 1:
            self._ready.append(stream)
            self._wake.set()
        try:
            return await chunk.future
        except asyncio.CancelledError:
            if not chunk.taken:
                self._withdraw(chunk)
            raise

    def _open_stream(self, stream_id: str, owner: str) -> _Stream:
        self.quota.take(owner)  # --max-streams and --token-streams, across all workers
        slot = self._free.pop()  # the table holds --max-streams rows: one is always free
        self._table.zero(slot)
        stream = _Stream(stream_id, slot, StreamRows(self.meta, self.opened.path), owner)
        stream.idle.set()
        self._streams[owner, stream_id] = stream
        self.directory.opened(stream_id)
        self.metrics.streams_opened += 1
        return stream

    def _withdraw(self, chunk: _Chunk) -> None:
        stream = chunk.stream
        if chunk in stream.queue:
            stream.queue.remove(chunk)
            self._dequeued(stream, len(chunk.frames))
            self.metrics.reject("client_gone")
        if not stream.queue and stream in self._ready:
            self._ready.remove(stream)
        if not stream.queue and not stream.busy:
            stream.idle.set()

    def _dequeued(self, stream: _Stream, frames: int) -> None:
        stream.queued_frames -= frames
        self._queued_frames -= frames

    async def end(self, stream_id: str, *, reset: bool = False, owner: str = "") -> None:
        """End ``owner``'s stream (free its slot) or, with ``reset``, keep it with zero state.
        Chunks still queued are refused (409); one in flight finishes first."""
        stream = self._streams.get((owner, stream_id))
        if stream is None:
            raise RequestRejected(
                404, "unknown_stream",
                f"no stream {stream_id!r} (never started, already ended, or evicted when idle)",
            )  # fmt: skip
        stream.closing = True
        for chunk in list(stream.queue):
            stream.queue.remove(chunk)
            self._dequeued(stream, len(chunk.frames))
            if not chunk.future.done():
                chunk.future.set_exception(
                    RequestRejected(409, "stream_closing", f"stream {stream_id!r} was ended")
                )
        if stream in self._ready:
            self._ready.remove(stream)
        if stream.busy:
            await stream.idle.wait()
            # Another DELETE of this stream may have freed it meanwhile; freeing it again
            # raised KeyError, a 500 for a request that found the stream already ended.
            if self._streams.get((owner, stream_id)) is not stream:
                raise RequestRejected(404, "unknown_stream", f"stream {stream_id!r} was ended")
        if reset:
            self._table.zero(stream.slot)
            stream.rows.reset()
            stream.closing = False
            return
        self._free_stream(stream)

    def _free_stream(self, stream: _Stream) -> None:
        del self._streams[stream.owner, stream.id]
        self._free.append(stream.slot)
        self.quota.give_back(stream.owner)
        self.directory.closed(stream.id)
        self.metrics.streams_closed += 1

    # ------------------------------------------------------------------ batching

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.limits.max_delay_ms / 1000.0
        while True:
            if not self._ready:
                self._wake.clear()
                await self._wake.wait()
                continue
            # An idle model: let the first chunk wait (at most max_delay_ms) for others.
            oldest = self._ready[0].queue[0].queued_at
            wait = delay - (time.perf_counter() - oldest)
            if wait > 0 and len(self._ready) < self.limits.max_batch and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            batch = self._take_batch()
            if not batch:
                continue
            started = time.perf_counter()
            for chunk in batch:
                self.metrics.queue_delay.observe(started - chunk.queued_at)
            try:
                x, output = await loop.run_in_executor(self._worker, self._compute, batch)
                results = self._rows(batch, x, output)
            except Exception as exc:  # a model failure fails this batch, not the server
                message = f"the model failed on this batch: {first_line(exc)}"
                results = [RequestRejected(500, "model_error", message)] * len(batch)
            self.metrics.batch_size.observe(len(batch))
            self._finish(batch, results)

    def _take_batch(self) -> list[_Chunk]:
        """Head chunks of up to ``max_batch`` ready streams with the oldest's length."""
        length = len(self._ready[0].queue[0].frames)
        batch: list[_Chunk] = []
        keep: deque[_Stream] = deque()
        while self._ready and len(batch) < self.limits.max_batch:
            stream = self._ready.popleft()
            if not stream.queue:
                continue
            if len(stream.queue[0].frames) != length:
                keep.append(stream)
                continue
            chunk = stream.queue.popleft()
            chunk.taken = True
            stream.busy = True
            self._dequeued(stream, len(chunk.frames))
            batch.append(chunk)
        keep.extend(self._ready)
        self._ready = keep
        return batch

    def _compute(self, batch: list[_Chunk]) -> tuple[np.ndarray, np.ndarray]:
        """Worker thread: normalise, gather state, one model call, scatter state; the
        model's input and its task output.

        Only numpy and ONNX Runtime run here (both release the GIL for their work): Python
        work in this thread would hold the GIL against the event loop, and a thread waiting
        for it waits up to the interpreter's 5 ms switch interval, in every request's tail.
        """
        slots = np.fromiter((c.stream.slot for c in batch), np.int64, len(batch))
        x = self._model_input(np.stack([c.frames for c in batch]))
        outputs = self.opened.session.run(
            self._output_names, {FRAMES_INPUT: x, **self._table.gather(slots)}
        )
        named = dict(zip(self._output_names, outputs, strict=True))
        contract = self.contract
        new_state = {
            name: named[output]
            for name, output in zip(contract.state_names, contract.state_outputs, strict=True)
        }
        self._table.scatter(slots, new_state)
        return x, named[self._output_names[0]]

    @staticmethod
    def _rows(batch: list[_Chunk], x: np.ndarray, output: np.ndarray) -> list[Any]:
        """Each stream's rows from its slice of the batch (on the event loop)."""
        return batch_rows([c.stream.rows for c in batch], x, output)

    def _finish(self, batch: list[_Chunk], results: list[Any]) -> None:
        now = self.clock()
        finished = time.perf_counter()
        for chunk, result in zip(batch, results, strict=True):
            stream = chunk.stream
            stream.busy = False
            stream.last_seen = now
            if not chunk.future.done():  # the client may have gone meanwhile
                if isinstance(result, Exception):
                    chunk.future.set_exception(result)
                else:
                    chunk.future.set_result(result)
                    self.metrics.frames += len(chunk.frames)
                    self.metrics.latency.observe(finished - chunk.queued_at)
            if stream.queue and not stream.closing:
                self._ready.append(stream)
            elif not stream.queue:
                stream.idle.set()

    # ------------------------------------------------------------------ eviction

    async def _evict_loop(self) -> None:
        period = min(1.0, self.limits.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            self.evict_idle()

    def evict_idle(self) -> int:
        """Free streams with nothing queued or running for ``idle_timeout_s``; how many."""
        cutoff = self.clock() - self.limits.idle_timeout_s
        idle = [
            s
            for s in self._streams.values()
            if not s.busy and not s.queue and not s.closing and s.last_seen < cutoff
        ]
        for stream in idle:
            self._free_stream(stream)
        self.metrics.streams_evicted += len(idle)
        return len(idle)


def _feature_count(opened: OpenedSession) -> int:
    shape = opened.session.get_inputs()[0].shape
    if len(shape) != 3 or not isinstance(shape[2], int):
        raise InvalidInputError(f"{opened.path}: the feature axis of `x` must be fixed")
    return int(shape[2])
