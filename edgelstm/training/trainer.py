"""Training: data → prepared splits → early-stopped training → test metrics → checkpoint folder.

``train`` is the library twin of ``edgelstm train``; it takes the same parameters.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgelstm.config import (
    SEQUENCE_LABELLING_TASKS,
    TASK_TRAIN_DEFAULTS,
    TRAIN_PRESETS,
    DatasetInfo,
    ModelConfig,
    RunRecord,
    TrainConfig,
)
from edgelstm.errors import InvalidInputError
from edgelstm.fileio import check_output_path
from edgelstm.labelling import check_ctc_lengths
from edgelstm.tasks import PreparedData, Split, concat_padded, headline_metric
from edgelstm.training.architecture import (
    AutoChoice,
    DataFacts,
    ModelRequest,
    choose_settings,
    frontend_kernel_for,
    training_reasons,
)
from edgelstm.training.checkpoint import save_checkpoint
from edgelstm.training.evaluation import (
    LoadedData,
    Predictor,
    compare_model_with_baselines,
    load_task_data,
    prepare_task_data,
    task_metrics,
)
from edgelstm.training.labelling_fit import labelling_loss, labelling_validation
from edgelstm.training.models import SequenceModel, build_model
from edgelstm.training.quality_checks import QualityChecks, RunFacts
from edgelstm.version import __version__

#: Tasks whose held-out validation data is worth retraining on after early stopping: a few
#: hundred sequences, or the most recent forecast windows (see :func:`fit_model`).
REFIT_TASKS = ("classify", "forecast")


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run produced."""

    out: Path
    record: RunRecord
    metrics: dict[str, Any]
    epochs_run: int
    best_epoch: int
    seconds: float
    #: what ``arch="auto"`` chose from the data, and why; None when the user chose.
    auto: AutoChoice | None = None
    #: PyTorch's time for one typical sequence at batch 1 (:func:`sequence_latency_ms`);
    #: measured, so not in metrics.json, which a seed reproduces exactly.
    sequence_ms: float | None = None
    #: of ``seconds``, the time the baselines took (1-NN DTW may take minutes)
    baseline_seconds: float = 0.0
    #: Things that make the model doubtful, e.g. test accuracy at the majority-class rate;
    #: the CLI prints each as a ``warning:`` block. Empty for a model that beats chance.
    warnings: tuple[str, ...] = ()


ProgressCallback = Callable[[int, int, float, str], None]

#: The training settings a caller may give over the preset, task and dataset defaults
#: (None: not given, so the layer below stands).
_TYPED = ("epochs", "batch_size", "learning_rate", "input_noise")


def train(
    task: str,
    *,
    out: Path | str,
    dataset: str | None = None,
    data: Path | str | None = None,
    test: Path | str | None = None,
    target: str | None = None,
    arch: str = "auto",
    layers: int = 2,
    hidden: int = 128,
    bidirectional: bool = False,
    dropout: float = 0.1,
    pooling: str | None = None,
    frontend: str | None = None,
    frontend_stride: int | None = None,
    frontend_kernel: int | None = None,
    frontend_channels: int | None = None,
    fcn_filters: tuple[int, ...] = (64, 128, 64),
    series_norm: bool | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    input_noise: float | None = None,
    lookback: int | None = None,
    horizon: int | None = None,
    season: int | None = None,
    seed: int = 0,
    preset: str = "default",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    min_accuracy: float | None = None,
    require_baseline: bool = False,
    dtw_budget_s: float = 60.0,
) -> TrainResult:
    """Train an LSTM/GRU on a built-in dataset or your files and write a checkpoint folder.

    Exactly one of ``dataset`` (see :func:`edgelstm.data.datasets.list_datasets`) or ``data``
    (``.npz``/``.npy``/``.csv``/``.ts``) is required. The checkpoint at ``out`` holds
    ``config.json``, ``model.safetensors`` and ``metrics.json``; it is written atomically.
    The model settings are those of
    :class:`~edgelstm.training.architecture.ModelRequest`; ``arch="auto"`` chooses the rest
    from the data (in ``TrainResult.auto``). :class:`QualityChecks` describes the baseline
    comparison and what ``min_accuracy``, ``require_baseline`` and ``dtw_budget_s`` do.

    Example:
        >>> result = train("classify", dataset="JapaneseVowels", out="runs/jv")  # doctest: +SKIP
        >>> result.metrics["accuracy"] >= 0.97  # doctest: +SKIP
        True
    """
    started = time.perf_counter()
    out = Path(out)
    checks = QualityChecks(min_accuracy, require_baseline, dtw_budget_s)
    _refuse_before_reading(task, out, overwrite=overwrite, preset=preset, checks=checks)
    loaded = load_task_data(task, dataset, data, test, target)
    typed = dict(zip(_TYPED, (epochs, batch_size, learning_rate, input_noise), strict=True))
    config = _train_config(task, preset, loaded.defaults, typed, lookback, horizon, seed)
    season = _season(season, loaded.defaults)
    prepared = prepare_task_data(task, loaded, config, target, np.random.default_rng(config.seed))
    checks.refuse_unlabelled_anomalies(prepared)
    request = ModelRequest(
        arch=arch,
        layers=layers,
        hidden=hidden,
        bidirectional=bidirectional,
        dropout=dropout,
        pooling=pooling,
        frontend=frontend,
        frontend_stride=frontend_stride,
        frontend_kernel=frontend_kernel,
        frontend_channels=frontend_channels,
        fcn_filters=tuple(fcn_filters),
        series_norm=series_norm,
    )
    fitted = _build_and_fit(prepared, config, request, typed, progress)
    return _check_and_save(
        fitted, loaded, prepared, config, season, checks, out, overwrite=overwrite, started=started
    )


def _refuse_before_reading(
    task: str, out: Path, *, overwrite: bool, preset: str, checks: QualityChecks
) -> None:
    """Refuse a request that cannot succeed before reading data or spending minutes training."""
    headline_metric(task)  # an unknown task is refused here
    check_output_path(out, overwrite=overwrite, kind="folder")
    if preset not in TRAIN_PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}; choose {', '.join(TRAIN_PRESETS)}")
    checks.refuse_impossible(task)


def _train_config(
    task: str,
    preset: str,
    defaults: Mapping[str, Any],
    typed: Mapping[str, Any],
    lookback: int | None,
    horizon: int | None,
    seed: int,
) -> TrainConfig:
    """The preset, then the task's defaults, the dataset's and the caller's values over it
    (a value left None falls through). Only classify and forecast refit on train + validation
    data after early stopping; the others record ``refit=False`` instead of promising a refit
    that never runs."""
    layers: list[Mapping[str, Any]] = [
        TASK_TRAIN_DEFAULTS.get(task, {}),
        {} if task in REFIT_TASKS else {"refit": False},
        {"lookback": defaults.get("lookback"), "horizon": defaults.get("horizon")},
        {**typed, "lookback": lookback, "horizon": horizon, "seed": seed},
    ]
    overrides = {k: v for layer in layers for k, v in layer.items() if v is not None}
    return replace(TRAIN_PRESETS[preset], **overrides)


def _season(season: int | None, defaults: Mapping[str, Any]) -> int:
    """The seasonal-naive baseline's season: given, else the dataset's, else 1."""
    season = season if season is not None else int(defaults.get("season", 1))
    if season < 1:
        raise InvalidInputError(f"--season must be >= 1, got {season}")
    return season


@dataclass(frozen=True)
class _FittedModel:
    """A trained model with what it was built from."""

    model: SequenceModel
    config: ModelConfig
    fit: FitSummary
    data: DataFacts
    auto: AutoChoice | None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _build_and_fit(
    prepared: PreparedData,
    config: TrainConfig,
    request: ModelRequest,
    typed: Mapping[str, Any],
    progress: ProgressCallback | None,
) -> _FittedModel:
    """Choose the model (what was given wins, ``auto`` fills the rest), build it, train it."""
    data_facts = DataFacts.from_prepared(prepared)
    auto = None
    if request.arch == "auto":
        auto = choose_settings(data_facts)
        batch = effective_batch_size(config, len(prepared.train))
        typed_names = frozenset(k for k, v in typed.items() if v is not None)
        reasons = training_reasons(config, batch, len(prepared.train), typed_names)
        auto = replace(auto, reasons=auto.reasons + reasons).overridden_by(request.given())
    # ModelConfig's defaults fill what neither the caller nor auto chose.
    chosen = {**(auto.settings if auto else {}), **request.given()}
    if "frontend_kernel" not in chosen and "frontend_stride" in chosen:
        chosen["frontend_kernel"] = frontend_kernel_for(chosen["frontend_stride"])
    test_targets = prepared.test.y
    horizon = (
        int(test_targets.shape[1])
        if prepared.task == "forecast" and test_targets is not None
        else 0
    )
    model_config = ModelConfig(
        task=prepared.task,  # type: ignore[arg-type]
        input_size=prepared.num_features,
        hidden_size=request.hidden,
        num_layers=request.layers,
        bidirectional=request.bidirectional,
        dropout=request.dropout,
        # transcribe: one output per token plus the CTC blank, last.
        num_classes=len(prepared.class_labels) + (prepared.task == "transcribe"),
        horizon=horizon,
        target_indices=prepared.target_indices,
        fcn_filters=request.fcn_filters,
        **chosen,
    )
    if model_config.task == "transcribe":
        for name in ("train", "val", "test"):
            check_ctc_lengths(getattr(prepared, name), model_config.stride, f"{name} split")
    torch.manual_seed(config.seed)
    model = build_model(model_config)
    fit = fit_model(model, prepared, config, progress=progress)
    model.eval()
    return _FittedModel(model, model_config, fit, data_facts, auto)


def _check_and_save(
    fitted: _FittedModel,
    loaded: LoadedData,
    prepared: PreparedData,
    config: TrainConfig,
    season: int,
    checks: QualityChecks,
    out: Path,
    *,
    overwrite: bool,
    started: float,
) -> TrainResult:
    """Test metrics beside the baselines; a model failing ``checks`` is refused before
    anything is written, any other is saved with its warnings."""
    metrics, threshold = task_metrics(
        torch_predictor(fitted.model), prepared, season=season, stride=fitted.config.stride
    )
    fit = fitted.fit
    metrics["best_epoch"] = fit.best_epoch
    metrics["epochs_run"] = fit.epochs_run
    metrics["refit_epochs"] = fit.refit_epochs
    metrics["parameters"] = fitted.parameters
    metrics["weights_mb"] = round(fitted.parameters * 4 / 1e6, 3)  # FP32: about the .onnx
    baselines_started = time.perf_counter()
    comparison = compare_model_with_baselines(prepared, metrics, dtw_budget_s=checks.dtw_budget_s)
    baseline_seconds = time.perf_counter() - baselines_started
    metrics["baselines"] = comparison.to_json()
    facts = RunFacts(
        data=fitted.data,
        parameters=fitted.parameters,
        config=config,
        model=fitted.config,
        epochs_run=fit.epochs_run,
        best_epoch=fit.best_epoch,
        season=season,
    )
    warnings = checks.enforce(comparison, facts, out)
    record = _run_record(fitted, loaded, prepared, config, season, threshold)
    save_checkpoint(out, record, fitted.model, metrics, overwrite=overwrite)
    return TrainResult(
        out=out,
        record=record,
        metrics=metrics,
        epochs_run=fit.epochs_run,
        best_epoch=fit.best_epoch,
        seconds=time.perf_counter() - started,
        warnings=warnings,
        auto=fitted.auto,
        sequence_ms=sequence_latency_ms(fitted.model, fitted.data.median_length),
        baseline_seconds=baseline_seconds,
    )


def _run_record(
    fitted: _FittedModel,
    loaded: LoadedData,
    prepared: PreparedData,
    config: TrainConfig,
    season: int,
    threshold: float | None,
) -> RunRecord:
    """The checkpoint's ``config.json``: enough to rebuild, export and re-evaluate the model."""
    anomaly = prepared.task == "anomaly"
    return RunRecord(
        model=fitted.config,
        train=config,
        dataset=DatasetInfo(
            name=loaded.name,
            source=loaded.source,
            train_size=len(prepared.train) + len(prepared.val),
            test_size=int(prepared.test.x.shape[1]) if anomaly else len(prepared.test),
            variable_length=bool(prepared.details.get("variable_length", False)),
            details={**prepared.details, "season": season},
        ),
        feature_names=prepared.feature_names,
        normalization=prepared.normalization,
        class_labels=prepared.class_labels,
        target_names=tuple(prepared.feature_names[i] for i in prepared.target_indices),
        anomaly_threshold=threshold,
        auto=None if fitted.auto is None else fitted.auto.to_json(),
        edgelstm_version=__version__,
        torch_version=torch.__version__,
    )


def sequence_latency_ms(model: SequenceModel, steps: int) -> float:
    """PyTorch's median time for one sequence of ``steps`` at batch 1 (after two warm-up
    calls). Not a benchmark (``edgelstm benchmark`` is); a larger default must earn its
    place, so every training summary shows what the model costs."""
    x = torch.zeros(1, max(1, steps), model.config.input_size)
    times = []
    with torch.no_grad():
        for _ in range(12):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times[2:])) * 1000.0


@dataclass(frozen=True)
class FitSummary:
    epochs_run: int
    best_epoch: int
    best_val: float
    refit_epochs: int = 0


def _loss(
    model: SequenceModel, split: Split, idx: np.ndarray, input_noise: float = 0.0
) -> torch.Tensor:
    task = model.config.task
    if task in SEQUENCE_LABELLING_TASKS:
        return labelling_loss(model, split, idx, input_noise)
    x = torch.from_numpy(split.x[idx])
    clean = x
    if input_noise > 0:
        x = x + input_noise * torch.randn_like(x)
    if task == "classify":
        assert split.lengths is not None and split.y is not None
        lengths = torch.from_numpy(split.lengths[idx])
        # Trim padding beyond the longest sequence of this batch: less work, same result.
        x = x[:, : int(lengths.max())]
        logits = model(x, lengths)
        return nn.functional.cross_entropy(logits, torch.from_numpy(split.y[idx]))
    if task == "forecast":
        assert split.y is not None
        return nn.functional.mse_loss(model(x), torch.from_numpy(split.y[idx]))
    pred = model(x)
    return nn.functional.mse_loss(pred[:, :-1], clean[:, 1:])


def _validation_error(model: SequenceModel, split: Split) -> tuple[float, str]:
    """Lower is better; the string is what the progress bar shows."""
    if model.config.task in SEQUENCE_LABELLING_TASKS:
        return labelling_validation(model, split)
    with torch.no_grad():
        if model.config.task == "classify":
            logits = predict(model, split)
            assert split.y is not None
            loss = float(
                nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(split.y))
            )
            acc = float(np.mean(np.argmax(logits, axis=-1) == split.y))
            # Loss, not accuracy, decides: small validation sets reach 100 % accuracy early and
            # then cannot tell a confident model from a lucky one.
            return loss, f"val acc {acc:.3f}"
        if model.config.task == "forecast":
            assert split.y is not None
            err = float(np.mean(np.abs(predict(model, split) - split.y)))
            return err, f"val mae {err:.4f}"
        pred = predict(model, split)
        err = float(np.mean((pred[:, :-1] - split.x[:, 1:]) ** 2))
        return err, f"val mse {err:.4f}"


def _merge(a: Split, b: Split) -> Split:
    """Concatenate two splits of windows or padded sequences (pads to the longer time axis)."""
    steps = max(a.x.shape[1], b.x.shape[1])

    def padded(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0)))

    assert a.y is not None and b.y is not None
    lengths = None
    if a.lengths is not None and b.lengths is not None:
        lengths = np.concatenate([a.lengths, b.lengths])
    return Split(
        x=np.concatenate([padded(a.x), padded(b.x)]),
        y=np.concatenate([a.y, b.y]),
        lengths=lengths,
    )


def effective_batch_size(config: TrainConfig, num_examples: int) -> int:
    """``config.batch_size``, shrunk on small datasets so an epoch has enough updates.

    With a few dozen examples (BasicMotions: 34 training sequences; Airline: 62 windows) a
    batch of 32 gives one or two optimiser steps per epoch and training stalls; at least
    ``min_batches_per_epoch`` batches (of at least 8 examples) fixes that.
    """
    if num_examples >= config.min_batches_per_epoch * config.batch_size:
        return config.batch_size
    return max(min(8, config.batch_size), num_examples // config.min_batches_per_epoch)


def _train_epochs(
    model: SequenceModel,
    split: Split,
    config: TrainConfig,
    epochs: int,
    on_epoch: Callable[[int, float], bool],
) -> int:
    """Adam + cosine schedule + gradient clipping; ``on_epoch(epoch, mean_loss)`` → stop?"""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    batch_size = effective_batch_size(config, len(split))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    n = len(split)
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(n)
        total, batches = 0.0, 0
        for start in range(0, n, batch_size):
            optimizer.zero_grad()
            loss = _loss(model, split, order[start : start + batch_size], config.input_noise)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        scheduler.step()
        model.eval()
        if on_epoch(epoch, total / max(batches, 1)):
            break
    return epoch


def fit_model(
    model: SequenceModel,
    prepared: PreparedData,
    config: TrainConfig,
    *,
    progress: ProgressCallback | None = None,
) -> FitSummary:
    """Early-stopped training on the validation split, then a refit on all of it.

    Phase 1 trains on the training split and keeps the weights with the best validation score,
    stopping after ``patience`` epochs without improvement. For classification and forecasting
    the held-out data is too valuable to leave out (a few hundred sequences; for a forecast,
    the most recent windows), so with ``refit`` the model is retrained from the same
    initialisation on training + validation data for the epoch count phase 1 found (at least
    ``min_refit_epochs`` and ``min_refit_steps`` updates, so the schedule can settle).
    """
    initial_state = copy.deepcopy(model.state_dict())
    best_val, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())

    def watch(epoch: int, loss: float) -> bool:
        nonlocal best_val, best_epoch, best_state
        val, shown = _validation_error(model, prepared.val)
        if val < best_val:
            best_val, best_epoch = val, epoch
            best_state = copy.deepcopy(model.state_dict())
        if progress is not None:
            progress(epoch, config.epochs, loss, shown)
        return epoch - best_epoch >= config.patience

    epochs_run = _train_epochs(model, prepared.train, config, config.epochs, watch)
    refit_epochs = 0
    if config.refit and prepared.task in REFIT_TASKS and len(prepared.val) > 0:
        merged = _merge(prepared.train, prepared.val)
        batches = math.ceil(len(merged) / effective_batch_size(config, len(merged)))
        # Small datasets give few updates per epoch: count the floor in updates too.
        floor = max(config.min_refit_epochs, math.ceil(config.min_refit_steps / batches))
        refit_epochs = min(config.epochs, max(best_epoch, floor))
        model.load_state_dict(initial_state)

        def report(epoch: int, loss: float) -> bool:
            if progress is not None:
                progress(epoch, refit_epochs, loss, "refit on train+val")
            return False

        _train_epochs(model, merged, config, refit_epochs, report)
    else:
        model.load_state_dict(best_state)
    model.eval()
    return FitSummary(
        epochs_run=epochs_run, best_epoch=best_epoch, best_val=best_val, refit_epochs=refit_epochs
    )


def predict(model: SequenceModel, split: Split, batch_size: int = 256) -> np.ndarray:
    """Run ``model`` over a split in eval mode; returns numpy outputs."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            sl = slice(start, start + batch_size)
            x = torch.from_numpy(split.x[sl])
            lengths = None
            if split.lengths is not None:
                lengths = torch.from_numpy(split.lengths[sl])
                x = x[:, : int(lengths.max())]
            outputs.append(model(x, lengths).numpy())
    # Per-step outputs of batches with different longest sequences differ in length.
    return concat_padded(outputs)


def torch_predictor(model: SequenceModel) -> Predictor:
    """A trained model as a :data:`~edgelstm.training.evaluation.Predictor` (for
    :func:`~edgelstm.training.evaluation.task_metrics` and
    :func:`~edgelstm.training.evaluation.evaluate`)."""
    return functools.partial(predict, model)
