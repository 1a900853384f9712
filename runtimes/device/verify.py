"""``edgelstm verify``: does this machine reproduce the outputs a bundle was built with?

Run on the device after install (``install.sh`` runs it last). For a bundle folder it checks
every file against the manifest's sha256 (a truncated copy shows here, naming the file),
then runs each model's golden inputs on the provider its deployment names (the CPU without
one) and holds each output to the tolerance of the model's precision
(:func:`edgelstm.runtimes.device.golden.tolerance_for`). For a single model it does the
second part with ``--golden`` (default: ``MODEL.golden.npz`` beside it).

Example::

    >>> report = verify_bundle_or_model(Path("pi-bundle"))  # doctest: +SKIP
    >>> report.passed, report.verdict()  # doctest: +SKIP
    (True, 'verified: 4 models, 38 outputs within tolerance on cpu (aarch64, onnxruntime 1.32.0)')
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import file_sha256, read_json
from edgelstm.runtimes.device.bundle import BUNDLE_SCHEMA, MANIFEST
from edgelstm.runtimes.device.golden import OutputCheck, compare_golden, read_golden
from edgelstm.runtimes.ort.deploy import read_deployment
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = ["VerifyReport", "verify_bundle_or_model"]

#: Bundle files verify does not re-check: the wheelhouse is spent once installed (pip checks
#: each wheel's own RECORD while installing), and a user may delete it to save space.
_SPENT = "wheelhouse/"


@dataclass(frozen=True)
class VerifyReport:
    """Every output checked, the files checked, and where it ran."""

    checks: tuple[OutputCheck, ...]
    providers: tuple[str, ...]
    files_checked: int = 0
    models: int = 0
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every output is within its tolerance."""
        return all(c.passed for c in self.checks)

    def verdict(self) -> str:
        """One line: ``verified: ...`` or ``MISMATCH: ...`` with the worst output."""
        where = (
            f"on {','.join(self.providers)} ({self.environment.get('machine', '?')}, "
            f"onnxruntime {self.environment.get('onnxruntime', '?')})"
        )
        files = f", {self.files_checked} files intact" if self.files_checked else ""
        if self.passed:
            return (
                f"verified: {self.models} model(s), {len(self.checks)} outputs within "
                f"tolerance {where}{files}"
            )
        failed = [c for c in self.checks if not c.passed]
        worst = max(failed, key=lambda c: c.max_abs_diff - c.allowed)
        return (
            f"MISMATCH: {len(failed)} of {len(self.checks)} outputs beyond tolerance {where}; "
            f"worst: {worst.model} case {worst.case} `{worst.output}` max |diff| "
            f"{worst.max_abs_diff:.3g} > {worst.allowed:.3g} ({worst.tolerance}). This device "
            "does not reproduce the outputs the bundle was built with: check the onnxruntime "
            "version installed, or re-bundle"
        )

    def table(self) -> str:
        """The checks as aligned text columns, one row per output."""
        header = ("model", "case", "output", "rule", "max |diff|", "allowed", "result")
        rows = [
            (c.model, str(c.case), c.output, c.tolerance.split(":")[0], f"{c.max_abs_diff:.3g}",
             f"{c.allowed:.3g}", "ok" if c.passed else "MISMATCH")
            for c in self.checks
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "schema": "edgelstm.verify/1",
            "passed": self.passed,
            "verdict": self.verdict(),
            "providers": list(self.providers),
            "files_checked": self.files_checked,
            "environment": self.environment,
            "checks": [c.to_json() for c in self.checks],
        }


def _environment() -> dict[str, str]:
    from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime

    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": str(import_onnxruntime().__version__),
    }


def _check_files(root: Path, files: dict[str, str]) -> int:
    checked = 0
    for relative, digest in files.items():
        if relative.startswith(_SPENT):
            continue
        path = root / relative
        if not path.is_file():
            raise InvalidInputError(f"{path} is missing from the bundle; copy the bundle again")
        if file_sha256(path) != digest:
            raise InvalidInputError(
                f"{path} differs from the bundle's manifest (sha256); the copy is damaged: "
                "copy the bundle again"
            )
        checked += 1
    return checked


def _session(
    base: SessionConfig | None, provider: str | None, graph_optimization: str | None
) -> SessionConfig:
    """The deployment's session settings (one thread without one), with what was asked on
    top: verify runs what will run, unless told otherwise."""
    config = base or SessionConfig(providers=("cpu",), intra_op_threads=1)
    if provider is not None:
        config = dataclasses.replace(config, providers=(provider,), fallback=False)
    if graph_optimization is not None:
        config = dataclasses.replace(config, graph_optimization=graph_optimization)
    return config


def _verify_bundle(
    root: Path, provider: str | None, graph_optimization: str | None
) -> VerifyReport:
    manifest = read_json(root / MANIFEST, what="bundle manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != BUNDLE_SCHEMA:
        raise InvalidInputError(f"{root / MANIFEST} is not an edgelstm bundle manifest")
    files = _check_files(root, dict(manifest.get("files", {})))
    checks: list[OutputCheck] = []
    used: list[str] = []
    for model in manifest.get("models", []):
        config = model.get("config")
        base = read_deployment(root / config).session if config else None
        opened, found = compare_golden(
            root / model["path"], read_golden(root / model["golden"]),
            config=_session(base, provider, graph_optimization), label=model["path"],
        )  # fmt: skip
        used.append(opened.provider)
        checks += found
    return VerifyReport(
        tuple(checks), tuple(dict.fromkeys(used)), files, len(manifest.get("models", [])),
        _environment(),
    )  # fmt: skip


def verify_bundle_or_model(
    path: Path | str,
    *,
    golden: Path | str | None = None,
    provider: str | None = None,
    graph_optimization: str | None = None,
) -> VerifyReport:
    """Verify a bundle folder, or one model against its golden file (see the module doc).

    Each model runs with its deployment's session settings (the CPU, one thread, all graph
    optimizations without one); ``provider`` and ``graph_optimization`` override them. Bad
    input (not a bundle, a damaged file, a golden file of another model) raises
    :class:`~edgelstm.errors.InvalidInputError`; a mismatch is in the report, for the caller
    to print before it fails.
    """
    path = Path(path)
    if path.is_dir():
        if golden is not None:
            raise InvalidInputError("--golden applies to a single MODEL.onnx; a bundle has its own")
        if not (path / MANIFEST).is_file():
            raise InvalidInputError(
                f"{path} is not a bundle (no {MANIFEST}); give a folder `edgelstm bundle` wrote, "
                "or MODEL.onnx --golden GOLDEN.npz"
            )
        return _verify_bundle(path, provider, graph_optimization)
    if path.name.endswith((".tar.gz", ".tgz")):
        raise InvalidInputError(
            f"{path} is an archive: unpack it first (tar xzf {path.name}) and verify the folder"
        )
    golden_path = Path(golden) if golden is not None else path.with_suffix(".golden.npz")
    if golden is None and not golden_path.is_file():
        raise InvalidInputError(
            f"no golden file for {path}: give --golden GOLDEN.npz (`edgelstm bundle` writes one "
            "per model under golden/)"
        )
    opened, checks = compare_golden(
        path, read_golden(golden_path), config=_session(None, provider, graph_optimization)
    )
    return VerifyReport(tuple(checks), (opened.provider,), 0, 1, _environment())
