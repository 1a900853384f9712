"""Batch-inference throughput: ``run --engine local`` against Ray with 1 and 2 actors.

One run scores the same input folder with each configuration ``--repeats`` times and reports
medians: the start-up (everything before the first partition began: Ray's own start, the
actors, their sessions) apart from the steady rows/s after it, the rows/s over the whole
wall time, and whether the rows equal the local engine's (labels identical, probabilities
within 1e-5). Every configuration runs one ONNX Runtime thread per worker.

- ``japanese_vowels``: JapaneseVowels trained with default settings (or ``--jv-run``), on its
  real test split (370 variable-length sequences, 12 features) tiled to ``--sequences``
  (default 20 000) in ``--files`` (default 16) ``.npz`` files, lengths preserved;
- ``reference``: the reference LSTM (2 x 128, 40 features, random weights) on random normal
  sequences of 100 steps (default 8000 in 8 files).

Results land in ``benchmark-results/`` unless told ``--out-dir``; from the repository root,
this updates the committed ones::

    python -m edgelstm.benchmarks.suites.batch_throughput --model japanese_vowels \\
        --out-dir benchmarks/results
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option, suite_environment

COMMAND = "python -m edgelstm.benchmarks.suites.batch_throughput"
SCHEMA = "edgelstm.batch-throughput/1"
TOLERANCE = 1e-5
#: (engine, Ray actors); the local engine is the reference the others are compared with.
CONFIGURATIONS: tuple[tuple[str, int | None], ...] = (("local", None), ("ray", 1), ("ray", 2))
#: --sequences and --files per model when not given.
DEFAULTS = {"japanese_vowels": (20_000, 16), "reference": (8_000, 8)}
#: The model and where its rows come from, per --model.
LABELS = {
    "japanese_vowels": (
        "JapaneseVowels, default settings",
        "the JapaneseVowels test split (370 variable-length sequences, 12 features) tiled",
    ),
    "reference": (
        "reference LSTM (2 x 128, 40 features, 10 classes, random weights)",
        "random normal sequences of 100 steps x 40 features",
    ),
}


def write_inputs(
    sequences: Sequence[np.ndarray], labels: np.ndarray, folder: Path, *, count: int, files: int
) -> list[Path]:
    """Tile ``sequences`` (each ``[time_i, features]``) to ``count`` rows in ``files`` ``.npz``
    files: ``X`` zero-padded to the longest, ``y`` and ``lengths``, so variable lengths (and
    the length bucketing they cause in the scorer) stay as in the real data."""
    if not 1 <= files <= count:
        raise SystemExit(f"error: --files {files} must be between 1 and --sequences {count}")
    order = np.arange(count) % len(sequences)
    width = max(s.shape[0] for s in sequences)
    y = np.asarray(labels).astype(str)  # plain strings: np.load needs no pickle for them
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rows in enumerate(np.array_split(order, files)):
        lengths = np.array([sequences[i].shape[0] for i in rows], np.int64)
        x = np.zeros((len(rows), width, sequences[0].shape[1]), np.float32)
        for j, i in enumerate(rows):
            x[j, : lengths[j]] = sequences[i]
        paths.append(folder / f"part-{k:03d}.npz")
        np.savez(paths[-1], X=x, y=y[rows], lengths=lengths)
    return paths


def prepare(name: str, work: Path, count: int, files: int, jv_run: Path | None) -> Path:
    """Export the model into ``work`` and write its inputs to ``work/inputs``."""
    from edgelstm.exporters.onnx import export

    if name == "reference":
        from edgelstm.benchmarks.suites.reference import reference_checkpoint

        run = work / "reference"
        if not run.is_dir():  # --work kept it from an earlier run: the same seed, the same model
            reference_checkpoint(run)
        x = np.random.default_rng(0).standard_normal((count, 100, 40), dtype=np.float32)
        sequences, labels = list(x), np.random.default_rng(1).integers(0, 10, count)
    else:
        import aeon

        from edgelstm.data.readers import load_inference_data
        from edgelstm.data.types import SequenceSet
        from edgelstm.training.trainer import train

        ts = Path(aeon.__file__).parent / "datasets/data/JapaneseVowels/JapaneseVowels_TEST.ts"
        data = load_inference_data(ts, "classify")
        if not isinstance(data, SequenceSet) or data.labels is None:
            raise SystemExit(f"error: {ts} did not read as labelled sequences")
        run = jv_run or work / "jv_run"
        if not run.is_dir():  # a given folder that does not exist yet keeps the run for reuse
            train("classify", dataset="JapaneseVowels", out=run, seed=0)
        sequences, labels = list(data.sequences), data.labels
    model = work / f"{name}.onnx"
    export(run, model, overwrite=True)
    write_inputs(sequences, labels, work / "inputs", count=count, files=files)
    return model


def run_once(
    model: Path, inputs: Path, out: Path, engine: str, workers: int | None
) -> dict[str, Any]:
    """One ``run_batch`` run into the fresh folder ``out``; Ray starts and stops inside it."""
    from edgelstm.runtimes.batch import BatchOptions, RayOptions, run_batch
    from edgelstm.runtimes.ort.session_config import SessionConfig

    session, batch = SessionConfig(intra_op_threads=1), BatchOptions(engine=engine)
    result = run_batch(
        model, inputs, out, session=session, batch=batch, ray=RayOptions(workers=workers)
    )
    if result.engine is None:
        raise SystemExit(f"error: {out}: the engine scored nothing (was the folder reused?)")
    busy: dict[str, float] = {}
    for outcome in result.outcomes:
        busy[outcome.worker] = busy.get(outcome.worker, 0.0) + outcome.seconds
    return {
        "engine": engine, "workers": workers, "actors": result.engine.workers,
        "rows": result.rows, "seconds": result.seconds,
        "startup_seconds": result.engine.startup_seconds,
        "shutdown_seconds": result.engine.shutdown_seconds,
        "steady_rows_per_s": result.rows_per_s,
        "overall_rows_per_s": result.rows / result.seconds if result.seconds > 0 else 0.0,
        # The busiest worker's own scoring time: what the steady phase would take with no
        # engine overhead (Ray's scheduling, result transfer, shutdown) at all.
        "busy_seconds": max(busy.values(), default=0.0),
        "resources": result.engine.resources, "notes": [*result.engine.notes, *result.notices],
    }  # fmt: skip


def compare_rows(a: Path, b: Path) -> float | None:
    """The largest absolute difference of the float columns of two batch output folders, or
    None when anything else differs: the rows present, the columns, a label, an index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    left, right = (
        pq.read_table(p).sort_by([("source", "ascending"), ("index", "ascending")]) for p in (a, b)
    )
    if sorted(left.column_names) != sorted(right.column_names) or len(left) != len(right):
        return None
    worst = 0.0
    for column in left.column_names:
        x, y = left.column(column), right.column(column)
        if pa.types.is_floating(x.type) and pa.types.is_floating(y.type):
            u = x.to_numpy().astype(np.float64)
            v = y.to_numpy().astype(np.float64)
            if (np.isnan(u) != np.isnan(v)).any():
                return None
            worst = max(worst, float(np.max(np.abs(u - v), initial=0.0, where=~np.isnan(u))))
        elif x.to_pylist() != y.to_pylist():
            return None
    return worst


def _cores_note(two: Mapping[str, Any], one: Mapping[str, Any], cpus: int) -> str:
    gain = two["steady_rows_per_s"] / one["steady_rows_per_s"] if one["steady_rows_per_s"] else 0
    ideal = min(two["actors"], cpus) / min(one["actors"], cpus)
    return (
        f"Two actors reach {gain:.2f}x one actor's steady rows/s on {cpus} cores (at most "
        f"{ideal:.0f}x): each reserves {two['resources'].get('cpus_per_worker')} CPU, and the "
        "driver, the raylet and Ray Data's scheduler run on the same cores."
    )


def summarise(runs: Sequence[Mapping[str, Any]], cpus: int | None = None) -> dict[str, Any]:
    """Median per configuration, its ratio to the local engine, and what limits it (on
    ``cpus`` cores, default this machine's)."""
    configs: list[dict[str, Any]] = []
    for key in dict.fromkeys((r["engine"], r["workers"]) for r in runs):
        mine = [r for r in runs if (r["engine"], r["workers"]) == key]
        diffs = [r["max_abs_diff"] for r in mine]
        medians = {k: statistics.median(r[k] for r in mine) for k in (
            "seconds", "startup_seconds", "shutdown_seconds", "steady_rows_per_s",
            "overall_rows_per_s", "busy_seconds")}  # fmt: skip
        configs.append({
            "engine": key[0], "workers": key[1], "actors": mine[0]["actors"],
            "rows": mine[0]["rows"], "resources": mine[0]["resources"], **medians,
            "max_abs_diff": None if None in diffs else max(diffs),
            "rows_equal_local": all(r["rows_equal_local"] for r in mine),
            "per_run": {k: [r[k] for r in mine] for k in ("rows", *medians)},
        })  # fmt: skip
    local = next(c for c in configs if c["engine"] == "local")
    for c in configs:
        c["vs_local"] = c["steady_rows_per_s"] / local["steady_rows_per_s"]
    ray = {c["actors"]: c for c in configs if c["engine"] == "ray"}
    findings = []
    if 1 in ray:
        one = ray[1]
        after = one["seconds"] - one["startup_seconds"] - one["shutdown_seconds"]
        findings.append(
            f"Ray starts in {one['startup_seconds']:.1f} s (Ray, one actor, its session) where "
            f"the local engine opens its session in {local['startup_seconds']:.2f} s. One actor "
            f"scores at {one['vs_local']:.2f}x the local engine's steady rows/s; its own "
            f"reading, scoring and writing took {one['busy_seconds']:.1f} s of the {after:.1f} s "
            "between start-up and shutdown (the rest: Ray Data's scheduling and moving each "
            f"partition's outcome to the driver); stopping Ray took "
            f"{one['shutdown_seconds']:.1f} s more."
        )
        if 2 in ray:
            findings.append(_cores_note(ray[2], one, cpus or os.cpu_count() or 1))
    best = max(ray.values(), key=lambda c: c["steady_rows_per_s"], default=None)
    if best is not None and best["steady_rows_per_s"] > local["steady_rows_per_s"]:
        per_row = 1 / local["steady_rows_per_s"] - 1 / best["steady_rows_per_s"]
        rows = (best["startup_seconds"] - local["startup_seconds"]) / per_row
        findings.append(
            f"Ray with {best['actors']} actors pays back its start-up past about {rows:,.0f} "
            f"rows; over these {local['rows']:,} rows it runs at {best['overall_rows_per_s']:,.0f}"
            f" rows/s against the local engine's {local['overall_rows_per_s']:,.0f}."
        )
    elif best is not None:
        findings.append(
            f"No Ray pool reaches the local engine's steady rows/s in this run, so at "
            f"{local['rows']:,} rows the local engine is the faster one."
        )
    return {"configurations": configs, "findings": findings}


def _equal_cell(c: Mapping[str, Any], repeats: int) -> str:
    diff = c["max_abs_diff"]
    if c["engine"] == "local":
        return "reference" + (f" (repeats: max diff {diff:.1g})" if repeats > 1 else "")
    if diff is None:
        return "NO (rows or labels differ)"
    return f"{'yes' if c['rows_equal_local'] else 'NO'} ({diff:.1g})"


def to_markdown(doc: Mapping[str, Any]) -> str:
    env, data = doc["environment"], doc["data"]
    rows = [[c["engine"], str(c["actors"]), f"{c['rows']:,}", f"{c['startup_seconds']:.2f}",
             f"{c['steady_rows_per_s']:,.0f}", f"{c['overall_rows_per_s']:,.0f}",
             f"{c['vs_local']:.2f}x", _equal_cell(c, doc["repeats"])]
            for c in doc["configurations"]]  # fmt: skip
    header = ["engine", "workers", "rows", "start-up s", "steady rows/s", "overall rows/s",
              "vs local", "rows equal local (max diff)"]  # fmt: skip
    load = ", ".join(f"{v:.2f}" for v in env["loadavg_at_start"])
    lines = [
        f"# Batch throughput: {doc['model']['label']}", "", f"Command: `{doc['command']}`", "",
        f"Machine: {env['cpu'].get('model')}, {env['cpu_count']} cores, CPU flags "
        f"{' '.join(env['cpu_flags']) or 'unknown'}; onnxruntime "
        f"{env['libraries'].get('onnxruntime')}, ray {env['libraries'].get('ray')}, pyarrow "
        f"{env['libraries'].get('pyarrow')}, numpy {env['libraries'].get('numpy')}, Python "
        f"{env['python']}; load average at start {load}; commit "
        f"{env.get('git', {}).get('commit', 'unknown')[:12]}.", "",
        f"Data: {data['description']}. Medians of {doc['repeats']} run(s) per configuration, "
        "repeats interleaved; one ONNX Runtime thread per worker. Start-up: everything before "
        "the first partition began (Ray's own start, actors, sessions); steady rows/s: rows "
        "over the time after it; vs local: steady rows/s over the local engine's.", "",
        *(f"| {' | '.join(r)} |" for r in [header, ["---"] * len(header), *rows]), "",
        "## What limits it", "", " ".join(doc["findings"]),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from edgelstm.fileio import write_json_atomic, write_text_atomic
    from edgelstm.runtimes.ort.artifact import load_artifact

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--model", required=True, choices=sorted(DEFAULTS))
    add("--sequences", type=int, help="rows to score (default 20000 / 8000 for reference)")
    add("--files", type=int, help="input .npz files (default 16 / 8 for reference)")
    add("--repeats", type=int, default=2, help="runs per configuration (median reported)")
    add("--jv-run", type=Path, help="JapaneseVowels checkpoint folder (trained there if absent)")
    add("--work", type=Path, help="folder for models, inputs and outputs (default: temporary)")
    add_out_option(parser, "--out-dir")
    args = parser.parse_args(argv)
    count, files = args.sequences or DEFAULTS[args.model][0], args.files or DEFAULTS[args.model][1]
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    # First: the load average before this run adds its own.
    env = suite_environment(("ray", "pyarrow"))
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for mine in ("inputs", "scores"):  # this script's own subfolders, stale from a rerun
            shutil.rmtree(work / mine, ignore_errors=True)
        model = prepare(args.model, work, count, files, args.jv_run)
        meta = load_artifact(model, verify=False).edgelstm_metadata()
        # Repeats are the outer loop: drift on a shared machine spreads over every engine.
        for repeat, (engine, workers) in itertools.product(range(args.repeats), CONFIGURATIONS):
            out = work / "scores" / f"{engine}-{workers or 0}-{repeat}"
            run = run_once(model, work / "inputs", out, engine, workers)
            reference = work / "scores" / "local-0-0"  # the first local run's rows
            diff = 0.0 if out == reference else compare_rows(reference, out)
            runs.append({**run, "repeat": repeat, "max_abs_diff": diff,
                         "rows_equal_local": diff is not None and diff <= TOLERANCE})  # fmt: skip
            sys.stderr.write(f"{engine} x{run['actors']} run {repeat + 1}: {run['rows']} rows, "
                             f"start-up {run['startup_seconds']:.2f} s, "
                             f"{run['steady_rows_per_s']:,.0f} rows/s steady\n")  # fmt: skip
    label, source = LABELS[args.model]
    document = {
        "schema": SCHEMA,
        "command": shlex.join([*COMMAND.split(), *(sys.argv[1:] if argv is None else argv)]),
        "environment": env,
        "model": {"name": args.model, "label": label, "task": meta.task,
                  "features": len(meta.feature_names), "classes": len(meta.class_labels)},
        "data": {"sequences": count, "files": files,
                 "description": f"{source}: {count:,} sequences in {files} .npz files"},
        "repeats": args.repeats, "tolerance": TOLERANCE,
        **summarise(runs),
        "passed": all(r["rows_equal_local"] for r in runs), "runs": runs,
    }  # fmt: skip
    markdown = args.out_dir / f"batch_{args.model}.md"
    write_json_atomic(markdown.with_suffix(".json"), document, overwrite=True)
    write_text_atomic(markdown, to_markdown(document), overwrite=True)
    sys.stdout.write(f"{to_markdown(document)}\nwrote {markdown}\n")
    return 0 if document["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
