"""The two engines that run a batch plan: this process (``local``) or a Ray cluster (``ray``).

Both hand every :class:`~edgelstm.runtimes.batch.plan.Partition` to a
:class:`~edgelstm.runtimes.batch.partitions.PartitionRunner` and report each
:class:`~edgelstm.runtimes.batch.partitions.PartitionOutcome` as it arrives; they differ only
in where the runners live. edgelstm grows no worker pool of its own: on Ray, the plan becomes
a Ray Data dataset of partitions and ``map_batches`` runs a pool of actors, one session
each, created once; Ray restarts a killed actor and retries its partition, which then
replaces its own output file (no duplicate rows).

Resources are chosen so a small machine cannot deadlock: each actor asks for a fraction of a
CPU (never all of them, ray-project/ray#44687), runs ``threads`` ONNX Runtime threads, and a
pool that the cluster cannot hold is refused before anything starts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from edgelstm.errors import EdgeLSTMError, InvalidInputError, ProviderUnavailableError
from edgelstm.runtimes.batch.partitions import PartitionOutcome, PartitionRunner, RunnerConfig
from edgelstm.runtimes.batch.plan import Partition

__all__ = [
    "ENGINES",
    "EngineReport",
    "RayOptions",
    "WorkerResources",
    "run_local",
    "run_on_ray",
    "worker_resources",
]

ENGINES = ("local", "ray")

#: Returns False to stop the run (a bad input without --skip-bad).
OutcomeHandler = Callable[[PartitionOutcome], bool]

#: CPU left unclaimed by the actors, for Ray Data's own tasks and the driver.
_CPU_HEADROOM = 0.5


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where and how wide to run on Ray.

    ``address`` is ``None`` for a Ray started here (or the one this process already joined),
    ``auto`` for the cluster of this node (``ray start --head``), ``ray://HOST:10001`` for a
    remote one. ``workers`` is the actor count (default: one per ``threads`` CPUs, or one per
    GPU), ``cpus_per_worker`` the logical CPUs each reserves (default: what leaves
    headroom), ``runtime_env`` Ray's runtime environment for the actors (``env_vars``,
    ``pip``...).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float | None = None
    runtime_env: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InvalidInputError(f"--workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise InvalidInputError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")


@dataclass(frozen=True)
class EngineReport:
    """How an engine ran: its workers, its start-up time (until the first partition began:
    Ray, the actors, their sessions) and its shutdown time (stopping a Ray started here)."""

    engine: str
    workers: int
    startup_seconds: float
    resources: dict[str, Any]
    notes: tuple[str, ...] = ()
    shutdown_seconds: float = 0.0


@dataclass(frozen=True)
class WorkerResources:
    """One actor's reservation and ONNX Runtime threads; ``workers`` actors in the pool."""

    workers: int
    cpus: float
    gpus: float
    threads: int


def worker_resources(
    cluster_cpus: float,
    cluster_gpus: float,
    *,
    workers: int | None,
    cpus_per_worker: float | None,
    threads: int | None,
    gpu: bool,
) -> WorkerResources:
    """The actor pool a cluster of ``cluster_cpus`` CPUs and ``cluster_gpus`` GPUs can hold.

    Each actor runs ``threads`` ONNX Runtime threads (default 1) and reserves that many CPUs
    at most, less when ``workers`` actors would otherwise claim every CPU: Ray Data then has
    no CPU left to schedule on and waits forever (ray-project/ray#44687). A pool the cluster
    cannot hold (an actor that would never start) is refused, naming what fits.
    """
    threads = threads or 1
    if gpu:
        if cluster_gpus < 1:
            raise ProviderUnavailableError(
                "the Ray cluster has no GPU for a CUDA/TensorRT provider; add GPU nodes, "
                "or use --provider cpu (or --fallback)"
            )
        count = workers or int(cluster_gpus)
        if count > cluster_gpus:
            raise InvalidInputError(
                f"--workers {count} needs {count} GPUs; the Ray cluster has "
                f"{cluster_gpus:g}: use --workers {int(cluster_gpus)}"
            )
    else:
        count = workers or max(1, int(cluster_cpus // threads))
    usable = max(cluster_cpus - _CPU_HEADROOM, 0.1)
    cpus = cpus_per_worker or min(float(threads), usable / count)
    cpus = math.floor(cpus * 100) / 100
    if cpus <= 0 or count * cpus > cluster_cpus + 1e-9:
        fits = max(1, int(cluster_cpus // (cpus_per_worker or 1)))
        raise InvalidInputError(
            f"{count} workers x {cpus_per_worker or cpus:g} CPUs do not fit the Ray "
            f"cluster's {cluster_cpus:g} CPUs (the pool would wait for CPUs forever): use "
            f"--workers {fits} or a smaller --cpus-per-worker"
        )
    return WorkerResources(workers=count, cpus=cpus, gpus=1.0 if gpu else 0.0, threads=threads)


# --------------------------------------------------------------------------------------------
# local


def run_local(
    config: RunnerConfig, partitions: list[Partition], on_outcome: OutcomeHandler
) -> EngineReport:
    """Run ``partitions`` one after another with one session in this process."""
    started = time.perf_counter()
    runner = PartitionRunner(config)
    startup = time.perf_counter() - started
    for partition in partitions:
        if not on_outcome(runner.run(partition)):
            break
    opened = runner.opened
    return EngineReport(
        "local",
        workers=1,
        startup_seconds=startup,
        resources={"threads": config.session.intra_op_threads, "provider": opened.describe()},
        notes=(*opened.notes, *opened.warnings),
    )


# --------------------------------------------------------------------------------------------
# Ray


class RayPartitionWorker:
    """The callable class Ray Data runs in each actor: one runner, created once.

    A runner that cannot start (the provider is missing on that node) does not raise: Ray
    would retry its creation without end. Each partition it is given comes back with the
    reason, marked fatal, and the driver stops.
    """

    def __init__(self, config: RunnerConfig) -> None:
        self.runner: PartitionRunner | None = None
        self.error: str | None = None
        try:
            self.runner = PartitionRunner(config)
        except EdgeLSTMError as exc:
            self.error = str(exc)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        names = list(batch)
        outcomes: list[dict[str, Any]] = []
        for values in zip(*(batch[n] for n in names), strict=True):
            partition = Partition.from_row(dict(zip(names, values, strict=True)))
            if self.runner is None:
                outcome = PartitionOutcome(
                    partition.relative, partition.part, partition.output, error=self.error
                )
                row = {**outcome.to_row(), "fatal": True, "provider": ""}
            else:
                row = {
                    **self.runner.run(partition).to_row(),
                    "fatal": False,
                    "provider": self.runner.opened.describe(),
                }
            outcomes.append(row)
        return {key: [row[key] for row in outcomes] for key in outcomes[0]}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        from edgelstm.extras import missing_dependency

        raise missing_dependency(exc, "--engine ray") from exc
    return ray


@contextlib.contextmanager
def _stderr_discarded() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the block: Ray's C++ core writes there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_ray_data(ray: Any) -> None:
    """Our progress line replaces Ray Data's bars and its per-dataset log lines."""
    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def run_on_ray(
    config: RunnerConfig,
    partitions: list[Partition],
    on_outcome: OutcomeHandler,
    ray_options: RayOptions,
) -> EngineReport:
    """Run ``partitions`` on a pool of Ray actors; start a local Ray if none is joined."""
    started = time.time()
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # The C++ core's log lines (warnings about restartable actors) would precede
        # edgelstm's own; errors come back as exceptions or outcomes and are reported from
        # those. Its one line announcing that level goes to the discarded stderr below.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        try:
            with _stderr_discarded():
                ray.init(
                    address=ray_options.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InvalidInputError(
                f"--address {ray_options.address}: cannot join that Ray cluster ({exc}); start "
                "one with `ray start --head` and pass --address auto, or leave --address out "
                "to start Ray on this machine"
            ) from exc
    try:
        _quiet_ray_data(ray)
        pool = _plan_pool(ray.cluster_resources(), config, ray_options, len(partitions))
        report = _run_pool(ray, pool, partitions, on_outcome, started=started)
    finally:
        stopping = time.perf_counter()
        if started_here:
            ray.shutdown()
    return replace(report, shutdown_seconds=time.perf_counter() - stopping)


@dataclass(frozen=True, kw_only=True)
class _Pool:
    """The actor pool a run asks Ray for: each actor's runner, its reservation, Ray's extras."""

    config: RunnerConfig
    resources: WorkerResources
    cluster: dict[str, float]
    runtime_env: dict[str, Any] | None
    notes: tuple[str, ...]


def _plan_pool(
    cluster: dict[str, float], config: RunnerConfig, ray_options: RayOptions, partitions: int
) -> _Pool:
    """Size the pool for ``cluster`` (Ray's resources) and ``partitions`` to run."""
    session = config.session
    gpu = session.providers[0].split(":")[0].lower() in ("cuda", "tensorrt")
    notes: list[str] = []
    if gpu and cluster.get("GPU", 0) < 1 and session.fallback:
        notes.append("the Ray cluster has no GPU: the workers run on the CPU (--fallback)")
        gpu = False
    resources = worker_resources(
        float(cluster.get("CPU", 0)),
        float(cluster.get("GPU", 0)),
        workers=ray_options.workers,
        cpus_per_worker=ray_options.cpus_per_worker,
        threads=session.intra_op_threads,
        gpu=gpu,
    )
    if resources.workers > partitions:
        # An actor without a partition would only start a session for nothing.
        if ray_options.workers is not None:
            notes.append(
                f"{partitions} partition(s) to run: {partitions} worker(s), not {resources.workers}"
            )
        resources = replace(resources, workers=partitions)
    if session.intra_op_threads is None:
        notes.append(
            f"--threads 0 (all cores) in each of {resources.workers} workers would "
            "oversubscribe the CPUs: each worker runs 1 thread"
        )
    # Ray makes the actor's own GPU device 0 (CUDA_VISIBLE_DEVICES), whatever its number.
    worker_session = replace(
        session, intra_op_threads=resources.threads, cuda_device=0 if gpu else session.cuda_device
    )
    return _Pool(
        config=replace(config, session=worker_session),
        resources=resources,
        cluster=dict(cluster),
        runtime_env=ray_options.runtime_env,
        notes=tuple(notes),
    )


def _run_pool(
    ray: Any,
    pool: _Pool,
    partitions: list[Partition],
    on_outcome: OutcomeHandler,
    *,
    started: float,
) -> EngineReport:
    """Map the partitions over the actor pool and hand each outcome on as it arrives.

    ``started`` is the wall-clock time the engine began; start-up runs until the first
    partition began on a worker.
    """
    resources = pool.resources
    dataset = ray.data.from_items(
        [p.to_row() for p in partitions], override_num_blocks=len(partitions)
    )
    extra: dict[str, Any] = {}
    if pool.runtime_env:
        extra["runtime_env"] = pool.runtime_env
    if resources.gpus:
        extra["num_gpus"] = resources.gpus
    dataset = dataset.map_batches(
        RayPartitionWorker,
        fn_constructor_kwargs={"config": pool.config},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=resources.workers),
        num_cpus=resources.cpus,
        **extra,
    )
    began, providers = _collect_outcomes(dataset.iter_rows(), on_outcome)
    return EngineReport(
        "ray",
        workers=resources.workers,
        startup_seconds=max((began if began is not None else time.time()) - started, 0.0),
        resources={
            "cluster_cpus": pool.cluster.get("CPU", 0),
            "cluster_gpus": pool.cluster.get("GPU", 0),
            "cpus_per_worker": resources.cpus,
            "gpus_per_worker": resources.gpus,
            "threads": resources.threads,
            "provider": "; ".join(sorted(providers)),
        },
        notes=pool.notes,
    )


def _collect_outcomes(
    rows: Iterator[dict[str, Any]], on_outcome: OutcomeHandler
) -> tuple[float | None, set[str]]:
    """Hand each outcome row to ``on_outcome`` until it says stop; returns when the first
    partition began (its worker's wall clock) and the providers the workers reported."""
    began: float | None = None
    providers: set[str] = set()
    try:
        for row in rows:
            outcome = PartitionOutcome.from_row(row)
            # Up to the moment the first partition began: Ray, the actors, their sessions.
            began = outcome.began if began is None else min(began, outcome.began)
            if row["fatal"]:
                raise ProviderUnavailableError(f"a Ray worker could not start: {outcome.error}")
            if row["provider"]:
                providers.add(str(row["provider"]))
            if not on_outcome(outcome):
                break
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    return began, providers
