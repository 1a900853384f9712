"""Quantization reaches recurrent nodes inside If/Loop/Scan bodies (or refuses, exit 1), the
audit counts them by path, and static-int8 calibrates foreign models on their own input names.

The models are built by hand with ``onnx.helper``: a conv front end and an LSTM at the top, the
same LSTM inside both branches of an ``If``, and an LSTM with explicit ``h``/``c`` state inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import CliRunner, single_thread
from onnx import TensorProto, helper, numpy_helper

from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.exporters.audit import all_nodes, audit_ops, subgraph_ops
from edgelstm.exporters.calibration import split_samples
from edgelstm.exporters.quantize import quantize
from edgelstm.runtimes.ort.feeds import InputSpec

FEATURES, HIDDEN, STEPS = 4, 8, 6


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _tensor(name: str, shape: tuple[int, ...], seed: int, scale: float = 0.4) -> Any:
    values = np.random.default_rng(seed).standard_normal(shape) * scale
    return numpy_helper.from_array(values.astype(np.float32), name)


def _lstm_weights() -> list[Any]:
    return [
        _tensor("W", (1, 4 * HIDDEN, FEATURES), 1),
        _tensor("R", (1, 4 * HIDDEN, HIDDEN), 2),
        _tensor("B", (1, 8 * HIDDEN), 3, 0.1),
    ]


def _branch(name: str, lstm: str, weight: str = "W") -> Any:
    """A branch whose LSTM reads the sequence and the weights of the enclosing graph."""
    node = helper.make_node(
        "LSTM", ["seq", weight, "R", "B"], ["", f"h_{name}"], hidden_size=HIDDEN, name=lstm
    )
    out = helper.make_tensor_value_info(f"h_{name}", TensorProto.FLOAT, [1, 1, HIDDEN])
    return helper.make_graph([node], name, [], [out])


def _if_model(path: Path, *, conv: bool = True, weight_input: bool = False) -> Path:
    """x [1, features, time] -> Conv (``conv``) -> [time, 1, features] -> If(cond) with an
    LSTM in each branch. ``weight_input``: the then-branch LSTM reads W from a model input, a
    weight no quantizer can make integer."""
    front = [helper.make_node("Conv", ["x", "K"], ["conv"], pads=[1, 1], name="conv")]
    if not conv:
        front = [helper.make_node("Identity", ["x"], ["conv"], name="no_conv")]
    seq = helper.make_node("Transpose", ["conv"], ["seq"], perm=[2, 0, 1], name="to_time_major")
    branch = helper.make_node(
        "If",
        ["cond"],
        ["y"],
        then_branch=_branch("then", "lstm", "W_in" if weight_input else "W"),
        else_branch=_branch("else", "lstm_else"),
        name="branch",
    )
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FEATURES, STEPS]),
        helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
    ]
    if weight_input:
        inputs.append(
            helper.make_tensor_value_info("W_in", TensorProto.FLOAT, [1, 4 * HIDDEN, FEATURES])
        )
    graph = helper.make_graph(
        [*front, seq, branch],
        "conv_if_lstm",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, HIDDEN])],
        initializer=[_tensor("K", (FEATURES, FEATURES, 3), 4), *_lstm_weights()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _stateful_lstm(path: Path) -> Path:
    """An LSTM with explicit state, as foreign models export it: inputs ``input`` [batch,
    time, features], ``h`` and ``c`` [1, batch, hidden]; a MatMul head on the last h."""
    nodes = [
        helper.make_node("Transpose", ["input"], ["seq"], perm=[1, 0, 2]),
        helper.make_node(
            "LSTM",
            ["seq", "W", "R", "B", "", "h", "c"],
            ["", "h_out", "c_out"],
            hidden_size=HIDDEN,
            name="lstm",
        ),
        helper.make_node("MatMul", ["h_out", "head"], ["y"], name="head"),
    ]
    state: list[int | str | None] = [1, "batch", HIDDEN]
    graph = helper.make_graph(
        nodes,
        "stateful",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", STEPS, FEATURES]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, state),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "batch", 2]),
            helper.make_tensor_value_info("c_out", TensorProto.FLOAT, state),
        ],
        initializer=[*_lstm_weights(), _tensor("head", (HIDDEN, 2), 5)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _branch_ops(path: Path) -> dict[str, list[str]]:
    (branch,) = [n for n in onnx.load(str(path)).graph.node if n.op_type == "If"]
    return {a.name: [n.op_type for n in a.g.node] for a in branch.attribute}


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


# --------------------------------------------------------------------------------------------
# the audit walks subgraphs


def test_audit_counts_lstms_inside_if_branches_by_path(tmp_path: Path) -> None:
    model = onnx.load(str(_if_model(tmp_path / "if.onnx")))
    counts = {o.op: (o.before, o.quantized, o.still_float) for o in audit_ops(model, model, "x")}
    # The old audit read model.graph.node only: {"Conv": (1, 0, 1)}, no LSTM at all.
    assert counts == {"Conv": (1, 0, 1), "LSTM": (2, 0, 2)}
    paths = {(o.path, o.still_float) for o in subgraph_ops(model, model, "dynamic-int8")}
    assert paths == {
        ("If 'branch'/then_branch/LSTM 'lstm'", True),
        ("If 'branch'/else_branch/LSTM 'lstm_else'", True),
    }
    assert {n.op_type for n in all_nodes(model)} == {"Conv", "Transpose", "If", "LSTM"}


# --------------------------------------------------------------------------------------------
# dynamic INT8 inside subgraphs


@pytest.mark.parametrize(
    "conv",
    [
        pytest.param(False, id="lstm-only-in-branches"),
        pytest.param(True, id="conv-then-branches"),
    ],
)
def test_dynamic_int8_quantizes_the_lstms_inside_if_branches(tmp_path: Path, conv: bool) -> None:
    src = _if_model(tmp_path / "if.onnx", conv=conv)
    out = tmp_path / "if.int8.onnx"
    result = quantize(src, out, mode="dynamic-int8", ops="all")
    lstm = next(o for o in result.audit.ops if o.op == "LSTM")
    assert (lstm.before, lstm.quantized, lstm.still_float) == (2, 2, 0)
    # The weights live in the enclosing graph, where ONNX Runtime's LSTM quantizer cannot
    # reach them: both branches got their own (integer) copy.
    assert _branch_ops(out) == {
        "then_branch": ["DynamicQuantizeLSTM"],
        "else_branch": ["DynamicQuantizeLSTM"],
    }
    audited = subgraph_ops(onnx.load(str(src)), onnx.load(str(out)), "dynamic-int8")
    assert {(o.path, o.still_float) for o in audited} == {
        ("If 'branch'/then_branch/LSTM 'lstm'", False),
        ("If 'branch'/else_branch/LSTM 'lstm_else'", False),
    }
    x = np.random.default_rng(0).standard_normal((1, FEATURES, STEPS)).astype(np.float32)
    for cond in (True, False):
        feeds = {"x": x, "cond": np.array(cond)}
        np.testing.assert_allclose(_run(out, feeds), _run(src, feeds), atol=0.15)


def test_an_lstm_left_float_inside_a_branch_is_refused(tmp_path: Path, cli: CliRunner) -> None:
    src = _if_model(tmp_path / "if.onnx", conv=False, weight_input=True)
    out = tmp_path / "if.int8.onnx"
    with pytest.raises(CheckFailedError, match=r"1 of 2 LSTM.*--allow-partial") as info:
        quantize(src, out, mode="dynamic-int8", ops="all")
    assert info.value.exit_code == 1
    result = cli("quantize", src, "--mode", "dynamic-int8", "--out", out)
    assert result.code == 1, result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    assert "LSTM" in result.err and "Traceback" not in result.err
    assert not out.exists()


def test_allow_partial_keeps_the_branch_lstm_float_and_audits_it(tmp_path: Path) -> None:
    src = _if_model(tmp_path / "if.onnx", conv=False, weight_input=True)
    out = tmp_path / "if.int8.onnx"
    result = quantize(src, out, mode="dynamic-int8", ops="all", allow_partial=True)
    lstm = next(o for o in result.audit.ops if o.op == "LSTM")
    assert (lstm.before, lstm.quantized, lstm.still_float) == (2, 1, 1)
    assert _branch_ops(out) == {
        "then_branch": ["LSTM"],
        "else_branch": ["DynamicQuantizeLSTM"],
    }
    audited = subgraph_ops(onnx.load(str(src)), onnx.load(str(out)), "dynamic-int8")
    assert [o.path for o in audited if o.still_float] == ["If 'branch'/then_branch/LSTM 'lstm'"]


def test_computed_weights_inside_a_branch_are_folded_then_quantized(tmp_path: Path) -> None:
    model = onnx.load(str(_if_model(tmp_path / "plain.onnx", conv=False)))
    (branch,) = [n for n in model.graph.node if n.op_type == "If"]
    then = next(a.g for a in branch.attribute if a.name == "then_branch")
    # As exporters write it: the branch reshapes a stored weight before the LSTM reads it.
    then.node.insert(0, helper.make_node("Unsqueeze", ["W_2d", "axis0"], ["W_3d"]))
    then.node[1].input[1] = "W_3d"
    model.graph.initializer.extend(
        [
            _tensor("W_2d", (4 * HIDDEN, FEATURES), 6),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ]
    )
    src = tmp_path / "computed.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "computed.int8.onnx"
    quantize(src, out, mode="dynamic-int8", ops="all")
    assert _branch_ops(out)["then_branch"] == ["DynamicQuantizeLSTM"]


# --------------------------------------------------------------------------------------------
# static INT8 calibrates on the model's own input names


def _calibration(path: Path, **arrays: np.ndarray) -> Path:
    samples = 5
    rng = np.random.default_rng(7)
    default = {
        "input": rng.standard_normal((samples, STEPS, FEATURES)).astype(np.float32),
        # h [1, batch, hidden] starts with an axis of 1: h[i : i + 1] is one sample's state.
        "h": 0.1 * rng.standard_normal((samples, 1, HIDDEN)).astype(np.float32),
        "c": np.zeros((samples, 1, HIDDEN), np.float32),
    }
    np.savez(path, **(arrays or default))  # type: ignore[arg-type]
    return path


def test_static_int8_calibrates_on_input_h_and_c(tmp_path: Path) -> None:
    src = _stateful_lstm(tmp_path / "vad.onnx")
    calibration = _calibration(tmp_path / "calib.npz")
    out = tmp_path / "vad.qdq.onnx"
    # The fidelity check's own synthetic state would not match the batch: give it inputs.
    result = quantize(
        src, out, mode="static-int8", calibration=calibration, eval_inputs=calibration
    )
    assert any(f"5 samples from {calibration}" in note for note in result.audit.notes)
    assert "DequantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}
    rng = np.random.default_rng(1)
    feeds = {
        "input": rng.standard_normal((1, STEPS, FEATURES)).astype(np.float32),
        "h": np.zeros((1, 1, HIDDEN), np.float32),
        "c": np.zeros((1, 1, HIDDEN), np.float32),
    }
    np.testing.assert_allclose(_run(out, feeds), _run(src, feeds), atol=0.15)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        pytest.param(
            {"X": np.zeros((3, STEPS, FEATURES), np.float32)},
            r"input: float32 \[batch, 6, 4\]; h: .*; c: .*; the file holds X$",
            id="X-for-three-inputs",
        ),
        pytest.param(
            {"input": np.zeros((3, STEPS, FEATURES), np.float32)},
            r"the file holds input$",
            id="state-missing",
        ),
        pytest.param(
            {
                "input": np.zeros((3, STEPS, FEATURES), np.float32),
                "h": np.zeros((3, 1, 1, HIDDEN + 1), np.float32),
                "c": np.zeros((3, 1, 1, HIDDEN), np.float32),
            },
            r"needs an array h .* h: float32 \[1, batch, 8\]",
            id="wrong-hidden-size",
        ),
    ],
)
def test_a_calibration_file_that_does_not_fit_is_one_error(
    tmp_path: Path, arrays: dict[str, np.ndarray], match: str
) -> None:
    src = _stateful_lstm(tmp_path / "vad.onnx")
    calibration = _calibration(tmp_path / "calib.npz", **arrays)
    out = tmp_path / "vad.qdq.onnx"
    with pytest.raises(InvalidInputError, match=match):
        quantize(src, out, mode="static-int8", calibration=calibration)
    assert not out.exists()


def test_a_calibration_mismatch_on_the_cli_is_one_error_line(
    tmp_path: Path, cli: CliRunner
) -> None:
    src = _stateful_lstm(tmp_path / "vad.onnx")
    calibration = _calibration(tmp_path / "calib.npz", x=np.zeros((3, STEPS, FEATURES), np.float32))
    out = tmp_path / "vad.qdq.onnx"
    result = cli(
        "quantize", src, "--mode", "static-int8", "--calibration", calibration, "--out", out
    )
    # Before: "ValueError: Required inputs (['input', 'h', 'c']) are missing from input
    # feed (['x'])", a traceback and exit 1.
    assert result.code == 2, result
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith("error: ")
    for name in ("input", "h", "c", "the file holds x"):
        assert name in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_state_samples_with_one_axis_more_are_fed_one_by_one() -> None:
    h = InputSpec("h", np.float32, (2, "batch", HIDDEN))  # [layers, batch, hidden]
    stacked = np.arange(3 * 2 * HIDDEN, dtype=np.float64).reshape(3, 2, 1, HIDDEN)
    feeds = split_samples({"h": stacked}, (h,), source="--calibration s.npz")
    assert [f["h"].shape for f in feeds] == [(2, 1, HIDDEN)] * 3
    assert feeds[1]["h"].dtype == np.float32 and feeds[1]["h"][0, 0, 0] == 2 * HIDDEN
    # Axis 0 of h is the layers, not a batch: an array of h's own rank cannot be cut into
    # samples on it.
    with pytest.raises(InvalidInputError, match=r"needs an array h .*\[2, batch, 8\]"):
        split_samples({"h": np.zeros((3, 2, HIDDEN))}, (h,), source="--calibration s.npz")
