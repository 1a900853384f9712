"""PyTorch → ONNX export: the zoo matrix, dynamic axes, streaming, hygiene, failures, the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import CliRunner, single_thread

from edgelstm.config import ModelConfig
from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.exporters import export
from edgelstm.exporters.graphs import build_graph
from edgelstm.exporters.validation import inspect_graph, validate_sequence
from edgelstm.metadata import read_metadata
from edgelstm.training.models import SequenceModel, build_model
from edgelstm.training.trainer import TrainResult, train

FEATURES = 3
HIDDEN = 6


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _config(arch: str, layers: int, bidirectional: bool, task: str, **extra: Any) -> ModelConfig:
    heads: dict[str, dict[str, Any]] = {
        "classify": {"num_classes": 3},
        "forecast": {"horizon": 2, "target_indices": (0, 2)},
        "anomaly": {},
    }
    return ModelConfig(
        task=task,  # type: ignore[arg-type]
        input_size=FEATURES,
        arch=arch,  # type: ignore[arg-type]
        hidden_size=HIDDEN,
        num_layers=layers,
        bidirectional=bidirectional,
        **{**heads[task], **extra},
    )


def _model(arch: str, layers: int, bidirectional: bool, task: str, **extra: Any) -> SequenceModel:
    torch.manual_seed(0)
    return build_model(_config(arch, layers, bidirectional, task, **extra)).eval()


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _x(batch: int, steps: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, steps, FEATURES)).astype(np.float32)


def _assert_recurrent_hygiene(proto: onnx.ModelProto, expected_nodes: int) -> None:
    initializers = {t.name for t in proto.graph.initializer}
    recurrent = [n for n in proto.graph.node if n.op_type in ("LSTM", "GRU")]
    assert len(recurrent) == expected_nodes
    for node in recurrent:
        weights = list(node.input)[1:4]
        assert all(weights), f"{node.name} lacks one of W/R/B: {list(node.input)}"
        assert set(weights) <= initializers, f"{node.name} computes its weights"
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        assert layout == 0


def _only_file(folder: Path, name: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [name]


# --------------------------------------------------------------------------------------------
# the zoo matrix

ZOO = [
    pytest.param(arch, layers, bi, task, id=f"{arch}-{layers}l-{'bi' if bi else 'uni'}-{task}")
    for arch in ("lstm", "gru")
    for layers in (1, 2)
    for bi in (False, True)
    for task in ("classify", "forecast", "anomaly")
    if not (task == "anomaly" and bi)
]


def test_anomaly_model_cannot_be_bidirectional() -> None:
    with pytest.raises(InvalidInputError, match="bidirectional"):
        _config("lstm", 1, True, "anomaly")


@pytest.mark.parametrize(("arch", "layers", "bi", "task"), ZOO)
def test_zoo_sequence_export_is_valid_dynamic_and_clean(
    tmp_path: Path, arch: str, layers: int, bi: bool, task: str
) -> None:
    model = _model(arch, layers, bi, task)
    out = tmp_path / "m.onnx"
    result = export(model, out)
    assert result.report.passed, result.report.summary()
    assert result.variant == "sequence"
    assert result.exporter == "torchscript"
    assert len(result.report.rows) >= 4
    _only_file(tmp_path, "m.onnx")

    proto = onnx.load(str(out))
    (x_info,) = proto.graph.input
    assert x_info.name == "x"
    assert _dims(x_info) == ["batch", "time", FEATURES]
    (y_info,) = proto.graph.output
    assert _dims(y_info)[0] == "batch"
    if task == "anomaly":
        assert _dims(y_info)[1] == "time"
    _assert_recurrent_hygiene(proto, expected_nodes=layers)

    session = _session(out)
    for batch in (1, 5):
        for steps in (1, 50):
            x = _x(batch, steps)
            (got,) = session.run(None, {"x": x})
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)

    meta = read_metadata(out)
    assert (meta.task, meta.arch, meta.variant) == (task, arch, "sequence")


STREAMABLE = [
    pytest.param(arch, layers, task, id=f"{arch}-{layers}l-{task}")
    for arch in ("lstm", "gru")
    for layers in (1, 2)
    for task in ("classify", "forecast", "anomaly")
]


@pytest.mark.parametrize(("arch", "layers", "task"), STREAMABLE)
def test_zoo_streaming_export_carries_state(
    tmp_path: Path, arch: str, layers: int, task: str
) -> None:
    extra = {"window_norm": False} if task == "forecast" else {}
    model = _model(arch, layers, False, task, **extra)
    out = tmp_path / "s.onnx"
    result = export(model, out, streaming=True)
    assert result.report.passed, result.report.summary()
    assert result.variant == "streaming"
    assert any("chunks of 1" in r.check for r in result.report.rows)
    assert any("chunks of 7" in r.check for r in result.report.rows)
    _only_file(tmp_path, "s.onnx")

    proto = onnx.load(str(out))
    kinds = ("h", "c") if arch == "lstm" else ("h",)
    # One state per layer, each fed straight to its layer's recurrent node.
    states = [f"layer{layer}_{kind}" for layer in range(layers) for kind in kinds]
    inputs = {i.name: _dims(i) for i in proto.graph.input}
    outputs = [o.name for o in proto.graph.output]
    assert list(inputs) == ["x", *states]
    assert outputs[1:] == [f"{s}_out" for s in states]
    assert inputs["x"] == ["batch", "time", FEATURES]
    for state in states:
        assert inputs[state] == [1, "batch", HIDDEN]
    recurrent = [n for n in proto.graph.node if n.op_type in ("LSTM", "GRU")]
    for layer, node in enumerate(recurrent):
        assert list(node.input)[5 : 7 if arch == "lstm" else 6] == [
            f"layer{layer}_{kind}" for kind in kinds
        ]
    # No split before or concat after the layers: only recurrent nodes touch the state.
    for node in proto.graph.node:
        touched = set(node.input) | set(node.output)
        if touched & {*states, *outputs[1:]}:
            assert node.op_type in ("LSTM", "GRU"), node
    _assert_recurrent_hygiene(proto, expected_nodes=layers)

    # Two chunks carrying the state equal one whole-sequence run, at a batch and length
    # the example never had.
    session = _session(out)
    x = _x(5, 50)
    zeros = {s: np.zeros((1, 5, HIDDEN), np.float32) for s in states}
    whole = session.run(None, {"x": x, **zeros})
    first = session.run(None, {"x": x[:, :31], **zeros})
    second = session.run(None, {"x": x[:, 31:], **dict(zip(states, first[1:], strict=True))})
    if task == "anomaly":
        np.testing.assert_allclose(
            np.concatenate([first[0], second[0]], axis=1), whole[0], atol=1e-5, rtol=0
        )
    else:
        np.testing.assert_allclose(second[0], whole[0], atol=1e-5, rtol=0)
    for got, want in zip(second[1:], whole[1:], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    with torch.no_grad():
        want_whole = model(torch.from_numpy(x)).numpy()
    if task == "anomaly":
        np.testing.assert_allclose(whole[0], want_whole, atol=1e-4, rtol=0)
    else:
        np.testing.assert_allclose(whole[0], want_whole, atol=1e-4, rtol=0)
    # time 1 works too (one streaming frame)
    frame = session.run(None, {"x": x[:1, :1], **{s: v[:, :1] for s, v in zeros.items()}})
    assert frame[1].shape == (1, 1, HIDDEN)

    meta = read_metadata(out)
    assert meta.variant == "streaming"
    assert meta.state == {s: [1, "batch", HIDDEN] for s in states}
    assert "recurrent layer 0's hidden state" in meta.inputs["layer0_h"]


@pytest.mark.parametrize(
    ("arch", "bi", "task", "extra", "reason"),
    [
        pytest.param("lstm", True, "classify", {}, "bidirectional", id="bidirectional"),
        pytest.param("gru", True, "forecast", {}, "bidirectional", id="bidirectional-gru"),
        pytest.param("lstm", False, "classify", {"pooling": "mean"}, "mean", id="mean-pooling"),
        pytest.param("gru", False, "forecast", {"window_norm": True}, "window", id="window-norm"),
        pytest.param("lstm-fcn", False, "classify", {}, "global average pooling", id="lstm-fcn"),
    ],
)
def test_unstreamable_models_are_refused(
    tmp_path: Path, arch: str, bi: bool, task: str, extra: dict[str, Any], reason: str
) -> None:
    model = _model(arch, 1, bi, task, **extra)
    out = tmp_path / "s.onnx"
    with pytest.raises(InvalidInputError, match=reason) as info:
        export(model, out, streaming=True)
    assert "--streaming" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# convolutional models: LSTM-FCN and the causal conv front end

CONV_ZOO = [
    pytest.param("lstm-fcn", "classify", {"fcn_filters": (8, 16, 8)}, id="lstm-fcn"),
    pytest.param("lstm-fcn", "classify", {"pooling": "mean"}, id="lstm-fcn-mean"),
    pytest.param(
        "lstm-fcn",
        "classify",
        {
            "pooling": "mean",
            "frontend": "conv",
            "frontend_stride": 4,
            "frontend_kernel": 8,
            "frontend_channels": 8,
            "fcn_filters": (8, 16, 8),
        },
        id="lstm-fcn-conv-s4",  # what --arch auto picks for long sequences
    ),
    pytest.param(
        "lstm",
        "classify",
        {"frontend": "conv", "frontend_stride": 3, "frontend_kernel": 5, "frontend_channels": 8},
        id="lstm-conv-s3",
    ),
    pytest.param(
        "gru",
        "forecast",
        {"frontend": "conv", "frontend_stride": 2, "frontend_kernel": 4, "frontend_channels": 8},
        id="gru-conv-s2-forecast",
    ),
    pytest.param(
        "lstm",
        "anomaly",
        {"frontend": "conv", "frontend_stride": 1, "frontend_kernel": 3, "frontend_channels": 8},
        id="lstm-conv-s1-anomaly",
    ),
]


@pytest.mark.parametrize(("arch", "task", "extra"), CONV_ZOO)
def test_conv_models_export_valid_at_lengths_the_stride_does_not_divide(
    tmp_path: Path, arch: str, task: str, extra: dict[str, Any]
) -> None:
    model = _model(arch, 2, False, task, **extra)
    out = tmp_path / "m.onnx"
    result = export(model, out)
    assert result.report.passed, result.report.summary()
    checked = {r.check for r in result.report.rows}
    assert {"batch 1, time 1", "batch 1, time 160", "batch 4, time 19"} <= checked
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert "Conv" in ops
    # BatchNorm is folded into the Conv weights by the export, so the quantizer sees them.
    assert "BatchNormalization" not in ops
    _assert_recurrent_hygiene(proto, expected_nodes=2)
    session = _session(out)
    for batch, steps in ((1, 1), (2, 7), (3, 20), (1, 101)):
        x = _x(batch, steps)
        (got,) = session.run(None, {"x": x})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert read_metadata(out).arch == arch


def test_lstm_fcn_stays_edge_sized_at_12_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(task="classify", input_size=12, num_classes=9, arch="lstm-fcn")
    result = export(build_model(config).eval(), tmp_path / "m.onnx")
    assert result.size_bytes < 2_000_000, result.size_bytes


def test_conv_front_end_streaming_export_carries_its_frames(tmp_path: Path) -> None:
    extra = {"frontend": "conv", "frontend_stride": 2, "frontend_kernel": 5, "frontend_channels": 8}
    model = _model("lstm", 2, False, "classify", **extra)
    out = tmp_path / "s.onnx"
    result = export(model, out, streaming=True)
    assert result.report.passed, result.report.summary()
    # Validation streams in chunks of whole strides (1 and 7 strides).
    assert any("chunks of 2" in r.check for r in result.report.rows)
    assert any(r.output == "frames_out" for r in result.report.rows)
    proto = onnx.load(str(out))
    inputs = {i.name: _dims(i) for i in proto.graph.input}
    states = ["layer0_h", "layer0_c", "layer1_h", "layer1_c", "frames"]
    assert list(inputs) == ["x", *states]
    assert inputs["frames"] == [4, "batch", FEATURES]
    assert [o.name for o in proto.graph.output][1:] == [f"{s}_out" for s in states]
    meta = read_metadata(out)
    assert meta.state["frames"] == [4, "batch", FEATURES]
    assert meta.stream_chunk_multiple == 2


def test_mean_pooled_classifier_still_exports_as_a_sequence_model(tmp_path: Path) -> None:
    model = _model("gru", 1, False, "classify", pooling="mean")
    assert export(model, tmp_path / "m.onnx").report.passed


# --------------------------------------------------------------------------------------------
# graph hygiene and file handling


def test_overwrite_removes_a_stale_external_data_file(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    model = _model("lstm", 1, False, "classify")
    export(model, out)
    stale = tmp_path / "m.onnx.data"
    stale.write_bytes(b"\0" * 128)
    result = export(model, out, overwrite=True)
    assert result.report.passed
    assert not result.external_data
    assert not stale.exists()
    _only_file(tmp_path, "m.onnx")
    assert result.size_bytes == out.stat().st_size
    # self-contained: loading needs no data file
    assert _session(out).run(None, {"x": _x(1, 4)})[0].shape == (1, 3)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(InvalidInputError, match="--overwrite"):
        export(_model("gru", 1, False, "anomaly"), out)
    assert out.read_bytes() == b"old"
    _only_file(tmp_path, "m.onnx")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out": "m.txt"}, r"\.onnx"),
        ({"opset": 11}, "opset"),
        ({"atol": 0.0}, "atol"),
    ],
)
def test_bad_export_options_are_refused(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    options = {"out": "m.onnx", **kwargs}
    out = tmp_path / options.pop("out")
    with pytest.raises(InvalidInputError, match=match):
        export(_model("lstm", 1, False, "classify"), out, **options)
    assert list(tmp_path.iterdir()) == []


def test_foreign_module_needs_input_shape_and_cannot_stream(tmp_path: Path) -> None:
    module = torch.nn.Linear(FEATURES, 2)
    with pytest.raises(InvalidInputError, match="input-shape"):
        export(module, tmp_path / "m.onnx")
    with pytest.raises(InvalidInputError, match="streaming"):
        export(module, tmp_path / "m.onnx", streaming=True, input_shape=(2, 4, FEATURES))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(1, 1, FEATURES), (1, 2, FEATURES), (3, 1, FEATURES)])
def test_tiny_examples_still_give_dynamic_axes(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    """An example of batch 1 or time 1 must not freeze either axis."""
    model = _model("lstm", 2, True, "classify")
    out = tmp_path / "m.onnx"
    result = export(model, out, input_shape=shape)
    assert result.report.passed, result.report.summary()
    assert _dims(onnx.load(str(out)).graph.input[0]) == ["batch", "time", FEATURES]
    (got,) = _session(out).run(None, {"x": _x(4, 9)})
    assert got.shape == (4, 3)


def test_input_shape_with_wrong_feature_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="features"):
        export(_model("gru", 1, False, "anomaly"), tmp_path / "m.onnx", input_shape=(2, 16, 5))


# --------------------------------------------------------------------------------------------
# the frozen-axis detector


def _export_frozen(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int = 17,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
        )


def test_inspect_graph_catches_frozen_batch_and_time(tmp_path: Path) -> None:
    model = _model("lstm", 2, False, "anomaly")
    module, spec = build_graph(model, "sequence")
    path = tmp_path / "frozen.onnx"
    _export_frozen(
        module,
        (torch.zeros(2, 16, FEATURES),),
        path,
        list(spec.input_names),
        list(spec.output_names),
    )
    problems, recurrent = inspect_graph(onnx.load(str(path)), spec)
    frozen = [p for p in problems if "frozen" in p]
    assert len(frozen) == 2, problems
    assert any("axis 0 (batch)" in p and "frozen to 2" in p for p in frozen)
    assert any("axis 1 (time)" in p and "frozen to 16" in p for p in frozen)
    assert len(recurrent) == 2

    rows = validate_sequence(
        path, module, spec, num_features=FEATURES, example_batch=2, example_time=16, atol=1e-4
    )
    assert rows
    assert not any(r.passed for r in rows)


def test_inspect_graph_passes_a_dynamic_export(tmp_path: Path) -> None:
    model = _model("lstm", 2, False, "anomaly")
    _, spec = build_graph(model, "sequence")
    out = tmp_path / "m.onnx"
    export(model, out)
    problems, _ = inspect_graph(onnx.load(str(out)), spec)
    assert problems == []


def test_pipeline_rejects_a_frozen_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgelstm.exporters.onnx as onnx_exporter

    def frozen_torchscript(source: Any, path: Path, opset: int) -> int:
        _export_frozen(
            source.module,
            source.example,
            path,
            list(source.spec.input_names),
            list(source.spec.output_names),
            opset,
        )
        return opset

    monkeypatch.setattr(onnx_exporter, "_export_torchscript", frozen_torchscript)
    monkeypatch.setattr(onnx_exporter, "EXPORTERS", ("torchscript",))
    out = tmp_path / "m.onnx"
    with pytest.raises(CheckFailedError, match="frozen") as info:
        export(_model("gru", 1, False, "classify"), out)
    assert info.value.exit_code == 1
    assert "batch" in str(info.value)
    assert "torchscript" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# tolerance failures


def test_tolerance_failure_names_shape_and_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelstm.exporters.onnx as onnx_exporter

    monkeypatch.setattr(onnx_exporter, "EXPORTERS", ("torchscript",))
    out = tmp_path / "m.onnx"
    with pytest.raises(CheckFailedError) as info:
        export(_model("lstm", 1, False, "forecast"), out, atol=1e-12)
    message = str(info.value)
    assert info.value.exit_code == 1
    assert "max abs error" in message
    assert "atol 1e-12" in message
    assert "batch " in message and ", time " in message
    assert "`forecast`" in message
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelstm.exporters.onnx as onnx_exporter

    monkeypatch.setattr(onnx_exporter, "EXPORTERS", ("torchscript",))
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    with pytest.raises(CheckFailedError):
        export(_model("gru", 1, False, "anomaly"), out, atol=1e-12, overwrite=True)
    assert out.read_bytes() == b"previous model"
    _only_file(tmp_path, "m.onnx")


def test_weights_changed_after_export_fail_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation compares numbers, not just shapes: a perturbed reference is caught."""
    import edgelstm.exporters.onnx as onnx_exporter

    original = onnx_exporter._validate_candidate

    def perturbed(path: Path, source: Any, atol: float) -> Any:
        with torch.no_grad():
            for parameter in source.module.parameters():
                parameter.add_(0.5)
        return original(path, source, atol)

    monkeypatch.setattr(onnx_exporter, "_validate_candidate", perturbed)
    monkeypatch.setattr(onnx_exporter, "EXPORTERS", ("torchscript",))
    out = tmp_path / "m.onnx"
    with pytest.raises(CheckFailedError, match="max abs error"):
        export(_model("lstm", 1, False, "classify"), out)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# the torch.export-based fallback


@pytest.mark.slow
def test_dynamo_exporter_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgelstm.exporters.onnx as onnx_exporter

    monkeypatch.setattr(onnx_exporter, "EXPORTERS", ("dynamo",))
    model = _model("lstm", 1, False, "classify")
    out = tmp_path / "m.onnx"
    result = export(model, out)
    assert result.report.passed, result.report.summary()
    assert result.exporter == "dynamo"
    assert result.opset >= 18
    _only_file(tmp_path, "m.onnx")
    proto = onnx.load(str(out))
    assert _dims(proto.graph.input[0]) == ["batch", "time", FEATURES]
    assert _dims(proto.graph.output[0])[0] == "batch"
    _assert_recurrent_hygiene(proto, expected_nodes=1)
    meta = read_metadata(out)
    assert meta.exporter == "dynamo"
    assert meta.opset == result.opset
    x = _x(5, 50)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_session(out).run(None, {"x": x})[0], want, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------
# a user-defined module through the CLI

USER_MODULE = '''
import torch
from torch import nn


class Tagger(nn.Module):
    """Per-step tags and a summary vector: a tuple of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        out, h = self.gru(x)
        return self.head(out), h[-1]


class Scorer(nn.Module):
    """One score vector per sequence, with as many classes as the example has steps."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.head = nn.Linear(5, 12)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def make():
    return Tagger()


def make_scorer():
    return Scorer()


NOT_A_FACTORY = 3
'''


@pytest.fixture
def user_model(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """``mynet.py`` on disk and a Tagger holding the weights saved next to it."""
    import importlib.util

    from safetensors.torch import save_file

    source = tmp_path / "mynet.py"
    source.write_text(USER_MODULE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("mynet_for_test", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(123)  # different from what make() alone would give
    net = module.make().eval()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    return source, net


@pytest.mark.parametrize("weights", ["w.safetensors", "w.pt"])
def test_user_module_exports_through_the_cli(
    cli: CliRunner, tmp_path: Path, user_model: tuple[Path, torch.nn.Module], weights: str
) -> None:
    source, net = user_model
    out = tmp_path / "out" / "user.onnx"
    result = cli(
        "export",
        "--model",
        f"{source}:make",
        "--weights",
        tmp_path / weights,
        "--input-shape",
        "2,12,3",
        "--out",
        out,
    )
    assert result.code == 0, result.err
    assert "validation against PyTorch" in result.out
    proto = onnx.load(str(out))
    assert _dims(proto.graph.input[0]) == ["batch", "time", 3]
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1"]
    session = _session(out)
    for batch, steps in ((1, 1), (5, 50)):
        x = _x(batch, steps)
        got = session.run(None, {"x": x})
        with torch.no_grad():
            want = [t.numpy() for t in net(torch.from_numpy(x))]
        assert [g.shape for g in got] == [(batch, steps, 2), (batch, 5)]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    meta = read_metadata(out)
    assert meta.exporter == "torchscript"
    assert set(meta.outputs) == {"output_0", "output_1"}


def test_user_output_axis_equal_to_example_time_is_not_called_time(
    tmp_path: Path, user_model: tuple[Path, torch.nn.Module]
) -> None:
    from safetensors.torch import save_file

    from edgelstm.exporters import export_user_model
    from edgelstm.exporters.user_models import load_user_module

    source, _ = user_model
    scorer = load_user_module(f"{source}:make_scorer")
    save_file(scorer.state_dict(), str(tmp_path / "scorer.safetensors"))
    out = tmp_path / "scorer.onnx"
    result = export_user_model(
        f"{source}:make_scorer", tmp_path / "scorer.safetensors", "2,12,3", out
    )
    assert result.report.passed
    assert _dims(onnx.load(str(out)).graph.output[0]) == ["batch", 12]


def _bad_user_args(case: str, tmp: Path, source: Path) -> list[str | Path]:
    model = f"{source}:make"
    weights: Path = tmp / "w.safetensors"
    shape = "2,12,3"
    extra: list[str | Path] = []
    if case == "pickled-module":
        weights = tmp / "whole.pt"
        torch.save(torch.nn.Linear(3, 2), weights)
    elif case == "weights-mismatch":
        from safetensors.torch import save_file

        weights = tmp / "other.safetensors"
        save_file(torch.nn.Linear(3, 2).state_dict(), str(weights))
    elif case == "weights-junk":
        weights = tmp / "junk.pt"
        weights.write_bytes(b"not a pickle at all")
    elif case == "weights-missing":
        weights = tmp / "nope.safetensors"
    elif case == "weights-wrong-suffix":
        weights = tmp / "w.npy"
        weights.write_bytes(b"x")
    elif case == "model-missing":
        model = f"{tmp / 'absent.py'}:make"
    elif case == "no-factory":
        model = f"{source}:build"
    elif case == "factory-not-callable":
        model = f"{source}:NOT_A_FACTORY"
    elif case == "no-colon":
        model = str(source)
    elif case == "shape-two-values":
        shape = "2,12"
    elif case == "shape-not-numbers":
        shape = "a,b,c"
    elif case == "shape-zero":
        shape = "0,12,3"
    elif case == "shape-wrong-features":
        shape = "2,12,4"
    elif case == "streaming":
        extra = ["--streaming"]
    elif case == "no-weights":
        return ["--model", model, "--input-shape", shape]
    return ["--model", model, "--weights", weights, "--input-shape", shape, *extra]


BAD_USER = {
    "pickled-module": "pickled",
    "weights-mismatch": "does not fit",
    "weights-junk": "state dict",
    "weights-missing": "does not exist",
    "weights-wrong-suffix": ".safetensors",
    "model-missing": "does not exist",
    "no-factory": "build",
    "factory-not-callable": "NOT_A_FACTORY",
    "no-colon": "factory",
    "shape-two-values": "--input-shape",
    "shape-not-numbers": "--input-shape",
    "shape-zero": "--input-shape",
    "shape-wrong-features": "--input-shape",
    "streaming": "--streaming",
    "no-weights": "--weights",
}


def _assert_usage_error(result: Any, fragment: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("error: ")
    assert fragment in result.err_lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize("case", sorted(BAD_USER))
def test_bad_user_model_inputs_are_usage_errors(
    cli: CliRunner, tmp_path: Path, user_model: tuple[Path, torch.nn.Module], case: str
) -> None:
    source, _ = user_model
    out = tmp_path / "out.onnx"
    result = cli("export", *_bad_user_args(case, tmp_path, source), "--out", out)
    _assert_usage_error(result, BAD_USER[case])
    if case == "pickled-module":
        assert "state_dict" in result.err
    assert not out.exists()
    assert not any(p.name.startswith(".out.onnx") for p in tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# the CLI with checkpoints


@pytest.fixture(scope="session")
def bidirectional_run(tmp_path_factory: pytest.TempPathFactory, classify_npz: Path) -> TrainResult:
    single_thread()
    out = tmp_path_factory.mktemp("runs") / "bi"
    return train(
        "classify",
        data=classify_npz,
        out=out,
        seed=0,
        epochs=1,
        hidden=4,
        layers=1,
        bidirectional=True,
        pooling="last",
    )


def test_cli_export_prints_the_validation_table(
    cli: CliRunner, tmp_path: Path, trained_classify: TrainResult
) -> None:
    out = tmp_path / "m.onnx"
    result = cli("export", trained_classify.out, "--out", out)
    assert result.code == 0, result.err
    assert "validation against PyTorch" in result.out
    assert "batch 1, time 1" in result.out
    assert "torchscript" in result.out
    assert out.is_file()
    _only_file(tmp_path, "m.onnx")


@pytest.mark.parametrize("streaming", [False, True], ids=["sequence", "streaming"])
def test_cli_export_json(
    cli: CliRunner, tmp_path: Path, trained_classify: TrainResult, streaming: bool
) -> None:
    out = tmp_path / "m.onnx"
    flags = ["--streaming"] if streaming else []
    result = cli("export", trained_classify.out, "--out", out, "--json", *flags)
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["validation"]["passed"] is True
    assert payload["variant"] == ("streaming" if streaming else "sequence")
    assert payload["exporter"] == "torchscript"
    assert payload["opset"] == 17
    assert Path(payload["out"]) == out
    assert payload["size_bytes"] == out.stat().st_size
    checks = {row["check"] for row in payload["validation"]["rows"]}
    if streaming:
        assert any("chunks of 7" in c for c in checks)
        inputs = [i.name for i in onnx.load(str(out)).graph.input]
        assert inputs == ["x", "layer0_h", "layer0_c"]
    else:
        assert "batch 1, time 1" in checks


def test_cli_existing_out_needs_overwrite(
    cli: CliRunner, tmp_path: Path, trained_classify: TrainResult
) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    result = cli("export", trained_classify.out, "--out", out)
    _assert_usage_error(result, "--overwrite")
    assert out.read_bytes() == b"keep me"
    replaced = cli("export", trained_classify.out, "--out", out, "--overwrite")
    assert replaced.code == 0, replaced.err
    assert read_metadata(out).task == "classify"


def test_cli_bidirectional_checkpoint_cannot_stream(
    cli: CliRunner, tmp_path: Path, bidirectional_run: TrainResult
) -> None:
    out = tmp_path / "m.onnx"
    result = cli("export", bidirectional_run.out, "--out", out, "--streaming")
    _assert_usage_error(result, "bidirectional")
    assert not out.exists()
    assert cli("export", bidirectional_run.out, "--out", out).code == 0


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("not-a-checkpoint", "config.json"),
        ("missing-dir", "does not exist"),
        ("out-suffix", ".onnx"),
        ("no-out", "--out"),
        ("run-dir-and-model", "not both"),
        ("weights-without-model", "--model"),
        ("nothing", "RUN_DIR"),
    ],
)
def test_cli_bad_checkpoint_exports_are_usage_errors(
    cli: CliRunner, tmp_path: Path, trained_classify: TrainResult, case: str, fragment: str
) -> None:
    out = tmp_path / "m.onnx"
    run_dir: Path = trained_classify.out
    args: list[str | Path]
    if case == "not-a-checkpoint":
        run_dir = tmp_path / "notes"
        run_dir.mkdir()
        (run_dir / "readme.txt").write_text("hello", encoding="utf-8")
        args = [run_dir, "--out", out]
    elif case == "missing-dir":
        args = [tmp_path / "absent", "--out", out]
    elif case == "out-suffix":
        out = tmp_path / "m.bin"
        args = [run_dir, "--out", out]
    elif case == "no-out":
        args = [run_dir]
    elif case == "run-dir-and-model":
        args = [run_dir, "--model", "x.py:make", "--out", out]
    elif case == "weights-without-model":
        args = [run_dir, "--weights", tmp_path / "w.pt", "--out", out]
    else:
        args = ["--out", out]
    result = cli("export", *args)
    _assert_usage_error(result, fragment)
    assert not out.exists()
