"""`edgelstm` end to end, in process: success output, machine-readable output, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY, WINDOW, CliRunner, assert_clean_failure

from edgelstm import __version__

CHECKPOINT_FILES = {"config.json", "model.safetensors", "metrics.json", "checksums.json"}
DATASETS = (
    "JapaneseVowels",
    "BasicMotions",
    "ACSF1",
    "OSULeaf",
    "ItalyPowerDemand",
    "Airline",
    "KDD-TSAD_135",
    "ActivityStreams",
    "SpeakerTurns",
    "DigitStrings",
)


# --------------------------------------------------------------------------------------------
# success


def test_train_prints_metrics_table(cli: CliRunner, tmp_path: Path, classify_npz: Path) -> None:
    out = tmp_path / "run"
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert result.code == 0, result.err
    assert {p.name for p in out.iterdir()} == CHECKPOINT_FILES
    for word in ("test metrics", "accuracy", "macro_f1", "checkpoint:", str(out), "model cost:"):
        assert word in result.out
    # What --arch auto chose, and why, in one note on stderr.
    assert result.err.count("note: --arch auto, for ") == 1
    assert "sequences of median length" in result.err
    assert "- lstm read to its last step" in result.err
    # Progress (and, for this 2-epoch model, the chance-level warning) goes to stderr,
    # results to stdout.
    assert "test metrics" not in result.err
    assert "macro_f1" not in result.err
    assert "loss" in result.err
    assert "Traceback" not in result.err


def test_train_creates_missing_parent_folders(
    cli: CliRunner, tmp_path: Path, forecast_csv: Path
) -> None:
    out = tmp_path / "runs" / "nested" / "fc"
    result = cli(
        "train", "--task", "forecast", "--data", forecast_csv, "--out", out, *TINY, *WINDOW
    )
    assert result.code == 0, result.err
    assert {p.name for p in out.iterdir()} == CHECKPOINT_FILES


@pytest.mark.parametrize(
    ("task", "data_fixture", "extra", "keys"),
    [
        ("classify", "classify_npz", [], {"accuracy", "macro_f1"}),
        ("forecast", "forecast_csv", WINDOW, {"mae", "rmse", "smape", "baseline_mae"}),
        ("anomaly", "anomaly_csv", ["--lookback", "16"], {"threshold", "auroc", "f1"}),
    ],
)
def test_train_json_is_only_json_on_stdout(
    cli: CliRunner,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    task: str,
    data_fixture: str,
    extra: list[str],
    keys: set[str],
) -> None:
    out = tmp_path / "run"
    data = request.getfixturevalue(data_fixture)
    result = cli("train", "--task", task, "--data", data, "--out", out, "--json", *TINY, *extra)
    assert result.code == 0, result.err
    metrics = json.loads(result.out)  # the whole of stdout parses: no log lines mixed in
    assert keys <= set(metrics)
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert "loss" in result.err  # progress still shown, on stderr


def test_list_datasets(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide table, so no name is ellipsised
    result = cli("train", "--list-datasets")
    assert result.code == 0, result.err
    for name in DATASETS:
        assert name in result.out

    as_json = cli("train", "--list-datasets", "--json")
    assert as_json.code == 0, as_json.err
    rows = json.loads(as_json.out)
    assert [row["name"] for row in rows] == list(DATASETS)
    assert {row["name"]: row["task"] for row in rows} == {
        "JapaneseVowels": "classify",
        "BasicMotions": "classify",
        "ACSF1": "classify",
        "OSULeaf": "classify",
        "ItalyPowerDemand": "classify",
        "Airline": "forecast",
        "KDD-TSAD_135": "anomaly",
        "ActivityStreams": "tag",
        "SpeakerTurns": "tag",
        "DigitStrings": "transcribe",
    }


def test_providers_json(cli: CliRunner) -> None:
    result = cli("providers", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["schema"] == "edgelstm.providers/1"
    assert "CPUExecutionProvider" in {p["ep_name"] for p in report["providers"]}


def test_version(cli: CliRunner) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"edgelstm {__version__}"


def _flag_names(command: Any) -> set[str]:
    """Long names of the on/off flags of a click/typer command, ``--help`` included."""
    names = {"--help"}
    for param in command.params:
        if getattr(param, "is_flag", False):
            names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names


def test_no_help_shows_a_metavar_on_a_boolean_flag(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    import typer

    from edgelstm.cli import app

    monkeypatch.setenv("COLUMNS", "300")  # one row per option: nothing wraps
    group = typer.main.get_command(app)
    commands: dict[str, Any] = {"": group, **getattr(group, "commands", {})}
    assert {"run", "quantize", "benchmark"} <= set(commands)
    row = re.compile(r"^\W*(--[\w-]+)(.*)$")
    for name, command in commands.items():
        result = cli(*([name] if name else []), "--help")
        assert result.code == 0, result.err
        flags = _flag_names(command)
        seen = set()
        for line in result.out.splitlines():
            match = row.match(line)
            if match is None or match.group(1) not in flags:
                continue
            seen.add(match.group(1))
            # A flag takes no value: no <bool>/<BOOLEAN>/BOOLEAN placeholder in its row.
            assert not re.search(r"<[^>]*>|\bBOOL(EAN)?\b", match.group(2)), (name, line)
        assert "--help" in seen and len(seen) > 1, (name, result.out)


# --------------------------------------------------------------------------------------------
# bad inputs: exit 2, one `error:` line, nothing written

BadCase = Callable[[Path, dict[str, Path]], tuple[list[Any], tuple[str, ...]]]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _nan_npz(path: Path) -> Path:
    X = np.ones((10, 5, 2), dtype=np.float32)
    X[3, 2, 1] = np.nan
    return _npz(path, X=X, y=np.arange(10) % 2)


BAD_CASES: dict[str, BadCase] = {
    "unknown dataset": lambda d, f: (
        ["--task", "classify", "--dataset", "JapaneseVowel"],
        ("'JapaneseVowel'", "did you mean 'JapaneseVowels'"),
    ),
    "missing data file": lambda d, f: (
        ["--task", "classify", "--data", d / "missing.npz"],
        ("missing.npz", "not found"),
    ),
    "ragged csv": lambda d, f: (
        ["--task", "forecast", "--data", _write(d / "ragged.csv", "a,b\n1,2\n3\n4,5\n")],
        ("ragged.csv", "row 3", "1 columns, expected 2"),
    ),
    "non-numeric csv": lambda d, f: (
        ["--task", "forecast", "--data", _write(d / "words.csv", "a,b\n1,2\n3,oops\n")],
        ("words.csv", "row 3", "'oops' is not a number"),
    ),
    "header mixed with numbers": lambda d, f: (
        ["--task", "forecast", "--data", _write(d / "mixed.csv", "1.5,temp\n1,2\n3,4\n")],
        ("mixed.csv", "mixes names and numbers"),
    ),
    "wrong target column": lambda d, f: (
        ["--task", "forecast", "--data", f["forecast_csv"], "--target", "pressure"],
        ("forecast.csv", "'pressure'", "available columns", "'load'"),
    ),
    "header-only csv": lambda d, f: (
        ["--task", "forecast", "--data", _write(d / "header.csv", "a,b\n")],
        ("header.csv", "no data rows"),
    ),
    "empty npz X": lambda d, f: (
        [
            "--task",
            "classify",
            "--data",
            _npz(d / "empty.npz", X=np.zeros((0, 5, 2), "f4"), y=np.zeros(0, "i8")),
        ],
        ("empty.npz", "X is empty"),
    ),
    "NaN in npz": lambda d, f: (
        ["--task", "classify", "--data", _nan_npz(d / "nan.npz")],
        ("nan.npz", "X[3, 2, 1]", "NaN"),
    ),
    "NaN in csv": lambda d, f: (
        ["--task", "anomaly", "--data", _write(d / "gap.csv", "a,b\n1,2\n3,nan\n")],
        ("gap.csv", "row 3", "NaN"),
    ),
    "missing --task": lambda d, f: (["--data", f["forecast_csv"]], ("--task",)),
    "both --dataset and --data": lambda d, f: (
        ["--task", "forecast", "--dataset", "Airline", "--data", f["forecast_csv"]],
        ("exactly one of --dataset", "--data"),
    ),
    "neither --dataset nor --data": lambda d, f: (
        ["--task", "forecast"],
        ("exactly one of --dataset", "--data"),
    ),
    "dataset/task mismatch": lambda d, f: (
        ["--task", "forecast", "--dataset", "JapaneseVowels"],
        ("JapaneseVowels", "classify", "--task classify"),
    ),
    "missing test file": lambda d, f: (
        ["--task", "forecast", "--data", f["forecast_csv"], "--test", d / "absent.csv"],
        ("absent.csv", "not found"),
    ),
}


@pytest.fixture
def fixture_files(forecast_csv: Path, classify_npz: Path) -> dict[str, Path]:
    return {"forecast_csv": forecast_csv, "classify_npz": classify_npz}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_bad_input_gives_one_error_line(
    cli: CliRunner, tmp_path: Path, fixture_files: dict[str, Path], case: str
) -> None:
    args, words = BAD_CASES[case](tmp_path, fixture_files)
    out = tmp_path / "out" / "run"
    result = cli("train", *args, "--out", out, *TINY, *WINDOW)
    assert_clean_failure(result, out, *words)
    assert not out.parent.exists()


def test_missing_out_is_an_error(cli: CliRunner, tmp_path: Path, forecast_csv: Path) -> None:
    result = cli("train", "--task", "forecast", "--data", forecast_csv, *TINY)
    assert_clean_failure(result, tmp_path / "never", "--out")
    assert list(tmp_path.iterdir()) == []


def test_out_below_a_file_is_an_error(cli: CliRunner, tmp_path: Path, classify_npz: Path) -> None:
    blocker = _write(tmp_path / "notes.txt", "keep me")
    out = blocker / "run"
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert_clean_failure(result, out, "notes.txt", "is a file")
    assert blocker.read_text() == "keep me"


def test_existing_out_needs_overwrite(cli: CliRunner, tmp_path: Path, classify_npz: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    _write(out / "keep.txt", "old result")
    args = ["train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY]

    refused = cli(*args)
    assert refused.code == 2
    assert "Traceback" not in refused.err
    assert len(refused.err_lines) == 1
    assert refused.err_lines[0].startswith("error: ")
    assert str(out) in refused.err_lines[0]
    assert "--overwrite" in refused.err_lines[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "old result"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]

    replaced = cli(*args, "--overwrite")
    assert replaced.code == 0, replaced.err
    assert {p.name for p in out.iterdir()} == CHECKPOINT_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_existing_empty_out_is_used(cli: CliRunner, tmp_path: Path, classify_npz: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert result.code == 0, result.err
    assert {p.name for p in out.iterdir()} == CHECKPOINT_FILES


def test_bad_input_stderr_is_exactly_the_error_line(cli: CliRunner, tmp_path: Path) -> None:
    result = cli(
        "train", "--task", "classify", "--data", tmp_path / "missing.npz", "--out", tmp_path / "r"
    )
    assert result.code == 2
    assert result.err.startswith("error: ")
    assert result.err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["train", "--task", "bogus"], "bogus"),
        (["train", "--task", "classify", "--hidden", "0"], "--hidden"),
        (["train", "--no-such-option"], "--no-such-option"),
    ],
    ids=["bad choice", "out of range", "unknown option"],
)
def test_usage_errors_give_one_error_line(
    cli: CliRunner, tmp_path: Path, args: list[str], word: str
) -> None:
    out = tmp_path / "run"
    result = cli(*args, "--out", out)
    assert_clean_failure(result, out, word)


def test_debug_shows_traceback(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["--debug", "train", "--task", "classify", "--data", str(tmp_path / "missing.npz")]
    proc = subprocess.run(
        [sys.executable, "-m", "edgelstm", *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "InvalidInputError" in proc.stderr
    assert "missing.npz" in proc.stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# the atomic folder guarantee


def test_interrupt_while_writing_leaves_no_folder(
    cli: CliRunner, tmp_path: Path, classify_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    written: list[Path] = []

    def half_write(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"\x00" * 16)  # a partial weights file...
        written.append(Path(filename))
        raise KeyboardInterrupt  # ...then Ctrl-C

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    out = tmp_path / "run"
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert written, "save_file was never reached"
    assert "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []


def test_interrupt_exits_130(
    cli: CliRunner, tmp_path: Path, classify_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelstm.training.trainer

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(edgelstm.training.trainer, "fit_model", interrupted)
    out = tmp_path / "run"
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert result.code == 130
    assert "interrupted" in result.err
    assert not out.exists()


def test_failure_after_training_leaves_old_folder_untouched(
    cli: CliRunner, tmp_path: Path, forecast_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelstm.training.checkpoint

    out = tmp_path / "run"
    out.mkdir()
    _write(out / "keep.txt", "old result")

    class DiskFull(OSError):
        pass

    def failing_to_dict(*args: Any, **kwargs: Any) -> Any:
        raise DiskFull("no space left on device")

    # config.json is the first file written into the temporary folder.
    monkeypatch.setattr(edgelstm.training.checkpoint, "to_dict", failing_to_dict)
    with pytest.raises(DiskFull):
        cli(
            "train", "--task", "forecast", "--data", forecast_csv, "--out", out, "--overwrite",
            *TINY, *WINDOW,
        )  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failure_in_evaluation_writes_nothing(
    cli: CliRunner, tmp_path: Path, classify_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgelstm.training.trainer
    from edgelstm.errors import CheckFailedError

    def failing_task_metrics(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailedError("evaluation failed on purpose")

    monkeypatch.setattr(edgelstm.training.trainer, "task_metrics", failing_task_metrics)
    out = tmp_path / "run"
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert result.code == 1  # a check failed, not bad input
    assert "Traceback" not in result.err
    # Progress lines came first (training ran); the error is the one last line.
    assert result.err_lines[-1] == "error: evaluation failed on purpose"
    assert sum(line.startswith("error:") for line in result.err_lines) == 1
    assert result.out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "text"),
    [("benchmark", "edgelstm[plot]"), ("train", "y[,"), ("quantize", "[n,")],
)
def test_bracketed_help_text_is_not_eaten_as_markup(
    cli: CliRunner, command: str, text: str
) -> None:
    # typer renders help with rich, which takes "[plot]" for a style tag and drops it.
    result = cli(command, "--help")
    assert result.code == 0
    assert text in result.out


def test_chunk_without_stream_is_refused_not_ignored(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    result = cli("run", tmp_path / "m.onnx", "--input", tmp_path / "x.npz", "--output", out,
                 "--chunk", "4")  # fmt: skip
    assert_clean_failure(result, out, "--chunk 4 applies only to --stream")
