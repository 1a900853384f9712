"""``--tune``: pick the fastest measured configuration that stays within an accuracy budget.

The search space is what the benchmark measured: artifacts (precisions) x providers x
thread counts x CUDA graphs on/off (x chunk sizes when streaming). The reference metric is
the best FP32 ONNX Runtime artifact's; a candidate qualifies when its metric loses no more
than the budget (defaults as the quantization gate: 0.01 accuracy, 2 % relative MAE, 0.01
AUROC). Among qualifying rows at the target shape the lowest p50 wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.ort.deploy import DeploymentConfig, write_deployment
from edgelstm.runtimes.ort.measured_choice import host_fingerprint
from edgelstm.runtimes.ort.session_config import SessionConfig
from edgelstm.tasks import Gate, gate_for_metric

__all__ = [
    "check_tunable",
    "choose_deployment",
    "tune_deployment",
    "tuning_threads",
    "write_deployments",
]


def tuning_threads() -> tuple[int, ...]:
    """Thread counts ``--tune`` tries when none are given: one (best for small recurrent
    batches) and every usable core, so the tuner can choose between them."""
    from edgelstm.hardware import cpu_info

    return tuple(sorted({1, cpu_info().usable_cores or 1}))


def check_tunable(eval_run: Path | None) -> None:
    """Refuse ``--tune`` before anything is timed when it could not choose: the tuner keeps
    only artifacts whose accuracy was scored within budget."""
    if eval_run is None:
        raise InvalidInputError("--tune needs --eval RUN_DIR: only scored artifacts can be kept")


def choose_deployment(
    rows: list[dict[str, Any]],
    *,
    mode: str = "sequence",
    batch: int | None = None,
    seq: int | None = None,
    max_degradation: float | None = None,
) -> DeploymentConfig:
    """The deployment config for the fastest in-budget ONNX Runtime row of ``mode``.

    ``batch``/``seq`` fix the target shape (default: the first measured ones; for streaming
    every chunk size competes, per frame). Rows need ``metric_value`` (``--eval``).
    ``measured`` records the winning row's numbers and this host
    (:func:`~edgelstm.runtimes.ort.measured_choice.host_fingerprint`).
    """
    candidates = [r for r in rows if r["runtime"] == "onnxruntime" and r["mode"] == mode]
    if not candidates:
        raise InvalidInputError(f"--tune: no ONNX Runtime {mode} rows were measured")
    metric, gate = _accuracy_budget(candidates, max_degradation)
    target_batch, at_shape = _at_target_shape(candidates, mode, batch, seq)
    fp32 = [
        r["metric_value"]
        for r in candidates
        if r["precision"] == "fp32" and r.get("metric_value") is not None
    ]
    if not fp32:
        raise InvalidInputError("--tune needs an FP32 artifact among the models as the reference")
    reference = max(fp32) if gate.higher_is_better else min(fp32)
    qualifying = [
        r
        for r in at_shape
        if r.get("metric_value") is not None and gate.passes(reference, r["metric_value"])
    ]
    if not qualifying:
        raise InvalidInputError(
            f"--tune: no configuration keeps {metric} within {gate.allowed} of the FP32 "
            f"reference {reference:.4f}; raise --max-degradation or add more artifacts"
        )

    def cost(r: dict[str, Any]) -> float:
        return float(r["frame_p50_ms"] if mode == "streaming" else r["p50_ms"])

    best = min(qualifying, key=cost)
    unit = "per frame" if mode == "streaming" else "per call"
    loss = gate.degradation(reference, best["metric_value"])
    reason = (
        f"fastest of {len(qualifying)} in-budget configuration(s) out of {len(at_shape)} at "
        f"batch {target_batch}: p50 {cost(best):.4f} ms {unit}; {metric} "
        f"{best['metric_value']:.4f} vs FP32 {reference:.4f} "
        f"(loss {loss:.4f}{' relative' if gate.relative else ''}, budget {gate.allowed})"
    )
    return _deployment_of(best, mode, target_batch, reason)


def _accuracy_budget(
    candidates: list[dict[str, Any]], max_degradation: float | None
) -> tuple[str, Gate]:
    """The rows' task metric and the gate that bounds its loss: the quantization gate's
    metric, direction and default allowance, or ``max_degradation`` when given."""
    metric = next((r.get("metric") for r in candidates if r.get("metric")), None)
    default_gate = gate_for_metric(metric) if metric else None
    if metric is None or default_gate is None:
        raise InvalidInputError(
            "--tune needs --eval RUN_DIR so every artifact is scored: the tuner keeps only "
            "configurations within the accuracy budget"
        )
    return metric, default_gate.with_allowed(max_degradation)


def _at_target_shape(
    candidates: list[dict[str, Any]], mode: str, batch: int | None, seq: int | None
) -> tuple[int, list[dict[str, Any]]]:
    """The target batch and the rows measured at it (and, for whole sequences, at ``seq``);
    by default the first batch and length measured."""
    target_batch = batch if batch is not None else candidates[0]["batch"]
    at_shape = [r for r in candidates if r["batch"] == target_batch]
    if mode == "sequence":
        target_seq = seq if seq is not None else at_shape[0]["seq"] if at_shape else None
        at_shape = [r for r in at_shape if r["seq"] == target_seq]
    if not at_shape:
        raise InvalidInputError(f"--tune: nothing was measured at batch {target_batch}")
    return target_batch, at_shape


def _deployment_of(best: dict[str, Any], mode: str, batch: int, reason: str) -> DeploymentConfig:
    """The config that runs the winning row's artifact as it was measured."""
    # A row measured on one device of a provider (openvino:GPU) deploys on that device.
    provider = best["provider"] + (f":{best['device']}" if best.get("device") else "")
    session = SessionConfig(
        providers=(provider,),
        intra_op_threads=best["threads"],
        cuda_graphs=bool(best.get("cuda_graphs")),
    )
    measured_keys = ("p50_ms", "p99_ms", "frame_p50_ms", "throughput_per_s", "metric",
                     "metric_value", "precision", "seq")  # fmt: skip
    return DeploymentConfig(
        model=Path(best["path"]),
        mode=mode,
        session=session,
        batch=batch,
        chunk=best.get("chunk"),
        measured={key: best.get(key) for key in measured_keys}
        # The host the rows were timed on: `run --provider auto` trusts this config only there.
        | {"host": host_fingerprint()},
        reason=reason,
    )


# --------------------------------------------------------------------------------------------
# benchmark --tune and the report's deployment section


def tune_deployment(
    rows: Sequence[dict[str, Any]],
    *,
    stream: bool = False,
    max_degradation: float | None = None,
) -> DeploymentConfig:
    """``benchmark --tune``'s choice: whole sequences whenever ONNX Runtime timed them;
    streaming (per frame, every chunk size competing) only when ``stream`` timed nothing
    but streaming exports, since a streaming artifact cannot serve whole-sequence calls."""
    sequence = any(r["mode"] == "sequence" and r["runtime"] == "onnxruntime" for r in rows)
    mode = "streaming" if stream and not sequence else "sequence"
    return choose_deployment(list(rows), mode=mode, max_degradation=max_degradation)


def write_deployments(
    configs: Mapping[Path, DeploymentConfig],
    *,
    overwrite: bool = False,
    relative_to: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Write each config to its path; return the report's ``deployment`` section.

    The one shape every report carries (``benchmark --tune`` and quickstart alike): one entry
    per mode, holding the config file's document (model relative to the file) and ``file``,
    where the config went (relative to ``relative_to`` when given, else as given).

    Example::

        >>> write_deployments({Path("deploy.json"): chosen})  # doctest: +SKIP
        {'sequence': {'schema': 'edgelstm.deploy/1', 'model': 'model.int8.onnx', ...,
        'file': 'deploy.json'}}
    """
    section: dict[str, dict[str, Any]] = {}
    for path, config in configs.items():
        if config.mode in section:
            raise ValueError(f"two {config.mode} deployments for one report ({path})")
        write_deployment(config, path, overwrite=overwrite)
        folder = path.parent if str(path.parent) else Path(".")
        where = path if relative_to is None else path.relative_to(relative_to)
        section[config.mode] = {
            **config.to_json(relative_to=folder),
            "file": where.as_posix(),
        }
    return section
