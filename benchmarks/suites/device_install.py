"""What the torch-free device install costs next to the full one: disk, start-up and memory.

Compares virtual environments side by side in one run (this machine's absolute times drift):
the size of each one's site-packages, the wall time of ``edgelstm --version`` and of one
``edgelstm run`` of a model over an input file, and that run's peak resident memory::

    python -m edgelstm.benchmarks.suites.device_install \\
        --env device=.venv-device --env full=.venv \\
        --model quickstart/model.onnx --input test.npz

writes ``benchmark-results/device_install.{json,md}`` (``--out benchmarks/results/device_install``
updates the committed ones). Runs of the
environments alternate, so drift hits them alike.

Peak memory is the child's ``ru_maxrss`` from ``wait4``. Linux carries the *parent's* high-water
mark into a child across fork and exec, so this process imports nothing but the standard
library (a few MB): the numbers are the command's own.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgelstm.benchmarks.suites.result_files import add_out_option
from edgelstm.fileio import write_json_atomic, write_text_atomic

SCHEMA = "edgelstm.device_install/1"


def ask(env: Path, code: str) -> str:
    """What ``code`` prints in the environment's own interpreter."""
    out = subprocess.run(
        [str(env / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def folder_mb(path: Path) -> float:
    """Bytes of regular files below ``path`` (byte-compiled caches included: they are on disk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total / 1e6


def largest_entries(path: Path, count: int = 6) -> list[tuple[str, float]]:
    """The biggest top-level entries of site-packages, the candidates for dropping."""
    sizes = []
    for entry in path.iterdir():
        if entry.name.endswith((".dist-info", ".pth")) or entry.name == "__pycache__":
            continue
        size = folder_mb(entry) if entry.is_dir() else entry.stat().st_size / 1e6
        sizes.append((entry.name, round(size, 1)))
    return sorted(sizes, key=lambda item: -item[1])[:count]


def timed_run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run; the command must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} exited {process.returncode}: {stderr}")
    return elapsed, usage.ru_maxrss / 1024


def cpu_description() -> tuple[str, list[str]]:
    """The CPU model and the features that decide ONNX Runtime's kernels (INT8 above all)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = platform.machine(), []
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = sorted(f for f in value.split() if f in wanted)
    return model, flags


def measure(
    envs: dict[str, Path], model: Path, data: Path, repeats: int
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    samples: dict[str, dict[str, list[float]]] = {
        name: {"version_s": [], "run_s": [], "run_rss_mb": []} for name in envs
    }
    with tempfile.TemporaryDirectory(prefix="edgelstm-device-install-") as work:
        for repeat in range(repeats):
            for name, env in envs.items():
                cli = str(env / "bin" / "edgelstm")
                seconds, _ = timed_run([cli, "--version"])
                samples[name]["version_s"].append(seconds)
                out = Path(work) / f"{name}-{repeat}.csv"
                seconds, rss = timed_run(
                    [cli, "run", str(model), "--input", str(data), "--output", str(out)]
                )
                samples[name]["run_s"].append(seconds)
                samples[name]["run_rss_mb"].append(rss)
    for name, env in envs.items():
        packages = Path(ask(env, "import sysconfig; print(sysconfig.get_path('purelib'))"))
        has_torch = ask(env, "import importlib.util as u; print(bool(u.find_spec('torch')))")
        results[name] = {
            "env": str(env),
            "has_torch": has_torch == "True",
            "site_packages_mb": round(folder_mb(packages), 1),
            "largest": largest_entries(packages),
            "version_p50_s": round(statistics.median(samples[name]["version_s"]), 3),
            "run_p50_s": round(statistics.median(samples[name]["run_s"]), 3),
            "run_peak_rss_mb": round(max(samples[name]["run_rss_mb"]), 1),
        }
    return results


def to_markdown(document: dict[str, Any]) -> str:
    names = list(document["environments"])
    envs = document["environments"]
    lines = [
        "# Device install vs full install",
        "",
        f"Command: `{document['command']}`",
        "",
        f"Machine: {document['machine']['processor']}, {document['machine']['cores']} cores, "
        f"flags {', '.join(document['machine']['cpu_flags']) or 'unknown'}; "
        f"Python {document['machine']['python']}; {document['repeats']} alternating runs each "
        f"(median times, highest peak memory). Model `{document['model']}`, "
        f"input `{document['input']}`.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("torch installed", lambda e: "yes" if e["has_torch"] else "no"),
        ("site-packages MB", lambda e: f"{e['site_packages_mb']:.0f}"),
        ("`edgelstm --version` s", lambda e: f"{e['version_p50_s']:.3f}"),
        ("`edgelstm run` s", lambda e: f"{e['run_p50_s']:.3f}"),
        ("`edgelstm run` peak RSS MB", lambda e: f"{e['run_peak_rss_mb']:.0f}"),
        (
            "largest packages (MB)",
            lambda e: ", ".join(f"{n} {s:.0f}" for n, s in e["largest"]),
        ),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(envs[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--env", action="append", required=True, metavar="NAME=VENV", help="an environment"
    )
    parser.add_argument("--model", type=Path, required=True, help="an exported .onnx")
    parser.add_argument("--input", type=Path, required=True, help="input file for run")
    parser.add_argument("--repeats", type=int, default=7)
    add_out_option(parser, file_stem="device_install")
    args = parser.parse_args(argv)
    envs: dict[str, Path] = {}
    for item in args.env:
        name, sep, path = item.partition("=")
        if not sep or not (Path(path) / "bin" / "edgelstm").is_file():
            parser.error(f"--env {item}: expected NAME=VENV with VENV/bin/edgelstm installed")
        envs[name] = Path(path)
    processor, flags = cpu_description()
    document = {
        "schema": SCHEMA,
        "command": "python -m edgelstm.benchmarks.suites.device_install "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "processor": processor,
            "cores": os.cpu_count(),
            "cpu_flags": flags,
            "python": platform.python_version(),
        },
        "model": str(args.model),
        "input": str(args.input),
        "repeats": args.repeats,
        "environments": measure(envs, args.model, args.input, args.repeats),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out.with_suffix(".json"), document, overwrite=True)
    write_text_atomic(args.out.with_suffix(".md"), to_markdown(document), overwrite=True)
    print(to_markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
