"""`python -m edgelstm.benchmarks.suites.sequence_labelling` and its plain PyTorch bar, run on
tiny synthetic sets with tiny models (the suite itself trains on the built-in sets for a long
time and is run by hand)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import single_thread, write_tag_npz, write_transcribe_npz

from edgelstm.benchmarks.suites import sequence_labelling as suite
from edgelstm.benchmarks.suites import sequence_labelling_report as report
from edgelstm.benchmarks.suites.torch_ctc_baseline import train_and_evaluate
from edgelstm.data.readers import load_training_data
from edgelstm.data.types import Transcripts

TINY = suite.Settings(seeds=(0,), epochs=2, hidden=8, stream_sequences=6)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, suite.LabellingSet]:
    """A tag and a transcribe set, each with training and test files."""
    folder = tmp_path_factory.mktemp("labelling-suite")
    tag = suite.LabellingSet(
        "tiny-tag",
        "tag",
        write_tag_npz(folder / "tag.npz", n=32),
        write_tag_npz(folder / "tag-test.npz", n=12, seed=1),
    )
    transcribe = suite.LabellingSet(
        "tiny-transcribe",
        "transcribe",
        write_transcribe_npz(folder / "text.npz", n=40),
        write_transcribe_npz(folder / "text-test.npz", n=12, seed=1),
    )
    return {"tag": tag, "transcribe": transcribe}


@pytest.fixture(scope="module")
def document(sets: dict[str, suite.LabellingSet]) -> dict[str, Any]:
    single_thread()
    doc: dict[str, Any] = suite.run([sets["transcribe"], sets["tag"]], TINY)
    return doc


def test_every_run_scores_each_artifact_and_streams_against_offline(
    document: dict[str, Any],
) -> None:
    runs = {r["task"]: r for r in document["runs"]}
    assert set(runs) == {"tag", "transcribe"}
    for task, run in runs.items():
        assert set(run["artifacts"]) == set(report.ARTIFACTS), task
        headline = report.headline_key(task)
        for name, artifact in run["artifacts"].items():
            assert 0.0 <= artifact["metrics"][headline] <= 1.0 or task == "transcribe", name
        assert run["quantize"]["gate"]["metric"] == headline
        assert run["parameters"] > 0 and run["architecture"]
        streaming = run["streaming"]
        assert [c["chunk_frames"] % run["streaming"]["chunks"][0]["chunk_frames"]
                for c in streaming["chunks"]] == [0] * len(suite.CHUNK_MULTIPLES)  # fmt: skip
        assert streaming["sequences"] == TINY.stream_sequences
        assert all(c["items"] > 0 for c in streaming["chunks"])
    tag_chunks = runs["tag"]["streaming"]["chunks"]
    assert all(c["items"] > TINY.stream_sequences for c in tag_chunks)  # frames, not sequences
    assert [c["items"] for c in runs["transcribe"]["streaming"]["chunks"]] == [6, 6, 6]
    # The exports of one checkpoint stream what the sequence export writes.
    assert all(r["streaming"]["all_identical"] for r in runs.values())
    for key in ("frame_accuracy", "segment_f1"):
        assert key in runs["tag"]["artifacts"]["int8"]["metrics"]
    for key in ("exact_match", "beam_error_rate", "constant_error_rate"):
        assert key in runs["transcribe"]["artifacts"]["pytorch"]["metrics"]
    assert set(runs["tag"]["baselines"]) == {"majority frame", "window logistic regression"}


def test_the_bar_runs_beside_transcription_only(document: dict[str, Any]) -> None:
    runs = {r["task"]: r for r in document["runs"]}
    bar = runs["transcribe"]["plain_pytorch"]
    assert bar["epochs"] == TINY.epochs and bar["hidden"] == TINY.hidden
    assert "plain_pytorch" not in runs["tag"]
    artifacts = [(r["task"], r["artifact"]) for r in document["rows"]]
    assert artifacts.count(("transcribe", report.BAR)) == 1
    assert artifacts.count(("tag", "int8")) == 1
    assert len(artifacts) == 2 * len(report.ARTIFACTS) + 1


def test_results_are_written_with_the_command_summary_and_targets(
    document: dict[str, Any], tmp_path: Path
) -> None:
    doc = {**document, "command": suite.COMMAND + " --quick", "environment": {"cpu_flags": []}}
    suite.write_results(doc, tmp_path)
    written = json.loads((tmp_path / "sequence_labelling.json").read_text())
    assert {"runs", "rows", "summary", "targets", "settings", "command"} <= set(written)
    summary = written["summary"]["tiny-transcribe"]
    assert summary["pytorch error_rate"]["values"] == [
        runs["artifacts"]["pytorch"]["metrics"]["error_rate"]
        for runs in document["runs"]
        if runs["task"] == "transcribe"
    ]
    assert {t["target"] for t in written["targets"] if t["dataset"] == "tiny-tag"} == {
        "macro F1 above both baselines by >= 0.05",
        "segment F1 reported",
        "streamed frame labels identical to offline",
    }
    markdown = (tmp_path / "sequence_labelling.md").read_text()
    assert f"Command: `{suite.COMMAND} --quick`" in markdown
    assert "## tiny-transcribe (transcribe)" in markdown and "## tiny-tag (tag)" in markdown
    assert "### Against a plain PyTorch LSTM-CTC script" in markdown
    assert markdown.count("| mean ± sd |") == 3  # two dataset tables and the bar's
    # Settings other than edgelstm's defaults are announced as no result.
    assert "**epochs 2, hidden 8, the first 6 test sequences streamed**: a check" in markdown


def _transcribe_run(document: dict[str, Any], **errors: float) -> dict[str, Any]:
    run: dict[str, Any] = copy.deepcopy(
        next(r for r in document["runs"] if r["task"] == "transcribe")
    )
    for artifact, error in errors.items():
        run["artifacts"][artifact]["metrics"]["error_rate"] = error
    return run


def test_targets_are_met_only_when_every_seed_meets_them(document: dict[str, Any]) -> None:
    good = _transcribe_run(document, pytorch=0.015, fp32=0.015, int8=0.019)
    good["streaming"]["all_identical"] = True
    bad = _transcribe_run(document, pytorch=0.025, fp32=0.025, int8=0.031)
    bad["seed"] = 1
    verdicts = {t["target"]: t for t in report.targets([good])}
    assert all(t["met"] for t in verdicts.values()), verdicts
    verdicts = {t["target"]: t for t in report.targets([good, bad])}
    assert not verdicts["error rate <= 2%"]["met"]
    assert not verdicts["INT8 within +0.5 points of FP32"]["met"]
    assert verdicts["INT8 within +0.5 points of FP32"]["per_seed"]["1"]["value"] == "+0.0060"
    missing = copy.deepcopy(good)
    del missing["artifacts"]["int8"]
    verdict = {t["target"]: t for t in report.targets([missing])}
    assert verdict["INT8 within +0.5 points of FP32"]["per_seed"]["0"] == {
        "met": None,
        "value": "missing",
    }


def test_options_quick_seeds_epochs_and_datasets() -> None:
    quick = suite.settings_from(suite.parse_args(["--quick"]))
    assert quick == suite.QUICK and quick.seeds == (0,)
    default = suite.parse_args([])
    assert default.datasets == suite.DEFAULT_DATASETS
    assert suite.settings_from(default).train_kwargs() == {}  # edgelstm's defaults
    chosen = suite.parse_args(["--datasets", "SpeakerTurns,DigitStrings", "--seeds", "3,4"])
    settings = suite.settings_from(chosen)
    assert chosen.datasets == ("SpeakerTurns", "DigitStrings") and settings.seeds == (3, 4)
    assert suite.settings_from(suite.parse_args(["--epochs", "5"])).train_kwargs() == {"epochs": 5}
    with pytest.raises(SystemExit):
        suite.parse_args(["--datasets", "JapaneseVowels"])


def test_the_plain_pytorch_bar_trains_decodes_and_scores(
    sets: dict[str, suite.LabellingSet],
) -> None:
    single_thread()
    data = sets["transcribe"]
    assert data.data is not None and data.test is not None
    train = load_training_data(data.data, "transcribe")
    test = load_training_data(data.test, "transcribe")
    assert isinstance(train, Transcripts) and isinstance(test, Transcripts)
    few = Transcripts(train.sequences[:8], (train.texts or ())[:8], train.feature_names)
    result = train_and_evaluate(few, test, seed=0, epochs=1, hidden=8)
    assert {"error_rate", "exact_match", "seconds", "parameters", "architecture"} <= set(result)
    assert 0.0 <= result["exact_match"] <= 1.0 and result["error_rate"] >= 0.0
    assert result["parameters"] > 0 and result["train_sequences"] == 8
    assert np.isfinite(result["seconds"])
