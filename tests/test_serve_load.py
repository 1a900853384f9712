"""The serve load harness: a tiny load against a real ``edgelstm serve`` (both protocols) and
its pure parts (saturation rule, metrics scraping, row comparison) on hand-made inputs.

Wall-clock numbers are what the harness measures; no test asserts one.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from edgelstm.benchmarks.suites.serve_load.clients import run_schedule
from edgelstm.benchmarks.suites.serve_load.plan import LoadPlan, StreamLog
from edgelstm.benchmarks.suites.serve_load.report import failures, saturation
from edgelstm.benchmarks.suites.serve_load.rows_check import compare_rows
from edgelstm.benchmarks.suites.serve_load.runner import main
from edgelstm.benchmarks.suites.serve_load.sampling import batch_sizes, parse_metrics

if TYPE_CHECKING:
    from edgelstm.training.trainer import TrainResult


@pytest.fixture(scope="module")
def stream_model(trained_classify: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelstm.exporters.onnx import export

    path = tmp_path_factory.mktemp("serve_load") / "tiny.stream.onnx"
    export(trained_classify.out, path, streaming=True)
    return path


def _run(model: Path, out: Path, *extra: str) -> dict[str, Any]:
    # A minute for p99: these tests check what was served, lost, refused and in what order,
    # never how fast (a busy CI machine took a tiny load's p99 past the 50 ms default).
    argv = ["--model", str(model), "--name", "tiny", "--out", str(out), "--streams", "3",
            "--rate", "20", "--frames-per-request", "2", "--duration", "1",
            "--p99-limit-ms", "60000", *extra]  # fmt: skip
    assert main(argv) == 0
    document: dict[str, Any] = json.loads((out / "serve_load_tiny.json").read_text())
    return document


@pytest.mark.parametrize(
    ("flags", "label"),
    [(["http"], "http"), (["ws", "--binary"], "ws-binary")],
)
def test_a_tiny_load_is_served_in_order_with_the_offline_rows(
    stream_model: Path, tmp_path: Path, flags: list[str], label: str
) -> None:
    document = _run(stream_model, tmp_path, "--protocol", *flags)
    (point,) = document["points"]
    assert point["protocol"] == label
    requests = point["requests"]
    assert requests["ok"] == requests["scheduled"] == 3 * 10  # 1 s at 20 Hz, 2 frames each
    assert requests["lost"] == requests["reordered"] == requests["rejected"] == 0
    assert point["achieved_frames_per_s"] > 0 and point["latency_ms"]["p99"] is not None
    # Three streams' rows equal `run --stream --chunk 2` on the frames they sent.
    check = point["correctness"]
    assert check["passed"] and check["streams"] == 3 and check["chunks"] == 30
    assert point["batch_size"]["calls"] >= 1 and sum(point["batch_size"]["histogram"].values())
    assert point["after_load"] == {"ended": {"200": 3}, "healthz": 200, "request": 200, "ok": True}
    assert point["exit_code"] == 0  # SIGTERM is a clean shutdown
    assert point["rss_mb"]["samples"] and document["environment"]["cpu_flags"] is not None
    assert document["saturation"][f"{point['protocol']}/batched"]["streams"] == 3
    markdown = (tmp_path / "serve_load_tiny.md").read_text()
    assert f"| {point['protocol']} | batched | 3 |" in markdown
    assert document["command"].startswith("python -m edgelstm.benchmarks.suites.serve_load --model")


def test_streams_past_max_streams_are_refused_cleanly_and_the_server_serves_after(
    stream_model: Path, tmp_path: Path
) -> None:
    # Over WebSocket with JSON text messages (the third message format).
    document = _run(stream_model, tmp_path, "--protocol", "ws", "--max-streams", "2", "--baseline")
    batched, baseline = document["points"]
    assert (batched["variant"], baseline["variant"]) == ("batched", "baseline")
    assert baseline["server_flags"] == ["--max-streams", "2", "--max-batch", "1"]
    for point in (batched, baseline):
        # One stream gets no slot: its first request is a 429 with Retry-After 1 s, so it
        # drops its other nine (1 s of frames); nothing else fails.
        requests = point["requests"]
        assert requests["rejected_by_status"] == {"429": 1} and requests["dropped"] == 9
        assert requests["lost"] == requests["reordered"] == requests["unsent"] == 0
        assert point["server_rejections"] == {"too_many_streams": 1}
        assert point["sustained_streams"] == 2
        assert point["after_load"]["ok"] and point["exit_code"] == 0
    assert baseline["batch_size"]["histogram"]["1"] == baseline["batch_size"]["calls"]
    assert batched["protocol"] == "ws-json"
    assert document["saturation"]["ws-json/batched"] == {
        "streams": None, "first_failure": 3, "why": ["1 rejected"], "limit_ms": 60000.0,
    }  # fmt: skip


class _Scripted:
    """A stand-in client answering from a script; past its end it never answers."""

    def __init__(self, *replies: tuple[int, Any]) -> None:
        self.replies = list(replies)

    async def exchange(self, message: bytes | str) -> tuple[int, Any]:
        if not self.replies:
            await asyncio.Event().wait()
        return self.replies.pop(0)


def _drive_one(client: Any, requests: int, cancel_after_s: float) -> StreamLog:
    # 1 kHz in 10-frame requests: one request due every 10 ms.
    plan = LoadPlan(1, rate_hz=1000, frames_per_request=10, duration_s=requests / 100)
    log = StreamLog()

    async def run() -> None:
        task = asyncio.ensure_future(run_schedule(0, plan, client, [b""], time.perf_counter(), log))
        await asyncio.wait([task], timeout=cancel_after_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    return log


def test_the_client_counts_reordered_replies_backs_off_when_refused_and_loses_at_the_deadline() -> (
    None
):
    rows = [(200, {"rows": [{"frame": 9}]}), (200, {"rows": [{"frame": 29}]})]
    log = _drive_one(_Scripted(*rows, (429, {"retry_after": 60.0})), requests=10, cancel_after_s=5)
    # frame 29 after 9 skips a chunk: reordered; the 429 drops what is due in the next 60 s.
    assert (log.sent, log.ok, log.reordered, log.dropped, log.lost) == (3, 2, 1, 7, 0)
    assert dict(log.statuses) == {200: 2, 429: 1} and len(log.latencies) == 2
    # No reply before the deadline: that request is lost, the ones after it never sent.
    log = _drive_one(_Scripted(rows[0]), requests=10, cancel_after_s=0.5)
    assert (log.sent, log.ok, log.lost, log.reordered) == (2, 1, 1, 0)


def _point(streams: int, p99: float | None, **bad: int) -> dict[str, Any]:
    requests = {"lost": 0, "reordered": 0, "rejected": 0, "unsent": 0, **bad}
    return {"streams": streams, "latency_ms": {"p99": p99}, "requests": requests}


def test_saturation_is_the_largest_count_served_before_the_first_failure() -> None:
    points = [_point(750, 80.0), _point(100, 5.0), _point(500, 40.0), _point(250, 12.0)]
    assert saturation(points) == {
        "streams": 500, "first_failure": 750, "why": ["p99 80.0 ms > 50 ms"], "limit_ms": 50.0,
    }  # fmt: skip
    assert saturation(points, p99_limit_ms=30.0)["streams"] == 250
    # A count served after a failure is noise, not capacity.
    assert saturation([_point(100, 60.0), _point(250, 10.0)])["streams"] is None
    assert saturation([])["streams"] is None


@pytest.mark.parametrize("kind", ["lost", "reordered", "rejected", "unsent"])
def test_any_lost_reordered_rejected_or_unsent_request_fails_a_point(kind: str) -> None:
    assert failures(_point(250, 1.0, **{kind: 1})) == [f"1 {kind}"]
    assert saturation([_point(100, 5.0), _point(250, 1.0, **{kind: 2})])["streams"] == 100


def test_a_point_that_served_nothing_fails() -> None:
    assert failures(_point(100, None, rejected=5)) == ["p99 None ms > 50 ms", "5 rejected"]


def test_batch_sizes_are_the_difference_of_two_scrapes_of_the_servers_metrics() -> None:
    from edgelstm.runtimes.serve.metrics import ServerMetrics

    metrics = ServerMetrics()

    def scrape() -> dict[str, float]:
        return parse_metrics(metrics.render(active_streams=0, queued_frames=0))

    for size in (1, 64):  # before the load: not counted
        metrics.batch_size.observe(size)
    before = scrape()
    for size in (1, 2, 3, 4, 5, 64, 64, 600):
        metrics.batch_size.observe(size)
    found = batch_sizes(before, scrape())
    assert found["calls"] == 8 and found["mean"] == pytest.approx(743 / 8)
    histogram = found["histogram"]
    assert (histogram["1"], histogram["2"], histogram["3-4"], histogram["5-8"]) == (1, 1, 2, 1)
    assert (histogram["33-64"], histogram[">512"], sum(histogram.values())) == (2, 1, 8)


def test_row_comparison_allows_the_sixth_decimal_and_nothing_more() -> None:
    row = {"frame": 9, "label": "b", "confidence": 0.6, "prob_a": 0.4, "prob_b": 0.6}
    assert compare_rows([[row]], [[{**row, "prob_a": 0.400004}]]) == (0, pytest.approx(4e-6))
    assert compare_rows([[row]], [[{**row, "prob_a": 0.4001}]])[0] == 1
    assert compare_rows([[row]], [[{**row, "label": "a"}]])[0] == 1
    assert compare_rows([[row]], [[{**row, "frame": 8}]])[0] == 1
    assert compare_rows([[row], [row]], [[row]])[0] == 1  # a missing chunk
