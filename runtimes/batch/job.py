"""``edgelstm run --engine``: score a folder, a glob or a Parquet file into a folder of Parquet.

:func:`score_files` plans the partitions (:mod:`~edgelstm.runtimes.batch.plan`), checks the
output folder (new, ``--resume``, ``--overwrite``), runs an engine
(:mod:`~edgelstm.runtimes.batch.engines`) and keeps the manifest
``OUT_DIR/_edgelstm_batch.json``: what was scored with which model, and how it went. pandas,
pyarrow and Ray skip files that start with ``_`` or ``.``, so ``pd.read_parquet(OUT_DIR)``
reads the rows alone.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError, OutputExistsError
from edgelstm.fileio import read_json, write_json_atomic
from edgelstm.runtimes.batch.engines import ENGINES, EngineReport, RayOptions
from edgelstm.runtimes.batch.partitions import PartitionOutcome, pyarrow_module
from edgelstm.runtimes.batch.plan import (
    PARTITION_SUFFIX,
    Partition,
    find_inputs,
    is_complete_partition,
    plan_partitions,
)
from edgelstm.runtimes.model_io.feeding import Progress
from edgelstm.runtimes.ort.session import SessionConfig
from edgelstm.runtimes.run_files import RunOptions

__all__ = ["MANIFEST_NAME", "BatchOptions", "BatchResult", "describe_batch", "score_files"]

MANIFEST_NAME = "_edgelstm_batch.json"
SCHEMA = "edgelstm.batch/1"


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """What to score and how the output folder is treated.

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
        """Rows per second of scoring: start-up and shutdown left out."""
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


def score_files(
    model: Path | str,
    input: str | Path,
    output: Path | str,
    *,
    session: SessionConfig | None = None,
    options: RunOptions | None = None,
    batch: BatchOptions | None = None,
    ray: RayOptions | None = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Score every input file with ``model`` and write Parquet partitions under ``output``.

    ``input`` is a folder (searched recursively), a glob (``"logs/**/*.npz"``) or one file
    (a Parquet archive); each row written carries ``source`` (the file, relative to the
    input folder), ``index`` (the sequence, window or step within it) and the columns
    ``run`` writes for the model's task. The Python face of ``run --engine``.

    Raises :class:`~edgelstm.errors.InvalidInputError` for a bad input file (unless
    ``batch.skip_bad``), naming it; the partitions written so far stay, complete, and
    ``resume`` continues from them.

    Example::

        >>> result = score_files("jv.onnx", "recordings/", "scores/",
        ...                      batch=BatchOptions(engine="ray"))  # doctest: +SKIP
        >>> result.rows, round(result.rows_per_s)  # doctest: +SKIP
        (2000, 4100)
    """
    session = session or SessionConfig()
    options = options or RunOptions()
    batch = batch or BatchOptions()
    ray = ray or RayOptions()
    target = Path(output)
    pyarrow_module()  # before any work: the partitions are Parquet
    task, fingerprint = _fingerprint(Path(model), batch, options)
    root, files = find_inputs(str(input), target)
    plan = plan_partitions(root, files, target, task=task, partition_rows=batch.partition_rows)
    created = not target.exists()
    previous = _prepare_output(target, batch, fingerprint)
    pending = [p for p in plan if not (batch.resume and is_complete_partition(Path(p.output)))]
    resumed = len(plan) - len(pending)
    manifest = {
        "schema": SCHEMA,
        **fingerprint,
        "input": str(input),
        "state": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "history": previous,
    }
    write_json_atomic(target / MANIFEST_NAME, manifest, overwrite=True)
    outcomes: list[PartitionOutcome] = []
    failures: list[tuple[str, str]] = []
    bad: list[str] = []

    def handle(outcome: PartitionOutcome) -> bool:
        outcomes.append(outcome)
        if progress is not None:
            progress(len(outcomes), len(pending))
        if outcome.error is None:
            return True
        failures.append((outcome.relative, outcome.error))
        if not batch.skip_bad:
            bad.append(outcome.error)
            return False
        return True

    started = time.perf_counter()
    engine: EngineReport | None = None
    try:
        if pending:
            engine = _run_engine(str(model), session, options, pending, handle, batch, ray)
    except BaseException:
        _remove_stale(target)
        if created and not any(target.rglob(f"*{PARTITION_SUFFIX}")):
            # Nothing was written (the provider or the model failed to open, Ctrl-C at the
            # start): leave no folder behind, so the same command works once that is fixed.
            shutil.rmtree(target, ignore_errors=True)
        else:
            write_json_atomic(
                target / MANIFEST_NAME, {**manifest, "state": "interrupted"}, overwrite=True
            )
        raise
    _remove_stale(target)
    result = BatchResult(
        output=target,
        engine=engine,
        files=len(files),
        partitions=len(plan),
        resumed=resumed,
        rows=sum(o.rows for o in outcomes),
        seconds=time.perf_counter() - started,
        failures=tuple(failures),
        notices=tuple(dict.fromkeys(n for o in outcomes for n in o.notices)),
        outcomes=tuple(outcomes),
    )
    complete = all(is_complete_partition(Path(p.output)) for p in plan)
    state = "complete" if complete else ("failed" if bad else "partial")
    write_json_atomic(
        target / MANIFEST_NAME,
        {**manifest, "state": state, "summary": result.to_json()},
        overwrite=True,
    )
    if bad:
        raise InvalidInputError(
            f"{bad[0]} (the {len(outcomes) - 1} partition(s) before it are written; fix or "
            "remove the file and rerun with --resume, or add --skip-bad)"
        )
    return result


def _run_engine(
    model: str,
    session: SessionConfig,
    options: RunOptions,
    pending: list[Partition],
    handle: Any,
    batch: BatchOptions,
    ray: RayOptions,
) -> EngineReport:
    from edgelstm.runtimes.batch.engines import run_local, run_on_ray

    if batch.engine == "ray":
        return run_on_ray(
            model, session, options, pending, handle, ray, max_attempts=batch.max_attempts
        )
    if ray != RayOptions():
        raise InvalidInputError(
            "--address, --workers and --cpus-per-worker apply to --engine ray; the local "
            "engine runs one session in this process (set its threads with --threads)"
        )
    return run_local(model, session, options, pending, handle, max_attempts=batch.max_attempts)


def _fingerprint(
    model: Path, batch: BatchOptions, options: RunOptions
) -> tuple[str, dict[str, Any]]:
    """The model's task, and what must match for ``--resume`` to keep earlier partitions."""
    from edgelstm.runtimes.ort.artifact import load_artifact

    artifact = load_artifact(model)
    meta = artifact.metadata
    if meta is None or meta.task is None:
        raise InvalidInputError(
            f"{model}: batch scoring needs an edgelstm model (its metadata says how to read "
            "and normalise the inputs); run other ONNX models file by file with `edgelstm "
            "run MODEL --input FILE.npz --output OUT.npz`"
        )
    digest = hashlib.sha256()
    with model.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return meta.task, {
        "model": str(model.resolve()),
        "model_sha256": digest.hexdigest(),
        "task": meta.task,
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
            f"--output {target} is a file; batch scoring writes a folder of Parquet files"
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
            f"--output {target} holds an earlier run ({earlier.get('state')}); add --resume to "
            "keep its complete partitions and score the rest, or --overwrite to start again"
        )
    changed = [k for k in _MATCHED if earlier.get(k) != fingerprint[k]]
    if changed:
        raise InvalidInputError(
            f"--resume: {target} was scored with a different "
            f"{', '.join(k.replace('_sha256', ' (its SHA-256)') for k in changed)}; "
            "its partitions would not match. Use another --output, or --overwrite"
        )
    return history


def _remove_partitions(target: Path) -> None:
    """Delete what an earlier run wrote (its partitions, markers and manifest), nothing else."""
    for path in target.rglob("*"):
        if path.is_file() and (
            (path.name.endswith(".parquet") and ".part-" in path.name)
            or path.name.endswith((".attempts", ".tmp"))
            or path.name == MANIFEST_NAME
        ):
            path.unlink()


def _remove_stale(target: Path) -> None:
    """Temporary files of partitions whose writer was killed: the retry wrote its own."""
    for path in target.rglob(".*.parquet.*.tmp"):
        path.unlink(missing_ok=True)


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
