"""CI runs the README's set-up and test commands, exactly; the README keeps its promises."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _readme_command(label: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^\| \*\*{label}\*\*[^|]*\| `([^`]+)` \|$", text, re.MULTILINE)
    assert match, f"README has no '{label}' row with a command"
    return match.group(1)


def test_ci_runs_the_readme_setup_and_test_commands_and_nothing_else() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    commands = [line for line in lines if not line.startswith(("set -", "cd "))]
    assert commands == [_readme_command("Set up"), _readme_command("Test")]


def test_main_job_is_the_quickstart_and_the_readme_shows_its_results() -> None:
    assert _readme_command("Main job") == "edgelstm quickstart"
    text = (REPO / "README.md").read_text(encoding="utf-8")
    # The results table the quickstart printed on this machine class is in the README.
    assert "| pytorch eager fp32 | torch | cpu | fp32 | sequence |" in text


def test_constraints_pin_the_cpu_torch_build() -> None:
    pins = (REPO / "constraints" / "cpu.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==2\.13\.0$", pins, re.MULTILINE)
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    # Users are not bound by the pin: the package itself asks for a range.
    assert '"torch>=' in pyproject and "torch==" not in pyproject
