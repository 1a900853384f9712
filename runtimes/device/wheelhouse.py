"""The bundle's wheelhouse: every wheel the device install needs, fetched for the device's
platform and Python from this machine, so the device installs with no network.

pip does the fetching (``pip download --platform ... --python-version ... --only-binary
:all:``): it resolves the dependency tree for the target, not for this machine. edgelstm's
own wheel comes from, in order: a ``--wheel edgelstm-*.whl`` the user gave, a build of the
source checkout this edgelstm runs from, or the package index (``edgelstm==<version>``).
The onnxruntime pinned is the one installed here, which recorded the golden outputs.

Example::

    >>> wheels = fill_wheelhouse(Path("bundle/wheelhouse"), target, runtime, ())  # doctest: +SKIP
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.device.targets import DeviceRuntime, DeviceTarget
from edgelstm.version import __version__

__all__ = ["PackageIndex", "UserWheel", "fill_wheelhouse", "read_user_wheels"]

#: Extras a bundle may add to the runtime: the server and Parquet batch files.
BUNDLE_EXTRAS = ("serve", "parquet")


@dataclass(frozen=True)
class PackageIndex:
    """Where pip looks: the default index, plus local folders of wheels; ``no_index`` keeps
    it to those folders (an air-gapped workstation with a mirror on disk). ``constraints``
    is a pip constraints file pinning versions for reproducible bundles."""

    find_links: tuple[Path, ...] = ()
    no_index: bool = False
    constraints: Path | None = None

    def pip_args(self) -> list[str]:
        """The pip options that say so."""
        args = [f"--find-links={p}" for p in self.find_links]
        if self.no_index:
            args.append("--no-index")
        if self.constraints is not None:
            args.append(f"--constraint={self.constraints}")
        return args


@dataclass(frozen=True)
class UserWheel:
    """A wheel given with ``--wheel``: its file, distribution name (normalised) and tags."""

    path: Path
    distribution: str
    version: str
    platform: str

    @property
    def is_runtime(self) -> bool:
        """True for an onnxruntime build (``onnxruntime``, ``onnxruntime-gpu``, ...)."""
        return self.distribution.startswith("onnxruntime")


_WHEEL_NAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_user_wheels(paths: Sequence[Path], target: DeviceTarget) -> tuple[UserWheel, ...]:
    """Check each ``--wheel`` exists, is a wheel, and installs on ``target``."""
    wheels = []
    for path in paths:
        match = _WHEEL_NAME.match(path.name)
        if not path.is_file() or match is None:
            raise InvalidInputError(
                f"--wheel {path}: {'not a wheel file name' if path.is_file() else 'no such file'}"
                " (give a .whl, such as onnxruntime_gpu-1.23.0-cp310-cp310-linux_aarch64.whl)"
            )
        platforms = match["plat"].split(".")
        if "any" not in platforms and not set(platforms) & set(target.platform_tags()):
            raise InvalidInputError(
                f"--wheel {path}: built for {match['plat']}, which does not install on "
                f"{target.describe()}; use a wheel for {target.machine}"
            )
        abis = {*match["py"].split("."), *match["abi"].split(".")}
        if not abis & {target.abi, "abi3", "none", "py3", "py2.py3"}:
            raise InvalidInputError(
                f"--wheel {path}: built for {match['py']}, not CPython {target.python}; use "
                f"a wheel for {target.abi} or pass --python to match the device"
            )
        wheels.append(UserWheel(path, _normalise(match["name"]), match["version"], match["plat"]))
    runtimes = [w for w in wheels if w.is_runtime]
    if len(runtimes) > 1:
        raise InvalidInputError(
            "--wheel: more than one onnxruntime build given "
            f"({', '.join(w.path.name for w in runtimes)}); one install holds one"
        )
    return tuple(wheels)


def _pip(args: list[str], *, what: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InvalidInputError(f"cannot run pip to {what} ({exc})") from None


def _source_checkout() -> Path | None:
    """The folder of the source checkout this edgelstm runs from, if it runs from one."""
    import edgelstm

    root = Path(edgelstm.__file__).resolve().parent.parent
    project = root / "pyproject.toml"
    if project.is_file() and re.search(r'(?m)^name\s*=\s*"edgelstm"', project.read_text()):
        return root
    return None


def _edgelstm_wheel(dest: Path, user: Sequence[UserWheel], index: PackageIndex) -> Path:
    own = next((w for w in user if w.distribution == "edgelstm"), None)
    if own is not None:
        return own.path
    source = _source_checkout()
    with tempfile.TemporaryDirectory(prefix="edgelstm-wheel-") as tmp:
        if source is not None:
            args = ["wheel", "--no-deps", "--quiet", "--wheel-dir", tmp, str(source)]
            if _has_setuptools():
                args.insert(1, "--no-build-isolation")  # no download, no network needed
            done = _pip(args, what="build edgelstm's wheel")
        else:
            done = _pip(
                ["download", "--no-deps", "--only-binary=:all:", "--dest", tmp,
                 *index.pip_args(), f"edgelstm=={__version__}"],
                what="fetch edgelstm's wheel",
            )  # fmt: skip
        built = sorted(Path(tmp).glob("edgelstm-*.whl"))
        if done.returncode != 0 or not built:
            raise InvalidInputError(
                f"could not {'build' if source else 'fetch'} edgelstm {__version__}'s wheel: "
                f"{_pip_error(done.stderr)}; or pass one with --wheel edgelstm-*.whl"
            )
        final = dest / built[0].name
        shutil.copyfile(built[0], final)
        return final


def _has_setuptools() -> bool:
    try:
        return int(metadata.version("setuptools").split(".")[0]) >= 77
    except (metadata.PackageNotFoundError, ValueError):
        return False


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


_NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement (?P<req>\S+) "
    r"\(from versions: (?P<versions>[^)]*)\)"
)


def _pip_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR:")]
    return (errors or lines or ["pip failed without a message"])[0]


def _no_wheels_message(stderr: str, target: DeviceTarget) -> str | None:
    """A refusal naming the package with no wheel for the target, and what the index has."""
    match = _NO_VERSION.search(stderr)
    if match is None:
        return None
    versions = [v.strip() for v in match["versions"].split(",") if v.strip()]
    there = (
        f"the index has {versions[0]} to {versions[-1]} for it"
        if versions and versions != ["none"]
        else "the index has no wheel of it for this target"
    )
    return (
        f"no wheel of {match['req']} for {target.describe()}: {there}. Check the device's "
        "'python3 --version' and 'ldd --version' and pass them as --python and --glibc; "
        "onnxruntime wheels need glibc >= 2.28 and a recent CPython; or pass the package's "
        "wheel with --wheel PATH"
    )


def _requirements(
    edgelstm_wheel: Path, runtime: DeviceRuntime, extras: Sequence[str],
    user: Sequence[UserWheel],
) -> tuple[list[str], list[str]]:  # fmt: skip
    """(what pip fetches here, what the device installs from the wheelhouse)."""
    wanted = ",".join(e for e in (runtime.extra, *extras) if e)
    version = _wheel_version(edgelstm_wheel)
    fetch = [f"{edgelstm_wheel}[{wanted}]" if wanted else str(edgelstm_wheel)]
    install = [f"edgelstm[{wanted}]=={version}" if wanted else f"edgelstm=={version}"]
    local = _installed_version(runtime.distribution) if runtime.extra is not None else None
    if local is not None:  # the version that recorded the golden outputs
        fetch.append(f"{runtime.distribution}=={local}")
        install.append(f"{runtime.distribution}=={local}")
    for wheel in user:
        if wheel.distribution != "edgelstm":
            fetch.append(str(wheel.path))
            install.append(f"{wheel.distribution}=={wheel.version}")
    return fetch, install


def fill_wheelhouse(
    dest: Path,
    target: DeviceTarget,
    runtime: DeviceRuntime,
    extras: Sequence[str],
    user: Sequence[UserWheel] = (),
    index: PackageIndex | None = None,
) -> tuple[list[Path], list[str]]:
    """Fetch edgelstm (with ``runtime``'s extra and ``extras``) and every dependency as
    wheels for ``target`` into ``dest``; returns the wheels and the requirements the device
    installs from them (``install.sh``'s arguments)."""
    index = index or PackageIndex()
    dest.mkdir(parents=True, exist_ok=True)
    own = _edgelstm_wheel(dest, user, index)
    fetch, install = _requirements(own, runtime, extras, user)
    platforms = [f"--platform={tag}" for tag in target.platform_tags()]
    done = _pip(
        ["download", "--dest", str(dest), "--only-binary=:all:", "--progress-bar=off",
         f"--python-version={target.python}", "--implementation=cp", f"--abi={target.abi}",
         *platforms, *index.pip_args(), *fetch],
        what="fetch the device's wheels",
    )  # fmt: skip
    if done.returncode != 0:
        raise InvalidInputError(
            _no_wheels_message(done.stderr, target)
            or f"pip could not fetch the wheels for {target.describe()}: {_pip_error(done.stderr)}"
        )
    for wheel in user:  # pip leaves a local file where it is
        if not (dest / wheel.path.name).exists():
            shutil.copyfile(wheel.path, dest / wheel.path.name)
    return sorted(dest.glob("*.whl")), install


def _wheel_version(wheel: Path) -> str:
    match = _WHEEL_NAME.match(wheel.name)
    return match["version"] if match else __version__
