"""INT8 speed, size and accuracy of the reference model (2 x 128 LSTM), against FP32 and PyTorch.

Results land in ``benchmark-results/`` unless told ``--out``; from the repository root,
this updates the committed ones::

    python -m edgelstm.benchmarks.suites.quantization_speed --out benchmarks/results

Reference model: 2-layer LSTM, hidden 128, 40 features, linear head; batch 1, 100 steps, one
intra-op thread; medians of many runs after warm-up, all paths in one process. Accuracy:
JapaneseVowels trained with default settings, exported, quantized with ``dynamic-int8``,
float and INT8 scored on the test split by the accuracy gate.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option
from edgelstm.fileio import write_json_atomic, write_text_atomic
from edgelstm.version import __version__


def _timings(run: Callable[[], object], warmup: int, iterations: int) -> dict[str, float]:
    for _ in range(warmup):
        run()
    samples = np.empty(iterations)
    for i in range(iterations):
        started = time.perf_counter()
        run()
        samples[i] = time.perf_counter() - started
    ms = samples * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def measure(warmup: int = 50, iterations: int = 300, with_accuracy: bool = True) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from edgelstm.hardware import cpu_info

    torch.set_num_threads(1)
    rows, kernels = _speed_rows(warmup, iterations)
    cpu = cpu_info()
    doc: dict[str, Any] = {
        "schema": "edgelstm.quantization-speed/1",
        "command": "python -m edgelstm.benchmarks.suites.quantization_speed",
        "environment": {
            "edgelstm": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "cpu": cpu.model,
            "int8_isa": {
                "avx2": cpu.avx2,
                "avx512_vnni": cpu.avx512_vnni,
                "avx_vnni": cpu.avx_vnni,
            },
            "threads": 1,
            "warmup": warmup,
            "iterations": iterations,
        },
        "model": "2-layer LSTM, hidden 128, 40 features, linear head; batch 1, 100 steps",
        "rows": rows,
        "summary": _summary(rows, kernels),
    }
    if with_accuracy:
        doc["accuracy"] = _japanese_vowels_gate()
    return doc


def _speed_rows(warmup: int, iterations: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Timings of the reference model in PyTorch eager FP32 and as ONNX Runtime FP32,
    dynamic INT8 per channel and per tensor (with file sizes), all in this process on one
    thread; and the INT8 artifact's kernel audit."""
    import onnxruntime as ort
    import torch

    from edgelstm.benchmarks.suites.reference import reference_model
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize

    model = reference_model()
    x = np.random.default_rng(0).standard_normal((1, 100, 40)).astype(np.float32)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "ref.onnx"
        int8 = Path(tmp) / "ref.int8.onnx"
        int8_tensor = Path(tmp) / "ref.int8-per-tensor.onnx"
        export(model, fp32, input_shape=(1, 100, 40))
        quantized = quantize(fp32, int8, mode="dynamic-int8")
        quantize(fp32, int8_tensor, mode="dynamic-int8", per_channel=False)
        xt = torch.from_numpy(x)

        def torch_run() -> object:
            with torch.no_grad():
                return model(xt)

        rows.append({"path": "pytorch eager fp32", **_timings(torch_run, warmup, iterations)})
        paths = (
            ("onnxruntime fp32", fp32),
            ("onnxruntime dynamic-int8", int8),
            ("onnxruntime dynamic-int8 per-tensor", int8_tensor),
        )
        for name, path in paths:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def ort_run(session: Any = session) -> object:
                return session.run(None, {"x": x})

            row = {"path": name, **_timings(ort_run, warmup, iterations)}
            row["size_bytes"] = path.stat().st_size
            rows.append(row)
        return rows, quantized.audit.kernels


def _summary(rows: list[dict[str, Any]], kernels: dict[str, int]) -> dict[str, Any]:
    """INT8 against FP32 and PyTorch: p50 and file-size ratios, and the kernels it runs."""
    by = {r["path"]: r for r in rows}
    int8_p50 = by["onnxruntime dynamic-int8"]["p50_ms"]
    return {
        "int8_vs_onnx_fp32_p50": int8_p50 / by["onnxruntime fp32"]["p50_ms"],
        "int8_vs_torch_fp32_p50": int8_p50 / by["pytorch eager fp32"]["p50_ms"],
        "int8_vs_fp32_size": by["onnxruntime dynamic-int8"]["size_bytes"]
        / by["onnxruntime fp32"]["size_bytes"],
        "int8_per_tensor_vs_fp32_size": by["onnxruntime dynamic-int8 per-tensor"]["size_bytes"]
        / by["onnxruntime fp32"]["size_bytes"],
        "int8_kernels": kernels,
    }


def _japanese_vowels_gate() -> dict[str, Any]:
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize
    from edgelstm.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "jv"
        train("classify", dataset="JapaneseVowels", out=run)
        export(run, Path(tmp) / "jv.onnx")
        result = quantize(Path(tmp) / "jv.onnx", Path(tmp) / "jv.int8.onnx", mode="dynamic-int8")
    assert result.gate is not None
    return {**result.gate.__dict__, "passed": result.gate.passed, "size_ratio": result.audit.ratio}


def to_markdown(doc: dict[str, Any]) -> str:
    env, summary = doc["environment"], doc["summary"]
    lines = [
        "# Dynamic INT8 vs FP32 on the reference LSTM",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {env['cpu']} (AVX2 {env['int8_isa']['avx2']}, AVX-512 VNNI "
        f"{env['int8_isa']['avx512_vnni']}), torch {env['torch']}, onnxruntime "
        f"{env['onnxruntime']}, 1 thread, {env['iterations']} runs after {env['warmup']} warm-up",
        f"Model: {doc['model']}",
        "",
        "| path | p50 ms | p90 ms | mean ms | size |",
        "|---|---|---|---|---|",
    ]
    for row in doc["rows"]:
        size = f"{row['size_bytes'] / 1e6:.3f} MB" if "size_bytes" in row else ""
        lines.append(
            f"| {row['path']} | {row['p50_ms']:.3f} | {row['p90_ms']:.3f} | "
            f"{row['mean_ms']:.3f} | {size} |"
        )
    lines += [
        "",
        f"- INT8 p50 / ONNX Runtime FP32 p50: {summary['int8_vs_onnx_fp32_p50']:.2f} "
        "(target <= 0.5)",
        f"- INT8 p50 / PyTorch eager FP32 p50: {summary['int8_vs_torch_fp32_p50']:.2f} "
        "(target <= 0.33)",
        f"- INT8 size / FP32 size: {summary['int8_vs_fp32_size']:.3f} per-channel (the "
        f"default), {summary['int8_per_tensor_vs_fp32_size']:.3f} per-tensor (target <= 0.27)",
        f"- quantized kernels: {summary['int8_kernels']}",
    ]
    if "accuracy" in doc:
        acc = doc["accuracy"]
        lines.append(
            f"- JapaneseVowels {acc['metric']}: float {acc['float_value']:.4f}, INT8 "
            f"{acc['quantized_value']:.4f}, degradation {acc['degradation']:.4f} "
            f"(gate {acc['allowed']}; passed {acc['passed']})"
        )
    if doc.get("architectures"):
        from edgelstm.benchmarks.suites.quantization_archs import architecture_table

        lines += ["", *architecture_table(doc["architectures"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--no-accuracy", action="store_true", help="skip the JapaneseVowels run")
    parser.add_argument(
        "--no-architectures",
        action="store_true",
        help="skip the study of every architecture (six BasicMotions models, a few minutes)",
    )
    add_out_option(parser)
    args = parser.parse_args(argv)
    doc = measure(args.warmup, args.iterations, with_accuracy=not args.no_accuracy)
    if not args.no_architectures:
        from edgelstm.benchmarks.suites.quantization_archs import measure_architectures

        doc["architectures"] = measure_architectures()
    write_json_atomic(args.out / "quantization_speed.json", doc, overwrite=True)
    write_text_atomic(args.out / "quantization_speed.md", to_markdown(doc), overwrite=True)
    print(to_markdown(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
