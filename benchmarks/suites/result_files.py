"""What every suite's result files share: where they go, and the fingerprint stored in them.

A suite writes to ``benchmark-results/`` in the current folder unless told ``--out``, so a
trial run never overwrites the committed results; ``--out benchmarks/results`` (from the
repository root) is the explicit way to update those.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMITTED_RESULTS", "WORKING_RESULTS", "add_out_option", "suite_environment"]

#: Where a suite writes by default (git ignores it).
WORKING_RESULTS = Path("benchmark-results")
#: The committed results, relative to the repository root: written only when named.
COMMITTED_RESULTS = Path("benchmarks/results")


def add_out_option(
    parser: argparse.ArgumentParser, flag: str = "--out", *, file_stem: str | None = None
) -> None:
    """Add ``flag``: the results folder (or, with ``file_stem``, the path without suffix of
    ``FILE_STEM.{json,md}``), defaulting to the working folder rather than the committed one."""
    default = WORKING_RESULTS / file_stem if file_stem else WORKING_RESULTS
    committed = COMMITTED_RESULTS / file_stem if file_stem else COMMITTED_RESULTS
    what = "path of the .json and .md, without suffix" if file_stem else "folder for the results"
    parser.add_argument(
        flag,
        type=Path,
        default=default,
        help=f"{what} (default: {default}; {flag} {committed} updates the committed results)",
    )


def suite_environment(libraries: Sequence[str] = ()) -> dict[str, Any]:
    """The fingerprint a suite stores with its results: the benchmark harness's (hardware,
    versions), the load average at the start, the versions of ``libraries``, the commit of
    this checkout and its uncommitted edits, and the CPU flags the kernels depend on."""
    import importlib.metadata as md

    from edgelstm.benchmarks.measure import environment
    from edgelstm.hardware import cpu_info

    env = environment((1,))
    env["loadavg_at_start"] = os.getloadavg()  # another user's load on the cores shows here
    for dist in libraries:
        with contextlib.suppress(md.PackageNotFoundError):
            env["libraries"][dist] = md.version(dist)
    # What was measured is this checkout's code: its commit, and whether it had local edits.
    git = ["git", "-C", str(Path(__file__).resolve().parent)]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, check=True)
        edits = subprocess.run([*git, "status", "--porcelain"], capture_output=True)
        env["git"] = {"commit": commit.stdout.decode().strip(), "edited": edits.stdout.decode()}
    env["cpu_flags"] = sorted({"avx2", "avx512f", "avx512_vnni", "fma"} & cpu_info().flags)
    return env
