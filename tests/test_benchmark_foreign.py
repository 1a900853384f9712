"""``edgelstm benchmark`` on ONNX models edgelstm did not make: real inputs (``--inputs``),
or inputs made from the signature with ``--dim`` for the axes it cannot guess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CliRunner, assert_clean_failure

FAST = ("--no-isolate", "--warmup", "1", "--iterations", "3")


def _matmul_model(path: Path, input_shape: list[object], extra_int: bool = False) -> Path:
    """input [*, 4] @ W (+ an int64 scalar `sr` that the graph casts and adds when asked)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    nodes = [helper.make_node("MatMul", ["input", "W"], ["y0"])]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)]
    if extra_int:
        nodes += [
            helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["y0", "srf"], ["y"]),
        ]
        inputs.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y"]))
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weights],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_a_2d_model_is_timed_on_inputs_made_from_its_signature(
    tmp_path: Path, cli: CliRunner
) -> None:
    """Today's refusal ('benchmark needs a sequence input [batch, time, features]') is gone:
    a [seq_len, 4] input gets the row's length on its time-named axis, with a note."""
    model = _matmul_model(tmp_path / "frames.onnx", ["seq_len", 4])
    report = tmp_path / "r.json"
    result = cli("benchmark", model, *FAST, "--seq", "20", "--json", report)
    assert result.code == 0, result.err
    assert "synthetic inputs" in result.err and "input [20, 4]" in result.err
    rows = json.loads(report.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["p50_ms"] > 0


def test_an_axis_it_cannot_guess_needs_dim_and_says_so(tmp_path: Path, cli: CliRunner) -> None:
    model = _matmul_model(tmp_path / "rows.onnx", ["rows", 4])
    refused = cli("benchmark", model, *FAST)
    assert_clean_failure(refused, None, "`rows`", "--dim rows=SIZE", "--inputs")
    given = cli("benchmark", model, *FAST, "--dim", "rows=9")
    assert given.code == 0, given.err
    assert "input [9, 4]" in given.err
    bad = cli("benchmark", model, *FAST, "--dim", "rows")
    assert_clean_failure(bad, None, "--dim rows", "--dim seq_len=64")


def test_real_inputs_by_name_set_the_row_shape_and_reach_the_model(
    tmp_path: Path, cli: CliRunner
) -> None:
    model = _matmul_model(tmp_path / "vad.onnx", ["batch", 4], extra_int=True)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, input=np.ones((6, 4), np.float32), sr=np.array(16000, np.int64))
    report = tmp_path / "r.json"
    result = cli("benchmark", model, *FAST, "--inputs", inputs, "--json", report)
    assert result.code == 0, result.err
    rows = json.loads(report.read_text())["rows"]
    assert [(r["batch"], r["seq"]) for r in rows] == [(6, 4)]
    assert f"inputs from {inputs}" in result.err
    missing = tmp_path / "missing.npz"
    np.savez(missing, input=np.ones((6, 4), np.float32))
    refused = cli("benchmark", model, *FAST, "--inputs", missing)
    assert_clean_failure(refused, None, "missing input(s) sr", "sr: int64")
    streaming = cli("benchmark", model, *FAST, "--inputs", inputs, "--stream")
    assert_clean_failure(streaming, None, "--inputs", "--stream")


@pytest.mark.parametrize("text", ["seq=0", "=3", "seq=x"])
def test_bad_dim_values_are_refused(tmp_path: Path, cli: CliRunner, text: str) -> None:
    model = _matmul_model(tmp_path / "rows.onnx", ["rows", 4])
    assert_clean_failure(cli("benchmark", model, *FAST, "--dim", text), None, f"--dim {text}")


def test_edgelstm_sequence_models_keep_their_frames(tmp_path: Path) -> None:
    """The [batch, time, features] path still feeds the seeded frames PyTorch rows get."""
    from edgelstm.benchmarks.model_inputs import benchmark_feeds, sequence_frames
    from edgelstm.runtimes.ort.feeds import InputSpec

    specs = (
        InputSpec("x", np.float32, ("batch", "time", 3)),
        InputSpec("h", np.float32, (1, "batch", 5)),
    )
    feeds, notes, shape = benchmark_feeds(specs, batch=2, seq=7)
    np.testing.assert_array_equal(feeds["x"], sequence_frames(2, 7, 3))
    assert feeds["h"].shape == (1, 2, 5) and not feeds["h"].any()
    assert notes == [] and shape == (2, 7)


_MODULE = """
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def make():
    torch.manual_seed(0)
    return Tagger()
"""


@pytest.fixture(scope="module")
def user_module(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A GRU tagger of the user's own (FILE.py:FACTORY), its weights and its export."""
    from safetensors.torch import save_file

    from edgelstm.exporters import export
    from edgelstm.exporters.user_models import load_user_module

    folder = tmp_path_factory.mktemp("user-module")
    (folder / "tagger.py").write_text(_MODULE)
    reference = f"{folder / 'tagger.py'}:make"
    module = load_user_module(reference)
    weights = folder / "tagger.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(weights))
    onnx_path = folder / "tagger.onnx"
    export(module, onnx_path, input_shape=(1, 20, 4))
    return reference, weights, onnx_path


def test_torch_rows_for_a_user_module_sit_beside_its_export(
    user_module: tuple[str, Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    """`--torch` wanted a training folder; a FILE.py:FACTORY module with --weights now gets
    PyTorch eager FP32 and INT8 rows, fed the arrays the export's rows get."""
    reference, weights, onnx_path = user_module
    report = tmp_path / "r.json"
    result = cli("benchmark", onnx_path, "--torch", reference, "--weights", weights,
                 *FAST, "--seq", "20", "--json", report)  # fmt: skip
    assert result.code == 0, result.err
    rows = json.loads(report.read_text())["rows"]
    torch_rows = [r for r in rows if r["runtime"] == "torch"]
    assert sorted(r["precision"] for r in torch_rows) == ["fp32", "int8"]
    assert all((r["batch"], r["seq"]) == (1, 20) for r in rows)
    onnx_row = next(r for r in rows if r["runtime"] == "onnxruntime")
    assert onnx_row["vs_torch_fp32"] > 0  # the ratio to the module's own PyTorch row


def test_torch_module_refusals_name_the_fix(
    user_module: tuple[str, Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    reference, weights, onnx_path = user_module
    alone = cli("benchmark", "--torch", reference, "--weights", weights, *FAST)
    assert_clean_failure(alone, None, "give its export too")
    neither = cli("benchmark", onnx_path, "--torch", tmp_path / "nothing", *FAST)
    assert_clean_failure(neither, None, "checkpoint folder", "FILE.py:FACTORY")
    folder = tmp_path / "run"
    folder.mkdir()
    stray = cli("benchmark", onnx_path, "--torch", folder, "--weights", weights, *FAST)
    assert_clean_failure(stray, None, "--weights goes with --torch FILE.py:FACTORY")
