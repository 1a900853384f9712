"""Per-frame streaming cost: StreamingSession (ONNX Runtime) vs PyTorch eager, same process.

Run from the repository root (results land in ``benchmarks/results/``)::

    python -m edgelstm.benchmarks.streaming_speed

Reference model: 2-layer LSTM, hidden 128, 40 features, linear head; one stream, one frame
per call, one thread. PyTorch's per-step call is ``rnn(frame, state)`` + the head, the
cheapest eager loop a user could write; edgelstm's is ``StreamingSession.push(frame)``.
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.fileio import write_json_atomic, write_text_atomic


def _per_call_us(run: Callable[[], object], warmup: int, iterations: int) -> dict[str, float]:
    for _ in range(warmup):
        run()
    samples = np.empty(iterations)
    for i in range(iterations):
        started = time.perf_counter()
        run()
        samples[i] = time.perf_counter() - started
    us = samples * 1e6
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "mean_us": float(us.mean()),
    }


def measure(warmup: int = 500, iterations: int = 5000) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from edgelstm.config import ModelConfig
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize
    from edgelstm.hardware import cpu_info
    from edgelstm.models import build_model
    from edgelstm.runtimes.streaming import StreamingSession

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(task="classify", input_size=40, hidden_size=128, num_layers=2, num_classes=10)
    ).eval()
    frame = np.random.default_rng(0).standard_normal((1, 1, 40)).astype(np.float32)
    frame_t = torch.from_numpy(frame)
    state = (torch.zeros(2, 1, 128), torch.zeros(2, 1, 128))

    def torch_step() -> object:
        nonlocal state
        with torch.no_grad():
            out, state = model.rnn(frame_t, state)
            return model.decode(out)

    rows: list[dict[str, Any]] = [
        {
            "path": "pytorch eager fp32, rnn step + head",
            **_per_call_us(torch_step, warmup, iterations),
        }
    ]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "stream.onnx"
        int8 = Path(tmp) / "stream.int8.onnx"
        export(model, fp32, streaming=True)
        quantize(fp32, int8, mode="dynamic-int8")
        for name, path in (
            ("StreamingSession fp32", fp32),
            ("StreamingSession dynamic-int8", int8),
        ):
            push = functools.partial(StreamingSession(path, threads=1).push, frame)
            rows.append({"path": name, **_per_call_us(push, warmup, iterations)})
    base = float(rows[0]["p50_us"])
    summary = {f"{r['path']} speed-up vs pytorch": base / r["p50_us"] for r in rows[1:]}
    cpu = cpu_info()
    return {
        "schema": "edgelstm.streaming-speed/1",
        "command": "python -m edgelstm.benchmarks.streaming_speed",
        "environment": {
            "edgelstm": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "cpu": cpu.model,
            "threads": 1,
            "warmup": warmup,
            "iterations": iterations,
        },
        "model": "2-layer LSTM, hidden 128, 40 features, linear head; 1 stream, 1 frame per call",
        "rows": rows,
        "summary": summary,
    }


def to_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [
        "# Per-frame streaming cost",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {env['cpu']}, torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
        f"1 thread, {env['iterations']} calls after {env['warmup']} warm-up",
        f"Model: {doc['model']}",
        "",
        "| path | p50 µs | p90 µs | mean µs |",
        "|---|---|---|---|",
    ]
    for row in doc["rows"]:
        lines.append(
            f"| {row['path']} | {row['p50_us']:.1f} | {row['p90_us']:.1f} | {row['mean_us']:.1f} |"
        )
    lines.append("")
    lines += [f"- {name}: {value:.2f}x" for name, value in doc["summary"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    doc = measure(args.warmup, args.iterations)
    write_json_atomic(args.out / "streaming_speed.json", doc, overwrite=True)
    write_text_atomic(args.out / "streaming_speed.md", to_markdown(doc), overwrite=True)
    print(to_markdown(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
