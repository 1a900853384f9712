"""``python -m edgelstm.benchmarks.suites.serve_load``: every protocol x stream count x server
variant as one point (a fresh server each), then the report in JSON and Markdown."""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option, suite_environment
from edgelstm.benchmarks.suites.serve_load.clients import drive, run_async
from edgelstm.benchmarks.suites.serve_load.plan import LoadPlan, encode_blocks, frame_pool
from edgelstm.benchmarks.suites.serve_load.report import (
    COMMAND,
    SCHEMA,
    ServerReadings,
    failures,
    point_record,
    summarise,
    to_markdown,
)
from edgelstm.benchmarks.suites.serve_load.rows_check import correctness
from edgelstm.benchmarks.suites.serve_load.server import recover, start_server, stop_server

if TYPE_CHECKING:
    from edgelstm.metadata import ModelMetadata

__all__ = ["main", "run_point"]

DEFAULT_SWEEP = (100, 250, 500, 750, 1000)
#: ``edgelstm serve`` flags the harness forwards when given.
SERVER_FLAGS = ("--max-streams", "--max-batch", "--max-delay-ms", "--idle-timeout",
                "--max-frames", "--provider", "--threads", "--workers")  # fmt: skip


def run_point(
    model: Path, plan: LoadPlan, flags: Sequence[str], pool: np.ndarray, variant: str, work: Path
) -> dict[str, Any]:
    """One server, one load: the row the report shows for it."""
    messages = encode_blocks(pool, plan.frames_per_request, plan)
    server = start_server(model, flags, work / f"server-{plan.label}-{variant}-{plan.streams}.log")
    try:
        before = server.metrics()
        load = run_async(drive(plan, server, messages))
        after = server.metrics()
        rss_after_load = server.sample()[0]
        first = pool[: plan.frames_per_request].tolist()
        recovery = recover(server, plan.streams, json.dumps({"frames": first}))
    finally:
        exit_code = stop_server(server)
    readings = ServerReadings(before, after, rss_after_load, recovery, exit_code)
    check = correctness(model, load.logs, messages, plan, pool.shape[1])
    return point_record(plan, variant, flags, load, readings, check)


def reference_artifact(folder: Path) -> Path:
    """The reference streaming LSTM (2 x 128, 40 features, 10 classes) exported from a
    checkpoint, so it carries identity normalisation and class labels the server needs."""
    from edgelstm.benchmarks.suites.reference import reference_checkpoint
    from edgelstm.exporters.onnx import export

    out = folder / "reference.stream.onnx"
    export(reference_checkpoint(folder / "reference"), out, streaming=True)
    return out


def _parser() -> argparse.ArgumentParser:
    from edgelstm.benchmarks.suites import serve_load

    doc = serve_load.__doc__
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    add = parser.add_argument
    add("--model", required=True, help="a streaming export, or `reference` (exported here)")
    add("--name", help="report name: serve_load_NAME.{json,md} (default: from the model)")
    add("--streams", default="500", help="stream count, or a comma list (a sweep)")
    add("--sweep", action="store_true", help=f"sweep {','.join(map(str, DEFAULT_SWEEP))} streams")
    add("--rate", type=float, default=100.0, help="frames per second per stream")
    add("--frames-per-request", type=int, default=10)
    add("--duration", type=float, default=10.0, help="seconds of load per point")
    add("--grace", type=float, default=10.0, help="seconds a late stream may catch up")
    add("--protocol", default="http", help="http, ws, or a comma list")
    add("--binary", action="store_true", help="ws: send raw float32 frames")
    add("--frames", type=Path, help=".npz with X [sequences, time, features] (and lengths)")
    add("--baseline", action="store_true", help="also run each point with --max-batch 1")
    add("--check-streams", type=int, default=3, help="streams whose rows are checked offline")
    add("--p99-limit-ms", type=float, default=50.0)
    add_out_option(parser)
    for flag in SERVER_FLAGS:
        add(flag, help=f"passed to `edgelstm serve {flag}`")
    return parser


def _variants(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, server flags): the server as asked, once per ``--workers`` value of a comma
    list (run side by side at each stream count), and with ``--baseline`` one model call per
    request (``--max-batch 1``)."""
    given = {f: getattr(args, f[2:].replace("-", "_")) for f in SERVER_FLAGS}
    workers_given = given.pop("--workers")
    workers = workers_given.split(",") if workers_given else [None]

    def flags(extra: dict[str, str | None]) -> list[str]:
        return [x for f, v in {**given, **extra}.items() if v is not None for x in (f, v)]

    variants = []
    for count in workers:
        suffix = f" workers={count}" if len(workers) > 1 else ""
        variants.append((f"batched{suffix}", flags({"--workers": count})))
        if args.baseline:
            variants.append((f"baseline{suffix}", flags({"--workers": count, "--max-batch": "1"})))
    return variants


def _raise_open_files_limit(streams: int) -> None:
    # Each stream holds a socket here and one in the server (which inherits this limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < streams + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class _Model:
    """The model under load, as the report names it."""

    path: Path
    name: str
    label: str
    meta: ModelMetadata


def _model(args: argparse.Namespace, work: Path) -> _Model:
    from edgelstm.runtimes.ort.artifact import load_artifact

    if args.model == "reference":
        path, name = reference_artifact(work), args.name or "reference"
        label = "reference streaming LSTM (2 x 128, 40 features, 10 classes, random weights)"
    else:
        path, name = Path(args.model), args.name or Path(args.model).stem.split(".")[0]
        label = f"{path.name} ({name})"
    return _Model(path, name, label, load_artifact(path, verify=False).edgelstm_metadata())


def _run_points(
    args: argparse.Namespace, model: _Model, counts: Sequence[int], work: Path
) -> list[dict[str, Any]]:
    meta, points = model.meta, []
    pool = frame_pool(len(meta.feature_names), meta.normalization, args.frames)
    for protocol, streams, (variant, server_flags) in itertools.product(
        args.protocol.split(","), counts, _variants(args)
    ):
        binary = args.binary and protocol == "ws"
        plan = LoadPlan(streams, args.rate, args.frames_per_request, args.duration, protocol,
                        binary, args.grace, args.check_streams)  # fmt: skip
        points.append(point := run_point(model.path, plan, server_flags, pool, variant, work))
        problems = "; ".join(failures(point, args.p99_limit_ms)) or "served"
        sys.stderr.write(f"{plan.label} {variant} {streams} streams: {problems}\n")
    return points


def _document(
    args: argparse.Namespace,
    argv: Sequence[str],
    env: dict[str, Any],
    model: _Model,
    points: list[dict[str, Any]],
) -> dict[str, Any]:
    found, lines = summarise(points, args.p99_limit_ms)
    frames = str(args.frames) if args.frames else "normal draws around the model's statistics"
    meta = model.meta
    return {
        "schema": SCHEMA,
        "command": shlex.join([*COMMAND.split(), *argv]),
        "environment": env,
        "model": {"label": model.label, "task": meta.task, "features": len(meta.feature_names),
                  "classes": len(meta.class_labels), "state": dict(meta.state)},
        "load": {"rate_hz": args.rate, "frames_per_request": args.frames_per_request,
                 "duration_s": args.duration, "grace_s": args.grace, "frames": frames},
        "p99_limit_ms": args.p99_limit_ms,
        "saturation": found,
        "summary": lines,
        "points": points,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    parser = _parser()
    args = parser.parse_args(argv)
    counts = list(DEFAULT_SWEEP) if args.sweep else [int(s) for s in args.streams.split(",")]
    protocols = set(args.protocol.split(","))
    if protocols - {"http", "ws"} or args.rate <= 0 or args.frames_per_request < 1:
        parser.error("--protocol takes http and/or ws; --rate and --frames-per-request > 0")
    _raise_open_files_limit(max(counts))
    env = suite_environment(("uvicorn", "starlette", "websockets", "uvloop", "httptools"))
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(args, Path(tmp))
        points = _run_points(args, model, counts, Path(tmp))
    document = _document(args, sys.argv[1:] if argv is None else argv, env, model, points)
    markdown = to_markdown(document)
    write_json_atomic(args.out / f"serve_load_{model.name}.json", document, overwrite=True)
    write_text_atomic(args.out / f"serve_load_{model.name}.md", markdown, overwrite=True)
    sys.stdout.write(markdown)
    return 0
