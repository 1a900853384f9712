"""`edgelstm serve --workers N`: a stream's frames meet its state in order whichever worker a
request lands on; limits, metrics and health cover the whole server; a dead worker stops it.

Each test runs the real server (a supervisor and its worker processes). Requests of one
stream go out on fresh connections, so the kernel hands them to either worker; the rows are
checked against the offline path ``run --stream`` uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from conftest import TINY_KW, free_port, server_process, single_thread, write_classify_npz

from edgelstm.exporters import export
from edgelstm.runtimes.model_io.stream_rows import StreamRows
from edgelstm.runtimes.model_io.streaming_session import StreamingSession
from edgelstm.runtimes.ort.artifact import load_artifact
from edgelstm.runtimes.serve.directory import BUCKETS, SLACK, StreamDirectory, bucket_of

if TYPE_CHECKING:
    pass

#: Bounds a hang; never a timing check.
HANG_S = 60.0
TOKENS = ("worker-test-token-aaaaaaaaaaaaaaaa", "worker-test-token-bbbbbbbbbbbbbbbb")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _reference_rows(stream_model: Path, chunks: list[np.ndarray]) -> list[dict[str, Any]]:
    """One fresh stream's rows for ``chunks``, as ``run --stream --chunk K`` computes them."""
    artifact = load_artifact(stream_model, verify=False)
    session, rows = (
        StreamingSession(artifact),
        StreamRows(artifact.edgelstm_metadata(), stream_model),
    )
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        x = rows.model_input(chunk)
        out += rows.rows(x, session.push(x[None])[0])
    return out


def _assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], where: str) -> None:
    assert [list(r) for r in got] == [list(r) for r in want], where
    for row, expected in zip(got, want, strict=True):
        for key, value in row.items():
            if isinstance(value, float):
                assert abs(value - expected[key]) <= 1e-5, (where, key, value, expected[key])
            else:
                assert value == expected[key], (where, key, value, expected[key])


def _metrics(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", headers=headers, timeout=HANG_S).text
    pairs = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, _, value in pairs if name}


def _fresh_connection() -> httpx.AsyncClient:
    """A client that opens a new connection per request: the kernel picks its worker."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(limits=limits, timeout=HANG_S)


def test_a_stream_stays_with_the_worker_that_claimed_it_until_its_bucket_empties() -> None:
    """The directory two workers share: the first worker a stream reaches claims its bucket;
    the bucket changes hands only once that worker holds no stream in it."""
    table, streams, lock = [-1] * BUCKETS, [0, 0], threading.Lock()
    first, second = (StreamDirectory(w, table, streams, lock) for w in (0, 1))
    assert second.owner("sensor-1") == 1  # reached worker 1 first: worker 1 holds it
    assert first.owner("sensor-1") == 1
    second.opened("sensor-1")
    second.opened("sensor-1")  # two streams in one bucket (ids of two tokens, say)
    second.closed("sensor-1")
    assert first.owner("sensor-1") == 1  # one left: the bucket stays
    second.closed("sensor-1")
    assert first.owner("sensor-1") == 0  # freed with its last stream, then claimed anew
    # crc32, not Python's per-process salted hash(): every worker finds the same bucket.
    assert bucket_of("sensor-1") == zlib.crc32(b"sensor-1") % BUCKETS
    assert StreamDirectory.alone().owner("anything") == 0


def test_a_worker_holding_more_than_its_share_hands_new_streams_to_the_lightest() -> None:
    table, streams, lock = [-1] * BUCKETS, [0, 0], threading.Lock()
    busy = StreamDirectory(0, table, streams, lock)
    claimed = []
    for i in range(100):  # every new stream reaches worker 0 first
        sid = f"s{i}"
        holder = busy.owner(sid)
        claimed.append(holder)
        if holder == 0:
            busy.opened(sid)
        else:
            streams[1] += 1  # worker 1 opened it
    assert claimed[: SLACK + 1] == [0] * (SLACK + 1)  # its own, while within the slack
    assert abs(streams[0] - streams[1]) <= SLACK + 1  # then the load stays even


def test_each_streams_frames_stay_in_order_across_workers(
    stream_model: Path, tmp_path: Path
) -> None:
    """Interleaved streams, each request on a new connection (so on either worker), then the
    same streams continued over WebSocket: every stream's rows are its rows in order."""
    from websockets.asyncio.client import connect

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    features = len(load_artifact(stream_model, verify=False).edgelstm_metadata().feature_names)
    rng = np.random.default_rng(0)
    streams, http_chunks, ws_chunks = 12, 4, 3
    chunks = {
        f"s{i}": [rng.normal(size=(2, features)) for _ in range(http_chunks + ws_chunks)]
        for i in range(streams)
    }
    got: dict[str, list[dict[str, Any]]] = {sid: [] for sid in chunks}

    async def one_stream(sid: str) -> None:
        async with _fresh_connection() as client:
            for chunk in chunks[sid][:http_chunks]:
                reply = await client.post(
                    f"{base}/v1/streams/{sid}/frames", json={"frames": chunk.tolist()}
                )
                assert reply.status_code == 200, reply.text
                got[sid] += reply.json()["rows"]
        async with connect(f"ws://127.0.0.1:{port}/v1/streams/{sid}/ws") as socket:
            for chunk in chunks[sid][http_chunks:]:
                await socket.send(np.asarray(chunk, dtype="<f4").tobytes())
                got[sid] += json.loads(await socket.recv())["rows"]

    async def main() -> None:
        await asyncio.gather(*(one_stream(sid) for sid in chunks))

    with server_process([str(stream_model), "--port", str(port), "--workers", "2"],
                        tmp_path / "serve.log") as (announced, _):  # fmt: skip
        assert "2 workers x 1 model thread" in announced
        asyncio.run(asyncio.wait_for(main(), HANG_S))
        metrics = _metrics(base)
        assert metrics["edgelstm_workers"] == 2
        assert metrics["edgelstm_active_streams"] == streams
        assert metrics["edgelstm_requests_total"] == streams * (http_chunks + ws_chunks)
        assert metrics["edgelstm_forwarded_total"] > 0  # the cross-worker path was taken
        assert httpx.get(f"{base}/v1/model", timeout=HANG_S).json()["workers"] == 2
        for sid in chunks:  # ends reach the owner too, from any worker
            assert httpx.delete(f"{base}/v1/streams/{sid}", timeout=HANG_S).status_code == 200
        assert _metrics(base)["edgelstm_active_streams"] == 0
    for sid, stream_chunks in chunks.items():
        # binary frames are float32: the reference reads the same float32 values
        as_sent = [c if i < http_chunks else np.asarray(c, dtype="<f4")
                   for i, c in enumerate(stream_chunks)]  # fmt: skip
        _assert_rows(got[sid], _reference_rows(stream_model, as_sent), sid)


def test_stream_limits_hold_for_the_whole_server(stream_model: Path, tmp_path: Path) -> None:
    """--max-streams and --token-streams count streams on every worker together."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token_file = tmp_path / "tokens"
    token_file.write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    args = [str(stream_model), "--port", str(port), "--workers", "2", "--max-streams", "3"]
    args += ["--token-file", str(token_file), "--token-streams", "2"]
    features = len(load_artifact(stream_model, verify=False).edgelstm_metadata().feature_names)
    body = {"frames": np.zeros((1, features)).tolist()}
    first, second = ({"Authorization": f"Bearer {token}"} for token in TOKENS)

    def post(sid: str, headers: dict[str, str]) -> tuple[int, str]:
        reply = httpx.post(f"{base}/v1/streams/{sid}/frames", json=body, headers=headers,
                           timeout=HANG_S)  # fmt: skip
        return reply.status_code, reply.text

    with server_process(args, tmp_path / "serve.log"):
        assert [post(f"a{i}", first)[0] for i in range(2)] == [200, 200]
        # The token's third stream is refused whichever worker its id hashes to.
        for i in range(2, 6):
            status, text = post(f"a{i}", first)
            assert (status, "--token-streams" in text) == (429, True), text
        assert post("b0", second)[0] == 200  # another token: the server holds 3
        for i in range(1, 5):
            status, text = post(f"b{i}", second)
            assert (status, "--max-streams" in text) == (429, True), text
        ended = httpx.delete(f"{base}/v1/streams/a0", headers=first, timeout=HANG_S)
        assert ended.status_code == 200
        assert post("b1", second)[0] == 200  # a freed stream is free on every worker
        assert _metrics(base, first)["edgelstm_active_streams"] == 3


def _worker_pids(supervisor: int) -> list[int]:
    """The supervisor's worker processes (its spawned children, not multiprocessing's
    resource tracker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == supervisor and b"spawn_main" in command and b"resource_tracker" not in command:
            pids.append(int(entry))
    return pids


def test_a_worker_that_dies_stops_the_whole_server(stream_model: Path, tmp_path: Path) -> None:
    """The streams a dead worker held are gone: the server exits non-zero (a supervisor
    restarts it whole) instead of serving half its streams."""
    port = free_port()
    log = tmp_path / "serve.log"
    with server_process([str(stream_model), "--port", str(port), "--workers", "2"], log) as (
        _,
        server,
    ):
        workers = _worker_pids(server.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        try:
            server.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server kept running with a dead worker") from None
    stderr = " ".join(log.read_text(encoding="utf-8").split())
    assert server.returncode == 1, stderr
    assert "error: the server stopped: its worker" in stderr and "Restart=on-failure" in stderr
    assert "Traceback" not in stderr, stderr
    assert _worker_pids(server.pid) == []  # the other worker was stopped, not orphaned


def test_workers_stop_when_their_supervisor_is_killed(stream_model: Path, tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL, the OOM killer) must not leave its workers
    serving the port unsupervised: they notice and shut down."""
    port = free_port()
    log = tmp_path / "serve.log"
    with server_process([str(stream_model), "--port", str(port), "--workers", "2"], log) as (
        _,
        server,
    ):
        workers = _worker_pids(server.pid)
        assert len(workers) == 2, workers
        server.kill()
        server.wait(timeout=HANG_S)
        for _ in range(int(HANG_S / 0.1)):  # a bounded wait, not a timing check
            if not any(os.path.exists(f"/proc/{pid}") for pid in workers):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"workers {workers} outlived their supervisor")
    with socket.socket() as probe:  # and the port is free for a restarted server
        probe.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def retrained(classify_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same task, features and classes as ``model``, other weights (another seed)."""
    from edgelstm.training.trainer import train

    folder = tmp_path_factory.mktemp("retrained")
    run = train("classify", data=classify_npz, out=folder / "run", seed=1, **TINY_KW)
    path = folder / "classify.stream.onnx"
    export(run.out, path, streaming=True)
    return path


def _export_other_features(path: Path) -> None:
    """A streaming classifier reading 4 features (the served one reads 3)."""
    from edgelstm.training.trainer import train

    data = write_classify_npz(path.with_suffix(".npz"), features=4)
    run = train("classify", data=data, out=path.with_suffix(".run"), seed=0, **TINY_KW)
    export(run.out, path.with_suffix(".tmp.onnx"), streaming=True)
    os.replace(path.with_suffix(".tmp.onnx"), path)


def _continued_rows(first: Path, second: Path, before: np.ndarray, after: np.ndarray) -> Any:
    """A stream's rows for ``after`` from ``second``, continuing the state ``first`` left
    after ``before``: what a swap between the two chunks must give."""
    old, new = (load_artifact(p, verify=False) for p in (first, second))
    session = StreamingSession(old)
    rows = StreamRows(old.edgelstm_metadata(), first)
    session.push(rows.model_input(before)[None])
    carried = StreamingSession(new)
    carried.set_state(session.get_state())
    rows_new = StreamRows(new.edgelstm_metadata(), second)
    rows_new.seen = len(before)
    x = rows_new.model_input(after)
    return rows_new.rows(x, carried.push(x[None])[0])


def test_sighup_swaps_the_model_and_open_streams_keep_their_state(
    stream_model: Path, retrained: Path, tmp_path: Path
) -> None:
    """Replace the file, SIGHUP: every worker loads it; a stream's next rows come from the
    new model continuing the state the old one left. A model that cannot continue the
    streams (other features) is refused and the old one serves on."""
    served = tmp_path / "served.stream.onnx"
    shutil.copy(stream_model, served)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    features = len(load_artifact(stream_model, verify=False).edgelstm_metadata().feature_names)
    rng = np.random.default_rng(3)
    before, after = rng.normal(size=(3, features)), rng.normal(size=(2, features))
    log = tmp_path / "serve.log"

    def post(sid: str, frames: np.ndarray) -> list[dict[str, Any]]:
        reply = httpx.post(f"{base}/v1/streams/{sid}/frames", json={"frames": frames.tolist()},
                           timeout=HANG_S)  # fmt: skip
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, Any]] = reply.json()["rows"]
        return rows

    def swaps_seen(count: float) -> None:
        for _ in range(int(HANG_S / 0.1)):  # a bounded wait for both workers' swap
            if _metrics(base)["edgelstm_model_swaps_total"] == count:
                return
            time.sleep(0.1)
        raise AssertionError(log.read_text(encoding="utf-8"))

    args = [str(served), "--port", str(port), "--workers", "2"]
    with server_process(args, log) as (_, server):
        streams = [f"s{i}" for i in range(6)]  # on both workers
        for sid in streams:
            post(sid, before)
        shutil.copy(retrained, tmp_path / "next.onnx")
        os.replace(tmp_path / "next.onnx", served)  # an atomic replace, as an operator would
        server.send_signal(signal.SIGHUP)
        swaps_seen(2)
        want = _continued_rows(stream_model, retrained, before, after)
        for sid in streams:
            _assert_rows(post(sid, after), want, sid)
        # A model other streams could not continue on: refused, the swapped-in one serves on.
        _export_other_features(tmp_path / "other.onnx")
        os.replace(tmp_path / "other.onnx", served)
        server.send_signal(signal.SIGHUP)
        for _ in range(int(HANG_S / 0.1)):
            if log.read_text(encoding="utf-8").count("not swapped in") == 2:
                break
            time.sleep(0.1)
        assert _metrics(base)["edgelstm_model_swaps_total"] == 2
        post("fresh", before)  # still serving
    stderr = " ".join(log.read_text(encoding="utf-8").split())
    assert "warning: SIGHUP:" in stderr and "features differ" in stderr, stderr
