"""Per-layer vs stacked streaming state: graph size and one frame, side by side.

Streaming exports carry one state input per recurrent layer (``layer0_h``, ``layer0_c``, ...).
Files written before that carry one stacked state per kind (``h``, ``c``
``[layers*directions, batch, hidden]``), which the graph splits before the layers and
concatenates after them every chunk; they still run. This suite exports the reference LSTM
(2 x 128, 40 features) in both layouts, counts the nodes of ONNX Runtime's optimised graph,
and times, interleaved round by round in one process and one thread:

- one frame through :class:`StreamingSession` ``push`` (one stream);
- the serve batcher's model call for ``--streams`` streams: gather the state rows, one
  ``session.run``, scatter the new state back (what ``SequenceBatcher._compute`` does
  before scoring rows);
- one frame through ``SequenceModel.step`` in eager PyTorch (the reference benchmark's
  PyTorch streaming row), which runs layer by layer for per-layer state.

Results land in ``benchmark-results/`` unless told ``--out``; from the repository root, this
updates the committed ones::

    python -m edgelstm.benchmarks.suites.streaming_state --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgelstm.benchmarks.suites.result_files import add_out_option, suite_environment
from edgelstm.training.models import SequenceModel, StreamStateSpec

COMMAND = "python -m edgelstm.benchmarks.suites.streaming_state"
LAYOUTS = ("stacked", "per-layer")


class StackedStateModel(SequenceModel):
    """A :class:`SequenceModel` whose streaming step keeps the stacked state layout of older
    streaming files: ``h`` (and ``c``) ``[layers*directions, batch, hidden]``, then ``frames``.

    Exporting it with ``streaming=True`` writes such a file, to measure against and to check
    that those files still run.
    """

    def stream_states(self) -> tuple[StreamStateSpec, ...]:
        cfg = self.config
        kinds = ("h", "c") if cfg.cell == "lstm" else ("h",)
        shape: tuple[int | str, ...] = (
            cfg.num_layers * cfg.num_directions,
            "batch",
            cfg.hidden_size,
        )
        meaning = "recurrent state in [layers*directions, batch, hidden]; zeros to start"
        stacked = tuple(StreamStateSpec(kind, shape, meaning) for kind in kinds)
        frames = super().stream_states()[-1:] if self.frontend is not None else ()
        return (*stacked, *frames)

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        rest = list(state)
        frames: tuple[torch.Tensor, ...] = ()
        if self.frontend is not None:
            x, last = self.frontend.step(x, rest.pop())
            frames = (last,)
        out, after = self.rnn(x, tuple(rest) if self.config.cell == "lstm" else rest[0])
        recurrent = after if isinstance(after, tuple) else (after,)
        return self.decode(out), (*recurrent, *frames)

    def layer_states(self, rnn_state: Any) -> tuple[torch.Tensor, ...]:
        return rnn_state if isinstance(rnn_state, tuple) else (rnn_state,)


def stacked_state_model(model: SequenceModel) -> StackedStateModel:
    """``model``'s weights in a model that streams with the stacked state layout."""
    stacked = StackedStateModel(model.config)
    stacked.load_state_dict(model.state_dict())
    return stacked.train(model.training)


def optimised_node_count(path: Path, out: Path) -> int:
    """Nodes in the graph ONNX Runtime runs for ``path`` (all optimisations, CPU)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3  # not its warning that the file is for this CPU only
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return len(onnx.load(str(out)).graph.node)


def frame_timers(path: Path, streams: int, seed: int = 0) -> dict[str, Callable[[], object]]:
    """One call each: a frame through ``StreamingSession.push``, and the batcher's model call
    (gather, run, scatter) for ``streams`` streams."""
    from edgelstm.runtimes.model_io.contract import FRAMES_INPUT
    from edgelstm.runtimes.model_io.stream_state import StreamState
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession
    from edgelstm.runtimes.ort.session import SessionConfig, open_session

    pushing = StreamingSession(path, threads=1)
    rng = np.random.default_rng(seed)
    frame = rng.standard_normal((1, 1, pushing.num_features)).astype(np.float32)
    contract = pushing.contract
    opened = open_session(path, SessionConfig(intra_op_threads=1))
    table = StreamState(contract, streams)
    slots = np.arange(streams)
    frames = rng.standard_normal((streams, 1, pushing.num_features)).astype(np.float32)
    outputs = [o.name for o in opened.session.get_outputs()]

    def batcher_call() -> object:
        results = opened.session.run(outputs, {FRAMES_INPUT: frames, **table.gather(slots)})
        named = dict(zip(outputs, results, strict=True))
        new = zip(contract.state_names, contract.state_outputs, strict=True)
        table.scatter(slots, {name: named[output] for name, output in new})
        return results[0]

    return {"push": lambda: pushing.push(frame), "batcher": batcher_call}


def torch_step_timer(model: SequenceModel, features: int) -> Callable[[], object]:
    """One frame through ``model.step`` in eager PyTorch, its state carried (the PyTorch
    streaming row of the reference benchmark runs this step)."""
    from edgelstm.exporters.graphs import state_shapes

    frame = torch.zeros(1, 1, features).normal_(generator=torch.Generator().manual_seed(0))
    state = tuple(
        torch.zeros([1 if isinstance(d, str) else d for d in shape])
        for shape in state_shapes(model).values()
    )

    def step() -> object:
        nonlocal state
        with torch.no_grad():
            result, state = model.step(frame, state)
        return result

    return step


def _median_us(call: Callable[[], object], iterations: int) -> float:
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def measure(streams: int, rounds: int, iterations: int) -> dict[str, Any]:
    """Export both layouts, count optimised nodes, time both calls interleaved per round."""
    from edgelstm.benchmarks.suites.reference import reference_model
    from edgelstm.exporters.onnx import export

    model = reference_model()
    sources = {"stacked": stacked_state_model(model), "per-layer": model}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        timers = {}
        for layout, source in sources.items():
            path = Path(tmp) / f"{layout}.onnx"
            export(source, path, streaming=True)
            nodes = optimised_node_count(path, Path(tmp) / f"{layout}.optimised.onnx")
            results[layout] = {"optimised_nodes": nodes}
            timers[layout] = {
                **frame_timers(path, streams),
                "torch_step": torch_step_timer(source, model.config.input_size),
            }
            results[layout].update({f"{what}_us": [] for what in timers[layout]})
            for call in timers[layout].values():
                _median_us(call, iterations // 10)  # warm up arena and caches
        for _ in range(rounds):
            for layout in LAYOUTS:
                for what, call in timers[layout].items():
                    results[layout][f"{what}_us"].append(_median_us(call, iterations))
    return results


def _cell(result: dict[str, Any], what: str) -> str:
    values = result[f"{what}_us"]
    return f"{statistics.median(values):.1f} ({min(values):.1f} to {max(values):.1f})"


def report_lines(document: dict[str, Any]) -> list[str]:
    """The Markdown report of :func:`measure`'s results."""
    results = document["results"]
    streams = document["streams"]
    flags = ", ".join(document["environment"].get("cpu_flags", [])) or "none of avx2/avx512"
    return [
        "# Streaming state: per-layer vs stacked",
        "",
        f"Command: `{document['command']}`",
        "",
        "Reference streaming LSTM (2 x 128, 40 features), one thread, one frame per call. "
        f"Median µs of {document['iterations']} calls per round; the cell gives the median of "
        f"{document['rounds']} interleaved rounds (in brackets: min to max over rounds). "
        f"CPU flags: {flags}.",
        "",
        f"| layout | optimised graph nodes | StreamingSession.push, 1 stream | "
        f"batcher model call, {streams} streams | PyTorch eager step, 1 stream |",
        "|---|---|---|---|---|",
        *[
            f"| {layout} | {results[layout]['optimised_nodes']} | "
            f"{_cell(results[layout], 'push')} | {_cell(results[layout], 'batcher')} | "
            f"{_cell(results[layout], 'torch_step')} |"
            for layout in LAYOUTS
        ],
        "",
        "Per-layer over stacked, median of the per-round ratios (rounds alternate the layouts, "
        "so a ratio compares calls made seconds apart, under the same load): "
        + ", ".join(
            f"{label} {_paired_ratio(results, what):.2f}x"
            for what, label in (("push", "push"), ("batcher", "batcher"), ("torch_step", "PyTorch"))
        )
        + ".",
        "",
    ]


def _paired_ratio(results: dict[str, Any], what: str) -> float:
    pairs = zip(results["per-layer"][f"{what}_us"], results["stacked"][f"{what}_us"], strict=True)
    return float(statistics.median(new / old for new, old in pairs))


def main(argv: list[str] | None = None) -> int:
    from edgelstm.fileio import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=32, help="streams per batcher call")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=2000, help="calls per round")
    add_out_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    environment = suite_environment(("onnxruntime", "torch"))
    results = measure(args.streams, args.rounds, args.iterations)
    document = {
        "schema": "edgelstm.streaming-state/1",
        "command": " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]),
        "streams": args.streams,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "environment": environment,
        "results": results,
    }
    lines = report_lines(document)
    write_json_atomic(args.out / "streaming_state.json", document, overwrite=True)
    write_text_atomic(args.out / "streaming_state.md", "\n".join(lines), overwrite=True)
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
