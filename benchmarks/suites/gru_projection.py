"""Does moving a GRU's input projection out of the GRU node pay off under dynamic INT8?

ONNX Runtime has no quantized GRU kernel, so a GRU model's INT8 file keeps the GRU in float.
One way to quantize part of it: compute the input projection ``X W^T`` for every time step as
one ``MatMul`` (which dynamic INT8 turns into ``MatMulInteger``) and leave only the recurrence
to the GRU node. The ONNX ``GRU`` operator always multiplies its input by its own ``W``, so
the node then takes the projected input with ``W`` the identity ``[3H, 3H]``: this measures
whether the quantized projection wins back more than that extra product costs.

Both graphs are built here with the same random weights (reference sizes: 40 features,
hidden 128, 100 steps), checked to give the same outputs in FP32, quantized with
``quantize_dynamic`` and timed at batch 1 and 32, one thread, rounds alternating::

    python -m edgelstm.benchmarks.suites.gru_projection --out benchmarks/results
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.suites.result_files import add_out_option
from edgelstm.fileio import write_json_atomic, write_text_atomic

FEATURES, HIDDEN, STEPS = 40, 128, 100


def _gru_model(path: Path, projected: bool, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((1, 3 * HIDDEN, FEATURES)) * 0.1).astype(np.float32)
    r = (rng.standard_normal((1, 3 * HIDDEN, HIDDEN)) * 0.1).astype(np.float32)
    b = (rng.standard_normal((1, 6 * HIDDEN)) * 0.1).astype(np.float32)
    nodes, inits = [], [numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B")]
    gru_input = "x"
    if projected:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w[0].T), "Wt"))
        identity = np.eye(3 * HIDDEN, dtype=np.float32)[None]
        inits.append(numpy_helper.from_array(identity, "W"))
        nodes.append(helper.make_node("MatMul", ["x", "Wt"], ["projected"]))
        gru_input = "projected"
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    nodes.append(
        helper.make_node("GRU", [gru_input, "W", "R", "B"], ["y", "h"], hidden_size=HIDDEN)
    )
    graph = helper.make_graph(
        nodes,
        "gru",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [STEPS, "batch", FEATURES])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "batch", HIDDEN])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _quantized(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8)  # fmt: skip
    return dst


def measure() -> dict[str, Any]:
    from edgelstm.benchmarks.suites.quantization_archs import p50_interleaved
    from edgelstm.benchmarks.suites.result_files import suite_environment
    from edgelstm.exporters.op_selection import working_session

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = _gru_model(work / "plain.onnx", projected=False)
        split = _gru_model(work / "split.onnx", projected=True)
        paths = {
            "GRU, FP32": plain,
            "GRU, dynamic INT8 (GRU stays float)": _quantized(plain, work / "plain.int8.onnx"),
            "projection + GRU(W = I), FP32": split,
            "projection + GRU(W = I), dynamic INT8": _quantized(split, work / "split.int8.onnx"),
        }
        sessions = {name: working_session(path) for name, path in paths.items()}
        rng = np.random.default_rng(1)
        check = rng.standard_normal((STEPS, 2, FEATURES)).astype(np.float32)
        same = float(np.max(np.abs(
            sessions["GRU, FP32"].run(None, {"x": check})[0]
            - sessions["projection + GRU(W = I), FP32"].run(None, {"x": check})[0]
        )))  # fmt: skip
        rows = []
        for batch in (1, 32):
            x = rng.standard_normal((STEPS, batch, FEATURES)).astype(np.float32)
            runs = [lambda s=s, x=x: s.run(None, {"x": x}) for s in sessions.values()]
            for name, p50 in zip(sessions, p50_interleaved(runs, rounds=7, per_round=20),
                                 strict=True):  # fmt: skip
                rows.append({"path": name, "batch": batch, "p50_ms": p50})
    return {
        "schema": "edgelstm.gru-projection/1",
        "command": "python -m edgelstm.benchmarks.suites.gru_projection",
        "environment": suite_environment(("onnxruntime",)),
        "shape": {"features": FEATURES, "hidden": HIDDEN, "steps": STEPS},
        "fp32_max_abs_difference": same,
        "rows": rows,
    }


def to_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [
        "# GRU under dynamic INT8: the input projection outside the GRU node",
        "",
        f"Command: `{doc['command']} --out benchmarks/results`  ",
        f"CPU flags: {', '.join(env.get('cpu_flags', [])) or 'unknown'}; one thread; "
        f"{doc['shape']['features']} features, hidden {doc['shape']['hidden']}, "
        f"{doc['shape']['steps']} steps; FP32 graphs agree to {doc['fp32_max_abs_difference']:.1e}",
        "",
        "| path | batch | p50 ms | vs GRU FP32 |",
        "|---|---|---|---|",
    ]
    base = {r["batch"]: r["p50_ms"] for r in doc["rows"] if r["path"] == "GRU, FP32"}
    for row in doc["rows"]:
        ratio = row["p50_ms"] / base[row["batch"]]
        lines.append(f"| {row['path']} | {row['batch']} | {row['p50_ms']:.3f} | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_out_option(parser)
    args = parser.parse_args(argv)
    doc = measure()
    write_json_atomic(args.out / "gru_projection.json", doc, overwrite=True)
    write_text_atomic(args.out / "gru_projection.md", to_markdown(doc), overwrite=True)
    print(to_markdown(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
