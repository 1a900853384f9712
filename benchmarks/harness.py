"""``edgelstm benchmark``: every model x provider x shape x thread count, PyTorch alongside.

:func:`run_benchmark` expands a frozen :class:`BenchmarkPlan` into measurements, times each
(in its own process by default, see :mod:`edgelstm.benchmarks.measure`), scores each artifact
on a checkpoint's test split when ``eval_run`` is given, and returns a
:class:`BenchmarkReport` whose rows follow the ``edgelstm.benchmark/1`` schema
(:mod:`edgelstm.benchmarks.report` writes it as JSON, Markdown, a table and plots).

Example::

    >>> plan = BenchmarkPlan(models=(Path("jv.onnx"), Path("jv.int8.onnx")),
    ...                      torch_run=Path("runs/jv"), batches=(1, 8))  # doctest: +SKIP
    >>> report = run_benchmark(plan)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.benchmarks.measure import Measurement, environment, measure_interleaved
from edgelstm.benchmarks.model_inputs import row_shape
from edgelstm.errors import InvalidInputError, MissingDependencyError, ProviderUnavailableError
from edgelstm.extras import install_hint, is_installed

__all__ = [
    "BENCHMARK_SCHEMA",
    "BenchmarkPlan",
    "BenchmarkReport",
    "provider_label",
    "run_benchmark",
]

#: ``schema`` of the benchmark JSON; bump on incompatible changes to row fields.
BENCHMARK_SCHEMA = "edgelstm.benchmark/1"

#: ``progress(done, total, label)`` after each configuration.
Progress = Callable[[int, int, str], None]


def provider_label(row: dict[str, Any]) -> str:
    """The provider a row ran on, and the one asked for when they differ (table and plots)."""
    requested = row.get("requested_provider", row["provider"])
    if requested != row["provider"]:
        return f"{row['provider']} (asked {requested})"
    return str(row["provider"])


@dataclass(frozen=True)
class BenchmarkPlan:
    """What to measure. Every combination of the tuples becomes one row.

    ``providers`` are short names, or ``("all",)`` for every provider that really runs here
    (probed; the others are listed in the report's ``skipped``). ``stream`` adds streaming
    rows (``chunks`` frames per push, for models with state inputs) to the sequence rows.
    ``torch_run`` adds PyTorch eager FP32 and dynamic-INT8 baselines from a checkpoint, or
    from a user module ``FILE.py:FACTORY`` (with ``torch_weights``) fed the first model's inputs;
    ``eval_run`` scores every artifact on that checkpoint's test split.
    ``frame_rate`` (Hz) turns streaming per-frame latency into a real-time factor.
    With ``stream`` and a sequence export among the models, streaming exports get only
    streaming rows (their whole-sequence rows would repeat the sequence export's).
    ``cuda_graphs`` measures CUDA rows with and without CUDA graphs. Rows of one shape and
    thread count are set up together and timed in ``rounds`` alternating slices
    (:func:`~edgelstm.benchmarks.measure.measure_interleaved`), so their ratios are fair.
    """

    models: tuple[Path, ...]
    providers: tuple[str, ...] = ("cpu",)
    batches: tuple[int, ...] = (1,)
    seqs: tuple[int, ...] = (100,)
    threads: tuple[int, ...] = (1,)
    stream: bool = False
    chunks: tuple[int, ...] = (1,)
    torch_run: Path | None = None
    eval_run: Path | None = None
    warmup: int = 10
    iterations: int | None = 100
    duration_s: float | None = None
    frame_rate: float = 100.0
    fallback: bool = False
    cuda_graphs: bool = False
    isolate: bool = True
    #: timed calls are split into this many alternating slices per comparison group.
    rounds: int = 5
    #: ``.npz`` of real inputs by input name: rows take their shape from it (not batches,
    #: seqs); any ONNX model can be timed on them.
    inputs: Path | None = None
    #: sizes of named symbolic axes when inputs are synthesised (``--dim seq_len=64``).
    dims: tuple[tuple[str, int], ...] = ()
    #: weights of a user module given as ``torch_run`` (``FILE.py:FACTORY``).
    torch_weights: Path | None = None

    def __post_init__(self) -> None:
        if not self.models and self.torch_run is None:
            raise InvalidInputError("give at least one MODEL.onnx (or --torch RUN_DIR)")
        for name, values in (
            ("--batch", self.batches),
            ("--seq", self.seqs),
            ("--threads", self.threads),
            ("--chunk", self.chunks),
        ):
            if not values or any(v < 1 for v in values):
                raise InvalidInputError(f"{name} needs positive integers, got {list(values)}")
        if self.iterations is not None and self.iterations < 1:
            raise InvalidInputError(f"--iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise InvalidInputError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.warmup < 0:
            raise InvalidInputError(f"--warmup must be >= 0, got {self.warmup}")
        if self.rounds < 1:
            raise InvalidInputError(f"--rounds must be >= 1, got {self.rounds}")
        if self.frame_rate <= 0:
            raise InvalidInputError(f"--frame-rate must be > 0 Hz, got {self.frame_rate}")
        for model in self.models:
            if not Path(model).is_file():
                raise InvalidInputError(f"model file {model} does not exist")
        if self.torch_run is not None and not self.torch_run.is_dir():
            if ":" not in str(self.torch_run):
                raise InvalidInputError(
                    f"--torch {self.torch_run}: give a checkpoint folder (edgelstm train --out) "
                    "or your module as FILE.py:FACTORY (with --weights)"
                )
            if not self.models:
                raise InvalidInputError(
                    f"--torch {self.torch_run}: PyTorch rows of your module are fed what an "
                    "ONNX model's rows get; give its export too (benchmark MODEL.onnx --torch ...)"
                )
        elif self.torch_weights is not None:
            raise InvalidInputError(
                "--weights goes with --torch FILE.py:FACTORY; a checkpoint folder has its own"
            )
        if self.inputs is not None and self.stream:
            raise InvalidInputError(
                "--inputs times whole calls on the arrays given; drop --stream (streaming rows "
                "push frames of an edgelstm streaming export)"
            )

    def to_json(self) -> dict[str, Any]:
        """The plan as stored in the report (paths as strings)."""
        return {
            "models": [str(m) for m in self.models],
            "providers": list(self.providers),
            "batches": list(self.batches),
            "seqs": list(self.seqs),
            "threads": list(self.threads),
            "stream": self.stream,
            "chunks": list(self.chunks),
            "torch_run": None if self.torch_run is None else str(self.torch_run),
            "eval_run": None if self.eval_run is None else str(self.eval_run),
            "warmup": self.warmup,
            "iterations": self.iterations,
            "duration_s": self.duration_s,
            "frame_rate": self.frame_rate,
            "fallback": self.fallback,
            "cuda_graphs": self.cuda_graphs,
            "isolate": self.isolate,
            "rounds": self.rounds,
            "inputs": None if self.inputs is None else str(self.inputs),
            "dims": dict(self.dims),
            "torch_weights": None if self.torch_weights is None else str(self.torch_weights),
        }


@dataclass(frozen=True)
class BenchmarkReport:
    """Rows plus what is needed to trust and reproduce them."""

    environment: dict[str, Any]
    plan: dict[str, Any]
    rows: tuple[dict[str, Any], ...]
    skipped: tuple[dict[str, str], ...] = ()
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: what can make rows wrong on this machine, e.g. 8-bit INT8 weights on a CPU without VNNI.
    warnings: tuple[str, ...] = ()
    #: with ``eval_run``: the checkpoint's baselines (:func:`baselines_json`), else None.
    baselines: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``edgelstm.benchmark/1`` document."""
        return {
            "schema": BENCHMARK_SCHEMA,
            "command": self.command,
            "environment": self.environment,
            "plan": self.plan,
            "rows": list(self.rows),
            "skipped": list(self.skipped),
            "warnings": list(self.warnings),
            **({} if self.baselines is None else {"baselines": self.baselines}),
            **self.extra,
        }


# --------------------------------------------------------------------------------------------
# expanding the plan


def _model_facts(path: Path) -> dict[str, Any]:
    """Precision, streaming capability, feature count and label of one ONNX artifact."""
    from edgelstm.runtimes.ort.artifact import load_artifact

    artifact = load_artifact(path, verify=False)  # the graph, read once
    profile, meta, graph = artifact.profile, artifact.metadata, artifact.proto.graph
    size = path.stat().st_size
    data = path.with_name(path.name + ".data")
    if data.is_file():
        size += data.stat().st_size
    constants = {init.name for init in graph.initializer}
    return {
        "precision": profile.precision,
        "streamable": profile.streaming,
        # a strided front end streams whole strides only (see _stream_chunk)
        "chunk_multiple": meta.stream_chunk_multiple if meta is not None else 1,
        "size_mb": size / 2**20,
        "ops": profile.op_types,
        "profile": profile,
        "first_input": next((i.name for i in graph.input if i.name not in constants), ""),
        # an adopted model that reads one window per call is timed at that, in either mode,
        # and one whose state has no batch axis at one stream per call
        "frames_per_call": meta.stream_frames_per_call if meta is not None else None,
        "max_batch": meta.stream_max_batch if meta is not None else None,
    }


def _stream_chunk(chunk: int, multiple: int) -> int:
    """The chunk a model is timed at: ``chunk`` rounded up to whole strides of its front end
    (a stride-2 model cannot take one frame; the row's ``chunk`` says what was timed)."""
    return -(-chunk // multiple) * multiple


def _warnings(
    facts: dict[Path, dict[str, Any]], providers: list[str], unusable: frozenset[str]
) -> tuple[str, ...]:
    """Per model and provider that runs it here, what can make its rows wrong."""
    from edgelstm.runtimes.ort.session import reduce_range_warning

    found: list[str] = []
    for path, info in facts.items():
        for provider in providers:
            ran_on = "cpu" if provider in unusable else provider  # --fallback rows run on cpu
            warning = reduce_range_warning(Path(path), info["profile"], provider=ran_on)
            if warning is not None and warning not in found:
                found.append(warning)
    return tuple(found)


def _resolve_providers(
    names: tuple[str, ...], fallback: bool
) -> tuple[list[str], list[dict[str, str]]]:
    from edgelstm.runtimes.ort.provider_report import probe_provider
    from edgelstm.runtimes.ort.providers import available_providers, resolve_provider, split_device

    skipped: list[dict[str, str]] = []
    if names == ("all",):
        usable = []
        for spec in available_providers():
            probe = probe_provider(spec.name)
            if probe.usable:
                usable.append(spec.name)
            else:
                skipped.append({"provider": spec.name, "reason": probe.detail})
        return usable, skipped
    resolved = []
    for name in names:
        base, device = split_device(name)
        spec = resolve_provider(base)
        # openvino:GPU and openvino:CPU are different targets; keep the device in the name.
        label = spec.name if device is None else f"{spec.name}:{device}"
        probe = probe_provider(label)
        if not probe.usable:
            if not fallback:
                raise ProviderUnavailableError(
                    f"{label}: {probe.detail}; add --fallback to measure on the CPU instead "
                    "(rows then say which provider ran), or --providers all"
                )
            skipped.append({"provider": label, "reason": probe.detail + " (ran on cpu)"})
        if label not in resolved:
            resolved.append(label)
    return resolved, skipped


def _label(path: Path, labels: dict[str, int]) -> str:
    name = path.name
    labels[name] = labels.get(name, 0) + 1
    return name if labels[name] == 1 else f"{name} ({labels[name]})"


def _plan_measurements(
    plan: BenchmarkPlan,
    providers: list[str],
    facts: dict[Path, dict[str, Any]],
    unusable: frozenset[str] = frozenset(),
) -> list[tuple[Measurement, dict[str, Any]]]:
    base: dict[str, Any] = {
        "warmup": plan.warmup,
        "iterations": None if plan.duration_s is not None else plan.iterations,
        "duration_s": plan.duration_s,
    }
    items: list[tuple[Measurement, dict[str, Any]]] = []
    labels: dict[str, int] = {}
    # With --inputs one shape, the arrays'; each model's row reads it below.
    shapes = [("sequence", s) for s in (plan.seqs if plan.inputs is None else plan.seqs[:1])]
    if plan.stream:
        shapes += [("streaming", c) for c in plan.chunks]
    has_sequence_export = any(not f["streamable"] for f in facts.values())
    planned: set[tuple[Path, str, str, int]] = set()
    for path in plan.models:
        info = facts[path]
        label = _label(path, labels)
        skip_sequence = plan.stream and info["streamable"] and has_sequence_export
        for provider in providers:
            # --cuda-graphs measures CUDA rows both ways, so the table shows what it buys.
            graph_options = (False, True) if plan.cuda_graphs and provider == "cuda" else (False,)
            for mode, requested in shapes:
                if (mode == "streaming" and not info["streamable"]) or (
                    mode == "sequence" and skip_sequence
                ):
                    continue
                steps = requested
                if mode == "streaming":
                    steps = _stream_chunk(requested, info["chunk_multiple"])
                if info["frames_per_call"] is not None:
                    steps = info["frames_per_call"]
                if (path, provider, mode, steps) in planned:
                    continue  # two requested lengths that time the same (one window per call)
                planned.add((path, provider, mode, steps))
                batches = plan.batches
                if info["max_batch"] is not None:
                    batches = tuple(b for b in batches if b <= info["max_batch"]) or (1,)
                if plan.inputs is not None:  # the arrays given decide the shape
                    batch_given, steps = row_shape(plan.inputs, info["first_input"])
                    batches = (batch_given,)
                for batch, threads, graphs in itertools.product(
                    batches, plan.threads, graph_options
                ):
                    if graphs and mode == "streaming":
                        continue  # streaming pushes change the state buffers every call
                    m = Measurement(
                        model=str(path),
                        runtime="onnxruntime",
                        provider=provider,
                        precision=info["precision"],
                        mode=mode,
                        batch=batch,
                        seq=steps,
                        threads=threads,
                        fallback=plan.fallback,
                        cuda_graphs=graphs,
                        inputs=None if plan.inputs is None else str(plan.inputs),
                        dims=plan.dims,
                        **base,
                    )
                    items.append((m, {"label": label, "size_mb": info["size_mb"]}))
    if plan.torch_run is not None:
        items += _torch_measurements(plan, providers, facts, shapes, base, unusable)
    return items


def _torch_measurements(
    plan: BenchmarkPlan,
    providers: list[str],
    facts: dict[Path, dict[str, Any]],
    shapes: list[tuple[str, int]],
    base: dict[str, Any],
    unusable: frozenset[str],
) -> list[tuple[Measurement, dict[str, Any]]]:
    """PyTorch eager rows (FP32 and dynamic INT8) of ``--torch``: a checkpoint, or a user
    module (``FILE.py:FACTORY``) fed the arrays the first ONNX model's rows get."""
    assert plan.torch_run is not None
    user_module = not plan.torch_run.is_dir()
    # PyTorch runs on CUDA only where the CUDA provider really runs (not via --fallback).
    torch_devices = ["cpu"] + [p for p in providers if p == "cuda" and p not in unusable]
    # PyTorch streams the chunks the ONNX streaming rows beside it were timed at.
    multiple = max((f["chunk_multiple"] for f in facts.values() if f["streamable"]), default=1)
    feeds_from = str(plan.models[0]) if user_module and plan.models else None
    batches, given = plan.batches, None
    if plan.inputs is not None and plan.models:
        given = row_shape(plan.inputs, facts[plan.models[0]]["first_input"])
        batches = (given[0],)
    items: list[tuple[Measurement, dict[str, Any]]] = []
    for precision, device, (mode, steps), batch, threads in itertools.product(
        ("fp32", "int8"), torch_devices, shapes, batches, plan.threads
    ):
        if (precision == "int8" and device != "cpu") or (user_module and mode == "streaming"):
            continue
        if mode == "streaming":
            steps = _stream_chunk(steps, multiple)
        elif given is not None:
            steps = given[1]
        m = Measurement(
            model=str(plan.torch_run),
            runtime="torch",
            provider=device,
            precision=precision,
            mode=mode,
            batch=batch,
            seq=steps,
            threads=threads,
            inputs=None if plan.inputs is None else str(plan.inputs),
            dims=plan.dims,
            weights=None if plan.torch_weights is None else str(plan.torch_weights),
            feeds_from=feeds_from,
            **base,
        )
        items.append((m, {"label": f"pytorch eager {precision}", "size_mb": None}))
    return items


# --------------------------------------------------------------------------------------------
# scoring


def _scores(plan: BenchmarkPlan) -> tuple[str | None, dict[str, float]]:
    """Task metric per artifact (and for the torch baselines) on the eval run's test split.

    The quantization gate scores through the same function
    (:func:`~edgelstm.runtimes.model_io.accuracy.evaluate_onnx`), so a model's
    ``metric_value`` here is the
    number its gate reported.
    """
    if plan.eval_run is None:
        return None, {}
    from edgelstm.runtimes.model_io.accuracy import evaluate_onnx
    from edgelstm.training.evaluation import EvaluationData, evaluate

    data = EvaluationData.from_run(plan.eval_run)
    scores = {str(path): evaluate_onnx(path, data) for path in plan.models}
    if plan.torch_run is not None and plan.torch_run.is_dir():  # a user module is not scored
        from edgelstm.training.checkpoint import load_checkpoint
        from edgelstm.training.trainer import torch_predictor

        model = load_checkpoint(plan.torch_run).model
        scores[f"torch:{plan.torch_run}"] = evaluate(torch_predictor(model), data)
    return data.gate.metric, scores


def baselines_json(run_dir: Path, metric: str) -> dict[str, Any]:
    """The ``baselines`` object of a report scored on ``run_dir``'s test split.

    The baselines training stored in the checkpoint's ``metrics.json`` (majority class, 1-NN
    ED/DTW; random scores; seasonal naive) with ``summary``, the line printed under the table.
    A checkpoint without them (trained before they were recorded) gets ``values`` null and a
    summary that says so. The rows' ``clears_chance`` and ``beats_best_baseline`` judge each
    ``metric_value`` by these numbers.
    """
    from edgelstm.exporters.audit import CheckpointBaselines

    baselines = CheckpointBaselines.read(run_dir)
    if baselines is None or baselines.metric != metric:
        missing = CheckpointBaselines.missing(run_dir)
        return {"run": str(run_dir), "metric": metric, "values": None, "summary": missing}
    document = baselines.to_json({})
    del document["scores"], document["warnings"]  # the rows carry each artifact's verdict
    return document


def mark_baselines(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """``clears_chance`` / ``beats_best_baseline`` on every scored row (None: no score)."""
    from edgelstm.exporters.audit import CheckpointBaselines

    baselines = CheckpointBaselines.read(run_dir)
    for row in rows:
        if baselines is None or row.get("metric") != baselines.metric:
            continue
        value = row.get("metric_value")
        row["clears_chance"] = baselines.clears_chance(value)
        row["beats_best_baseline"] = baselines.beats_best(value)


# --------------------------------------------------------------------------------------------
# running


def _row(
    m: Measurement, extra: dict[str, Any], raw: dict[str, Any], frame_rate: float
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": extra["label"],
        "path": m.model,
        "runtime": m.runtime,
        "provider": raw.get("provider", m.provider),
        "requested_provider": m.provider,
        "precision": m.precision,
        "mode": m.mode,
        "batch": m.batch,
        "seq": m.seq if m.mode == "sequence" else None,
        "chunk": m.seq if m.mode == "streaming" else None,
        "threads": m.threads,
        "cuda_graphs": m.cuda_graphs,
    }
    row.update(raw)
    row["size_mb"] = extra["size_mb"]
    row.setdefault("peak_rss_mb", None)
    row.setdefault("gpu_peak_mb", None)
    if m.mode == "streaming":
        per_frame = row["p50_ms"] / m.seq
        row["frame_p50_ms"] = per_frame
        row["frame_p99_ms"] = row["p99_ms"] / m.seq
        row["frame_rate_hz"] = frame_rate
        # Compute time per frame over the time between frames: < 1 keeps up with the sensor.
        row["real_time_factor"] = per_frame / (1000.0 / frame_rate)
    return row


def _baseline_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["mode"], row["batch"], row["seq"], row["chunk"], row["threads"])


def add_baseline_ratios(rows: list[dict[str, Any]]) -> None:
    """``vs_torch_fp32``: each row's p50 over the PyTorch eager FP32 CPU row of the same shape."""
    baselines = {
        _baseline_key(r): r["p50_ms"]
        for r in rows
        if r["runtime"] == "torch" and r["precision"] == "fp32" and r["provider"] == "cpu"
    }
    for row in rows:
        base = baselines.get(_baseline_key(row))
        row["vs_torch_fp32"] = None if base is None or base <= 0 else row["p50_ms"] / base


def _without_torch_rows_if_torch_missing(
    plan: BenchmarkPlan,
) -> tuple[BenchmarkPlan, list[dict[str, str]]]:
    """On a device install (no torch), ``--torch`` rows are skipped with the reason.

    The ONNX rows are what a device benchmark is for; failing them all because the PyTorch
    baseline cannot run would leave the user with nothing. Without models there is nothing
    else to measure, so that stays an error naming the extra.
    """
    if plan.torch_run is None or is_installed("torch"):
        return plan, []
    reason = f"PyTorch baselines need torch, which is not installed: {install_hint('train')}"
    if not plan.models:
        raise MissingDependencyError(f"--torch {plan.torch_run}: {reason}")
    return dataclasses.replace(plan, torch_run=None), [{"provider": "pytorch", "reason": reason}]


def run_benchmark(
    plan: BenchmarkPlan, *, progress: Progress | None = None, command: str | None = None
) -> BenchmarkReport:
    """Measure every configuration of ``plan``; see the module docstring."""
    requested = plan
    plan, torch_skipped = _without_torch_rows_if_torch_missing(plan)
    providers, skipped = _resolve_providers(plan.providers, plan.fallback)
    skipped += torch_skipped
    if not providers:
        raise ProviderUnavailableError("no execution provider is usable here")
    facts = {path: _model_facts(Path(path)) for path in plan.models}
    metric, scores = _scores(plan)
    unusable = frozenset(s["provider"] for s in skipped)
    items = _plan_measurements(plan, providers, facts, unusable)
    if not items:
        raise InvalidInputError(
            "nothing to measure: --stream needs models exported with --streaming"
        )
    # Rows that are compared with each other (same shape and threads) are timed side by side.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, (m, _) in enumerate(items):
        groups.setdefault((m.mode, m.batch, m.seq, m.threads), []).append(index)
    raws: dict[int, dict[str, Any]] = {}
    for indices in groups.values():
        measured = measure_interleaved(
            [items[i][0] for i in indices], rounds=plan.rounds, isolate=plan.isolate
        )
        raws.update(zip(indices, measured, strict=True))
        if progress is not None:
            m = items[indices[0]][0]
            progress(len(raws), len(items), f"{m.mode} batch {m.batch} x {m.seq}")
    rows: list[dict[str, Any]] = []
    for index, (m, extra) in enumerate(items):
        row = _row(m, extra, raws[index], plan.frame_rate)
        if metric is not None:
            key = f"torch:{plan.torch_run}" if m.runtime == "torch" else m.model
            row["metric"] = metric
            # Dynamic INT8 in torch is not scored separately: its metric is not the FP32 one.
            row["metric_value"] = (
                None if m.runtime == "torch" and m.precision != "fp32" else scores.get(key)
            )
        rows.append(row)
    add_baseline_ratios(rows)
    baselines = None
    if metric is not None and plan.eval_run is not None:
        mark_baselines(rows, plan.eval_run)
        baselines = baselines_json(plan.eval_run, metric)
    return BenchmarkReport(
        environment=environment(plan.threads),
        plan=requested.to_json(),
        rows=tuple(rows),
        skipped=tuple(skipped),
        command=command,
        warnings=_warnings(facts, providers, unusable),
        baselines=baselines,
    )
