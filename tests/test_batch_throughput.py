"""The batch-throughput benchmark's pure parts on hand-made inputs: the inputs it writes, the
row comparison that decides pass/fail, the medians and ratios, and the Markdown report.

Neither Ray nor a timing is involved: the measurement itself runs on a quiet machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelstm.benchmarks.suites.batch_throughput import (
    compare_rows,
    summarise,
    to_markdown,
    write_inputs,
)


def test_write_inputs_tiles_the_sequences_and_keeps_their_lengths(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((n, 4)).astype(np.float32) for n in (2, 5, 3)]
    labels = np.array(["a", "b", "c"])
    paths = write_inputs(sequences, labels, tmp_path / "in", count=7, files=3)
    assert [p.name for p in paths] == [f"part-{k:03d}.npz" for k in range(3)]
    x, y, lengths = [], [], []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            assert data["X"].dtype == np.float32 and data["X"].shape[1:] == (5, 4)
            x.extend(data["X"])
            y.extend(data["y"].tolist())
            lengths.extend(data["lengths"].tolist())
    assert lengths == [2, 5, 3, 2, 5, 3, 2]
    assert y == ["a", "b", "c", "a", "b", "c", "a"]
    for row, n, k in zip(x, lengths, [0, 1, 2, 0, 1, 2, 0], strict=True):
        np.testing.assert_array_equal(row[:n], sequences[k])
        assert not row[n:].any()  # padding, which `lengths` tells the reader to drop


def test_write_inputs_refuses_more_files_than_sequences(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--files 5"):
        write_inputs([np.zeros((2, 1), np.float32)], np.array(["a"]), tmp_path, count=3, files=5)


def _scores(folder: Path, rows: list[dict[str, Any]], files: int = 1) -> Path:
    """A batch output folder: ``rows`` split over ``files`` Parquet partitions, plus the
    manifest the engines write (which the reader must skip)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(rows)), files)):
        chunk = [rows[i] for i in part]
        table = pa.table({key: [r[key] for r in chunk] for key in rows[0]})
        pq.write_table(table, folder / f"in.npz.part-{k}.parquet")
    (folder / "_edgelstm_batch.json").write_text("{}")
    return folder


def _rows() -> list[dict[str, Any]]:
    return [
        {"source": s, "index": i, "label": "1" if i % 2 else "2", "confidence": 0.75,
         "prob_1": 0.75 if i % 2 else 0.25, "prob_2": 0.25 if i % 2 else 0.75, "true_label": "1"}
        for s in ("a.npz", "b.npz") for i in range(3)
    ]  # fmt: skip


def test_compare_rows_ignores_order_and_partitioning(tmp_path: Path) -> None:
    rows = _rows()
    a = _scores(tmp_path / "a", rows)
    b = _scores(tmp_path / "b", rows[::-1], files=2)
    assert compare_rows(a, b) == 0.0


def test_compare_rows_reports_the_largest_float_difference(tmp_path: Path) -> None:
    rows = _rows()
    changed = [dict(r) for r in rows]
    changed[4]["prob_2"] += 3e-4
    changed[1]["confidence"] -= 1e-6
    diff = compare_rows(_scores(tmp_path / "a", rows), _scores(tmp_path / "b", changed))
    assert diff == pytest.approx(3e-4)


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: rows[2].update(label="9"),
        lambda rows: rows[3].update(true_label=None),
        lambda rows: rows.pop(),
        lambda rows: rows[0].update(prob_1=float("nan")),
    ],
    ids=["label", "true_label", "missing row", "nan on one side"],
)
def test_compare_rows_refuses_anything_but_float_noise(tmp_path: Path, change: Any) -> None:
    rows = _rows()
    changed = [dict(r) for r in rows]
    change(changed)
    assert compare_rows(_scores(tmp_path / "a", rows), _scores(tmp_path / "b", changed)) is None


def _run(engine: str, actors: int, steady: float, startup: float, **extra: Any) -> dict[str, Any]:
    rows = 1000
    seconds = startup + rows / steady
    return {
        "engine": engine, "workers": None if engine == "local" else actors, "actors": actors,
        "rows": rows, "seconds": seconds, "startup_seconds": startup, "shutdown_seconds": 0.0,
        "steady_rows_per_s": steady, "overall_rows_per_s": rows / seconds,
        "busy_seconds": rows / steady * 0.8, "resources": {"cpus_per_worker": 0.75},
        "max_abs_diff": 0.0, "rows_equal_local": True, **extra,
    }  # fmt: skip


def _document() -> dict[str, Any]:
    runs = [
        _run("local", 1, 1000.0, 0.05),
        _run("ray", 1, 800.0, 4.0, max_abs_diff=2e-7),
        _run("ray", 2, 1500.0, 5.0, max_abs_diff=None, rows_equal_local=False),
        _run("local", 1, 1200.0, 0.07),
        _run("ray", 1, 900.0, 4.4, max_abs_diff=3e-7),
        _run("ray", 2, 1700.0, 5.2, max_abs_diff=None, rows_equal_local=False),
    ]
    env = {
        "cpu": {"model": "Test CPU"}, "cpu_count": 2, "cpu_flags": ["avx2", "fma"],
        "libraries": {"onnxruntime": "1.0", "ray": "2.0", "pyarrow": "3.0", "numpy": "4.0"},
        "python": "3.11.0", "loadavg_at_start": [0.5, 0.25, 0.1], "git": {"commit": "abc" * 14},
    }  # fmt: skip
    return {
        "command": "python -m edgelstm.benchmarks.suites.batch_throughput --model reference",
        "environment": env,
        "model": {"label": "tiny"},
        "data": {"description": "six rows"},
        "repeats": 2,
        **summarise(runs, cpus=2),
    }


def test_summarise_takes_medians_and_ratios_to_the_local_engine() -> None:
    configs = {(c["engine"], c["actors"]): c for c in _document()["configurations"]}
    local, one, two = configs["local", 1], configs["ray", 1], configs["ray", 2]
    assert local["steady_rows_per_s"] == 1100.0
    assert one["startup_seconds"] == pytest.approx(4.2)
    assert one["vs_local"] == pytest.approx(850 / 1100)
    assert one["max_abs_diff"] == 3e-7 and one["rows_equal_local"]
    assert two["max_abs_diff"] is None and not two["rows_equal_local"]
    assert two["per_run"]["steady_rows_per_s"] == [1500.0, 1700.0]


def test_to_markdown_has_the_table_and_what_limits_it() -> None:
    document = _document()
    markdown = to_markdown(document)
    assert "# Batch throughput: tiny" in markdown
    assert "Test CPU, 2 cores, CPU flags avx2 fma" in markdown
    assert "load average at start 0.50, 0.25, 0.10" in markdown
    assert "| local | 1 | 1,000 | 0.06 | 1,100 |" in markdown
    assert "| ray | 1 | 1,000 | 4.20 | 850 |" in markdown
    assert "0.77x | yes (3e-07) |" in markdown
    assert "| ray | 2 | 1,000 | 5.10 | 1,600 |" in markdown
    assert "1.45x | NO (rows or labels differ) |" in markdown
    # 1600 / 850 rows/s: two actors against one; ray x2 beats local, so a break-even exists.
    assert "Two actors reach 1.88x one actor's steady rows/s on 2 cores" in markdown
    local, two = document["configurations"][0], document["configurations"][2]
    per_row = 1 / local["steady_rows_per_s"] - 1 / two["steady_rows_per_s"]
    rows = (two["startup_seconds"] - local["startup_seconds"]) / per_row
    assert f"Ray with 2 actors pays back its start-up past about {rows:,.0f} rows" in markdown


def test_summarise_says_when_no_ray_pool_beats_the_local_engine() -> None:
    runs = [_run("local", 1, 2000.0, 0.05), _run("ray", 1, 800.0, 4.0), _run("ray", 2, 1500.0, 5.0)]
    findings = " ".join(summarise(runs, cpus=2)["findings"])
    assert "No Ray pool reaches the local engine's steady rows/s" in findings
    assert "at 1,000 rows the local engine is the faster one" in findings
    assert "pays back" not in findings
