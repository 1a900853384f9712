"""Measure one benchmark configuration, optionally in a fresh process.

A :class:`Measurement` is one model x runtime x provider x shape x thread count. Running each
in its own spawned process (the default) gives every row a clean heap, its own thread pools
and a true peak resident memory (``ru_maxrss`` of that process: the interpreter, the runtime
library and the session, which is what a deployment pays); in-process runs are faster to
start and leave ``peak_rss_mb`` empty.

Hygiene: inputs are generated once per shape from a fixed seed, warm-up calls are not timed,
thread counts are fixed per row, and every timed call is kept (outliers included).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.benchmarks.stats import latency_stats, throughput
from edgelstm.errors import EdgeLSTMError, InvalidInputError

__all__ = ["Measurement", "environment", "measure", "measure_isolated"]

#: Seconds a worker process may take for one configuration before it is stopped.
WORKER_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Measurement:
    """One configuration to time.

    ``runtime`` is ``onnxruntime`` (``model`` an ``.onnx`` file) or ``torch`` (``model`` a
    checkpoint folder; ``precision`` ``fp32`` or ``int8`` for ``torch.ao`` dynamic
    quantization). ``mode`` ``sequence`` times ``[batch, seq, features]`` calls; ``streaming``
    times ``[batch, chunk, features]`` pushes that carry the recurrent state.
    """

    model: str
    runtime: str
    provider: str
    precision: str
    mode: str
    batch: int
    seq: int
    threads: int
    warmup: int = 10
    iterations: int | None = 100
    duration_s: float | None = None
    fallback: bool = False
    cuda_graphs: bool = False
    cuda_device: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _timed(run: Callable[[], object], m: Measurement) -> list[float]:
    for _ in range(m.warmup):
        run()
    samples: list[float] = []
    if m.duration_s is not None:
        deadline = time.perf_counter() + m.duration_s
        # At least 10 calls, so percentiles mean something even for slow configurations.
        while len(samples) < 10 or time.perf_counter() < deadline:
            started = time.perf_counter()
            run()
            samples.append((time.perf_counter() - started) * 1000.0)
        return samples
    for _ in range(m.iterations or 1):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def _inputs(batch: int, steps: int, features: int) -> np.ndarray:
    # Same seed for every row: each runtime sees the same numbers for a given shape.
    rng = np.random.default_rng(1234)
    return rng.standard_normal((batch, steps, features)).astype(np.float32)


def _onnx(m: Measurement) -> dict[str, Any]:
    from edgelstm.runtimes.feeds import input_specs
    from edgelstm.runtimes.session import DeviceRunner, SessionConfig, open_session
    from edgelstm.runtimes.streaming import StreamingSession

    providers = (m.provider, "cpu") if m.fallback and m.provider != "cpu" else (m.provider,)
    config = SessionConfig(
        providers=providers,
        fallback=m.fallback,
        intra_op_threads=m.threads,
        cuda_graphs=m.cuda_graphs,
        cuda_device=m.cuda_device,
    )
    started = time.perf_counter()
    if m.mode == "streaming":
        stream = StreamingSession(Path(m.model), streams=m.batch, session=config)
        opened = stream.opened
    else:
        opened = open_session(Path(m.model), config)
    create_ms = (time.perf_counter() - started) * 1000.0
    specs = input_specs(opened.session)
    x_spec = specs[0]
    if len(x_spec.shape) != 3 or not isinstance(x_spec.shape[2], int):
        raise InvalidInputError(
            f"{m.model}: benchmark needs a sequence input [batch, time, features] with a fixed "
            f"feature axis; its first input is {x_spec.describe()}"
        )
    x = _inputs(m.batch, m.seq, x_spec.shape[2])
    feeds = {x_spec.name: x}
    for spec in specs[1:]:  # streaming graphs run whole sequences from zero state
        dims = [d if isinstance(d, int) else m.batch for d in spec.shape]
        feeds[spec.name] = np.zeros(dims, spec.dtype)
    names = [o.name for o in opened.session.get_outputs()]
    run: Callable[[], object]
    if m.mode == "streaming":

        def push() -> object:
            return stream.push(x)

        run = push
    elif opened.provider in ("cuda", "tensorrt"):
        runner = DeviceRunner(opened, feeds)

        def run_device() -> object:
            return runner.run(feeds)

        run = run_device
    else:

        def run_session() -> object:
            return opened.session.run(names, feeds)

        run = run_session
    started = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - started) * 1000.0
    samples = _timed(run, m)
    return {
        "samples": samples,
        "session_create_ms": create_ms,
        "first_run_ms": first_ms,
        "provider": opened.provider,
        "placement": dict(opened.placement),
        "notes": list(opened.notes),
        "io_binding": m.mode == "streaming" or opened.provider in ("cuda", "tensorrt"),
    }


def _torch(m: Measurement) -> dict[str, Any]:
    import warnings

    import torch

    from edgelstm.checkpoint import load_checkpoint

    torch.set_num_threads(m.threads)
    started = time.perf_counter()
    checkpoint = load_checkpoint(Path(m.model))
    model = checkpoint.model.eval()
    if m.precision == "int8":
        if m.provider != "cpu":
            raise InvalidInputError("PyTorch dynamic INT8 runs on the CPU only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao announces its own deprecation
            model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
            )
    device = torch.device("cpu")
    if m.provider == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError("PyTorch here has no CUDA device; benchmark torch on cpu")
        device = torch.device("cuda", m.cuda_device)
        model = model.to(device)
    create_ms = (time.perf_counter() - started) * 1000.0
    features = checkpoint.record.model.input_size
    x = torch.from_numpy(_inputs(m.batch, m.seq, features)).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run: Callable[[], object]
    if m.mode == "streaming":
        if model.config.bidirectional:
            raise InvalidInputError("a bidirectional model cannot be streamed")
        layers = checkpoint.record.model.num_layers
        hidden = checkpoint.record.model.hidden_size
        zeros = torch.zeros(layers, m.batch, hidden, device=device)
        state: Any = (zeros, zeros.clone()) if checkpoint.record.model.arch == "lstm" else zeros

        def step() -> object:
            nonlocal state
            with torch.no_grad():
                out, state = model.rnn(x, state)
                result = model.decode(out)
            sync()
            return result

        run = step
    else:

        def forward() -> object:
            with torch.no_grad():
                result = model(x)
            sync()
            return result

        run = forward
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - started) * 1000.0
    samples = _timed(run, m)
    result: dict[str, Any] = {
        "samples": samples,
        "session_create_ms": create_ms,
        "first_run_ms": first_ms,
        "provider": m.provider,
        "placement": {},
        "notes": [],
        "io_binding": False,
    }
    if device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def measure(m: Measurement) -> dict[str, Any]:
    """Time ``m`` in this process; returns the raw result (samples in ms and metadata)."""
    if m.runtime == "onnxruntime":
        raw = _onnx(m)
    elif m.runtime == "torch":
        raw = _torch(m)
    else:
        raise InvalidInputError(f"unknown runtime {m.runtime!r}; use onnxruntime or torch")
    stats = latency_stats(raw.pop("samples"))
    row: dict[str, Any] = {**stats.to_json()}
    # Sequences per second (streaming: streams advanced per second) and frames per second.
    row["throughput_per_s"] = throughput(m.batch, stats.p50_ms)
    row["frames_per_s"] = throughput(m.batch * m.seq, stats.p50_ms)
    row.update(raw)
    return row


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB.

    On Linux ``ru_maxrss`` survives ``exec``: a spawned worker would report its parent's peak
    when that was higher. ``VmHWM`` belongs to the current address space, so it is exact.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)  # macOS: bytes


def _worker(connection: Any, m: Measurement) -> None:
    try:
        row = measure(m)
        row["peak_rss_mb"] = _peak_rss_mb()
        connection.send(("ok", row))
    except EdgeLSTMError as exc:
        connection.send(("error", str(exc)))
    except Exception as exc:  # report, don't hang the parent: the row records the failure
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def measure_isolated(m: Measurement, timeout_s: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """Run :func:`measure` in a fresh spawned process; errors come back as InvalidInputError."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_worker, args=(child, m), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise InvalidInputError(
                f"{m.model}: the measurement took longer than {timeout_s:.0f} s; use fewer "
                "--iterations or smaller shapes"
            )
        status, payload = parent.recv()
    except EOFError:
        process.join(5)
        raise InvalidInputError(
            f"{m.model}: the worker process died (exit code {process.exitcode}) while timing "
            f"{m.runtime}/{m.provider}; run it alone with --no-isolate to see why"
        ) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()
    if status != "ok":
        raise InvalidInputError(str(payload))
    result: dict[str, Any] = payload
    return result


def environment(threads: tuple[int, ...]) -> dict[str, Any]:
    """The fingerprint stored with every report: hardware, library versions, thread settings."""
    import importlib.metadata as md

    from edgelstm import __version__
    from edgelstm.hardware import cpu_info, gpu_info

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    ort_dist = next(
        (d for d in ("onnxruntime", "onnxruntime-gpu") if version(d) is not None), "onnxruntime"
    )
    return {
        "edgelstm": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info().to_json(),
        "cpu_count": os.cpu_count(),
        "gpus": [g.to_json() for g in gpu_info()],
        "libraries": {
            "onnxruntime": version(ort_dist),
            "onnxruntime_distribution": ort_dist,
            "onnx": version("onnx"),
            "torch": version("torch"),
            "numpy": version("numpy"),
        },
        "threads": list(threads),
        "env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
