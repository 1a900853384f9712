"""Each step a new user takes, through edgelstm's real commands, with its check.

The commands run in this process through :func:`edgelstm.cli.main` (what ``edgelstm ...``
runs), their stdout and stderr captured, so the page can quote the exact command and, when
one refuses, its ``error:`` line. ``serve`` runs as a subprocess (a real server on a port).
Every check compares against plain ONNX Runtime on the same arrays, so a difference is
edgelstm's, not the model's.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.foreign_models.cases import Case, StreamSpec

__all__ = [
    "Command",
    "adopt_and_stream",
    "benchmark",
    "edgelstm",
    "export",
    "ort_outputs",
    "run_exact",
    "save_weights",
    "serve_rows",
]


@dataclass(frozen=True)
class Command:
    """One ``edgelstm`` command as typed, its exit code and what it printed."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def line(self) -> str:
        """The command line a user would type."""
        return shlex.join(("edgelstm", *self.argv))

    @property
    def error(self) -> str:
        """The ``error:`` line of a refusal (empty when it succeeded)."""
        lines = [ln for ln in self.err.splitlines() if ln.startswith("error:")]
        return lines[-1] if lines else (self.err.strip().splitlines() or [""])[-1]


def edgelstm(*argv: str | Path) -> Command:
    """``edgelstm ARGV`` in this process (``edgelstm.cli.main``), output captured."""
    from edgelstm.cli import main

    args = tuple(str(a) for a in argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Command(args, int(code or 0), out.getvalue(), err.getvalue())


def save_weights(case: Case, path: Path) -> Path:
    """The factory's random weights as safetensors (what ``--weights`` reads)."""
    from safetensors.torch import save_file

    module: Any = case.build()
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def ort_outputs(model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Plain ONNX Runtime (CPU, one thread) on ``feeds``: the reference for every check."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def output_names(model: Path) -> list[str]:
    """The model's output names, in order."""
    import onnx

    return [o.name for o in onnx.load(str(model), load_external_data=False).graph.output]


def onnx_feeds(model: Path, case: Case) -> dict[str, np.ndarray]:
    """The example arrays keyed by the model's input names, in ``forward()`` order (edgelstm
    names a lone input ``x``, whatever the argument is called)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    names = [i.name for i in graph.input if i.name not in constants]
    return dict(zip(names, case.example.values(), strict=True))


def export(case: Case, weights: Path, folder: Path) -> tuple[Command, dict[str, Any]]:
    """``edgelstm export --model ... --example ... --json``: the command and its JSON
    (``{}`` when it refused)."""
    example = folder / f"{case.name}.example.npz"
    np.savez(example, **case.example)  # type: ignore[arg-type]
    axes = [arg for spec in case.dynamic_axes for arg in ("--dynamic-axes", spec)]
    command = edgelstm(
        "export", "--model", case.reference, "--weights", weights, "--example", example,
        *axes, "--out", folder / f"{case.name}.onnx", "--overwrite", "--json",
    )  # fmt: skip
    return command, (json.loads(command.out) if command.code == 0 else {})


def validation_max_error(case: Case, model: Path) -> float:
    """Max |torch - ONNX Runtime| over the outputs on the example (for a model edgelstm's
    export did not write, so the page still says how close it is)."""
    import torch

    module: Any = case.build()
    with torch.no_grad():
        want = module(*(torch.from_numpy(a) for a in case.example.values()))
    want = want if isinstance(want, tuple) else (want,)
    got = ort_outputs(model, onnx_feeds(model, case))
    return max(
        float(np.max(np.abs(w.numpy() - g))) for w, g in zip(want, got.values(), strict=True)
    )


def run_exact(case: Case, model: Path, folder: Path) -> tuple[Command, float | None]:
    """``edgelstm run M --input inputs.npz --output out.npz`` and the max |diff| of every
    output against plain ONNX Runtime on the same arrays (0 means exact)."""
    feeds = onnx_feeds(model, case)
    inputs, out = folder / f"{case.name}.inputs.npz", folder / f"{case.name}.out.npz"
    np.savez(inputs, **feeds)  # type: ignore[arg-type]
    command = edgelstm("run", model, "--input", inputs, "--output", out, "--overwrite")
    if command.code != 0:
        return command, None
    want = ort_outputs(model, feeds)
    with np.load(out) as got:
        diff = max(float(np.max(np.abs(got[k] - v))) for k, v in want.items())
    return command, diff


def benchmark(
    case: Case, model: Path, weights: Path, folder: Path, timing: tuple[str, ...]
) -> tuple[Command, dict[str, Any]]:
    """``edgelstm benchmark M --inputs ... --torch FACTORY --weights W --json``: p50 of the
    ONNX Runtime FP32 row and of the PyTorch eager rows, and their ratio."""
    report = folder / f"{case.name}.benchmark.json"
    command = edgelstm(
        "benchmark", model, "--inputs", folder / f"{case.name}.inputs.npz",
        "--torch", case.reference, "--weights", weights, *timing,
        "--json", report, "--overwrite",
    )  # fmt: skip
    if command.code != 0:
        return command, {}
    rows = json.loads(report.read_text())["rows"]

    def p50(runtime: str, precision: str) -> float | None:
        found = [
            r["p50_ms"] for r in rows if (r["runtime"], r["precision"]) == (runtime, precision)
        ]
        return float(found[0]) if found else None

    ort32, torch32 = p50("onnxruntime", "fp32"), p50("torch", "fp32")
    ratio = ort32 / torch32 if ort32 and torch32 else None
    shape: dict[str, Any] = next((r for r in rows if r["runtime"] == "onnxruntime"), {})
    return command, {
        "ort_fp32_p50_ms": ort32, "torch_fp32_p50_ms": torch32,
        "torch_int8_p50_ms": p50("torch", "int8"), "ort_vs_torch_fp32": ratio,
        "batch": shape.get("batch"), "seq": shape.get("seq"), "rows": len(rows),
    }  # fmt: skip


def reference_rows(spec: StreamSpec, model: Path) -> np.ndarray:
    """The original model run as its users run it: one window per call, state carried."""
    state_names = {
        inp: np.zeros((1, 1, _state_width(model, inp)), np.float32) for inp, _ in spec.states
    }
    constants = {n: np.array(int(v), np.int64) for n, v in spec.constants}
    frame_name = next(n for n in spec.input_names if n not in state_names and n not in constants)
    # edgelstm's export names the outputs output_0, output_1, ...: the maker's, by position.
    renamed = dict(zip(spec.output_names, output_names(model), strict=False))
    rows = []
    for window in spec.windows:
        outs = ort_outputs(model, {frame_name: window[None], **constants, **state_names})
        rows.append(np.asarray(outs[renamed[spec.output_names[0]]]).reshape(-1))
        state_names = {inp: outs[renamed[out]] for inp, out in spec.states}
    return np.stack(rows)


def _state_width(model: Path, name: str) -> int:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    info = next(i for i in graph.input if i.name == name)
    return int(info.type.tensor_type.shape.dim[-1].dim_value)


def read_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """The value columns of ``run --stream``'s CSV (``frame`` aside) and their rows."""
    with path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    columns = [c for c in records[0] if c not in ("frame", "stream")]
    return columns, np.array([[float(r[c]) for c in columns] for r in records])


def adopt_and_stream(
    case: Case, original: Path, folder: Path
) -> tuple[list[Command], dict[str, Any]]:
    """``adopt`` then ``run --stream`` over the windows (CSV, one window a row); the rows
    against the original run window by window with carried state."""
    assert case.stream is not None
    spec = case.stream
    adopted = folder / f"{case.name}.stream.onnx"
    renamed = dict(zip(spec.output_names, output_names(original), strict=False))
    states = [a for i, o in spec.states for a in ("--state", f"{i}={renamed.get(o, o)}")]
    constants = [a for n, v in spec.constants for a in ("--constant", f"{n}={v}")]
    adopt = edgelstm("adopt", original, "--out", adopted, *states, *constants, "--overwrite")
    if adopt.code != 0:
        return [adopt], {"adopted": False}
    frames, rows_csv = folder / f"{case.name}.frames.csv", folder / f"{case.name}.rows.csv"
    np.savetxt(frames, spec.windows, delimiter=",", fmt="%.9g")
    windows = np.loadtxt(frames, delimiter=",", dtype=np.float32, ndmin=2)
    run = edgelstm(
        "run", adopted, "--stream", "--input", frames, "--output", rows_csv, "--overwrite"
    )
    result: dict[str, Any] = {"adopted": True, "adopt_notes": _notes(adopt.err)}
    if run.code != 0:
        return [adopt, run], result
    columns, rows = read_rows(rows_csv)
    want = reference_rows(replace(spec, windows=windows), original)
    result.update(
        windows=len(windows), columns=len(columns), rows=rows.tolist(),
        stream_rows_max_diff=float(np.max(np.abs(rows - want))) if rows.shape == want.shape
        else None,
    )  # fmt: skip
    return [adopt, run], result


def _notes(err: str) -> list[str]:
    return [ln.removeprefix("note: ") for ln in err.splitlines() if ln.startswith("note: ")]


def serve_rows(
    adopted: Path, windows: np.ndarray, log: Path
) -> tuple[list[str], np.ndarray, int | None]:
    """``edgelstm serve ADOPTED --port P --workers 1`` as a subprocess: each window POSTed to
    ``/v1/streams/{id}/frames``, the rows returned, then SIGTERM. Returns the command, the
    rows and the server's exit code."""
    from edgelstm.benchmarks.suites.serve_load.server import start_server, stop_server

    server = start_server(adopted, ["--workers", "1"], log, timeout_s=60)
    command = ["edgelstm", "serve", str(adopted), "--port", str(server.port), "--workers", "1"]
    rows: list[list[float]] = []
    try:
        for window in windows:
            body = json.dumps({"frames": [window.tolist()]})
            status, text = server.get("/v1/streams/suite-1/frames", "POST", body)
            if status != 200:
                raise RuntimeError(f"POST /v1/streams/suite-1/frames: {status} {text[:300]}")
            for row in json.loads(text)["rows"]:
                rows.append([float(v) for k, v in row.items() if k not in ("frame", "stream")])
    finally:
        code = stop_server(server)
    return command, np.array(rows), code
