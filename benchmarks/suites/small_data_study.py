"""Small-data remedies for the classify default, measured on OSULeaf, ACSF1 and ItalyPowerDemand.

Results land in ``benchmark-results/`` unless told ``--out``; from the repository root,
``--out benchmarks/results`` updates the committed ones::

    python -m edgelstm.benchmarks.suites.small_data_study --set OSULeaf --examples 36 \\
        --variant no-series-norm --variant series-norm [--shift] [--seeds 0,1,2]

Each run is ``edgelstm train --task classify`` on one *regime* of a set with one *variant* of
the settings (``--arch auto`` with the variant's settings given over it) and one seed:

- regime ``full``: the set's own train/test split (``--examples 0``);
- regime ``N examples``: a stratified subsample of the training split of about ``N``
  sequences (``round(N / classes)`` per class, at least 3; subsample seed 0, the same for every
  variant and training seed), tested on the whole test split: the small-data regime of a
  user's set of a few dozen sequences;
- ``--shift``: every train and test series gets its own gain (log-uniform in 1/4..4) and
  offset (uniform in -3..3) on top of the archive's per-series z-normalisation (fixed seed).
  The three sets are z-normalised per series, as the UCR archive ships them, so per-series
  normalisation inside the model has nothing to undo on them as given; a user's recordings
  often do carry such level and scale differences. 1-NN ED and DTW z-normalise univariate
  series themselves, so the shift leaves them unchanged.

Every row records the test accuracy, 1-NN ED and 1-NN DTW on the same split (from the run's
``metrics.json``; DTW is computed on a split's first run and reused for the others, as the
split is the same), the training seconds (without the baselines) and the model. For each
set x regime x variant whose seeds all ran in one invocation, the accuracy of their
ensemble (mean of the seeds' softmax outputs) is recorded too: what ensembling would buy.

Rows already in the output JSON are kept and replaced by key (set, regime, variant, seed), so
the study can be run in parts. Only the three tuning sets are accepted: the other
classification sets bundled with aeon are reserved for independent checking.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option, suite_environment
from edgelstm.benchmarks.suites.training_quality import (
    NN_DTW,
    RESERVED_SETS,
    architecture,
    seed_list,
)
from edgelstm.fileio import write_json_atomic, write_text_atomic

SCHEMA = "edgelstm.benchmarks.small-data-study/1"
SETS = ("OSULeaf", "ACSF1", "ItalyPowerDemand")
#: DTW budget for a split's first run (ACSF1's full split needs about 100 s).
DTW_BUDGET_S = 300.0
#: The subsample and the shift are drawn with these seeds, fixed across variants and seeds.
SUBSAMPLE_SEED = 0
SHIFT_SEED = 1
MIN_PER_CLASS = 3


@dataclass(frozen=True)
class Variant:
    """Settings given to ``train`` over ``--arch auto``'s choice."""

    name: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)


VARIANTS = {
    v.name: v
    for v in (
        Variant(
            "auto",
            "--arch auto as this checkout chooses (long univariate series: per-series "
            "normalisation on)",
        ),
        Variant("no-series-norm", "--arch auto with --no-series-norm", {"series_norm": False}),
        Variant("series-norm", "--arch auto with --series-norm", {"series_norm": True}),
        Variant(
            "noise",
            "--arch auto, with Gaussian input noise (std 0.1 in normalised units) in "
            "training: a cheap augmentation",
            {"input_noise": 0.1},
        ),
        Variant(
            "small",
            "--arch auto, with a quarter-size model: 1x64 LSTM, FCN 32-64-32",
            {"layers": 1, "hidden": 64, "fcn_filters": (32, 64, 32)},
        ),
    )
}


@dataclass(frozen=True)
class Regime:
    """Which training data a run sees: all of it or about ``examples`` sequences, shifted or not."""

    examples: int = 0
    shift: bool = False

    @property
    def name(self) -> str:
        size = "full" if self.examples == 0 else f"{self.examples} examples"
        return size + (", shifted" if self.shift else "")


# --------------------------------------------------------------------------------------------
# data


def _stratified_subsample(labels: np.ndarray, examples: int) -> np.ndarray:
    """Indices of about ``examples`` training sequences, the same count from every class."""
    classes = np.unique(labels)
    per_class = max(MIN_PER_CLASS, round(examples / len(classes)))
    rng = np.random.default_rng(SUBSAMPLE_SEED)
    picked: list[int] = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        picked.extend(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.asarray(picked))


def _shifted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each series times its own gain plus its own offset (per channel)."""
    gain = np.exp(rng.uniform(np.log(0.25), np.log(4.0), size=(len(x), 1, x.shape[2])))
    offset = rng.uniform(-3.0, 3.0, size=(len(x), 1, x.shape[2]))
    shifted: np.ndarray = (x * gain + offset).astype(np.float32)
    return shifted


def write_regime(dataset: str, regime: Regime, folder: Path) -> tuple[Path, Path]:
    """The regime's train and test sets as ``.npz`` files (X, y) in ``folder``."""
    from edgelstm.data.datasets import load_dataset
    from edgelstm.data.types import SequenceSet

    split = load_dataset(dataset)
    sets = {}
    for name, part in (("train", split.train), ("test", split.test)):
        assert isinstance(part, SequenceSet) and part.labels is not None
        sets[name] = (np.stack(part.sequences).astype(np.float32), np.asarray(part.labels))
    if regime.examples:
        keep = _stratified_subsample(sets["train"][1], regime.examples)
        sets["train"] = (sets["train"][0][keep], sets["train"][1][keep])
    if regime.shift:
        rng = np.random.default_rng(SHIFT_SEED)
        sets = {name: (_shifted(x, rng), y) for name, (x, y) in sets.items()}
    paths = []
    for name, (x, y) in sets.items():
        path = folder / f"{name}.npz"
        np.savez(path, X=x, y=y.astype(str))
        paths.append(path)
    return paths[0], paths[1]


# --------------------------------------------------------------------------------------------
# running


@dataclass
class SplitBaselines:
    """1-NN DTW of each split, computed on its first run and reused (the split is the same)."""

    dtw: dict[str, float | None] = field(default_factory=dict)

    def budget(self, key: str) -> float:
        return 0.0 if key in self.dtw else DTW_BUDGET_S

    def value(self, key: str, values: dict[str, Any]) -> float | None:
        if key not in self.dtw:
            self.dtw[key] = values.get(NN_DTW)
        return self.dtw[key]


def _test_probabilities(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's softmax outputs on its test split, and the true class indices."""
    import torch

    from edgelstm.training.checkpoint import load_checkpoint
    from edgelstm.training.evaluation import EvaluationData
    from edgelstm.training.trainer import predict

    test = EvaluationData.from_run(run_dir).prepared.test
    logits = predict(load_checkpoint(run_dir).model, test)
    assert test.y is not None
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy(), test.y


def run_one(
    dataset: str, regime: Regime, variant: Variant, seed: int, baselines: SplitBaselines
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """One training run: its result row, test probabilities and true classes."""
    from edgelstm.training.trainer import train

    key = f"{dataset} / {regime.name}"
    with tempfile.TemporaryDirectory(prefix="edgelstm-small-data-") as tmp:
        folder = Path(tmp)
        if regime == Regime():
            source: dict[str, Any] = {"dataset": dataset}
        else:
            data, test = write_regime(dataset, regime, folder)
            source = {"data": data, "test": test}
        result = train(
            "classify",
            out=folder / "run",
            seed=seed,
            dtw_budget_s=baselines.budget(key),
            **source,
            **variant.settings,
        )
        config = json.loads((folder / "run" / "config.json").read_text(encoding="utf-8"))
        probabilities, truth = _test_probabilities(folder / "run")
    values = (result.metrics.get("baselines") or {}).get("values") or {}
    row = {
        "dataset": dataset,
        "regime": regime.name,
        "train_examples": config["dataset"]["train_size"],
        "variant": variant.name,
        "seed": seed,
        "accuracy": result.metrics["accuracy"],
        "nn_ed": values.get("1-NN ED"),
        "nn_dtw": baselines.value(key, values),
        "majority": values.get("majority"),
        "train_seconds": round(result.seconds - result.baseline_seconds, 1),
        "parameters": result.metrics.get("parameters"),
        "model": architecture(config["model"])
        + (", series norm" if config["model"].get("series_norm") else ""),
        "auto_reasons": (config.get("auto") or {}).get("reasons", []),
    }
    return row, probabilities, truth


def run(
    datasets: Sequence[str],
    regime: Regime,
    variants: Sequence[str],
    seeds: Sequence[int],
    known_dtw: dict[str, float | None],
    save: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every dataset x variant x seed, one at a time: the rows and the seed ensembles.

    ``save(rows, ensembles)`` runs after every run, so a part stopped midway keeps the runs
    it finished (a run takes minutes on shared cores)."""
    baselines = SplitBaselines(dict(known_dtw))
    rows: list[dict[str, Any]] = []
    ensembles: list[dict[str, Any]] = []
    for dataset in datasets:
        for name in variants:
            outputs = []
            for seed in seeds:
                row, probabilities, truth = run_one(
                    dataset, regime, VARIANTS[name], seed, baselines
                )
                rows.append(row)
                outputs.append(probabilities)
                print(
                    f"{dataset:16s} {regime.name:22s} {name:15s} seed {seed}  "
                    f"acc {row['accuracy']:.4f}  ED {row['nn_ed']:.4f}  "
                    f"{row['train_seconds']:6.1f} s  {row['model']}",
                    file=sys.stderr,
                )
                save(rows, ensembles)
            if len(outputs) > 1:
                vote = np.mean(outputs, axis=0).argmax(axis=-1)
                ensembles.append(
                    {
                        "dataset": dataset,
                        "regime": regime.name,
                        "variant": name,
                        "seeds": list(seeds),
                        "accuracy": round(float(np.mean(vote == truth)), 4),
                    }
                )
                save(rows, ensembles)
    return rows, ensembles


# --------------------------------------------------------------------------------------------
# the document


def _environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = suite_environment(["torch"])
    env["torch_threads"] = torch.get_num_threads()
    return env


def _merge(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key: tuple[str, ...]
) -> list[dict[str, Any]]:
    """``old`` with the entries of ``new`` added, replacing those with the same ``key``."""
    merged = {tuple(str(entry[k]) for k in key): entry for entry in old}
    merged.update({tuple(str(entry[k]) for k in key): entry for entry in new})
    return list(merged.values())


def merged_document(
    previous: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    ensembles: list[dict[str, Any]],
    command: str,
) -> dict[str, Any]:
    """The study document: earlier parts' rows kept, this part's added (replacing by key)."""
    previous = previous or {}
    row_key = ("dataset", "regime", "variant", "seed")
    group_key = ("dataset", "regime", "variant")
    return {
        "schema": SCHEMA,
        "commands": sorted({*previous.get("commands", []), command}),
        "environment": _environment(),
        "variants": {v.name: v.description for v in VARIANTS.values()},
        "rows": _merge(previous.get("rows", []), rows, row_key),
        "ensembles": _merge(previous.get("ensembles", []), ensembles, group_key),
    }


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def summary_table(doc: dict[str, Any]) -> list[str]:
    """One line per set x regime x variant: each seed's accuracy, mean, ensemble, baselines."""
    header = ["set", "regime", "train n", "variant", "seeds 0 / 1 / 2", "mean", "ensemble"]
    header += ["1-NN ED", "1-NN DTW", "train s (mean)", "model"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in doc["rows"]:
        groups.setdefault((row["dataset"], row["regime"], row["variant"]), []).append(row)
    ensembles = {(e["dataset"], e["regime"], e["variant"]): e for e in doc["ensembles"]}
    for (dataset, regime, variant), runs in groups.items():
        runs = sorted(runs, key=lambda r: int(r["seed"]))
        accuracies = [float(r["accuracy"]) for r in runs]
        ensemble = ensembles.get((dataset, regime, variant))
        cells = [
            dataset,
            regime,
            str(runs[0]["train_examples"]),
            variant,
            " / ".join(f"{a:.4f}" for a in accuracies),
            f"{np.mean(accuracies):.4f}",
            _number(ensemble["accuracy"] if ensemble else None),
            _number(runs[0]["nn_ed"]),
            _number(runs[0]["nn_dtw"]),
            f"{np.mean([r['train_seconds'] for r in runs]):.1f}",
            " / ".join(dict.fromkeys(r["model"] for r in runs)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    commands = "".join(f"- `{command}`\n" for command in doc["commands"])
    measured = {row["variant"] for row in doc["rows"]}
    variants = "".join(
        f"- `{name}`: {text}\n" for name, text in doc["variants"].items() if name in measured
    )
    cpu = env["cpu"]
    lines = [
        "# Small-data study: the classify default on small univariate sets",
        "",
        f"Machine: {cpu['model']}, {cpu['logical_cores']} logical cores, torch "
        f"{env['libraries'].get('torch')} ({env['torch_threads']} threads), Python "
        f"{env['python']}, edgelstm {env['edgelstm']}. The cores were shared with other "
        f"work (load average {env['loadavg_at_start'][0]:.1f} at the start of the last part), "
        "so training seconds compare only roughly.",
        "",
        "Commands (each ran one part; the rows merge):",
        "",
        commands,
        "Variants:",
        "",
        variants,
        "Test accuracy per training seed on the set's whole test split, the mean, and the "
        "ensemble of the seeds (mean of their softmax outputs), beside 1-NN ED and 1-NN DTW "
        "on the same split. `N examples`: a stratified subsample of the training split; "
        "`shifted`: each series given its own gain and offset (see the study's docstring).",
        "",
        *summary_table(doc),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# command line


def _dataset(name: str) -> str:
    if name in RESERVED_SETS or name not in SETS:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not studied here: choose {', '.join(SETS)} (the other aeon "
            "classification sets are reserved for independent checking)"
        )
    return name


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--set", action="append", type=_dataset, help="repeatable; default all")
    parser.add_argument(
        "--examples", type=int, default=0, help="about this many training sequences (0: all)"
    )
    parser.add_argument("--shift", action="store_true", help="give each series a gain and offset")
    parser.add_argument(
        "--variant", action="append", choices=sorted(VARIANTS), help="repeatable; default auto"
    )
    parser.add_argument(
        "--seeds", type=seed_list, default=(0, 1, 2), help="comma-separated (default 0,1,2)"
    )
    add_out_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    regime = Regime(args.examples, args.shift)
    json_path = args.out / "small_data_study.json"
    previous = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else None
    known_dtw = {
        f"{r['dataset']} / {r['regime']}": r["nn_dtw"] for r in (previous or {}).get("rows", [])
    }
    command = "python -m edgelstm.benchmarks.suites.small_data_study " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )

    def save(rows: list[dict[str, Any]], ensembles: list[dict[str, Any]]) -> None:
        doc = merged_document(previous, rows, ensembles, command)
        write_json_atomic(json_path, doc, overwrite=True)
        write_text_atomic(args.out / "small_data_study.md", to_markdown(doc), overwrite=True)

    variants = args.variant or ["auto"]
    run(args.set or SETS, regime, variants, args.seeds, known_dtw, save)
    print((args.out / "small_data_study.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
