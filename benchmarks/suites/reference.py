"""The performance bar, measured side by side by the benchmark harness.

Reference model: 2-layer LSTM, hidden 128, 40 features, 10-class linear head (random
weights: speed does not depend on them); batch 1, 100 steps, one thread. One run measures
PyTorch eager FP32 and dynamic INT8, the ONNX Runtime FP32 and dynamic-INT8 artifacts, and
one streaming frame of each, every row in its own process. The bar:

- INT8 artifact p50 <= 0.33x PyTorch eager FP32;
- FP32 artifact p50 <= 0.8x PyTorch eager FP32;
- one streaming frame <= 0.2x PyTorch eager's per-step call (a 5x speed-up).

Results land in ``benchmark-results/`` unless told ``--out``; from the repository root,
this updates the committed ones::

    python -m edgelstm.benchmarks.suites.reference --out benchmarks/results
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.benchmarks.suites.result_files import add_out_option

if TYPE_CHECKING:
    from edgelstm.training.models import SequenceModel

COMMAND = "python -m edgelstm.benchmarks.suites.reference"

#: (row selector, bar) pairs: p50 over PyTorch eager FP32 at the same shape.
BARS = (
    ("model.int8.onnx", "sequence", 0.33),
    ("model.int8-per-tensor.onnx", "sequence", 0.33),
    ("model.onnx", "sequence", 0.8),
    ("model.stream.onnx", "streaming", 0.2),
)


def reference_model(seed: int = 0) -> SequenceModel:
    """The reference LSTM (2 x 128, 40 features, 10 classes), in eval mode."""
    import torch

    from edgelstm.config import ModelConfig
    from edgelstm.training.models import build_model

    torch.manual_seed(seed)
    config = ModelConfig(
        task="classify", input_size=40, hidden_size=128, num_layers=2, num_classes=10
    )
    return build_model(config).eval()


def reference_checkpoint(out: Path) -> Path:
    """Save the reference model as a checkpoint folder (so ``--torch`` can load it)."""
    from edgelstm.config import DatasetInfo, Normalization, RunRecord, TrainConfig
    from edgelstm.training.checkpoint import save_checkpoint
    from edgelstm.version import __version__

    model = reference_model()
    features = model.config.input_size
    record = RunRecord(
        model=model.config,
        train=TrainConfig(),
        dataset=DatasetInfo(
            name="reference", source="random weights (speed only)", train_size=0, test_size=0
        ),
        feature_names=tuple(f"f{i}" for i in range(features)),
        normalization=Normalization(mean=(0.0,) * features, std=(1.0,) * features),
        class_labels=tuple(str(i) for i in range(model.config.num_classes)),
        edgelstm_version=__version__,
    )
    save_checkpoint(out, record, model, {})
    return out


def measure(iterations: int, warmup: int) -> dict[str, Any]:
    """Build the artifacts in a temporary folder and benchmark them against PyTorch."""
    from edgelstm.benchmarks.harness import BenchmarkPlan, run_benchmark
    from edgelstm.exporters.onnx import export
    from edgelstm.exporters.quantize import quantize
    from edgelstm.fileio import relocate_paths

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = reference_checkpoint(folder / "reference")
        model = reference_model()
        paths = {name: folder / name for name in ("model.onnx", "model.stream.onnx")}
        # Exported from the module, not the folder: the folder has no data to gate accuracy on.
        export(model, paths["model.onnx"], input_shape=(1, 100, 40))
        export(model, paths["model.stream.onnx"], streaming=True)
        for name in ("model.onnx", "model.stream.onnx"):
            target = folder / name.replace(".onnx", ".int8.onnx")
            quantize(paths[name], target, mode="dynamic-int8")
            paths[target.name] = target
        # Per-tensor weight scales: one scale per matrix instead of per output channel
        # (`quantize --no-per-channel`): fewer scale multiplies, slightly less accurate.
        per_tensor = folder / "model.int8-per-tensor.onnx"
        quantize(paths["model.onnx"], per_tensor, mode="dynamic-int8", per_channel=False)
        paths[per_tensor.name] = per_tensor
        plan = BenchmarkPlan(
            models=tuple(paths.values()),
            providers=("cpu",),
            batches=(1,),
            seqs=(100,),
            threads=(1,),
            stream=True,
            chunks=(1,),
            torch_run=run,
            warmup=warmup,
            iterations=iterations,
        )
        document: dict[str, Any] = relocate_paths(
            run_benchmark(plan, command=COMMAND).to_json(), folder, Path(".")
        )
    document["summary"] = check_bars(document["rows"])
    return document


def check_bars(rows: list[dict[str, Any]]) -> dict[str, str]:
    """One line per bar: the measured ratio, the bar and whether it was met."""
    lines = {}
    for model, mode, bar in BARS:
        row = next(
            (r for r in rows if r["model"] == model and r["mode"] == mode and r["batch"] == 1),
            None,
        )
        if row is None or row.get("vs_torch_fp32") is None:
            lines[f"{model} {mode}"] = "not measured"
            continue
        ratio = row["vs_torch_fp32"]
        verdict = "met" if ratio <= bar else "MISSED"
        lines[f"{model} {mode} vs PyTorch eager FP32"] = (
            f"{ratio:.3f}x (bar {bar}x: {verdict}; p50 {row['p50_ms']:.3f} ms)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    from edgelstm.benchmarks.report import to_markdown
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    add_out_option(parser)
    args = parser.parse_args(argv)
    document = measure(args.iterations, args.warmup)
    write_json_atomic(args.out / "reference.json", document, overwrite=True)
    markdown = to_markdown(document, "Reference model: the performance bar")
    write_text_atomic(args.out / "reference.md", markdown, overwrite=True)
    sys.stdout.write(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
