"""Measure one benchmark configuration, optionally in a fresh process.

A :class:`Measurement` is one model x runtime x provider x shape x thread count. Running each
in its own fresh Python process (the default) gives every row a clean heap, its own thread pools
and a true peak resident memory (``ru_maxrss`` of that process: the interpreter, the runtime
library and the session, which is what a deployment pays); in-process runs are faster to
start and leave ``peak_rss_mb`` empty.

Hygiene: inputs are generated once per shape from a fixed seed, warm-up calls are not timed,
thread counts are fixed per row, and every timed call is kept (outliers included).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgelstm.benchmarks.stats import latency_stats, throughput
from edgelstm.benchmarks.worker_process import WorkerProcess
from edgelstm.errors import EdgeLSTMError, InvalidInputError

__all__ = [
    "Measurement",
    "Prepared",
    "environment",
    "measure",
    "measure_interleaved",
    "measure_isolated",
    "prepare",
]

#: Seconds a worker process may take for one configuration before it is stopped.
WORKER_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Measurement:
    """One configuration to time.

    ``runtime`` is ``onnxruntime`` (``model`` an ``.onnx`` file) or ``torch`` (``model`` a
    checkpoint folder; ``precision`` ``fp32`` or ``int8`` for ``torch.ao`` dynamic
    quantization). ``mode`` ``sequence`` times ``[batch, seq, features]`` calls; ``streaming``
    times ``[batch, chunk, features]`` pushes that carry the recurrent state.

    ``cuda_graphs`` on onnxruntime captures the session's graph (CUDA and TensorRT providers);
    on torch it captures the forward in a ``torch.cuda.CUDAGraph`` (``cuda`` sequence rows
    only). ``io_binding`` is for ``cuda``/``tensorrt`` sequence rows: True binds the input and
    outputs to device buffers (:class:`~edgelstm.runtimes.ort.execution.DeviceRunner`), False
    times plain ``session.run`` on host arrays, the way ``edgelstm run`` calls the model. It is
    ignored for other providers (they always take ``session.run``) and for streaming rows
    (the streaming session binds its host buffers itself).
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
    io_binding: bool = True
    #: ``.npz`` of the arrays to feed, by input name (onnxruntime rows; see model_inputs).
    inputs: str | None = None
    #: sizes of named symbolic axes for synthesised inputs (``--dim seq_len=64``).
    dims: tuple[tuple[str, int], ...] = ()
    #: torch rows of a user module (``model`` is ``FILE.py:FACTORY``): its weights file, and
    #: the ONNX export whose inputs it is fed (the same arrays as that export's rows).
    weights: str | None = None
    feeds_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prepared:
    """A configuration ready to time: ``call`` runs it once; ``info`` describes the setup.

    ``before`` re-applies per-row settings that are process-global (torch's thread count)
    before each chunk of timed calls, so rows timed in one process do not leak settings.
    """

    call: Callable[[], object]
    info: dict[str, Any]
    before: Callable[[], None] = lambda: None


def _time_calls(prepared: Prepared, *, count: int = 0, seconds: float = 0.0) -> list[float]:
    """Latencies (ms) of ``count`` calls, or of calls for ``seconds``, whichever is asked."""
    prepared.before()
    run = prepared.call
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < count or (seconds and time.perf_counter() < deadline):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def _warm(prepared: Prepared, m: Measurement) -> None:
    """First call (timed separately: it pays lazy initialisation), then the warm-up calls."""
    prepared.before()
    started = time.perf_counter()
    prepared.call()
    prepared.info["first_run_ms"] = (time.perf_counter() - started) * 1000.0
    for _ in range(m.warmup):
        prepared.call()


def _onnx(m: Measurement) -> Prepared:
    from edgelstm.benchmarks.model_inputs import benchmark_feeds
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession
    from edgelstm.runtimes.ort.execution import DeviceRunner
    from edgelstm.runtimes.ort.feeds import input_specs
    from edgelstm.runtimes.ort.session import open_session
    from edgelstm.runtimes.ort.session_config import SessionConfig

    if m.cuda_graphs and not m.io_binding:
        # ONNX Runtime replays a captured graph only on the device buffers bound to it.
        raise InvalidInputError(
            f"{m.model}: ONNX Runtime CUDA graphs run through IO binding; drop cuda_graphs or "
            "keep io_binding"
        )
    # With fallback the session config itself ends on the CPU when the provider is unusable.
    config = SessionConfig(
        providers=(m.provider,),
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
    # Streaming graphs run whole sequences from zero state; any other model runs on the
    # user's inputs or on inputs made from its signature.
    feeds, input_notes, _ = benchmark_feeds(
        specs, batch=m.batch, seq=m.seq, inputs=m.inputs, dims=m.dims
    )
    x = feeds[specs[0].name]
    names = [o.name for o in opened.session.get_outputs()]
    # The provider that really opened decides: a fallback to the CPU has nothing to bind.
    bind = m.io_binding and opened.provider in ("cuda", "tensorrt")
    run: Callable[[], object]
    if m.mode == "streaming":

        def push() -> object:
            return stream.push(x)

        run = push
    elif bind:
        runner = DeviceRunner(opened, feeds)

        def run_device() -> object:
            return runner.run(feeds)

        run = run_device
    else:

        def run_session() -> object:
            return opened.session.run(names, feeds)

        run = run_session
    info = {
        "session_create_ms": create_ms,
        "provider": opened.provider,
        "device": opened.device,
        "placement": dict(opened.placement),
        "notes": [*opened.notes, *input_notes],
        "io_binding": m.mode == "streaming" or bind,
    }
    return Prepared(run, info)


def _torch(m: Measurement) -> Prepared:
    import torch

    from edgelstm.benchmarks.torch_baseline import torch_inputs, torch_model

    if m.cuda_graphs and (m.provider != "cuda" or m.mode != "sequence"):
        raise InvalidInputError(
            f"cuda_graphs for torch captures a whole-sequence forward on CUDA; this row is "
            f"{m.mode} on {m.provider} (use provider cuda and mode sequence, or drop cuda_graphs)"
        )
    torch.set_num_threads(m.threads)
    started = time.perf_counter()
    checkpoint, model, device = torch_model(m)
    create_ms = (time.perf_counter() - started) * 1000.0
    x = torch_inputs(m, checkpoint, device)
    notes: list[str] = []
    run: Callable[[], object]
    if m.mode == "streaming":
        run = _torch_step(checkpoint.model, model, x, device, m.batch)
    elif m.cuda_graphs:
        capture_started = time.perf_counter()
        run = _captured_forward(model, x, device)
        # Set-up, as a deployment would pay it once before its first call.
        create_ms += (time.perf_counter() - capture_started) * 1000.0
        notes.append("torch.cuda.CUDAGraph captured once at this fixed shape, then replayed")
    else:
        run = _torch_forward(model, x, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    info: dict[str, Any] = {
        "session_create_ms": create_ms,
        "provider": m.provider,
        "placement": {},
        "notes": notes,
        "io_binding": False,
    }

    def before() -> None:
        torch.set_num_threads(m.threads)  # global in torch: set again for every chunk

    def finish() -> None:
        if device.type == "cuda":
            info["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    prepared = Prepared(run, info, before)
    info["_finish"] = finish
    return prepared


def _synchronize(device: Any) -> None:
    """Wait for a CUDA device's queued work, so a timed call includes it (no-op on CPU)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _torch_step(trained: Any, model: Any, x: Any, device: Any, batch: int) -> Callable[[], object]:
    """One streaming step of ``model`` per call, its state carried from call to call and
    starting from the zeros the streaming export of ``trained`` starts from."""
    import torch

    from edgelstm.exporters.graphs import state_shapes

    # The state the streaming export carries (h, c, a conv front end's frames), zeros.
    state: tuple[Any, ...] = tuple(
        torch.zeros([batch if isinstance(d, str) else d for d in shape], device=device)
        for shape in state_shapes(trained).values()
    )

    def step() -> object:
        nonlocal state
        with torch.no_grad():
            result, state = model.step(x, state)
        _synchronize(device)
        return result

    return step


def _torch_forward(model: Any, x: Any, device: Any) -> Callable[[], object]:
    """One eager whole-sequence forward of ``x`` (a tensor, or a tuple of a user module's
    inputs) per call."""
    import torch

    args = x if isinstance(x, tuple) else (x,)

    def forward() -> object:
        with torch.no_grad():
            result = model(*args)
        _synchronize(device)
        return result

    return forward


def _captured_forward(model: Any, x: Any, device: Any) -> Callable[[], object]:
    """``model(x)`` captured once in a ``torch.cuda.CUDAGraph``; each call replays it and waits.

    The input stays in its device buffer, as in the eager CUDA row, so each replay computes
    the same numbers an eager forward of ``x`` would.
    """
    import torch

    # Warm up on a side stream first (torch.cuda.graphs' recipe): cuDNN picks its kernels and
    # allocates workspaces then, which it must not do during capture.
    side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        out = model(x)

    def replay() -> object:
        graph.replay()
        torch.cuda.synchronize(device)
        return out

    return replay


def prepare(m: Measurement) -> Prepared:
    """Set ``m`` up (session or model), make the first call and the warm-up calls."""
    if m.runtime == "onnxruntime":
        prepared = _onnx(m)
    elif m.runtime == "torch":
        prepared = _torch(m)
    else:
        raise InvalidInputError(f"unknown runtime {m.runtime!r}; use onnxruntime or torch")
    _warm(prepared, m)
    return prepared


def _quota(m: Measurement, rounds: int, index: int) -> dict[str, Any]:
    """The share of ``m``'s timed calls (or seconds) that round ``index`` of ``rounds`` takes."""
    if m.duration_s is not None:
        return {"seconds": m.duration_s / rounds}
    total = m.iterations or 1
    return {"count": total // rounds + (1 if index < total % rounds else 0)}


def finish_row(m: Measurement, info: dict[str, Any], samples: list[float]) -> dict[str, Any]:
    """Statistics plus setup facts: the raw row the harness completes."""
    finish = info.pop("_finish", None)
    if callable(finish):
        finish()
    if m.duration_s is not None and len(samples) < 10:
        # A bug in the timing loop, not the user's input: let it show as one.
        raise RuntimeError("internal: a duration run must time at least 10 calls")
    stats = latency_stats(samples)
    row: dict[str, Any] = {**stats.to_json()}
    # Sequences per second (streaming: streams advanced per second) and frames per second.
    row["throughput_per_s"] = throughput(m.batch, stats.p50_ms)
    row["frames_per_s"] = throughput(m.batch * m.seq, stats.p50_ms)
    row.update(info)
    return row


def measure(m: Measurement) -> dict[str, Any]:
    """Time ``m`` alone in this process; returns the raw row (statistics and setup facts)."""
    prepared = prepare(m)
    if m.duration_s is not None:
        samples = _time_calls(prepared, seconds=m.duration_s)
        samples += _time_calls(prepared, count=max(0, 10 - len(samples)))
    else:
        samples = _time_calls(prepared, count=m.iterations or 1)
    return finish_row(m, prepared.info, samples)


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


def _describe_error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, EdgeLSTMError) else f"{type(exc).__name__}: {exc}"


def time_in_worker(connection: Any, m: Measurement) -> None:
    """Worker process: prepare ``m``, then time calls on request until told to finish."""
    try:
        prepared = prepare(m)
    except Exception as exc:  # report, don't hang the parent: the parent raises it
        connection.send(("error", _describe_error(exc)))
        connection.close()
        return
    connection.send(("ready", None))
    try:
        while True:
            command, argument = connection.recv()
            if command == "time":
                connection.send(("samples", _time_calls(prepared, **argument)))
            else:
                info = dict(prepared.info)
                finish = info.pop("_finish", None)
                if callable(finish):
                    finish()
                info["peak_rss_mb"] = _peak_rss_mb()
                connection.send(("done", info))
                return
    except Exception as exc:
        connection.send(("error", _describe_error(exc)))
    finally:
        connection.close()


class _Runner:
    """One configuration being timed, in this process or in a worker process."""

    def __init__(self, m: Measurement, isolate: bool, timeout_s: float) -> None:
        self.m = m
        self.timeout_s = timeout_s
        self.process: Any = None
        self.local: Prepared | None = None
        if not isolate:
            self.local = prepare(m)
            return
        self.process = WorkerProcess("edgelstm.benchmarks.measure:time_in_worker", m)
        self.connection = self.process.connection
        try:
            self._receive("ready")
        except BaseException:
            self.close()  # the caller never holds a runner that failed to start
            raise

    def _receive(self, expected: str) -> Any:
        m = self.m
        try:
            if not self.connection.poll(self.timeout_s):
                raise InvalidInputError(
                    f"{m.model}: no answer from the worker within {self.timeout_s:.0f} s; use "
                    "fewer --iterations or smaller shapes"
                )
            status, payload = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise InvalidInputError(
                f"{m.model}: the worker process died (exit code {self.process.exitcode}) "
                f"while timing {m.runtime}/{m.provider}; run it with --no-isolate to see why"
            ) from None
        if status == "error":
            raise InvalidInputError(str(payload))
        if status != expected:
            raise RuntimeError(f"internal: worker said {status!r}, expected {expected!r}")
        return payload

    def time(self, quota: dict[str, Any]) -> list[float]:
        if self.local is not None:
            return _time_calls(self.local, **quota)
        self.connection.send(("time", quota))
        samples: list[float] = self._receive("samples")
        return samples

    def finish(self) -> dict[str, Any]:
        if self.local is not None:
            return self.local.info
        self.connection.send(("finish", None))
        info: dict[str, Any] = self._receive("done")
        self.close()
        return info

    def close(self) -> None:
        if self.process is None:
            return
        self.process.close()
        self.process = None


def measure_interleaved(
    measurements: list[Measurement],
    *,
    rounds: int = 5,
    isolate: bool = True,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Time several configurations side by side: each round gives every one its share.

    All configurations are set up first (each in its own process when ``isolate``), then
    timed in ``rounds`` alternating slices, so a slow spell of the machine (frequency
    changes, a neighbour on a shared host) lands on every row instead of on whichever row
    happened to run then. Only one configuration runs at a time.
    """
    if rounds < 1:
        raise InvalidInputError(f"rounds must be >= 1, got {rounds}")
    runners: list[_Runner] = []
    try:
        for m in measurements:
            runners.append(_Runner(m, isolate, timeout_s))
        samples: list[list[float]] = [[] for _ in measurements]
        for index in range(rounds):
            for runner, collected in zip(runners, samples, strict=True):
                collected += runner.time(_quota(runner.m, rounds, index))
        for runner, collected in zip(runners, samples, strict=True):
            if len(collected) < 10 and runner.m.duration_s is not None:
                collected += runner.time({"count": 10 - len(collected)})
        infos = [runner.finish() for runner in runners]
    finally:
        for runner in runners:
            runner.close()
    return [
        finish_row(m, info, collected)
        for m, info, collected in zip(measurements, infos, samples, strict=True)
    ]


def measure_isolated(m: Measurement, timeout_s: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """Time ``m`` alone in a fresh Python process (fills ``peak_rss_mb``)."""
    return measure_interleaved([m], rounds=1, isolate=True, timeout_s=timeout_s)[0]


def environment(threads: tuple[int, ...]) -> dict[str, Any]:
    """The fingerprint stored with every report: hardware, library versions, thread settings."""
    import importlib.metadata as md

    from edgelstm.hardware import cpu_info, gpu_info
    from edgelstm.version import __version__

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    from edgelstm.runtimes.ort.onnxruntime_import import installed_onnxruntime_distributions

    # onnxruntime, onnxruntime-gpu or onnxruntime-openvino: whichever ships `import onnxruntime`.
    ort_dist = next((name for name, _ in installed_onnxruntime_distributions()), "onnxruntime")
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
