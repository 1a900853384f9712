"""Property tests (hypothesis): feed validation, latency statistics, streaming, CSV reading.

Every test runs a bounded number of examples with ``derandomize=True`` (the same examples
on every run, so a strict xfail cannot pass by luck) and ``database=None`` (nothing is
written into the repository).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from conftest import single_thread
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgelstm.benchmarks.stats import latency_stats
from edgelstm.config import ModelConfig
from edgelstm.data.csv_files import ANOMALY_LABEL_COLUMNS, TIME_COLUMNS, read_csv_series
from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.streaming_session import StreamingSession
from edgelstm.runtimes.ort.feeds import InputSpec, validate_feeds
from edgelstm.runtimes.run_stream import _text_frames
from edgelstm.training.models import SequenceModel, build_model

FEATURES = 3


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# ============================================================================================
# validate_feeds: a feed either passes with the spec's dtype and the array's shape, or is
# refused with InvalidInputError; never any other exception

SPEC_DTYPES = [np.float32, np.float16, np.int32, np.int64]
ARRAY_DTYPES = [
    np.float64, np.float32, np.float16, np.int8, np.int32, np.int64, np.uint64, np.bool_,
    np.complex64,
]  # fmt: skip
DIM = st.one_of(st.integers(1, 4), st.sampled_from(["batch", "time", None]))


@st.composite
def spec_and_array(draw: st.DrawFn) -> tuple[InputSpec, np.ndarray]:
    rank = draw(st.integers(1, 4))
    spec = InputSpec(
        "x",
        draw(st.sampled_from(SPEC_DTYPES)),
        tuple(draw(st.lists(DIM, min_size=rank, max_size=rank))),
    )
    if draw(st.booleans()):  # an array shaped like the spec (often valid)
        shape = tuple(d if isinstance(d, int) else draw(st.integers(0, 4)) for d in spec.shape)
    else:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=5)))
    dtype = spec.dtype if draw(st.booleans()) else draw(st.sampled_from(ARRAY_DTYPES))
    array = draw(hnp.arrays(dtype, shape))
    return spec, array


@_settings(50)
@given(spec_and_array())
def test_validate_feeds_passes_with_the_spec_dtype_or_refuses(
    case: tuple[InputSpec, np.ndarray],
) -> None:
    spec, array = case
    try:
        feeds, notices = validate_feeds({"x": array}, (spec,), source="data.npz")
    except InvalidInputError as exc:
        assert "data.npz" in str(exc)
        return
    (name,) = feeds
    assert name == "x"
    assert feeds["x"].shape == array.shape
    assert feeds["x"].dtype == np.dtype(spec.dtype)
    assert all(isinstance(n, str) for n in notices)


@st.composite
def valid_feed(draw: st.DrawFn) -> tuple[InputSpec, np.ndarray]:
    rank = draw(st.integers(1, 4))
    dims = tuple(draw(st.lists(DIM, min_size=rank, max_size=rank)))
    dtype = draw(st.sampled_from(SPEC_DTYPES))
    shape = tuple(d if isinstance(d, int) else draw(st.integers(1, 4)) for d in dims)
    # One size per symbol: two axes named "batch" must agree.
    sizes: dict[str, int] = {}
    shape = tuple(
        sizes.setdefault(d, s) if isinstance(d, str) else s
        for d, s in zip(dims, shape, strict=True)
    )
    elements = (
        st.floats(-1e3, 1e3, width=16 if dtype == np.float16 else 32)
        if np.dtype(dtype).kind == "f"
        else None
    )
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    return InputSpec("x", dtype, dims), array


@_settings(50)
@given(valid_feed())
def test_valid_feeds_pass_unchanged(case: tuple[InputSpec, np.ndarray]) -> None:
    spec, array = case
    feeds, notices = validate_feeds({"x": array}, (spec,), source="data.npz")
    assert notices == []
    assert feeds["x"].dtype == array.dtype
    assert np.array_equal(feeds["x"], array)


# ============================================================================================
# latency_stats

LATENCIES = st.lists(
    st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=60,
)


@_settings(50)
@given(LATENCIES)
def test_latency_stats_orders_and_matches_numpy(values: list[float]) -> None:
    stats = latency_stats(values)
    assert stats.count == len(values)
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.min_ms == min(values) and stats.max_ms == max(values)
    assert stats.std_ms >= 0
    for p, got in ((50, stats.p50_ms), (90, stats.p90_ms), (99, stats.p99_ms)):
        want = float(np.percentile(values, p))
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300), (p, got, want)


@_settings(30)
@given(LATENCIES)
@example([0.1, 0.1, 0.1])
def test_latency_stats_mean_lies_within_min_and_max(values: list[float]) -> None:
    stats = latency_stats(values)
    assert stats.min_ms <= stats.mean_ms <= stats.max_ms, stats


def test_latency_stats_accepts_every_finite_sample() -> None:
    stats = latency_stats([0.0, 1.9e154])
    assert stats.max_ms == 1.9e154


# ============================================================================================
# streaming: chunked pushes equal one whole push; reset(stream) equals a fresh stream


def _streaming_export(arch: str, folder: Path) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(
        task="classify",
        input_size=FEATURES,
        arch=arch,  # type: ignore[arg-type]
        hidden_size=8,
        num_layers=2,
        num_classes=3,
        dropout=0.0,
    )
    model: SequenceModel = build_model(config).eval()
    path = folder / f"{arch}.stream.onnx"
    export(model, path, streaming=True)
    return path


@pytest.fixture(scope="module")
def lstm_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    single_thread()
    return _streaming_export("lstm", tmp_path_factory.mktemp("props-lstm"))


@pytest.fixture(scope="module")
def gru_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    single_thread()
    return _streaming_export("gru", tmp_path_factory.mktemp("props-gru"))


@st.composite
def chunked_frames(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    """Frames [batch 1-3, T <= 40, features] and positive chunk sizes summing to T."""
    chunks = draw(st.lists(st.integers(1, 12), min_size=1, max_size=8))
    while sum(chunks) > 40:
        chunks.pop()
    batch = draw(st.integers(1, 3))
    values = st.floats(-3, 3, width=32)
    frames = draw(hnp.arrays(np.float32, (batch, sum(chunks), FEATURES), elements=values))
    return frames, chunks


def _assert_chunks_equal_whole(path: Path, frames: np.ndarray, chunks: list[int]) -> None:
    batch = frames.shape[0]
    whole = StreamingSession(path, streams=batch).push(frames)
    chunked = StreamingSession(path, streams=batch)
    start = 0
    for size in chunks:
        out = chunked.push(frames[:, start : start + size])
        start += size
    np.testing.assert_allclose(out, whole, atol=1e-5, rtol=0)


@_settings(25)
@given(chunked_frames())
def test_lstm_chunked_pushes_equal_the_whole_push(
    lstm_stream: Path, case: tuple[np.ndarray, list[int]]
) -> None:
    _assert_chunks_equal_whole(lstm_stream, *case)


@_settings(25)
@given(chunked_frames())
def test_gru_chunked_pushes_equal_the_whole_push(
    gru_stream: Path, case: tuple[np.ndarray, list[int]]
) -> None:
    _assert_chunks_equal_whole(gru_stream, *case)


@st.composite
def reset_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int | None]:
    batch = draw(st.integers(1, 3))
    values = st.floats(-3, 3, width=32)
    before = draw(
        hnp.arrays(np.float32, (batch, draw(st.integers(1, 15)), FEATURES), elements=values)
    )
    after = draw(
        hnp.arrays(np.float32, (batch, draw(st.integers(1, 15)), FEATURES), elements=values)
    )
    stream = draw(st.one_of(st.none(), st.integers(0, batch - 1)))
    return before, after, stream


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@_settings(25)
@given(case=reset_case())
def test_reset_then_push_equals_a_fresh_session(
    request: pytest.FixtureRequest, arch: str, case: tuple[np.ndarray, np.ndarray, int | None]
) -> None:
    path: Path = request.getfixturevalue(f"{arch}_stream")
    before, after, stream = case
    batch = before.shape[0]
    used = StreamingSession(path, streams=batch)
    used.push(before)
    used.reset(stream)
    got = used.push(after)
    fresh = StreamingSession(path, streams=batch).push(after)
    continued = StreamingSession(path, streams=batch).push(np.concatenate([before, after], 1))
    for s in range(batch):
        if stream is None or s == stream:  # reset: as if the stream started at `after`
            np.testing.assert_allclose(got[s], fresh[s], atol=1e-5, rtol=0)
        else:  # the other streams kept their state
            np.testing.assert_allclose(got[s], continued[s], atol=1e-5, rtol=0)


# ============================================================================================
# CSV: numeric tables written as text read back as the same float32 values

NAMES = ["load", "temp", "rpm", "volt", "amp", "flow", "speed", "x1", "y_2", "Zed"]
assert not set(n.lower() for n in NAMES) & (TIME_COLUMNS | ANOMALY_LABEL_COLUMNS)


@st.composite
def numeric_table(draw: st.DrawFn) -> tuple[np.ndarray, list[str]]:
    width = draw(st.integers(1, 5))
    rows = draw(st.integers(1, 30))
    values = st.floats(allow_nan=False, allow_infinity=False, width=32)
    table = draw(hnp.arrays(np.float32, (rows, width), elements=values))
    names = draw(st.permutations(NAMES))[:width]
    return table, names


def _csv_text(table: np.ndarray, names: list[str] | None, *, spaced: bool, newline: str) -> str:
    separator = ", " if spaced else ","
    lines = [separator.join(names)] if names is not None else []
    lines += [separator.join(repr(float(v)) for v in row) for row in table]
    return newline.join(lines) + newline


@_settings(50)
@given(
    numeric_table(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)
def test_read_csv_series_round_trips_float32(
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[np.ndarray, list[str]],
    header: bool,
    spaced: bool,
    newline: str,
    bom: bool,
) -> None:
    table, names = case
    text = _csv_text(table, names if header else None, spaced=spaced, newline=newline)
    path = tmp_path_factory.mktemp("csv") / "series.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    series = read_csv_series(path)
    assert series.values.dtype == np.float32
    np.testing.assert_array_equal(series.values, table)
    want = tuple(names) if header else tuple(f"f{i}" for i in range(table.shape[1]))
    assert series.feature_names == want
    assert series.labels is None


def _meta(names: list[str]) -> ModelMetadata:
    return ModelMetadata(
        variant="streaming",
        exporter="torchscript",
        opset=17,
        torch_version="",
        edgelstm_version="",
        inputs={},
        outputs={},
        task="classify",
        feature_names=tuple(names),
    )


@_settings(50)
@given(
    numeric_table(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
    st.randoms(use_true_random=False),
)
def test_stream_csv_frames_round_trip(
    case: tuple[np.ndarray, list[str]],
    header: bool,
    spaced: bool,
    newline: str,
    rng: Any,
) -> None:
    table, names = case
    order = list(range(len(names)))
    if header:
        rng.shuffle(order)  # a header may list the columns in any order: matched by name
    columns = [names[i] for i in order]
    text = _csv_text(table[:, order], columns if header else None, spaced=spaced, newline=newline)
    frames = list(_text_frames(text.splitlines(keepends=True), "<stdin>", _meta(names)))
    assert len(frames) == len(table)
    got = np.stack(frames)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.astype(np.float32), table)
