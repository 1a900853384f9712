"""The device side runs without torch: `run`, `run --stream`, `benchmark` and `providers` on
exported models, in a process where torch and the other training/data extras cannot be
imported (as on a `pip install "edgelstm[cpu]"` device). Commands that need torch say which
extra to install. CI repeats this in a real second environment (.ci/device-install); this
test keeps it true between CI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelstm.training.trainer import TrainResult

#: Modules that only the train/data/plot extras install.
ABSENT = ("torch", "safetensors", "onnxscript", "aeon", "matplotlib")

# Makes the modules above look uninstalled to `import` and to importlib.util.find_spec alike,
# then runs the code given after it (the CLI by default).
_ABSENT_FINDER = f"""
import importlib.abc, sys

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Absent())
"""
_LAUNCHER = (
    _ABSENT_FINDER
    + f"""
from edgelstm.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in {ABSENT!r} if m in sys.modules)
assert not loaded, loaded
sys.exit(code)
"""
)


def _device(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *map(str, argv)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, trained_classify: TrainResult, classify_npz: Path
) -> dict[str, Path]:
    from edgelstm.exporters.onnx import export

    folder = tmp_path_factory.mktemp("device")
    export(trained_classify.out, folder / "model.onnx")
    export(trained_classify.out, folder / "model.stream.onnx", streaming=True)
    frames = np.load(classify_npz)["X"][0]
    np.savetxt(folder / "frames.csv", frames, delimiter=",")
    return {
        "model": folder / "model.onnx",
        "stream": folder / "model.stream.onnx",
        "frames": folder / "frames.csv",
    }


def test_run_gives_the_same_predictions_without_torch(
    exported: dict[str, Path], classify_npz: Path, tmp_path: Path
) -> None:
    from edgelstm.cli import main

    assert (
        main(
            [
                "run",
                str(exported["model"]),
                "--input",
                str(classify_npz),
                "--output",
                str(tmp_path / "with.csv"),
            ]
        )
        == 0
    )
    result = _device(
        "run", exported["model"], "--input", classify_npz, "--output", tmp_path / "without.csv"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "without.csv").read_text() == (tmp_path / "with.csv").read_text()


def test_streaming_without_torch(exported: dict[str, Path]) -> None:
    result = _device(
        "run", exported["stream"], "--stream", "--chunk", "4", "--input", exported["frames"]
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip()]
    frames = len(np.loadtxt(exported["frames"], delimiter=",", ndmin=2))
    assert rows[0].startswith("frame,label,confidence")
    assert len(rows) == 1 + -(-frames // 4)  # a header, then one row per chunk


def test_benchmark_skips_the_pytorch_rows_and_still_scores_the_models(
    exported: dict[str, Path], trained_classify: TrainResult, tmp_path: Path
) -> None:
    report = tmp_path / "bench.json"
    run = trained_classify.out
    result = _device(
        "benchmark", exported["model"], "--torch", run, "--eval", run,
        "--iterations", "5", "--warmup", "1", "--rounds", "1", "--json", report,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "note: skipped pytorch: PyTorch baselines need torch, which is not installed: "
        "pip install 'edgelstm[train]'" in result.stderr
    )
    document = json.loads(report.read_text())
    (row,) = document["rows"]
    # The checkpoint's baselines come from metrics.json, which needs no torch.
    assert document["baselines"]["values"] == trained_classify.metrics["baselines"]["values"]
    assert isinstance(row["clears_chance"], bool)
    assert row["runtime"] == "onnxruntime"
    # --eval scores the ONNX model on the checkpoint's test split without torch, and gets
    # the checkpoint's own accuracy.
    assert row["metric"] == "accuracy"
    assert row["metric_value"] == pytest.approx(trained_classify.metrics["accuracy"])


def test_quantize_and_its_accuracy_gate_run_without_torch(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "model.int8.onnx"
    result = _device("quantize", exported["model"], "--mode", "dynamic-int8", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "accuracy gate passed" in result.stdout
    # The checkpoint's baselines are read from metrics.json, without torch or aeon.
    assert "baselines (accuracy on the same test split): majority " in result.stdout
    assert out.is_file()


def test_benchmark_of_only_a_checkpoint_needs_torch(trained_classify: TrainResult) -> None:
    result = _device("benchmark", "--torch", trained_classify.out)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --torch {trained_classify.out}: PyTorch baselines need torch, which is not "
        "installed: pip install 'edgelstm[train]'"
    ]


def test_providers_without_torch() -> None:
    result = _device("providers", "--json")
    assert result.returncode == 0, result.stderr
    assert "cpu" in {p["name"] for p in json.loads(result.stdout)["providers"]}


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--task", "classify", "--dataset", "JapaneseVowels", "--out", "{tmp}/run"],
        ["export", "{run}", "--out", "{tmp}/model.onnx"],
        ["quickstart", "--out", "{tmp}/qs"],
    ],
    ids=["train", "export", "quickstart"],
)
def test_commands_that_need_torch_name_the_extra(
    argv: list[str], trained_classify: TrainResult, tmp_path: Path
) -> None:
    args = [a.format(tmp=tmp_path, run=trained_classify.out) for a in argv]
    result = _device(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: edgelstm {args[0]} needs torch, which is not installed: "
        "pip install 'edgelstm[train]'"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_names_the_extra_too() -> None:
    code = _ABSENT_FINDER + (
        "import edgelstm\n"
        "try:\n"
        "    edgelstm.train\n"
        "except edgelstm.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "edgelstm.train needs torch, which is not installed: pip install 'edgelstm[train]'"
    )
