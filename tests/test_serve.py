"""`edgelstm serve` (:mod:`edgelstm.runtimes.serve`): rows, batching, errors, limits, shutdown.

The HTTP tests call the ASGI app in process (httpx's ``ASGITransport``, with the app's
lifespan run by hand so the batcher starts); the batching property drives the
:class:`SequenceBatcher` directly in an event loop; one test runs ``edgelstm serve`` as a real
process and stops it with SIGTERM. The reference for every row is what
``edgelstm run MODEL --stream --chunk K`` prints, or the same offline path
(:class:`StreamingSession` and :class:`StreamRows`) that command uses.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from conftest import (
    TINY_KW,
    WINDOW_KW,
    CliRunner,
    assert_clean_failure,
    free_port,
    serving,
    single_thread,
)
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from edgelstm.exporters import export
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.stream_rows import StreamRows, stream_columns
from edgelstm.runtimes.model_io.streaming_session import StreamingSession
from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.deploy import DeploymentConfig, write_deployment
from edgelstm.runtimes.ort.session import OpenedSession, open_session
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.runtimes.serve import RequestRejected, SequenceBatcher, ServeLimits, create_app
from edgelstm.training.trainer import train

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from edgelstm.training.trainer import TrainResult

Row = dict[str, Any]

#: ``run --stream`` prints probabilities rounded to 6 decimals; a batched model call may move
#: the float32 logits by an ulp, so a printed value may differ by one unit in the 6th place.
PRINTED_ATOL = 1.000001e-6
#: Batched and single-stream calls of the same model agree this closely (float32).
BATCH_ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# --------------------------------------------------------------------------------------------
# tiny streaming exports (trained once per module)


@dataclass(frozen=True)
class Served:
    """A streaming export, its metadata and an offline reference for its rows."""

    path: Path
    artifact: Artifact
    meta: ModelMetadata
    opened: OpenedSession
    offline: StreamingSession

    @property
    def features(self) -> int:
        return int(self.offline.num_features)

    @property
    def multiple(self) -> int:
        return int(self.offline.chunk_multiple)

    def frames(self, seed: int, steps: int) -> np.ndarray:
        """``steps`` frames ``[steps, features]`` in original units (float64)."""
        return np.random.default_rng(seed).normal(size=(steps, self.features))

    def rows(self, chunks: Sequence[np.ndarray]) -> list[Row]:
        """One fresh stream's rows for ``chunks``, the way ``run --stream`` computes them."""
        self.offline.reset()
        stream_rows = StreamRows(self.meta, self.path)
        rows: list[Row] = []
        for chunk in chunks:
            x = stream_rows.model_input(chunk)
            rows += stream_rows.rows(x, self.offline.push(x[None])[0])
        return rows


def _served(path: Path) -> Served:
    artifact = load_artifact(path, verify=False)
    return Served(
        path,
        artifact,
        artifact.edgelstm_metadata(),
        open_session(artifact, SessionConfig()),
        StreamingSession(artifact),
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def classify(trained_classify: TrainResult, work: Path) -> Served:
    path = work / "classify.stream.onnx"
    export(trained_classify.out, path, streaming=True)
    return _served(path)


@pytest.fixture(scope="module")
def sequence_model(trained_classify: TrainResult, work: Path) -> Path:
    path = work / "classify.onnx"
    export(trained_classify.out, path)
    return path


@pytest.fixture(scope="module")
def anomaly(anomaly_csv: Path, work: Path) -> Served:
    run = train(
        "anomaly", data=anomaly_csv, out=work / "anomaly_run", seed=0, **TINY_KW, **WINDOW_KW
    )
    path = work / "anomaly.stream.onnx"
    export(run.out, path, streaming=True)
    served = _served(path)
    assert served.meta.anomaly_threshold is not None  # rows carry the `anomaly` verdict
    return served


@pytest.fixture(scope="module")
def conv(classify_npz: Path, work: Path) -> Served:
    """A causal conv front end with stride 2: requests must carry whole strides."""
    run = train(
        "classify",
        data=classify_npz,
        out=work / "conv_run",
        seed=0,
        frontend="conv",
        frontend_stride=2,
        frontend_kernel=4,
        frontend_channels=4,
        **TINY_KW,
    )
    path = work / "conv.stream.onnx"
    export(run.out, path, streaming=True)
    served = _served(path)
    assert served.multiple == 2
    return served


def _export_stacked(run: Path, out: Path) -> None:
    """Export checkpoint ``run`` in the stacked-state layout of older streaming files (``h``,
    ``c`` ``[layers, batch, hidden]``, split and concatenated inside the graph)."""
    import dataclasses

    from edgelstm.benchmarks.suites.streaming_state import stacked_state_model
    from edgelstm.training import checkpoint

    load = checkpoint.load_checkpoint

    def load_stacked(path: Path) -> checkpoint.Checkpoint:
        loaded = load(path)
        return dataclasses.replace(loaded, model=stacked_state_model(loaded.model))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "load_checkpoint", load_stacked)
        export(run, out, streaming=True)


@pytest.fixture(scope="module")
def two_layers(classify_npz: Path, work: Path) -> Path:
    """A two-layer classify run: per-layer and stacked state differ only from two layers."""
    kw = {**TINY_KW, "layers": 2}
    return train("classify", data=classify_npz, out=work / "two_layers", seed=0, **kw).out


@pytest.fixture(scope="module")
def stacked(two_layers: Path, work: Path) -> Served:
    """An old-layout streaming file: one stacked ``h`` and ``c`` for both layers."""
    path = work / "stacked.stream.onnx"
    _export_stacked(two_layers, path)
    served = _served(path)
    assert served.meta.state == {"h": [2, "batch", 8], "c": [2, "batch", 8]}
    return served


KINDS = ["classify", "anomaly", "conv", "stacked"]


# --------------------------------------------------------------------------------------------
# helpers


def _chunks(frames: np.ndarray, chunk: int) -> list[np.ndarray]:
    return [frames[start : start + chunk] for start in range(0, len(frames), chunk)]


def _assert_same_rows(
    got: list[Row], want: list[Row], where: str, atol: float = BATCH_ATOL
) -> None:
    """Same rows: same keys in the same order, labels and frame numbers identical, floats
    within ``atol``."""
    assert len(got) == len(want), f"{where}: {len(got)} rows, expected {len(want)}"
    for n, (row, expected) in enumerate(zip(got, want, strict=True)):
        assert list(row) == list(expected), f"{where}, row {n}: {list(row)} != {list(expected)}"
        for key, value in row.items():
            if isinstance(expected[key], float):
                assert abs(value - expected[key]) <= atol, (where, n, key, value, expected[key])
            else:
                assert value == expected[key], (where, n, key, value, expected[key])


def _assert_rows_as_printed(got: list[Row], printed: list[dict[str, str]], where: str) -> None:
    """The server's JSON rows equal the CSV rows ``run --stream`` printed: same columns,
    labels and integers identical, floats equal to what was printed (within 1e-6)."""
    assert len(got) == len(printed), (
        f"{where}: {len(got)} rows, run --stream printed {len(printed)}"
    )
    for n, (row, line) in enumerate(zip(got, printed, strict=True)):
        assert list(row) == list(line), f"{where}, row {n}: {list(row)} != {list(line)}"
        for key, value in row.items():
            if isinstance(value, float):
                assert abs(value - float(line[key])) <= PRINTED_ATOL, (where, n, key, value, line)
            else:
                assert str(value) == line[key], (where, n, key, value, line)


def _printed_rows(
    cli: CliRunner, served: Served, frames: np.ndarray, chunk: int, csv_path: Path
) -> list[dict[str, str]]:
    """The CSV rows ``edgelstm run MODEL --stream --chunk K`` prints for ``frames``."""
    names = served.meta.feature_names or tuple(f"f{i}" for i in range(served.features))
    lines = [",".join(names), *(",".join(map(repr, row)) for row in frames.tolist())]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("run", served.path, "--stream", "--chunk", str(chunk), "--input", csv_path)
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert rows and list(rows[0]) == stream_columns(served.meta)
    return rows


#: Bounds a hang (a broken batcher never drains: its close() would spin forever, and a
#: cancelled test waits for it); not a timing check.
HANG_S = 20.0


async def _close(batcher: SequenceBatcher) -> None:
    await asyncio.wait_for(batcher.close(), HANG_S)


def _url(stream: str) -> str:
    return f"/v1/streams/{stream}/frames"


async def _post(client: httpx.AsyncClient, stream: str, frames: np.ndarray) -> httpx.Response:
    response: httpx.Response = await client.post(_url(stream), json={"frames": frames.tolist()})
    return response


async def _rows(client: httpx.AsyncClient, stream: str, frames: np.ndarray) -> list[Row]:
    response = await _post(client, stream, frames)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stream"] == stream
    rows: list[Row] = body["rows"]
    return rows


def _assert_refused(response: httpx.Response, status: int, *words: str) -> str:
    """A refusal: ``status``, JSON ``{"error": ...}`` holding ``words``; the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert list(body) == ["error"], body
    error: str = body["error"]
    for word in words:
        assert word in error, f"{word!r} not in {error!r}"
    return error


SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)"  # metric name
    r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})?'
    r" (\S+)$"
)
METRIC_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _prometheus(text: str) -> dict[str, float]:
    """Parse Prometheus text exposition (0.0.4), checking every line; samples by name+labels.

    Every sample belongs to a metric declared by ``# TYPE``; histogram buckets are cumulative
    (non-decreasing, ``le`` increasing) and the ``+Inf`` bucket equals ``_count``.
    """
    assert text.endswith("\n"), "the exposition ends with a newline"
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert len(parts) >= 3 and parts[1] in ("HELP", "TYPE"), line
            if parts[1] == "TYPE":
                assert parts[3] in METRIC_TYPES, line
                assert parts[2] not in types, f"{parts[2]} declared twice"
                types[parts[2]] = parts[3]
            continue
        match = SAMPLE.match(line)
        assert match is not None, f"not a sample line: {line!r}"
        name, labels, raw = match.groups()
        value = float(raw)  # +Inf, -Inf and NaN parse too
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        declared = types.get(name) or types.get(base)
        assert declared is not None, f"{name} has no # TYPE line"
        if name.endswith(("_bucket", "_sum", "_count")) and name not in types:
            assert declared in ("histogram", "summary"), line
        key = name + (labels or "")
        assert key not in samples, f"{key} twice"
        samples[key] = value
        if name.endswith("_bucket"):
            le = re.search(r'le="([^"]*)"', labels or "")
            assert le is not None, line
            buckets.setdefault(base, []).append((float(le.group(1)), value))
    for base, kind in types.items():
        if kind != "histogram":
            continue
        rows = buckets.get(base, [])
        assert rows and rows[-1][0] == math.inf, f"{base} has no +Inf bucket"
        bounds = [b for b, _ in rows]
        counts = [c for _, c in rows]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), (base, bounds)
        assert counts == sorted(counts), f"{base} buckets are not cumulative: {counts}"
        assert counts[-1] == samples[f"{base}_count"], base
    return samples


async def _metrics(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return _prometheus(response.text)


async def _until(client: httpx.AsyncClient, sample: str, value: float) -> None:
    """Poll /metrics until ``sample`` reads ``value`` (a bounded wait for the server's
    state, not a timing assertion)."""
    seen = None
    for _ in range(4000):
        seen = (await _metrics(client)).get(sample)
        if seen == value:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{sample} stayed {seen}, expected {value}")


def _run(main: Callable[[], Awaitable[Any]], *, hang_s: float = 120.0) -> Any:
    """Run ``main`` in a fresh event loop, a hang bounded by ``hang_s`` (see HANG_S)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), hang_s)

    return asyncio.run(bounded())


# ============================================================================================
# 1. a stream's rows are the rows `run --stream` prints


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_streams_get_the_rows_run_stream_prints(
    kind: str, request: pytest.FixtureRequest, cli: CliRunner, tmp_path: Path
) -> None:
    """20 streams at once, each its own frames and chunk size; the conv export takes chunks
    of whole strides (2 frames)."""
    served: Served = request.getfixturevalue(kind)
    m = served.multiple
    plans: list[tuple[np.ndarray, int]] = []
    for i in range(20):
        rng = np.random.default_rng(100 + i)
        steps = int(rng.integers(3, 14)) * m
        plans.append((served.frames(i, steps), int(rng.integers(1, 5)) * m))
    printed = [
        _printed_rows(cli, served, frames, chunk, tmp_path / f"stream{i}.csv")
        for i, (frames, chunk) in enumerate(plans)
    ]
    limits = ServeLimits(max_batch=8, max_delay_ms=1.0)

    async def stream(client: httpx.AsyncClient, i: int) -> list[Row]:
        frames, chunk = plans[i]
        rows: list[Row] = []
        for piece in _chunks(frames, chunk):
            rows += await _rows(client, f"sensor-{i}", piece)
        return rows

    async def main() -> tuple[list[list[Row]], dict[str, float]]:
        async with serving(create_app(served.artifact, limits=limits)) as client:
            model = (await client.get("/v1/model")).json()
            assert model["columns"] == list(printed[0][0])  # what a client reads the rows by
            assert model["frames_multiple"] == m
            assert len(model["features"]) in (0, served.features)
            got = await asyncio.gather(*(stream(client, i) for i in range(20)))
            return list(got), await _metrics(client)

    got, metrics = _run(main)
    for i in range(20):
        _assert_rows_as_printed(got[i], printed[i], f"{kind} stream {i} (chunk {plans[i][1]})")
    assert metrics["edgelstm_active_streams"] == 20
    assert metrics["edgelstm_frames_total"] == sum(len(f) for f, _ in plans)


def test_a_stacked_state_file_serves_the_rows_of_its_per_layer_export(
    stacked: Served, two_layers: Path, work: Path
) -> None:
    """Old streaming files (stacked ``h``/``c``) and new ones (one state per layer) of one
    checkpoint give a stream the same rows through the batcher."""
    path = work / "per_layer.stream.onnx"
    export(two_layers, path, streaming=True)
    per_layer = _served(path)
    assert list(per_layer.meta.state) == ["layer0_h", "layer0_c", "layer1_h", "layer1_c"]
    plans = [_chunks(stacked.frames(seed, 12), chunk) for seed, chunk in ((1, 1), (2, 5))]

    async def main() -> list[list[Row]]:
        batcher = SequenceBatcher(stacked.opened, stacked.meta, ServeLimits(max_delay_ms=1.0))
        batcher.start()

        async def stream(n: int) -> list[Row]:
            return [row for c in plans[n] for row in await batcher.submit(f"s{n}", c)]

        try:
            return list(await asyncio.gather(stream(0), stream(1)))
        finally:
            await _close(batcher)

    for n, rows in enumerate(_run(main)):
        _assert_same_rows(rows, per_layer.rows(plans[n]), f"stream {n}")


def test_a_chunk_that_splits_a_stride_is_refused(conv: Served) -> None:
    async def main() -> None:
        async with serving(create_app(conv.artifact)) as client:
            response = await _post(client, "odd", conv.frames(0, 3))
            _assert_refused(response, 422, "multiple of 2")
            rows = await _rows(client, "odd", conv.frames(0, 4))  # whole strides are fine
            _assert_same_rows(rows, conv.rows([conv.frames(0, 4)]), "after the refusal")

    _run(main)


# ============================================================================================
# 2. batching never changes a stream's rows


@st.composite
def _schedules(draw: st.DrawFn) -> dict[str, Any]:
    """Chunks for 1-4 streams, the order they are submitted in, where the submitter yields
    to the event loop, and the batching policy."""
    streams = draw(st.integers(1, 4))
    lengths = [draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)) for _ in range(streams)]
    order = draw(st.permutations([s for s in range(streams) for _ in lengths[s]]))
    pauses = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    return {
        "lengths": lengths,
        "order": order,
        "pauses": pauses,
        "max_batch": draw(st.sampled_from([1, 2, 3, 8])),
        "max_delay_ms": draw(st.sampled_from([0.0, 0.5, 2.0])),
        "seed": draw(st.integers(0, 2**16)),
    }


# Several streams submitting at once with chunks of one length: batches larger than 1.
TOGETHER = {
    "lengths": [[2, 1], [2, 1], [2, 3], [2]],
    "order": [0, 1, 2, 3, 0, 1, 2],
    "pauses": [False] * 7,
    "max_batch": 8,
    "max_delay_ms": 0.0,
    "seed": 0,
}


def _batched(served: Served, case: dict[str, Any]) -> tuple[list[list[Row]], list[int], Any]:
    """Submit the case's chunks to a SequenceBatcher; each stream's rows (in chunk order),
    the order the submissions completed in, and the batcher's metrics."""
    m = served.multiple
    rng = np.random.default_rng(case["seed"])
    chunks = [
        [rng.normal(size=(k * m, served.features)) for k in lengths] for lengths in case["lengths"]
    ]
    limits = ServeLimits(max_batch=case["max_batch"], max_delay_ms=case["max_delay_ms"])

    async def main() -> tuple[list[list[Row]], list[int], Any]:
        batcher = SequenceBatcher(served.opened, served.meta, limits)
        batcher.start()
        done: list[int] = []
        tasks: list[tuple[int, int, asyncio.Task[list[Row]]]] = []
        sent = [0] * len(chunks)

        def finished(n: int) -> Callable[[object], None]:
            return lambda _: done.append(n)

        try:
            for n, (stream, pause) in enumerate(zip(case["order"], case["pauses"], strict=True)):
                if pause:
                    await asyncio.sleep(0)
                index = sent[stream]
                sent[stream] += 1
                task = asyncio.create_task(batcher.submit(f"s{stream}", chunks[stream][index]))
                task.add_done_callback(finished(n))
                tasks.append((stream, index, task))
            await asyncio.gather(*(t for _, _, t in tasks))
        finally:
            await _close(batcher)
        rows: list[list[Row]] = [[] for _ in chunks]
        for stream, _, task in sorted(tasks, key=lambda t: (t[0], t[1])):
            rows[stream] += task.result()
        return rows, done, batcher.metrics

    rows, done, metrics = _run(main, hang_s=HANG_S)  # an example takes milliseconds
    for stream, stream_chunks in enumerate(chunks):
        where = f"stream {stream} of {case}"
        _assert_same_rows(rows[stream], served.rows(stream_chunks), where)
    return rows, done, metrics


@pytest.mark.parametrize("kind", KINDS)
def test_batching_never_changes_a_streams_rows(kind: str, request: pytest.FixtureRequest) -> None:
    served: Served = request.getfixturevalue(kind)
    larger_than_one: list[int] = []

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: the examples are small already, and on a batcher that hangs each
        # shrink step would wait out HANG_S.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(_schedules())
    @example(TOGETHER)
    def check(case: dict[str, Any]) -> None:
        _, done, metrics = _batched(served, case)
        # Per stream, submissions complete in the order they were made.
        for stream in range(len(case["lengths"])):
            mine = [n for n in done if case["order"][n] == stream]
            assert mine == sorted(mine), (stream, done, case)
        counts = metrics.batch_size.counts  # per bucket: <= 1, <= 2, <= 4, <= 8, ...
        allowed = bisect.bisect_left(metrics.batch_size.bounds, case["max_batch"])
        assert sum(counts[allowed + 1 :]) == 0, f"a batch above max_batch: {counts}"
        assert metrics.batch_size.count >= 1
        larger_than_one.append(sum(counts[1:]))

    check()
    assert sum(larger_than_one) > 0, "no batch ever held more than one stream"


# ============================================================================================
# 3. errors: refused with JSON naming the problem, nobody else affected


def _json(frames: Any) -> bytes:
    return json.dumps({"frames": frames}).encode()


ERRORS_LIMITS = ServeLimits(
    max_frames_per_request=8, max_queued_frames_per_stream=8, max_body_bytes=8000
)

#: (id, body from the model's feature count, status, words the error must hold)
BAD_BODIES: list[tuple[str, Callable[[int], bytes], int, tuple[str, ...]]] = [
    ("malformed-json", lambda f: b'{"frames": [[0.1, 0.2', 400, ("not valid JSON",)),
    ("not-utf8", lambda f: b'{"frames": [[\xff]]}', 400, ("not valid JSON",)),
    ("not-an-object", lambda f: json.dumps([[0.0] * f]).encode(), 400, ('"frames"',)),
    ("missing-frames", lambda f: json.dumps({"frame": [[0.0] * f]}).encode(), 400, ('"frames"',)),
    ("frames-not-a-list", lambda f: _json(3), 400, ('"frames" must be a list',)),
    ("ragged", lambda f: _json([[0.0] * f, [0.0] * (f + 1)]), 422, ("equal length",)),
    ("not-numbers", lambda f: _json([[{"a": 1}] * f]), 422, ("list of numbers",)),
    ("flat", lambda f: _json([0.0] * f), 422, ("shape",)),
    ("no-frames", lambda f: _json([]), 422, ("non-empty",)),
    ("wrong-width", lambda f: _json([[0.0] * (f + 1)]), 422, ("must hold", "values")),
    ("nan", lambda f: ('{"frames": [[NaN' + ", 0" * (f - 1) + "]]}").encode(), 422, ("NaN",)),
    (
        "infinity",
        lambda f: ('{"frames": [[0' + ", Infinity" * (f - 1) + "]]}").encode(),
        422,
        ("Inf",),
    ),
    (
        "overflow",
        lambda f: ('{"frames": [[1e999' + ", 0" * (f - 1) + "]]}").encode(),
        422,
        ("Inf",),
    ),
    # An integer past float range overflowed numpy's conversion: a 500, and a dead WebSocket.
    ("huge-integer", lambda f: _json([[10**400] + [0] * (f - 1)]), 422, ("numbers",)),
    # numpy reads "1.5" strings and booleans as numbers; the API takes numbers only.
    ("strings", lambda f: _json([["1.5"] * f]), 422, ("numbers",)),
    ("booleans", lambda f: _json([[True] * f]), 422, ("numbers",)),
    # Deep nesting overflowed json's recursion (RecursionError): a 500 as well.
    ("deep-nesting", lambda f: b'{"frames": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400, ("JSON",)),
    ("too-many-frames", lambda f: _json([[0.0] * f] * 9), 413, ("9 frames", "at most 8")),
    (
        "body-too-large",
        lambda f: _json([[0.0] * f])[:-1] + b" " * 8000 + b"}",
        413,
        ("8000 bytes",),
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "words"), [case[1:] for case in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
@pytest.mark.parametrize("streamed", [False, True], ids=["sized", "chunked"])
def test_a_bad_request_is_refused_and_touches_nobody_else(
    classify: Served,
    body: Callable[[int], bytes],
    status: int,
    words: tuple[str, ...],
    streamed: bool,
) -> None:
    """The refused request names its problem; its own stream's state, other streams and the
    server carry on as if it never came. ``chunked`` sends the body without Content-Length,
    in pieces, so the size limit must hold while reading."""
    first, second = classify.frames(1, 4), classify.frames(2, 3)
    content = body(classify.features)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 1000):
            yield content[start : start + 1000]

    async def main() -> None:
        async with serving(create_app(classify.artifact, limits=ERRORS_LIMITS)) as client:
            before = await _rows(client, "s", first)
            response = await client.post(
                _url("s"),
                content=pieces() if streamed else content,
                headers={"content-type": "application/json"},
            )
            _assert_refused(response, status, *words)
            after = await _rows(client, "s", second)
            _assert_same_rows(before + after, classify.rows([first, second]), "the same stream")
            other = await _rows(client, "other", second)
            _assert_same_rows(other, classify.rows([second]), "another stream")
            assert (await client.get("/healthz")).status_code == 200
            metrics = await _metrics(client)
            assert metrics["edgelstm_active_streams"] == 2
            assert sum(v for k, v in metrics.items() if k.startswith("edgelstm_rejections")) == 1

    _run(main)


def test_healthz_is_503_unless_the_batcher_runs(classify: Served) -> None:
    app = create_app(classify.artifact)

    async def health() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            return (await client.get("/healthz")).status_code

    async def main() -> None:
        assert await health() == 503  # the lifespan has not started the batcher
        async with serving(app):
            assert await health() == 200
        assert await health() == 503  # stopped

    _run(main)


def test_stream_ids_and_unknown_streams(classify: Served) -> None:
    frames = classify.frames(0, 2)

    async def main() -> None:
        async with serving(create_app(classify.artifact)) as client:
            _assert_refused(await _post(client, "x" * 129, frames), 400, "1 to 128 characters")
            _assert_refused(await client.delete("/v1/streams/nobody"), 404, "'nobody'")
            rows = await _rows(client, "x" * 128, frames)
            _assert_same_rows(rows, classify.rows([frames]), "a 128-character id")
            assert (await client.get("/healthz")).status_code == 200

    _run(main)


def test_too_many_streams_is_429_until_one_ends(classify: Served) -> None:
    frames = classify.frames(0, 3)
    limits = ServeLimits(max_streams=2, max_delay_ms=0.0)

    async def main() -> None:
        async with serving(create_app(classify.artifact, limits=limits)) as client:
            await _rows(client, "a", frames)
            await _rows(client, "b", frames)
            response = await _post(client, "c", frames)
            _assert_refused(response, 429, "2 streams", "--max-streams")
            assert "retry-after" in response.headers
            more = await _rows(client, "a", frames)  # the streams held go on
            _assert_same_rows(more, classify.rows([frames, frames])[1:], "stream a")
            assert (await client.delete("/v1/streams/b")).status_code == 200
            _assert_same_rows(await _rows(client, "c", frames), classify.rows([frames]), "c")
            metrics = await _metrics(client)
            assert metrics['edgelstm_rejections_total{reason="too_many_streams"}'] == 1
            assert metrics["edgelstm_active_streams"] == 2

    _run(main)


def test_full_queues_refuse_at_once_and_leave_no_trace(classify: Served) -> None:
    """A full stream queue is 429, a full server queue 503 with Retry-After; a refused
    request opens no stream (a flood of refused new ids must not use up --max-streams)."""
    # A chunk waits (up to a minute) for a second stream's chunk of its length: the queues
    # can be filled without racing the model.
    limits = ServeLimits(
        max_streams=3,
        max_batch=2,
        max_delay_ms=60_000,
        max_frames_per_request=3,
        max_queued_frames_per_stream=3,
        max_queued_frames=4,
    )
    two, three = classify.frames(0, 2), classify.frames(1, 3)

    async def main() -> None:
        async with serving(create_app(classify.artifact, limits=limits)) as client:
            waiting = asyncio.create_task(_rows(client, "a", two))
            await _until(client, "edgelstm_queued_frames", 2)
            response = await _post(client, "a", two)
            _assert_refused(response, 429, "'a' already has 2 frames queued")
            assert response.headers["retry-after"] == "1"
            for new in ("b", "x", "y"):  # without the fix, y found a, b and x holding slots
                response = await _post(client, new, three)
                _assert_refused(response, 503, "2 frames queued", "retry shortly")
                assert response.headers["retry-after"] == "1"
            metrics = await _metrics(client)
            assert metrics["edgelstm_active_streams"] == 1
            assert metrics['edgelstm_streams_total{event="opened"}'] == 1
            assert metrics['edgelstm_rejections_total{reason="overloaded"}'] == 3
            assert metrics['edgelstm_rejections_total{reason="stream_queue_full"}'] == 1
            # A second stream's chunk of the same length completes the batch.
            other = await _rows(client, "c", two)
            _assert_same_rows(await waiting, classify.rows([two]), "the waiting stream")
            _assert_same_rows(other, classify.rows([two]), "the stream that joined it")
            assert (await client.get("/healthz")).status_code == 200

    _run(main)


# ============================================================================================
# 4. DELETE ends a stream; ?reset=true keeps it with zero state


def test_delete_ends_a_stream_and_reset_zeroes_it(classify: Served) -> None:
    a, b = classify.frames(0, 5), classify.frames(1, 3)
    fresh = classify.rows([b])
    continued = classify.rows([a, b])[-len(fresh) :]
    assert continued[0]["frame"] != fresh[0]["frame"]  # so the checks below can fail

    async def main() -> None:
        async with serving(create_app(classify.artifact)) as client:
            for stream in ("kept", "ended", "reset"):
                await _rows(client, stream, a)
            _assert_same_rows(await _rows(client, "kept", b), continued, "no DELETE")

            response = await client.delete("/v1/streams/ended")
            assert response.status_code == 200
            assert response.json() == {"stream": "ended", "reset": False}
            assert (await _metrics(client))["edgelstm_active_streams"] == 2
            _assert_refused(await client.delete("/v1/streams/ended"), 404, "'ended'")
            _assert_same_rows(await _rows(client, "ended", b), fresh, "after DELETE")

            response = await client.delete("/v1/streams/reset?reset=true")
            assert response.status_code == 200
            assert response.json() == {"stream": "reset", "reset": True}
            metrics = await _metrics(client)
            assert metrics["edgelstm_active_streams"] == 3  # the id is kept
            assert metrics['edgelstm_streams_total{event="ended"}'] == 1
            _assert_same_rows(await _rows(client, "reset", b), fresh, "after ?reset=true")

    _run(main)


def test_concurrent_deletes_of_a_running_stream_free_it_once(classify: Served) -> None:
    """Two DELETEs while the stream's chunk runs: one ends it, the other finds it gone (404,
    not a KeyError's 500), and its slot is freed once."""
    frames = classify.frames(0, 2)
    limits = ServeLimits(max_streams=2, max_delay_ms=0.0)

    async def main() -> None:
        batcher = SequenceBatcher(classify.opened, classify.meta, limits)
        batcher.start()
        try:
            running = asyncio.create_task(batcher.submit("a", frames))
            key = ("", "a")  # (owner, id): no tokens here
            while key not in batcher._streams or not batcher._streams[key].busy:
                await asyncio.sleep(0)  # until the batcher has taken the chunk
            ends = await asyncio.gather(batcher.end("a"), batcher.end("a"), return_exceptions=True)
            assert ends[0] is None, ends
            assert isinstance(ends[1], RequestRejected) and ends[1].status == 404, ends
            _assert_same_rows(await running, classify.rows([frames]), "the running chunk")
            assert batcher.active_streams == 0
            both = await asyncio.gather(batcher.submit("b", frames), batcher.submit("c", frames))
            for rows in both:  # two streams, two distinct slots: neither sees the other's state
                _assert_same_rows(rows, classify.rows([frames]), "a stream after the DELETEs")
            with pytest.raises(RequestRejected) as refused:
                await batcher.submit("d", frames)
            assert refused.value.status == 429
        finally:
            await _close(batcher)

    _run(main)


# ============================================================================================
# 5. WebSocket: JSON or raw float32, same rows as HTTP; a bad message does not end it


class _Socket:
    """A WebSocket client speaking ASGI to the app in process (the app's lifespan must run)."""

    def __init__(self, app: Starlette, path: str) -> None:
        self._to_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "client": ("127.0.0.1", 50000),
            "server": ("serve.test", 80),
            "subprotocols": [],
        }
        self._app = asyncio.create_task(app(scope, self._to_app.get, self._from_app.put))

    async def _next(self) -> MutableMapping[str, Any]:
        message = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({message, self._app}, return_when=asyncio.FIRST_COMPLETED)
        if not message.done():  # the app ended the connection (or crashed) instead
            message.cancel()
            raise AssertionError(f"the WebSocket handler ended: {self._app.exception()!r}")
        return message.result()

    async def __aenter__(self) -> _Socket:
        await self._to_app.put({"type": "websocket.connect"})
        accepted = await self._next()
        assert accepted["type"] == "websocket.accept", accepted
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
        await self._app

    async def send_text(self, text: str) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app.put({"type": "websocket.receive", "bytes": data})

    async def receive_json(self) -> dict[str, Any]:
        message = await self._next()
        assert message["type"] == "websocket.send", message
        reply: dict[str, Any] = json.loads(message.get("text") or message["bytes"])
        return reply


def test_websocket_json_and_binary_give_the_http_rows(classify: Served) -> None:
    # float32-exact values, so the binary (float32) and JSON (float64) frames are the same.
    chunks = [
        classify.frames(n, k).astype(np.float32).astype(np.float64) for n, k in enumerate((3, 1, 4))
    ]

    async def main() -> None:
        app = create_app(classify.artifact)
        async with serving(app) as client:
            http: list[Row] = []
            for chunk in chunks:
                http += await _rows(client, "h", chunk)
            _assert_same_rows(http, classify.rows(chunks), "HTTP")

            async with _Socket(app, "/v1/streams/j/ws") as ws:
                text: list[Row] = []
                for n, chunk in enumerate(chunks):
                    await ws.send_text(json.dumps({"frames": chunk.tolist()}))
                    reply = await ws.receive_json()
                    assert reply["stream"] == "j", reply
                    text += reply["rows"]
                    if n != 0:
                        continue
                    # Bad messages between good ones: an error each, then carry on.
                    for bad, status in (
                        ("{not json", 400),
                        (json.dumps({"frames": [[1.0] * (classify.features + 1)]}), 422),
                        (json.dumps({"frames": [[10**400] * classify.features]}), 422),
                        ("{" + '"frames": [[NaN' + ", 0" * (classify.features - 1) + "]]}", 422),
                    ):
                        await ws.send_text(bad)
                        error = await ws.receive_json()
                        assert set(error) == {"error", "status"}, error
                        assert error["status"] == status, (bad, error)
                _assert_same_rows(text, http, "WebSocket JSON")

            async with _Socket(app, "/v1/streams/b/ws") as ws:
                binary: list[Row] = []
                for n, chunk in enumerate(chunks):
                    await ws.send_bytes(chunk.astype("<f4").tobytes())
                    reply = await ws.receive_json()
                    assert reply["stream"] == "b", reply
                    binary += reply["rows"]
                    if n == 1:
                        await ws.send_bytes(b"\x00" * 5)  # not whole frames
                        error = await ws.receive_json()
                        assert error["status"] == 422, error
                        assert "not a multiple of" in error["error"], error
                _assert_same_rows(binary, http, "WebSocket binary")
            assert (await client.get("/healthz")).status_code == 200
            metrics = await _metrics(client)
            assert metrics["edgelstm_active_streams"] == 3

    _run(main)


# ============================================================================================
# 6. idle eviction, abandoned streams, clients that hang up


def test_idle_streams_are_evicted_after_the_idle_timeout(classify: Served) -> None:
    """With the batcher's clock in the test's hands: a stream idle for idle_timeout_s goes,
    one seen since stays, and an evicted id comes back with zero state."""
    frame = classify.frames(0, 1)
    now = [0.0]
    limits = ServeLimits(max_delay_ms=0.0, idle_timeout_s=10.0)

    async def main() -> None:
        batcher = SequenceBatcher(classify.opened, classify.meta, limits, clock=lambda: now[0])
        batcher.start()
        try:
            await batcher.submit("old", frame)
            now[0] = 6.0
            await batcher.submit("recent", frame)
            now[0] = 12.0
            assert batcher.evict_idle() == 1
            assert batcher.active_streams == 1  # "recent" was seen 6 s ago
            rows = await batcher.submit("old", frame)  # back with zero state
            _assert_same_rows(rows, classify.rows([frame]), "an evicted id, reused")
            now[0] = 100.0
            assert batcher.evict_idle() == 2
            assert batcher.metrics.streams_evicted == 3
        finally:
            await _close(batcher)

    _run(main)


def test_a_stream_with_work_queued_is_never_idle(classify: Served) -> None:
    frame = classify.frames(0, 1)
    now = [0.0]
    # The chunk waits (up to a minute) for a second stream's chunk: it stays queued.
    limits = ServeLimits(max_batch=2, max_delay_ms=60_000, idle_timeout_s=10.0)

    async def main() -> None:
        batcher = SequenceBatcher(classify.opened, classify.meta, limits, clock=lambda: now[0])
        batcher.start()
        try:
            waiting = asyncio.create_task(batcher.submit("queued", frame))
            while batcher.queued_frames == 0:
                await asyncio.sleep(0)
            now[0] = 1000.0
            assert batcher.evict_idle() == 0
            assert batcher.active_streams == 1
            other = await batcher.submit("other", frame)
            _assert_same_rows(await waiting, classify.rows([frame]), "the queued chunk")
            _assert_same_rows(other, classify.rows([frame]), "the chunk that joined it")
        finally:
            await _close(batcher)

    _run(main)


def test_ten_thousand_abandoned_streams_return_their_slots(classify: Served) -> None:
    frame = classify.frames(0, 1)
    now = [0.0]
    limits = ServeLimits(max_streams=64, max_batch=64, max_delay_ms=0.0, idle_timeout_s=10.0)

    async def main() -> None:
        batcher = SequenceBatcher(classify.opened, classify.meta, limits, clock=lambda: now[0])
        batcher.start()
        try:
            for start in range(0, 10_000, 64):
                ids = [f"abandoned-{n}" for n in range(start, min(start + 64, 10_000))]
                await asyncio.gather(*(batcher.submit(i, frame) for i in ids))
                now[0] += 11.0
                batcher.evict_idle()
                assert batcher.active_streams == 0
            assert batcher.metrics.streams_evicted == 10_000
            assert batcher.metrics.streams_opened == 10_000
            assert batcher.queued_frames == 0

            full = [f"new-{n}" for n in range(64)]
            results = await asyncio.gather(*(batcher.submit(i, frame) for i in full))
            for rows in results:  # every slot reused with zero state
                _assert_same_rows(rows, classify.rows([frame]), "a stream in a reused slot")
            with pytest.raises(RequestRejected) as refused:
                await batcher.submit("one-too-many", frame)
            assert refused.value.status == 429
        finally:
            await _close(batcher)

    _run(main)


def test_the_app_evicts_idle_streams_by_itself(classify: Served) -> None:
    limits = ServeLimits(idle_timeout_s=0.05)

    async def main() -> None:
        async with serving(create_app(classify.artifact, limits=limits)) as client:
            await _rows(client, "idle", classify.frames(0, 2))
            await _until(client, "edgelstm_active_streams", 0)
            metrics = await _metrics(client)
            assert metrics['edgelstm_streams_total{event="evicted"}'] == 1

    _run(main)


def test_a_client_that_hangs_up_withdraws_its_queued_chunk(classify: Served) -> None:
    """The chunk leaves the queue and the stream's state never sees it: the stream's next
    rows equal a fresh stream's."""
    # Chunks wait for a second stream's chunk of their length (or a minute).
    limits = ServeLimits(max_batch=2, max_delay_ms=60_000)
    withdrawn, frames = classify.frames(0, 3), classify.frames(1, 2)
    body = _json(withdrawn.tolist())

    async def main() -> None:
        app = create_app(classify.artifact, limits=limits)
        async with serving(app) as client:
            hang_up = asyncio.Event()
            sent: list[dict[str, Any]] = []
            delivered = False

            async def receive() -> dict[str, Any]:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await hang_up.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": _url("gone"),
                "raw_path": _url("gone").encode(),
                "query_string": b"",
                "root_path": "",
                "headers": [(b"content-type", b"application/json")],
                "client": ("127.0.0.1", 50000),
                "server": ("serve.test", 80),
            }
            request = asyncio.create_task(app(scope, receive, send))
            await _until(client, "edgelstm_queued_frames", 3)
            hang_up.set()
            await request
            assert sent[0]["status"] == 499
            metrics = await _metrics(client)
            assert metrics["edgelstm_queued_frames"] == 0
            assert metrics['edgelstm_rejections_total{reason="client_gone"}'] == 1
            gone, fresh = await asyncio.gather(
                _rows(client, "gone", frames), _rows(client, "fresh", frames)
            )
            _assert_same_rows(gone, classify.rows([frames]), "the stream that hung up")
            _assert_same_rows(fresh, classify.rows([frames]), "a fresh stream")

    _run(main)


# ============================================================================================
# 7. /metrics is valid Prometheus text


def test_metrics_are_valid_prometheus_text(classify: Served) -> None:
    frames = classify.frames(0, 4)

    async def main() -> None:
        async with serving(create_app(classify.artifact)) as client:
            await asyncio.gather(*(_rows(client, f"s{i}", frames) for i in range(5)))
            for bad in (b"{", b"[]"):
                _assert_refused(await client.post(_url("s0"), content=bad), 400)
            _assert_refused(await _post(client, "s0", classify.frames(0, 1)[:, :1]), 422)
            _assert_refused(await client.delete("/v1/streams/nobody"), 404)
            response = await client.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            metrics = _prometheus(response.text)
            rejected = {
                k: v for k, v in metrics.items() if k.startswith("edgelstm_rejections_total")
            }
            assert rejected == {
                'edgelstm_rejections_total{reason="bad_json"}': 2,
                'edgelstm_rejections_total{reason="bad_width"}': 1,
                'edgelstm_rejections_total{reason="unknown_stream"}': 1,
            }
            assert metrics["edgelstm_frames_total"] == 5 * len(frames)
            assert metrics["edgelstm_requests_total"] == 5 + 3
            assert metrics["edgelstm_active_streams"] == 5
            assert metrics["edgelstm_queued_frames"] == 0
            assert metrics['edgelstm_streams_total{event="opened"}'] == 5
            assert metrics["edgelstm_batch_size_sum"] == 5  # streams over all batches
            assert metrics["edgelstm_latency_seconds_count"] == 5
            assert metrics["edgelstm_queue_delay_seconds_count"] == 5

    _run(main)


# ============================================================================================
# 8. SIGTERM under load: accepted requests get their rows, the process exits 0


def test_sigterm_under_load_answers_every_accepted_request(
    classify: Served, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    streams = 20
    chunks = [[classify.frames(10 * i + n, 3) for n in range(2)] for i in range(streams)]
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "edgelstm", "serve", str(classify.path), "--port", str(port)]
    # Chunks wait up to 300 ms for company, so SIGTERM finds requests queued, not yet run.
    command += ["--max-delay-ms", "300"]

    async def late(client: httpx.AsyncClient, i: int) -> httpx.Response | Exception:
        try:
            return await _post(client, f"late-{i}", chunks[i][0])
        except httpx.TransportError as exc:  # not accepted: the server stopped listening
            return exc

    async def main(server: subprocess.Popen[bytes]) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for _ in range(1200):  # bounded wait for the model to open and uvicorn to listen
                assert server.poll() is None, log.read_text(encoding="utf-8")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the server never became healthy")
            await asyncio.gather(*(_rows(client, f"s{i}", chunks[i][0]) for i in range(streams)))
            flying = [
                asyncio.create_task(_post(client, f"s{i}", chunks[i][1])) for i in range(streams)
            ]
            async with httpx.AsyncClient(base_url=base, timeout=60) as probe:
                await _until(probe, "edgelstm_requests_total", 2 * streams)  # all accepted
            server.send_signal(signal.SIGTERM)
            refused = [asyncio.create_task(late(client, i)) for i in range(streams)]
            answers = await asyncio.gather(*flying)
            lates = await asyncio.gather(*refused)
        for i, response in enumerate(answers):
            assert response.status_code == 200, (i, response.text)
            want = classify.rows(chunks[i])[1:]
            _assert_same_rows(response.json()["rows"], want, f"stream {i}, in flight at SIGTERM")
        for i, outcome in enumerate(lates):  # refused or served, never answered wrongly
            if isinstance(outcome, httpx.Response):
                if outcome.status_code == 200:
                    _assert_same_rows(outcome.json()["rows"], classify.rows([chunks[i][0]]), "")
                else:
                    _assert_refused(outcome, 503, "shutting down")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as err:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=env)
    try:
        _run(lambda: main(server))
        out, _ = server.communicate(timeout=60)  # a bound for a hang, not a timing check
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    stderr = log.read_text(encoding="utf-8")
    assert server.returncode == 0, stderr
    assert out == b""
    assert "Traceback" not in stderr, stderr
    assert f"on http://127.0.0.1:{port}" in " ".join(stderr.split())


# ============================================================================================
# 9. the command line


@pytest.fixture
def no_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail (rather than hang) if a test's ``edgelstm serve`` got as far as listening."""
    import edgelstm.runtimes.serve as serve_module

    def refuse(uvicorn: Any) -> Any:
        raise AssertionError("edgelstm serve started its server")

    monkeypatch.setattr(serve_module, "_server_class", refuse)


@pytest.mark.usefixtures("no_listening")
def test_serve_refuses_a_sequence_model_before_listening(
    cli: CliRunner, sequence_model: Path, tmp_path: Path
) -> None:
    result = cli("serve", sequence_model, "--port", str(free_port()))
    assert_clean_failure(result, None, "sequence model without state inputs", "--streaming")

    deploy = tmp_path / "deploy.json"
    config = DeploymentConfig(model=sequence_model, mode="sequence", session=SessionConfig())
    write_deployment(config, deploy)
    result = cli("serve", "--config", deploy, "--port", str(free_port()))
    assert_clean_failure(result, None, "sequence deployment", "deploy.stream.json")


def test_serve_help_lists_its_flags(cli: CliRunner) -> None:
    result = cli("serve", "--help")
    assert result.code == 0, result.err
    for flag in (
        "--config", "--host", "--port", "--max-streams", "--max-batch", "--max-delay-ms",
        "--idle-timeout", "--max-frames", "--provider", "--fallback", "--threads",
    ):  # fmt: skip
        assert flag in result.out, f"{flag} not in serve --help"


# --------------------------------------------------------------------------------------------
# failures the shape used to hide


def test_a_failing_batch_answers_500_and_the_batcher_lives_on(
    classify: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception with no message (MemoryError()) used to kill the batch loop inside its own
    except clause, leaving every later request hanging while /healthz said 200."""
    frames = classify.frames(0, 3)
    real = SequenceBatcher._compute
    failures = [MemoryError()]

    def compute(self: SequenceBatcher, batch: list[Any]) -> list[Any]:
        if failures:
            raise failures.pop()
        return real(self, batch)

    monkeypatch.setattr(SequenceBatcher, "_compute", compute)

    async def main() -> None:
        async with serving(create_app(classify.artifact)) as client:
            failed = await _post(client, "a", frames)
            assert failed.status_code == 500, failed.text
            assert "MemoryError" in failed.json()["error"]
            assert (await client.get("/healthz")).status_code == 200
            rows = await _rows(client, "b", frames)
            _assert_same_rows(rows, classify.rows([frames]), "after a failed batch")

    _run(main)


def test_a_dead_batch_loop_turns_healthz_to_503_and_refuses_work(
    classify: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = classify.frames(0, 3)

    def broken(self: SequenceBatcher) -> list[Any]:
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(SequenceBatcher, "_take_batch", broken)
    heard: list[BaseException] = []

    async def main() -> None:
        app = create_app(classify.artifact, on_failure=heard.append)
        async with serving(app) as client:
            queued = await _post(client, "a", frames)  # wakes the loop, which dies on it
            assert queued.status_code == 503, queued.text
            assert "batcher stopped" in queued.json()["error"]
            assert (await client.get("/healthz")).status_code == 503
            again = await _post(client, "b", frames)
            assert again.status_code == 503, again.text

    _run(main)
    assert [str(e) for e in heard] == ["the loop broke"]


def test_serve_exits_non_zero_when_its_batch_loop_dies(
    classify: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor restarts a process that exits non-zero; one that keeps answering
    /healthz with a dead batcher would never be restarted."""
    import threading

    from edgelstm.runtimes.serve import BatcherFailedError, serve

    frames = classify.frames(0, 3)

    def broken(self: SequenceBatcher) -> list[Any]:
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(SequenceBatcher, "_take_batch", broken)
    ready = threading.Event()
    address: list[str] = []

    def announce(url: str) -> None:
        address.append(url)
        ready.set()

    def client() -> None:  # uvicorn's signal handlers need the main thread: serve runs there
        if ready.wait(HANG_S):
            body = {"frames": frames.tolist()}
            httpx.post(f"{address[0]}/v1/streams/a/frames", json=body, timeout=HANG_S)

    threading.Thread(target=client, daemon=True).start()
    with pytest.raises(BatcherFailedError, match="batching loop failed") as failed:
        serve(classify.artifact, port=0, on_ready=announce, graceful_timeout_s=1)
    assert failed.value.exit_code == 1
    assert address and address[0].startswith("http://127.0.0.1:")


def test_serve_announces_its_address_only_once_the_port_is_bound(classify: Served) -> None:
    from edgelstm.runtimes.serve import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ready: list[str] = []
        with pytest.raises(SystemExit):  # uvicorn gives up on a port in use
            serve(classify.artifact, port=port, on_ready=ready.append)
    assert ready == []


def test_limit_errors_name_the_flags_serve_has(cli: CliRunner) -> None:
    with pytest.raises(Exception, match="--max-frames must be >= 1"):
        ServeLimits(max_frames_per_request=0)
    help_text = cli("serve", "--help").out
    for flag in ("--max-streams", "--max-batch", "--max-frames"):
        assert flag in help_text


def test_one_batch_never_holds_two_chunks_of_one_stream(
    classify: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks that arrive while their stream's chunk runs wait for it: were two of them
    batched together, both would start from the state before the first."""
    import threading

    frames = [classify.frames(i, 2) for i in range(3)]
    release = threading.Event()
    real = SequenceBatcher._compute
    batches: list[list[str]] = []

    def compute(self: SequenceBatcher, batch: list[Any]) -> list[Any]:
        batches.append([c.stream.id for c in batch])
        if len(batches) == 1:
            release.wait(HANG_S)  # the first chunk runs while the next two queue
        return real(self, batch)

    monkeypatch.setattr(SequenceBatcher, "_compute", compute)

    async def main() -> list[list[Row]]:
        batcher = SequenceBatcher(classify.opened, classify.meta, ServeLimits(max_delay_ms=0))
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit("s", frames[0]))
            while not batches:
                await asyncio.sleep(0.001)
            later = [asyncio.ensure_future(batcher.submit("s", f)) for f in frames[1:]]
            await asyncio.sleep(0.05)
            release.set()
            return list(await asyncio.gather(first, *later))
        finally:
            await _close(batcher)

    answered = _run(main)
    assert all(len(batch) == len(set(batch)) for batch in batches), batches
    want = classify.rows(frames)
    _assert_same_rows([row for rows in answered for row in rows], want, "chunks of one stream")


def test_served_anomaly_scores_equal_the_whole_series_run(anomaly: Served, tmp_path: Path) -> None:
    """Rows are checked against `run` on the whole series, an independent path
    (`anomaly_scores` over all frames at once), not against the same row builder."""
    from edgelstm.runtimes.run_files import run_model

    frames = anomaly.frames(3, 40)
    chunks = [frames[i : i + 8] for i in range(0, 40, 8)]

    async def main() -> list[Row]:
        async with serving(create_app(anomaly.artifact)) as client:
            rows: list[Row] = []
            for chunk in chunks:
                rows += await _rows(client, "sensor", chunk)
            return rows

    served = _run(main)
    series = tmp_path / "series.csv"
    header = ",".join(anomaly.meta.feature_names)
    np.savetxt(series, frames, delimiter=",", header=header, comments="")
    whole = run_model(anomaly.path, series, tmp_path / "whole.npz").predictions
    np.testing.assert_allclose([r["score"] for r in served], whole.arrays["scores"], rtol=1e-5)
    assert [r["anomaly"] for r in served] == whole.arrays["anomaly"].tolist()
