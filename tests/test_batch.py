"""Batch scoring of many files (``run --engine local|ray``): equal rows whatever the engine or
partitioning, faults (bad files, killed workers and processes) losing nothing, resume.

Tests marked ``ray`` start one local Ray for this module (``ray.init(num_cpus=2)``), about
5 s; deselect them with ``-m "not ray"``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgelstm.errors import InvalidInputError, ProviderUnavailableError
from edgelstm.fileio import KILL_AT_ENV, KILL_ONCE_ENV
from edgelstm.runtimes.batch import BatchOptions, RayOptions, run_batch
from edgelstm.runtimes.batch.engines import worker_resources
from edgelstm.runtimes.batch.job import MANIFEST_NAME
from edgelstm.runtimes.batch.plan import attempts_marker, is_complete_partition
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.runtimes.run_files import run_model
from tests.conftest import (
    TINY_KW,
    WINDOW_KW,
    CliRunner,
    assert_clean_failure,
    single_thread,
    write_anomaly_csv,
    write_classify_npz,
    write_forecast_csv,
)

# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def model(trained_classify: Any, work: Path) -> Path:
    from edgelstm.exporters.onnx import export

    out = work / "classify.onnx"
    export(trained_classify.out, out)
    return out


@pytest.fixture(scope="module")
def inputs(work: Path) -> Path:
    """8 .npz files, 2 000 sequences of varying length (5..40 steps), labels included."""
    folder = work / "inputs"
    folder.mkdir()
    sizes = [100, 150, 200, 250, 250, 300, 350, 400]
    for k, n in enumerate(sizes):
        write_classify_npz(folder / f"rec{k}.npz", n=n, steps=10 + 4 * k, seed=k + 1)
    return folder


@pytest.fixture(scope="module")
def local_rows(model: Path, inputs: Path, work: Path) -> list[dict[str, Any]]:
    result = run_batch(model, inputs, work / "local")
    assert result.rows == 2000
    return read_rows(work / "local")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of an output folder, sorted by (source, index)."""
    files = sorted(folder.rglob("*.parquet"))
    assert files, f"no partitions in {folder}"
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: (r["source"], r["index"]))


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same keys, no duplicates, labels identical, floats within 1e-5."""
    keys = [(r["source"], r["index"]) for r in got]
    assert len(set(keys)) == len(keys), "duplicate rows"
    assert keys == [(r["source"], r["index"]) for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for name, value in a.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[name], abs=1e-5), (name, a, b)
            else:
                assert value == b[name], (name, a, b)


def finishes(seconds: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, failing the test (instead of hanging the suite) past
    ``seconds``: the deadlock this guards against never returns."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:.0f} s: the worker pool is deadlocked")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------------------------
# the rows: what run writes, plus source and index


def table_rows(table: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    """A ``Predictions.table`` as rows of Python values, as Parquet reads them back."""
    assert table is not None
    columns = [values.tolist() for values in table.values()]
    return [dict(zip(table, values, strict=True)) for values in zip(*columns, strict=True)]


def test_rows_carry_source_index_and_runs_columns(
    model: Path, inputs: Path, local_rows: list[dict[str, Any]], work: Path
) -> None:
    """``source``, ``index``, then run's columns in run's order, with run's values exactly
    (Parquet is not rounded like CSV and JSON)."""
    single = run_model(model, inputs / "rec3.npz", work / "rec3.json")
    table = single.predictions.table
    assert table is not None
    written = pq.read_table(work / "local" / "rec3.npz.part-00000.parquet")  # the whole file
    assert written.column_names == ["source", "index", *(n for n in table if n != "index")]
    assert written["source"].to_pylist() == ["rec3.npz"] * 250
    for name, values in table.items():
        column = written[name]
        if values.dtype.kind == "U":  # labels
            assert column.to_pylist() == values.tolist(), name
        else:
            assert column.type == pa.from_numpy_dtype(values.dtype), name
            np.testing.assert_array_equal(column.to_numpy(), values, strict=True)
    mine = [r for r in local_rows if r["source"] == "rec3.npz"]
    assert mine == [{"source": "rec3.npz", **r} for r in table_rows(table)]


def test_parquet_probabilities_are_the_models_float32_outputs(model: Path, work: Path) -> None:
    """Bit for bit what ONNX Runtime computed, softmaxed as ``predict`` does: no rounding, no
    float64 detour."""
    import onnxruntime as ort

    from edgelstm.runtimes.model_io.features import softmax, stored_normalization
    from edgelstm.runtimes.ort.artifact import load_artifact
    from edgelstm.tasks import normalize

    folder = work / "equal_lengths"
    folder.mkdir()
    x = np.random.default_rng(7).normal(size=(40, 12, 3)).astype(np.float32)
    np.savez(folder / "x.npz", X=x)  # one length, under one batch: one session.run
    run_batch(model, folder, work / "equal_lengths_out")
    written = pq.read_table(work / "equal_lengths_out" / "x.npz.part-00000.parquet")

    meta = load_artifact(model).metadata
    assert meta is not None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: normalize(x, stored_normalization(meta, model))}
    (logits,) = session.run([session.get_outputs()[0].name], feeds)
    want = softmax(logits).astype(np.float32)

    names = [n for n in written.column_names if n.startswith("prob_")]
    got = np.stack([written[n].to_numpy() for n in names], axis=1)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert (got == want).all(), np.abs(got - want).max()
    assert (written["confidence"].to_numpy() == want.max(axis=1)).all()


def test_partitioning_does_not_change_rows(
    model: Path, inputs: Path, local_rows: list[dict[str, Any]], work: Path
) -> None:
    out = work / "small_parts"
    result = run_batch(model, inputs, out, batch=BatchOptions(partition_rows=64))
    assert result.partitions > 8  # files were split
    assert_same_rows(read_rows(out), local_rows)
    assert len(list(out.glob("rec7.npz.part-*.parquet"))) == 7  # 400 rows / 64


def test_glob_and_manifest(model: Path, inputs: Path, work: Path) -> None:
    out = work / "glob"
    result = run_batch(model, f"{inputs}/rec[0-2].npz", out)
    assert (result.files, result.rows) == (3, 450)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["state"] == "complete" and manifest["task"] == "classify"
    assert manifest["summary"]["rows"] == 450


def test_forecast_and_anomaly_rows_match_run(work: Path, forecast_csv: Path) -> None:
    single_thread()
    from edgelstm.exporters.onnx import export
    from edgelstm.training.trainer import train

    folder = work / "series"
    folder.mkdir()
    anomaly = write_anomaly_csv(folder / "a.csv")
    run = train("anomaly", data=anomaly, out=work / "anomaly_run", **TINY_KW, **WINDOW_KW)
    export(run.out, work / "anomaly.onnx")
    run_batch(work / "anomaly.onnx", folder, work / "anomaly_out")
    rows = read_rows(work / "anomaly_out")
    table = run_model(work / "anomaly.onnx", anomaly, work / "a.json").predictions.table
    assert rows == [{"source": "a.csv", "index": r["step"], **r} for r in table_rows(table)]

    series = write_forecast_csv(work / "f.csv")
    run = train("forecast", data=series, out=work / "forecast_run", **TINY_KW, **WINDOW_KW)
    export(run.out, work / "forecast.onnx")
    windows = folder.parent / "windows"
    windows.mkdir()
    rng = np.random.default_rng(0)
    np.savez(windows / "w.npz", X=rng.normal(size=(30, 16, 2)).astype(np.float32))
    run_batch(
        work / "forecast.onnx", windows, work / "forecast_out", batch=BatchOptions(partition_rows=7)
    )
    rows = read_rows(work / "forecast_out")
    table = run_model(work / "forecast.onnx", windows / "w.npz", work / "w.json").predictions.table
    assert len(rows) == 30 * 4
    want = sorted(table_rows(table), key=lambda r: (r["window"], r["step_ahead"]))
    got = sorted(rows, key=lambda r: (r["index"], r["step_ahead"]))
    for row, record in zip(got, want, strict=True):
        assert row["index"] == record["window"]
        assert {k: v for k, v in row.items() if k not in ("source", "index")} == pytest.approx(
            record, abs=1e-5
        )


# --------------------------------------------------------------------------------------------
# Parquet in


def _write_parquet_nested(path: Path, npz: Path) -> None:
    arrays = np.load(npz)
    sequences = [arrays["X"][i, : arrays["lengths"][i]].tolist() for i in range(len(arrays["X"]))]
    table = pa.table({"X": sequences, "y": arrays["y"]})
    pq.write_table(table, path, row_group_size=64)


def test_parquet_archive_scores_like_npz(
    model: Path, inputs: Path, local_rows: list[dict[str, Any]], work: Path
) -> None:
    archive = work / "archive.parquet"
    _write_parquet_nested(archive, inputs / "rec7.npz")
    out = work / "from_parquet"
    result = run_batch(model, archive, out, batch=BatchOptions(partition_rows=100))
    assert (result.files, result.partitions, result.rows) == (1, 4, 400)
    got = [{**r, "source": "rec7.npz"} for r in read_rows(out)]
    assert_same_rows(got, [r for r in local_rows if r["source"] == "rec7.npz"])


def test_parquet_one_list_column_per_feature(model: Path, inputs: Path, work: Path) -> None:
    arrays = np.load(inputs / "rec0.npz")
    lengths = arrays["lengths"]
    columns = {
        f"f{j}": [arrays["X"][i, : lengths[i], j].tolist() for i in range(len(lengths))]
        for j in range(3)
    }
    path = work / "per_feature.parquet"
    pq.write_table(pa.table(columns), path)
    out = work / "per_feature.csv"
    result = run_model(model, path, out)  # the single-file run reads Parquet too
    want = run_model(model, inputs / "rec0.npz", work / "rec0.csv")
    np.testing.assert_allclose(
        result.predictions.arrays["probabilities"],
        want.predictions.arrays["probabilities"],
        atol=1e-6,
    )


def test_parquet_without_sequence_columns_is_refused(model: Path, work: Path) -> None:
    path = work / "ids.parquet"
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", "b"]}), path)
    with pytest.raises(InvalidInputError, match=r"ids\.parquet: no sequence columns"):
        run_model(model, path, work / "ids.csv")


# --------------------------------------------------------------------------------------------
# bad input, the output folder, resume


@pytest.fixture
def with_bad_file(inputs: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("rec0.npz", "rec1.npz"):
        (folder / name).write_bytes((inputs / name).read_bytes())
    (folder / "broken.npz").write_bytes(b"not a zip file")
    return folder


def test_bad_file_stops_with_one_error_naming_it(
    cli: CliRunner, model: Path, with_bad_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli("run", model, "--input", with_bad_file, "--output", out, "--engine", "local")
    assert_clean_failure(result, None, "broken.npz", "--skip-bad", "--resume")
    # what was scored before it is kept, complete; the manifest says the run failed
    for part in out.glob("*.parquet"):
        assert is_complete_partition(part)
    assert '"state": "failed"' in (out / MANIFEST_NAME).read_text()


def test_skip_bad_lists_the_file_and_scores_the_rest(
    cli: CliRunner, model: Path, with_bad_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli(
        "run", model, "--input", with_bad_file, "--output", out, "--engine", "local", "--skip-bad"
    )
    assert result.code == 0, result.err
    assert "skipped broken.npz" in result.err
    assert "1 file(s) skipped: broken.npz" in result.err
    assert {r["source"] for r in read_rows(out)} == {"rec0.npz", "rec1.npz"}
    assert '"state": "partial"' in (out / MANIFEST_NAME).read_text()


def test_output_folder_rules(cli: CliRunner, model: Path, inputs: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = cli("run", model, "--input", inputs, "--output", foreign)
    assert_clean_failure(result, None, "did not write")
    assert (foreign / "notes.txt").read_text() == "mine"

    out = tmp_path / "out"
    assert cli("run", model, "--input", inputs, "--output", out).code == 0
    again = cli("run", model, "--input", inputs, "--output", out)
    assert_clean_failure(again, None, "--resume", "--overwrite")
    other = cli(
        "run", model, "--input", inputs, "--output", out, "--resume", "--partition-rows", "9"
    )
    assert_clean_failure(other, None, "partition_rows")
    assert cli("run", model, "--input", inputs, "--output", out, "--overwrite").code == 0


def test_resume_after_a_kill_scores_only_the_rest(
    model: Path, inputs: Path, local_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    """SIGKILL the local engine mid-run, then --resume: complete, no duplicates, and the
    partitions written before the kill are kept, not scored again."""
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "edgelstm", "run", str(model), "--input", str(inputs),
        "--output", str(out), "--engine", "local", "--partition-rows", "4",
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.parquet"))) < 5 and process.poll() is None:
            assert time.monotonic() < deadline, "no partitions written"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    written = sorted(out.glob("*.parquet"))
    assert 5 <= len(written) < 500
    for part in written:
        assert is_complete_partition(part), f"{part} is half-written"
        pq.read_table(part)
    stamps = {p: p.stat().st_mtime_ns for p in written}

    result = run_batch(model, inputs, out, batch=BatchOptions(partition_rows=4, resume=True))
    assert result.resumed >= len(written) - 1  # the one being renamed may not count yet
    assert result.rows == 2000 - 4 * result.resumed
    assert_same_rows(read_rows(out), local_rows)
    kept = [p for p in written if p.stat().st_mtime_ns == stamps[p]]
    assert len(kept) >= len(written) - 1
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*.attempts"))


#: Runs a batch in a fresh process that SIGKILLs itself just after the third partition is
#: renamed into place, before its attempts marker is removed (the marker's ``end`` is where
#: the runner removes it; patched here because no test hook in ``fileio`` names that moment).
_DIE_AFTER_THIRD_RENAME = """
import os, signal, sys
from edgelstm.runtimes.batch import BatchOptions, partitions, run_batch

ended = []
end = partitions._Attempts.end

def die_on_the_third(self):
    ended.append(self)
    if len(ended) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    end(self)

partitions._Attempts.end = die_on_the_third
run_batch(sys.argv[1], sys.argv[2], sys.argv[3], batch=BatchOptions(partition_rows=100))
"""


def test_kill_between_rename_and_marker_removal_then_resume(
    model: Path, inputs: Path, local_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The partition is complete (its file is there): resume keeps it, runs the rest, and no
    stale attempts marker is left behind."""
    out = tmp_path / "out"
    command = [sys.executable, "-c", _DIE_AFTER_THIRD_RENAME, str(model), str(inputs), str(out)]
    died = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr
    third = out / "rec1.npz.part-00001.parquet"  # rec0: 1 partition of 100 rows, rec1: 2
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "rec0.npz.part-00000.parquet",
        "rec1.npz.part-00000.parquet",
        third.name,
    ]
    assert is_complete_partition(third) and attempts_marker(third).exists()  # the moment hit
    stamp = third.stat().st_mtime_ns

    result = run_batch(model, inputs, out, batch=BatchOptions(partition_rows=100, resume=True))
    assert (result.resumed, result.rows) == (3, 2000 - 250)
    assert third.stat().st_mtime_ns == stamp, "the complete partition was run again"
    assert_same_rows(read_rows(out), local_rows)
    assert not list(out.rglob(".*.attempts")) and not list(out.rglob(".*.tmp"))
    assert json.loads((out / MANIFEST_NAME).read_text())["state"] == "complete"


# --------------------------------------------------------------------------------------------
# Ray


def test_worker_resources_never_claim_every_cpu() -> None:
    two = worker_resources(2, 0, workers=2, cpus_per_worker=None, threads=1, gpu=False)
    assert (two.workers, two.threads) == (2, 1)
    assert two.workers * two.cpus <= 1.5  # headroom for Ray Data's own tasks
    default = worker_resources(8, 0, workers=None, cpus_per_worker=None, threads=2, gpu=False)
    assert (default.workers, default.threads) == (4, 2)
    gpus = worker_resources(16, 2, workers=None, cpus_per_worker=None, threads=1, gpu=True)
    assert (gpus.workers, gpus.gpus) == (2, 1.0)
    with pytest.raises(InvalidInputError, match="do not fit"):
        worker_resources(2, 0, workers=3, cpus_per_worker=1, threads=1, gpu=False)
    with pytest.raises(InvalidInputError, match="GPUs"):
        worker_resources(16, 1, workers=2, cpus_per_worker=None, threads=1, gpu=True)
    with pytest.raises(ProviderUnavailableError, match="no GPU"):
        worker_resources(16, 0, workers=None, cpus_per_worker=None, threads=1, gpu=True)


def test_engine_ray_without_the_extra_names_it(
    cli: CliRunner, model: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    result = cli("run", model, "--input", inputs, "--output", out, "--engine", "ray")
    assert_clean_failure(result, None, "pip install 'edgelstm[scale]'")


def test_ray_flags_need_the_ray_engine(
    cli: CliRunner, model: Path, inputs: Path, tmp_path: Path
) -> None:
    result = cli("run", model, "--input", inputs, "--output", tmp_path / "o", "--workers", "2")
    assert_clean_failure(result, None, "--engine ray")
    result = cli("run", model, "--input", inputs / "rec0.npz", "--output", "x.csv", "--resume")
    assert_clean_failure(result, None, "--resume", "--engine")


@pytest.mark.ray
def test_ray_two_workers_equal_local_row_for_row(
    ray_cluster: Any,
    cli: CliRunner,
    model: Path,
    inputs: Path,
    local_rows: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    result = cli(
        "run", model, "--input", inputs, "--output", out, "--engine", "ray", "--workers", "2",
        "--partition-rows", "128", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["rows"] == 2000 and summary["engine"]["workers"] == 2
    assert_same_rows(read_rows(out), local_rows)


@pytest.mark.ray
def test_ray_pool_that_claims_every_cpu_completes(
    ray_cluster: Any, model: Path, inputs: Path, local_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The configuration that hangs a read-then-map Ray Data pipeline (ray#44687): two actors
    of one CPU each on a two-CPU Ray."""
    out = tmp_path / "out"
    result = finishes(
        180,
        run_batch,
        model,
        inputs,
        out,
        batch=BatchOptions(engine="ray"),
        ray=RayOptions(workers=2, cpus_per_worker=1),
    )
    assert result.engine.resources["cpus_per_worker"] == 1
    assert_same_rows(read_rows(out), local_rows)


@pytest.mark.ray
def test_ray_worker_killed_mid_write_is_retried_without_duplicates(
    ray_cluster: Any, model: Path, inputs: Path, local_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    out = tmp_path / "out"
    result = finishes(
        180,
        run_batch,
        model,
        inputs,
        out,
        batch=BatchOptions(engine="ray", partition_rows=128),
        # the first worker to write a partition dies by SIGKILL with its file half-done
        ray=RayOptions(
            workers=2,
            runtime_env={"env_vars": {KILL_AT_ENV: "write", KILL_ONCE_ENV: str(marker)}},
        ),
    )
    assert marker.exists(), "no worker was killed"
    assert result.rows == 2000
    assert_same_rows(read_rows(out), local_rows)
    assert not list(out.rglob(".*.tmp")), "the killed write's temporary file is left"
    assert not list(out.rglob(".*.attempts"))


@pytest.mark.ray
def test_ray_bad_file_fails_naming_it(
    ray_cluster: Any, model: Path, with_bad_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=r"broken\.npz"):
        run_batch(model, with_bad_file, tmp_path / "out", batch=BatchOptions(engine="ray"))
    result = run_batch(
        model,
        with_bad_file,
        tmp_path / "out",
        batch=BatchOptions(engine="ray", skip_bad=True, resume=True),
    )
    assert [source for source, _ in result.failures] == ["broken.npz"]
    assert {r["source"] for r in read_rows(tmp_path / "out")} == {"rec0.npz", "rec1.npz"}


@pytest.mark.ray
def test_ray_worker_without_the_provider_stops_the_run(
    ray_cluster: Any, model: Path, inputs: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has OpenVINO; the test needs a provider it lacks")
    out = tmp_path / "out"
    with pytest.raises(ProviderUnavailableError, match="a Ray worker could not start: openvino"):
        run_batch(
            model,
            inputs,
            out,
            session=SessionConfig(providers=("openvino",)),
            batch=BatchOptions(engine="ray"),
        )
    assert not out.exists(), "a run that scored nothing leaves no folder"
