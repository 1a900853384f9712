"""``edgelstm bundle`` and ``edgelstm verify``: take models to a device with no network, and
check there that it reproduces their outputs (:mod:`edgelstm.runtimes.device`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgelstm.cli.app import print_notes
from edgelstm.cli.inference import GraphOptimizationChoice
from edgelstm.errors import CheckFailedError

_Sources = Annotated[
    list[Path],
    typer.Argument(
        help="Models (.onnx) and deployment configs (deploy.json) to carry.", show_default=False
    ),
]
_Out = Annotated[
    Path,
    typer.Option(help="Bundle folder, or FILE.tar.gz for one archive.", show_default=False),
]
_Target = Annotated[str, typer.Option(help="Device platform: linux-aarch64 or linux-x86_64.")]
_Python = Annotated[str, typer.Option(help="The device's Python (python3 --version), X.Y.")]
_Glibc = Annotated[str, typer.Option(help="The device's glibc (ldd --version), 2.N.")]
_Extras = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        "--extras",
        help="Also install: serve, parquet (repeat or comma-separate).",
        show_default=False,
    ),
]
_Wheels = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--wheel",
        help="Your own wheel (NVIDIA's Jetson onnxruntime-gpu replaces the index's runtime).",
        show_default=False,
    ),
]
_FindLinks = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option("--find-links", help="Folder of wheels pip looks in too.", show_default=False),
]
_NoIndex = Annotated[
    bool, typer.Option("--no-index", help="Only --find-links folders, no package index.")
]
_Constraints = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="pip constraints file pinning versions.", show_default=False),
]
_Overwrite = Annotated[bool, typer.Option(help="Replace an existing --out.")]


def bundle(
    sources: _Sources,
    out: _Out,
    target: _Target = "linux-aarch64",
    python: _Python = "3.11",
    glibc: _Glibc = "2.28",
    extras: _Extras = None,
    wheels: _Wheels = None,
    find_links: _FindLinks = None,
    no_index: _NoIndex = False,
    constraints: _Constraints = None,
    overwrite: _Overwrite = False,
) -> None:
    """Pack models, configs, wheels, install.sh and golden outputs to install offline."""
    from edgelstm.cli.console import stderr_console
    from edgelstm.runtimes.device import BundleOptions, PackageIndex, build_bundle

    options = BundleOptions(
        target=target,
        python=python,
        glibc=glibc,
        extras=tuple(e.strip() for item in extras or () for e in item.split(",") if e.strip()),
        wheels=tuple(wheels or ()),
        index=PackageIndex(tuple(find_links or ()), no_index, constraints),
        overwrite=overwrite,
    )
    console = stderr_console()
    # Progress only for a person watching: a refusal found late (no wheel for the device's
    # Python) must still be the one line a script reads on stderr.
    progress = (lambda line: console.print(line)) if sys.stderr.isatty() else None
    result = build_bundle(sources, out, options, progress=progress)
    print_notes(console, result.notes)
    manifest = result.manifest
    wheels_count = sum(1 for name in manifest["files"] if name.startswith("wheelhouse/"))
    typer.echo(
        f"wrote {result.path}: {len(manifest['models'])} model(s), {wheels_count} wheels for "
        f"{manifest['target']['name']} (CPython {manifest['target']['python']}); on the "
        "device: ./install.sh, then edgelstm verify"
    )


_Path = Annotated[Path, typer.Argument(help="Bundle folder, or MODEL.onnx.", show_default=False)]
_Golden = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        help="Golden file for a single model (default: MODEL.golden.npz).", show_default=False
    ),
]
_Provider = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="Provider to verify on (default: each deployment's, else cpu).", show_default=False
    ),
]
_GraphOptimization = Annotated[
    Optional[GraphOptimizationChoice],  # noqa: UP045
    typer.Option(
        help="Graph optimization level (default: each deployment's, else all).", show_default=False
    ),
]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def verify(
    path: _Path,
    golden: _Golden = None,
    provider: _Provider = None,
    graph_optimization: _GraphOptimization = None,
    json_output: _Json = False,
) -> None:
    """Check this machine reproduces a bundle's golden outputs; exit 1 if not."""
    from edgelstm.runtimes.device import verify_bundle_or_model

    level = graph_optimization.value if graph_optimization is not None else None
    report = verify_bundle_or_model(
        path, golden=golden, provider=provider, graph_optimization=level
    )
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
        if not report.passed:
            raise typer.Exit(1)
        return
    typer.echo(report.table())
    if not report.passed:
        raise CheckFailedError(report.verdict())
    typer.echo(report.verdict())
