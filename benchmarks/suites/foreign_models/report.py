"""The suite's page: the machine, one table per model, and what edgelstm refused (findings)."""

from __future__ import annotations

from typing import Any

__all__ = ["to_markdown"]

_TITLES = {
    "vad": "Voice-activity detector (conv + LSTM, explicit state)",
    "crnn": "CRNN line recognizer (VGG-style convs, 2 x BiLSTM, CTC head)",
    "g2p": "Grapheme-to-phoneme GRU encoder-decoder",
}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _diff(value: float | None) -> str:
    return "-" if value is None else ("0" if value == 0 else f"{value:.3g}")


def _export_cell(export: dict[str, Any]) -> str:
    if export["by"] == "refused":
        return f"refused: `{export['error']}`"
    by = "" if export["by"] == "edgelstm export" else f", by {export['by']}"
    return (
        f"{export['exporter']}{by}; validation max error "
        f"{_diff(export['validation_max_abs'])} ({', '.join(export['validation_checks'])})"
    )


def _benchmark_cell(bench: dict[str, Any]) -> str:
    if "error" in bench:
        return f"refused: `{bench['error']}`"
    ratio = bench.get("ort_vs_torch_fp32")
    return (
        f"ORT FP32 p50 {_ms(bench['ort_fp32_p50_ms'])}, PyTorch eager FP32 p50 "
        f"{_ms(bench['torch_fp32_p50_ms'])}: **{ratio:.2f}x** (PyTorch eager INT8 "
        f"{_ms(bench.get('torch_int8_p50_ms'))}; the benchmark row's shape: "
        f"batch {bench['batch']}, "
        f"seq {bench['seq']})"
        if ratio
        else "no ratio"
    )


def _stream_rows(stream: dict[str, Any]) -> list[tuple[str, str]]:
    if "adopt" in stream:
        return [("adopt", stream["adopt"])]
    rows = [("adopt", f"`{stream['commands'][0]}` (adopted {stream['adopted_from']})")]
    if "error" in stream:
        return [*rows, ("stream", f"refused: `{stream['error']}`")]
    notes = "; ".join(_short(n) for n in stream["adopt_notes"] if n.startswith(("checked", "rows")))
    rows += [
        ("adopt checks", notes or "-"),
        ("run --stream", f"`{stream['commands'][1]}`: {stream['windows']} windows, one per "
         f"call; rows vs the original window by window with carried state: max diff "
         f"{_diff(stream['stream_rows_max_diff'])}"),
    ]  # fmt: skip
    serve = stream.get("serve")
    if serve:
        equal = "yes" if serve["rows_equal"] else f"NO (max diff {_diff(serve['rows_max_diff'])})"
        rows.append(("serve", f"`{serve['command']}`: {serve['requests']} POSTs of one window; "
                     f"rows equal run --stream's: {equal}; exit after SIGTERM "
                     f"{serve['exit_code']}"))  # fmt: skip
    else:
        rows.append(("serve", "skipped (--no-serve)"))
    return rows


def _short(note: str) -> str:
    """A long column list as its first two and last: ``a_0, a_1, ..., a_41``."""
    head, sep, columns = note.partition("columns ")
    names = columns.split(", ")
    return f"{head}{sep}{', '.join(names[:2])}, ..., {names[-1]}" if len(names) > 4 else note


def _artifact_table(artifact: dict[str, Any]) -> list[str]:
    lines = [
        f"`{artifact['name']}`: {artifact['description']}. Factory `{artifact['factory']}`.",
        "",
        "| step | result |",
        "|---|---|",
        f"| export | `{artifact['export']['command']}` |",
        f"| export result | {_export_cell(artifact['export'])} |",
    ]
    if "run" in artifact:
        run = artifact["run"]
        exact = "yes (max diff 0)" if run["exact"] else f"NO (max diff {_diff(run['max_diff'])})"
        lines.append(f"| run | `{run['command']}`: exact vs plain ONNX Runtime? {exact} |")
    if "benchmark" in artifact:
        bench = artifact["benchmark"]
        lines += [
            f"| benchmark | `{bench['command']}` |",
            f"| p50 | {_benchmark_cell(bench)} |",
        ]
    for step, text in _stream_rows(artifact.get("stream", {"adopt": "-"})):
        lines.append(f"| {step} | {text} |")
    return [*lines, ""]


def to_markdown(document: dict[str, Any]) -> str:
    """The page: command, machine, a table per model, findings."""
    machine = document["machine"]
    lines = [
        "# Three models from elsewhere, through edgelstm",
        "",
        f"Command: `{document['command']}`",
        "",
        f"Machine: {machine['processor']}, {machine['cores']} cores, flags "
        f"{', '.join(machine['cpu_flags']) or 'none of avx2/avx512'}; Python "
        f"{machine['python']}, onnxruntime {machine['onnxruntime']}, torch {machine['torch']}, "
        f"onnx {machine['onnx']}. Timing: `{' '.join(document['timing'])}` (one intra-op "
        "thread; ratios are side by side in one run: absolute times drift on this machine).",
        "",
        "Models: built in `edgelstm.benchmarks.suites.foreign_models.models` with random "
        "weights (seeded; no downloads), saved as safetensors and taken through the commands "
        "below exactly as written (file names relative to the suite's work folder). "
        '"Exact" compares with plain `onnxruntime.InferenceSession` on the same arrays.',
        "",
    ]
    for family in document["models"]:
        lines += [f"## {_TITLES.get(family, family)}", ""]
        for artifact in document["artifacts"]:
            if artifact["family"] == family:
                lines += _artifact_table(artifact)
    lines += ["## Findings (edgelstm refused a step)", ""]
    if not document["findings"]:
        lines.append("None: every step ran as written.")
    for finding in document["findings"]:
        lines.append(
            f"- **{finding['model']}, {finding['step']}**: `{finding['command']}` -> "
            f"`{finding['error']}`. Went on with: {finding['workaround']}."
        )
    if document.get("notes"):
        lines += ["", "Naming seen on the way (not refusals):", ""]
        lines += [f"- {note}" for note in document["notes"]]
    return "\n".join(lines) + "\n"
