"""Quality of the default `edgelstm train` runs on the four built-in datasets.

Run from the repository root (results land in ``benchmarks/results/``)::

    python -m edgelstm.benchmarks.training_quality

Each dataset is trained exactly as ``edgelstm train --task TASK --dataset NAME`` would, with
default settings, and checked against the target the foundation issue sets. Timings are
wall-clock on whatever machine runs it; the JSON records the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm import __version__
from edgelstm.fileio import write_json_atomic, write_text_atomic

#: Seconds each default run must finish in on 2 CPU cores.
TIME_BUDGET_S = 120.0


@dataclass(frozen=True)
class QualityTarget:
    dataset: str
    task: str
    description: str
    passes: Callable[[dict[str, Any]], bool]


TARGETS = (
    QualityTarget(
        "JapaneseVowels",
        "classify",
        "test accuracy >= 0.97",
        lambda m: m["accuracy"] >= 0.97,
    ),
    QualityTarget(
        "BasicMotions", "classify", "test accuracy >= 0.95", lambda m: m["accuracy"] >= 0.95
    ),
    QualityTarget(
        "Airline",
        "forecast",
        "test MAE below the seasonal-naive baseline's",
        lambda m: m["mae"] < m["baseline_mae"],
    ),
    QualityTarget(
        "KDD-TSAD_135",
        "anomaly",
        "the labelled anomaly region gets the highest score",
        lambda m: bool(m.get("top_score_in_anomaly")),
    ),
)


def _environment() -> dict[str, Any]:
    import torch

    from edgelstm.hardware import cpu_info

    cpu = cpu_info()
    return {
        "edgelstm": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu.model,
        "logical_cores": cpu.logical_cores,
        "platform": platform.platform(),
    }


def run(datasets: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Train each dataset with defaults; return the result document."""
    from edgelstm.training import train

    rows = []
    for target in TARGETS:
        if datasets and target.dataset not in datasets:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = train(target.task, dataset=target.dataset, out=Path(tmp) / "run", seed=seed)
            seconds = time.perf_counter() - started
        passed = target.passes(result.metrics)
        rows.append(
            {
                "dataset": target.dataset,
                "task": target.task,
                "command": f"edgelstm train --task {target.task} --dataset {target.dataset} "
                f"--seed {seed} --out RUN_DIR",
                "target": target.description,
                "target_met": passed,
                "seconds": round(seconds, 1),
                "within_time_budget": seconds < TIME_BUDGET_S,
                "metrics": result.metrics,
            }
        )
        print(
            f"{target.dataset:15s} {'PASS' if passed else 'FAIL'}  {seconds:6.1f} s  "
            f"{target.description}: {_headline(result.metrics)}",
            file=sys.stderr,
        )
    return {
        "schema": "edgelstm.training-quality/1",
        "command": "python -m edgelstm.benchmarks.training_quality",
        "environment": _environment(),
        "time_budget_s": TIME_BUDGET_S,
        "rows": rows,
    }


def _headline(metrics: dict[str, Any]) -> str:
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
    if "mae" in metrics:
        return f"MAE {metrics['mae']:.2f} vs seasonal-naive {metrics['baseline_mae']:.2f}"
    return (
        f"top score at step {metrics['top_score_index']}, in anomaly: "
        f"{metrics.get('top_score_in_anomaly')}, AUROC {metrics.get('auroc', float('nan')):.3f}"
    )


def to_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [
        "# Training quality of the default settings",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {env['cpu']}, {env['logical_cores']} logical cores, torch {env['torch']} "
        f"({env['torch_threads']} threads), Python {env['python']}, edgelstm {env['edgelstm']}",
        "",
        "| dataset | task | target | met | result | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in doc["rows"]:
        lines.append(
            f"| {row['dataset']} | {row['task']} | {row['target']} | "
            f"{'yes' if row['target_met'] else '**no**'} | {_headline(row['metrics'])} | "
            f"{row['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    doc = run(args.dataset, args.seed)
    suffix = "" if args.seed == 0 else f"_seed{args.seed}"
    write_json_atomic(args.out / f"training_quality{suffix}.json", doc, overwrite=True)
    write_text_atomic(args.out / f"training_quality{suffix}.md", to_markdown(doc), overwrite=True)
    print(json.dumps([{r["dataset"]: r["target_met"]} for r in doc["rows"]]))
    return 0 if all(r["target_met"] and r["within_time_budget"] for r in doc["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
