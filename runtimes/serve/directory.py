"""Which worker holds a stream: the worker its first request reached, known to all workers.

A WebSocket, or an HTTP client keeping its connection alive, stays on the worker the kernel
gave its connection to. If the stream's state lives there too, none of its requests travel
between workers (measured: a forwarded request cost about 230 us more, so with two workers
hashing streams to a fixed worker made every request ~30% dearer on average). So a new
stream is claimed by the worker its first request lands on, and every worker can look the
claim up.

Claims are kept per *bucket* of stream ids (``crc32(id) % BUCKETS``) in one shared byte
array: a worker reads its entry without a lock (one byte), and claims a free bucket or
frees its own under one shared lock, both rare next to frames. A bucket is freed when its
worker holds no more streams in it, so it never changes hands while a stream in it holds
state: a stream's frames always reach the state they continue, in order.

Connections do not spread perfectly over the workers, and the model's work follows the
streams, so a worker holding more than its share (:data:`SLACK` streams, or an eighth,
above the least loaded) claims a new bucket for the least loaded worker instead of itself:
that stream's requests then travel, and the load stays even.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import MutableSequence
from typing import Any

__all__ = ["BUCKETS", "StreamDirectory", "bucket_of"]

#: Buckets of stream ids. Streams sharing a bucket share a worker; with 65,536 buckets two
#: of a thousand streams rarely do.
BUCKETS = 1 << 16
#: Streams a worker may hold above the least loaded one before it hands new streams over
#: (or an eighth of that one's streams, if more). Wide enough for the random order in which
#: evenly spread connections open their streams (with 8, a fifth of them were handed over
#: and forwarded for good at 500 streams); narrow enough to catch a proxy that brings every
#: stream through one worker's connections.
SLACK = 32
_FREE = -1


def bucket_of(stream_id: str) -> int:
    """The bucket of ``stream_id`` (crc32: the same in every process, unlike ``hash``)."""
    return zlib.crc32(stream_id.encode("utf-8", "surrogatepass")) % BUCKETS


class StreamDirectory:
    """This worker's view of the claims (see the module docstring)."""

    def __init__(
        self, worker: int, table: MutableSequence[int], streams: MutableSequence[int], lock: Any
    ) -> None:
        self.worker = worker
        self._table = table
        self._streams = streams  # streams each worker holds
        self._lock = lock
        self._held: dict[int, int] = {}  # bucket -> streams this worker holds in it

    @classmethod
    def alone(cls) -> StreamDirectory:
        """The directory of a server with one worker: it holds every stream."""
        return cls(0, _EveryBucket(), [0], contextlib.nullcontext())

    @staticmethod
    def shared_table(context: Any, workers: int) -> tuple[Any, Any, Any]:
        """The table, stream counts and lock that ``workers`` processes of ``context`` share
        (made before they start)."""
        table = context.Array("b", BUCKETS, lock=False)
        for bucket in range(BUCKETS):
            table[bucket] = _FREE
        return table, context.Array("q", workers, lock=False), context.Lock()

    def owner(self, stream_id: str) -> int:
        """The worker holding ``stream_id``'s bucket, claimed by this one if free."""
        bucket = bucket_of(stream_id)
        holder = int(self._table[bucket])
        if holder != _FREE:
            return holder
        with self._lock:
            holder = int(self._table[bucket])
            if holder == _FREE:
                self._table[bucket] = holder = self._least_loaded()
        return holder

    def _least_loaded(self) -> int:
        """This worker, unless it holds more than :data:`SLACK` streams above the least
        loaded one; then that one."""
        counts = list(self._streams)
        lightest = min(range(len(counts)), key=counts.__getitem__)
        slack = max(SLACK, counts[lightest] // 8)
        return self.worker if counts[self.worker] <= counts[lightest] + slack else lightest

    def opened(self, stream_id: str) -> None:
        """This worker now holds one more stream of its bucket."""
        bucket = bucket_of(stream_id)
        self._held[bucket] = self._held.get(bucket, 0) + 1
        self._streams[self.worker] += 1  # only this worker writes its own count

    def closed(self, stream_id: str) -> None:
        """One of this worker's streams ended; its bucket is freed with its last stream."""
        bucket = bucket_of(stream_id)
        self._streams[self.worker] -= 1
        left = self._held.get(bucket, 0) - 1
        if left > 0:
            self._held[bucket] = left
            return
        self._held.pop(bucket, None)
        with self._lock:
            if self._table[bucket] == self.worker:
                self._table[bucket] = _FREE


class _EveryBucket(MutableSequence[int]):
    """One worker's table: every bucket is worker 0's, nothing is stored."""

    def __getitem__(self, index: Any) -> Any:
        return 0

    def __setitem__(self, index: Any, value: Any) -> None:
        pass

    def __delitem__(self, index: Any) -> None:
        raise TypeError("the table has a fixed size")

    def __len__(self) -> int:
        return BUCKETS

    def insert(self, index: int, value: int) -> None:
        raise TypeError("the table has a fixed size")
