"""``edgelstm providers``: the execution providers here, and whether each really runs
(:mod:`edgelstm.runtimes.ort.provider_report`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def providers(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    probe: Annotated[
        bool,
        typer.Option(help="Start a tiny session on each provider to prove it really runs."),
    ] = False,
) -> None:
    """List ONNX Runtime execution providers, what `auto` picks, and the CPU/GPU they run on."""
    from edgelstm.cli.console import stdout_console
    from edgelstm.runtimes.ort.provider_report import print_provider_report, provider_report

    report = provider_report(probe=probe)
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_provider_report(report, stdout_console())
