"""Deployment configs drive ``run --config``: a streaming config streams (its chunk), a
sequence config runs at its batch size, a flag given beside the config overrides it with a
note naming it (never silently ignored, even when it equals the flag's default), a flag the
config's mode cannot honour is refused, and reports record deployments in one shape."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from conftest import CliResult, CliRunner, assert_clean_failure, single_thread

from edgelstm.runtimes import run_files as run_module
from edgelstm.runtimes.ort.deploy import DeploymentConfig, read_deployment, write_deployment
from edgelstm.runtimes.ort.session_config import SessionConfig

if TYPE_CHECKING:
    from edgelstm.training.trainer import TrainResult


@dataclass(frozen=True)
class Exports:
    seq: Path
    stream: Path


@pytest.fixture(scope="module")
def exports(trained_classify: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """Sequence and streaming exports of the shared classify run. Read-only."""
    single_thread()
    from edgelstm.exporters.onnx import export

    folder = tmp_path_factory.mktemp("deploy-models")
    seq, stream = folder / "m.onnx", folder / "m.stream.onnx"
    export(trained_classify.out, seq)
    export(trained_classify.out, stream, streaming=True)
    return Exports(seq, stream)


@pytest.fixture(scope="module")
def one_sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 10-frame sequence with the fixture's 3 features: a stream to push."""
    path = tmp_path_factory.mktemp("deploy-data") / "one.npz"
    x = np.random.default_rng(1).normal(size=(1, 10, 3)).astype(np.float32)
    np.savez(path, X=x)
    return path


def _config(
    folder: Path,
    model: Path,
    *,
    mode: str = "sequence",
    name: str = "deploy.json",
    batch: int = 1,
    chunk: int | None = None,
    **session: Any,
) -> Path:
    path = folder / name
    config = DeploymentConfig(
        model=model, mode=mode, session=SessionConfig(**session), batch=batch, chunk=chunk
    )
    write_deployment(config, path)
    return path


def _notes(result: CliResult) -> list[str]:
    return [line for line in result.err_lines if line.startswith("note:")]


def _session_config(result: CliResult) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(result.out)
    return dict(summary["session"]["session_config"])


# --------------------------------------------------------------------------------------------
# session flags beside --config


def test_config_alone_runs_exactly_the_config(
    cli: CliRunner, exports: Exports, classify_npz: Path, tmp_path: Path
) -> None:
    deploy = _config(
        tmp_path,
        exports.seq,
        intra_op_threads=2,
        graph_optimization="basic",
        spinning=False,
        memory_arena=False,
    )
    result = cli("run", "--config", deploy, "-i", classify_npz, "-o", tmp_path / "p.csv", "--json")
    assert result.code == 0, result.err
    assert _session_config(result) == read_deployment(deploy).session.to_json()
    assert _notes(result) == []


@pytest.mark.parametrize(
    ("flags", "field", "value", "note"),
    [
        (["--spinning"], "spinning", True, "--spinning overrides"),
        (["--no-spinning"], "spinning", False, "--no-spinning overrides"),
        (["--graph-optimization", "basic"], "graph_optimization", "basic", "--graph-optimization"),
        (["--cuda-device", "1"], "cuda_device", 1, "--cuda-device 1 overrides"),
        # Equal to the flag's default, yet typed: it must not be mistaken for "not given".
        (["--threads", "1"], "intra_op_threads", 1, "--threads 1 overrides"),
        (["--graph-optimization", "all"], "graph_optimization", "all", "--graph-optimization"),
        (["--no-memory-arena"], "memory_arena", False, "--no-memory-arena overrides"),
        (["--inter-op-threads", "2"], "inter_op_threads", 2, "--inter-op-threads 2 overrides"),
    ],
)
def test_a_session_flag_beside_config_overrides_it_with_a_note(
    cli: CliRunner,
    exports: Exports,
    classify_npz: Path,
    tmp_path: Path,
    flags: list[str],
    field: str,
    value: Any,
    note: str,
) -> None:
    # The config's values differ from every flag's default and from the value typed.
    deploy = _config(tmp_path, exports.seq, intra_op_threads=2, graph_optimization="extended")
    out = tmp_path / "p.csv"
    result = cli("run", "--config", deploy, *flags, "-i", classify_npz, "-o", out, "--json")
    assert result.code == 0, result.err
    session = _session_config(result)
    assert session[field] == value
    # Every other setting is still the config's.
    expected = {**read_deployment(deploy).session.to_json(), field: value}
    assert session == expected
    (line,) = _notes(result)
    assert note in line and str(deploy) in line and f"{field} was" in line, line


def test_provider_cpu_beside_a_cuda_config_runs_on_the_cpu_and_says_so(
    cli: CliRunner, exports: Exports, classify_npz: Path, tmp_path: Path
) -> None:
    deploy = _config(tmp_path, exports.seq, providers=("cuda",))
    out = tmp_path / "p.csv"
    result = cli("run", "--config", deploy, "--provider", "cpu", "-i", classify_npz, "-o", out)
    assert result.code == 0, result.err
    assert out.is_file()
    (line,) = _notes(result)
    assert f"--provider cpu overrides {deploy} (providers was cuda)" in line


def test_a_flag_equal_to_the_config_changes_nothing_and_says_nothing(
    cli: CliRunner, exports: Exports, classify_npz: Path, tmp_path: Path
) -> None:
    deploy = _config(tmp_path, exports.seq, intra_op_threads=2)
    args = ("-i", classify_npz, "-o", tmp_path / "p.csv", "--json")
    result = cli("run", "--config", deploy, "--threads", "2", "--provider", "cpu", *args)
    assert result.code == 0, result.err
    assert _session_config(result)["intra_op_threads"] == 2
    assert _notes(result) == []


# --------------------------------------------------------------------------------------------
# mode, batch and chunk come from the config


def _spy_on_run_model(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = run_module.run_model

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_model", spy)
    return calls


@pytest.mark.parametrize(("flags", "batch_size"), [([], 3), (["--batch-size", "7"], 7)])
def test_a_sequence_config_runs_at_its_batch_size(
    cli: CliRunner,
    exports: Exports,
    classify_npz: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    batch_size: int,
) -> None:
    calls = _spy_on_run_model(monkeypatch)
    deploy = _config(tmp_path, exports.seq, batch=3)
    out = tmp_path / "p.csv"
    result = cli("run", "--config", deploy, *flags, "-i", classify_npz, "-o", out)
    assert result.code == 0, result.err
    (call,) = calls
    assert call["options"].batch_size == batch_size
    notes = _notes(result)
    if flags:
        assert notes == [f"note: --batch-size 7 overrides {deploy} (batch was 3)"]
    else:
        assert notes == []


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("flags", "chunk"), [([], 3), (["--chunk", "4"], 4), (["--stream"], 3)])
def test_a_streaming_config_streams_its_chunk(
    cli: CliRunner,
    exports: Exports,
    one_sequence: Path,
    tmp_path: Path,
    flags: list[str],
    chunk: int,
) -> None:
    deploy = _config(tmp_path, exports.stream, mode="streaming", name="d.stream.json", chunk=3)
    out = tmp_path / "s.csv"
    result = cli("run", "--config", deploy, *flags, "-i", one_sequence, "-o", out, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    chunks = -(-10 // chunk)
    assert (summary["frames"], summary["chunks"]) == (10, chunks)
    # Classification streams one row per chunk: the label after the chunk's last frame.
    frames = [int(row["frame"]) for row in _rows(out)]
    assert frames == [min(10, (k + 1) * chunk) - 1 for k in range(chunks)]
    if "--chunk" in flags:
        assert _notes(result) == [f"note: --chunk 4 overrides {deploy} (chunk was 3)"]
    else:
        assert _notes(result) == []


def test_a_streaming_config_without_a_chunk_pushes_one_frame_at_a_time(
    cli: CliRunner, exports: Exports, one_sequence: Path, tmp_path: Path
) -> None:
    deploy = _config(tmp_path, exports.stream, mode="streaming", name="d.stream.json")
    out = tmp_path / "s.csv"
    result = cli("run", "--config", deploy, "-i", one_sequence, "-o", out, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["chunks"] == 10


@pytest.mark.parametrize(
    ("mode", "flags", "needle"),
    [
        ("sequence", ["--stream"], "--stream does not apply to"),
        ("sequence", ["--chunk", "2"], "--chunk does not apply to"),
        ("streaming", ["--batch-size", "8"], "--batch-size does not apply to"),
        ("streaming", ["--no-stream"], "--no-stream does not apply to"),
    ],
)
def test_a_flag_the_configs_mode_cannot_honour_is_refused(
    cli: CliRunner,
    exports: Exports,
    one_sequence: Path,
    tmp_path: Path,
    mode: str,
    flags: list[str],
    needle: str,
) -> None:
    model = exports.stream if mode == "streaming" else exports.seq
    deploy = _config(tmp_path, model, mode=mode)
    out = tmp_path / "refused.csv"
    result = cli("run", "--config", deploy, *flags, "-i", one_sequence, "-o", out)
    assert_clean_failure(result, out, needle, f"a {mode} deployment")


# --------------------------------------------------------------------------------------------
# the library: resolve_deployment


def test_resolve_deployment_applies_only_what_was_given() -> None:
    from edgelstm.runtimes.ort.deploy import resolve_deployment

    config = DeploymentConfig(
        model=Path("m.onnx"),
        mode="streaming",
        session=SessionConfig(intra_op_threads=2, spinning=False),
        batch=4,
    )
    resolved = resolve_deployment(config, source="d.json")
    assert resolved.streams and resolved.frames_per_push == 1
    assert resolved.config.session == config.session
    # A streaming config measured with several streams at once: run feeds one.
    assert resolved.notes == (
        "d.json was measured with 4 streams at once; this run feeds one stream, so its "
        "per-frame latency differs",
    )
    resolved = resolve_deployment(
        config, source="d.json", session={"intra_op_threads": None, "tensorrt_cache": Path("t")}
    )
    assert resolved.config.session.intra_op_threads is None
    assert resolved.config.session.spinning is False
    assert resolved.notes[:2] == (
        "--threads 0 overrides d.json (intra_op_threads was 2)",
        "--tensorrt-cache t overrides d.json (tensorrt_cache was none)",
    )


def test_resolve_deployment_refuses_an_unknown_setting() -> None:
    from edgelstm.errors import InvalidInputError
    from edgelstm.runtimes.ort.deploy import resolve_deployment

    config = DeploymentConfig(model=Path("m.onnx"), mode="sequence", session=SessionConfig())
    with pytest.raises(InvalidInputError, match="unknown session setting 'threads'"):
        resolve_deployment(config, session={"threads": 2})


# --------------------------------------------------------------------------------------------
# the report's deployment section: one shape, one writer


def test_write_deployments_returns_the_one_report_shape(tmp_path: Path) -> None:
    from edgelstm.benchmarks.tune import write_deployments

    sequence = DeploymentConfig(
        model=tmp_path / "m.onnx", mode="sequence", session=SessionConfig(), reason="fast"
    )
    streaming = DeploymentConfig(
        model=tmp_path / "m.stream.onnx", mode="streaming", session=SessionConfig(), chunk=1
    )
    section = write_deployments(
        {tmp_path / "deploy.json": sequence, tmp_path / "cfg" / "s.json": streaming},
        relative_to=tmp_path,
    )
    assert set(section) == {"sequence", "streaming"}
    for mode, file in (("sequence", "deploy.json"), ("streaming", "cfg/s.json")):
        entry = dict(section[mode])
        assert entry.pop("file") == file
        # The entry is the config file's document, model relative to the file's folder.
        assert entry == json.loads((tmp_path / file).read_text(encoding="utf-8"))
    assert section["streaming"]["model"] == "../m.stream.onnx"
    with pytest.raises(ValueError, match="two sequence deployments"):
        write_deployments({tmp_path / "a.json": sequence, tmp_path / "b.json": sequence})


def test_tune_deploys_whole_sequences_when_measured_else_streaming() -> None:
    from edgelstm.benchmarks.tune import tune_deployment

    def row(mode: str, p50: float) -> dict[str, Any]:
        return {
            "runtime": "onnxruntime",
            "mode": mode,
            "path": f"{mode}.onnx",
            "provider": "cpu",
            "precision": "fp32",
            "threads": 1,
            "batch": 1,
            "seq": 100 if mode == "sequence" else None,
            "chunk": 1 if mode == "streaming" else None,
            "p50_ms": p50,
            "frame_p50_ms": p50,
            "metric": "accuracy",
            "metric_value": 0.9,
        }

    both = [row("sequence", 1.0), row("streaming", 0.1)]
    assert tune_deployment(both, stream=True).mode == "sequence"
    assert tune_deployment(both[1:], stream=True).mode == "streaming"
