"""``--provider auto`` from measurements: a deployment config or benchmark report beside the
model that timed the same file on this host decides, and says so; one from another host,
without a host, about another file or mode, with a winner not built in here, or not
readable at all does not. Hand-written documents and a one-node ONNX file: nothing is timed
or trained here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgelstm.runtimes.ort import measured_choice as measured_module
from edgelstm.runtimes.ort.measured_choice import MeasuredChoice, host_fingerprint, measured_choice

HOST: dict[str, Any] = {"cpu": "Test CPU 9000 @ 3.0GHz", "gpus": ["NVIDIA H200"]}
OTHER_HOST: dict[str, Any] = {"cpu": "Other CPU 100", "gpus": []}
CPU_ONLY = ["CPUExecutionProvider"]
CUDA_AND_CPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A one-node ONNX model in its own folder: the measured file (it is never run here)."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "models" / "m.onnx"
    path.parent.mkdir()
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _write(path: Path, document: Any, *, mtime: int | None = None) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    if mtime is not None:  # explicit ages: two files written in a row can share an mtime
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def _deploy(
    *,
    model: str = "m.onnx",
    mode: str = "sequence",
    provider: str = "cpu",
    host: dict[str, Any] | None = HOST,
    cuda_graphs: bool = False,
    **measured: Any,
) -> dict[str, Any]:
    """A deployment config as `benchmark --tune` writes it (model relative to the file)."""
    numbers = {"p50_ms": 0.21, "frame_p50_ms": 0.04 if mode == "streaming" else None}
    return {
        "schema": "edgelstm.deploy/1",
        "model": model,
        "mode": mode,
        "batch": 1,
        "chunk": 1 if mode == "streaming" else None,
        "session": {"providers": [provider], "intra_op_threads": 1, "cuda_graphs": cuda_graphs},
        "measured": {**numbers, "precision": "fp32", **measured}
        | ({} if host is None else {"host": host}),
        "reason": "fastest",
    }


def _row(path: Path | str, provider: str, p50: float, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": "m",
        "path": str(path),
        "runtime": "onnxruntime",
        "provider": provider,
        "precision": "fp32",
        "mode": "sequence",
        "batch": 1,
        "seq": 100,
        "chunk": None,
        "threads": 1,
        "cuda_graphs": False,
        "p50_ms": p50,
    }
    row.update(changes)
    if row["mode"] == "streaming":
        row["seq"] = None
        row["frame_p50_ms"] = row["p50_ms"] / row["chunk"]
    return row


def _report(rows: list[dict[str, Any]], host: dict[str, Any] | None = HOST) -> dict[str, Any]:
    """A benchmark report: its host is in ``environment`` (cpu.model, gpus[].name)."""
    environment: dict[str, Any] = {"timestamp": "2026-05-01T10:00:00Z"}
    if host is not None:
        environment["cpu"] = {"model": host["cpu"], "architecture": "x86_64"}
        environment["gpus"] = [{"index": i, "name": n} for i, n in enumerate(host["gpus"])]
    return {"schema": "edgelstm.benchmark/1", "environment": environment, "rows": rows}


def _choose(model: Path, available: list[str] = CPU_ONLY, **kwargs: Any) -> MeasuredChoice:
    kwargs.setdefault("streaming", False)
    kwargs.setdefault("host", HOST)
    return measured_choice(model, available, **kwargs)


# --------------------------------------------------------------------------------------------
# what decides


def test_deploy_config_for_this_model_on_this_host_decides(model: Path) -> None:
    path = _write(model.parent / "deploy.json", _deploy(provider="openvino"))
    found = _choose(model, ["OpenVINOExecutionProvider", "CPUExecutionProvider"])
    assert found.provider == "openvino"
    assert found.source == path
    assert found.reason.startswith("measured fastest in deploy.json: p50 0.21 ms per call on ")
    assert "edgelstm.deploy/1" in found.reason
    assert found.notes == ()


def test_benchmark_report_fastest_row_at_the_smallest_batch_and_length(model: Path) -> None:
    rows = [
        _row(model, "cpu", 0.81),
        _row(model, "cuda", 2.3),
        _row(model, "cpu", 0.95, threads=2),
        _row(model, "cuda", 0.62, batch=64),  # another batch: CUDA's home ground, not compared
        _row(model, "cuda", 0.05, seq=500, batch=8),
        _row(model, "cuda", 0.4, cuda_graphs=True),  # run --provider auto never captures them
        _row(model, "cuda", 0.01, runtime="torch"),  # not ONNX Runtime
        _row(model.parent / "other.onnx", "cuda", 0.01),  # another model
        _row(model, "cuda", 0.3, mode="streaming", chunk=1),  # another mode
    ]
    path = _write(model.parent / "bench.json", _report(rows))
    found = _choose(model, CUDA_AND_CPU)
    assert (found.provider, found.source, found.notes) == ("cpu", path, ())
    assert found.reason.startswith("measured fastest in bench.json: p50 0.81 ms per call on cpu")
    assert "batch 1 x 100 steps" in found.reason and "next cuda 2.3 ms" in found.reason
    assert "edgelstm.benchmark/1, measured 2026-05-01" in found.reason


def test_benchmark_report_compares_providers_at_the_shortest_length(model: Path) -> None:
    # Shorter sequences are faster on any provider: only one length is compared.
    rows = [_row(model, "cpu", 0.5, seq=50), _row(model, "cuda", 0.4, seq=50)]
    rows += [_row(model, "cpu", 0.1, seq=100)]  # beats both, but at another length
    _write(model.parent / "bench.json", _report(rows))
    found = _choose(model, CUDA_AND_CPU)
    assert found.provider == "cuda" and "x 50 steps" in found.reason


def test_streaming_models_are_judged_per_frame_by_streaming_documents(model: Path) -> None:
    rows = [
        _row(model, "cuda", 1.0, mode="streaming", chunk=1),  # 1.0 ms per frame
        _row(model, "cpu", 2.0, mode="streaming", chunk=10),  # 0.2 ms per frame: wins
        _row(model, "cuda", 0.01),  # a whole-sequence row of the same file
    ]
    _write(model.parent / "bench.json", _report(rows), mtime=1_000)
    assert _choose(model, CUDA_AND_CPU, streaming=False).provider == "cuda"
    found = _choose(model, CUDA_AND_CPU, streaming=True)
    assert found.provider == "cpu"
    assert "p50 0.2 ms per frame on cpu at batch 1, chunk 10" in found.reason
    # A newer streaming deploy config decides for the streaming model only.
    _write(model.parent / "deploy.json", _deploy(mode="streaming", provider="cuda"), mtime=2_000)
    streamed = _choose(model, CUDA_AND_CPU, streaming=True)
    assert streamed.provider == "cuda" and "p50 0.04 ms per frame" in streamed.reason
    assert _choose(model, CUDA_AND_CPU, streaming=False).source == model.parent / "bench.json"


def test_the_newest_qualifying_document_wins(model: Path) -> None:
    _write(model.parent / "old.json", _deploy(provider="cuda"), mtime=1_000)
    _write(model.parent / "new.json", _report([_row(model, "cpu", 0.8)]), mtime=2_000)
    assert _choose(model, CUDA_AND_CPU).source == model.parent / "new.json"
    os.utime(model.parent / "old.json", ns=(3_000 * 10**9, 3_000 * 10**9))
    assert _choose(model, CUDA_AND_CPU).provider == "cuda"
    # Same age: the name decides, so the answer never depends on directory order.
    os.utime(model.parent / "new.json", ns=(3_000 * 10**9, 3_000 * 10**9))
    assert _choose(model, CUDA_AND_CPU).source == model.parent / "new.json"


def test_a_hard_link_to_the_model_is_the_same_file(model: Path) -> None:
    link = model.parent / "linked.onnx"
    os.link(model, link)
    _write(model.parent / "deploy.json", _deploy(model="linked.onnx"))
    assert _choose(model).provider == "cpu"


def test_relative_row_paths_resolve_against_the_report_folder_then_the_working_folder(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(model.parent / "bench.json", _report([_row("models/m.onnx", "cpu", 0.8)]))
    monkeypatch.chdir(model.parent)
    assert _choose(model).provider is None  # models/models/m.onnx, ./models/m.onnx: neither
    monkeypatch.chdir(model.parent.parent)  # where the benchmark ran
    assert _choose(model).provider == "cpu"
    _write(model.parent / "bench.json", _report([_row("m.onnx", "cpu", 0.8)]))
    monkeypatch.chdir("/")
    assert _choose(model).provider == "cpu"  # beside the report


def test_a_device_suffix_is_kept_and_availability_checks_the_provider(model: Path) -> None:
    _write(model.parent / "deploy.json", _deploy(provider="openvino:GPU"))
    found = _choose(model, ["OpenVINOExecutionProvider", "CPUExecutionProvider"])
    assert found.provider == "openvino:GPU"


# --------------------------------------------------------------------------------------------
# what does not decide, and what it says


def test_another_host_is_ignored_with_a_note(model: Path) -> None:
    _write(model.parent / "deploy.json", _deploy(host=OTHER_HOST), mtime=2_000)
    _write(model.parent / "bench.json", _report([_row(model, "cpu", 1)], OTHER_HOST), mtime=1_000)
    found = _choose(model)
    assert (found.provider, found.source, found.reason) == (None, None, "")
    assert len(found.notes) == 2
    assert found.notes[0].startswith("ignored deploy.json: measured on another host")
    assert "'Other CPU 100'" in found.notes[0] and "'Test CPU 9000 @ 3.0GHz'" in found.notes[0]
    assert found.notes[1].startswith("ignored bench.json: measured on another host")


def test_the_same_cpu_with_other_gpus_is_another_host(model: Path) -> None:
    _write(model.parent / "deploy.json", _deploy(host={**HOST, "gpus": []}))
    found = _choose(model)
    assert found.provider is None and "no NVIDIA GPU" in found.notes[0]
    # GPU enumeration order is not part of the machine.
    two = {**HOST, "gpus": ["A100", "H200"]}
    _write(model.parent / "deploy.json", _deploy(host=two))
    assert _choose(model, host={**two, "gpus": ["H200", "A100"]}).provider == "cpu"


def test_a_document_without_a_host_is_ignored_with_a_note(model: Path) -> None:
    _write(model.parent / "deploy.json", _deploy(host=None))  # written before hosts were kept
    _write(model.parent / "bench.json", _report([_row(model, "cpu", 1)], host=None))
    found = _choose(model)
    assert found.provider is None
    assert sorted(n.split(":")[0] for n in found.notes) == [
        "ignored bench.json",
        "ignored deploy.json",
    ]
    assert all("does not record the host" in n for n in found.notes)


def test_a_newer_document_from_another_host_leaves_a_note_beside_the_choice(model: Path) -> None:
    _write(model.parent / "here.json", _deploy(), mtime=1_000)
    _write(model.parent / "there.json", _deploy(host=OTHER_HOST), mtime=2_000)
    found = _choose(model)
    assert found.provider == "cpu" and found.source == model.parent / "here.json"
    assert len(found.notes) == 1 and found.notes[0].startswith("ignored there.json")


def test_documents_about_other_files_or_modes_are_skipped_silently(model: Path) -> None:
    other = model.parent / "other.onnx"
    other.write_bytes(model.read_bytes())  # same bytes, another file
    _write(model.parent / "a.json", _deploy(model="other.onnx"))
    _write(model.parent / "b.json", _deploy(model="missing.onnx"))
    _write(model.parent / "c.json", _deploy(mode="streaming"))
    _write(model.parent / "d.json", _report([_row(other, "cpu", 0.5)]))
    _write(model.parent / "e.json", _report([_row(model, "cpu", 0.5, mode="streaming", chunk=1)]))
    assert _choose(model) == MeasuredChoice(None)


def test_a_winner_not_built_in_here_is_ignored_with_a_note(model: Path) -> None:
    _write(model.parent / "bench.json", _report([_row(model, "cuda", 0.5), _row(model, "cpu", 1)]))
    found = _choose(model, CPU_ONLY)
    assert found.provider is None  # the fixed policy decides; the runner-up is not promoted
    (note,) = found.notes
    assert note.startswith("ignored bench.json: measured fastest was p50 0.5 ms per call on cuda")
    assert note.endswith("but cuda is not available here (available: cpu)")


def test_other_weights_under_the_same_name_are_ignored_with_a_note(model: Path) -> None:
    _write(model.parent / "deploy.json", _deploy(weights_sha256="a" * 64))
    assert _choose(model, weights_sha256="a" * 64).provider == "cpu"
    assert _choose(model).provider == "cpu"  # the caller knows no checksum: the path decides
    found = _choose(model, weights_sha256="b" * 64)
    assert found.provider is None and "other weights than m.onnx" in found.notes[0]


def test_a_deployment_tuned_with_cuda_graphs_is_ignored_with_a_note(model: Path) -> None:
    _write(model.parent / "deploy.json", _deploy(provider="cuda", cuda_graphs=True))
    found = _choose(model, CUDA_AND_CPU)
    assert found.provider is None
    assert "CUDA graphs, which only `edgelstm run --config deploy.json` replays" in found.notes[0]


def test_corrupt_foreign_and_malformed_json_is_skipped_silently(model: Path) -> None:
    folder = model.parent
    _write(folder / "good.json", _deploy(), mtime=1_000)
    (folder / "truncated.json").write_text('{"schema": "edgelstm.deploy/1", "mod', "utf-8")
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000, "utf-8")
    (folder / "list.json").write_text("[1, 2]", "utf-8")
    _write(folder / "foreign.json", {"schema": "someone.else/1", "rows": "x"})
    _write(folder / "bad-deploy.json", {**_deploy(), "batch": "many"})
    _write(folder / "bad-rows.json", {**_report([]), "rows": {"not": "a list"}})
    bad_rows: list[Any] = [{"path": 3}, "row", {**_row(model, "cpu", 1), "p50_ms": "fast"}]
    _write(folder / "bad-row.json", _report(bad_rows))
    (folder / "folder.json").mkdir()
    found = _choose(model)
    assert (found.provider, found.source, found.notes) == ("cpu", folder / "good.json", ())


def test_reading_is_bounded(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(model.parent / "deploy.json", _deploy(), mtime=1_000)
    monkeypatch.setattr(measured_module, "MAX_DOCUMENTS", 3)
    for i in range(3):
        _write(model.parent / f"newer{i}.json", {"unrelated": i}, mtime=2_000 + i)
    assert _choose(model).provider is None  # the three newest were read; deploy.json was not
    monkeypatch.setattr(measured_module, "MAX_DOCUMENTS", 4)
    assert _choose(model).provider == "cpu"
    monkeypatch.setattr(measured_module, "MAX_DOCUMENT_BYTES", 100)  # deploy.json is larger
    assert _choose(model).provider is None


def test_a_missing_model_or_folder_finds_nothing(tmp_path: Path) -> None:
    assert _choose(tmp_path / "nowhere" / "m.onnx") == MeasuredChoice(None)


# --------------------------------------------------------------------------------------------
# the writer and the matcher agree on the host


def _tune_row(path: Path, provider: str, p50: float) -> dict[str, Any]:
    return _row(path, provider, p50, metric="accuracy", metric_value=0.9)


def test_choose_deployment_records_this_host_and_auto_trusts_it_here(model: Path) -> None:
    from edgelstm.benchmarks.tune import choose_deployment
    from edgelstm.runtimes.ort.deploy import read_deployment, write_deployment

    chosen = choose_deployment([_tune_row(model, "cpu", 0.8), _tune_row(model, "cuda", 2.0)])
    assert chosen.measured["host"] == host_fingerprint()
    path = model.parent / "deploy.json"
    write_deployment(chosen, path)
    assert read_deployment(path).measured["host"] == host_fingerprint()  # survives the file
    found = measured_choice(model, CUDA_AND_CPU, streaming=False)  # this host, for real
    assert (found.provider, found.source, found.notes) == ("cpu", path, ())
    assert "p50 0.8 ms per call on cpu" in found.reason


def test_host_fingerprint_is_the_cpu_model_and_gpu_names() -> None:
    from edgelstm.hardware import cpu_info, gpu_info

    assert host_fingerprint() == {
        "cpu": cpu_info().model,
        "gpus": [gpu.name for gpu in gpu_info()],
    }


def test_the_report_schema_is_the_benchmark_writers() -> None:
    from edgelstm.benchmarks.harness import BENCHMARK_SCHEMA

    # The runtime side cannot import the benchmark room, so it keeps a copy of the name.
    assert measured_module._BENCHMARK_SCHEMA == BENCHMARK_SCHEMA


def test_importing_it_loads_neither_torch_nor_onnxruntime_nor_benchmarks() -> None:
    code = (
        "import sys, edgelstm.runtimes.ort.measured_choice; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'edgelstm.benchmarks') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
