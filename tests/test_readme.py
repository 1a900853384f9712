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


def test_ci_runs_the_readme_lines_then_the_device_provider_and_arm64_installs() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    commands = [line for line in lines if not line.startswith(("set -", "cd "))]
    assert commands == [
        _readme_command("Set up"),
        _readme_command("Main job"),
        _readme_command("Test"),
        "bash .ci/device-install",
        "bash .ci/providers",
        "bash .ci/arm64",
    ]


def test_arm64_check_installs_a_bundle_offline_and_verifies_on_two_cpus() -> None:
    script = (REPO / ".ci" / "arm64").read_text(encoding="utf-8")
    assert 'edgelstm" bundle' in script and "--target linux-aarch64" in script
    assert "--variant=extract" in script and "arm64-cpuinfo" in script
    assert 'PYTHON=$python "$bundle/install.sh"' in script  # the bundle's own installer
    assert "QEMU_CPU=max" in script and "cortex-a72" in script
    assert "--stream" in script and '"$arm" serve' in script


def test_setup_line_makes_a_fresh_virtual_environment_first() -> None:
    setup = _readme_command("Set up")
    assert setup.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    assert "--system-site-packages" not in setup
    assert '".[cpu,train,data,serve,scale,dev]"' in setup


def test_device_install_has_no_torch_and_runs_the_device_commands() -> None:
    script = (REPO / ".ci" / "device-install").read_text(encoding="utf-8")
    assert 'pip" install -c constraints/cpu.txt ".[cpu]"' in script
    assert "for module in torch aeon safetensors onnxscript" in script
    for command in ("run", "benchmark", "providers"):
        assert f'/bin/edgelstm" {command}' in script or f'"$bin/edgelstm" {command}' in script
    assert "--stream" in script


def test_provider_environments_are_torch_free_and_run_the_provider_tests() -> None:
    script = (REPO / ".ci" / "providers").read_text(encoding="utf-8")
    assert 'pip install -c constraints/cpu.txt -e ".[openvino,dev]"' in script
    assert 'pip install -c constraints/cpu.txt -e ".[cpu,dev]" onnxruntime-ep-openvino' in script
    assert "-m openvino" in script and "-m plugin_ep" in script
    assert script.count("not_torch .venv-") == 2
    pins = (REPO / "constraints" / "cpu.txt").read_text(encoding="utf-8")
    assert "onnxruntime-openvino==" in pins and "onnxruntime-ep-openvino==" in pins


def test_the_readme_stands_alone() -> None:
    for name in ("README.md", "constraints/cpu.txt", "benchmarks/results/README.md"):
        assert "shared/" not in (REPO / name).read_text(encoding="utf-8"), name


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


def test_the_sample_systemd_unit_runs_serve_with_flags_it_has() -> None:
    from typer.testing import CliRunner

    from edgelstm.cli import app

    text = (REPO / "README.md").read_text(encoding="utf-8")
    unit = re.search(r"```ini\n(.*?)```", text, re.DOTALL)
    assert unit, "README has no sample unit file"
    exec_start = re.search(r"^ExecStart=(\S+) serve (.*)$", unit.group(1), re.MULTILINE)
    assert exec_start and exec_start.group(1).endswith("/edgelstm")
    flags = set(re.findall(r"(--[a-z-]+)", exec_start.group(2)))
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert flags and all(flag in help_text for flag in flags), flags
    assert "Restart=on-failure" in unit.group(1)
