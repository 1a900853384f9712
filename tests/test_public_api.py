"""The Python API the README promises exists: every function its table names imports, and
takes the parameters the table says it takes beside the CLI's options."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _api_rows() -> list[tuple[list[str], list[str]]]:
    """(dotted function names, parameter names) per row of the README's Python API table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if not line.startswith("| ") or len(cells) != 3 or cells[0] == "command":
            continue
        names = re.findall(r"`(edgelstm(?:\.\w+)+)\(", cells[1])
        names += [
            f"edgelstm.runtimes.{n}" for n in re.findall(r"`edgelstm\.runtimes\.(\w+)`", cells[1])
        ]
        rows.append((names, re.findall(r"`(\w+)`", cells[2])))
    return rows


def _resolve(dotted: str) -> Callable[..., Any]:
    module_name, _, attribute = dotted.rpartition(".")
    module = importlib.import_module(module_name)
    found: Callable[..., Any] = getattr(module, attribute)
    return found


def test_the_readme_names_the_api_table() -> None:
    rows = _api_rows()
    names = {name for row_names, _ in rows for name in row_names}
    assert {"edgelstm.train", "edgelstm.exporters.export", "edgelstm.runtimes.run_model"} <= names
    assert len(rows) >= 9


@pytest.mark.parametrize("row", _api_rows(), ids=lambda row: ",".join(row[0]) or "none")
def test_each_named_function_exists_with_its_parameters(row: tuple[list[str], list[str]]) -> None:
    names, parameters = row
    functions = [_resolve(name) for name in names]
    assert all(callable(function) for function in functions), names
    accepted = {p for f in functions for p in inspect.signature(f).parameters}
    missing = [p for p in parameters if p not in accepted]
    assert not missing, f"{names} take no parameter {missing}"


def test_library_errors_tell_python_callers_the_python_spelling(tmp_path: Path) -> None:
    from edgelstm.errors import InvalidInputError
    from edgelstm.fileio import check_output_path

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "file").write_text("x")
    with pytest.raises(InvalidInputError, match=r"overwrite=True"):
        check_output_path(tmp_path / "out", overwrite=False, kind="folder")
