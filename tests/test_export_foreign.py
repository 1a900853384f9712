"""Export of modules edgelstm did not train (issue 27): any-rank and several inputs, real
examples, dynamic axes, probed shortest lengths, exporter failures in one line, and weights
that need a prefix stripped, a hook or the factory's own loader."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import CliResult, CliRunner, assert_clean_failure, single_thread

from edgelstm.errors import CheckFailedError

SOURCE = '''
import torch
from torch import nn


class ConvLSTM(nn.Module):
    """[B, 1, 8, W] images: a 3x3 conv (no padding) then an LSTM over the width."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.lstm = nn.LSTM(2 * 6, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        out, _ = self.lstm(y.permute(0, 3, 1, 2).reshape(b, w, c * h))
        return self.head(out[:, -1])


class FrontEnd(nn.Module):
    """[B, T, 3] through a kernel-5 conv without padding: shorter than 5 steps cannot run."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 5)
        self.gru = nn.GRU(4, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        out, _ = self.gru(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return self.head(out[:, -1])


class Masked(nn.Module):
    """Two inputs: frames [B, T, 3] and a mask [B, T]."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x, mask):
        out, _ = self.lstm(x)
        weights = mask.unsqueeze(-1)
        return self.head((out * weights).sum(1) / (weights.sum(1) + 1.0))


class Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.AdaptiveAvgPool2d((1, 4))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.pool(self.conv(x)).flatten(1))


class Frozen(nn.Module):
    """Reads a length as a Python int: the TorchScript graph freezes it into a Reshape."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)
        return out.reshape(out.shape[0], int(out.shape[1]) * 4)


class Renamed(nn.Module):
    """Weights saved under an older name (`old_head.`), renamed by a load pre-hook."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)
        self._register_load_state_dict_pre_hook(self._rename)

    @staticmethod
    def _rename(state, prefix, *args):
        for key in [k for k in state if k.startswith(prefix + "old_head.")]:
            state[key.replace("old_head.", "head.", 1)] = state.pop(key)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def conv_lstm():
    return ConvLSTM()


def front_end():
    return FrontEnd()


def masked():
    return Masked()


def pooled():
    return Pooled()


def frozen():
    return Frozen()


def renamed():
    return Renamed()


def with_loader():
    net = Masked()

    def load(state):
        net.load_state_dict({k.removeprefix("net/"): v for k, v in state.items()})

    return net, load
'''


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


@pytest.fixture
def nets(tmp_path: Path) -> tuple[Path, ModuleType]:
    """``nets.py`` on disk and the same file imported."""
    path = tmp_path / "nets.py"
    path.write_text(SOURCE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("nets_for_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def _weights(tmp_path: Path, net: torch.nn.Module, rename: Any = None, name: str = "w") -> Path:
    from safetensors.torch import save_file

    state = {(rename(k) if rename else k): v.contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    return path


def _built(nets: tuple[Path, ModuleType], factory: str, seed: int = 7) -> torch.nn.Module:
    torch.manual_seed(seed)
    built = getattr(nets[1], factory)()
    net: torch.nn.Module = built[0] if isinstance(built, tuple) else built
    return net.eval()


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def _export(cli: CliRunner, source: Path, factory: str, weights: Path, *args: Any) -> CliResult:
    return cli("export", "--model", f"{source}:{factory}", "--weights", weights, *args)


def _checks(result: CliResult) -> list[str]:
    return [row["check"] for row in json.loads(result.out)["validation"]["rows"]]


# --------------------------------------------------------------------------------------------
# (3) inputs: any rank, several inputs, real examples, dynamic axes, probed shortest length


def test_image_input_exports_with_a_dynamic_width(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    net = _built(nets, "conv_lstm")
    out = tmp_path / "img.onnx"
    args = ["--input-shape", "1,1,8,12", "--dynamic-axes", "x=0,3", "--out", out, "--json"]
    result = _export(cli, nets[0], "conv_lstm", _weights(tmp_path, net), *args)
    assert result.code == 0, result.err
    assert _dims(onnx.load(str(out)).graph.input[0]) == ["batch", 1, 8, "time"]
    checks = _checks(result)
    # The 3x3 conv needs 3 columns: the shortest check is probed, not time 1.
    assert "batch 1, time 3" in checks and not any(c.endswith("time 1") for c in checks)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 29)).astype(np.float32)
    (got,) = _run_onnx(out, {"x": x})
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_python_api_takes_a_four_dimensional_input_shape(
    tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    from edgelstm.exporters import export

    out = tmp_path / "img.onnx"
    result = export(_built(nets, "conv_lstm"), out, input_shape=(1, 1, 8, 12))
    assert result.report.passed, result.report.summary()
    assert _dims(onnx.load(str(out)).graph.input[0]) == ["batch", 1, 8, 12]


def test_shortest_time_is_probed_for_a_conv_front_end(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    net = _built(nets, "front_end")
    out = tmp_path / "fe.onnx"
    args = ["--input-shape", "2,12,3", "--out", out, "--json"]
    result = _export(cli, nets[0], "front_end", _weights(tmp_path, net), *args)
    assert result.code == 0, result.err
    checks = _checks(result)
    assert checks[:2] == ["batch 1, time 5", "batch 3, time 5"]
    assert _dims(onnx.load(str(out)).graph.input[0]) == ["batch", "time", 3]


@pytest.mark.parametrize("how", ["shapes", "example-by-name", "example-positional"])
def test_two_input_module_exports(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType], how: str
) -> None:
    net = _built(nets, "masked")
    out = tmp_path / "two.onnx"
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 10, 3)).astype(np.float32)
    mask = (rng.random((2, 10)) > 0.3).astype(np.float32)
    if how == "shapes":
        given: list[Any] = ["--input-shape", "2,10,3", "--input-shape", "2,10"]
    else:
        example = tmp_path / "inputs.npz"
        if how == "example-by-name":
            np.savez(example, mask=mask, x=x.astype(np.float64))  # float64 is made float32
        else:
            np.savez(example, x, mask)
        given = ["--example", example]
    axes = ["--dynamic-axes", "x=0,1", "--dynamic-axes", "mask=0:batch,1:time"]
    result = _export(cli, nets[0], "masked", _weights(tmp_path, net), *given, *axes, "--out", out)
    assert result.code == 0, result.err
    proto = onnx.load(str(out))
    assert [(i.name, _dims(i)) for i in proto.graph.input] == [
        ("x", ["batch", "time", 3]),
        ("mask", ["batch", "time"]),
    ]
    long_x = np.tile(x, (1, 7, 1))
    long_mask = np.tile(mask, (1, 7))
    (got,) = _run_onnx(out, {"x": long_x, "mask": long_mask})
    with torch.no_grad():
        want = net(torch.from_numpy(long_x), torch.from_numpy(long_mask)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_validate_shapes_replace_the_derived_checks(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    net = _built(nets, "conv_lstm")
    out = tmp_path / "img.onnx"
    args = ["--input-shape", "1,1,8,12", "--dynamic-axes", "x=0,3", "--out", out, "--json"]
    checks = ["--validate-shapes", "batch=2,time=40", "--validate-shapes", "1,1,8,5"]
    result = _export(cli, nets[0], "conv_lstm", _weights(tmp_path, net), *args, *checks)
    assert result.code == 0, result.err
    assert _checks(result) == ["batch 2, time 40", "batch 1, time 5"]


BAD_INPUTS = {
    "axis-out-of-range": (["--input-shape", "1,1,8,12", "--dynamic-axes", "x=0,4"], "4 axes"),
    "unknown-input": (["--input-shape", "1,1,8,12", "--dynamic-axes", "y=0"], "no input"),
    "unknown-label": (
        ["--input-shape", "1,1,8,12", "--dynamic-axes", "x=0,3", "--validate-shapes", "w=3"],
        "time",
    ),
    "static-size-changed": (
        ["--input-shape", "1,1,8,12", "--validate-shapes", "1,1,9,12"],
        "static sizes",
    ),
    "model-fails-at-validation": (
        ["--input-shape", "1,1,8,12", "--dynamic-axes", "x=0,3", "--validate-shapes", "time=2"],
        "--validate-shapes",
    ),
    "both-shape-and-example": (["--input-shape", "1,1,8,12", "--example", "e.npz"], "not both"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_descriptions_are_one_line_usage_errors(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType], case: str
) -> None:
    args, fragment = BAD_INPUTS[case]
    out = tmp_path / "img.onnx"
    weights = _weights(tmp_path, _built(nets, "conv_lstm"))
    result = _export(cli, nets[0], "conv_lstm", weights, *args, "--out", out)
    assert_clean_failure(result, out, fragment)


def test_several_inputs_need_several_shapes(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    out = tmp_path / "two.onnx"
    weights = _weights(tmp_path, _built(nets, "masked"))
    result = _export(cli, nets[0], "masked", weights, "--input-shape", "2,10,3", "--out", out)
    assert_clean_failure(result, out, "x, mask", "--input-shape")


# --------------------------------------------------------------------------------------------
# (3) exporter failures: one line naming the operator; the dumps only under --debug


def test_unsupported_operator_is_one_line_without_an_ir_dump(
    tmp_path: Path, nets: tuple[Path, ModuleType], capfd: pytest.CaptureFixture[str]
) -> None:
    from edgelstm.cli import main

    out = tmp_path / "pool.onnx"
    weights = _weights(tmp_path, _built(nets, "pooled"))
    argv = ["export", "--model", f"{nets[0]}:pooled", "--weights", str(weights)]
    argv += ["--input-shape", "1,1,8,12", "--dynamic-axes", "x=0,3", "--exporter", "torchscript"]
    capfd.readouterr()
    code = main([*argv, "--out", str(out)])
    # File-descriptor capture: the TorchScript exporter's C++ side prints below sys.stdout.
    printed = capfd.readouterr()
    result = CliResult(code, printed.out, printed.err)
    assert_clean_failure(result, out, "adaptive_avg_pool2d", "--exporter dynamo", code=1)
    assert "Torch IR" not in printed.out + printed.err
    with pytest.raises(CheckFailedError) as raised:
        main(["--debug", *argv, "--out", str(out)])
    assert any("Torch IR graph" in note for note in raised.value.__notes__)


def test_debug_shows_onnx_runtimes_whole_message(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    from edgelstm.cli import main

    out = tmp_path / "frozen.onnx"
    weights = _weights(tmp_path, _built(nets, "frozen"))
    argv = ["export", "--model", f"{nets[0]}:frozen", "--weights", str(weights)]
    argv += ["--input-shape", "2,6,3", "--exporter", "torchscript", "--out", str(out)]
    result = cli(*argv)
    assert_clean_failure(result, out, "run failed", "Reshape", code=1)
    with pytest.raises(CheckFailedError) as raised:
        main(["--debug", *argv])
    notes = "\n".join(raised.value.__notes__)
    # The one-line error keeps 200 characters of ONNX Runtime's message; --debug has it all.
    whole = next(line for line in notes.splitlines() if "ONNXRuntimeError" in line)
    assert len(whole.split(": ", 1)[1]) > 200, whole
    assert whole.split(": ", 1)[1] not in result.err


# --------------------------------------------------------------------------------------------
# (4) weights


def test_dataparallel_prefix_is_stripped_with_a_note(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    net = _built(nets, "front_end")
    weights = _weights(tmp_path, net, rename=lambda k: f"module.{k}")
    out = tmp_path / "dp.onnx"
    result = _export(cli, nets[0], "front_end", weights, "--input-shape", "2,12,3", "--out", out)
    assert result.code == 0, result.err
    assert result.err_lines == [result.err_lines[0]] and "note:" in result.err_lines[0]
    assert "module." in result.err_lines[0]
    x = np.random.default_rng(1).standard_normal((1, 9, 3)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            _run_onnx(out, {"x": x})[0], net(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=0
        )


def test_a_load_pre_hook_renames_keys(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    net = _built(nets, "renamed")
    weights = _weights(tmp_path, net, rename=lambda k: k.replace("head.", "old_head.", 1))
    out = tmp_path / "hook.onnx"
    result = _export(cli, nets[0], "renamed", weights, "--input-shape", "2,12,3", "--out", out)
    assert result.code == 0, result.err
    x = np.random.default_rng(2).standard_normal((1, 9, 3)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            _run_onnx(out, {"x": x})[0], net(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=0
        )


def test_the_factorys_own_loader_is_used(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    net = _built(nets, "with_loader")
    weights = _weights(tmp_path, net, rename=lambda k: f"net/{k}")
    out = tmp_path / "loader.onnx"
    shapes = ["--input-shape", "2,10,3", "--input-shape", "2,10"]
    result = _export(cli, nets[0], "with_loader", weights, *shapes, "--out", out)
    assert result.code == 0, result.err
    # Without --dynamic-axes only the batch of several inputs varies, and a note says so.
    assert "--dynamic-axes x=0,2" in result.err
    x = np.ones((3, 10, 3), np.float32)
    mask = np.ones((3, 10), np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(_run_onnx(out, {"x": x, "mask": mask})[0], want, atol=1e-4)


def test_mismatched_keys_hint_at_the_fixes(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    weights = _weights(tmp_path, _built(nets, "front_end"), rename=lambda k: f"enc.{k}")
    out = tmp_path / "m.onnx"
    result = _export(cli, nets[0], "front_end", weights, "--input-shape", "2,12,3", "--out", out)
    assert_clean_failure(result, out, "does not fit", "pre-hook", "enc.conv.weight")


def test_npz_weights_error_says_how_to_convert(
    cli: CliRunner, tmp_path: Path, nets: tuple[Path, ModuleType]
) -> None:
    weights = tmp_path / "w.npz"
    np.savez(weights, **{"conv.weight": np.zeros((4, 3, 5), np.float32)})
    out = tmp_path / "m.onnx"
    result = _export(cli, nets[0], "front_end", weights, "--input-shape", "2,12,3", "--out", out)
    assert_clean_failure(result, out, "convert", "save_file", "w.safetensors")
    command = result.err_lines[0].split("convert it once: ", 1)[1]
    assert command.startswith("python -c")
    if sys.platform != "win32":  # the printed command works as printed
        import shlex
        import subprocess

        subprocess.run(shlex.split(command), check=True, cwd=tmp_path)
        from safetensors.numpy import load_file

        assert load_file(str(tmp_path / "w.safetensors"))["conv.weight"].shape == (4, 3, 5)
