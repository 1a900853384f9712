"""What a stream's own worker does for a request: the one place a call on a stream runs.

With ``--workers N`` a stream lives in one worker (the one its id hashes to, see
:mod:`.peers`); a request that lands in another worker travels there as a
:class:`StreamCall` with the body as it came, and :func:`perform` runs it where the stream's
state is. A single worker calls :func:`perform` directly. Either way the reply is a
:class:`Reply`: the encoded JSON for the client, or the refusal's status and message.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from edgelstm.runtimes.serve.batcher import SequenceBatcher
from edgelstm.runtimes.serve.rejections import RequestRejected

__all__ = ["BINARY_FORMAT", "Reply", "StreamCall", "perform"]

#: How binary WebSocket frames are laid out (also in ``/v1/model``).
BINARY_FORMAT = "little-endian float32, row-major [frames, features], no header"


class StreamCall(enum.IntEnum):
    """A call on a stream (or on a worker: its metrics, its health)."""

    JSON_FRAMES = 1
    BINARY_FRAMES = 2
    END = 3
    RESET = 4
    METRICS = 5
    HEALTH = 6


@dataclass(frozen=True)
class Reply:
    """A call's outcome: ``status`` 200 with ``body`` the JSON to send, or a refusal with
    ``body`` its message (UTF-8) and, for overload, seconds to wait."""

    status: int
    body: bytes
    retry_after: float | None = None

    @classmethod
    def refused(cls, rejected: RequestRejected) -> Reply:
        return cls(rejected.status, str(rejected).encode(), rejected.retry_after)

    @property
    def ok(self) -> bool:
        return self.status == 200

    def http_body(self) -> bytes:
        """The HTTP body: the reply's JSON, or a refusal as ``{"error": ...}``."""
        return self.body if self.ok else orjson.dumps({"error": self.body.decode()})

    def http_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers beside the JSON content type: ``Retry-After`` when the client should wait."""
        if self.retry_after is None:
            return []
        return [(b"retry-after", b"%d" % max(1, math.ceil(self.retry_after)))]


async def perform(
    batcher: SequenceBatcher, call: StreamCall, owner: str, stream_id: str, body: bytes
) -> Reply:
    """Run ``call`` for ``owner``'s stream ``stream_id`` on this worker's batcher.

    Cancelling it withdraws a chunk the model has not taken (the client hung up).
    """
    try:
        if call in (StreamCall.JSON_FRAMES, StreamCall.BINARY_FRAMES):
            batcher.metrics.requests += 1
            if call is StreamCall.BINARY_FRAMES:
                frames = parse_binary(body, batcher.num_features)
            else:
                frames = parse_json(body)
            rows = await batcher.submit(stream_id, frames, owner=owner)
            return Reply(200, orjson.dumps({"stream": stream_id, "rows": rows}))
        if call in (StreamCall.END, StreamCall.RESET):
            reset = call is StreamCall.RESET
            await batcher.end(stream_id, reset=reset, owner=owner)
            return Reply(200, orjson.dumps({"stream": stream_id, "reset": reset}))
        if call is StreamCall.METRICS:
            return Reply(200, orjson.dumps(batcher.metrics_snapshot()))
        return Reply(200 if batcher.running else 503, b"")
    except RequestRejected as rejected:
        batcher.metrics.reject(rejected.reason)
        return Reply.refused(rejected)


def _frames_from_json(payload: Any) -> np.ndarray:
    if not isinstance(payload, dict) or "frames" not in payload:
        raise RequestRejected(
            400, "bad_json", 'send a JSON object {"frames": [[f_1, ..., f_F], ...]}'
        )
    frames = payload["frames"]
    if not isinstance(frames, list):
        raise RequestRejected(400, "bad_json", '"frames" must be a list of frames')
    refused = RequestRejected(
        422, "bad_frames",
        '"frames" must be a list of frames of equal length, each a list of numbers',
    )  # fmt: skip
    try:
        array = np.asarray(frames)
    # OverflowError: a JSON integer past float range (10**400) is the client's fault too;
    # uncaught, it was a 500 and ended the WebSocket.
    except (TypeError, ValueError, OverflowError):
        raise refused from None
    # Numbers only: numpy would read "1.5" strings and true/false as values, and an integer
    # past float range arrives as a Python object.
    if array.dtype.kind not in "iuf":
        raise refused
    return array


def parse_json(body: bytes) -> np.ndarray:
    try:
        # orjson: a tenth of json's time on a chunk of floats, the largest cost of an HTTP
        # request. It refuses what json reads (NaN, integers past 64 bits), so json reads
        # those, and the client hears the precise reason (422 non-finite, not 400).
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = _parse_json_strictly(body)
    return _frames_from_json(payload)


def _parse_json_strictly(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRejected(400, "bad_json", f"the body is not valid JSON ({exc})") from None
    except RecursionError:  # "[[[[...": json's recursion limit, a 500 when uncaught
        raise RequestRejected(
            400, "bad_json", 'the JSON is nested too deeply; send {"frames": [[...], ...]}'
        ) from None


def parse_binary(data: bytes, features: int) -> np.ndarray:
    if len(data) % (4 * features):
        raise RequestRejected(
            422, "bad_width",
            f"a binary message holds {len(data)} bytes, not a multiple of {4 * features} "
            f"(frames of {features} float32 values: {BINARY_FORMAT})",
        )  # fmt: skip
    return np.frombuffer(data, dtype="<f4").reshape(-1, features)
