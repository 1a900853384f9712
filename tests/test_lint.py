"""ruff and mypy are part of the test suite, so style and types cannot silently rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["edgelstm", "exporters", "runtimes", "benchmarks", "tests"]


def _run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


def test_ruff_check_and_format() -> None:
    # This interpreter's ruff, not whatever `ruff` is on PATH: a venv whose bin is not on
    # PATH (CI calling .venv/bin/python directly) would otherwise skip the gate silently.
    check = _run([sys.executable, "-m", "ruff", "check", *SOURCES])
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run([sys.executable, "-m", "ruff", "format", "--check", *SOURCES])
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict(tmp_path: Path) -> None:
    # mypy cannot follow setuptools' package-dir mapping, so lay the installed shape out as
    # links: edgelstm/ with exporters/, runtimes/ and benchmarks/ inside it.
    package = tmp_path / "edgelstm"
    package.mkdir()
    for entry in (REPO / "edgelstm").iterdir():
        (package / entry.name).symlink_to(entry)
    for room in ("exporters", "runtimes", "benchmarks"):
        (package / room).symlink_to(REPO / room)
    cache = REPO / ".mypy_cache"
    result = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "-p",
            "edgelstm",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
