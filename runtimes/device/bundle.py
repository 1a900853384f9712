"""``edgelstm bundle``: one folder (or ``.tar.gz``) that installs and checks itself on a device
with no network.

Layout::

    BUNDLE/
      manifest.json        schema edgelstm.bundle/1: target, runtime, models, every file's sha256
      install.sh           a venv, then pip install --no-index from wheelhouse/, then verify
      README.md            for the person at the device: copy, install, verify, run, serve
      deploy.json ...      the deployment configs given, their model paths inside models/
      models/              the .onnx files (and external weights)
      golden/              NAME.golden.npz: sample inputs and this machine's outputs
      wheelhouse/          edgelstm and every dependency, for the target's platform and Python

The cheap checks (targets, providers, models, wheels given) come first, the downloads last,
and the whole folder is written next to ``out`` and moved into place only when complete.

Example::

    >>> build_bundle([Path("deploy.json")], Path("pi-bundle"),
    ...              BundleOptions(target="linux-aarch64"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import atomic_file, atomic_folder, check_output_path, file_sha256
from edgelstm.runtimes.device.device_readme import device_readme
from edgelstm.runtimes.device.golden import record_golden
from edgelstm.runtimes.device.targets import (
    DeviceRuntime,
    DeviceTarget,
    resolve_target,
    runtime_for,
)
from edgelstm.runtimes.device.wheelhouse import (
    BUNDLE_EXTRAS,
    PackageIndex,
    UserWheel,
    fill_wheelhouse,
    read_user_wheels,
)
from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.deploy import DeploymentConfig, read_deployment, write_deployment
from edgelstm.version import __version__

__all__ = [
    "BUNDLE_SCHEMA",
    "MANIFEST",
    "BundleOptions",
    "BundleResult",
    "build_bundle",
]

BUNDLE_SCHEMA = "edgelstm.bundle/1"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BundleOptions:
    """What the device is and what it installs besides the runtime.

    ``python`` and ``glibc`` are the device's (``python3 --version``, ``ldd --version``);
    ``extras`` adds ``serve`` or ``parquet``; ``wheels`` are the user's own wheels (an
    onnxruntime build such as NVIDIA's for Jetson replaces the index's).
    """

    target: str = "linux-aarch64"
    python: str = "3.11"
    glibc: str = "2.28"
    extras: tuple[str, ...] = ()
    wheels: tuple[Path, ...] = ()
    index: PackageIndex = field(default_factory=PackageIndex)
    seed: int = 0
    overwrite: bool = False


@dataclass(frozen=True)
class BundleResult:
    """The bundle written: where, its manifest, and notes worth printing."""

    path: Path
    manifest: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Model:
    source: Path
    name: str  # file name inside models/
    artifact: Artifact
    external: tuple[str, ...]  # external weight files, relative to the model's folder


@dataclass(frozen=True)
class _Plan:
    target: DeviceTarget
    runtime: DeviceRuntime
    extras: tuple[str, ...]
    wheels: tuple[UserWheel, ...]
    models: tuple[_Model, ...]
    configs: tuple[tuple[str, DeploymentConfig], ...]


def _external_files(artifact: Artifact) -> tuple[str, ...]:
    files = []
    for tensor in artifact.proto.graph.initializer:
        if tensor.data_location == 1:  # TensorProto.EXTERNAL
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location:
                files.append(location)
    return tuple(dict.fromkeys(files))


def _add_model(models: dict[Path, _Model], path: Path) -> _Model:
    resolved = path.resolve()
    if resolved in models:
        return models[resolved]
    artifact = load_artifact(path)  # refuses a damaged or changed model, naming it
    clash = next((m for m in models.values() if m.name == path.name), None)
    if clash is not None:
        raise InvalidInputError(
            f"two models are named {path.name} ({clash.source} and {path}); rename one"
        )
    models[resolved] = _Model(path, path.name, artifact, _external_files(artifact))
    return models[resolved]


def _refuse_saturated_golden(models: Iterable[_Model]) -> None:
    """8-bit INT8 weights saturate on x86 without VNNI: golden outputs recorded here would
    be this CPU's error, which the device (ARM, VNNI) does not make (measured 7 to 130
    quantization steps apart), so verify would fail a correct device."""
    from edgelstm.hardware import cpu_info

    saturated = [m for m in models if m.artifact.profile.precision == "int8"
                 and m.artifact.profile.reduce_range is False]  # fmt: skip
    if saturated and cpu_info().reduce_range_advised:
        raise InvalidInputError(
            f"{saturated[0].source} has 8-bit INT8 weights (--reduce-range off), which this "
            "CPU (x86 without VNNI) saturates: its golden outputs would be wrong for the "
            "device; quantize with --reduce-range on, or build the bundle on a CPU with VNNI "
            "or on ARM"
        )


def _plan(sources: Sequence[Path], options: BundleOptions) -> _Plan:
    target = resolve_target(options.target, python=options.python, glibc=options.glibc)
    unknown = sorted(set(options.extras) - set(BUNDLE_EXTRAS))
    if unknown:
        raise InvalidInputError(
            f"--extras {','.join(unknown)}: a bundle can add {' and '.join(BUNDLE_EXTRAS)}"
        )
    if not sources:
        raise InvalidInputError("give at least one MODEL.onnx or deploy.json to bundle")
    wheels = read_user_wheels(options.wheels, target)
    models: dict[Path, _Model] = {}
    configs: list[tuple[str, DeploymentConfig]] = []
    for source in sources:
        if source.suffix == ".json":
            config = read_deployment(source)
            model = _add_model(models, config.model)
            if any(name == source.name for name, _ in configs):
                raise InvalidInputError(f"two deployment configs are named {source.name}")
            configs.append((source.name, dataclasses.replace(config, model=Path(model.name))))
        elif source.suffix == ".onnx" or source.is_file():
            _add_model(models, source)
        else:
            raise InvalidInputError(f"{source} does not exist; give MODEL.onnx or deploy.json")
    _refuse_saturated_golden(models.values())
    providers = [p for _, c in configs for p in c.session.providers[:1]] or ["cpu"]
    user_runtime = next((w.distribution for w in wheels if w.is_runtime), None)
    runtime = runtime_for(providers, target, user_runtime=user_runtime)
    return _Plan(
        target, runtime, tuple(dict.fromkeys(options.extras)), wheels, tuple(models.values()),
        tuple(configs),
    )  # fmt: skip


def _copy_models(plan: _Plan, root: Path) -> None:
    folder = root / "models"
    folder.mkdir()
    for model in plan.models:
        shutil.copyfile(model.source, folder / model.name)
        for relative in model.external:
            source = model.source.parent / relative
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / relative)
    for name, config in plan.configs:
        placed = dataclasses.replace(config, model=root / "models" / config.model)
        write_deployment(placed, root / name)


def _install_script(plan: _Plan, requirements: Sequence[str]) -> str:
    template = importlib.resources.files("edgelstm.runtimes.device").joinpath("install.sh")
    text = template.read_text(encoding="utf-8")
    values = {
        "@MACHINE@": plan.target.machine,
        "@PYTHON@": plan.target.python,
        "@REQUIREMENTS@": " ".join(shlex.quote(r) for r in requirements),
        "@VERSION@": __version__,
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _manifest(plan: _Plan, root: Path, requirements: Sequence[str]) -> dict[str, Any]:
    models = [
        {
            "path": f"models/{m.name}",
            "precision": m.artifact.profile.precision,
            "reduce_range": m.artifact.profile.reduce_range,
            "variant": m.artifact.metadata.variant if m.artifact.metadata else None,
            "task": m.artifact.metadata.task if m.artifact.metadata else None,
            "golden": f"golden/{Path(m.name).stem}.golden.npz",
            "config": next((n for n, c in plan.configs if c.model.name == m.name), None),
        }
        for m in plan.models
    ]
    files = {
        p.relative_to(root).as_posix(): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    return {
        "schema": BUNDLE_SCHEMA,
        "edgelstm": __version__,
        "target": plan.target.to_json(),
        "runtime": {
            "distribution": plan.runtime.distribution,
            "providers": list(plan.runtime.providers),
            "source": "index" if plan.runtime.extra else "--wheel",
        },
        "extras": list(plan.extras),
        "install": list(requirements),
        "models": models,
        "configs": [name for name, _ in plan.configs],
        "files": files,
    }


def _fill(
    plan: _Plan, root: Path, options: BundleOptions, say: Callable[[str], None]
) -> dict[str, Any]:
    say(f"models: {len(plan.models)}, configs: {len(plan.configs)}")
    _copy_models(plan, root)
    (root / "golden").mkdir()
    for model in plan.models:
        say(f"golden outputs: {model.name}")
        record_golden(
            root / "models" / model.name,
            root / "golden" / f"{Path(model.name).stem}.golden.npz",
            seed=options.seed,
        )
    say(f"wheels for {plan.target.describe()} (pip download)")
    _, requirements = fill_wheelhouse(
        root / "wheelhouse", plan.target, plan.runtime, plan.extras, plan.wheels, options.index
    )
    script = root / "install.sh"
    script.write_text(_install_script(plan, requirements), encoding="utf-8")
    (root / "README.md").write_text(_readme(plan), encoding="utf-8")
    manifest = _manifest(plan, root, requirements)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _readable(root)
    return manifest


def _readable(root: Path) -> None:
    """Folders 0755 and files 0644 (install.sh 0755): the temporary files a bundle is built
    from are private to this user, but whoever installs it on the device is someone else."""
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() or path.name == "install.sh" else 0o644)


def _readme(plan: _Plan) -> str:
    models = [
        (m.name, m.artifact.profile.precision,
         m.artifact.metadata.variant if m.artifact.metadata else None)
        for m in plan.models
    ]  # fmt: skip
    configs = [(name, c.mode) for name, c in plan.configs]
    return device_readme(plan.target, plan.runtime, plan.extras, models, configs)


def build_bundle(
    sources: Sequence[Path | str],
    out: Path | str,
    options: BundleOptions | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> BundleResult:
    """Write a bundle of ``sources`` (models and deployment configs) for ``options.target``
    to ``out``: a folder, or a ``.tar.gz`` when ``out`` ends so. Nothing is left at ``out``
    when a step fails."""
    options = options or BundleOptions()
    say = progress or (lambda _: None)
    out = Path(out)
    plan = _plan([Path(s) for s in sources], options)
    notes = [f"{name}: deployment on {c.session.providers[0]} taken on trust from "
             f"{next(w.path.name for w in plan.wheels if w.is_runtime)}"
             for name, c in plan.configs
             if plan.runtime.extra is None and c.session.providers[0] != "cpu"]  # fmt: skip
    if out.name.endswith((".tar.gz", ".tgz")):
        check_output_path(out, overwrite=options.overwrite, kind="file")
        stem = out.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
            root = Path(tmp) / stem
            root.mkdir()
            manifest = _fill(plan, root, options, say)
            with (
                atomic_file(out, overwrite=options.overwrite) as archive,
                tarfile.open(archive, "w:gz") as tar,
            ):
                tar.add(root, arcname=stem)
    else:
        with atomic_folder(out, overwrite=options.overwrite) as root:
            manifest = _fill(plan, root, options, say)
    return BundleResult(out, manifest, tuple(notes))
