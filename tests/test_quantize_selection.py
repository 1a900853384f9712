"""Speed-aware, fidelity-checked quantization (exporters/op_selection.py, exporters/fidelity.py).

Timings come from a stand-in timer (no test asserts wall-clock time): the tests say which
candidate is fast or slow and check what quantize chooses, writes and says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import CliRunner, single_thread, write_classify_npz
from onnx import TensorProto, helper, numpy_helper

import edgelstm.exporters.op_selection as selection
import edgelstm.exporters.quantize as qmod
from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.exporters.fidelity import FidelityThresholds
from edgelstm.exporters.op_selection import candidate_sets, parse_ops
from edgelstm.exporters.op_selection import measure_latencies as real_measure_latencies
from edgelstm.exporters.quantize import quantize
from edgelstm.exporters.quantize_report import quantize_warnings
from edgelstm.training.trainer import TrainResult, train


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A classifier with a conv front end before its LSTM: Conv and LSTM both quantizable."""
    single_thread()
    folder = tmp_path_factory.mktemp("selection")
    data = write_classify_npz(folder / "classify.npz")
    result = train(
        "classify", data=data, out=folder / "run", seed=0, frontend="conv", frontend_kernel=4,
        frontend_stride=1, frontend_channels=8, hidden=16, layers=1, epochs=6,
    )  # fmt: skip
    # A model that tells the classes apart, else a broken conv would change no decision.
    assert result.metrics["accuracy"] >= 0.9, result.metrics
    return result


@pytest.fixture(scope="module")
def conv_model(conv_run: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("selection-model") / "conv.onnx"
    export(conv_run.out, out)
    return out


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _timer(fp32_ms: float, conv_ms: float, other_ms: float) -> Any:
    """A stand-in for measure_latencies: FP32 first, then candidates by what they hold."""

    def timed(paths: list[Path], feed: Any) -> list[float]:
        integer_conv = {"ConvInteger", "QLinearConv"}
        return [fp32_ms] + [conv_ms if integer_conv & _ops(p) else other_ms for p in paths[1:]]

    return timed


def test_candidates_cover_all_recurrent_and_each_op_left_out() -> None:
    sets = candidate_sets(("LSTM", "MatMul", "Conv"), "auto")
    assert sets[0] == ("all", ("LSTM", "MatMul", "Conv"))
    assert ("recurrent + matmul", ("LSTM", "MatMul")) in sets
    assert ("all but LSTM", ("MatMul", "Conv")) in sets
    assert ("all but MatMul", ("LSTM", "Conv")) in sets
    assert len({ops for _, ops in sets}) == len(sets)  # no candidate built twice
    assert candidate_sets(("LSTM",), "auto") == [("all", ("LSTM",))]
    assert candidate_sets(("LSTM", "Conv"), ("LSTM",)) == [("LSTM", ("LSTM",))]


def test_ops_that_cannot_be_quantized_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="op types among LSTM, MatMul, Conv"):
        parse_ops("LSTM,GRU")
    with pytest.raises(InvalidInputError, match="has none of these"):
        candidate_sets(("LSTM",), ("Conv",))


def test_the_fastest_faithful_candidate_is_kept_and_the_reason_stated(
    conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ConvInteger slower than Conv (as on AVX2 without VNNI): Conv stays FP32, and says why."""
    monkeypatch.setattr(selection, "measure_latencies", _timer(1.0, 2.0, 0.6))
    result = quantize(conv_model, tmp_path / "q.onnx", mode="dynamic-int8")
    assert result.op_choice is not None
    assert "Conv" not in result.op_choice.chosen.op_types
    assert "LSTM" in result.op_choice.chosen.op_types
    written = _ops(tmp_path / "q.onnx")
    assert "DynamicQuantizeLSTM" in written and "ConvInteger" not in written and "Conv" in written
    notes = " ".join(result.audit.notes)
    assert "Conv kept FP32: quantizing it too made the model 3.33x as slow" in notes
    assert "p50 0.600 ms vs FP32 1.000 ms (0.60x), measured here" in result.audit.providers
    assert quantize_warnings(result) == ()
    stored = json.loads(onnx.load(str(tmp_path / "q.onnx")).metadata_props[-1].value)
    assert stored["op_selection"]["op_types"] == list(result.op_choice.chosen.op_types)


def test_calibrated_qlinearconv_is_a_candidate_when_the_checkpoint_is_at_hand(
    conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where QLinearConv is the fastest (as for conv-heavy models on AVX2), it is kept."""

    def timed(paths: list[Path], feed: Any) -> list[float]:
        speeds = {"QLinearConv": 0.4, "ConvInteger": 2.0}
        return [1.0] + [
            next((ms for op, ms in speeds.items() if op in _ops(p)), 0.6) for p in paths[1:]
        ]

    monkeypatch.setattr(selection, "measure_latencies", timed)
    result = quantize(conv_model, tmp_path / "q.onnx", mode="dynamic-int8")
    assert result.op_choice is not None
    assert result.op_choice.chosen.label == "static Conv + recurrent + matmul"
    written = _ops(tmp_path / "q.onnx")
    assert {"QLinearConv", "DynamicQuantizeLSTM"} <= written and "Conv" not in written
    assert not any(n.startswith("Conv kept FP32") for n in result.audit.notes)
    conv = next(o for o in result.audit.ops if o.op == "Conv")
    assert (conv.quantized, conv.still_float) == (1, 0)


def test_a_streaming_conv_model_gets_no_calibrated_candidate(
    conv_run: TrainResult, tmp_path: Path
) -> None:
    """Calibration runs whole sequences through the sequence graph: a streaming export of
    the same checkpoint is quantized from dynamic candidates only."""
    stream = tmp_path / "conv.stream.onnx"
    export(conv_run.out, stream, streaming=True)
    result = quantize(stream, tmp_path / "q.onnx", mode="dynamic-int8")
    assert result.op_choice is not None
    assert all("static" not in c.label for c in result.op_choice.candidates)


def test_ops_all_quantizes_everything_even_when_slower(
    conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "measure_latencies", _timer(1.0, 2.0, 0.6))
    result = quantize(conv_model, tmp_path / "q.onnx", mode="dynamic-int8", ops="all")
    assert {"ConvInteger", "DynamicQuantizeLSTM"} <= _ops(tmp_path / "q.onnx")
    assert result.op_choice is not None and result.op_choice.chosen.label == "all"
    assert "2.00x slower than FP32" in " ".join(quantize_warnings(result))


def test_a_quantized_model_slower_than_fp32_is_written_with_a_warning(
    conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    """Never slower unknowingly: every candidate loses to FP32 on this (stand-in) CPU."""
    monkeypatch.setattr(selection, "measure_latencies", _timer(0.5, 0.8, 0.7))
    out = tmp_path / "q.onnx"
    result = cli("quantize", conv_model, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert "warning: the quantized model is 1.40x slower than FP32 on this CPU" in text
    assert "deploy the FP32 model where speed matters" in text
    assert out.exists()
    args = ("--mode", "dynamic-int8", "--json")
    payload = json.loads(cli("quantize", conv_model, *args, "--out", tmp_path / "j.onnx").out)
    assert payload["warnings"][0].startswith("the quantized model is 1.40x slower")
    assert payload["op_selection"]["float_p50_ms"] == 0.5


def _breaking_conv(original: Any) -> Any:
    """``_dynamic``, then zero the INT8 conv weights (dynamic ``ConvInteger`` or calibrated
    ``QLinearConv``): quantizing the conv breaks decisions."""

    def run(src: Path, dst: Path, *args: Any, **kwargs: Any) -> None:
        original(src, dst, *args, **kwargs)
        model = onnx.load(str(dst))
        conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "ConvInteger"}
        conv_weights |= {n.input[3] for n in model.graph.node if n.op_type == "QLinearConv"}
        for index, tensor in enumerate(model.graph.initializer):
            if tensor.name in conv_weights:
                zero = np.zeros_like(numpy_helper.to_array(tensor))
                model.graph.initializer[index].CopyFrom(numpy_helper.from_array(zero, tensor.name))
        onnx.save(model, str(dst))

    return run


def test_op_selection_keeps_only_faithful_candidates(
    conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quantizing the conv flips decisions; the LSTM alone is safe: auto finds that."""
    monkeypatch.setattr(qmod, "_dynamic", _breaking_conv(qmod._dynamic))
    monkeypatch.setattr(selection, "measure_latencies", _timer(1.0, 0.3, 0.6))  # conv "fast"
    result = quantize(conv_model, tmp_path / "q.onnx", mode="dynamic-int8")
    assert result.op_choice is not None
    assert "Conv" not in result.op_choice.chosen.op_types
    assert result.fidelity is not None and result.fidelity.passed
    assert "Conv kept FP32: quantizing it broke fidelity to FP32 (logits: argmax" in " ".join(
        result.audit.notes
    )


def test_a_model_whose_int8_breaks_its_decisions_is_refused(
    conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    monkeypatch.setattr(qmod, "_dynamic", _breaking_conv(qmod._dynamic))
    out = tmp_path / "q.onnx"
    result = cli("quantize", conv_model, "--mode", "dynamic-int8", "--ops", "all", "--out", out)
    assert result.code == 1, result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    assert (
        "drifts from the FP32 model" in result.err and "logits: argmax disagreement" in result.err
    )
    assert "op types quantized: Conv, LSTM" in result.err
    assert not out.exists()
    wide = ("--max-disagreement", "1", "--max-relative-error", "1e9", "--max-degradation", "1")
    accepted = cli(
        "quantize", conv_model, "--mode", "dynamic-int8", "--ops", "all", *wide, "--out", out
    )
    assert accepted.code == 0, accepted


def _foreign_model(path: Path) -> Path:
    """A model from another tool: MatMul + Sigmoid, one probability per row, no metadata."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((6, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["p"]),
        ],
        "detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 1])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_without_data_the_check_runs_on_synthetic_inputs_and_says_it_proves_little(
    tmp_path: Path, cli: CliRunner
) -> None:
    model = _foreign_model(tmp_path / "detector.onnx")
    result = cli("quantize", model, "--mode", "dynamic-int8", "--out", tmp_path / "q.onnx")
    assert result.code == 0, result
    text = " ".join(result.out.split())
    assert "fidelity to FP32 passed: p: threshold disagreement" in text
    assert "synthetic samples drawn to the model's signature" in text
    assert "warning: fidelity was checked on synthetic inputs only, which proves little" in text
    assert "skipped" not in text


def test_eval_inputs_gate_a_foreign_model_on_its_own_outputs(
    tmp_path: Path, cli: CliRunner
) -> None:
    model = _foreign_model(tmp_path / "detector.onnx")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, input=np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32))
    result = cli(
        "quantize", model, "--mode", "dynamic-int8", "--eval-inputs", inputs, "--json",
        "--out", tmp_path / "q.onnx",
    )  # fmt: skip
    assert result.code == 0, result
    fidelity = json.loads(result.out)["fidelity"]
    assert fidelity["synthetic"] is False and fidelity["inputs"].startswith("40 samples from ")
    assert fidelity["outputs"][0]["kind"] == "threshold"
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 6), np.float32), h=np.zeros((4, 2), np.float32))
    refused = cli(
        "quantize", model, "--mode", "dynamic-int8", "--eval-inputs", wrong,
        "--out", tmp_path / "r.onnx",
    )  # fmt: skip
    assert refused.code == 2, refused
    assert len(refused.err_lines) == 1 and "needs an array X (or input)" in refused.err
    assert not (tmp_path / "r.onnx").exists()


def test_fidelity_thresholds_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="--max-disagreement must be in"):
        FidelityThresholds(max_disagreement=1.5)


def test_the_real_timer_times_every_model_it_is_given(conv_model: Path) -> None:
    """Structure only (numbers are the machine's): one positive p50 per model, FP32 first."""
    feed = {"x": np.zeros((1, 12, 3), np.float32)}
    times = real_measure_latencies([conv_model, conv_model], feed)
    assert len(times) == 2 and all(t > 0 for t in times)


# --------------------------------------------------------------------------------------------
# a foreign detector whose conv cannot take INT8: its decision rides on a small channel beside
# a loud one, and the conv's input is quantized per tensor (DynamicQuantizeLinear)

STEPS, HIDDEN = 12, 8


def _lstm_branch(name: str, weights: dict[str, np.ndarray]) -> Any:
    nodes = [
        helper.make_node(
            "LSTM",
            ["seq", f"W{name}", f"R{name}", f"B{name}"],
            ["", "h"],
            hidden_size=HIDDEN,
            name=f"lstm_{name}",
        ),
        helper.make_node("Squeeze", ["h", "zero"], [f"last_{name}"]),
    ]
    inits = [numpy_helper.from_array(v, f"{k}{name}") for k, v in weights.items()]
    return nodes, inits


def _detector(path: Path, *, inside_if: bool) -> Path:
    """x [n, 2, time] -> Conv picking channel 1 (x100) -> LSTM -> MatMul -> logits [n, 2]."""
    rng = np.random.default_rng(3)
    weights = {
        "W": (rng.standard_normal((1, 4 * HIDDEN, 1)) * 0.8).astype(np.float32),
        "R": (rng.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.3).astype(np.float32),
        "B": np.zeros((1, 8 * HIDDEN), np.float32),
    }
    kernel = np.array([[[0.0], [100.0]]], np.float32)  # channel 0 ignored, channel 1 x100
    # The two classes read opposite directions of the state, which follows the sign of
    # channel 1: the decision is that sign.
    direction = rng.standard_normal(HIDDEN).astype(np.float32)
    head = np.stack([direction, -direction], axis=1)
    nodes = [
        helper.make_node("Conv", ["x", "K"], ["c"], name="conv"),
        helper.make_node("Transpose", ["c"], ["seq"], perm=[2, 0, 1]),
    ]
    inits = [
        numpy_helper.from_array(kernel, "K"),
        numpy_helper.from_array(head, "head"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
    ]
    if inside_if:
        then_nodes, then_inits = _lstm_branch("t", weights)
        else_nodes, else_inits = _lstm_branch("e", weights)
        inits += then_inits + else_inits
        out = helper.make_tensor_value_info
        then = helper.make_graph(then_nodes, "then", [], [out("last_t", TensorProto.FLOAT, None)])
        other = helper.make_graph(else_nodes, "else", [], [out("last_e", TensorProto.FLOAT, None)])
        inits.append(numpy_helper.from_array(np.array(True), "cond"))
        nodes.append(helper.make_node("If", ["cond"], ["last"], then_branch=then,
                                      else_branch=other, name="branch"))  # fmt: skip
    else:
        lstm_nodes, lstm_inits = _lstm_branch("", weights)
        nodes += lstm_nodes
        inits += lstm_inits
        nodes.append(helper.make_node("Identity", ["last_"], ["last"]))
    nodes.append(helper.make_node("MatMul", ["last", "head"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, STEPS])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _detector_inputs(path: Path) -> Path:
    """A loud channel 0 (hundreds) beside the small channel 1 (+-0.01) that decides."""
    rng = np.random.default_rng(4)
    sign = np.where(np.arange(64) % 2 == 0, 1.0, -1.0)
    x = np.zeros((64, 2, STEPS), np.float32)
    x[:, 0] = rng.standard_normal((64, STEPS)) * 300.0
    x[:, 1] = 0.01 * sign[:, None] * (1 + 0.2 * rng.random((64, STEPS)))
    np.savez(path, x=x)
    return path


@pytest.mark.parametrize("inside_if", [False, True], ids=["plain", "lstm-inside-if"])
def test_quantizing_a_foreign_detectors_conv_flips_its_decisions_and_auto_avoids_it(
    tmp_path: Path, cli: CliRunner, inside_if: bool
) -> None:
    model = _detector(tmp_path / "detector.onnx", inside_if=inside_if)
    inputs = _detector_inputs(tmp_path / "inputs.npz")
    base = ("quantize", model, "--mode", "dynamic-int8", "--eval-inputs", inputs)
    everything = cli(*base, "--ops", "all", "--out", tmp_path / "all.onnx")
    assert everything.code == 1, everything
    assert "logits: argmax disagreement" in everything.err and "Conv" in everything.err
    assert not (tmp_path / "all.onnx").exists()
    chosen = cli(*base, "--json", "--out", tmp_path / "auto.onnx")
    assert chosen.code == 0, chosen
    payload = json.loads(chosen.out)
    assert "Conv" not in payload["op_selection"]["op_types"]
    assert "LSTM" in payload["op_selection"]["op_types"]
    assert any(n.startswith("Conv kept FP32: quantizing it broke fidelity") for n in
               payload["op_selection"]["left_float"])  # fmt: skip
    kernels = payload["audit"]["kernels"]
    assert kernels.get("DynamicQuantizeLSTM") == (2 if inside_if else 1)
