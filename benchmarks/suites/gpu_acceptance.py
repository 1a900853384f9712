"""GPU acceptance: the GPU tests, the reference model on every CUDA path, the provider probe.

One command, about eight minutes on a machine with an NVIDIA GPU and onnxruntime-gpu:

1. ``python -m pytest -m gpu -q`` in the checkout (own timeout): counts and the output's tail;
2. the reference LSTM (:func:`edgelstm.benchmarks.suites.reference.reference_model`) at batch 1 and
   64 x 100 steps on ORT CUDA (plain ``session.run``; IO binding; IO binding + CUDA graph),
   TensorRT (when it probes usable), an FP16 artifact on CUDA, PyTorch cuDNN eager and a
   PyTorch CUDA graph; plus one streaming frame on ORT CUDA and on the ORT CPU provider. Each
   row runs in its own process; one that cannot run is ``skipped`` with the reason, and one
   not started within ``--budget-s`` is skipped for budget;
3. ``edgelstm providers --probe --json``;
4. ``--out``/gpu_acceptance.json (schema ``edgelstm.gpu_acceptance/1``) and .md, with the
   first H200 numbers beside the rows. Exit 0, or 1 when a GPU test or a row failed.

Without a usable CUDA GPU it prints one ``error:`` line, exits 2 and writes nothing.

On a bare GPU machine that cannot install from the index, from the checkout (numpy, onnx,
typer, rich importable; setuptools>=77 for the editable install, which maps ``benchmarks/``
to ``edgelstm.benchmarks``)::

    pip install --no-deps --no-build-isolation -e .
    export PYTHONPATH=/path/to/unpacked/onnxruntime-gpu:$PYTHONPATH
    python -m edgelstm.benchmarks.suites.gpu_acceptance --out benchmarks/results

Without torch there (no export, no PyTorch rows), run ``--prepare-artifacts DIR`` where torch
is and pass ``--artifacts DIR`` on the GPU machine. Results are committed as
``benchmarks/results/gpu_acceptance.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgelstm.errors import EdgeLSTMError, InvalidInputError, MissingDependencyError

SCHEMA = "edgelstm.gpu_acceptance/1"
COMMAND = "python -m edgelstm.benchmarks.suites.gpu_acceptance"
FIX = (
    "run it on a machine with an NVIDIA GPU after pip install 'edgelstm[gpu]' "
    "(onnxruntime-gpu instead of onnxruntime)"
)
PYTEST_TIMEOUT_S = 150.0
PROBE_TIMEOUT_S = 90.0
#: Turn-1 numbers from an H200 host (batch 1 x 100 steps; one frame), printed beside the rows.
H200_TURN1: Mapping[tuple[str, int], str] = {
    ("pytorch-cudnn", 1): "0.51 ms",
    ("pytorch-cuda-graph", 1): "0.41 ms",
    ("ort-cuda-plain", 1): "2.3-3.3 ms",
    ("ort-cuda-iobinding-graph", 1): "0.84 ms",
    ("ort-cpu-frame", 1): "53 µs",
    ("ort-cuda-frame", 1): "174-268 µs",
}
FOOTNOTE = (
    "Per s: sequences (frames in the one-frame rows) per second at p50. PyTorch rows keep the "
    "input on the GPU; ORT rows copy it in and the output out on every call."
)
STREAM = "model.stream.onnx"
#: key, label, artifact, CUDA graphs, IO binding: one row each per batch size, 100 steps, on
#: CUDA.
_SEQUENCE = (
    ("pytorch-cudnn", "PyTorch cuDNN eager", "reference", False, True),
    ("pytorch-cuda-graph", "PyTorch CUDA graph", "reference", True, True),
    ("ort-cuda-plain", "ORT CUDA, session.run", "model.onnx", False, False),
    ("ort-cuda-iobinding", "ORT CUDA, IO binding", "model.onnx", False, True),
    ("ort-cuda-iobinding-graph", "ORT CUDA, IO binding + CUDA graph", "model.onnx", True, True),
    ("ort-cuda-fp16", "ORT CUDA, FP16 artifact, IO binding", "model.fp16.onnx", False, True),
)


@dataclass(frozen=True)
class Case:
    """One configuration; runtime, mode and precision follow from the artifact it runs."""

    key: str
    label: str
    provider: str
    artifact: str
    batch: int
    steps: int = 100
    cuda_graphs: bool = False
    #: False: plain ``session.run`` on host arrays (ORT CUDA rows; see measure's Measurement).
    io_binding: bool = True

    @property
    def runtime(self) -> str:
        return "torch" if self.artifact == "reference" else "onnxruntime"

    @property
    def mode(self) -> str:
        return "streaming" if self.artifact == STREAM else "sequence"

    @property
    def precision(self) -> str:
        return "fp16" if self.artifact == "model.fp16.onnx" else "fp32"

    @property
    def estimate_s(self) -> float:
        """Seconds to budget: process start, imports, set-up (a TensorRT engine build), timing."""
        if self.provider == "tensorrt":
            return 150.0
        return 30.0 if self.runtime == "torch" else 20.0


def acceptance_cases(batches: Sequence[int] = (1, 64)) -> list[Case]:
    """The rows in run order: the first batch and the frames first (turn 1 measured those),
    TensorRT last (its engine build is the slowest and least certain)."""

    def sequence(batch: int) -> list[Case]:
        return [Case(k, label, "cuda", a, batch, cuda_graphs=g, io_binding=io)
                for k, label, a, g, io in _SEQUENCE]  # fmt: skip

    frames = [
        Case("ort-cpu-frame", "one frame, ORT CPU", "cpu", STREAM, 1, steps=1),
        Case("ort-cuda-frame", "one frame, ORT CUDA", "cuda", STREAM, 1, steps=1),
    ]
    trt = [Case("ort-tensorrt", "ORT TensorRT, IO binding", "tensorrt", "model.onnx", b)
           for b in batches]  # fmt: skip
    first, *rest = batches
    return [*sequence(first), *frames, *(c for b in rest for c in sequence(b)), *trt]


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


# --------------------------------------------------------------------------------------------
# is there a GPU to accept?


def gpu_problems() -> list[str]:
    """What stops a CUDA run here, in words; empty when nvidia-smi sees a GPU and CUDA probes."""
    from edgelstm.hardware import gpu_info
    from edgelstm.runtimes.ort.onnxruntime_import import installed_onnxruntime_distributions
    from edgelstm.runtimes.ort.provider_report import probe_provider
    from edgelstm.runtimes.ort.providers import available_providers

    problems = [] if gpu_info() else ["nvidia-smi found no NVIDIA GPU"]
    try:
        names = [p.name for p in available_providers()]
    except MissingDependencyError as exc:
        return [*problems, _one_line(str(exc))]
    if "cuda" not in names:
        dists = ", ".join(f"{n} {v}" for n, v in installed_onnxruntime_distributions())
        problems.append(f"this onnxruntime ({dists or 'unknown'}) has no CUDAExecutionProvider")
    else:
        probe = probe_provider("cuda")
        if not probe.usable:
            problems.append(f"the CUDA provider probe failed: {_one_line(probe.detail)}")
    return problems


def no_gpu_message(problems: Sequence[str]) -> str:
    """The one ``error:`` line (without the prefix) for a machine that cannot run this."""
    return f"no usable CUDA GPU for the acceptance run: {'; '.join(problems)}; {FIX}"


# --------------------------------------------------------------------------------------------
# subprocesses: pytest and the provider probe


def run_command(
    command: list[str], timeout_s: float, cwd: Path | None = None
) -> tuple[int | None, str, str]:
    """(exit code, None at the timeout; stdout; stderr). Its own process group, so a timeout
    also stops what the command started."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return None, stdout, stderr
    return process.returncode, stdout, stderr


_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b")


def parse_pytest_counts(output: str) -> dict[str, int]:
    """passed/failed/skipped/errors/deselected from pytest's last summary line."""
    counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "deselected"), 0)
    for line in reversed(output.splitlines()):
        found = _COUNT.findall(line)
        for number, word in found:
            key = "errors" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
        if found:
            break
    return counts


def run_gpu_tests(timeout_s: float) -> dict[str, Any]:
    """``pytest -m gpu -q`` in the checkout this module was installed from (editable)."""
    root = Path(__file__).resolve().parent.parent
    summary: dict[str, Any] = {"command": "python -m pytest -m gpu -q", "timeout_s": timeout_s}
    if not (root / "tests").is_dir() or not (root / "pyproject.toml").is_file():
        return {**summary, "status": "skipped", "reason": f"no checkout with tests/ at {root}"}
    started = time.perf_counter()
    code, stdout, stderr = run_command([sys.executable, "-m", "pytest", "-m", "gpu", "-q"],
                                       timeout_s, cwd=root)  # fmt: skip
    status = {None: "timeout", 0: "passed", 1: "failed", 5: "no tests"}.get(code, "error")
    return {**summary, "status": status, "returncode": code,
            "seconds": round(time.perf_counter() - started, 1),
            **parse_pytest_counts(stdout), "tail": (stdout + stderr)[-3000:]}  # fmt: skip


def run_provider_probe(timeout_s: float) -> dict[str, Any]:
    """``edgelstm providers --probe --json``, or ``{"error": ...}`` saying why there is none."""
    command = [sys.executable, "-m", "edgelstm", "providers", "--probe", "--json"]
    code, stdout, stderr = run_command(command, timeout_s)
    if code != 0:
        why = "timed out" if code is None else f"exited {code}"
        return {"error": f"{why}: {_one_line(stderr or stdout)}"}
    try:
        report: dict[str, Any] = json.loads(stdout)
    except ValueError as exc:
        return {"error": f"not JSON ({exc}): {_one_line(stdout)}"}
    return report


def tensorrt_reason(report: Mapping[str, Any]) -> str | None:
    """Why TensorRT rows cannot run, from the probe report; None when it probed usable."""
    if "error" in report:
        return f"the provider probe gave no report ({report['error']})"
    if "tensorrt" not in [p.get("name") for p in report.get("providers", [])]:
        return "this onnxruntime has no TensorrtExecutionProvider"
    probes = [p for p in report.get("probes", []) if p.get("provider") == "tensorrt"]
    if not probes or not probes[0].get("usable"):
        detail = probes[0].get("detail", "") if probes else "not probed"
        return f"the TensorRT probe failed: {_one_line(str(detail))}"
    return None


# --------------------------------------------------------------------------------------------
# artifacts


def prepare_artifacts(folder: Path) -> None:
    """Export the reference model (sequence, streaming) and save its checkpoint in ``folder``,
    as :mod:`edgelstm.benchmarks.suites.reference` does."""
    from edgelstm.benchmarks.suites.reference import reference_checkpoint, reference_model
    from edgelstm.exporters.onnx import export

    model = reference_model()
    export(model, folder / "model.onnx", input_shape=(1, 100, 40))
    export(model, folder / STREAM, streaming=True)
    reference_checkpoint(folder / "reference")


def ready_artifacts(folder: Path, given: Path | None) -> dict[str, str]:
    """Fill ``folder`` (copied from ``given``, or exported), then make the FP16 artifact with
    ``edgelstm quantize --mode fp16``. Returns skip reasons by case key for what is missing."""
    import shutil

    from edgelstm.exporters.quantize import quantize

    reasons: dict[str, str] = {}
    hint = "export needs torch (pip install 'edgelstm[train]'), or pass --artifacts DIR"
    try:
        if given is not None:
            hint = f"not in --artifacts {given} (make it with --prepare-artifacts)"
            shutil.copytree(given, folder, dirs_exist_ok=True)
        else:
            prepare_artifacts(folder)
    except Exception as exc:  # no torch, or an export that failed: the rows say why
        hint = f"{hint}; it failed: {_one_line(f'{type(exc).__name__}: {exc}')}"
    if (folder / "model.onnx").is_file():
        try:
            quantize(folder / "model.onnx", folder / "model.fp16.onnx", mode="fp16")
        except Exception as exc:  # an FP16 failure is a finding for the report, not a crash
            why = _one_line(str(exc))
            reasons["ort-cuda-fp16"] = f"edgelstm quantize --mode fp16 failed: {why}"
    for case in acceptance_cases():
        if not (folder / case.artifact).exists():
            reasons.setdefault(case.key, f"no {case.artifact}: {hint}")
    return reasons


def torch_reason() -> str | None:
    """Why the PyTorch CUDA rows cannot run here; None when they can."""
    from edgelstm.hardware import torch_cuda_info

    try:
        info = torch_cuda_info()
    except MissingDependencyError as exc:
        return _one_line(str(exc))
    if not info["cuda_available"]:
        build = f"built for CUDA {info['cuda_build']}" if info["cuda_build"] else "a CPU-only build"
        return f"torch {info['torch']} sees no CUDA device ({build})"
    return None


# --------------------------------------------------------------------------------------------
# one row


def measure_case(
    case: Case, folder: Path, iterations: int, warmup: int, timeout_s: float
) -> dict[str, Any]:
    """Time ``case`` in a fresh process with :func:`~edgelstm.benchmarks.measure.measure_isolated`.

    A worker that dies (a crash in CUDA-graph capture) ends the row at once, not at the timeout.
    """
    from edgelstm.benchmarks.measure import Measurement, measure_isolated

    m = Measurement(str(folder / case.artifact), case.runtime, case.provider, case.precision,
                    case.mode, case.batch, case.steps, threads=1, warmup=warmup,
                    iterations=iterations, cuda_graphs=case.cuda_graphs,
                    io_binding=case.io_binding)  # fmt: skip
    return measure_isolated(m, timeout_s=timeout_s)


# --------------------------------------------------------------------------------------------
# planning within the budget


def case_row(case: Case, status: str, reason: str | None = None, **raw: Any) -> dict[str, Any]:
    """A row of the document: the case, its status and reason, then measure's statistics
    (whose ``provider`` is the one that ran)."""
    row = {**asdict(case), "requested_provider": case.provider, "runtime": case.runtime,
           "mode": case.mode, "precision": case.precision, "status": status, "reason": reason,
           **dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "throughput_per_s")),
           "h200_turn1": H200_TURN1.get((case.key, case.batch))}  # fmt: skip
    return {**row, **raw}


def run_plan(
    cases: Sequence[Case],
    measure_one: Callable[[Case, float], dict[str, Any]],
    *,
    budget_s: float,
    started: float,
    clock: Callable[[], float] = time.monotonic,
    reasons: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per case: skipped (``reasons`` by key, or no time left), failed or measured.

    A case starts only while its ``estimate_s`` fits in what is left of ``budget_s`` since
    ``started`` (on ``clock``); ``measure_one`` gets the seconds left as its timeout.
    """
    rows = []
    for case in cases:
        reason = (reasons or {}).get(case.key)
        left = budget_s - (clock() - started)
        if reason is None and case.estimate_s > left:
            reason = (f"skipped for budget: {budget_s - left:.0f} s of --budget-s {budget_s:.0f} "
                      f"spent, this needs about {case.estimate_s:.0f} s")  # fmt: skip
        if reason is not None:
            rows.append(case_row(case, "skipped", reason))
            continue
        try:
            raw = measure_one(case, left)
        except Exception as exc:  # one failed configuration must not lose the others
            why = str(exc) if isinstance(exc, EdgeLSTMError) else f"{type(exc).__name__}: {exc}"
            rows.append(case_row(case, "failed", _one_line(why)))
        else:
            rows.append(case_row(case, "measured", **raw))
    return rows


# --------------------------------------------------------------------------------------------
# the document and its Markdown


def environment() -> dict[str, Any]:
    """measure's fingerprint plus the onnxruntime distributions, its CUDA build, torch's CUDA."""
    from edgelstm.benchmarks.measure import environment as fingerprint
    from edgelstm.hardware import torch_cuda_info
    from edgelstm.runtimes.ort.onnxruntime_import import installed_onnxruntime_distributions

    env = fingerprint((1,))
    dists = installed_onnxruntime_distributions()
    env["onnxruntime_distributions"] = [{"name": n, "version": v} for n, v in dists]
    try:
        from onnxruntime.capi import build_and_package_info as build

        env["onnxruntime_cuda_build"] = getattr(build, "cuda_version", None)
    except ImportError:
        env["onnxruntime_cuda_build"] = None
    try:
        env["torch_cuda"] = torch_cuda_info()
    except MissingDependencyError:
        env["torch_cuda"] = None
    return env


def _number(value: Any, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def to_markdown(document: Mapping[str, Any]) -> str:
    """The readable report: environment, GPU tests, the table, why rows are missing, probes."""
    env, tests = document.get("environment", {}), document.get("pytest", {})
    gpu = (env.get("gpus") or [{}])[0]
    libs = env.get("libraries", {})
    dists = env.get("onnxruntime_distributions", [])
    dists = ", ".join(f"{d['name']} {d['version']}" for d in dists)
    lines = [
        "# GPU acceptance: reference LSTM (2 x 128, 40 features, 10 classes), 100 steps", "",
        f"GPU {gpu.get('name', '?')} (driver {gpu.get('driver_version', '?')}, CUDA "
        f"{gpu.get('cuda_version', '?')}); onnxruntime {libs.get('onnxruntime', '?')} "
        f"({dists or '?'}); torch {libs.get('torch') or 'not installed'}. Budget "
        f"{document.get('budget_s', 0):.0f} s, used {document.get('elapsed_s', 0):.0f} s.",
        "", f"## `{tests.get('command', 'pytest -m gpu')}`: {tests.get('status', '?')}", "",
    ]  # fmt: skip
    if "reason" in tests:
        lines.append(f"Not run: {tests['reason']}.")
    else:
        kinds = ("passed", "failed", "skipped", "errors")
        counts = ", ".join(f"{tests.get(k, 0)} {k}" for k in kinds)
        lines.append(f"{counts} (exit {tests.get('returncode')}, {tests.get('seconds', 0)} s).")
    lines += ["", "## Latency", "",
              "| configuration | batch | status | p50 ms | p90 ms | p99 ms | per s | H200 turn 1 |",
              "|---|---:|---|---:|---:|---:|---:|---|"]  # fmt: skip
    notes = []
    for row in document.get("rows", []):
        lines.append(
            f"| {row['label']} | {row['batch']} | {row['status']} | {_number(row['p50_ms'])} | "
            f"{_number(row['p90_ms'])} | {_number(row['p99_ms'])} | "
            f"{_number(row['throughput_per_s'], ',.0f')} | {row.get('h200_turn1') or ''} |"
        )
        if row.get("reason"):
            notes.append(
                f"- {row['label']}, batch {row['batch']}, {row['status']}: {row['reason']}"
            )
    lines += ["", FOOTNOTE]
    if notes:
        lines += ["", "### Not measured", "", *notes]
    probe = document.get("providers_probe", {})
    lines += ["", "## `edgelstm providers --probe --json`", ""]
    if "error" in probe:
        lines.append(f"No report: {probe['error']}")
    for result in probe.get("probes", []):
        state = "usable" if result.get("usable") else "NOT usable"
        lines.append(f"- {result.get('provider')}: {state} ({result.get('detail')})")
    lines.extend(f"- warning: {w}" for w in probe.get("warnings", []))
    return "\n".join(lines) + "\n"


def write_results(out: Path, document: Mapping[str, Any]) -> None:
    """``out``/gpu_acceptance.json and .md, each written atomically."""
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    write_json_atomic(out / "gpu_acceptance.json", dict(document), overwrite=True)
    write_text_atomic(out / "gpu_acceptance.md", to_markdown(document), overwrite=True)


def acceptance_exit_code(document: Mapping[str, Any]) -> int:
    """1 when a GPU test or a configuration failed, else 0 (skips are reported, not failures)."""
    failed = document.get("pytest", {}).get("status") in ("failed", "error", "timeout")
    return 1 if failed or any(r["status"] == "failed" for r in document.get("rows", [])) else 0


def run_acceptance(
    args: argparse.Namespace, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns the ``edgelstm.gpu_acceptance/1`` document."""
    started = clock()
    budget = float(args.budget_s)
    tests = run_gpu_tests(min(PYTEST_TIMEOUT_S, 0.3 * budget))
    probe = run_provider_probe(min(PROBE_TIMEOUT_S, max(10.0, budget - (clock() - started))))
    with tempfile.TemporaryDirectory(prefix="edgelstm-gpu-acceptance-") as tmp:
        folder = Path(tmp)
        reasons = ready_artifacts(folder, args.artifacts)
        trt, torch = tensorrt_reason(probe), torch_reason()
        reasons.update({"ort-tensorrt": trt} if trt else {})
        reasons.update({k: torch for k in ("pytorch-cudnn", "pytorch-cuda-graph") if torch})

        def measure_one(case: Case, left_s: float) -> dict[str, Any]:
            return measure_case(case, folder, args.iterations, args.warmup, left_s)

        rows = run_plan(acceptance_cases(), measure_one, budget_s=budget, started=started,
                        clock=clock, reasons=reasons)  # fmt: skip
    return {
        "schema": SCHEMA, "command": f"{COMMAND} --budget-s {budget:.0f}",
        "budget_s": budget, "elapsed_s": round(clock() - started, 1),
        "iterations": args.iterations, "warmup": args.warmup, "environment": environment(),
        "pytest": tests, "rows": rows, "providers_probe": probe,
        "h200_turn1": {f"{k} batch {b}": v for (k, b), v in H200_TURN1.items()},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_acceptance.{json,md}")
    parser.add_argument("--budget-s", type=float, default=480.0, help="seconds for everything")
    parser.add_argument("--iterations", type=int, default=300, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per row")
    parser.add_argument("--artifacts", type=Path, help="use these exports (no torch needed)")
    parser.add_argument("--prepare-artifacts", type=Path, metavar="DIR",
                        help="only export the artifacts into DIR (no GPU needed)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.prepare_artifacts is not None:
            from edgelstm.fileio import atomic_folder

            with atomic_folder(args.prepare_artifacts) as folder:
                prepare_artifacts(folder)
            return 0
        if args.out is None:
            parser.error("--out DIR is required")
        if args.budget_s <= 0 or args.iterations < 1 or args.warmup < 0:
            raise InvalidInputError("--budget-s and --iterations must be > 0, --warmup >= 0")
        problems = gpu_problems()
        if problems:  # before anything exists under --out
            raise InvalidInputError(no_gpu_message(problems))
        if args.out.exists() and not args.out.is_dir():
            raise InvalidInputError(f"--out {args.out} is a file; give a folder")
        document = run_acceptance(args)
        write_results(args.out, document)
        sys.stdout.write(to_markdown(document))
        return acceptance_exit_code(document)
    except EdgeLSTMError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc), 2000)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; nothing written\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
