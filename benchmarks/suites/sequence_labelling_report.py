"""The tables and targets of :mod:`edgelstm.benchmarks.suites.sequence_labelling`: reading its
runs (one per dataset and seed), summarising them over seeds, judging issue 24's targets and
writing the Markdown report. Nothing here trains or runs a model."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

#: Issue 24's targets for the digit strings: error rate, INT8's allowance (points of error).
ERROR_RATE_TARGET = 0.02
INT8_ALLOWANCE = 0.005
#: What "above both baselines by a clear margin" means here: 5 points of macro F1.
CLEAR_MARGIN = 0.05
#: The checkpoint's own metrics (PyTorch) and its three ONNX artifacts, in table order.
ARTIFACTS = ("pytorch", "fp32", "int8", "streaming")
BAR = "plain pytorch"


# --------------------------------------------------------------------------------------------
# reading runs


def headline_key(task: str) -> str:
    return "error_rate" if task == "transcribe" else "macro_f1"


def value(row: dict[str, Any], source: str, key: str | None = None) -> float | None:
    """One number of a run, None when missing: ``key`` (default: the task's headline metric)
    of an artifact (:data:`ARTIFACTS`) or of the bar (:data:`BAR`); a baseline by name
    (``baseline``); the streamed fraction identical to offline (``streamed``); or a field of
    the run itself (``run``, e.g. ``seconds``)."""
    key = key or headline_key(row["task"])
    if source == "baseline":
        found = row["baselines"].get(key)
    elif source == "streamed":
        found = (row.get("streaming") or {}).get("identical_fraction")
    elif source == "run":
        found = row.get(key)
    elif source == BAR:
        found = (row.get("plain_pytorch") or {}).get(key)
    else:
        found = ((row["artifacts"].get(source) or {}).get("metrics") or {}).get(key)
    return None if found is None else float(found)


def headline_text(row: dict[str, Any]) -> str:
    key = headline_key(row["task"])
    parts = [f"{key} " + " / ".join(f"{a} {_fmt(value(row, a))}" for a in ARTIFACTS)]
    if "plain_pytorch" in row:
        parts.append(f"plain PyTorch {_fmt(value(row, BAR))}")
    if row["streaming"]:
        parts.append(f"streamed = offline {row['streaming']['identical_fraction']:.4f}")
    return f"{row['seconds']:.0f} s  " + ", ".join(parts)


def artifact_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset x seed x artifact (the bar is an artifact of transcription runs)."""
    rows = []
    for run in runs:
        key = {"dataset": run["dataset"], "task": run["task"], "seed": run["seed"]}
        for name, entry in run["artifacts"].items():
            rows.append({**key, "artifact": name, "bytes": entry["bytes"], **entry["metrics"]})
        bar = run.get("plain_pytorch")
        if bar is not None:
            numbers = {k: v for k, v in bar.items() if isinstance(v, int | float)}
            rows.append({**key, "artifact": BAR, "bytes": bar["parameters"] * 4, **numbers})
    return rows


def best_baseline_margin(row: dict[str, Any]) -> float | None:
    """A tagger's macro F1 minus the better of its two baselines'."""
    model = value(row, "pytorch")
    baselines = row["baselines"].values()
    return None if model is None or not baselines else model - max(baselines)


def int8_points(row: dict[str, Any]) -> float | None:
    """INT8's headline metric minus FP32's (both ONNX, on the same test split)."""
    fp32, int8 = value(row, "fp32"), value(row, "int8")
    return None if fp32 is None or int8 is None else int8 - fp32


def _mean_sd(values: Sequence[float | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(known) if known else None,
        "sd": statistics.stdev(known) if len(known) > 1 else None,
        "values": list(values),
    }


def summary_items(task: str) -> list[tuple[str, str, str | None]]:
    """(label, source, key) of each number :func:`summarise` takes over seeds (see
    :func:`value`)."""
    key = headline_key(task)
    items: list[tuple[str, str, str | None]] = [(f"{a} {key}", a, None) for a in ARTIFACTS]
    if task == "tag":
        items += [(k, "pytorch", k) for k in ("frame_accuracy", "segment_f1")]
        items += [(f"baseline {b}", "baseline", b) for b in _baseline_names()]
    else:
        items += [(k, "pytorch", k) for k in ("exact_match", "beam_error_rate")]
        items += [("constant text error_rate", "pytorch", "constant_error_rate")]
        items += [(f"{BAR} {k}", BAR, k) for k in ("error_rate", "exact_match", "seconds")]
    return [*items, ("training seconds", "run", "seconds"), ("streamed identical", "streamed", "")]


def _baseline_names() -> tuple[str, str]:
    from edgelstm.training.baselines import MAJORITY_FRAME, WINDOW_CLASSIFIER

    return MAJORITY_FRAME, WINDOW_CLASSIFIER


def _by_dataset(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in runs:
        grouped.setdefault(row["dataset"], []).append(row)
    return grouped


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset: mean and standard deviation over seeds of each number of
    :func:`summary_items`."""
    return {
        name: {
            label: _mean_sd([value(r, source, key) for r in chosen])
            for label, source, key in summary_items(chosen[0]["task"])
        }
        for name, chosen in _by_dataset(runs).items()
    }


# --------------------------------------------------------------------------------------------
# targets

#: (description, check) per task: a check reads one run and says whether it meets the target
#: (None: the number is missing) and what to show for it.
Check = Callable[[dict[str, Any]], tuple[bool | None, str]]


def _within(
    number: float | None, passes: Callable[[float], bool], shown: str
) -> tuple[bool | None, str]:
    return (None, "missing") if number is None else (passes(number), shown.format(number))


def _streamed(row: dict[str, Any]) -> tuple[bool | None, str]:
    streaming = row.get("streaming")
    if not streaming:
        return None, "no streaming export"
    worst = min(streaming["chunks"], key=lambda c: c["identical"] / max(c["items"], 1))
    chunks = ", ".join(str(c["chunk_frames"]) for c in streaming["chunks"])
    shown = f"{worst['identical']}/{worst['items']} {streaming['unit']}"
    if not streaming["all_identical"]:
        return False, f"{shown} at chunks of {worst['chunk_frames']} frames (of {chunks})"
    return True, f"{shown} at chunks of {chunks} frames"


def task_targets(task: str) -> list[tuple[str, Check]]:
    """Issue 24's targets for a dataset of ``task``."""
    if task == "transcribe":
        return [
            (f"error rate <= {ERROR_RATE_TARGET:.0%}",
             lambda r: _within(value(r, "pytorch"), lambda v: v <= ERROR_RATE_TARGET, "{:.4f}")),
            (f"INT8 within +{INT8_ALLOWANCE * 100:g} points of FP32",
             lambda r: _within(int8_points(r), lambda v: v <= INT8_ALLOWANCE + 1e-12, "{:+.4f}")),
            ("streaming greedy text identical to offline", _streamed),
        ]  # fmt: skip
    return [
        (f"macro F1 above both baselines by >= {CLEAR_MARGIN}",
         lambda r: _within(best_baseline_margin(r), lambda v: v >= CLEAR_MARGIN, "{:+.4f}")),
        ("segment F1 reported",
         lambda r: _within(value(r, "pytorch", "segment_f1"), lambda v: True, "{:.4f}")),
        ("streamed frame labels identical to offline", _streamed),
    ]  # fmt: skip


def targets(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each dataset's targets, met when every seed meets them."""
    found = []
    for name, chosen in _by_dataset(runs).items():
        for description, check in task_targets(chosen[0]["task"]):
            verdicts = [check(r) for r in chosen]
            found.append({
                "dataset": name,
                "target": description,
                "met": all(ok for ok, _ in verdicts),
                "per_seed": {str(r["seed"]): {"met": ok, "value": shown}
                             for r, (ok, shown) in zip(chosen, verdicts, strict=True)},
            })  # fmt: skip
    return found


# --------------------------------------------------------------------------------------------
# Markdown


def _fmt(number: float | None, digits: int = 4) -> str:
    return "-" if number is None else f"{number:.{digits}f}"


def streaming_cell(streaming: dict[str, Any] | None) -> str:
    """``2: 1000/1000; 6: 1000/1000`` (chunk frames: identical / compared)."""
    if not streaming:
        return "-"
    return "; ".join(
        f"{c['chunk_frames']}: {c['identical']}/{c['items']}" for c in streaming["chunks"]
    )


def _gate_cell(row: dict[str, Any]) -> str:
    quantized = row["quantize"]
    gate = quantized.get("gate")
    if gate is None:
        return "not quantized" if "int8_error" in quantized else "no gate"
    return f"{'passed' if gate['passed'] else '**refused**'} ({gate['degradation']:+.4f})"


#: (header, source, key) of each numeric column of a dataset's table (see :func:`value`).
COLUMNS = {
    "transcribe": [
        ("error rate: checkpoint", "pytorch", None), ("FP32 ONNX", "fp32", None),
        ("INT8 ONNX", "int8", None), ("streaming ONNX", "streaming", None),
        ("exact match", "pytorch", "exact_match"),
        ("beam 8 (sample)", "pytorch", "beam_error_rate"),
        ("constant text", "pytorch", "constant_error_rate"),
    ],
    "tag": [
        ("macro F1: checkpoint", "pytorch", None), ("FP32 ONNX", "fp32", None),
        ("INT8 ONNX", "int8", None), ("streaming ONNX", "streaming", None),
        ("frame accuracy", "pytorch", "frame_accuracy"), ("segment F1", "pytorch", "segment_f1"),
        ("majority frame", "baseline", "majority frame"),
        ("window logistic regression", "baseline", "window logistic regression"),
    ],
}  # fmt: skip


def _mean_cell(values: Sequence[float | None], digits: int = 4) -> str:
    stats = _mean_sd(values)
    if stats["mean"] is None:
        return "-"
    sd = "" if stats["sd"] is None else f" ± {stats['sd']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}{sd}"


def dataset_table(chosen: Sequence[dict[str, Any]]) -> list[str]:
    """One line per seed, then the mean ± sd over seeds."""
    columns = COLUMNS[chosen[0]["task"]]
    header = ["seed", "train s", "epochs (best)", *[c[0] for c in columns]]
    header += ["INT8 gate (Δ)", "streamed = offline (chunk frames: identical/compared)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in chosen:
        cells = [
            str(row["seed"]),
            f"{row['seconds']:.1f}",
            f"{row['epochs_run']} ({row['best_epoch']})",
        ]
        cells += [_fmt(value(row, source, key)) for _, source, key in columns]
        cells += [_gate_cell(row), streaming_cell(row["streaming"])]
        lines.append("| " + " | ".join(cells) + " |")
    means = ["mean ± sd", _mean_cell([float(r["seconds"]) for r in chosen], 1), ""]
    means += [_mean_cell([value(r, s, k) for r in chosen]) for _, s, k in columns]
    lines.append("| " + " | ".join([*means, "", ""]) + " |")
    return lines


def bar_table(chosen: Sequence[dict[str, Any]]) -> list[str]:
    """edgelstm's default beside the plain PyTorch script, seed by seed."""
    pairs = [("error rate", "error_rate", 4), ("exact match", "exact_match", 4),
             ("seconds", "seconds", 1), ("parameters", "parameters", 0)]  # fmt: skip
    header = ["seed"] + [f"{label}: {who}" for label, _, _ in pairs for who in ("edgelstm", BAR)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [r for r in chosen if r.get("plain_pytorch")]
    for row in [*rows, None]:
        cells = ["mean ± sd" if row is None else str(row["seed"])]
        for _, key, digits in pairs:
            source = "run" if key in ("seconds", "parameters") else "pytorch"
            for who in (source, BAR):
                if row is None:
                    cells.append(_mean_cell([value(r, who, key) for r in rows], digits))
                else:
                    cells.append(_fmt(value(row, who, key), digits))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _environment_line(env: dict[str, Any]) -> str:
    cpu = env.get("cpu") or {}
    libraries = env.get("libraries") or {}
    flags = ", ".join(env.get("cpu_flags") or []) or "none of avx2/avx512/fma"
    return (
        f"Machine: {cpu.get('model')}, {cpu.get('logical_cores')} logical cores (CPU flags: "
        f"{flags}), load average at the start {_loadavg(env)}; torch "
        f"{libraries.get('torch')} ({env.get('torch_threads')} threads), onnxruntime "
        f"{libraries.get('onnxruntime')}, edgelstm {env.get('edgelstm')}"
    )


def _settings_line(settings: dict[str, Any]) -> str:
    """What was trained: edgelstm's defaults, or what the command changed (then no result)."""
    changed = [f"{key} {settings[key]}" for key in ("epochs", "hidden") if settings.get(key)]
    if settings.get("stream_sequences"):
        changed.append(f"the first {settings['stream_sequences']} test sequences streamed")
    if not changed:
        return (
            "Settings: edgelstm's defaults (no tuning arguments); every test sequence streamed; "
            f"the bar as its script defines it. Seeds {settings['seeds']}."
        )
    quick = "--quick: " if settings.get("quick") else ""
    return f"**{quick}{', '.join(changed)}**: a check that the suite runs, not a result."


def _loadavg(env: dict[str, Any]) -> str:
    loads = env.get("loadavg_at_start")
    return "-" if not loads else " / ".join(f"{load:.2f}" for load in loads)


def _dataset_section(name: str, chosen: Sequence[dict[str, Any]]) -> list[str]:
    task = chosen[0]["task"]
    architectures = " / ".join(dict.fromkeys(r["architecture"] for r in chosen))
    first = chosen[0]
    lines = [
        f"## {name} ({task})",
        "",
        f"`{first['command']}` (seed by seed): {architectures}, {first['parameters']:,} "
        f"parameters ({first['weights_mb']} MB of FP32 weights). `train s`: wall-clock training "
        "seconds without the baselines; `epochs (best)`: epochs run and the one kept.",
        "",
        *dataset_table(chosen),
    ]
    # A warning's first line is its verdict; the JSON holds the causes and remedies after it.
    warnings = sorted(
        {f"seed {r['seed']}: {w.splitlines()[0]}" for r in chosen for w in r["warnings"]}
    )
    lines += ["", *[f"- warning, {w}" for w in warnings]] if warnings else []
    if any(r.get("plain_pytorch") for r in chosen):
        bar = next(r["plain_pytorch"] for r in chosen if r.get("plain_pytorch"))
        lines += [
            "",
            f"### Against a plain PyTorch LSTM-CTC script ({bar['architecture']})",
            "",
            "`python -m edgelstm.benchmarks.suites.torch_ctc_baseline --seed S`: the same "
            "training and test strings, normalised the same way; its seconds run from reading "
            "the data to the last decoded test string.",
            "",
            *bar_table(chosen),
        ]
    return [*lines, ""]


def to_markdown(doc: dict[str, Any]) -> str:
    runs = doc["runs"]
    settings = doc["settings"]
    lines = [
        "# Sequence labelling end to end: default training, exports and streaming",
        "",
        f"Command: `{doc['command']}`  ",
        _environment_line(doc["environment"]),
        "",
    ]
    if doc.get("total_seconds") is not None:
        lines += [f"Wall-clock for the whole command: {doc['total_seconds'] / 60:.1f} min.", ""]
    lines += [_settings_line(settings), ""]
    lines += [
        "## Targets (issue 24)",
        "",
        "Met when every seed meets it.",
        "",
        "| dataset | target | met | per seed |",
        "|---|---|---|---|",
    ]
    for target in doc["targets"]:
        seeds = "; ".join(f"{s}: {v['value']}" for s, v in target["per_seed"].items())
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {target['dataset']} | {target['target']} | {met} | {seeds} |")
    lines.append("")
    for name, chosen in _by_dataset(runs).items():
        lines += _dataset_section(name, chosen)
    return "\n".join(lines) + "\n"
