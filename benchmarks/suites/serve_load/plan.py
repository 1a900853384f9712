"""The load one point puts on the server, and the frames and messages it sends."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LoadPlan", "StreamLog", "decode_block", "encode_blocks", "frame_pool"]


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
