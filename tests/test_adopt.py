"""``edgelstm adopt``: a foreign stateful ONNX model, its contract declared once in a copy,
streams through ``run --stream``, ``serve`` and ``bundle``/``verify`` like an edgelstm model.

Two models built here from scratch (random weights, no downloads): a conv + LSTM
voice-activity detector with explicit state that takes one window per call and a constant
sample-rate input (the shape of a widely used VAD), and a GRU encoder with state that takes
chunks of frames and gives an output per frame.
"""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import numpy as np
import pytest

from edgelstm.fileio import file_sha256
from tests.conftest import CliRunner, assert_clean_failure, serving

WINDOW, HIDDEN = 64, 16


def _torch_export(*args: object, **kwargs: object) -> None:
    """torch.onnx.export (TorchScript), as the third party that made the model ran it."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notice about its legacy exporter
        torch.onnx.export(*args, **kwargs)  # type: ignore[arg-type]


def _export_vad(path: Path) -> Path:
    import torch
    from torch import nn

    class VAD(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 8, kernel_size=8, stride=4)
            self.lstm = nn.LSTM(8, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, 1)

        def forward(self, window, sr, h, c):  # type: ignore[no-untyped-def]
            z = torch.relu(self.conv(window.unsqueeze(1))).mean(dim=2, keepdim=True)
            z = z.transpose(1, 2) * (sr.to(z.dtype) / 16000.0)
            y, (hn, cn) = self.lstm(z, (h, c))
            return torch.sigmoid(self.head(y[:, -1])), hn, cn

    torch.manual_seed(0)
    args = (torch.randn(1, WINDOW), torch.tensor(16000), torch.zeros(1, 1, HIDDEN),
            torch.zeros(1, 1, HIDDEN))  # fmt: skip
    batch = {0: "batch"}
    _torch_export(
        VAD().eval(), args, str(path), input_names=["input", "sr", "h", "c"],
        output_names=["output", "hn", "cn"], opset_version=17, dynamo=False,
        dynamic_axes={"input": batch, "output": batch, "h": {1: "batch"}, "c": {1: "batch"},
                      "hn": {1: "batch"}, "cn": {1: "batch"}},
    )  # fmt: skip
    return path


def _export_encoder(path: Path) -> Path:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, frames, state):  # type: ignore[no-untyped-def]
            y, new = self.gru(frames, state)
            return self.head(y), new

    torch.manual_seed(1)
    args = (torch.randn(1, 5, 3), torch.zeros(1, 1, 8))
    _torch_export(
        Encoder().eval(), args, str(path), input_names=["frames", "state"],
        output_names=["logits", "state_next"], opset_version=17, dynamo=False,
        dynamic_axes={"frames": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"},
                      "state": {1: "batch"}, "state_next": {1: "batch"}},
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def vad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The VAD, its adopted copy, and six windows as CSV rows."""
    from edgelstm.cli import main

    folder = tmp_path_factory.mktemp("vad")
    original = _export_vad(folder / "vad.onnx")
    before = file_sha256(original)
    adopted = folder / "vad.stream.onnx"
    assert main(["adopt", str(original), "--out", str(adopted), "--state", "h=hn",
                 "--state", "c=cn", "--constant", "sr=16000"]) == 0  # fmt: skip
    assert file_sha256(original) == before  # the original is never modified
    windows = folder / "windows.csv"
    np.savetxt(windows, np.random.default_rng(1).standard_normal((6, WINDOW)), delimiter=",")
    return {"original": original, "adopted": adopted, "windows": windows}


def _vad_reference(original: Path, windows: np.ndarray) -> list[float]:
    """The original model run the way its users run it: one window per call, state carried."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    h = c = np.zeros((1, 1, HIDDEN), np.float32)
    out = []
    for window in windows.astype(np.float32):
        feeds = {"input": window[None], "sr": np.array(16000, np.int64), "h": h, "c": c}
        prob, h, c = session.run(None, feeds)
        out.append(float(prob[0, 0]))
    return out


def test_adopted_vad_streams_the_originals_outputs_window_by_window(
    vad: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    """Before adopt: `run --stream` refused it ('no edgelstm metadata')."""
    refused = cli("run", vad["original"], "--stream", "--input", vad["windows"])
    assert_clean_failure(refused, None, "edgelstm")
    rows_csv = tmp_path / "rows.csv"
    result = cli("run", vad["adopted"], "--stream", "--input", vad["windows"], "--output", rows_csv)
    assert result.code == 0, result.err
    with rows_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["frame"] for r in rows] == [str(i) for i in range(6)]
    want = _vad_reference(vad["original"], np.loadtxt(vad["windows"], delimiter=","))
    assert [float(r["output"]) for r in rows] == want  # exact: the same graph, same feeds
    many = cli("run", vad["adopted"], "--stream", "--chunk", "2", "--input", vad["windows"])
    assert_clean_failure(many, None, "--chunk 2", "exactly 1 frame(s)")


def test_adopted_vad_serves_one_window_per_request_with_the_same_rows(
    vad: dict[str, Path],
) -> None:
    from edgelstm.runtimes.ort.artifact import load_artifact
    from edgelstm.runtimes.serve import create_app

    windows = np.loadtxt(vad["windows"], delimiter=",")
    want = _vad_reference(vad["original"], windows)

    async def scenario() -> None:
        async with serving(create_app(load_artifact(vad["adopted"]))) as client:
            got = []
            for window in windows:
                reply = await client.post(
                    "/v1/streams/mic-1/frames", json={"frames": [window.tolist()]}
                )
                assert reply.status_code == 200, reply.text
                got += [row["output"] for row in reply.json()["rows"]]
            assert got == pytest.approx(want, abs=1e-6)
            two = await client.post(
                "/v1/streams/mic-2/frames", json={"frames": windows[:2].tolist()}
            )
            assert two.status_code == 422 and "exactly 1 frame" in two.json()["error"]
            model = (await client.get("/v1/model")).json()
            assert model["task"] == "raw" and model["frames_per_request"] == 1

    asyncio.run(scenario())


def test_adopted_vad_bundles_and_verifies(
    vad: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    from tests.test_device_bundle import make_wheel

    index = tmp_path / "index"
    make_wheel(index, "onnxruntime", "1.32.0", "cp311-cp311-manylinux_2_28_aarch64")
    for name in ("numpy", "typer", "rich", "onnx", "protobuf"):
        make_wheel(index, name, "99.0", "py3-none-any")
    out = tmp_path / "pi"
    built = cli("bundle", vad["adopted"], "--out", out, "--find-links", index, "--no-index")
    assert built.code == 0, built.err
    verified = cli("verify", out)
    assert verified.code == 0, verified.err
    assert verified.out.strip().splitlines()[-1].startswith("verified: 1 model(s), 9 outputs")


def test_a_chunked_encoder_is_checked_and_streams_per_frame(tmp_path: Path, cli: CliRunner) -> None:
    import onnxruntime as ort

    original = _export_encoder(tmp_path / "encoder.onnx")
    adopted = tmp_path / "encoder.stream.onnx"
    result = cli("adopt", original, "--out", adopted, "--state", "state=state_next")
    assert result.code == 0, result.err
    assert "two chunks of 2 frames equal one run of 4" in result.err
    assert "rows: one per frame, columns logits_0, logits_1" in result.err
    frames = np.random.default_rng(2).standard_normal((9, 3)).astype(np.float32)
    (tmp_path / "f.csv").write_text("\n".join(",".join(map(str, f)) for f in frames.tolist()))
    rows_csv = tmp_path / "rows.csv"
    ran = cli("run", adopted, "--stream", "--chunk", "3", "--input", tmp_path / "f.csv",
              "--output", rows_csv)  # fmt: skip
    assert ran.code == 0, ran.err
    with rows_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    whole = ort.InferenceSession(str(original)).run(
        None, {"frames": frames[None], "state": np.zeros((1, 1, 8), np.float32)}
    )[0][0]
    got = np.array([[float(r["logits_0"]), float(r["logits_1"])] for r in rows])
    assert [int(r["frame"]) for r in rows] == list(range(9))
    np.testing.assert_allclose(got, whole, atol=1e-5)


def test_classify_task_names_the_classes(tmp_path: Path, cli: CliRunner) -> None:
    original = _export_encoder(tmp_path / "encoder.onnx")
    wrong = cli("adopt", original, "--out", tmp_path / "a.onnx", "--state", "state=state_next",
                "--task", "classify", "--classes", "a,b,c")  # fmt: skip
    assert_clean_failure(wrong, tmp_path / "a.onnx", "--classes names 3", "has 2")
    right = cli("adopt", original, "--out", tmp_path / "a.onnx", "--state", "state=state_next",
                "--task", "classify", "--classes", "speech,silence")  # fmt: skip
    assert right.code == 0, right.err
    from edgelstm.metadata import read_metadata

    meta = read_metadata(tmp_path / "a.onnx")
    assert meta.task == "classify" and meta.class_labels == ("speech", "silence")


def test_adopt_refusals_name_the_fix(vad: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    out = tmp_path / "a.onnx"
    original = vad["original"]
    cases = [
        ((), ["name its state pairs", "--state h=hn"]),
        (("--state", "h=hn"), ["inputs c, sr", "--constant NAME=VALUE"]),
        (("--state", "h=hx", "--state", "c=cn", "--constant", "sr=16000"), ["no output `hx`"]),
        (("--state", "q=hn", "--state", "c=cn", "--constant", "sr=16000"), ["no input `q`"]),
        (("--state", "h", "--state", "c=cn"), ["--state h", "NAME=VALUE"]),
        (("--state", "h=hn", "--state", "c=cn", "--constant", "sr=fast"), ["--constant sr=fast"]),
        (("--state", "h=hn", "--state", "c=cn", "--constant", "sr=16000", "--task", "tag"),
         ["--task tag", "raw, classify"]),
    ]  # fmt: skip
    for args, words in cases:
        assert_clean_failure(cli("adopt", original, "--out", out, *args), out, *words)
    again = cli("adopt", vad["adopted"], "--out", out, "--state", "h=h_out")
    assert_clean_failure(again, out, "already streams")
    same = cli("adopt", original, "--out", original, "--state", "h=hn")
    assert_clean_failure(same, None, "never modifies")


def _fixed_batch(original: Path, path: Path, dims: dict[str, list[int]]) -> Path:
    """``original`` with the given inputs' and outputs' shapes fixed (a model exported at
    batch 1, as many are)."""
    import onnx

    proto = onnx.load(str(original))
    for value in (*proto.graph.input, *proto.graph.output):
        for axis, size in enumerate(dims.get(value.name, [])):
            if size:
                value.type.tensor_type.shape.dim[axis].dim_value = size
    onnx.save(proto, str(path))
    return path


def test_a_state_without_a_batch_axis_runs_one_stream_per_call(
    tmp_path: Path, cli: CliRunner
) -> None:
    """State [1, 1, 8] fixed: its size-1 axis stands for the one stream of each call; run
    --stream, serve (two streams, served in turn) and bundle golden files all hold."""
    import onnxruntime as ort

    from edgelstm.runtimes.ort.artifact import load_artifact
    from edgelstm.runtimes.serve import ServeLimits, create_app

    original = _export_encoder(tmp_path / "encoder.onnx")
    fixed = _fixed_batch(original, tmp_path / "fixed.onnx",
                         {"state": [1, 1, 8], "state_next": [1, 1, 8], "frames": [1]})  # fmt: skip
    adopted = tmp_path / "fixed.stream.onnx"
    result = cli("adopt", fixed, "--out", adopted, "--state", "state=state_next")
    assert result.code == 0, result.err
    assert "one stream per call" in result.err
    frames = np.random.default_rng(4).standard_normal((6, 3)).astype(np.float32)
    whole = ort.InferenceSession(str(original)).run(
        None, {"frames": frames[None], "state": np.zeros((1, 1, 8), np.float32)}
    )[0][0]

    async def scenario() -> None:
        app = create_app(load_artifact(adopted), limits=ServeLimits(max_batch=16))
        async with serving(app) as client:
            replies = await asyncio.gather(*(
                client.post(f"/v1/streams/s{i}/frames", json={"frames": frames.tolist()})
                for i in range(2)
            ))  # fmt: skip
            for reply in replies:
                assert reply.status_code == 200, reply.text
                got = [[r["logits_0"], r["logits_1"]] for r in reply.json()["rows"]]
                np.testing.assert_allclose(got, whole, atol=1e-5)

    asyncio.run(scenario())
    from edgelstm.runtimes.device.golden import record_golden

    golden = record_golden(adopted, tmp_path / "g.npz")
    assert all(c.feeds["state"].shape == (1, 1, 8) for c in golden.cases)


def test_a_state_without_any_stream_axis_is_refused_with_the_reason(
    tmp_path: Path, cli: CliRunner
) -> None:
    original = _export_encoder(tmp_path / "encoder.onnx")
    proto_path = _fixed_batch(original, tmp_path / "two.onnx",
                              {"state": [1, 2, 8], "state_next": [1, 2, 8]})  # fmt: skip
    out = tmp_path / "a.onnx"
    result = cli("adopt", proto_path, "--out", out, "--state", "state=state_next")
    assert_clean_failure(result, out, "state `state`", "one stream axis")


def test_benchmark_times_an_adopted_window_model_one_window_per_call(
    vad: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    import json

    report = tmp_path / "r.json"
    fast = ("--no-isolate", "--warmup", "1", "--iterations", "3")
    result = cli("benchmark", vad["adopted"], "--stream", "--chunk", "1,10", "--seq", "100",
                 *fast, "--json", report)  # fmt: skip
    assert result.code == 0, result.err
    rows = json.loads(report.read_text())["rows"]
    assert sorted((r["mode"], r.get("chunk") or r["seq"]) for r in rows) == [
        ("sequence", 1), ("streaming", 1),
    ]  # fmt: skip
