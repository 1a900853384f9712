"""The wheel installs exactly one top-level package, `edgelstm`, holding all four rooms.

`exporters`, `runtimes` and `benchmarks` are names other distributions own on the package
index; installing them as top-level packages would silently overwrite those.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import edgelstm

REPO = Path(__file__).resolve().parent.parent
ROOMS = {
    "edgelstm": "edgelstm",
    "exporters": "edgelstm/exporters",
    "runtimes": "edgelstm/runtimes",
    "benchmarks": "edgelstm/benchmarks",
}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    src = tmp_path_factory.mktemp("src")
    # Build from a copy so the working tree gets no build/ or egg-info litter.
    for item in ["pyproject.toml", "README.md", *ROOMS]:
        path = REPO / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy(path, src / item)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
    )
    (wheel,) = out.glob("edgelstm-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _source_modules() -> set[str]:
    expected = set()
    for folder, prefix in ROOMS.items():
        for path in (REPO / folder).rglob("*.py"):
            expected.add(f"{prefix}/{path.relative_to(REPO / folder).as_posix()}")
    return expected


def test_every_module_is_in_the_wheel_under_edgelstm(wheel_names: set[str]) -> None:
    missing = sorted(_source_modules() - wheel_names)
    assert not missing, f"modules left out of the wheel (add their package to pyproject): {missing}"


def test_only_edgelstm_is_a_top_level_package(wheel_names: set[str]) -> None:
    top = {name.split("/")[0] for name in wheel_names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"edgelstm"}
    for room in ("exporters", "runtimes", "benchmarks"):
        assert f"edgelstm/{room}/__init__.py" in wheel_names


def test_wheel_is_typed_and_has_the_console_script(wheel_names: set[str]) -> None:
    assert "edgelstm/py.typed" in wheel_names
    assert any(n.endswith("entry_points.txt") for n in wheel_names)


def test_public_api_is_curated_and_importable() -> None:
    expected = {
        "__version__",
        "EdgeLSTMError",
        "InvalidInputError",
        "CheckFailedError",
        "MissingDependencyError",
        "ProviderUnavailableError",
        "ModelConfig",
        "TrainConfig",
        "TRAIN_PRESETS",
        "RunRecord",
        "build_model",
        "train",
        "TrainResult",
        "load_checkpoint",
        "Checkpoint",
        "list_datasets",
        "load_dataset",
        "load_training_data",
    }
    assert set(edgelstm.__all__) == expected
    for name in edgelstm.__all__:
        assert getattr(edgelstm, name) is not None
    with pytest.raises(AttributeError):
        _ = edgelstm.no_such_name  # type: ignore[attr-defined]


def test_import_and_help_do_not_load_heavy_libraries() -> None:
    code = (
        "import sys, edgelstm, edgelstm.cli; "
        "heavy = [m for m in ('torch', 'onnxruntime', 'aeon', 'onnx') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_matches_the_lazy_export_table() -> None:
    assert set(edgelstm.__all__) == {"__version__", *edgelstm._EXPORTS}
