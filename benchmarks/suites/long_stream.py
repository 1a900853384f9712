"""A long stream through ``StreamingSession``: memory stays flat and a reset stream is fresh.

An edge device streams for days. This pushes one frame at a time (the reference streaming
LSTM, 2 x 128, 40 features, one thread) and samples the process's resident memory; at the
end it resets the stream and checks that its outputs equal a fresh session's on the same
probe frames, exactly. Results land in ``benchmark-results/`` unless told ``--out``; from the
repository root, this updates the committed ones::

    python -m edgelstm.benchmarks.suites.long_stream --out benchmarks/results  # 1M frames
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option

COMMAND = "python -m edgelstm.benchmarks.suites.long_stream"


def resident_mb() -> float:
    """Current resident memory of this process in MiB (``VmRSS``; Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError("VmRSS not found in /proc/self/status")


def run_long_stream(
    model: Path, frames: int, *, warmup: int = 10_000, samples: int = 20, seed: int = 0
) -> dict[str, Any]:
    """Push ``frames`` single frames; return memory samples and the reset-vs-fresh check.

    Memory growth is measured from the end of ``warmup`` (arena and caches settled) to the
    end. Inputs cycle through a fixed block of random frames, so the input itself uses no
    growing memory.
    """
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession

    rng = np.random.default_rng(seed)
    session = StreamingSession(model, threads=1)
    block = rng.standard_normal((1024, 1, 1, session.num_features)).astype(np.float32)
    checkpoints = sorted({warmup, *np.linspace(warmup, frames, samples, dtype=int).tolist()})
    memory: list[tuple[int, float]] = []
    started = time.perf_counter()
    next_mark = 0
    for index in range(frames):
        session.push(block[index % len(block)])
        if next_mark < len(checkpoints) and index + 1 == checkpoints[next_mark]:
            memory.append((index + 1, resident_mb()))
            next_mark += 1
    elapsed = time.perf_counter() - started
    probe = rng.standard_normal((1, 100, session.num_features)).astype(np.float32)
    session.reset()
    after_reset = session.push(probe)
    fresh = StreamingSession(model, threads=1).push(probe)
    settled = dict(memory).get(warmup, memory[0][1])
    return {
        "frames": frames,
        "seconds": elapsed,
        "us_per_frame": elapsed / frames * 1e6,
        "memory_mb": memory,
        "growth_mb": memory[-1][1] - settled,
        "reset_vs_fresh_max_abs": float(np.max(np.abs(after_reset - fresh))),
    }


def main(argv: list[str] | None = None) -> int:
    from edgelstm.benchmarks.suites.reference import reference_model
    from edgelstm.exporters.onnx import export
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=1_000_000)
    add_out_option(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.stream.onnx"
        export(reference_model(), path, streaming=True)
        result = run_long_stream(path, args.frames)
    document = {"schema": "edgelstm.long-stream/1", "command": COMMAND, **result}
    verdict = "met" if result["growth_mb"] < 5 else "MISSED"
    lines = [
        "# Long stream",
        "",
        f"Command: `{COMMAND}`",
        "",
        "Reference streaming LSTM (2 x 128, 40 features), one frame per push, one thread.",
        "",
        f"- frames: {result['frames']:,} in {result['seconds']:.1f} s "
        f"({result['us_per_frame']:.1f} µs per frame, Python loop included)",
        f"- resident memory growth after the first 10,000 frames: {result['growth_mb']:.2f} MB "
        f"(target < 5 MB: {verdict})",
        f"- reset stream vs fresh session on 100 probe frames: max |diff| "
        f"{result['reset_vs_fresh_max_abs']:.3g}",
        "",
        "| frames | resident MB |",
        "|---|---|",
        *[f"| {n:,} | {mb:.2f} |" for n, mb in result["memory_mb"]],
    ]
    write_json_atomic(args.out / "long_stream.json", document, overwrite=True)
    write_text_atomic(args.out / "long_stream.md", "\n".join(lines) + "\n", overwrite=True)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
