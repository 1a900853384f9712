"""StreamingSession: state carried across pushes, per-stream reset, state export/import."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from edgelstm.benchmarks.suites.streaming_state import optimised_node_count, stacked_state_model
from edgelstm.config import ModelConfig
from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.runtimes.model_io.streaming_session import StreamingSession
from edgelstm.runtimes.ort.artifact import load_artifact
from edgelstm.training.models import SequenceModel, build_model

FEATURES = 3


def _model(arch: str, task: str = "classify") -> SequenceModel:
    torch.manual_seed(0)
    config = ModelConfig(
        task=task,  # type: ignore[arg-type]
        input_size=FEATURES,
        arch=arch,  # type: ignore[arg-type]
        hidden_size=8,
        num_layers=2,
        num_classes=3,
        dropout=0.0,
    )
    return build_model(config).eval()


@pytest.fixture(scope="module", params=["lstm", "gru", "lstm-stacked", "gru-stacked"])
def streaming_export(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SequenceModel, Path]:
    """A streaming export and its model; ``-stacked``: in the layout of older streaming files
    (one stacked ``h``/``c`` for all layers), which must stream the same."""
    arch, _, layout = request.param.partition("-")
    model = _model(arch)
    path = tmp_path_factory.mktemp("stream") / f"{request.param}.onnx"
    export(stacked_state_model(model) if layout else model, path, streaming=True)
    names = list(load_artifact(path).edgelstm_metadata().state)
    kinds = ["h", "c"] if arch == "lstm" else ["h"]
    assert names == (kinds if layout else [f"layer{i}_{k}" for i in range(2) for k in kinds])
    return model, path


def test_per_layer_state_leaves_the_optimised_graph_smaller(tmp_path: Path) -> None:
    """No split of a stacked state before the layers nor concat after them: ONNX Runtime's
    optimised graph of the per-layer export has fewer nodes than the stacked one."""
    model = _model("lstm")
    nodes = {}
    for layout, source in (("per-layer", model), ("stacked", stacked_state_model(model))):
        path = tmp_path / f"{layout}.onnx"
        export(source, path, streaming=True)
        nodes[layout] = optimised_node_count(path, tmp_path / f"{layout}.optimised.onnx")
    assert nodes["per-layer"] < nodes["stacked"], nodes


def _whole(model: SequenceModel, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]


def _frames(streams: int, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((streams, steps, FEATURES)).astype("f4")


@pytest.mark.parametrize("chunk", [1, 4, 25])
def test_chunked_pushes_equal_the_whole_sequence(
    streaming_export: tuple[SequenceModel, Path], chunk: int
) -> None:
    model, path = streaming_export
    session = StreamingSession(path, streams=2)
    x = _frames(2, 25)
    for start in range(0, 25, chunk):
        out = session.push(x[:, start : start + chunk])
    np.testing.assert_allclose(out, _whole(model, x), atol=1e-5)


def test_single_stream_accepts_one_frame_and_2d_chunks(
    streaming_export: tuple[SequenceModel, Path],
) -> None:
    model, path = streaming_export
    session = StreamingSession(path)
    x = _frames(1, 6)
    session.push(x[0, 0])  # [features]
    session.push(x[0, 1:3].astype(np.float64))  # [frames, features], float64 converted
    out = session.push(x[:, 3:])
    np.testing.assert_allclose(out, _whole(model, x), atol=1e-5)


def test_reset_one_stream_leaves_the_others(streaming_export: tuple[SequenceModel, Path]) -> None:
    model, path = streaming_export
    session = StreamingSession(path, streams=2)
    first, second = _frames(2, 10, seed=1), _frames(2, 5, seed=2)
    session.push(first)
    session.reset(1)
    out = session.push(second)
    both = np.concatenate([first, second], axis=1)
    np.testing.assert_allclose(out[0], _whole(model, both)[0], atol=1e-5)
    np.testing.assert_allclose(out[1], _whole(model, second)[1], atol=1e-5)


def test_state_moves_to_another_session(streaming_export: tuple[SequenceModel, Path]) -> None:
    model, path = streaming_export
    x = _frames(2, 12)
    a = StreamingSession(path, streams=2)
    a.push(x[:, :7])
    b = StreamingSession(path, streams=2)
    b.set_state(a.get_state())
    np.testing.assert_allclose(b.push(x[:, 7:]), _whole(model, x), atol=1e-5)
    # get_state returns copies: changing them does not touch the session.
    state = b.get_state()
    for value in state.values():
        value[...] = 99.0
    assert all(np.abs(v).max() < 99.0 for v in b.get_state().values())


def test_full_reset_equals_a_fresh_session(streaming_export: tuple[SequenceModel, Path]) -> None:
    _, path = streaming_export
    x = _frames(1, 8)
    used = StreamingSession(path)
    used.push(_frames(1, 30, seed=5))
    used.reset()
    fresh = StreamingSession(path)
    np.testing.assert_array_equal(used.push(x), fresh.push(x))


def test_sequence_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "seq.onnx"
    export(_model("lstm"), path)
    with pytest.raises(InvalidInputError, match="--streaming"):
        StreamingSession(path)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((2, 1, FEATURES + 1), "f4"), "features"),
        (np.zeros((3, 1, FEATURES), "f4"), "streams=2"),
        (np.zeros((2, 0, FEATURES), "f4"), "zero frames"),
        (np.zeros((2, 1, FEATURES), "i4"), "floating point"),
        (np.full((2, 1, FEATURES), np.nan, "f4"), "NaN"),
        (np.array([[[1.0, np.inf, 0.0]], [[0.0, 0.0, 0.0]]], "f4"), "NaN or Inf"),
    ],
)
def test_bad_frames_are_refused(
    streaming_export: tuple[SequenceModel, Path], frames: np.ndarray, match: str
) -> None:
    _, path = streaming_export
    session = StreamingSession(path, streams=2)
    before = session.get_state()
    with pytest.raises(InvalidInputError, match=match):
        session.push(frames)
    after = session.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bad_state_and_stream_index_are_refused(
    streaming_export: tuple[SequenceModel, Path],
) -> None:
    _, path = streaming_export
    session = StreamingSession(path, streams=2)
    state = session.get_state()
    with pytest.raises(InvalidInputError, match="do not match"):
        session.set_state({"nope": next(iter(state.values()))})
    name = next(iter(state))
    with pytest.raises(InvalidInputError, match="expected"):
        session.set_state({**state, name: state[name][:, :1]})
    with pytest.raises(InvalidInputError, match="out of range"):
        session.reset(2)
    with pytest.raises(InvalidInputError, match="streams must be"):
        StreamingSession(path, streams=0)


def test_a_long_stream_keeps_memory_flat_and_a_reset_stream_fresh(
    streaming_export: tuple[SequenceModel, Path],
) -> None:
    # The million-frame run is `python -m edgelstm.benchmarks.suites.long_stream`
    # (results committed).
    from edgelstm.benchmarks.suites.long_stream import run_long_stream

    _, path = streaming_export
    result = run_long_stream(path, 20_000, warmup=4_000, samples=4)
    assert result["frames"] == 20_000
    assert result["growth_mb"] < 5.0, result["memory_mb"]
    assert result["reset_vs_fresh_max_abs"] == 0.0


def test_an_artifact_read_once_streams_like_its_path(
    streaming_export: tuple[SequenceModel, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, path = streaming_export
    parsed: list[object] = []
    real = onnx.load

    def counted(*args: Any, **kwargs: Any) -> Any:
        parsed.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx, "load", counted)
    session = StreamingSession(path)
    assert len(parsed) == 1  # metadata, checksum and profile from one parse
    artifact = load_artifact(path, verify=False)
    parsed.clear()
    from_artifact = StreamingSession(artifact)
    assert parsed == []
    x = _frames(1, 6)
    np.testing.assert_allclose(from_artifact.push(x), _whole(model, x), atol=1e-5)
    np.testing.assert_allclose(session.push(x), _whole(model, x), atol=1e-5)


# --------------------------------------------------------------------------------------------
# the causal conv front end streams with its own state (the last kernel-1 frames)


def _front_end_export(tmp_path: Path, stride: int) -> tuple[SequenceModel, Path]:
    torch.manual_seed(0)
    config = ModelConfig(
        task="classify",
        input_size=FEATURES,
        hidden_size=8,
        num_layers=2,
        num_classes=3,
        dropout=0.0,
        frontend="conv",
        frontend_stride=stride,
        frontend_kernel=stride + 3,
        frontend_channels=6,
    )
    model = build_model(config).eval()
    path = tmp_path / f"conv-s{stride}.onnx"
    export(model, path, streaming=True)
    return model, path


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_conv_front_end_streams_like_the_sequence_model(
    tmp_path: Path, stride: int, chunk: int
) -> None:
    """Chunks of ``chunk`` strides (any chunk at stride 1) equal the whole-sequence output."""
    model, path = _front_end_export(tmp_path, stride)
    frames = chunk * stride
    x = _frames(2, 6 * frames + 2 * stride)  # the last chunk is a shorter whole-stride one
    session = StreamingSession(path, streams=2)
    for start in range(0, x.shape[1], frames):
        out = session.push(np.ascontiguousarray(x[:, start : start + frames]))
        np.testing.assert_allclose(out, _whole(model, x[:, : start + frames]), atol=1e-5)
    assert session.get_state()["frames"].shape == (stride + 2, 2, FEATURES)


def test_conv_front_end_refuses_chunks_that_split_a_stride(tmp_path: Path) -> None:
    path = _front_end_export(tmp_path, 2)[1]
    session = StreamingSession(path)
    assert session.chunk_multiple == 2
    with pytest.raises(InvalidInputError, match="multiple of 2 frames"):
        session.push(_frames(1, 3))
    session.push(_frames(1, 4))  # whole strides are fine


def test_conv_front_end_reset_restarts_one_stream(tmp_path: Path) -> None:
    model, path = _front_end_export(tmp_path, 2)
    x = _frames(2, 8)
    session = StreamingSession(path, streams=2)
    session.push(x[:, :4].copy())
    session.reset(1)  # stream 1 forgets its frames and recurrent state
    out = session.push(x[:, 4:].copy())
    np.testing.assert_allclose(out[0], _whole(model, x[:1])[0], atol=1e-5)
    np.testing.assert_allclose(out[1], _whole(model, x[1:, 4:])[0], atol=1e-5)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "dynamic-int8"])
def test_model_step_in_chunks_equals_the_whole_sequence(arch: str, int8: bool) -> None:
    """``SequenceModel.step`` with per-layer state, in eager PyTorch: layer by layer for a
    float model, and through the stacked layers of a dynamically quantized copy (what the
    PyTorch INT8 benchmark row runs)."""
    from edgelstm.exporters.graphs import state_shapes

    model = _model(arch)
    if int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao announces its own deprecation
            model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
            )
    x = torch.from_numpy(_frames(2, 9))
    state = tuple(
        torch.zeros([2 if isinstance(d, str) else d for d in shape])
        for shape in state_shapes(model).values()
    )
    with torch.no_grad():
        for start in range(0, 9, 4):
            out, state = model.step(x[:, start : start + 4], state)
        whole = model(x)
    assert [tuple(s.shape) for s in state] == [(1, 2, 8)] * len(state)
    # Dynamic INT8 quantizes each call's activations by their own range: chunks of 4 frames
    # round differently from the whole sequence.
    torch.testing.assert_close(out, whole, atol=1e-2 if int8 else 1e-5, rtol=0)
