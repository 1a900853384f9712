"""INT8 ``reduce_range`` is chosen for the target CPU, recorded, and checked where the model runs.

The machines here alternate between AVX2-only and AVX-512 VNNI CPUs, so every test that
depends on the CPU fakes it: ``edgelstm.hardware.cpu_info`` is replaced by a stand-in.
Models are a hand-built LSTM graph (no torch), quantized through the real ONNX Runtime
quantizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgelstm import hardware
from edgelstm.exporters.fidelity import FidelityThresholds
from edgelstm.exporters.quantize import quantize, resolve_reduce_range
from edgelstm.hardware import CpuInfo
from edgelstm.metadata import REDUCE_RANGE_KEY, verify_weights_sha256
from edgelstm.runtimes.ort.artifact import ModelProfile, model_profile
from edgelstm.runtimes.ort.session import open_session, reduce_range_warning
from edgelstm.runtimes.ort.session_config import SessionConfig

FEATURES, HIDDEN = 4, 8
LOOSE = FidelityThresholds(max_disagreement=1.0, max_relative_error=1e9)
LOOSE_FLAGS = ("--max-disagreement", "1", "--max-relative-error", "1e9")

AVX2 = CpuInfo("Fake EPYC (AVX2)", "x86_64", 2, flags_known=True, avx2=True)
VNNI = CpuInfo("Fake EPYC (VNNI)", "x86_64", 2, flags_known=True, avx2=True, avx512_vnni=True)
ARM = CpuInfo("Fake Neoverse", "aarch64", 2, flags_known=True, neon=True, asimddp=True)
UNKNOWN = CpuInfo("mystery", "x86_64", 2)


def _fake_cpu(monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo) -> None:
    monkeypatch.setattr(hardware, "cpu_info", lambda: cpu)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x [batch, time, 4] -> LSTM (hidden 8, initializer weights) -> h [1, batch, 8]."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
            helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "h"], hidden_size=HIDDEN),
        ],
        "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", FEATURES])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "batch", HIDDEN])],
        initializer=[
            weight("W", 1, 4 * HIDDEN, FEATURES),
            weight("R", 1, 4 * HIDDEN, HIDDEN),
            weight("B", 1, 8 * HIDDEN),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path_factory.mktemp("models") / "lstm.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def int8_on(fp32: Path) -> Path:
    out = fp32.with_name("lstm.on.onnx")
    quantize(fp32, out, mode="dynamic-int8")  # the default
    return out


@pytest.fixture(scope="module")
def int8_off(fp32: Path) -> Path:
    out = fp32.with_name("lstm.off.onnx")
    # Fidelity bounds open: 8-bit weights saturate on CPUs without VNNI (the machines here
    # alternate), and this fixture is about what is recorded, not how well it runs here.
    quantize(fp32, out, mode="dynamic-int8", reduce_range="off", fidelity=LOOSE)
    return out


@pytest.fixture(scope="module")
def inputs(fp32: Path) -> Path:
    path = fp32.with_name("x.npz")
    np.savez(path, x=np.random.default_rng(1).normal(size=(2, 5, FEATURES)).astype(np.float32))
    return path


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _int8_weight_peak(path: Path) -> int:
    """Largest |value| of the LSTM's int8 weights: <= 64 when 7-bit, up to 127 when 8-bit."""
    model = onnx.load(str(path))
    (node,) = [n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = [inits[name] for name in node.input[1:3]]
    assert all(w.dtype == np.int8 for w in weights)
    return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)


# --------------------------------------------------------------------------------------------
# the choice and its record


def test_default_is_reduce_range_on_and_recorded(int8_on: Path) -> None:
    assert _props(int8_on)[REDUCE_RANGE_KEY] == "true"
    assert model_profile(int8_on).reduce_range is True
    assert _int8_weight_peak(int8_on) <= 64  # really 7-bit, not only labelled so
    assert verify_weights_sha256(int8_on)  # the extra metadata leaves the checksum intact


def test_off_is_recorded_and_keeps_8_bits(int8_off: Path) -> None:
    assert _props(int8_off)[REDUCE_RANGE_KEY] == "false"
    assert model_profile(int8_off).reduce_range is False
    assert _int8_weight_peak(int8_off) > 64
    assert verify_weights_sha256(int8_off)


def test_default_does_not_depend_on_the_quantizing_cpu(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cpu(monkeypatch, VNNI)  # the old default turned reduce_range off here
    result = quantize(fp32, tmp_path / "m.onnx", mode="dynamic-int8")
    assert result.reduce_range is True
    assert _props(result.out)[REDUCE_RANGE_KEY] == "true"
    assert any("reduce_range on" in n for n in result.audit.notes)


@pytest.mark.parametrize(
    ("cpu", "expected"), [(AVX2, True), (VNNI, False), (ARM, False), (UNKNOWN, True)]
)
def test_auto_decides_from_this_cpu(cpu: CpuInfo, expected: bool) -> None:
    reduced, note = resolve_reduce_range("auto", cpu)
    assert reduced is expected
    assert cpu.model in note and "auto" in note


def test_bools_mean_on_and_off_and_other_words_are_refused() -> None:
    from edgelstm.errors import InvalidInputError

    assert resolve_reduce_range(True)[0] is True
    assert resolve_reduce_range(False)[0] is False
    with pytest.raises(InvalidInputError, match="on, off, auto"):
        resolve_reduce_range("maybe")


def test_static_int8_records_it_and_fp16_does_not(fp32: Path, tmp_path: Path) -> None:
    calibration = tmp_path / "cal.npz"
    np.savez(calibration, X=np.random.default_rng(2).normal(size=(4, 5, FEATURES)))
    static = quantize(
        fp32, tmp_path / "s.onnx", mode="static-int8", calibration=calibration, reduce_range="off"
    )
    assert static.reduce_range is False
    assert _props(static.out)[REDUCE_RANGE_KEY] == "false"
    half = quantize(fp32, tmp_path / "h.onnx", mode="fp16")
    assert half.reduce_range is None
    assert REDUCE_RANGE_KEY not in _props(half.out)


def test_cli_quantize_takes_the_target_choice(
    cli: CliRunner, fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["quantize", fp32, "--mode", "dynamic-int8"]
    result = cli(
        *argv, *LOOSE_FLAGS, "--out", tmp_path / "off.onnx", "--reduce-range", "off", "--json"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["reduce_range"] is False
    assert _props(tmp_path / "off.onnx")[REDUCE_RANGE_KEY] == "false"
    _fake_cpu(monkeypatch, AVX2)
    result = cli(*argv, "--out", tmp_path / "auto.onnx", "--reduce-range", "auto")
    assert result.code == 0, result.err
    assert "chosen by --reduce-range auto" in " ".join(result.out.split())  # lines wrap
    assert _props(tmp_path / "auto.onnx")[REDUCE_RANGE_KEY] == "true"
    result = cli(*argv, "--out", tmp_path / "default.onnx")
    assert result.code == 0, result.err
    assert _props(tmp_path / "default.onnx")[REDUCE_RANGE_KEY] == "true"
    bad = cli(*argv, "--out", tmp_path / "bad.onnx", "--reduce-range", "maybe")
    assert bad.code == 2 and not (tmp_path / "bad.onnx").exists()


def test_a_fidelity_failure_with_8_bit_weights_on_a_cpu_without_vnni_says_why(
    fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drift measured here may be this CPU's saturation, not the model's: the refusal says so."""
    import edgelstm.exporters.quantize as qmod
    from edgelstm.errors import CheckFailedError

    def drifts(*args: object, **kwargs: object) -> None:
        raise CheckFailedError("every quantized candidate drifts from the FP32 model (h: ...)")

    monkeypatch.setattr(qmod, "choose_op_types", drifts)
    _fake_cpu(monkeypatch, AVX2)
    with pytest.raises(CheckFailedError, match=r"This CPU has no VNNI.*--reduce-range on"):
        quantize(fp32, tmp_path / "off.onnx", mode="dynamic-int8", reduce_range="off")
    _fake_cpu(monkeypatch, VNNI)
    with pytest.raises(CheckFailedError) as plain:
        quantize(fp32, tmp_path / "off.onnx", mode="dynamic-int8", reduce_range="off")
    assert "VNNI" not in str(plain.value)


# --------------------------------------------------------------------------------------------
# the warning where the model runs


@pytest.mark.parametrize(
    ("model", "cpu", "warned"),
    [
        ("int8_off", AVX2, True),
        ("int8_off", VNNI, False),
        ("int8_off", ARM, False),
        ("int8_off", UNKNOWN, False),
        ("int8_on", AVX2, False),
        ("fp32", AVX2, False),
    ],
)
def test_open_session_warns_only_when_this_cpu_needs_reduce_range(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    cpu: CpuInfo,
    warned: bool,
) -> None:
    path: Path = request.getfixturevalue(model)
    _fake_cpu(monkeypatch, cpu)
    opened = open_session(path, SessionConfig())
    assert bool(opened.warnings) is warned, opened.warnings
    assert opened.to_json()["warnings"] == list(opened.warnings)
    if warned:
        assert "--reduce-range on" in opened.warnings[0]
        assert cpu.model in opened.warnings[0]


def test_accelerators_running_every_node_get_no_warning() -> None:
    profile = ModelProfile("int8", frozenset({"QLinearMatMul"}), False, reduce_range=False)
    path = Path("m.onnx")
    assert reduce_range_warning(path, profile, provider="tensorrt", cpu=AVX2) is None
    assert reduce_range_warning(path, profile, provider="cpu", cpu=AVX2) is not None
    lstm = ModelProfile("int8", frozenset({"DynamicQuantizeLSTM"}), False, reduce_range=False)
    # DynamicQuantizeLSTM has only a CPU kernel: it runs on the host in a CUDA session too.
    assert reduce_range_warning(path, lstm, provider="cuda", cpu=AVX2) is not None


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


def test_cli_run_warns_on_stderr_only(
    cli: CliRunner,
    int8_off: Path,
    int8_on: Path,
    inputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_cpu(monkeypatch, AVX2)
    argv = ["run", int8_off, "--input", inputs, "--output", tmp_path / "y.npz"]
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    (line,) = _warnings(result.err)
    assert "without VNNI" in line and "--reduce-range on" in line
    document = json.loads(result.out)  # stdout stays one JSON document
    assert document["session"]["warnings"]
    quiet = cli("run", int8_on, "--input", inputs, "--output", tmp_path / "z.npz")
    assert quiet.code == 0, quiet.err
    assert _warnings(quiet.err) == []
    _fake_cpu(monkeypatch, VNNI)
    vnni = cli(*argv, "--overwrite")
    assert vnni.code == 0, vnni.err
    assert _warnings(vnni.err) == []


def test_benchmark_warns_when_this_cpu_needs_reduce_range(
    cli: CliRunner, int8_off: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["benchmark", int8_off, "--seq", "3", "--warmup", "0", "--iterations", "2"]
    argv += ["--rounds", "1", "--no-isolate"]
    _fake_cpu(monkeypatch, AVX2)
    result = cli(*argv)
    assert result.code == 0, result.err
    (line,) = _warnings(result.err)
    assert int8_off.name in line and "--reduce-range on" in line
    assert "warning:" not in result.out  # the table on stdout stays clean
    _fake_cpu(monkeypatch, VNNI)
    result = cli(*argv)
    assert result.code == 0, result.err
    assert _warnings(result.err) == []


def test_benchmark_report_records_the_warning(
    int8_off: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgelstm.benchmarks.harness import BenchmarkPlan, run_benchmark

    _fake_cpu(monkeypatch, AVX2)
    plan = BenchmarkPlan(
        models=(int8_off,), seqs=(3,), warmup=0, iterations=2, rounds=1, isolate=False
    )
    document = run_benchmark(plan).to_json()
    assert len(document["warnings"]) == 1
    assert "--reduce-range on" in document["warnings"][0]
