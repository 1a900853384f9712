"""The foreign-models suite (issue 27): three models built from scratch (a VAD with explicit
state, a CRNN line recognizer, a G2P GRU encoder-decoder) go through export, run, benchmark,
adopt, run --stream and serve, in ``--quick`` mode; what it records is what happened."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import single_thread


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One quick run of the suite (serve included): its JSON and its page."""
    from edgelstm.benchmarks.suites.foreign_models.runner import main

    single_thread()
    out = tmp_path_factory.mktemp("foreign")
    assert main(["--quick", "--out", str(out)]) == 0
    document = json.loads((out / "foreign_models.json").read_text())
    return document, (out / "foreign_models.md").read_text()


def _artifacts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in document["artifacts"]}


def test_the_three_models_are_exported_and_run_exactly(suite: tuple[dict[str, Any], str]) -> None:
    document, _ = suite
    assert document["schema"] == "edgelstm.foreign_models/1"
    assert document["models"] == ["vad", "crnn", "g2p"]
    artifacts = _artifacts(document)
    assert sorted(artifacts) == ["crnn", "g2p_decoder_step", "g2p_encoder", "vad"]
    for name, artifact in artifacts.items():
        assert artifact["export"]["validation_max_abs"] < 1e-4, name
        assert artifact["run"]["exact"] and artifact["run"]["max_diff"] == 0, name
        bench = artifact["benchmark"]
        assert bench["ort_fp32_p50_ms"] > 0 and bench["torch_fp32_p50_ms"] > 0, name
        assert bench["ort_vs_torch_fp32"] > 0, name
    assert artifacts["crnn"]["export"]["by"] == "edgelstm export"
    assert artifacts["crnn"]["stream"] == {"adopt": "n/a (bidirectional: needs the whole line)"}


def test_the_stateful_ones_stream_and_serve_the_originals_rows(
    suite: tuple[dict[str, Any], str],
) -> None:
    document, _ = suite
    artifacts = _artifacts(document)
    for name in ("vad", "g2p_decoder_step"):
        stream = artifacts[name]["stream"]
        assert stream["adopted"], name
        assert stream["windows"] >= 4 and stream["stream_rows_max_diff"] == 0, name
        assert stream["serve"]["rows_equal"] and stream["serve"]["rows_max_diff"] == 0, name
        assert stream["serve"]["exit_code"] == 0, name
    assert artifacts["vad"]["stream"]["columns"] == 1
    assert artifacts["g2p_decoder_step"]["stream"]["columns"] == 42


def test_the_page_quotes_commands_and_every_refusal(suite: tuple[dict[str, Any], str]) -> None:
    document, page = suite
    assert "edgelstm export --model edgelstm.benchmarks.suites.foreign_models.models:crnn" in page
    assert "--torch edgelstm.benchmarks.suites.foreign_models.models:vad" in page
    # edgelstm's own export of the VAD is adopted (outputs output_0..2 by position)
    assert (
        "edgelstm adopt vad.onnx --out vad.stream.onnx --state h=output_1 --state c=output_2"
        in page
    )
    assert not document["findings"]  # every model went through edgelstm's own commands
    assert "edgelstm-foreign-" not in page  # commands read as typed in the work folder
    assert document["machine"]["onnxruntime"] and document["machine"]["torch"]
    for finding in document["findings"]:  # a refusal is quoted with its command, never hidden
        assert finding["error"].startswith("error:") and finding["command"] in page
