"""``edgelstm bundle`` and ``edgelstm verify``: contents and manifest, refusals, golden files
and tolerances, verify on matching and mismatching outputs.

pip runs for real, offline: the wheelhouse is fetched with ``--no-index`` from a folder of
small wheels made here (same names, versions and platform tags as the real ones; no code),
so the tests check what pip is asked for and what lands in the bundle without a network.
``.ci/arm64`` installs a real bundle on emulated aarch64.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import file_sha256
from edgelstm.runtimes.device.golden import (
    GoldenCase,
    GoldenFile,
    compare_golden,
    read_golden,
    record_golden,
    tolerance_for,
    write_golden,
)
from edgelstm.runtimes.device.targets import resolve_target, runtime_for
from edgelstm.runtimes.ort.deploy import DeploymentConfig, read_deployment, write_deployment
from edgelstm.runtimes.ort.session_config import SessionConfig
from tests.conftest import CliRunner, assert_clean_failure

ORT_VERSION = "1.32.0"


def make_wheel(
    folder: Path, name: str, version: str, tag: str, requires: Sequence[str] = ()
) -> Path:
    """A minimal valid wheel: metadata only."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    extras = sorted({r.split("extra == ")[1].strip("'\"") for r in requires if "extra ==" in r})
    metadata += [f"Provides-Extra: {e}" for e in extras]
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", "\n".join(metadata) + "\n")
        wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local index: aarch64 and x86-64 onnxruntime for CPython 3.11 only, the pure-Python
    core dependencies, and the serve extra's packages."""
    folder = tmp_path_factory.mktemp("index")
    for machine in ("aarch64", "x86_64"):
        make_wheel(folder, "onnxruntime", ORT_VERSION, f"cp311-cp311-manylinux_2_28_{machine}")
    for name in ("numpy", "typer", "rich", "onnx", "protobuf", "orjson", "uvicorn",
                 "starlette", "websockets", "httptools", "uvloop", "pyarrow"):  # fmt: skip
        make_wheel(folder, name, "99.0", "py3-none-any")
    return folder


def _index_args(index: Path) -> list[str]:
    return ["--find-links", str(index), "--no-index"]


@pytest.fixture(scope="module")
def models(
    trained_classify: object, stream_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A sequence model, its INT8 (7-bit weights), the shared streaming model, and a
    streaming deployment config naming it."""
    from edgelstm.exporters import export
    from edgelstm.exporters.quantize import quantize

    folder = tmp_path_factory.mktemp("bundle-models")
    sequence = folder / "classify.onnx"
    export(trained_classify.out, sequence)  # type: ignore[attr-defined]
    int8 = folder / "classify.int8.onnx"
    quantize(sequence, int8, mode="dynamic-int8", reduce_range="on", ops="all")
    config = folder / "deploy.stream.json"
    write_deployment(
        DeploymentConfig(model=stream_model, mode="streaming", chunk=4,
                         session=SessionConfig(providers=("cpu",), intra_op_threads=1)),
        config,
    )  # fmt: skip
    return {"sequence": sequence, "int8": int8, "stream": stream_model, "config": config}


@pytest.fixture(scope="module")
def bundle(models: dict[str, Path], index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linux-aarch64 bundle with the serve extra, edgelstm's wheel built from this checkout."""
    from edgelstm.cli import main

    out = tmp_path_factory.mktemp("bundles") / "pi"
    code = main(["bundle", str(models["sequence"]), str(models["int8"]), str(models["config"]),
                 "--target", "linux-aarch64", "--extras", "serve", "--out", str(out),
                 *_index_args(index)])  # fmt: skip
    assert code == 0
    return out


# ------------------------------------------------------------------------------ contents


def test_bundle_holds_models_configs_golden_wheels_and_a_manifest_of_every_file(
    bundle: Path, models: dict[str, Path]
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema"] == "edgelstm.bundle/1"
    assert manifest["target"]["name"] == "linux-aarch64"
    assert manifest["target"]["python"] == "3.11"
    assert "manylinux_2_28_aarch64" in manifest["target"]["platforms"]
    assert "manylinux_2_29_aarch64" not in manifest["target"]["platforms"]
    assert manifest["runtime"] == {"distribution": "onnxruntime", "providers": ["cpu"],
                                   "source": "index"}  # fmt: skip
    assert manifest["install"] == ["edgelstm[cpu,serve]==0.1.0", f"onnxruntime=={ORT_VERSION}"]
    by_path = {m["path"]: m for m in manifest["models"]}
    assert set(by_path) == {"models/classify.onnx", "models/classify.int8.onnx",
                            f"models/{models['stream'].name}"}  # fmt: skip
    assert by_path["models/classify.int8.onnx"]["precision"] == "int8"
    assert by_path["models/classify.int8.onnx"]["reduce_range"] is True
    assert by_path[f"models/{models['stream'].name}"]["config"] == "deploy.stream.json"
    assert by_path[f"models/{models['stream'].name}"]["variant"] == "streaming"
    # Every file but the manifest is listed, with its real checksum; the models are copies.
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    for relative, digest in manifest["files"].items():
        assert file_sha256(bundle / relative) == digest, relative
    assert file_sha256(bundle / "models/classify.onnx") == file_sha256(models["sequence"])
    wheels = sorted(p.name for p in (bundle / "wheelhouse").iterdir())
    assert f"onnxruntime-{ORT_VERSION}-cp311-cp311-manylinux_2_28_aarch64.whl" in wheels
    assert not [w for w in wheels if "x86_64" in w]
    assert any(w.startswith("edgelstm-0.1.0-py3-none-any") for w in wheels)
    assert any(w.startswith("uvicorn-") for w in wheels)  # the serve extra came along
    for entry in manifest["models"]:
        assert (bundle / entry["golden"]).is_file()


def test_bundle_config_points_inside_the_bundle_and_install_script_is_filled(
    bundle: Path, models: dict[str, Path]
) -> None:
    config = read_deployment(bundle / "deploy.stream.json")
    assert config.model == (bundle / "models" / models["stream"].name).resolve() or (
        config.model.resolve() == (bundle / "models" / models["stream"].name).resolve()
    )
    assert json.loads((bundle / "deploy.stream.json").read_text())["model"] == (
        f"models/{models['stream'].name}"
    )
    script = (bundle / "install.sh").read_text()
    assert "@" not in script.replace("$@", "")  # every placeholder was filled
    assert '[ "$machine" = "aarch64" ]' in script
    assert "'edgelstm[cpu,serve]==0.1.0' onnxruntime==1.32.0" in script
    assert "--no-index --find-links" in script
    assert (bundle / "install.sh").stat().st_mode & 0o111
    readme = (bundle / "README.md").read_text()
    assert "linux-aarch64" in readme and "./install.sh" in readme
    assert "edgelstm run --config deploy.stream.json --stream" in readme
    assert "edgelstm serve models/" in readme  # serve extra + a streaming model


def test_bundle_as_tar_gz_unpacks_to_a_folder_that_verifies(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner
) -> None:
    out = tmp_path / "pi.tar.gz"
    result = cli("bundle", models["sequence"], "--out", out, *_index_args(index))
    assert result.code == 0, result.err
    with tarfile.open(out) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert "pi/manifest.json" in names and "pi/install.sh" in names
    assert not list(tmp_path.glob(".pi.tar.gz*"))
    verified = cli("verify", tmp_path / "unpacked" / "pi")
    assert verified.code == 0, verified.err
    assert verified.out.strip().splitlines()[-1].startswith("verified: 1 model(s)")


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--target", "linux-armv7l"], ["not supported", "32-bit ARM", "linux-aarch64"]),
        (["--target", "armhf"], ["not supported", "64-bit OS"]),
        (["--target", "solaris-sparc"], ["not a known target", "linux-aarch64"]),
        (["--python", "2.7"], ["--python 2.7", "3.10 to 3.14"]),
        (["--glibc", "2.5"], ["--glibc 2.5", "2.17 or newer"]),
        (["--extras", "train"], ["--extras train", "serve"]),
    ],
)
def test_bundle_refuses_targets_and_options_with_the_fix(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner,
    args: list[str], words: list[str],
) -> None:  # fmt: skip
    out = tmp_path / "b"
    result = cli("bundle", models["sequence"], "--out", out, *args, *_index_args(index))
    assert_clean_failure(result, out, *words)


def test_bundle_refuses_a_python_the_index_has_no_runtime_wheel_for(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner
) -> None:
    out = tmp_path / "b"
    result = cli("bundle", models["sequence"], "--python", "3.10", "--out", out,
                 *_index_args(index))  # fmt: skip
    assert_clean_failure(result, out, "no wheel of onnxruntime==1.32.0",
                         "CPython 3.10", "--python")  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "target", "words"),
    [
        ("cuda", "linux-aarch64", ["provider cuda", "linux-aarch64", "NVIDIA", "--wheel"]),
        ("openvino", "linux-aarch64", ["provider openvino", "Intel"]),
        ("coreml", "linux-x86_64", ["provider coreml", "--wheel"]),
    ],
)
def test_bundle_refuses_a_provider_the_target_cannot_have(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner,
    provider: str, target: str, words: list[str],
) -> None:  # fmt: skip
    config = tmp_path / "deploy.json"
    write_deployment(
        DeploymentConfig(model=models["sequence"], mode="sequence",
                         session=SessionConfig(providers=(provider,))),
        config,
    )  # fmt: skip
    out = tmp_path / "b"
    result = cli("bundle", config, "--target", target, "--out", out, *_index_args(index))
    assert_clean_failure(result, out, *words)


def test_runtime_choice_per_target() -> None:
    x86 = resolve_target("linux-x86_64")
    arm = resolve_target("arm64", python="3.12", glibc="2.36")
    assert arm.name == "linux-aarch64" and arm.abi == "cp312"
    assert runtime_for(["cuda", "cpu"], x86).distribution == "onnxruntime-gpu"
    assert runtime_for(["auto"], arm).extra == "cpu"
    assert runtime_for(["openvino:GPU"], x86).extra == "openvino"
    with pytest.raises(InvalidInputError, match="one install holds one"):
        runtime_for(["cuda", "openvino"], x86)
    jetson = runtime_for(["cuda"], arm, user_runtime="onnxruntime-gpu")
    assert jetson.extra is None and jetson.distribution == "onnxruntime-gpu"


def test_user_runtime_wheel_replaces_the_index_runtime(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner
) -> None:
    jetson = make_wheel(tmp_path / "nvidia", "onnxruntime_gpu", "1.23.0",
                        "cp311-cp311-linux_aarch64")  # fmt: skip
    config = tmp_path / "deploy.json"
    write_deployment(
        DeploymentConfig(model=models["sequence"], mode="sequence",
                         session=SessionConfig(providers=("cuda",))),
        config,
    )  # fmt: skip
    out = tmp_path / "jetson"
    result = cli("bundle", config, "--wheel", jetson, "--out", out, *_index_args(index))
    assert result.code == 0, result.err
    assert "taken on trust" in result.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runtime"]["distribution"] == "onnxruntime-gpu"
    assert manifest["runtime"]["source"] == "--wheel"
    assert manifest["install"] == ["edgelstm==0.1.0", "onnxruntime-gpu==1.23.0"]
    wheels = {p.name for p in (out / "wheelhouse").iterdir()}
    assert jetson.name in wheels
    assert not [w for w in wheels if w.startswith("onnxruntime-")]  # not the index's


def test_user_wheel_for_another_platform_is_refused(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner
) -> None:
    wrong = make_wheel(tmp_path / "w", "onnxruntime_gpu", "1.23.0", "cp311-cp311-win_amd64")
    out = tmp_path / "b"
    result = cli("bundle", models["sequence"], "--wheel", wrong, "--out", out,
                 *_index_args(index))  # fmt: skip
    assert_clean_failure(result, out, "win_amd64", "does not install on linux-aarch64")


def test_bundle_refuses_an_existing_out_and_a_missing_model(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner
) -> None:
    missing = cli("bundle", tmp_path / "nope.onnx", "--out", tmp_path / "b", *_index_args(index))
    assert_clean_failure(missing, tmp_path / "b", "nope.onnx", "does not exist")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = cli("bundle", models["sequence"], "--out", tmp_path / "taken", *_index_args(index))
    assert_clean_failure(taken, None, "--overwrite")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------ verify


def test_verify_passes_on_the_bundle_it_came_from(bundle: Path, cli: CliRunner) -> None:
    result = cli("verify", bundle)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0].split()[:4] == ["model", "case", "output", "rule"]
    assert lines[-1].startswith("verified: 3 model(s)")
    assert "files intact" in lines[-1]
    assert " int8 exact " in result.out and "MISMATCH" not in result.out
    as_json = cli("verify", bundle, "--json")
    report = json.loads(as_json.out)
    assert report["passed"] is True and report["files_checked"] > 0


def test_verify_exits_1_with_the_table_and_a_verdict_on_a_mismatch(
    bundle: Path, models: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    golden = read_golden(bundle / "golden" / "classify.golden.npz")
    case = golden.cases[0]
    off = {k: v + np.float32(1e-3) for k, v in case.expected.items()}  # 100x the FP32 bound
    cases = (GoldenCase(case.feeds, off), *golden.cases[1:])
    changed = GoldenFile(
        golden.model_sha256, golden.precision, golden.reduce_range, cases, golden.recorded
    )
    path = tmp_path / "changed.golden.npz"
    write_golden(changed, path)
    result = cli("verify", bundle / "models" / "classify.onnx", "--golden", path)
    assert result.code == 1
    assert "MISMATCH" in result.out  # the table row
    assert result.err_lines[-1].startswith("error: MISMATCH: 1 of 2 outputs beyond tolerance")
    assert "case 0 `logits`" in result.err_lines[-1]


def test_verify_names_a_damaged_file_and_a_golden_of_another_model(
    bundle: Path, models: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    model = copy / "models" / "classify.int8.onnx"
    model.write_bytes(model.read_bytes()[:-10])  # a truncated copy
    assert_clean_failure(cli("verify", copy), None, "classify.int8.onnx", "copy the bundle again")
    other = cli("verify", models["int8"], "--golden", bundle / "golden" / "classify.golden.npz")
    assert_clean_failure(other, None, "not the model the golden file was recorded with")
    assert_clean_failure(cli("verify", tmp_path), None, "not a bundle", "manifest.json")
    no_golden = cli("verify", models["sequence"])
    assert_clean_failure(no_golden, None, "no golden file", "--golden")


# ------------------------------------------------------------------------------ tolerances


def test_tolerance_rules_per_precision() -> None:
    assert tolerance_for("fp32").steps == 0 and tolerance_for("fp32").atol == 1e-5
    assert tolerance_for("int8").steps == 1 and tolerance_for("int8").atol == 1e-5
    assert tolerance_for("int8", exact_int8=True).steps == 0
    assert tolerance_for("fp16").atol == 1e-3
    gpu = tolerance_for("fp32", "cuda")
    assert gpu.atol > 1e-3 and "cuda" in gpu.rule


@pytest.mark.parametrize(
    ("reduce_range", "threads", "passes"),
    [(True, 1, False), (True, 2, True), (False, 1, True), (None, 1, True)],
)
def test_int8_outputs_may_differ_by_one_step_unless_they_must_be_exact(
    models: dict[str, Path], tmp_path: Path, reduce_range: bool | None, threads: int,
    passes: bool,
) -> None:  # fmt: skip
    """7-bit weights on the recorded thread count (one) compute the recorded outputs to
    float rounding; another thread count or 8-bit weights may land one step apart."""
    path = tmp_path / "g.npz"
    golden = record_golden(models["int8"], path)
    # Shift one element of every output by 0.9 of its quantization step: what a run that
    # rounds one step apart shows.
    cases = []
    for i, case in enumerate(golden.cases):
        shifted = {}
        for name, value in case.expected.items():
            moved = value.copy()
            moved.flat[0] += np.float32(0.9 * golden.step(i, name))
            shifted[name] = moved
        cases.append(GoldenCase(case.feeds, shifted))
    changed = GoldenFile(golden.model_sha256, "int8", reduce_range, tuple(cases), golden.recorded)
    config = SessionConfig(providers=("cpu",), intra_op_threads=threads)
    _, checks = compare_golden(models["int8"], changed, config=config)
    assert all(c.passed for c in checks) is passes
    two_steps = tuple(
        GoldenCase(
            c.feeds, {n: v + np.float32(2 * golden.step(i, n)) for n, v in c.expected.items()}
        )
        for i, c in enumerate(golden.cases)
    )
    beyond = GoldenFile(golden.model_sha256, "int8", False, two_steps, golden.recorded)
    _, far = compare_golden(models["int8"], beyond)
    assert not any(c.passed for c in far)  # two steps is more than a rounding apart


def test_bundle_refuses_8_bit_int8_golden_outputs_on_a_saturating_cpu(
    models: dict[str, Path], index: Path, tmp_path: Path, cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import dataclasses

    from edgelstm import hardware
    from edgelstm.exporters.quantize import quantize

    eight_bit = tmp_path / "classify.int8-8bit.onnx"
    quantize(models["sequence"], eight_bit, mode="dynamic-int8", reduce_range="off",
             ops="LSTM", max_degradation=None, allow_partial=True)  # fmt: skip
    avx2 = dataclasses.replace(hardware.cpu_info(), architecture="x86_64", flags_known=True,
                               avx512_vnni=False, avx_vnni=False)  # fmt: skip
    monkeypatch.setattr(hardware, "cpu_info", lambda: avx2)
    out = tmp_path / "b"
    result = cli("bundle", eight_bit, "--out", out, *_index_args(index))
    assert_clean_failure(result, out, "8-bit INT8 weights", "--reduce-range on", "VNNI")
    arm = dataclasses.replace(avx2, architecture="aarch64")
    monkeypatch.setattr(hardware, "cpu_info", lambda: arm)
    assert cli("bundle", eight_bit, "--out", out, *_index_args(index)).code == 0


def test_golden_streaming_cases_chain_the_recorded_state(
    models: dict[str, Path], tmp_path: Path
) -> None:
    golden = record_golden(models["stream"], tmp_path / "s.npz", seed=3)
    assert len(golden.cases) == 3
    for before, after in zip(golden.cases, golden.cases[1:], strict=False):
        for name, value in after.feeds.items():
            if name != "x":
                np.testing.assert_array_equal(value, before.expected[f"{name}_out"])
    first = golden.cases[0].feeds
    assert all(not np.any(v) for n, v in first.items() if n != "x")  # zero state to start
    again = read_golden(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.cases[2].feeds["x"], golden.cases[2].feeds["x"])
    assert again.recorded["seed"] == 3


def test_install_script_refuses_another_cpu_before_touching_anything(bundle: Path) -> None:
    import platform
    import subprocess
    import sys

    venv = bundle.parent / "venv-never"
    done = subprocess.run(
        ["sh", str(bundle / "install.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "VENV": str(venv)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        "error: this bundle is for aarch64, but "
        f"{sys.executable} runs on {platform.machine()}; build one for it with: edgelstm "
        f"bundle ... --target linux-{platform.machine()}"
    ]
    assert not venv.exists()
