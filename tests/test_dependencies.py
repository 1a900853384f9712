"""Every third-party import is declared, every declared package is used (deptry), and the
check really fails on an undeclared import such as the `click` and `onnxscript` ones that once
passed CI only because the machine's system Python happened to carry them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = ["edgelstm", "exporters", "runtimes", "benchmarks"]


def _deptry(root: Path) -> subprocess.CompletedProcess[str]:
    """deptry's findings, stdout and stderr together (it reports on stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "deptry", "--no-ansi", "."],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The package sources and pyproject.toml, to break on purpose."""
    for name in PACKAGE:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_every_import_is_declared_and_every_dependency_used() -> None:
    result = _deptry(REPO)
    assert result.returncode == 0, result.stdout


def test_an_undeclared_import_fails_the_check(project_copy: Path) -> None:
    cli = project_copy / "edgelstm" / "cli" / "__init__.py"
    cli.write_text(cli.read_text() + "\n\ndef _late() -> None:\n    import click  # noqa: F401\n")
    result = _deptry(project_copy)
    assert result.returncode != 0
    assert re.search(r"edgelstm/cli/__init__\.py:\d+:\d+: DEP00[13] 'click'", result.stdout), (
        result.stdout
    )


def test_the_fallback_exporters_onnxscript_must_be_declared(project_copy: Path) -> None:
    pyproject = project_copy / "pyproject.toml"
    text = pyproject.read_text()
    assert '"onnxscript>=' in text
    pyproject.write_text(re.sub(r',?\s*"onnxscript>=[^"]*"', "", text))
    result = _deptry(project_copy)
    assert result.returncode != 0
    assert re.search(r"exporters/onnx\.py:\d+:\d+: DEP00[13] 'onnxscript'", result.stdout), (
        result.stdout
    )


def test_a_declared_but_unused_dependency_fails_the_check(project_copy: Path) -> None:
    pyproject = project_copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('    "rich>=13",\n', '    "rich>=13",\n    "tqdm>=4",\n', 1))
    result = _deptry(project_copy)
    assert result.returncode != 0
    assert "DEP002 'tqdm' defined as a dependency but not used" in result.stdout, result.stdout


def test_torch_is_an_extra_not_a_core_dependency() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for heavy in ("torch", "safetensors", "onnxscript", "aeon", "matplotlib", "onnxruntime"):
        assert heavy not in core, f"{heavy} is a core dependency; it belongs in an extra"
    extras = project["optional-dependencies"]
    assert {r.split(">")[0] for r in extras["train"]} == {"torch", "safetensors", "onnxscript"}
    assert extras["cpu"] == ["onnxruntime>=1.18"]
