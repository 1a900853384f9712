"""Quantization: dynamic/static INT8 and FP16, the audit, the accuracy gate, bad inputs, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import CliRunner, single_thread, write_classify_npz
from onnx import TensorProto, helper, numpy_helper

import edgelstm.exporters.quantize as qmod
import edgelstm.exporters.quantize_report as quantize_report
from edgelstm.config import ModelConfig
from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.exporters import export
from edgelstm.exporters.audit import CheckpointBaselines, QuantizationAudit
from edgelstm.exporters.fidelity import FidelityThresholds
from edgelstm.exporters.quantize import QuantizeResult, quantize
from edgelstm.training.models import build_model
from edgelstm.training.trainer import TrainResult, train

FEATURES = 3
#: Fidelity bounds wide open, for tests of the task-metric gate behind them.
LOOSE = FidelityThresholds(max_disagreement=1.0, max_relative_error=1e9)
LOOSE_FLAGS = ("--max-disagreement", "1", "--max-relative-error", "1e9")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# --------------------------------------------------------------------------------------------
# helpers and shared artifacts


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _op(audit: QuantizationAudit, name: str) -> Any:
    matches = [o for o in audit.ops if o.op == name]
    assert len(matches) == 1, f"no single {name} row in {audit.ops}"
    return matches[0]


def _x(batch: int, steps: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, steps, FEATURES)).astype(np.float32)


def _both_classes(batch: int, steps: int) -> np.ndarray:
    """Inputs around each class mean of the fixture data (-1 and +1), half and half."""
    return np.concatenate([_x(batch, steps) - 1.0, _x(batch, steps, seed=2) + 1.0])


def _assert_close_to_float(want: np.ndarray, have: np.ndarray, atol: float) -> None:
    """Quantized logits ``have`` within ``atol`` of the FP32 ``want``, same predicted class."""
    assert have.shape == want.shape
    error = float(np.max(np.abs(have - want)))
    scale = float(np.max(np.abs(want)))
    assert error < atol, f"max abs error {error:.3g} > atol {atol} (FP32 logits up to {scale:.3g})"
    assert (np.argmax(have, axis=-1) == np.argmax(want, axis=-1)).all()


def _stream(path: Path, x: np.ndarray, chunk: int, *, session: Any = None) -> np.ndarray:
    """A streaming export fed ``x`` ``chunk`` steps per call from zero state: the last logits."""
    session = session or _session(path)
    states = {
        i.name: np.zeros([d if isinstance(d, int) else len(x) for d in i.shape], np.float32)
        for i in session.get_inputs()
        if i.name != "x"
    }
    for start in range(0, x.shape[1], chunk):
        logits, *carried = session.run(None, {"x": x[:, start : start + chunk], **states})
        states = dict(zip(states, carried, strict=True))
    result: np.ndarray = logits
    return result


def _zoo_export(path: Path, *, arch: str = "lstm", hidden: int = 16, **kw: Any) -> Path:
    """A zoo model exported without a checkpoint: no metadata source, so no gate, no data."""
    torch.manual_seed(0)
    config = ModelConfig(
        task="classify",
        input_size=FEATURES,
        arch=arch,  # type: ignore[arg-type]
        hidden_size=hidden,
        num_layers=1,
        num_classes=2,
    )
    export(build_model(config).eval(), path, **kw)
    return path


@pytest.fixture(scope="module")
def run32(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A 2-layer LSTM, hidden 32: big enough that INT8 shrinks the file and the task is learnt."""
    single_thread()
    folder = tmp_path_factory.mktemp("quantize-run")
    data = write_classify_npz(folder / "classify.npz")
    result = train("classify", data=data, out=folder / "run", seed=0, hidden=32, layers=2, epochs=4)
    assert result.metrics["accuracy"] >= 0.9, result.metrics  # else the gate tests prove little
    return result


@pytest.fixture(scope="module")
def fp32(run32: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint's FP32 export (metadata source = the run). Read-only."""
    out = tmp_path_factory.mktemp("quantize-fp32") / "m.onnx"
    export(run32.out, out)
    return out


@pytest.fixture(scope="module")
def dynamic(fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> QuantizeResult:
    """dynamic-int8 of :func:`fp32`, gated on the run's test split. Read-only."""
    single_thread()
    out = tmp_path_factory.mktemp("quantize-int8") / "m.int8.onnx"
    return quantize(fp32, out, mode="dynamic-int8")


def _matmul_only(src: Path, dst: Path, *_args: Any, **_kwargs: Any) -> None:
    """Stand-in for ``_dynamic`` that leaves LSTM out, as the naive route silently does."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with qmod._quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )


def _corrupting(original: Callable[..., None]) -> Callable[..., None]:
    """``_dynamic`` followed by zeroing every INT8 weight: the model stops telling classes apart."""

    def run(src: Path, dst: Path, *args: Any, **kwargs: Any) -> None:
        original(src, dst, *args, **kwargs)
        model = onnx.load(str(dst))
        zeroed = 0
        for index, tensor in enumerate(model.graph.initializer):
            if tensor.data_type == TensorProto.INT8:
                array = numpy_helper.to_array(tensor)
                model.graph.initializer[index].CopyFrom(
                    numpy_helper.from_array(np.zeros_like(array), tensor.name)
                )
                zeroed += 1
        assert zeroed, "no INT8 weight to corrupt"
        onnx.save(model, str(dst))

    return run


# --------------------------------------------------------------------------------------------
# 1. dynamic-int8 on a checkpoint export


def test_dynamic_int8_quantizes_every_lstm(fp32: Path, dynamic: QuantizeResult) -> None:
    lstm_nodes = _ops(fp32)["LSTM"]
    assert lstm_nodes == 2
    after = _ops(dynamic.out)
    assert after["DynamicQuantizeLSTM"] == lstm_nodes
    assert after["LSTM"] == 0
    assert after["Gemm"] == 0  # the head became integer arithmetic too

    lstm = _op(dynamic.audit, "LSTM")
    assert (lstm.before, lstm.quantized, lstm.still_float) == (lstm_nodes, lstm_nodes, 0)
    assert dynamic.audit.float_recurrent() == []
    assert dynamic.audit.kernels["DynamicQuantizeLSTM"] == lstm_nodes
    assert "cpu" in dynamic.audit.providers
    assert dynamic.audit.size_before == fp32.stat().st_size
    assert dynamic.audit.size_after == dynamic.out.stat().st_size
    assert dynamic.audit.size_after < dynamic.audit.size_before
    assert dynamic.audit.ratio < 1


def test_dynamic_int8_metadata_records_precision_and_audit(
    fp32: Path, dynamic: QuantizeResult
) -> None:
    props = _props(dynamic.out)
    assert props["edgelstm.precision"] == "int8"
    stored = json.loads(props["edgelstm.quantization"])
    assert stored["mode"] == "dynamic-int8"
    assert {"op": "LSTM", "before": 2, "quantized": 2, "still_float": 0} in stored["ops"]
    assert stored["ratio"] < 1
    assert stored["gate"] and "accuracy" in stored["gate"]
    # everything the export wrote survives (the runtime layer needs it)
    original = _props(fp32)
    kept = {k: v for k, v in original.items() if k != "edgelstm.weights_sha256"}
    assert all(props[key] == value for key, value in kept.items())
    assert "edgelstm.precision" not in original
    # new weights, new checksum (verified whenever the file is opened)
    assert props["edgelstm.weights_sha256"] != original["edgelstm.weights_sha256"]


def test_dynamic_int8_gate_ran_with_the_checkpoint_metric(
    run32: TrainResult, dynamic: QuantizeResult
) -> None:
    gate = dynamic.gate
    assert gate is not None
    assert gate.metric == "accuracy"
    assert gate.float_value == pytest.approx(run32.metrics["accuracy"])
    assert gate.passed
    assert gate.degradation <= gate.allowed == pytest.approx(0.01)


@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (1, 40), (3, 1), (3, 40)])
def test_dynamic_int8_runs_and_stays_close(
    fp32: Path, dynamic: QuantizeResult, batch: int, steps: int
) -> None:
    reference, quantized = _session(fp32), _session(dynamic.out)
    x = _x(batch, steps) - 1.0  # the class means of the fixture data are +-1
    expected = reference.run(None, {"x": x})
    got = quantized.run(None, {"x": x})
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        assert np.isfinite(have).all()
        assert np.max(np.abs(have - want)) < 0.2
    assert (np.argmax(got[0], axis=-1) == np.argmax(expected[0], axis=-1)).all()


# --------------------------------------------------------------------------------------------
# 2. partial quantization is detected; computed weights are folded first


def test_lstm_left_float_fails_and_writes_nothing(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _matmul_only)
    out = tmp_path / "partial.onnx"
    with pytest.raises(CheckFailedError, match=r"2 of 2 LSTM.*--allow-partial") as info:
        quantize(fp32, out, mode="dynamic-int8")
    assert info.value.exit_code == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_lstm_left_float_cli_exit_1(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _matmul_only)
    out = tmp_path / "partial.onnx"
    result = cli("quantize", fp32, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 1, result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    assert "LSTM" in result.err and "Traceback" not in result.err
    assert not out.exists()


def test_allow_partial_keeps_the_result_and_says_so(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _matmul_only)
    out = tmp_path / "partial.onnx"
    result = quantize(fp32, out, mode="dynamic-int8", allow_partial=True)
    assert out.is_file()
    lstm = _op(result.audit, "LSTM")
    assert lstm.still_float == 2 and lstm.quantized == 0
    assert [o.op for o in result.audit.float_recurrent()] == ["LSTM"]
    assert _op(result.audit, "Gemm").quantized == 1
    assert _ops(out)["LSTM"] == 2 and _ops(out)["DynamicQuantizeLSTM"] == 0
    stored = json.loads(_props(out)["edgelstm.quantization"])
    assert {"op": "LSTM", "before": 2, "quantized": 0, "still_float": 2} in stored["ops"]


def _lstm_with_computed_weights(path: Path, hidden: int = 16) -> Path:
    """An LSTM whose W arrives through an Identity node, as torch.export-style graphs do."""
    rng = np.random.default_rng(0)

    def init(name: str, shape: tuple[int, ...], scale: float = 0.3) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (scale * rng.standard_normal(shape)).astype(np.float32), name
        )

    nodes = [
        helper.make_node("Identity", ["W_source"], ["W"], name="weight_plumbing"),
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden),
    ]
    graph = helper.make_graph(
        nodes,
        "computed_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["time", "batch", FEATURES])],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "batch", hidden])],
        [
            init("W_source", (1, 4 * hidden, FEATURES)),
            init("R", (1, 4 * hidden, hidden)),
            init("B", (1, 8 * hidden), 0.0),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_computed_lstm_weights_are_folded_then_quantized(tmp_path: Path) -> None:
    src = _lstm_with_computed_weights(tmp_path / "computed.onnx")
    out = tmp_path / "q.onnx"
    result = quantize(src, out, mode="dynamic-int8")
    assert any("constant-folded" in note for note in result.audit.notes), result.audit.notes
    assert _ops(out) == Counter({"DynamicQuantizeLSTM": 1})
    lstm = _op(result.audit, "LSTM")
    assert (lstm.quantized, lstm.still_float) == (1, 0)
    assert result.gate is None  # no checkpoint behind a hand-built graph
    x = np.random.default_rng(2).standard_normal((5, 2, FEATURES)).astype(np.float32)
    want = _session(src).run(None, {"x": x})[0]
    have = _session(out).run(None, {"x": x})[0]
    assert np.max(np.abs(have - want)) < 0.05


# --------------------------------------------------------------------------------------------
# 3. GRU: reported, not failed


def test_gru_is_reported_and_the_rest_quantized(tmp_path: Path) -> None:
    src = _zoo_export(tmp_path / "gru.onnx", arch="gru")
    out = tmp_path / "gru.int8.onnx"
    result = quantize(src, out, mode="dynamic-int8")
    assert out.is_file()
    assert any("GRU cannot be quantized" in note for note in result.audit.notes)
    gru = _op(result.audit, "GRU")
    assert (gru.before, gru.quantized, gru.still_float) == (1, 0, 1)
    assert _op(result.audit, "Gemm").quantized == 1
    after = _ops(out)
    assert after["GRU"] == 1
    assert after["Gemm"] == 0
    assert sum(after[k] for k in ("MatMulInteger", "DynamicQuantizeMatMul")) >= 1
    x = _x(8, 5)
    want = _session(src).run(None, {"x": x})[0]
    # Logits of this untrained model are ~0.3 with class margins >= 0.1; INT8 moves them ~2e-3.
    _assert_close_to_float(want, _session(out).run(None, {"x": x})[0], atol=0.02)


# --------------------------------------------------------------------------------------------
# 4. static-int8 (QDQ)


def test_static_int8_defaults_to_the_runs_training_data(
    fp32: Path, run32: TrainResult, tmp_path: Path
) -> None:
    out = tmp_path / "static.onnx"
    result = quantize(fp32, out, mode="static-int8")
    after = _ops(out)
    assert after["DequantizeLinear"] > 0 and after["QuantizeLinear"] > 0
    assert after["LSTM"] == 2  # ONNX Runtime keeps LSTM float in QDQ mode
    notes = " ".join(result.audit.notes)
    assert "leaves LSTM in float" in notes
    assert f"training sequences of {run32.out}" in notes
    assert _op(result.audit, "LSTM").still_float == 2
    assert _op(result.audit, "Gemm").quantized == 1
    assert result.gate is not None and result.gate.passed
    assert _props(out)["edgelstm.precision"] == "int8"
    x = _both_classes(4, 40)
    want = _session(fp32).run(None, {"x": x})[0]
    # Logits ~1.3, class margins > 1; the QDQ head moves them up to ~0.03.
    _assert_close_to_float(want, _session(out).run(None, {"x": x})[0], atol=0.1)


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_with_calibration_file(fp32: Path, tmp_path: Path, method: str) -> None:
    # The trained model: an untrained one's logits (~0.05) are too small for a tolerance to
    # tell a good INT8 model from a broken one.
    calibration = tmp_path / "cal.npz"
    np.savez(calibration, X=_both_classes(2, 10))
    out = tmp_path / "static.onnx"
    result = quantize(
        fp32, out, mode="static-int8", calibration=calibration, calibration_method=method
    )
    assert _ops(out)["DequantizeLinear"] > 0
    assert any(f"4 sequences from {calibration}" in n for n in result.audit.notes)
    assert any(f"method {method}" in n for n in result.audit.notes)
    x = _both_classes(4, 12)
    want = _session(fp32).run(None, {"x": x})[0]
    _assert_close_to_float(want, _session(out).run(None, {"x": x})[0], atol=0.1)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        pytest.param({"y": np.zeros(4)}, "needs an array X", id="missing-X"),
        pytest.param({"X": np.zeros((4, FEATURES), np.float32)}, "needs an array X", id="rank-2"),
        pytest.param({"X": np.full((2, 5, FEATURES), np.nan, np.float32)}, "NaN", id="nan"),
    ],
)
def test_bad_calibration_file_is_refused(
    tmp_path: Path, arrays: dict[str, np.ndarray], match: str
) -> None:
    src = _zoo_export(tmp_path / "m.onnx")
    calibration = tmp_path / "cal.npz"
    np.savez(calibration, **arrays)  # type: ignore[arg-type]
    out = tmp_path / "static.onnx"
    with pytest.raises(InvalidInputError, match=match):
        quantize(src, out, mode="static-int8", calibration=calibration)
    assert not out.exists()


def test_static_int8_without_any_data_names_calibration(tmp_path: Path) -> None:
    src = _zoo_export(tmp_path / "m.onnx")
    out = tmp_path / "static.onnx"
    with pytest.raises(InvalidInputError, match="--calibration"):
        quantize(src, out, mode="static-int8")
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# 5. fp16


def test_fp16_halves_weights_and_keeps_float32_io(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "half.onnx"
    result = quantize(fp32, out, mode="fp16")
    model = onnx.load(str(out))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    types = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "LSTM":
            assert [types.get(name) for name in list(node.input)[1:3]] == [TensorProto.FLOAT16] * 2
    big = [t for t in model.graph.initializer if int(np.prod(t.dims)) >= 64]
    assert big and all(t.data_type == TensorProto.FLOAT16 for t in big)
    assert any("no speed" in note for note in result.audit.notes)
    assert _props(out)["edgelstm.precision"] == "fp16"
    assert result.audit.size_after < result.audit.size_before
    assert out.stat().st_size < fp32.stat().st_size
    x = _x(2, 9) - 1.0
    want = _session(fp32).run(None, {"x": x})[0]
    have = _session(out).run(None, {"x": x})[0]
    assert have.dtype == np.float32
    assert np.max(np.abs(have - want)) < 0.05


# --------------------------------------------------------------------------------------------
# 6. the accuracy gate


def test_gate_failure_writes_nothing(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _corrupting(qmod._dynamic))
    out = tmp_path / "bad.onnx"
    with pytest.raises(CheckFailedError, match="accuracy gate") as info:
        quantize(fp32, out, mode="dynamic-int8", fidelity=LOOSE)
    assert info.value.exit_code == 1
    assert "accuracy" in str(info.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_gate_failure_leaves_an_existing_out_untouched(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _corrupting(qmod._dynamic))
    out = tmp_path / "keep.onnx"
    out.write_bytes(b"previous result")
    with pytest.raises(CheckFailedError, match="accuracy gate"):
        quantize(fp32, out, mode="dynamic-int8", fidelity=LOOSE, overwrite=True)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx"]


def test_gate_failure_cli_exit_1(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _corrupting(qmod._dynamic))
    out = tmp_path / "bad.onnx"
    result = cli("quantize", fp32, *LOOSE_FLAGS, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 1, result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    assert "accuracy gate" in result.err and "Traceback" not in result.err
    assert not out.exists()


def test_corruption_passes_a_gate_wide_enough(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate compares against --max-degradation, not a fixed threshold."""
    monkeypatch.setattr(qmod, "_dynamic", _corrupting(qmod._dynamic))
    out = tmp_path / "accepted.onnx"
    result = quantize(fp32, out, mode="dynamic-int8", fidelity=LOOSE, max_degradation=1.0)
    assert result.gate is not None and result.gate.passed
    assert result.gate.degradation > 0.01  # the corruption was real
    assert out.is_file()


# --------------------------------------------------------------------------------------------
# 6b. the checkpoint's baselines beside the gate (issue 13: a fast model is never shown
# without whether it is any good)


def _stored_baselines(run: Path) -> dict[str, Any]:
    baselines: dict[str, Any] = json.loads((run / "metrics.json").read_text())["baselines"]
    return baselines


def test_gate_shows_the_checkpoints_baselines(
    fp32: Path, run32: TrainResult, tmp_path: Path, cli: CliRunner
) -> None:
    stored = _stored_baselines(run32.out)
    values = stored["values"]
    out = tmp_path / "q.onnx"
    result = cli("quantize", fp32, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 0, result
    text = " ".join(result.out.split())  # rich wraps long lines
    parts = ", ".join(
        f"{name} {'skipped' if v is None else f'{v:.4f}'}" for name, v in values.items()
    )
    assert f"baselines (accuracy on the same test split): {parts}; " in text
    assert f"{stored['required']:.4f} needed to clear the majority class" in text
    # This run beats chance (accuracy >= 0.9 on two balanced classes): said plainly.
    assert "quantized model: clears chance" in text
    assert "warning:" not in text

    args = ("--mode", "dynamic-int8", "--json")
    payload = json.loads(cli("quantize", fp32, *args, "--out", tmp_path / "q2.onnx").out)
    baselines = payload["baselines"]
    assert baselines["values"] == values
    assert baselines["metric"] == "accuracy" and baselines["run"] == str(run32.out)
    gate = payload["gate"]
    assert baselines["scores"]["float"]["value"] == gate["float_value"]
    assert baselines["scores"]["quantized"]["value"] == gate["quantized_value"]
    assert baselines["scores"]["quantized"]["clears_chance"] is True
    assert baselines["warnings"] == []


def test_a_quantized_model_at_chance_says_so_plainly(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    """Zeroed INT8 weights pass a gate opened wide, but the report says the model is useless."""
    monkeypatch.setattr(qmod, "_dynamic", _corrupting(qmod._dynamic))
    out = tmp_path / "q.onnx"
    result = cli(
        "quantize",
        fp32,
        *LOOSE_FLAGS,
        "--mode",
        "dynamic-int8",
        "--max-degradation",
        "1",
        "--out",
        out,
    )
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert "warning: the quantized model no longer clears chance: accuracy " in text
    assert "needed to clear the majority class (the float model: " in text
    assert "do not deploy it" in text
    assert "quantized model: clears chance" not in text

    args = ("--mode", "dynamic-int8", "--max-degradation", "1", "--json")
    payload = json.loads(
        cli("quantize", fp32, *LOOSE_FLAGS, *args, "--out", tmp_path / "q2.onnx").out
    )
    scores = payload["baselines"]["scores"]
    assert scores["float"]["clears_chance"] is True
    assert scores["quantized"]["clears_chance"] is False
    assert payload["baselines"]["warnings"][0].startswith("the quantized model no longer")


def test_a_failed_gate_names_the_baselines_too(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _corrupting(qmod._dynamic))
    with pytest.raises(CheckFailedError) as info:
        quantize(fp32, tmp_path / "bad.onnx", mode="dynamic-int8", fidelity=LOOSE)
    message = str(info.value)
    assert "baselines (accuracy on the same test split): majority " in message
    assert "the quantized model no longer clears chance" in message


def test_a_checkpoint_without_baselines_says_it_has_none(
    fp32: Path, run32: TrainResult, tmp_path: Path, cli: CliRunner
) -> None:
    """Runs trained before baselines were recorded still quantize; the report says why no
    baselines are shown and what to do."""
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(run32.out, old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["baselines"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "q.onnx"
    result = cli("quantize", fp32, "--mode", "dynamic-int8", "--eval", old, "--out", out)
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert f"baselines: none in {old / 'metrics.json'}" in text
    assert "retrain it to see whether the model beats chance" in text
    payload = quantize(fp32, tmp_path / "q2.onnx", mode="dynamic-int8", eval_run=old)
    assert payload.baselines is None
    assert quantize_report.quantize_result_json(payload)["baselines"] is None


def test_without_a_gate_there_are_no_baselines(tmp_path: Path) -> None:
    src = _zoo_export(tmp_path / "zoo.onnx")
    result = quantize(src, tmp_path / "zoo.int8.onnx", mode="dynamic-int8")
    assert result.gate is None and result.baselines is None
    assert quantize_report.quantize_result_json(result)["baselines"] is None


def _baselines(majority: float = 0.5, best: float = 0.9) -> CheckpointBaselines:
    from edgelstm.training.baselines import BaselineComparison, chance_margin

    comparison = BaselineComparison(
        metric="accuracy",
        higher_is_better=True,
        model=0.95,
        values={"majority": majority, "1-NN ED": best, "1-NN DTW": None},
        trivial="majority",
        required=chance_margin(majority),
    )
    return CheckpointBaselines(Path("run"), comparison)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"float": 0.95, "quantized": 0.94}, []),
        (
            {"float": 0.95, "quantized": 0.50},
            ["the quantized model no longer clears chance: accuracy 0.5000, 0.5500 needed"],
        ),
        (
            {"float": 0.50, "quantized": 0.50},
            [
                "neither the float nor the quantized model clears chance: accuracy float 0.5000, "
                "quantized 0.5000, 0.5500 needed"
            ],
        ),
        (
            {"float": 0.92, "quantized": 0.88},
            [
                "the quantized model no longer beats the strongest baseline, 1-NN ED 0.9000: "
                "accuracy 0.8800 (the float model: 0.9200)"
            ],
        ),
        (
            {"float": 0.80, "quantized": 0.80},
            ["neither the float nor the quantized model beats the strongest baseline"],
        ),
    ],
)
def test_shortfalls_say_which_model_falls_short_of_what(
    scores: dict[str, float], expected: list[str]
) -> None:
    assert _baselines().shortfalls({}) == []
    found = _baselines().shortfalls(dict(scores))
    assert len(found) == len(expected), found
    for sentence, start in zip(found, expected, strict=True):
        assert sentence.startswith(start), sentence


def test_baselines_of_a_missing_or_garbled_metrics_file_are_none(tmp_path: Path) -> None:
    assert CheckpointBaselines.read(tmp_path) is None
    (tmp_path / "metrics.json").write_text('{"baselines": {"metric": "accuracy"}}')
    assert CheckpointBaselines.read(tmp_path) is None
    (tmp_path / "metrics.json").write_text("not json")
    assert CheckpointBaselines.read(tmp_path) is None


# --------------------------------------------------------------------------------------------
# 7. streaming


def test_streaming_drift_is_reported(tmp_path: Path) -> None:
    src = _zoo_export(tmp_path / "stream.onnx", streaming=True)
    out = tmp_path / "stream.int8.onnx"
    result = quantize(src, out, mode="dynamic-int8")
    assert _ops(out)["DynamicQuantizeLSTM"] == 1
    stored = json.loads(_props(out)["edgelstm.quantization"])
    assert stored["streaming_drift"] == result.streaming_drift
    # The drift is what it says: chunked vs one whole call of the quantized model, on the
    # 2 x 60 standard-normal sequences (seed 0) quantize feeds it. Same session settings as
    # quantize (the default thread count): INT8 reductions round differently per thread count.
    from edgelstm.runtimes.model_io.feeding import cpu_session

    session = cpu_session(out)
    x = np.random.default_rng(0).standard_normal((2, 60, FEATURES)).astype(np.float32)
    whole = _stream(out, x, 60, session=session)
    assert set(result.streaming_drift) == {"chunk 1", "chunk 7"}
    for chunk in (1, 7):
        drift = float(np.max(np.abs(_stream(out, x, chunk, session=session) - whole)))
        assert result.streaming_drift[f"chunk {chunk}"] == pytest.approx(drift, abs=1e-6)
    # And each way of streaming stays close to the FP32 export streamed the same way. This
    # untrained model's logits are ~0.06 with margins >= 0.013; INT8 moves them <= 2e-3.
    x = _x(8, 60)
    for chunk in (1, 7, 60):
        _assert_close_to_float(_stream(src, x, chunk), _stream(out, x, chunk), atol=0.006)


def test_streaming_checkpoint_export_quantizes(run32: TrainResult, tmp_path: Path) -> None:
    src = tmp_path / "stream.onnx"
    export(run32.out, src, streaming=True)
    out = tmp_path / "stream.int8.onnx"
    result = quantize(src, out, mode="dynamic-int8")
    assert set(result.streaming_drift) == {"chunk 1", "chunk 7"}
    # The streaming export keeps its checkpoint as metadata source: the gate runs, and passes.
    gate = result.gate
    assert gate is not None
    assert gate.metric == "accuracy"
    assert gate.float_value == pytest.approx(run32.metrics["accuracy"])
    assert gate.passed and gate.degradation <= gate.allowed
    x = _both_classes(4, 40)
    for chunk in (1, 7, 40):
        _assert_close_to_float(_stream(src, x, chunk), _stream(out, x, chunk), atol=0.05)


# --------------------------------------------------------------------------------------------
# 8. bad inputs through the CLI


def _write_bad(kind: str, tmp_path: Path, fp32: Path, quantized: Path) -> tuple[list[str], Path]:
    """Build one bad invocation: (extra argv after `quantize`, the --out path)."""
    out = tmp_path / "out.onnx"
    mode = ["--mode", "dynamic-int8"]
    if kind == "missing":
        return [str(tmp_path / "nope.onnx"), *mode, "--out", str(out)], out
    if kind == "empty":
        (tmp_path / "empty.onnx").write_bytes(b"")
        return [str(tmp_path / "empty.onnx"), *mode, "--out", str(out)], out
    if kind == "text":
        (tmp_path / "notes.onnx").write_text("this is a text file, not a model\n", "utf-8")
        return [str(tmp_path / "notes.onnx"), *mode, "--out", str(out)], out
    if kind == "truncated":
        data = fp32.read_bytes()
        (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
        return [str(tmp_path / "cut.onnx"), *mode, "--out", str(out)], out
    if kind == "out-suffix":
        bad = tmp_path / "out.txt"
        return [str(fp32), *mode, "--out", str(bad)], bad
    if kind == "unknown-mode":
        return [str(fp32), "--mode", "int4", "--out", str(out)], out
    if kind == "eval-not-a-run":
        (tmp_path / "folder").mkdir()
        return [str(fp32), *mode, "--eval", str(tmp_path / "folder"), "--out", str(out)], out
    if kind == "already-quantized":
        return [str(quantized), *mode, "--out", str(out)], out
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no graph"),
        ("text", "not a readable ONNX model"),
        ("truncated", "ONNX"),
        ("out-suffix", "should end in .onnx"),
        ("unknown-mode", "int4"),
        ("eval-not-a-run", "config.json"),
        ("already-quantized", "already quantized"),
    ],
)
def test_bad_input_is_a_clean_usage_error(
    kind: str,
    message: str,
    tmp_path: Path,
    fp32: Path,
    dynamic: QuantizeResult,
    cli: CliRunner,
) -> None:
    argv, out = _write_bad(kind, tmp_path, fp32, dynamic.out)
    result = cli("quantize", *argv)
    assert result.code == 2, result
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("error: ")
    assert message in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_out_equal_to_input_is_refused(fp32: Path, tmp_path: Path, cli: CliRunner) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(fp32.read_bytes())
    before = src.read_bytes()
    result = cli("quantize", src, "--mode", "dynamic-int8", "--out", src, "--overwrite")
    assert result.code == 2, result
    assert len(result.err_lines) == 1 and "must differ" in result.err
    assert src.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_existing_out_needs_overwrite(fp32: Path, tmp_path: Path, cli: CliRunner) -> None:
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old content")
    result = cli("quantize", fp32, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 2, result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    assert "--overwrite" in result.err
    assert out.read_bytes() == b"old content"


# --------------------------------------------------------------------------------------------
# 9. the CLI on success


def test_cli_prints_audit_size_and_gate(fp32: Path, tmp_path: Path, cli: CliRunner) -> None:
    out = tmp_path / "q.onnx"
    result = cli("quantize", fp32, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 0, result
    assert "quantization audit" in result.out
    assert "size" in result.out and "MB" in result.out
    assert "accuracy gate passed" in result.out
    assert "DynamicQuantizeLSTM" in result.out
    assert result.err_lines == []
    assert _ops(out)["DynamicQuantizeLSTM"] == 2


def test_cli_json(fp32: Path, tmp_path: Path, cli: CliRunner) -> None:
    out = tmp_path / "q.onnx"
    result = cli("quantize", fp32, "--mode", "dynamic-int8", "--out", out, "--json")
    assert result.code == 0, result
    payload = json.loads(result.out)  # nothing but JSON on stdout
    assert payload["out"] == str(out)
    assert payload["audit"]["ratio"] < 1
    assert payload["audit"]["mode"] == "dynamic-int8"
    assert payload["gate"]["passed"] is True
    assert payload["gate"]["metric"] == "accuracy"
    assert out.is_file()


def test_cli_overwrite_replaces(fp32: Path, tmp_path: Path, cli: CliRunner) -> None:
    out = tmp_path / "q.onnx"
    out.write_bytes(b"old")
    result = cli("quantize", fp32, "--mode", "fp16", "--out", out, "--overwrite")
    assert result.code == 0, result
    assert _props(out)["edgelstm.precision"] == "fp16"


# --------------------------------------------------------------------------------------------
# convolutional models: Conv becomes ConvInteger in dynamic INT8, audited like LSTM

CONV_RUNS = {
    "lstm-fcn": {"arch": "lstm-fcn", "fcn_filters": (8, 16, 8)},
    # What --arch auto picks for long sequences: both branches' convolutions become integer.
    "lstm-fcn-conv": {
        "arch": "lstm-fcn",
        "fcn_filters": (8, 16, 8),
        "frontend": "conv",
        "frontend_stride": 2,
        "frontend_kernel": 4,
        "frontend_channels": 8,
    },
    "conv-front-end": {
        "frontend": "conv",
        "frontend_stride": 2,
        "frontend_kernel": 4,
        "frontend_channels": 8,
    },
}


@pytest.fixture(scope="module", params=sorted(CONV_RUNS))
def conv_fp32(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained convolutional classifier's FP32 export (the gate scores its test split)."""
    single_thread()
    folder = tmp_path_factory.mktemp(f"quantize-{request.param}")
    data = write_classify_npz(folder / "classify.npz")
    options: dict[str, Any] = CONV_RUNS[request.param]
    run = train("classify", data=data, out=folder / "run", hidden=16, layers=1, epochs=4, **options)
    assert run.metrics["accuracy"] >= 0.9, run.metrics
    out = folder / "m.onnx"
    export(run.out, out)
    return out


def test_dynamic_int8_quantizes_conv_and_passes_the_gate(conv_fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    result = quantize(conv_fp32, out, mode="dynamic-int8")
    conv = _op(result.audit, "Conv")
    assert conv.before >= 1
    assert (conv.quantized, conv.still_float) == (conv.before, 0)
    assert result.audit.kernels.get("ConvInteger") == conv.before
    assert (_op(result.audit, "LSTM").quantized, _op(result.audit, "LSTM").still_float) == (1, 0)
    assert result.gate is not None and result.gate.passed, result.gate
    stored = json.loads(_props(out)["edgelstm.quantization"])
    assert any(o["op"] == "Conv" and o["still_float"] == 0 for o in stored["ops"])


@pytest.mark.parametrize("mode", ["static-int8", "fp16"])
def test_static_int8_and_fp16_of_conv_models_pass_the_gate(
    conv_fp32: Path, tmp_path: Path, mode: str
) -> None:
    result = quantize(conv_fp32, tmp_path / "q.onnx", mode=mode)
    assert _op(result.audit, "Conv").quantized >= 1
    assert result.gate is not None and result.gate.passed, result.gate


def _no_conv(src: Path, dst: Path, *_args: Any, **_kwargs: Any) -> None:
    """Stand-in for ``_dynamic`` that quantizes everything but Conv."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with qmod._quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm", "LSTM"],
        )


def test_conv_left_float_is_a_partial_result(
    conv_fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _no_conv)
    out = tmp_path / "partial.onnx"
    with pytest.raises(CheckFailedError, match=r"Conv node\(s\) stayed float.*--allow-partial"):
        quantize(conv_fp32, out, mode="dynamic-int8")
    assert not out.exists()
    result = quantize(conv_fp32, out, mode="dynamic-int8", allow_partial=True)
    conv = _op(result.audit, "Conv")
    assert conv.still_float == conv.before >= 1


def test_conv_front_end_streaming_int8_reports_whole_stride_drift(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        task="classify",
        input_size=FEATURES,
        hidden_size=16,
        num_layers=1,
        num_classes=2,
        **CONV_RUNS["conv-front-end"],
    )
    src = tmp_path / "conv.s.onnx"
    export(build_model(config).eval(), src, streaming=True)
    result = quantize(src, tmp_path / "q.onnx", mode="dynamic-int8")
    assert set(result.streaming_drift) == {"chunk 2", "chunk 14"}
    assert _op(result.audit, "Conv").still_float == 0
