"""The layering (core < runtimes < exporters < benchmarks, the CLI facade aside) is an
import-linter contract in pyproject.toml, checked here on every test run, and the check
really fails when a lower layer imports a higher one, a room is imported by its folder name,
or a new module sits in no layer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOMS = ("exporters", "runtimes", "benchmarks")


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """The installed shape as links (edgelstm/ with the three rooms inside it).

    grimp finds a package's modules by walking its folder, so from the checkout it cannot see
    the rooms that setuptools' package-dir maps under ``edgelstm.`` (as mypy cannot: see
    test_lint.py). A test that wants to break something replaces one link with a file.
    """
    package = tmp_path / "edgelstm"
    package.mkdir()
    for entry in (REPO / "edgelstm").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for room in ROOMS:
        (package / room).symlink_to(REPO / room)
    return tmp_path


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the layout under ``root``, with the contracts of pyproject.toml.

    A fresh interpreter in ``root``: lint-imports puts its working folder first on sys.path,
    ahead of the editable install's finder, so ``edgelstm`` resolves to the layout.
    """
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def _replace(layout: Path, module: str, extra: str) -> None:
    """Swap the link for ``module`` (a path under edgelstm/) for a copy with ``extra`` added.

    Every linked folder on the way (a room, then e.g. ``runtimes/ort``) becomes a real folder
    of links first, so the copy lands in the layout and the checkout stays untouched.
    """
    folder = layout / "edgelstm"
    for part in Path(module).parent.parts:
        folder = folder / part
        if folder.is_symlink():
            source_folder = folder.resolve()
            folder.unlink()
            folder.mkdir()
            for entry in source_folder.iterdir():
                if entry.name != "__pycache__":
                    (folder / entry.name).symlink_to(entry)
    target = layout / "edgelstm" / module
    assert target.is_symlink(), f"{module} is not linked in the layout"
    source = target.resolve()
    target.unlink()
    target.write_text(source.read_text(encoding="utf-8") + extra, encoding="utf-8")


# The ONNX Runtime side's contract, by its name in pyproject.toml.
ORT_CONTRACT = "The ONNX Runtime side (runtimes/ort) is layered, with no import circle"


def test_the_checkout_keeps_the_layers(layout: Path) -> None:
    result = _lint_imports(layout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 broken" in output, output
    assert f"{ORT_CONTRACT} KEPT" in output, output


# A lazy import inside a function is an import all the same: the rooms are imported that way.
LATE = "\n\ndef _late_import() -> None:\n    {statement}  # noqa: F401\n"


@pytest.mark.parametrize(
    ("module", "statement", "expected"),
    [
        (
            "fileio.py",
            "from edgelstm.exporters import quantize",
            "edgelstm.fileio is not allowed to import edgelstm.exporters",
        ),
        (
            "data/readers.py",
            "import edgelstm.runtimes.ort.session",
            "edgelstm.data is not allowed to import edgelstm.runtimes",
        ),
        (
            "runtimes/run_files.py",
            "from edgelstm.benchmarks import tune",
            "edgelstm.runtimes is not allowed to import edgelstm.benchmarks",
        ),
        (
            "exporters/quantize.py",
            "import edgelstm.benchmarks.harness",
            "edgelstm.exporters is not allowed to import edgelstm.benchmarks",
        ),
        (
            "metadata.py",
            "import runtimes.session",
            "edgelstm is not allowed to import runtimes",
        ),
        # Inside the ONNX Runtime side (its own contract).
        (
            "runtimes/ort/artifact.py",
            "from edgelstm.runtimes.ort.session import open_session",
            "edgelstm.runtimes.ort.artifact is not allowed to import edgelstm.runtimes.ort.session",
        ),
        (
            # The circle the contract broke: the registry probing through a session.
            "runtimes/ort/providers.py",
            "from edgelstm.runtimes.ort.session import open_session",
            "edgelstm.runtimes.ort.providers is not allowed to import "
            "edgelstm.runtimes.ort.session",
        ),
        (
            "runtimes/ort/execution.py",
            "from edgelstm.runtimes.ort import provider_report",
            "edgelstm.runtimes.ort.execution is not allowed to import "
            "edgelstm.runtimes.ort.provider_report",
        ),
    ],
)
def test_an_import_against_the_layers_breaks_the_contract(
    layout: Path, module: str, statement: str, expected: str
) -> None:
    checkout = (layout / "edgelstm" / module).resolve()
    _replace(layout, module, LATE.format(statement=statement))
    result = _lint_imports(layout)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert expected in output, output
    assert "_late_import" not in checkout.read_text(encoding="utf-8")  # only the layout changed


def test_a_core_module_may_reach_the_rooms_only_through_the_cli(layout: Path) -> None:
    # core -> cli -> rooms is an upward chain too; the facade is exempt only as the top.
    _replace(layout, "fileio.py", LATE.format(statement="import edgelstm.cli"))
    result = _lint_imports(layout)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "edgelstm.fileio is not allowed to import edgelstm.benchmarks" in output, output
    assert "edgelstm.fileio -> edgelstm.cli" in output, output


def test_a_new_module_in_no_layer_breaks_the_contract(layout: Path) -> None:
    (layout / "edgelstm" / "newcomer.py").write_text('"""Placed in no layer."""\n')
    result = _lint_imports(layout)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "edgelstm.newcomer" in output, output


def test_a_new_ort_module_in_no_layer_breaks_its_contract(layout: Path) -> None:
    _replace(layout, "runtimes/ort/__init__.py", "")  # makes runtimes/ort a real folder
    (layout / "edgelstm" / "runtimes" / "ort" / "newcomer.py").write_text('"""No layer."""\n')
    result = _lint_imports(layout)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{ORT_CONTRACT} BROKEN" in output, output
    assert "edgelstm.runtimes.ort.newcomer" in output, output
