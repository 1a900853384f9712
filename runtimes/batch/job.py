"""``edgelstm run --engine``: predict over a folder, a glob or a Parquet file into a folder of
Parquet.

:func:`run_batch` plans the partitions (:mod:`~edgelstm.runtimes.batch.plan`), checks the
output folder (new, ``--resume``, ``--overwrite``), runs an engine
(:mod:`~edgelstm.runtimes.batch.engines`) and keeps the manifest
``OUT_DIR/_edgelstm_batch.json``: what was run with which model, and how it went. pandas,
pyarrow and Ray skip files that start with ``_`` or ``.``, so ``pd.read_parquet(OUT_DIR)``
reads the rows alone.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError, OutputExistsError
from edgelstm.fileio import file_sha256, read_json, write_json_atomic
from edgelstm.runtimes.batch.engines import ENGINES, EngineReport, RayOptions
from edgelstm.runtimes.batch.partitions import (
    PartitionOutcome,
    RunnerConfig,
    batch_task,
    pyarrow_module,
)
from edgelstm.runtimes.batch.plan import (
    Partition,
    batch_file_kind,
    find_inputs,
    is_complete_partition,
    marked_partition,
    plan_partitions,
)
from edgelstm.runtimes.model_io.feeding import Progress
from edgelstm.runtimes.model_io.predictions import PredictOptions
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = ["MANIFEST_NAME", "BatchOptions", "BatchResult", "describe_batch", "run_batch"]

MANIFEST_NAME = "_edgelstm_batch.json"
SCHEMA = "edgelstm.batch/1"


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """Which engine runs the partitions, how large they are, and how the output folder is
    treated.

    ``partition_rows`` bounds the sequences per output file (and per unit of work a worker
    takes); ``skip_bad`` lists unreadable inputs and goes on instead of stopping;
    ``resume`` keeps the complete partitions of an earlier run of the same model;
    ``max_attempts`` is how often a partition may kill its worker before it counts as bad.
    """

    engine: str = "local"
    partition_rows: int = 4096
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InvalidInputError(
                f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINES)}"
            )
        if self.partition_rows < 1:
            raise InvalidInputError(f"--partition-rows must be >= 1, got {self.partition_rows}")
        if self.resume and self.overwrite:
            raise InvalidInputError("give --resume or --overwrite, not both")
        if self.max_attempts < 1:
            raise InvalidInputError(f"max_attempts must be >= 1, got {self.max_attempts}")


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did. ``seconds`` is the wall time of the engine; its report holds the
    part before the first partition began (Ray, actors, sessions) and the part spent
    stopping Ray; ``rows_per_s`` counts the rest."""

    output: Path
    engine: EngineReport | None
    files: int
    partitions: int
    resumed: int
    rows: int
    seconds: float
    failures: tuple[tuple[str, str], ...] = ()
    notices: tuple[str, ...] = ()
    outcomes: tuple[PartitionOutcome, ...] = field(default=(), repr=False)

    @property
    def rows_per_s(self) -> float:
        """Rows per second while partitions ran: start-up and shutdown left out."""
        engine = self.engine
        busy = self.seconds - (engine.startup_seconds + engine.shutdown_seconds if engine else 0)
        return self.rows / busy if busy > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary with stable keys (``run --engine ... --json``, the manifest)."""
        return {
            "output": str(self.output),
            "engine": asdict(self.engine) if self.engine else None,
            "files": self.files,
            "partitions": self.partitions,
            "resumed_partitions": self.resumed,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.engine.startup_seconds, 3) if self.engine else 0.0,
            "shutdown_seconds": round(self.engine.shutdown_seconds, 3) if self.engine else 0.0,
            "rows_per_s": round(self.rows_per_s, 1),
            "failures": [{"source": s, "error": e} for s, e in self.failures],
            "notices": list(self.notices),
        }


def run_batch(
    model: Path | str,
    input: str | Path,
    output: Path | str,
    *,
    session: SessionConfig | None = None,
    options: PredictOptions | None = None,
    batch: BatchOptions | None = None,
    ray: RayOptions | None = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Predict over every input file with ``model`` and write Parquet partitions to ``output``.

    ``input`` is a folder (searched recursively), a glob (``"logs/**/*.npz"``) or one file
    (a Parquet archive); each row written carries ``source`` (the file, relative to the
    input folder), ``index`` (the sequence, window or step within it) and the columns
    ``run`` writes for the model's task, at the model's full precision. The Python face of
    ``run --engine``.

    Raises :class:`~edgelstm.errors.InvalidInputError` for a bad input file (unless
    ``batch.skip_bad``), naming it; the partitions written so far stay, complete, and
    ``resume`` continues from them.

    Example::

        >>> result = run_batch("jv.onnx", "recordings/", "predictions/",
        ...                    batch=BatchOptions(engine="ray"))  # doctest: +SKIP
        >>> result.rows, round(result.rows_per_s)  # doctest: +SKIP
        (2000, 4100)
    """
    batch = batch or BatchOptions()
    config = RunnerConfig(
        model=str(model),
        session=session or SessionConfig(),
        options=options or PredictOptions(),
        max_attempts=batch.max_attempts,
    )
    target = Path(output)
    pyarrow_module()  # before any work: the partitions are Parquet
    task, fingerprint = _fingerprint(Path(model), batch, config.options)
    root, files = find_inputs(str(input), target)
    plan = plan_partitions(root, files, target, task=task, partition_rows=batch.partition_rows)
    created = not target.exists()
    manifest = {
        "schema": SCHEMA,
        **fingerprint,
        "input": str(input),
        "state": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "history": _prepare_output(target, batch, fingerprint),
    }
    _remove_stale(target)  # what workers killed in an earlier run left
    pending = [p for p in plan if not (batch.resume and is_complete_partition(Path(p.output)))]
    write_json_atomic(target / MANIFEST_NAME, manifest, overwrite=True)
    log = _OutcomeLog(len(pending), skip_bad=batch.skip_bad, progress=progress)
    started = time.perf_counter()
    engine: EngineReport | None = None
    try:
        if pending:
            engine = _run_engine(config, pending, log, batch, ray or RayOptions())
    except BaseException:
        _clean_up_interrupted(target, manifest, created=created)
        raise
    _remove_stale(target)
    result = BatchResult(
        output=target,
        engine=engine,
        files=len(files),
        partitions=len(plan),
        resumed=len(plan) - len(pending),
        rows=sum(o.rows for o in log.outcomes),
        seconds=time.perf_counter() - started,
        failures=tuple(log.failures),
        notices=tuple(dict.fromkeys(n for o in log.outcomes for n in o.notices)),
        outcomes=tuple(log.outcomes),
    )
    _finish(result, plan, manifest, log)
    return result


def _clean_up_interrupted(target: Path, manifest: dict[str, Any], *, created: bool) -> None:
    """After an engine raised: mark the manifest interrupted, or remove a folder this run
    created and wrote no partition to."""
    _remove_stale(target)
    if created and not _holds_partitions(target):
        # Nothing was written (the provider or the model failed to open, Ctrl-C at the
        # start): leave no folder behind, so the same command works once that is fixed.
        shutil.rmtree(target, ignore_errors=True)
    else:
        state = {**manifest, "state": "interrupted"}
        write_json_atomic(target / MANIFEST_NAME, state, overwrite=True)


class _OutcomeLog:
    """The outcomes an engine hands over, in order; says stop at a bad input unless
    ``skip_bad``, and tells ``progress`` how many partitions are done."""

    def __init__(self, pending: int, *, skip_bad: bool, progress: Progress | None) -> None:
        self.pending = pending
        self.skip_bad = skip_bad
        self.progress = progress
        self.outcomes: list[PartitionOutcome] = []
        self.failures: list[tuple[str, str]] = []
        #: The errors that stopped the run (at most one: the engine stops at the first).
        self.bad: list[str] = []

    def __call__(self, outcome: PartitionOutcome) -> bool:
        self.outcomes.append(outcome)
        if self.progress is not None:
            self.progress(len(self.outcomes), self.pending)
        if outcome.error is None:
            return True
        self.failures.append((outcome.relative, outcome.error))
        if not self.skip_bad:
            self.bad.append(outcome.error)
            return False
        return True


def _finish(
    result: BatchResult, plan: list[Partition], manifest: dict[str, Any], log: _OutcomeLog
) -> None:
    """Write the final manifest; raise for the bad input that stopped the run."""
    complete = all(is_complete_partition(Path(p.output)) for p in plan)
    state = "complete" if complete else ("failed" if log.bad else "partial")
    write_json_atomic(
        result.output / MANIFEST_NAME,
        {**manifest, "state": state, "summary": result.to_json()},
        overwrite=True,
    )
    if log.bad:
        raise InvalidInputError(
            f"{log.bad[0]} (the {len(log.outcomes) - 1} partition(s) before it are written; "
            "fix or remove the file and rerun with --resume, or add --skip-bad)"
        )


def _run_engine(
    config: RunnerConfig,
    pending: list[Partition],
    on_outcome: _OutcomeLog,
    batch: BatchOptions,
    ray: RayOptions,
) -> EngineReport:
    from edgelstm.runtimes.batch.engines import run_local, run_on_ray

    if batch.engine == "ray":
        return run_on_ray(config, pending, on_outcome, ray)
    if ray != RayOptions():
        raise InvalidInputError(
            "--address, --workers and --cpus-per-worker apply to --engine ray; the local "
            "engine runs one session in this process (set its threads with --threads)"
        )
    return run_local(config, pending, on_outcome)


def _fingerprint(
    model: Path, batch: BatchOptions, options: PredictOptions
) -> tuple[str, dict[str, Any]]:
    """The model's task, and what must match for ``--resume`` to keep earlier partitions."""
    from edgelstm.runtimes.ort.artifact import load_artifact

    task = batch_task(load_artifact(model).metadata, model)
    return task, {
        "model": str(model.resolve()),
        "model_sha256": file_sha256(model),
        "task": task,
        "partition_rows": batch.partition_rows,
        "allow_nonfinite": options.allow_nonfinite,
    }


_MATCHED = ("model_sha256", "partition_rows", "allow_nonfinite")


def _prepare_output(
    target: Path, batch: BatchOptions, fingerprint: dict[str, Any]
) -> list[dict[str, Any]]:
    """Check the output folder for this run; returns the earlier runs' history to keep."""
    manifest_path = target / MANIFEST_NAME
    if target.exists() and not target.is_dir():
        raise InvalidInputError(
            f"--output {target} is a file; batch inference writes a folder of Parquet files"
        )
    if not target.exists() or not any(target.iterdir()):
        target.mkdir(parents=True, exist_ok=True)
        return []
    if not manifest_path.is_file():
        raise OutputExistsError(
            f"--output {target} holds files that edgelstm did not write (no {MANIFEST_NAME}); "
            "give an empty or new folder"
        )
    earlier = read_json(manifest_path, what="batch manifest")
    if not isinstance(earlier, dict) or earlier.get("schema") != SCHEMA:
        raise InvalidInputError(f"{manifest_path}: not an edgelstm batch manifest ({SCHEMA})")
    history = [*earlier.get("history", []), {k: earlier.get(k) for k in ("started", "state")}]
    if batch.overwrite:
        _remove_partitions(target)
        return []
    if not batch.resume:
        raise OutputExistsError(
            f"--output {target} holds an earlier run ({earlier.get('state')}); add --resume "
            "(resume=True from Python) to keep its complete partitions and run the rest, or "
            "--overwrite (overwrite=True) to start again"
        )
    changed = [k for k in _MATCHED if earlier.get(k) != fingerprint[k]]
    if changed:
        raise InvalidInputError(
            f"--resume: {target} was written with a different "
            f"{', '.join(k.replace('_sha256', ' (its SHA-256)') for k in changed)}; "
            "its partitions would not match. Use another --output, or --overwrite"
        )
    return history


def _remove_partitions(target: Path) -> None:
    """Delete what an earlier run wrote (its partitions, markers and manifest), nothing else."""
    for path in target.rglob("*"):
        if path.is_file() and (batch_file_kind(path) is not None or path.name == MANIFEST_NAME):
            path.unlink()


def _remove_stale(target: Path) -> None:
    """What killed workers leave behind: temporary files of partitions being written, and the
    attempts markers of partitions that are complete (killed between renaming the partition
    into place and removing its marker). The marker of a missing partition stays: it counts
    the workers that partition killed."""
    for path in target.rglob(".*"):
        kind = batch_file_kind(path)
        if kind == "temporary" or (
            kind == "attempts" and is_complete_partition(marked_partition(path))
        ):
            path.unlink(missing_ok=True)


def _holds_partitions(target: Path) -> bool:
    return any(batch_file_kind(path) == "partition" for path in target.rglob("*.parquet"))


def describe_batch(result: BatchResult) -> str:
    """The summary line: rows, files, rate, start-up, failures."""
    engine = result.engine
    text = (
        f"wrote {result.output}: {result.rows} rows from {result.files} file(s) in "
        f"{result.partitions - result.resumed} partition(s)"
    )
    if result.resumed:
        text += f" ({result.resumed} kept from the earlier run)"
    if engine is not None:
        text += (
            f"; engine {engine.engine}, {engine.workers} worker(s), "
            f"{result.rows_per_s:,.0f} rows/s after {engine.startup_seconds:.1f} s start-up"
        )
        provider = engine.resources.get("provider")
        if provider:
            text += f"; {provider}"
    if result.failures:
        text += f"; {len(result.failures)} file(s) skipped: " + ", ".join(
            s for s, _ in result.failures
        )
    return text
