"""What the CLI and the library tell their users matches what they do: refit notes, files
that are not NumPy's, --help bounds, advice to Python callers and train's --preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import InvalidInputError, OutputExistsError
from tests.conftest import (
    TINY,
    TINY_KW,
    WINDOW,
    CliRunner,
    assert_clean_failure,
    write_tag_npz,
    write_transcribe_npz,
)

# --------------------------------------------------------------------------------------------
# 1. the refit note: only classify and forecast retrain on training + validation data


def _task_data(task: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str | Path]:
    """``--data`` (and window options) of a tiny run of ``task``."""
    if task == "tag":
        return ["--data", write_tag_npz(tmp_path / "tag.npz")]
    if task == "transcribe":
        return ["--data", write_transcribe_npz(tmp_path / "transcribe.npz")]
    fixture = {"classify": "classify_npz", "forecast": "forecast_csv", "anomaly": "anomaly_csv"}
    windows = WINDOW if task == "forecast" else WINDOW[:2] if task == "anomaly" else []
    return ["--data", request.getfixturevalue(fixture[task]), *windows]


@pytest.mark.parametrize(
    ("task", "refits"),
    [
        ("anomaly", False),
        ("tag", False),
        ("transcribe", False),
        ("classify", True),
        ("forecast", True),
    ],
)
def test_the_refit_note_says_what_the_task_does(
    cli: CliRunner, tmp_path: Path, request: pytest.FixtureRequest, task: str, refits: bool
) -> None:
    """--arch auto's reasons promise a refit only for the tasks that run one."""
    out = tmp_path / "run"
    data = _task_data(task, tmp_path, request)
    result = cli("train", "--task", task, *data, "--out", out, *TINY, "--json")
    assert result.code == 0, result.err
    notes = " ".join(result.err.split())  # rich wraps the note lines
    assert "up to 2 epochs" in notes, notes  # the reasons were printed at all
    metrics = json.loads(result.out)
    recorded = json.loads((out / "config.json").read_text(encoding="utf-8"))["train"]["refit"]
    assert recorded is refits
    if refits:
        assert "then a refit on training + validation data" in notes, notes
        assert metrics["refit_epochs"] > 0
    else:
        assert "refit" not in notes, notes
        assert metrics["refit_epochs"] == 0


# --------------------------------------------------------------------------------------------
# 2. a file that is not NumPy's under a NumPy name


def test_text_named_npz_is_called_what_it_is(
    cli: CliRunner, tmp_path: Path, anomaly_csv: Path
) -> None:
    """A CSV saved as .npz is not "an object (pickled) array": np.load's pickle fallback
    said so before."""
    data = tmp_path / "series.npz"
    data.write_bytes(anomaly_csv.read_bytes())
    out = tmp_path / "run"
    result = cli("train", "--task", "anomaly", "--data", data, "--out", out, *TINY)
    assert_clean_failure(result, out, str(data), "not a NumPy .npz file", "rename it to .csv")
    assert "pickle" not in result.err


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.npz", b"", ["not a NumPy .npz file", "empty", "np.savez("]),
        ("notes.npy", b"just some words\n", ["not a NumPy .npy file", "text", "np.save("]),
        ("table.npy", b"a;b\n1;2\n", ["not a NumPy .npy file", "rename it to .csv"]),
        ("bytes.npz", bytes(range(256)), ["not a NumPy .npz file", "zip archive"]),
    ],
)
def test_other_formats_under_numpy_names(
    tmp_path: Path, name: str, content: bytes, words: list[str]
) -> None:
    from edgelstm.data.arrays import read_arrays

    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidInputError) as info:
        read_arrays(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "pickled" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_object_arrays_in_a_real_npz_are_still_refused(cli: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "objects.npz"
    X = np.zeros((4, 5, 1), dtype=np.float32)
    np.savez(data, X=X, y=np.array([0, 1, "a", None], dtype=object))
    out = tmp_path / "run"
    result = cli("train", "--task", "classify", "--data", data, "--out", out, *TINY)
    assert_clean_failure(result, out, str(data), "object (pickled) array", "refused for safety")


def test_transcribe_texts_saved_as_objects_keep_their_hint(tmp_path: Path) -> None:
    from edgelstm.data.labelled import read_transcripts

    path = tmp_path / "texts.npz"
    np.savez(path, X=np.zeros((2, 4, 1), dtype=np.float32), y=np.array(["ab", "c"], dtype=object))
    with pytest.raises(InvalidInputError, match=r"np\.array\(texts, dtype=str\)"):
        read_transcripts(path)


def test_a_renamed_npy_still_loads_as_npz(tmp_path: Path) -> None:
    """np.load reads either format whatever the name, so the magic check accepts both."""
    from edgelstm.data.arrays import read_arrays

    path = tmp_path / "x.npz"
    with path.open("wb") as handle:
        np.save(handle, np.ones((2, 3, 1), dtype=np.float32))
    assert read_arrays(path)["X"].shape == (2, 3, 1)


# --------------------------------------------------------------------------------------------
# 3. floats that must be > 0: --help and the parser agree


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        (["export", "run_dir", "--out", "m.onnx"], "--atol", "0"),
        (["export", "run_dir", "--out", "m.onnx"], "--atol", "-1e-5"),
        (["train", "--task", "classify", "--out", "run"], "--lr", "0"),
        (["run", "m.onnx", "--input", "x.npz"], "--cpus-per-worker", "0"),
    ],
)
def test_positive_floats_refuse_zero_as_help_says(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, command: list[str], option: str, value: str
) -> None:
    result = cli(*command, option, value)
    assert_clean_failure(result, None, option, "must be > 0")
    row = _help_row(cli, monkeypatch, command[0], option)
    assert "must be > 0" in row and "x>=0" not in row, row


def _help_row(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, command: str, option: str) -> str:
    """The line of ``edgelstm COMMAND --help`` that describes ``option``."""
    monkeypatch.setenv("COLUMNS", "300")  # one row per option: nothing wraps
    rows = [line for line in cli(command, "--help").out.splitlines() if f" {option} " in line]
    assert rows, f"{option} not in {command} --help"
    return rows[0]


# --------------------------------------------------------------------------------------------
# 4. an existing output: the fix in both spellings


def test_python_callers_are_told_overwrite_true(tmp_path: Path, classify_npz: Path) -> None:
    from edgelstm.training.trainer import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputExistsError) as info:
        train("classify", data=classify_npz, out=out, **TINY_KW)
    message = str(info.value)
    assert "overwrite=True" in message and "--overwrite" in message
    assert "\n" not in message


def test_cli_callers_are_told_overwrite_flag(
    cli: CliRunner, tmp_path: Path, classify_npz: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = cli("train", "--task", "classify", "--data", classify_npz, "--out", out, *TINY)
    assert result.code == 2
    assert len(result.err_lines) == 1 and "--overwrite" in result.err_lines[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# --------------------------------------------------------------------------------------------
# 5. train --preset


def test_preset_choices_are_the_library_presets() -> None:
    from edgelstm.cli.train import PresetChoice
    from edgelstm.config import TRAIN_PRESETS

    assert [choice.value for choice in PresetChoice] == list(TRAIN_PRESETS)


def _trained_settings(out: Path) -> dict[str, object]:
    settings: dict[str, object] = json.loads((out / "config.json").read_text(encoding="utf-8"))[
        "train"
    ]
    return settings


def test_train_preset_smoke_is_recorded(cli: CliRunner, tmp_path: Path, classify_npz: Path) -> None:
    from edgelstm.config import TRAIN_PRESETS

    smoke = TRAIN_PRESETS["smoke"]
    out = tmp_path / "run"
    tiny = ["--hidden", "8", "--layers", "1"]
    result = cli(
        "train", "--task", "classify", "--data", classify_npz, "--preset", "smoke", "--out", out,
        *tiny, "--dtw-budget", "0",
    )  # fmt: skip
    assert result.code == 0, result.err
    settings = _trained_settings(out)
    assert (settings["epochs"], settings["patience"]) == (smoke.epochs, smoke.patience)
    assert settings["min_refit_epochs"] == smoke.min_refit_epochs

    # Flags given beside the preset win over it; what they leave alone stays the preset's.
    again = tmp_path / "again"
    result = cli(
        "train", "--task", "classify", "--data", classify_npz, "--preset", "smoke", "--out",
        again, *tiny, "--epochs", "3", "--batch-size", "5", "--dtw-budget", "0",
    )  # fmt: skip
    assert result.code == 0, result.err
    settings = _trained_settings(again)
    assert (settings["epochs"], settings["batch_size"]) == (3, 5)
    assert settings["patience"] == smoke.patience


def test_train_preset_is_a_choice(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = cli("train", "--task", "classify", "--out", tmp_path / "run", "--preset", "fast")
    assert_clean_failure(result, tmp_path / "run", "--preset")
    row = _help_row(cli, monkeypatch, "train", "--preset")
    assert "default|smoke" in row.replace(" ", "") and "smoke (2 epochs" in row, row


def test_log_and_result_lines_stay_whole_in_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    """Outside a terminal rich would wrap at 80 columns, splitting a note mid-sentence in a
    log file; each message stays one line there (tables keep their own layout)."""
    from edgelstm.cli.console import stderr_console, stdout_console

    message = "note: " + "word " * 40
    stderr_console().print(message)
    stdout_console(min_width=120).print(message)
    captured = capsys.readouterr()
    assert captured.err.strip() == message.strip()
    assert captured.out.strip() == message.strip()


def test_example_and_inputs_files_are_read_by_the_one_numpy_reader(tmp_path: Path) -> None:
    """--example (export) and --inputs (benchmark) refuse a CSV under an .npz name as what it
    is, and an object array as a pickle, like every other NumPy input."""
    from edgelstm.benchmarks.model_inputs import read_input_arrays
    from edgelstm.exporters.user_inputs import _load_example

    text = tmp_path / "frames.npz"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInputError, match=r"--inputs .*frames.npz: is not a NumPy .npz"):
        read_input_arrays(text)
    with pytest.raises(InvalidInputError, match=r"--example .*frames.npz: is not a NumPy .npz"):
        _load_example(text, ("x",))
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InvalidInputError, match=r"object \(pickled\) array"):
        read_input_arrays(pickled)
    np.savez(tmp_path / "good.npz", x=np.ones((1, 3, 2), np.float32))
    assert read_input_arrays(tmp_path / "good.npz")["x"].shape == (1, 3, 2)
