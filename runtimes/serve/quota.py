"""How many streams the server holds, in total and per token, counted across its workers.

``--max-streams`` and ``--token-streams`` bound the whole server, not one worker: with
``--workers N`` a stream lives in the worker its id hashes to, so each worker's own count
says nothing about the total. The counts therefore live in one small shared array (a
``multiprocessing`` array made before the workers start, one slot for the total and one per
token), taken and given back under its lock when a stream opens or ends: a rare event next
to frames, so the lock costs nothing a request notices.
"""

from __future__ import annotations

import contextlib
from collections.abc import MutableSequence
from typing import Any

from edgelstm.runtimes.serve.rejections import RequestRejected

__all__ = ["StreamQuota"]


class StreamQuota:
    """Streams held in total (at most ``max_streams``) and per token owner (at most
    ``per_token``, when set). ``owners``: the token fingerprints (see
    :meth:`~edgelstm.runtimes.serve.access.ServeAccess.owners`) in a fixed order;
    ``counts``: shared storage of ``1 + len(owners)`` integers (None: this process only).
    """

    def __init__(
        self,
        max_streams: int,
        per_token: int | None = None,
        owners: tuple[str, ...] = (),
        counts: MutableSequence[int] | None = None,
    ) -> None:
        self.max_streams = max_streams
        self.per_token = per_token
        self._index = {owner: i + 1 for i, owner in enumerate(owners)}
        self._counts: MutableSequence[int] = (
            counts if counts is not None else [0] * (1 + len(owners))
        )
        self._shared = counts is not None
        get_lock = getattr(self._counts, "get_lock", None)
        self._lock: Any = get_lock() if get_lock is not None else contextlib.nullcontext()

    @staticmethod
    def shared_counts(context: Any, owners: tuple[str, ...]) -> Any:
        """Storage for :class:`StreamQuota` that worker processes of ``context`` share."""
        return context.Array("q", 1 + len(owners), lock=True)

    def take(self, owner: str) -> None:
        """Count one more stream for ``owner``, or refuse (429) past either bound."""
        slot = self._slot(owner)
        with self._lock:
            full = self.per_token is not None and self._counts[slot or 0] >= self.per_token
            if slot is not None and full:
                raise RequestRejected(
                    429, "too_many_streams_for_token",
                    f"this token holds {self.per_token} streams (--token-streams); end one "
                    "with DELETE /v1/streams/{id} or wait for idle ones to be evicted",
                    retry_after=1.0,
                )  # fmt: skip
            if self._counts[0] >= self.max_streams:
                raise RequestRejected(
                    429, "too_many_streams",
                    f"the server holds {self.max_streams} streams (--max-streams); end one "
                    "with DELETE /v1/streams/{id} or wait for idle ones to be evicted",
                    retry_after=1.0,
                )  # fmt: skip
            self._counts[0] += 1
            if slot is not None:
                self._counts[slot] += 1

    def _slot(self, owner: str) -> int | None:
        """Where ``owner``'s count lives; a count kept in this process only learns owners
        as they come (a shared one was sized for the known tokens)."""
        slot = self._index.get(owner)
        if slot is None and owner and not self._shared:
            slot = self._index[owner] = len(self._counts)
            self._counts.append(0)
        return slot

    def give_back(self, owner: str) -> None:
        """One stream of ``owner`` ended."""
        slot = self._index.get(owner)
        with self._lock:
            self._counts[0] -= 1
            if slot is not None:
                self._counts[slot] -= 1

    @property
    def held(self) -> int:
        """Streams held by the whole server."""
        return int(self._counts[0])
