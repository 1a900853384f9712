"""The OpenVINO execution provider, for real: the `openvino` extra's ONNX Runtime build.

Run in an environment made with `pip install -e ".[openvino,dev]"` (no torch): `.ci/providers`
does that and runs `pytest -m openvino`. Everywhere else these tests skip with the reason.
The models are built here with onnx.helper (an LSTM and a linear head with edgelstm's
metadata), so nothing needs torch; with EDGELSTM_QUICKSTART pointing at a `quickstart/`
folder (the first CI environment's JapaneseVowels models) the real models are checked too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgelstm.errors import ProviderUnavailableError
from edgelstm.metadata import ModelMetadata, record_weights_sha256
from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import SessionConfig

OPENVINO_EP = "OpenVINOExecutionProvider"


def _has_openvino() -> bool:
    return OPENVINO_EP in import_onnxruntime().get_available_providers()


pytestmark = [
    pytest.mark.openvino,
    pytest.mark.skipif(
        not _has_openvino(),
        reason="needs the openvino extra (onnxruntime-openvino instead of onnxruntime): "
        "pip install -e '.[openvino,dev]' in its own environment; .ci/providers does",
    ),
]

FEATURES, HIDDEN, CLASSES = 4, 8, 3


def _lstm_classifier(path: Path, *, bare_lstm: bool = False) -> Path:
    """An edgelstm-shaped classifier: x [batch, time, 4] -> LSTM(8) -> last step -> logits.

    ``bare_lstm`` leaves only the LSTM node (plus transposes on the CPU's side), the graph
    OpenVINO refuses to take on its own.
    """
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * HIDDEN, FEATURES)).astype("f4"), "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * HIDDEN, HIDDEN)).astype("f4"), "R"),
        numpy_helper.from_array(rng.normal(0, 0.1, (1, 8 * HIDDEN)).astype("f4"), "B"),
        numpy_helper.from_array(rng.normal(0, 0.5, (HIDDEN, CLASSES)).astype("f4"), "head"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    if bare_lstm:
        nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "logits"], hidden_size=8)]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["time", 1, FEATURES])]
        outputs = [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["time", 1, 1, HIDDEN]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, HIDDEN]),
        ]
        inits = inits[:3]
    else:
        nodes = [
            helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]),
            helper.make_node("LSTM", ["x_tm", "W", "R", "B"], ["y", "h_last"], hidden_size=8),
            helper.make_node("Squeeze", ["h_last", "axis0"], ["h"]),
            helper.make_node("MatMul", ["h", "head"], ["logits"]),
        ]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 4])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])]
    graph = helper.make_graph(nodes, "classifier", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = ModelMetadata(
        variant="sequence",
        exporter="test",
        opset=17,
        torch_version="",
        edgelstm_version="",
        inputs={"x": "normalised features [batch, time, features]"},
        outputs={"logits": "class logits [batch, classes]"},
        task="classify",
        arch="lstm",
        feature_names=tuple(f"f{i}" for i in range(FEATURES)),
        normalization={"mean": [0.0] * FEATURES, "std": [1.0] * FEATURES},
        class_labels=("a", "b", "c"),
    )
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    record_weights_sha256(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lstm_classifier(tmp_path_factory.mktemp("ov") / "model.onnx")


@pytest.fixture(scope="module")
def sequences_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("ov-data") / "x.npz"
    x = rng.normal(size=(12, 9, FEATURES)).astype(np.float32)
    lengths = rng.integers(3, 10, size=12)
    np.savez(path, X=x, lengths=lengths, y=rng.integers(0, 3, size=12))
    return path


def test_the_whole_classifier_runs_on_openvino_and_matches_the_cpu(classifier: Path) -> None:
    opened = open_session(classifier, SessionConfig(providers=("openvino",)))
    assert opened.provider == "openvino"
    assert opened.placement == {"openvino": 4}
    assert "all 4 nodes on openvino" in opened.describe()
    cpu = open_session(classifier, SessionConfig(providers=("cpu",)))
    x = np.random.default_rng(2).normal(size=(5, 7, FEATURES)).astype(np.float32)
    ov_out = opened.session.run(None, {"x": x})[0]
    cpu_out = cpu.session.run(None, {"x": x})[0]
    np.testing.assert_allclose(ov_out, cpu_out, atol=1e-5)
    # A second shape in the same session: OpenVINO recompiles for new dynamic shapes.
    x2 = x[:2, :3]
    np.testing.assert_allclose(
        opened.session.run(None, {"x": x2})[0], cpu.session.run(None, {"x": x2})[0], atol=1e-5
    )


def test_a_bare_lstm_stays_on_the_cpu_and_strict_mode_refuses_it(tmp_path: Path) -> None:
    model = _lstm_classifier(tmp_path / "bare.onnx", bare_lstm=True)
    with pytest.raises(ProviderUnavailableError, match="placed no node on it"):
        open_session(model, SessionConfig(providers=("openvino",)))
    opened = open_session(model, SessionConfig(providers=("openvino",), fallback=True))
    assert opened.provider == "cpu" and opened.fell_back
    assert any("placed no node" in note for note in opened.notes)


def test_devices_are_chosen_by_openvino_name(classifier: Path) -> None:
    from edgelstm.runtimes.ort.plugin_eps import openvino_device_ids

    offered = openvino_device_ids()
    assert "CPU" in offered
    opened = open_session(classifier, SessionConfig(providers=("openvino:cpu",)))
    assert opened.device == "CPU"
    assert opened.to_json()["device"] == "CPU"
    missing = next(d for d in ("NPU", "GPU") if d not in offered)
    with pytest.raises(ProviderUnavailableError, match=f"finds no {missing} device here"):
        open_session(classifier, SessionConfig(providers=(f"openvino:{missing}",)))


def test_dynamic_int8_placement_names_the_ops_left_on_the_cpu(tmp_path: Path) -> None:
    # A DynamicQuantizeLSTM node (the dynamic-int8 artifact's recurrent op) next to a head.
    model = onnx.load(str(_lstm_classifier(tmp_path / "fp32.onnx")))
    graph = model.graph
    lstm = next(n for n in graph.node if n.op_type == "LSTM")
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    w_q = np.clip(np.round(weights["W"].transpose(0, 2, 1) / 0.01), -127, 127).astype(np.int8)
    r_q = np.clip(np.round(weights["R"].transpose(0, 2, 1) / 0.01), -127, 127).astype(np.int8)
    graph.initializer.extend(
        [
            numpy_helper.from_array(w_q, "W_q"),
            numpy_helper.from_array(r_q, "R_q"),
            numpy_helper.from_array(np.full((1, 4 * HIDDEN), 0.01, np.float32), "scale"),
            numpy_helper.from_array(np.zeros((1, 4 * HIDDEN), np.int8), "zero"),
        ]
    )
    quantized = helper.make_node(
        "DynamicQuantizeLSTM",
        ["x_tm", "W_q", "R_q", "B", "", "", "", "", "scale", "zero", "scale", "zero"],
        list(lstm.output),
        domain="com.microsoft",
        hidden_size=HIDDEN,
    )
    nodes = [quantized if n is lstm else n for n in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    record_weights_sha256(model)
    path = tmp_path / "int8.onnx"
    onnx.save(model, str(path))
    opened = open_session(path, SessionConfig(providers=("openvino",)))
    assert opened.provider == "openvino"
    assert "DynamicQuantizeLSTM" in opened.cpu_ops
    note = next(n for n in opened.notes if n.startswith("partial placement"))
    assert "DynamicQuantizeLSTM" in note and "use --provider cpu" in note


def test_run_on_openvino_reports_placement_and_equals_the_cpu(
    cli: Any, classifier: Path, sequences_npz: Path, tmp_path: Path
) -> None:
    outputs = {}
    for provider in ("cpu", "openvino"):
        out = tmp_path / f"{provider}.csv"
        result = cli(
            "run", classifier, "--provider", provider, "--input", sequences_npz, "--output", out
        )
        assert result.code == 0, result.err
        outputs[provider] = np.genfromtxt(out, delimiter=",", names=True, dtype=None)
    assert "provider openvino; all 4 nodes on openvino" in result.err
    cpu, ov = outputs["cpu"], outputs["openvino"]
    assert list(cpu["label"]) == list(ov["label"])
    for column in ("prob_a", "prob_b", "prob_c"):
        np.testing.assert_allclose(cpu[column], ov[column], atol=2e-6)


def test_benchmark_has_rows_for_both_providers(cli: Any, classifier: Path, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = cli(
        "benchmark", classifier, "--providers", "cpu,openvino", "--batch", "1",
        "--seq", "8", "--warmup", "1", "--iterations", "3", "--no-isolate", "--json", report,
    )  # fmt: skip
    assert result.code == 0, result.err
    rows = json.loads(report.read_text())["rows"]
    by_provider = {r["provider"]: r for r in rows if r["runtime"] == "onnxruntime"}
    assert set(by_provider) == {"cpu", "openvino"}
    assert by_provider["openvino"]["placement"] == {"openvino": 4}
    assert (
        json.loads(report.read_text())["environment"]["libraries"]["onnxruntime_distribution"]
        == "onnxruntime-openvino"
    )


def test_providers_lists_openvino_with_its_devices(cli: Any) -> None:
    result = cli("providers", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    openvino = next(p for p in report["providers"] if p["name"] == "openvino")
    assert "CPU" in openvino["devices"]
    assert openvino["artifacts"]["dynamic-int8"]["native"] is False
    assert openvino["artifacts"]["fp16"]["native"] is True
    assert [d["name"] for d in report["onnxruntime"]["distributions"]] == ["onnxruntime-openvino"]


# ---------------------------------------------------------------------------- real models

QUICKSTART = os.environ.get("EDGELSTM_QUICKSTART")
needs_quickstart = pytest.mark.skipif(
    not QUICKSTART,
    reason="set EDGELSTM_QUICKSTART to a quickstart/ folder (edgelstm quickstart writes one) "
    "to check the JapaneseVowels models; .ci/providers does",
)


@needs_quickstart
@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_japanese_vowels_on_openvino_equals_the_cpu(cli: Any, name: str, tmp_path: Path) -> None:
    folder = Path(str(QUICKSTART))
    outputs, said = {}, {}
    for provider in ("cpu", "openvino"):
        out = tmp_path / f"{provider}.csv"
        result = cli(
            "run", folder / name, "--provider", provider,
            "--input", folder / "test.npz", "--output", out,
        )  # fmt: skip
        assert result.code == 0, result.err
        outputs[provider] = np.genfromtxt(out, delimiter=",", names=True, dtype=None)
        said[provider] = result.err
    cpu, ov = outputs["cpu"], outputs["openvino"]
    assert list(cpu["label"]) == list(ov["label"])
    for column in (c for c in cpu.dtype.names if c.startswith("prob_")):
        np.testing.assert_allclose(cpu[column], ov[column], atol=1e-4)
    accuracy = [line for line in said["openvino"].splitlines() if "accuracy" in line]
    assert accuracy and accuracy[0].split("accuracy ")[1] in said["cpu"]
    placement = "partial placement" if "int8" in name else "nodes on openvino"
    assert placement in said["openvino"]


@needs_quickstart
def test_japanese_vowels_streams_on_openvino_like_on_the_cpu() -> None:
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession

    folder = Path(str(QUICKSTART))
    frames = np.load(folder / "test.npz")["X"][0, :20].astype(np.float32)
    pushed = {}
    for provider in ("cpu", "openvino"):
        stream = StreamingSession(
            folder / "model.stream.onnx", session=SessionConfig(providers=(provider,))
        )
        assert stream.opened.provider == provider
        pushed[provider] = np.concatenate([stream.push(frames[i : i + 4]) for i in range(0, 20, 4)])
    np.testing.assert_allclose(pushed["openvino"], pushed["cpu"], atol=1e-4)
