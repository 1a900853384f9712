"""Three recurrent models from elsewhere, taken through edgelstm as a new user would.

A conv + LSTM voice-activity detector (explicit state, one window per call), a CRNN line
recognizer (VGG-style convs, 2 bidirectional LSTM layers, CTC head) and a grapheme-to-phoneme
GRU encoder-decoder (the decoder's step streams), built in :mod:`.models` with random weights.
For each, with edgelstm's real commands: the weights saved as safetensors; ``export --model
PACKAGE.MODULE:FACTORY --weights W --example inputs.npz`` (validation max error); ``run``
against plain ONNX Runtime (exact?); ``benchmark --inputs --torch FACTORY --weights W``
(ONNX Runtime FP32 vs PyTorch eager FP32, p50 and ratio); for the stateful ones ``adopt``,
``run --stream`` (rows vs the original run window by window with carried state) and
``serve`` (each window POSTed; rows vs ``run --stream``'s). A step edgelstm refuses is a
finding in the page, with its command and error line, and the suite goes on the way a user
would (the third party's own ``torch.onnx.export``). Results land in ``benchmark-results/``
unless told ``--out``; from the repository root this updates the committed ones::

    python -m edgelstm.benchmarks.suites.foreign_models --out benchmarks/results

``--quick`` (tests) shortens the inputs and times a few calls in this process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.foreign_models.cases import Case, cases, third_party_export
from edgelstm.benchmarks.suites.foreign_models.report import to_markdown
from edgelstm.benchmarks.suites.foreign_models.steps import (
    adopt_and_stream,
    benchmark,
    export,
    onnx_feeds,
    output_names,
    run_exact,
    save_weights,
    serve_rows,
    validation_max_error,
)
from edgelstm.benchmarks.suites.result_files import add_out_option

__all__ = ["SCHEMA", "main", "measure_case"]

SCHEMA = "edgelstm.foreign_models/1"
COMMAND = "python -m edgelstm.benchmarks.suites.foreign_models"
FULL_TIMING = ("--warmup", "20", "--iterations", "200")
QUICK_TIMING = ("--no-isolate", "--warmup", "1", "--iterations", "5", "--rounds", "1")


def _finding(case: Case, step: str, command: str, error: str, workaround: str) -> dict[str, str]:
    return {"model": case.name, "step": step, "command": command, "error": error,
            "workaround": workaround}  # fmt: skip


def _export_step(
    case: Case, weights: Path, folder: Path, findings: list[dict[str, str]]
) -> tuple[Path | None, dict[str, Any]]:
    """edgelstm's export; when it refuses a stateful model, the third party's export."""
    command, report = export(case, weights, folder)
    if command.code == 0:
        rows = report["validation"]["rows"]
        return folder / f"{case.name}.onnx", {
            "by": "edgelstm export", "command": command.line, "exporter": report["exporter"],
            "validation_passed": report["validation"]["passed"],
            "validation_max_abs": max(r["max_abs"] for r in rows),
            "validation_checks": sorted({r["check"] for r in rows}),
        }  # fmt: skip
    if case.stream is None:
        findings.append(_finding(case, "export", command.line, command.error, "none"))
        return None, {"by": "refused", "command": command.line, "error": command.error}
    model = third_party_export(case, folder / f"{case.name}.onnx")
    workaround = (
        "torch.onnx.export (TorchScript, opset 17) of the same module, as its maker ships it"
    )
    findings.append(_finding(case, "export", command.line, command.error, workaround))
    return model, {
        "by": "torch.onnx.export (edgelstm export refused)", "command": command.line,
        "error": command.error, "exporter": "torchscript",
        "validation_max_abs": validation_max_error(case, model),
        "validation_checks": ["the example, checked by this suite"],
    }  # fmt: skip


def _stream_steps(
    case: Case, model: Path, folder: Path, findings: list[dict[str, str]], serve: bool
) -> dict[str, Any]:
    """adopt + run --stream (on edgelstm's export, else the third party's), then serve."""
    commands, stream = adopt_and_stream(case, model, folder)
    if not stream["adopted"] and commands[0].code == 2:
        third = third_party_export(case, folder / f"{case.name}.thirdparty.onnx")
        workaround = f"adopt the maker's torch.onnx.export ({third.name}), outputs named"
        findings.append(_finding(case, "adopt", commands[0].line, commands[0].error, workaround))
        commands, stream = adopt_and_stream(case, third, folder)
        stream["adopted_from"] = third.name
    else:
        stream["adopted_from"] = model.name
    stream["commands"] = [c.line for c in commands]
    failed = [c for c in commands if c.code != 0]
    if failed:
        stream["error"] = failed[0].error
        findings.append(_finding(case, failed[0].argv[0], failed[0].line, failed[0].error, "none"))
        return stream
    if serve:
        adopted = folder / f"{case.name}.stream.onnx"
        windows = np.loadtxt(folder / f"{case.name}.frames.csv", delimiter=",", ndmin=2)
        command, rows, code = serve_rows(adopted, windows, folder / f"{case.name}.serve.log")
        want = np.array(stream["rows"])
        stream["serve"] = {
            "command": " ".join(command), "requests": len(windows), "exit_code": code,
            "rows_equal": rows.shape == want.shape and bool(np.array_equal(rows, want)),
            "rows_max_diff": float(np.max(np.abs(rows - want))) if rows.shape == want.shape
            else None,
        }  # fmt: skip
    del stream["rows"]
    return stream


def measure_case(
    case: Case, folder: Path, timing: tuple[str, ...], findings: list[dict[str, str]],
    *, serve: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Every step for one artifact; a refusal is recorded and the steps that need it skipped."""
    weights = save_weights(case, folder / f"{case.name}.safetensors")
    result: dict[str, Any] = {
        "name": case.name, "family": case.family, "factory": case.reference,
        "description": case.description, "weights": weights.name,
        "example": {k: list(v.shape) for k, v in case.example.items()},
    }  # fmt: skip
    model, result["export"] = _export_step(case, weights, folder, findings)
    if model is None:
        return result
    result["export"]["inputs"] = list(onnx_feeds(model, case))
    result["export"]["outputs"] = output_names(model)
    command, diff = run_exact(case, model, folder)
    result["run"] = {"command": command.line, "max_diff": diff, "exact": diff == 0.0}
    if command.code != 0:
        result["run"]["error"] = command.error
        findings.append(_finding(case, "run", command.line, command.error, "none"))
        return result
    command, result["benchmark"] = benchmark(case, model, weights, folder, timing)
    result["benchmark"]["command"] = command.line
    if command.code != 0:
        result["benchmark"]["error"] = command.error
        findings.append(_finding(case, "benchmark", command.line, command.error, "none"))
    if case.stream is None:
        result["stream"] = {"adopt": case.not_streaming}
    else:
        result["stream"] = _stream_steps(case, model, folder, findings, serve)
    return result


def _relative(value: Any, folder: Path) -> Any:
    """``value`` with ``FOLDER/`` taken out of every string in it."""
    if isinstance(value, str):
        return value.replace(f"{folder}/", "")
    if isinstance(value, dict):
        return {k: _relative(v, folder) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_relative(v, folder) for v in value)
    return value


def _naming_notes(results: list[dict[str, Any]]) -> list[str]:
    """Where edgelstm's export named inputs or outputs otherwise than the module does: what
    a user then has to key ``run``'s arrays and ``adopt``'s ``--state`` by."""
    notes = []
    for result in results:
        export = result["export"]
        if export.get("by") != "edgelstm export":
            continue
        if export["inputs"] != list(result["example"]):
            notes.append(
                f"{result['name']}: edgelstm export named the inputs {export['inputs']} "
                f"(forward() calls them {list(result['example'])}): run/benchmark .npz files "
                "are keyed by the ONNX names"
            )
        notes.append(f"{result['name']}: outputs named {export['outputs']} (export --model "
                     "has no option to name outputs)")  # fmt: skip
    return notes


def _machine() -> dict[str, Any]:
    import importlib.metadata as md
    import os
    import platform

    from edgelstm.benchmarks.suites.device_install import cpu_description

    processor, flags = cpu_description()
    versions = {}
    for dist in ("onnxruntime", "torch", "onnx", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = "not installed"
    return {"processor": processor, "cores": os.cpu_count(), "cpu_flags": flags,
            "python": platform.python_version(), **versions}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from edgelstm.benchmarks.suites.result_files import suite_environment
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short inputs, few timed calls")
    parser.add_argument("--no-serve", action="store_true", help="skip the serve step")
    add_out_option(parser)
    args = parser.parse_args(argv)
    timing = QUICK_TIMING if args.quick else FULL_TIMING
    findings: list[dict[str, str]] = []
    results = []
    with tempfile.TemporaryDirectory(prefix="edgelstm-foreign-") as tmp:
        for case in cases(quick=args.quick):
            sys.stderr.write(f"foreign_models: {case.name}\n")
            results.append(measure_case(case, Path(tmp), timing, findings, serve=not args.no_serve))
        # Commands read as typed in the work folder: file names, not this run's temp path.
        results, findings = _relative((results, findings), Path(tmp))
    given = sys.argv[1:] if argv is None else argv
    document = {
        "schema": SCHEMA, "command": " ".join([COMMAND, *given]), "quick": args.quick,
        "timing": list(timing), "machine": _machine(),
        "environment": suite_environment(("onnxruntime", "torch", "onnx")),
        "models": list(dict.fromkeys(r["family"] for r in results)), "artifacts": results,
        "findings": findings, "notes": _naming_notes(results),
    }  # fmt: skip
    markdown = to_markdown(document)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "foreign_models.json", document, overwrite=True)
    write_text_atomic(args.out / "foreign_models.md", markdown, overwrite=True)
    sys.stdout.write(markdown)
    return 0
