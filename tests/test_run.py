"""`edgelstm run`, :mod:`edgelstm.runtimes.run_files` and :mod:`~edgelstm.runtimes.run_stream`:
task models,
any ONNX model, streaming.

Tiny models are trained and exported once per module; arbitrary ONNX graphs are built here
with ``onnx.helper``. Expected values come from independent paths: the torch checkpoint,
onnxruntime called directly, or numpy.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import os
import queue
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import onnx
import pytest
import torch
from conftest import (
    TINY_KW,
    WINDOW_KW,
    CliResult,
    CliRunner,
    assert_clean_failure,
    needs_no_cuda,
    single_thread,
    write_forecast_csv,
)
from onnx import TensorProto, helper, numpy_helper

from edgelstm.config import Normalization
from edgelstm.errors import InvalidInputError, OutputExistsError, ProviderUnavailableError
from edgelstm.exporters import export
from edgelstm.metadata import PREFIX, ModelMetadata, read_metadata
from edgelstm.runtimes.model_io.streaming_session import StreamingSession
from edgelstm.runtimes.ort.artifact import load_artifact
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.runtimes.run_files import RunOptions, run_model
from edgelstm.runtimes.run_stream import stream_model
from edgelstm.tasks import normalize
from edgelstm.training.checkpoint import load_checkpoint
from edgelstm.training.trainer import TrainResult, train

LOOKBACK = WINDOW_KW["lookback"]
HORIZON = WINDOW_KW["horizon"]
#: The forecast data is shifted so that original units (~10) and normalised units (~0) differ.
FORECAST_OFFSET = 10.0


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# --------------------------------------------------------------------------------------------
# helpers


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _norm(meta: ModelMetadata) -> Normalization:
    assert meta.normalization is not None
    return Normalization(
        mean=tuple(meta.normalization["mean"]), std=tuple(meta.normalization["std"])
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def _save_onnx(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] | None = None,
) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _tensor(name: str, dtype: int, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


# --------------------------------------------------------------------------------------------
# trained and exported models (once per module)


@dataclass(frozen=True)
class Exported:
    run_dir: Path
    model: Path
    stream: Path | None
    meta: ModelMetadata


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


def _export(run: TrainResult, folder: Path, name: str, *, streaming: bool) -> Exported:
    model = folder / f"{name}.onnx"
    export(run.out, model)
    stream = None
    if streaming:
        stream = folder / f"{name}.stream.onnx"
        export(run.out, stream, streaming=True)
    return Exported(run.out, model, stream, read_metadata(model))


@pytest.fixture(scope="module")
def classify_model(trained_classify: TrainResult, work: Path) -> Exported:
    return _export(trained_classify, work, "classify", streaming=True)


@pytest.fixture(scope="module")
def forecast_data(work: Path) -> Path:
    return write_forecast_csv(work / "forecast_offset.csv", offset=FORECAST_OFFSET)


@pytest.fixture(scope="module")
def forecast_model(work: Path, forecast_data: Path) -> Exported:
    single_thread()
    run = train("forecast", data=forecast_data, out=work / "forecast_run", **TINY_KW, **WINDOW_KW)
    return _export(run, work, "forecast", streaming=False)


@pytest.fixture(scope="module")
def anomaly_model(work: Path, anomaly_csv: Path) -> Exported:
    single_thread()
    run = train("anomaly", data=anomaly_csv, out=work / "anomaly_run", **TINY_KW, **WINDOW_KW)
    return _export(run, work, "anomaly", streaming=True)


@pytest.fixture(scope="module")
def anomaly_reference(anomaly_model: Exported, anomaly_csv: Path, work: Path) -> np.ndarray:
    """Whole-series scores of the anomaly csv through the sequence export."""
    result = run_model(anomaly_model.model, anomaly_csv, work / "anomaly_reference.npz")
    scores: np.ndarray = result.predictions.arrays["scores"]
    return scores


@pytest.fixture(scope="module")
def jv_test_file() -> Path:
    import aeon

    path = Path(aeon.__file__).parent / "datasets" / "data" / "JapaneseVowels"
    ts = path / "JapaneseVowels_TEST.ts"
    if not ts.is_file():
        pytest.skip(f"aeon does not bundle {ts}")
    return ts


@pytest.fixture(scope="module")
def jv_model(work: Path, jv_test_file: Path) -> Exported:
    single_thread()
    run = train("classify", dataset="JapaneseVowels", out=work / "jv_run", **TINY_KW)
    return _export(run, work, "jv", streaming=False)


# --------------------------------------------------------------------------------------------
# arbitrary ONNX models


@pytest.fixture(scope="module")
def pair_model(work: Path) -> Path:
    """a float [N, 3], b int64 [N] -> sum = a + b[:, None], total = a.sum(axis=1)."""
    axes = helper.make_node(
        "Constant", [], ["axes"], value=numpy_helper.from_array(np.array([1], np.int64))
    )
    nodes = [
        axes,
        helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["b_float", "axes"], ["b_column"]),
        helper.make_node("Add", ["a", "b_column"], ["sum"]),
        helper.make_node("ReduceSum", ["a", "axes"], ["total"], keepdims=0),
    ]
    return _save_onnx(
        work / "pair.onnx",
        nodes,
        [_tensor("a", TensorProto.FLOAT, ["N", 3]), _tensor("b", TensorProto.INT64, ["N"])],
        [_tensor("sum", TensorProto.FLOAT, ["N", 3]), _tensor("total", TensorProto.FLOAT, ["N"])],
    )


@pytest.fixture(scope="module")
def int32_model(work: Path) -> Path:
    """k int32 [N] -> out = float(k)."""
    return _save_onnx(
        work / "ints.onnx",
        [helper.make_node("Cast", ["k"], ["out"], to=TensorProto.FLOAT)],
        [_tensor("k", TensorProto.INT32, ["N"])],
        [_tensor("out", TensorProto.FLOAT, ["N"])],
    )


@pytest.fixture(scope="module")
def double_model(work: Path) -> Path:
    """x [N, 2] -> y = 2 x (one input, one output)."""
    two = helper.make_node(
        "Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))
    )
    return _save_onnx(
        work / "double.onnx",
        [two, helper.make_node("Mul", ["x", "two"], ["y"])],
        [_tensor("x", TensorProto.FLOAT, ["N", 2])],
        [_tensor("y", TensorProto.FLOAT, ["N", 2])],
    )


@pytest.fixture(scope="module")
def two_output_model(work: Path) -> Path:
    """x [N, 2] -> neg = -x, abs = |x| (one input, two outputs)."""
    return _save_onnx(
        work / "two_outputs.onnx",
        [helper.make_node("Neg", ["x"], ["neg"]), helper.make_node("Abs", ["x"], ["abs"])],
        [_tensor("x", TensorProto.FLOAT, ["N", 2])],
        [_tensor("neg", TensorProto.FLOAT, ["N", 2]), _tensor("abs", TensorProto.FLOAT, ["N", 2])],
    )


@pytest.fixture(scope="module")
def optional_model(work: Path) -> Path:
    """a [N, 3] * scale; scale [3] is an initializer that is also a graph input."""
    scale = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "scale")
    return _save_onnx(
        work / "optional.onnx",
        [helper.make_node("Mul", ["a", "scale"], ["out"])],
        [_tensor("a", TensorProto.FLOAT, ["N", 3]), _tensor("scale", TensorProto.FLOAT, [3])],
        [_tensor("out", TensorProto.FLOAT, ["N", 3])],
        [scale],
    )


LSTM_INPUT, LSTM_HIDDEN = 2, 3


@pytest.fixture(scope="module")
def lstm_model(work: Path) -> Path:
    """A bare ONNX LSTM node as another tool writes it: layout 0, x [T, N, I] -> y."""
    rng = np.random.default_rng(0)
    h, i = LSTM_HIDDEN, LSTM_INPUT
    weights = [
        numpy_helper.from_array(rng.normal(size=(1, 4 * h, i)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(1, 4 * h, h)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.normal(size=(1, 8 * h)).astype(np.float32), "B"),
    ]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], hidden_size=h, layout=0)
    return _save_onnx(
        work / "lstm.onnx",
        [node],
        [_tensor("x", TensorProto.FLOAT, ["T", "N", i])],
        [_tensor("y", TensorProto.FLOAT, ["T", 1, "N", h])],
        weights,
    )


def _pair_inputs(n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.integers(-5, 5, size=n).astype(np.int64)


# ============================================================================================
# classification


def test_classify_ts_csv_accuracy_matches_the_checkpoint(
    cli: CliRunner, tmp_path: Path, jv_model: Exported, jv_test_file: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = cli(
        "run",
        jv_model.model,
        "--input",
        jv_test_file,
        "--output",
        out,
        "--provider",
        "cpu",
        "--json",
    )
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["kind"] == "classify"
    assert summary["output"] == str(out)
    assert summary["session"]["provider"] == "cpu"
    assert summary["summary"]["sequences"] == 370

    rows = _read_csv(out)
    labels = jv_model.meta.class_labels
    assert len(labels) == 9
    assert list(rows[0]) == [
        "index",
        "label",
        "confidence",
        *[f"prob_{c}" for c in labels],
        "true_label",
    ]
    assert [int(r["index"]) for r in rows] == list(range(370))
    probs = np.array([[float(r[f"prob_{c}"]) for c in labels] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    for row, p in zip(rows, probs, strict=True):
        assert row["label"] in labels
        assert row["label"] == labels[int(p.argmax())]
        assert float(row["confidence"]) == pytest.approx(p.max(), abs=1e-6)
    assert {r["true_label"] for r in rows} == set(labels)

    # The reported accuracy is exactly what the CSV says ...
    recomputed = np.mean([r["label"] == r["true_label"] for r in rows])
    assert summary["summary"]["accuracy"] == pytest.approx(recomputed, abs=1e-12)
    # ... and the checkpoint's own test accuracy on the same file (torch vs ONNX Runtime may
    # flip at most one near-tie).
    metrics = json.loads((jv_model.run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert summary["summary"]["accuracy"] == pytest.approx(metrics["accuracy"], abs=1.01 / 370)


def test_classify_human_summary_names_output_provider_and_accuracy(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = cli("run", classify_model.model, "--input", classify_npz, "--output", out)
    assert result.code == 0, result.err
    assert result.out == ""
    last = result.err_lines[-1]
    assert f"wrote {out}" in last
    assert "60 sequences" in last
    assert "provider cpu" in last
    assert "accuracy" in last


def _torch_probabilities(run_dir: Path, sequences: list[np.ndarray]) -> np.ndarray:
    checkpoint = load_checkpoint(run_dir)
    norm = checkpoint.record.normalization
    rows = []
    with torch.no_grad():
        for seq in sequences:
            x = torch.from_numpy(normalize(seq, norm)[None])
            rows.append(checkpoint.model(x).numpy()[0])
    return _softmax(np.array(rows, dtype=np.float64))


def test_classify_npz_variable_lengths_match_torch_one_by_one(
    tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    data = np.load(classify_npz)
    X, y, lengths = data["X"], data["y"], data["lengths"]
    assert len(np.unique(lengths)) > 1  # several buckets
    expected = _torch_probabilities(
        classify_model.run_dir, [X[i, : lengths[i]] for i in range(len(X))]
    )
    calls: list[tuple[int, int]] = []
    result = run_model(
        classify_model.model,
        classify_npz,
        tmp_path / "p.npz",
        options=RunOptions(batch_size=4),
        progress=lambda done, total: calls.append((done, total)),
    )
    predictions = result.predictions
    assert predictions.kind == "classify"
    np.testing.assert_allclose(predictions.arrays["probabilities"], expected, atol=1e-4)
    np.testing.assert_allclose(
        _softmax(predictions.arrays["logits"].astype(np.float64)), expected, atol=1e-4
    )
    labels = classify_model.meta.class_labels
    predicted = [labels[i] for i in expected.argmax(axis=1)]
    assert predictions.arrays["labels"].tolist() == predicted
    assert predictions.table is not None
    assert predictions.table["true_label"].tolist() == [str(v) for v in y]
    truth = np.array([str(v) for v in y])
    assert predictions.summary["accuracy"] == pytest.approx(np.mean(truth == predicted))
    # Progress: sequences done so far, increasing, ending at the total.
    assert calls, "progress was never called"
    assert all(total == 60 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1] == (60, 60)
    # The batch size bounds the rows per session call but does not change the results.
    other = run_model(classify_model.model, classify_npz, tmp_path / "q.npz")
    np.testing.assert_allclose(
        other.predictions.arrays["probabilities"], predictions.arrays["probabilities"], atol=1e-6
    )


def test_classify_npy_and_csv_inputs(
    tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    data = np.load(classify_npz)
    X = data["X"]
    expected = _torch_probabilities(classify_model.run_dir, [X[i] for i in range(4)])

    many = tmp_path / "many.npy"
    np.save(many, X[:4])
    result = run_model(classify_model.model, many, tmp_path / "many.csv")
    np.testing.assert_allclose(result.predictions.arrays["probabilities"], expected, atol=1e-4)
    assert result.predictions.table is not None
    assert "true_label" not in result.predictions.table
    assert "accuracy" not in result.predictions.summary

    one = tmp_path / "one.npy"
    np.save(one, X[2])  # [time, features]: one sequence
    result = run_model(classify_model.model, one, tmp_path / "one.json")
    np.testing.assert_allclose(result.predictions.arrays["probabilities"], expected[2:3], atol=1e-4)

    for header in ("f0,f1,f2\n", ""):
        seq_csv = tmp_path / f"seq{len(header)}.csv"
        body = "\n".join(",".join(f"{v:.8f}" for v in row) for row in X[2])
        seq_csv.write_text(header + body + "\n", encoding="utf-8")
        result = run_model(classify_model.model, seq_csv, tmp_path / f"seq{len(header)}.npz")
        probs = result.predictions.arrays["probabilities"]
        np.testing.assert_allclose(probs, expected[2:3], atol=1e-4)


def test_classify_csv_columns_are_matched_by_name(
    tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    X = np.load(classify_npz)["X"]
    assert classify_model.meta.feature_names == ("f0", "f1", "f2")
    expected = _torch_probabilities(classify_model.run_dir, [X[1]])
    shuffled = tmp_path / "shuffled.csv"
    body = "\n".join(f"{r[2]:.8f},{r[0]:.8f},{r[1]:.8f}" for r in X[1])
    shuffled.write_text("f2,f0,f1\n" + body + "\n", encoding="utf-8")
    result = run_model(classify_model.model, shuffled, tmp_path / "p.npz")
    np.testing.assert_allclose(result.predictions.arrays["probabilities"], expected, atol=1e-4)
    assert any("reordered" in n for n in result.notices), result.notices


def test_classify_output_formats_agree(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    outs = {ext: tmp_path / f"preds{ext}" for ext in (".csv", ".json", ".npy", ".npz")}
    for out in outs.values():
        result = cli("run", classify_model.model, "--input", classify_npz, "--output", out)
        assert result.code == 0, result.err
    labels = classify_model.meta.class_labels

    with np.load(outs[".npz"]) as archive:
        arrays = {k: archive[k] for k in archive.files}
    assert set(arrays) == {"labels", "probabilities", "logits", "class_labels"}
    assert arrays["class_labels"].tolist() == list(labels)
    assert arrays["probabilities"].shape == (60, len(labels))
    assert arrays["logits"].shape == (60, len(labels))
    np.testing.assert_allclose(
        arrays["probabilities"], _softmax(arrays["logits"].astype(np.float64)), atol=1e-6
    )

    primary = np.load(outs[".npy"])
    np.testing.assert_array_equal(primary, arrays["probabilities"])

    payload = json.loads(outs[".json"].read_text(encoding="utf-8"))
    assert payload["kind"] == "classify"
    assert payload["summary"]["sequences"] == 60
    assert "accuracy" in payload["summary"]
    records = payload["records"]
    assert len(records) == 60
    assert [r["label"] for r in records] == arrays["labels"].tolist()

    rows = _read_csv(outs[".csv"])
    assert [r["label"] for r in rows] == arrays["labels"].tolist()
    for row, record, probs in zip(rows, records, arrays["probabilities"], strict=True):
        for j, c in enumerate(labels):
            assert float(row[f"prob_{c}"]) == pytest.approx(record[f"prob_{c}"], abs=1e-9)
            assert record[f"prob_{c}"] == pytest.approx(float(probs[j]), abs=2e-6)


def test_unsupported_output_extension(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    out = tmp_path / "preds.txt"
    result = cli("run", classify_model.model, "--input", classify_npz, "--output", out)
    assert_clean_failure(result, out, "preds.txt", ".txt", ".csv", ".npz")
    with pytest.raises(InvalidInputError, match="unsupported extension"):
        run_model(classify_model.model, classify_npz, tmp_path / "noext")


def test_existing_output_needs_overwrite(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    out = tmp_path / "preds.csv"
    out.write_text("keep me\n", encoding="utf-8")
    result = cli("run", classify_model.model, "--input", classify_npz, "--output", out)
    assert_clean_failure(result, None, str(out), "--overwrite")
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert not list(tmp_path.glob(".preds.csv.*"))
    with pytest.raises(OutputExistsError):
        run_model(classify_model.model, classify_npz, out)
    assert out.read_text(encoding="utf-8") == "keep me\n"

    result = cli(
        "run", classify_model.model, "--input", classify_npz, "--output", out, "--overwrite"
    )
    assert result.code == 0, result.err
    rows = _read_csv(out)
    assert len(rows) == 60
    assert list(rows[0])[:3] == ["index", "label", "confidence"]


# ============================================================================================
# forecasting


def _forecast_by_hand(model: Exported, window: np.ndarray) -> np.ndarray:
    """Normalise, run onnxruntime directly, denormalise the targets: [horizon, targets]."""
    norm = _norm(model.meta)
    session = _ort_session(model.model)
    raw = session.run(None, {session.get_inputs()[0].name: normalize(window, norm)[None]})[0][0]
    indices = model.meta.target_indices
    mean = np.array([norm.mean[i] for i in indices])
    std = np.array([norm.std[i] for i in indices])
    result: np.ndarray = raw * std + mean
    return result


def test_forecast_from_a_series_in_original_units(
    cli: CliRunner, tmp_path: Path, forecast_model: Exported, forecast_data: Path
) -> None:
    out = tmp_path / "forecast.csv"
    result = cli("run", forecast_model.model, "--input", forecast_data, "--output", out, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["summary"]
    assert summary == {"windows": 1, "horizon": HORIZON, "targets": ["load", "temp"]}
    rows = _read_csv(out)
    assert list(rows[0]) == ["window", "step_ahead", "load", "temp"]
    assert [(int(r["window"]), int(r["step_ahead"])) for r in rows] == [
        (0, h) for h in range(1, HORIZON + 1)
    ]
    got = np.array([[float(r["load"]), float(r["temp"])] for r in rows])
    values = np.loadtxt(forecast_data, delimiter=",", skiprows=1, dtype=np.float32)
    np.testing.assert_allclose(
        got, _forecast_by_hand(forecast_model, values[-LOOKBACK:]), atol=1e-4
    )
    # Original units: the data lives around 10, normalised outputs would be around 0.
    assert np.all(got > FORECAST_OFFSET - 5) and np.all(got < FORECAST_OFFSET + 5), got


def test_forecast_series_shorter_than_lookback(
    cli: CliRunner, tmp_path: Path, forecast_model: Exported, forecast_data: Path
) -> None:
    lines = forecast_data.read_text(encoding="utf-8").splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[: LOOKBACK - 5]) + "\n", encoding="utf-8")
    out = tmp_path / "forecast.csv"
    result = cli("run", forecast_model.model, "--input", short, "--output", out)
    assert_clean_failure(result, out, str(short), str(LOOKBACK), "lookback")


def test_forecast_windows_give_one_forecast_each(
    cli: CliRunner, tmp_path: Path, forecast_model: Exported, forecast_data: Path
) -> None:
    values = np.loadtxt(forecast_data, delimiter=",", skiprows=1, dtype=np.float32)
    windows = np.stack([values[-LOOKBACK:], values[:LOOKBACK], values[50 : 50 + LOOKBACK]])
    source = tmp_path / "windows.npy"
    np.save(source, windows)
    out = tmp_path / "forecast.npz"
    result = cli("run", forecast_model.model, "--input", source, "--output", out, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["summary"]["windows"] == 3
    with np.load(out) as archive:
        forecast = archive["forecast"]
        assert archive["target_names"].tolist() == ["load", "temp"]
    assert forecast.shape == (3, HORIZON, 2)
    for w in range(3):
        expected = _forecast_by_hand(forecast_model, windows[w])
        np.testing.assert_allclose(forecast[w], expected, atol=1e-4)
    # The first window is the end of the series: the same forecast as the series run.
    series = run_model(forecast_model.model, forecast_data, tmp_path / "series.npy")
    np.testing.assert_allclose(forecast[0], series.predictions.arrays["forecast"][0], atol=1e-5)


# ============================================================================================
# anomaly detection


def test_anomaly_scores_flags_and_labels(
    cli: CliRunner, tmp_path: Path, anomaly_model: Exported, anomaly_csv: Path
) -> None:
    out = tmp_path / "scores.csv"
    result = cli("run", anomaly_model.model, "--input", anomaly_csv, "--output", out, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["summary"]
    threshold = anomaly_model.meta.anomaly_threshold
    assert threshold is not None
    assert summary["threshold"] == pytest.approx(threshold)
    assert summary["steps"] == 200

    rows = _read_csv(out)
    assert list(rows[0]) == ["step", "score", "anomaly", "label"]
    assert [int(r["step"]) for r in rows] == list(range(200))
    scores = np.array([float(r["score"]) for r in rows])
    flags = np.array([int(r["anomaly"]) for r in rows])
    assert scores[0] == 0.0
    np.testing.assert_array_equal(flags, (scores > threshold).astype(int))
    assert summary["anomalous_steps"] == int(flags.sum())
    assert summary["top_score_step"] == int(np.argmax(scores))

    raw = np.loadtxt(anomaly_csv, delimiter=",", skiprows=1, dtype=np.float32)
    assert [int(r["label"]) for r in rows] == raw[:, 1].astype(int).tolist()
    x = normalize(raw[:, :1], _norm(anomaly_model.meta))
    session = _ort_session(anomaly_model.model)
    prediction = session.run(None, {session.get_inputs()[0].name: x[None]})[0][0]
    # Written out, not tasks.anomaly_scores (which the run itself calls; test_metrics pins it
    # by hand): step t scores the squared error of the prediction made at t - 1.
    expected = np.concatenate([[0.0], np.mean((prediction[:-1] - x[1:]) ** 2, axis=-1)])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)


def test_streaming_export_runs_whole_files_like_the_sequence_export(
    tmp_path: Path, anomaly_model: Exported, anomaly_csv: Path, anomaly_reference: np.ndarray
) -> None:
    assert anomaly_model.stream is not None
    result = run_model(anomaly_model.stream, anomaly_csv, tmp_path / "s.npz")
    np.testing.assert_allclose(result.predictions.arrays["scores"], anomaly_reference, atol=1e-5)
    assert result.opened.profile.streaming


# ============================================================================================
# providers


@needs_no_cuda
def test_unavailable_provider_is_refused(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = cli(
        "run", classify_model.model, "--input", classify_npz, "--output", out, "--provider", "cuda"
    )
    assert_clean_failure(result, out, "cuda", "edgelstm[gpu]", "--fallback")
    with pytest.raises(ProviderUnavailableError, match="cuda"):
        run_model(
            classify_model.model,
            classify_npz,
            out,
            session=SessionConfig(providers=("cuda", "cpu")),
        )
    assert not out.exists()


@needs_no_cuda
def test_fallback_goes_on_and_says_so(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    out = tmp_path / "preds.csv"
    argv = ["run", classify_model.model, "--input", classify_npz, "--output", out]
    result = cli(*argv, "--provider", "cuda,cpu", "--fallback")
    assert result.code == 0, result.err
    assert len(_read_csv(out)) == 60
    notes = [line for line in result.err_lines if line.startswith("note:")]
    assert any("cuda" in line for line in notes), result.err
    assert "fell back from cuda" in result.err
    # And in JSON.
    json_out = tmp_path / "preds2.csv"
    result = cli(*argv[:-1], json_out, "--provider", "cuda,cpu", "--fallback", "--json")
    assert result.code == 0, result.err
    session = json.loads(result.out)["session"]
    assert session["provider"] == "cpu"
    assert session["requested"] == ["cuda", "cpu"]
    assert session["fell_back"] is True
    assert any("cuda" in note for note in session["notes"])


@needs_no_cuda
def test_auto_provider_picks_the_cpu_here(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = cli(
        "run",
        classify_model.model,
        "--input",
        classify_npz,
        "--output",
        out,
        "--provider",
        "auto",
        "--json",
    )
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["session"]["provider"] == "cpu"
    assert any("auto chose cpu" in n for n in payload["notices"])
    assert out.is_file()


@pytest.mark.parametrize(
    ("provider", "words"),
    [
        ("cdua", ["cdua", "did you mean", "cuda"]),
        ("cuda,", ["empty entry"]),
        ("auto,cpu", ["auto"]),
    ],
    ids=["typo", "empty-entry", "auto-combined"],
)
def test_bad_provider_names(
    cli: CliRunner,
    tmp_path: Path,
    classify_model: Exported,
    classify_npz: Path,
    provider: str,
    words: list[str],
) -> None:
    out = tmp_path / "preds.csv"
    result = cli(
        "run",
        classify_model.model,
        "--input",
        classify_npz,
        "--output",
        out,
        "--provider",
        provider,
    )
    assert_clean_failure(result, out, *words)


# ============================================================================================
# any ONNX model


def test_two_input_model_from_npz_writes_every_output(
    cli: CliRunner, tmp_path: Path, pair_model: Path
) -> None:
    a, b = _pair_inputs()
    source = tmp_path / "in.npz"
    np.savez(source, a=a, b=b)
    out = tmp_path / "out.npz"
    result = cli("run", pair_model, "--input", source, "--output", out, "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["kind"] == "raw"
    assert payload["summary"]["outputs"] == {"sum": [5, 3], "total": [5]}
    with np.load(out) as archive:
        assert set(archive.files) == {"sum", "total"}
        np.testing.assert_allclose(archive["sum"], a + b[:, None].astype(np.float32), atol=1e-6)
        np.testing.assert_allclose(archive["total"], a.sum(axis=1), atol=1e-5)


def test_recurrent_node_from_another_tool(tmp_path: Path, lstm_model: Path, work: Path) -> None:
    x = np.random.default_rng(1).normal(size=(12, 3, LSTM_INPUT)).astype(np.float32)
    source = tmp_path / "x.npz"
    np.savez(source, x=x)
    result = run_model(lstm_model, source, tmp_path / "y.npz")
    expected = _ort_session(lstm_model).run(None, {"x": x})[0]
    with np.load(tmp_path / "y.npz") as archive:
        assert archive.files == ["y"]
        np.testing.assert_allclose(archive["y"], expected, atol=1e-6)
    assert result.predictions.kind == "raw"
    assert result.opened.provider == "cpu"


def test_overridable_initializer_may_be_left_out_or_given(
    tmp_path: Path, optional_model: Path
) -> None:
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    without = tmp_path / "a.npz"
    np.savez(without, a=a)
    result = run_model(optional_model, without, tmp_path / "default.npz")
    np.testing.assert_allclose(result.predictions.arrays["out"], a * [1.0, 2.0, 3.0])
    given = tmp_path / "a_scale.npz"
    np.savez(given, a=a, scale=np.array([5.0, 6.0, 7.0], np.float32))
    result = run_model(optional_model, given, tmp_path / "given.npz")
    np.testing.assert_allclose(result.predictions.arrays["out"], a * [5.0, 6.0, 7.0])
    # A wrong shape for the optional input is caught by the validation, naming it.
    bad = tmp_path / "bad_scale.npz"
    np.savez(bad, a=a, scale=np.ones(4, np.float32))
    with pytest.raises(InvalidInputError, match="`scale`"):
        run_model(optional_model, bad, tmp_path / "bad.npz")


def test_single_input_model_from_npy(cli: CliRunner, tmp_path: Path, double_model: Path) -> None:
    x = np.random.default_rng(2).normal(size=(6, 2)).astype(np.float32)
    source = tmp_path / "x.npy"
    np.save(source, x)
    for ext in (".npy", ".csv", ".json"):
        out = tmp_path / f"y{ext}"
        result = cli("run", double_model, "--input", source, "--output", out)
        assert result.code == 0, result.err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), 2 * x, atol=1e-6)
    rows = _read_csv(tmp_path / "y.csv")
    assert list(rows[0]) == ["y_0", "y_1"]
    got = np.array([[float(r["y_0"]), float(r["y_1"])] for r in rows])
    np.testing.assert_allclose(got, 2 * x, atol=1e-6)
    payload = json.loads((tmp_path / "y.json").read_text(encoding="utf-8"))
    assert payload["kind"] == "raw"
    assert len(payload["records"]) == 6


def test_several_outputs_need_an_npz(
    cli: CliRunner, tmp_path: Path, two_output_model: Path
) -> None:
    source = tmp_path / "x.npy"
    np.save(source, np.ones((3, 2), np.float32))
    for ext, words in ((".npy", ["neg", "abs", ".npz"]), (".csv", ["not one table", ".npz"])):
        out = tmp_path / f"y{ext}"
        result = cli("run", two_output_model, "--input", source, "--output", out)
        assert_clean_failure(result, out, *words)
    out = tmp_path / "y.npz"
    assert cli("run", two_output_model, "--input", source, "--output", out).code == 0
    with np.load(out) as archive:
        assert set(archive.files) == {"neg", "abs"}


def test_batch_size_does_not_change_raw_outputs(tmp_path: Path, pair_model: Path) -> None:
    a, b = _pair_inputs(n=5, seed=3)
    source = tmp_path / "in.npz"
    np.savez(source, a=a, b=b)
    whole = run_model(pair_model, source, tmp_path / "whole.npz")
    calls: list[tuple[int, int]] = []
    batched = run_model(
        pair_model,
        source,
        tmp_path / "batched.npz",
        options=RunOptions(batch_size=2),
        progress=lambda done, total: calls.append((done, total)),
    )
    for name in ("sum", "total"):
        np.testing.assert_array_equal(
            batched.predictions.arrays[name], whole.predictions.arrays[name]
        )
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_progress_reports_the_end_for_every_task(
    tmp_path: Path, anomaly_model: Exported, anomaly_csv: Path, double_model: Path
) -> None:
    for model, source in ((anomaly_model.model, anomaly_csv), (double_model, None)):
        if source is None:
            source = tmp_path / "x.npy"
            np.save(source, np.ones((3, 2), np.float32))
        calls: list[tuple[int, int]] = []
        run_model(
            model,
            source,
            tmp_path / f"{model.stem}.npz",
            progress=lambda done, total, calls=calls: calls.append((done, total)),
        )
        assert calls, model
        done, total = calls[-1]
        assert done == total >= 1


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="--batch-size"):
        RunOptions(batch_size=0)


# ============================================================================================
# bad inputs


_A, _B = _pair_inputs(n=4)
_NAN_A = _A.copy()
_NAN_A[2, 1] = np.nan

BAD_PAIR_FEEDS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown-name", {"a": _A, "b": _B, "c": _B}, ["c", "not inputs"]),
    ("missing-input", {"a": _A}, ["missing", "b", "int64"]),
    ("wrong-rank", {"a": _A[:, 0], "b": _B}, ["`a`", "rank 1", "rank 2"]),
    ("fixed-dim", {"a": np.ones((4, 4), np.float32), "b": _B}, ["`a`", "axis 1", "4", "3"]),
    ("symbolic-dim", {"a": _A, "b": np.zeros(5, np.int64)}, ["`N`", "4", "5", "`a`", "`b`"]),
    ("empty", {"a": np.zeros((0, 3), np.float32), "b": np.zeros(0, np.int64)}, ["`a`", "empty"]),
    ("nan", {"a": _NAN_A, "b": _B}, ["`a`", "NaN", "(2, 1)", "--allow-nonfinite"]),
    ("float-for-int", {"a": _A, "b": _B.astype(np.float32)}, ["`b`", "float32", "int64"]),
]


@pytest.mark.parametrize(
    ("feeds", "words"),
    [pytest.param(feeds, words, id=name) for name, feeds, words in BAD_PAIR_FEEDS],
)
def test_bad_feeds_give_one_error_line(
    cli: CliRunner,
    tmp_path: Path,
    pair_model: Path,
    feeds: dict[str, Any],
    words: list[str],
) -> None:
    source = tmp_path / "in.npz"
    np.savez(source, **feeds)
    out = tmp_path / "out.npz"
    result = cli("run", pair_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), *words)


def test_nan_passes_with_allow_nonfinite(cli: CliRunner, tmp_path: Path, pair_model: Path) -> None:
    source = tmp_path / "in.npz"
    np.savez(source, a=_NAN_A, b=_B)
    out = tmp_path / "out.npz"
    result = cli("run", pair_model, "--input", source, "--output", out, "--allow-nonfinite")
    assert result.code == 0, result.err
    with np.load(out) as archive:
        assert np.isnan(archive["sum"][2, 1])
        assert np.isfinite(archive["sum"][[0, 1, 3]]).all()


def test_float64_is_converted_with_a_note(cli: CliRunner, tmp_path: Path, pair_model: Path) -> None:
    source = tmp_path / "in.npz"
    np.savez(source, a=_A.astype(np.float64), b=_B)
    out = tmp_path / "out.npz"
    result = cli("run", pair_model, "--input", source, "--output", out)
    assert result.code == 0, result.err
    notes = [line for line in result.err_lines if line.startswith("note:")]
    assert any("`a`" in n and "float64" in n and "float32" in n for n in notes), result.err
    with np.load(out) as archive:
        np.testing.assert_allclose(archive["total"], _A.sum(axis=1), atol=1e-5)


def test_int64_for_int32_input(cli: CliRunner, tmp_path: Path, int32_model: Path) -> None:
    fits = tmp_path / "fits.npz"
    np.savez(fits, k=np.array([1, -2, 3], np.int64))
    out = tmp_path / "out.npz"
    result = cli("run", int32_model, "--input", fits, "--output", out)
    assert result.code == 0, result.err
    assert any(line.startswith("note:") and "`k`" in line for line in result.err_lines)
    with np.load(out) as archive:
        np.testing.assert_array_equal(archive["out"], [1.0, -2.0, 3.0])

    too_big = tmp_path / "too_big.npz"
    np.savez(too_big, k=np.array([1, 2**40], np.int64))
    out = tmp_path / "out2.npz"
    result = cli("run", int32_model, "--input", too_big, "--output", out)
    assert_clean_failure(result, out, "`k`", "int64", "int32")


def test_wrong_feature_count_for_an_edgelstm_model(
    cli: CliRunner, tmp_path: Path, classify_model: Exported
) -> None:
    source = tmp_path / "four.npz"
    np.savez(source, X=np.zeros((2, 10, 4), np.float32))
    out = tmp_path / "preds.csv"
    result = cli("run", classify_model.model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), "4 feature(s)", "takes 3")


def test_nan_in_edgelstm_input_is_refused(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    X = np.load(classify_npz)["X"][:3].copy()
    X[1, 4, 0] = np.nan
    source = tmp_path / "nan.npy"
    np.save(source, X)
    out = tmp_path / "preds.csv"
    result = cli("run", classify_model.model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), "NaN")


@pytest.mark.parametrize("case", ["missing-input-file", "garbage-model", "missing-model"])
def test_unreadable_files(cli: CliRunner, tmp_path: Path, double_model: Path, case: str) -> None:
    source = tmp_path / "x.npy"
    np.save(source, np.ones((2, 2), np.float32))
    model = double_model
    if case == "missing-input-file":
        source = tmp_path / "nope.npy"
        words = [str(source), "does not exist"]
    elif case == "garbage-model":
        model = tmp_path / "garbage.onnx"
        model.write_bytes(b"\x08\xff\x00 this is not a protobuf \xfe\xfe" * 20)
        words = [str(model)]
    else:
        model = tmp_path / "nope.onnx"
        words = [str(model), "does not exist"]
    out = tmp_path / "out.npy"
    result = cli("run", model, "--input", source, "--output", out)
    assert_clean_failure(result, out, *words)


def test_raw_model_needs_npz_or_npy(cli: CliRunner, tmp_path: Path, pair_model: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("1,2,3\n", encoding="utf-8")
    out = tmp_path / "out.npz"
    result = cli("run", pair_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, ".npz", "a, b")
    npy = tmp_path / "in.npy"
    np.save(npy, _A)
    result = cli("run", pair_model, "--input", npy, "--output", out)
    assert_clean_failure(result, out, "2 inputs", ".npz")


def test_stream_needs_a_streaming_export(
    cli: CliRunner, tmp_path: Path, anomaly_model: Exported, anomaly_csv: Path
) -> None:
    out = tmp_path / "rows.csv"
    result = cli("run", anomaly_model.model, "--stream", "--input", anomaly_csv, "--output", out)
    assert_clean_failure(result, out, "--streaming")
    result = cli("run", anomaly_model.model, "--stream", "--input", anomaly_csv)
    assert_clean_failure(result, None, "--streaming")


# ============================================================================================
# streaming


def _stream(cli: CliRunner, *argv: str | Path) -> CliResult:
    return cli("run", *argv)


@pytest.mark.parametrize("chunk", [1, 7])
def test_stream_anomaly_scores_equal_the_whole_series(
    cli: CliRunner,
    anomaly_model: Exported,
    anomaly_csv: Path,
    anomaly_reference: np.ndarray,
    chunk: int,
) -> None:
    assert anomaly_model.stream is not None
    result = _stream(
        cli, anomaly_model.stream, "--stream", "--chunk", str(chunk), "--input", anomaly_csv
    )
    assert result.code == 0, result.err
    rows = _csv_rows(result.out)
    assert list(rows[0]) == ["frame", "score", "anomaly"]
    assert [int(r["frame"]) for r in rows] == list(range(200))
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(scores, anomaly_reference, atol=1e-5)
    threshold = anomaly_model.meta.anomaly_threshold
    assert threshold is not None
    flags = [int(r["anomaly"]) for r in rows]
    assert flags == (anomaly_reference > threshold).astype(int).tolist()
    assert f"streamed 200 frames in {math.ceil(200 / chunk)} chunks" in result.err


def test_stream_classify_last_chunk_equals_the_whole_sequence(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    assert classify_model.stream is not None
    run_record = classify_model.meta.run_record or {}
    assert run_record["model"]["pooling"] == "last"
    data = np.load(classify_npz)
    length = int(data["lengths"][0])
    seq_csv = tmp_path / "one.csv"
    body = "\n".join(",".join(f"{v:.8f}" for v in row) for row in data["X"][0, :length])
    seq_csv.write_text("f0,f1,f2\n" + body + "\n", encoding="utf-8")
    whole = run_model(classify_model.model, seq_csv, tmp_path / "whole.npz")
    expected = whole.predictions.arrays["probabilities"][0]

    chunk = 4
    result = _stream(
        cli, classify_model.stream, "--stream", "--chunk", str(chunk), "--input", seq_csv
    )
    assert result.code == 0, result.err
    rows = _csv_rows(result.out)
    labels = classify_model.meta.class_labels
    assert list(rows[0]) == ["frame", "label", "confidence", *[f"prob_{c}" for c in labels]]
    assert len(rows) == math.ceil(length / chunk)
    assert [int(r["frame"]) for r in rows] == [
        min(k + chunk, length) - 1 for k in range(0, length, chunk)
    ]
    last = rows[-1]
    got = np.array([float(last[f"prob_{c}"]) for c in labels])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert last["label"] == whole.predictions.arrays["labels"][0]


def test_stream_to_a_file_writes_the_same_rows(
    cli: CliRunner, tmp_path: Path, anomaly_model: Exported, anomaly_csv: Path
) -> None:
    assert anomaly_model.stream is not None
    argv: list[str | Path] = [
        anomaly_model.stream,
        "--stream",
        "--chunk",
        "5",
        "--input",
        anomaly_csv,
    ]
    to_stdout = _stream(cli, *argv)
    assert to_stdout.code == 0, to_stdout.err
    out = tmp_path / "rows.csv"
    to_file = _stream(cli, *argv, "--output", out)
    assert to_file.code == 0, to_file.err
    assert to_file.out == ""
    assert out.read_text(encoding="utf-8") == to_stdout.out
    # An existing file is kept without --overwrite.
    again = _stream(cli, *argv, "--output", out)
    assert_clean_failure(again, None, "--overwrite")
    assert out.read_text(encoding="utf-8") == to_stdout.out
    wrong = tmp_path / "rows.json"
    assert_clean_failure(_stream(cli, *argv, "--output", wrong), wrong, ".csv")


def test_stream_refuses_allow_nonfinite(
    cli: CliRunner, anomaly_model: Exported, anomaly_csv: Path
) -> None:
    assert anomaly_model.stream is not None
    result = _stream(
        cli, anomaly_model.stream, "--stream", "--allow-nonfinite", "--input", anomaly_csv
    )
    assert_clean_failure(result, None, "--allow-nonfinite", "--stream")
    assert result.out == ""


@pytest.mark.parametrize(
    "flags",
    [
        ("--engine", "ray", "--workers", "2"),
        ("--engine", "local"),
        ("--resume",),
        ("--skip-bad",),
        ("--partition-rows", "10"),
        ("--batch-size", "8"),
    ],
)
def test_stream_refuses_flags_only_other_modes_honour(
    cli: CliRunner, anomaly_model: Exported, anomaly_csv: Path, flags: tuple[str, ...]
) -> None:
    """These used to be ignored: `--stream --engine ray --workers 2` streamed on the local
    CPU and exited 0."""
    assert anomaly_model.stream is not None
    result = _stream(cli, anomaly_model.stream, "--stream", "--input", anomaly_csv, *flags)
    assert_clean_failure(result, None, flags[0], "--stream")
    assert result.out == ""


def test_stream_from_stdin_in_process(
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    anomaly_model: Exported,
    anomaly_csv: Path,
    anomaly_reference: np.ndarray,
) -> None:
    assert anomaly_model.stream is not None
    lines = anomaly_csv.read_text(encoding="utf-8").splitlines()
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines[:31]) + "\n"))
    result = cli("run", anomaly_model.stream, "--stream", "--chunk", "3", "--input", "-")
    assert result.code == 0, result.err
    rows = _csv_rows(result.out)
    assert len(rows) == 30
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(scores, anomaly_reference[:30], atol=1e-5)


@pytest.mark.parametrize("target", ["stdout", "file"])
def test_stream_bad_line_names_its_number(
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    anomaly_model: Exported,
    target: str,
) -> None:
    assert anomaly_model.stream is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO("value\n0.1\n0.2\nabc\n0.3\n"))
    out = tmp_path / "rows.csv"
    extra = ["--output", str(out)] if target == "file" else []
    result = cli("run", anomaly_model.stream, "--stream", "--input", "-", *extra)
    assert result.code == 2, result
    assert "Traceback" not in result.err
    errors = [line for line in result.err_lines if line.startswith("error:")]
    assert len(errors) == 1 and len(result.err_lines) == 1, result.err
    # Numbered as every CSV reader numbers rows (editor lines), here the stdin's 4th line.
    assert "<stdin>: row 4" in errors[0] and "abc" in errors[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".rows.csv.*"))


def test_stream_with_no_frames_is_an_error(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, anomaly_model: Exported
) -> None:
    assert anomaly_model.stream is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO("value\n\n"))
    result = cli("run", anomaly_model.stream, "--stream", "--input", "-")
    assert result.code == 2
    assert result.err_lines[-1].startswith("error:")
    assert "no frames" in result.err_lines[-1]


def test_stream_from_stdin_flushes_every_chunk(
    anomaly_model: Exported, anomaly_csv: Path, anomaly_reference: np.ndarray
) -> None:
    """A real process: rows for the first chunk arrive while its stdin is still open."""
    assert anomaly_model.stream is not None
    lines = anomaly_csv.read_text(encoding="utf-8").splitlines()
    command = [
        sys.executable,
        "-m",
        "edgelstm",
        "run",
        str(anomaly_model.stream),
        "--stream",
        "--chunk",
        "2",
        "--input",
        "-",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    received: queue.Queue[str | None] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            received.put(line.rstrip("\n"))
        received.put(None)

    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()

    def next_line() -> str | None:
        try:
            return received.get(timeout=60)
        except queue.Empty:
            pytest.fail("no output from `edgelstm run --stream` within 60 s")

    try:
        proc.stdin.write("\n".join(lines[:3]) + "\n")  # header + 2 frames = one chunk
        proc.stdin.flush()
        first = [next_line() for _ in range(3)]
        assert proc.poll() is None, "the process ended although stdin is still open"
        assert first[0] == "frame,score,anomaly"
        proc.stdin.write("\n".join(lines[3:6]) + "\n")  # frames 2..4: one chunk and a half
        proc.stdin.close()
        rest = []
        while (line := next_line()) is not None:
            rest.append(line)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
    assert code == 0, err
    rows = _csv_rows("\n".join([*(str(line) for line in first), *rest]) + "\n")
    assert [int(r["frame"]) for r in rows] == [0, 1, 2, 3, 4]
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(scores, anomaly_reference[:5], atol=1e-5)
    assert "streamed 5 frames in 3 chunks" in err


def test_stream_model_python_api(
    anomaly_model: Exported, anomaly_csv: Path, anomaly_reference: np.ndarray
) -> None:
    assert anomaly_model.stream is not None
    values = np.loadtxt(anomaly_csv, delimiter=",", skiprows=1, dtype=np.float32)[:, :1]
    chunks: list[list[dict[str, Any]]] = []
    text = io.StringIO("\n".join(f"{v:.6f}" for v in values[:, 0]) + "\n")
    result = stream_model(anomaly_model.stream, text, chunks.append, chunk=16)
    assert result.frames == 200
    assert result.chunks == len(chunks) == math.ceil(200 / 16)
    assert [len(c) for c in chunks[:-1]] == [16] * (len(chunks) - 1)
    scores = np.array([row["score"] for c in chunks for row in c])
    np.testing.assert_allclose(scores, anomaly_reference, atol=1e-5)
    with pytest.raises(InvalidInputError, match="--chunk"):
        stream_model(anomaly_model.stream, io.StringIO("1\n"), chunks.append, chunk=0)


# ============================================================================================
# regressions: bugs found while writing these tests, fixed since


def test_stream_from_a_csv_file_closes_the_file(anomaly_model: Exported, anomaly_csv: Path) -> None:
    assert anomaly_model.stream is not None
    rows: list[dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream_model(anomaly_model.stream, anomaly_csv, rows.extend, chunk=50)
        gc.collect()
    assert len(rows) == 200
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


def test_json_output_with_nonfinite_values(
    cli: CliRunner, tmp_path: Path, double_model: Path
) -> None:
    source = tmp_path / "x.npy"
    np.save(source, np.array([[1.0, np.nan], [-np.inf, 3.0]], np.float32))
    out = tmp_path / "y.json"
    result = cli("run", double_model, "--input", source, "--output", out, "--allow-nonfinite")
    assert result.code == 0, result.err

    def no_bare_constants(token: str) -> None:
        raise AssertionError(f"{out} holds the non-JSON token {token}")

    # NaN and -Inf are written as null: strict JSON, which Python's own NaN/Infinity is not.
    document = json.loads(out.read_text(encoding="utf-8"), parse_constant=no_bare_constants)
    assert document == {
        "kind": "raw",
        "summary": {"outputs": {"y": [2, 2]}},
        "records": [{"y_0": 2.0, "y_1": None}, {"y_0": None, "y_1": 6.0}],
    }


def test_batching_leaves_optional_inputs_whole(tmp_path: Path, optional_model: Path) -> None:
    a = np.arange(9, dtype=np.float32).reshape(3, 3)
    scale = np.array([5.0, 6.0, 7.0], np.float32)
    source = tmp_path / "in.npz"
    np.savez(source, a=a, scale=scale)
    result = run_model(optional_model, source, tmp_path / "o.npz", options=RunOptions(batch_size=2))
    np.testing.assert_allclose(result.predictions.arrays["out"], a * scale)


def test_time_major_recurrent_model_is_not_cut_along_time(tmp_path: Path, lstm_model: Path) -> None:
    x = np.random.default_rng(4).normal(size=(300, 1, LSTM_INPUT)).astype(np.float32)
    source = tmp_path / "x.npz"
    np.savez(source, x=x)
    result = run_model(lstm_model, source, tmp_path / "y.npz")
    expected = _ort_session(lstm_model).run(None, {"x": x})[0]
    np.testing.assert_allclose(result.predictions.arrays["y"], expected, atol=1e-5)


def test_stream_refuses_a_headerless_line_with_extra_values(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, anomaly_model: Exported
) -> None:
    assert anomaly_model.stream is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO("0.1\n0.2,7.5\n0.3\n"))
    result = cli("run", anomaly_model.stream, "--stream", "--input", "-")
    assert result.code == 2, result
    assert "row 2 has 2 columns, expected 1" in result.err_lines[-1]


def test_scalar_input_model(tmp_path: Path) -> None:
    model = _save_onnx(
        tmp_path / "scalar.onnx",
        [helper.make_node("Neg", ["s"], ["o"])],
        [_tensor("s", TensorProto.FLOAT, [])],
        [_tensor("o", TensorProto.FLOAT, [])],
    )
    source = tmp_path / "s.npy"
    np.save(source, np.array(3.0, np.float32))
    run_model(model, source, tmp_path / "o.npy")
    out = np.load(tmp_path / "o.npy")
    assert out.shape == ()
    assert float(out) == -3.0


def test_stream_that_cannot_start_prints_nothing_on_stdout(
    cli: CliRunner, tmp_path: Path, anomaly_model: Exported, anomaly_csv: Path
) -> None:
    assert anomaly_model.stream is not None
    missing = tmp_path / "missing.csv"
    result = cli("run", anomaly_model.stream, "--stream", "--input", missing)
    assert_clean_failure(result, None, str(missing))
    assert result.out == ""
    result = cli("run", anomaly_model.model, "--stream", "--input", anomaly_csv)
    assert_clean_failure(result, None, "--streaming")
    assert result.out == ""


# ============================================================================================
# one reading of each artifact and input: `run`, `--stream` and `benchmark` agree


def _with_props(source: Path, out: Path, **changes: str | None) -> Path:
    """A copy of ``source`` with ``edgelstm.<key>`` metadata replaced (None: removed).

    The weights checksum covers the weights only, so the copy loads like a real artifact
    whose metadata went bad (a truncated write, a hand edit).
    """
    model = onnx.load(str(source))
    for key, value in changes.items():
        for prop in [p for p in model.metadata_props if p.key == PREFIX + key]:
            model.metadata_props.remove(prop)
        if value is not None:
            model.metadata_props.add(key=PREFIX + key, value=value)
    onnx.save(model, str(out))
    return out


def _sequence_csv(path: Path, classify_npz: Path, index: int = 0) -> Path:
    data = np.load(classify_npz)
    rows = data["X"][index, : int(data["lengths"][index])]
    body = "\n".join(",".join(f"{v:.8f}" for v in row) for row in rows)
    path.write_text("f0,f1,f2\n" + body + "\n", encoding="utf-8")
    return path


def test_corrupt_metadata_is_one_error_naming_the_key_everywhere(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    """Before: `run` swallowed the parse error and ran the model as a foreign one (raw,
    un-normalised logits from an .npz, exit 0; 'a model without edgelstm metadata' for a
    .csv), and `benchmark` timed it."""
    assert classify_model.stream is not None
    truncated = classify_model.meta.to_props()[PREFIX + "normalization"][:25]
    model = _with_props(classify_model.model, tmp_path / "bad.onnx", normalization=truncated)
    stream = _with_props(
        classify_model.stream, tmp_path / "bad.stream.onnx", normalization=truncated
    )
    x_only = tmp_path / "x.npz"
    np.savez(x_only, X=np.load(classify_npz)["X"][:4])
    seq_csv = _sequence_csv(tmp_path / "seq.csv", classify_npz)
    words = (str(model), "edgelstm.normalization", "not valid JSON", "export it again")

    for source in (x_only, seq_csv):
        out = tmp_path / "p.csv"
        assert_clean_failure(cli("run", model, "--input", source, "--output", out), out, *words)
    result = cli("run", stream, "--stream", "--input", seq_csv)
    assert_clean_failure(result, None, str(stream), "edgelstm.normalization", "not valid JSON")
    with pytest.raises(InvalidInputError, match=r"edgelstm\.normalization"):
        StreamingSession(stream)
    bench = ["--no-isolate", "--warmup", "0", "--iterations", "1", "--seq", "4"]
    assert_clean_failure(cli("benchmark", model, *bench), None, *words)


def test_run_and_stream_parse_the_model_once(
    cli: CliRunner,
    tmp_path: Path,
    classify_model: Exported,
    classify_npz: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: `run --stream` parsed the .onnx four times (the CLI's metadata read, the
    streaming session's own, the checksum, the profile) before ONNX Runtime read it."""
    assert classify_model.stream is not None
    seq_csv = _sequence_csv(tmp_path / "seq.csv", classify_npz)
    parsed: list[str] = []
    real = onnx.load

    def counted(path: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnx, "load", counted)
    result = cli("run", classify_model.stream, "--stream", "--chunk", "4", "--input", seq_csv)
    assert result.code == 0, result
    assert parsed == [str(classify_model.stream)]
    parsed.clear()
    out = tmp_path / "p.csv"
    assert cli("run", classify_model.model, "--input", seq_csv, "--output", out).code == 0
    assert parsed == [str(classify_model.model)]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("value\n0.1\n# sensor restarted\n0.2\n", ["row 3", "starts with '#'"]),
        ("value,1\n0.1,5\n0.2,6\n", ["row 1", "mixes names and numbers"]),
        ("value,other\n0.1,5\n0.2,6\n", ["2 feature(s)", "takes 1"]),
        ("value\n0.1\n1e39\n", ["row 3", "float32 range"]),
    ],
    ids=["comment", "mixed-header", "extra-column", "float32-overflow"],
)
def test_stream_reads_csv_with_the_rules_of_run(
    cli: CliRunner, tmp_path: Path, anomaly_model: Exported, text: str, words: list[str]
) -> None:
    """One CSV dialect. Before: the stream skipped '#' lines, took any row with a name in it
    for a header, picked the model's columns out of extra ones, and fed 1e39 on as Inf,
    where `run` on the same file refused each."""
    assert anomaly_model.stream is not None
    source = tmp_path / "frames.csv"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "scores.csv"
    whole = cli("run", anomaly_model.model, "--input", source, "--output", out)
    assert_clean_failure(whole, out, str(source), *words)
    streamed = cli("run", anomaly_model.stream, "--stream", "--input", source)
    # Rows before the bad one were streamed already; the error is the same line, word for word.
    assert streamed.code == 2, streamed
    assert streamed.err_lines == whole.err_lines


def test_stream_and_run_name_unlabelled_classes_alike(
    cli: CliRunner, tmp_path: Path, classify_model: Exported, classify_npz: Path
) -> None:
    """A classifier whose metadata lists no class labels (an export of a bare module records
    only the count). Before: `run` wrote prob_0, prob_1 and `--stream` no probabilities."""
    assert classify_model.stream is not None
    model = _with_props(classify_model.model, tmp_path / "m.onnx", class_labels=None)
    stream = _with_props(classify_model.stream, tmp_path / "m.stream.onnx", class_labels=None)
    seq_csv = _sequence_csv(tmp_path / "seq.csv", classify_npz)
    out = tmp_path / "p.csv"
    assert cli("run", model, "--input", seq_csv, "--output", out).code == 0
    whole = _read_csv(out)[0]
    result = cli("run", stream, "--stream", "--chunk", "1000", "--input", seq_csv)
    assert result.code == 0, result.err
    (last,) = _csv_rows(result.out)
    probabilities = ["prob_0", "prob_1"]
    assert list(whole) == ["index", "label", "confidence", *probabilities]
    assert list(last) == ["frame", "label", "confidence", *probabilities]
    assert last["label"] == whole["label"]
    for column in probabilities:
        assert float(last[column]) == pytest.approx(float(whole[column]), abs=1e-5)


def test_run_model_takes_an_artifact_read_once(
    classify_model: Exported, classify_npz: Path, tmp_path: Path
) -> None:
    artifact = load_artifact(classify_model.model)
    from_artifact = run_model(artifact, classify_npz, tmp_path / "artifact.npz")
    from_path = run_model(classify_model.model, classify_npz, tmp_path / "path.npz")
    assert from_artifact.opened.profile is artifact.profile
    np.testing.assert_array_equal(
        from_artifact.predictions.arrays["probabilities"],
        from_path.predictions.arrays["probabilities"],
    )


def test_onnx_runtime_whole_message_is_kept_for_debug(tmp_path: Path, cli: CliRunner) -> None:
    """ORT's messages were cut at 300 characters even with --debug, losing the cause that
    sits past them (inside an If branch); the one line stays, the whole text rides along."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    marker = "THE_CAUSE_IS_HERE"
    name = "n" * 400 + marker  # the node's name is in ORT's message, past 300 characters
    shape = numpy_helper.from_array(np.array([5, 7], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name=name)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.ones((2, 3), np.float32))
    out = tmp_path / "out.npz"
    plain = cli("run", path, "--input", inputs, "--output", out)
    assert_clean_failure(plain, out, "ONNX Runtime failed")
    assert marker not in plain.err
    with pytest.raises(InvalidInputError) as caught:
        cli("--debug", "run", path, "--input", inputs, "--output", out)
    assert any(marker in note for note in getattr(caught.value, "__notes__", []))
