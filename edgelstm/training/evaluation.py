"""Evaluating a model on a checkpoint's data: read the data, cut the splits as training did,
and compute the task's test metrics in original units.

Nothing here imports torch: the accuracy gate of ``quantize`` and ``benchmark --eval``
evaluate ONNX models on a device install (``edgelstm[cpu,data]``) exactly as training
evaluated the PyTorch model. They do it through :class:`EvaluationData` and :func:`evaluate`
(for ONNX files, :func:`edgelstm.runtimes.model_io.accuracy.evaluate_onnx`), so every
measurement of a model's quality is the same number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.config import RunRecord, TrainConfig
from edgelstm.data.types import SequenceSet, Series, TaggedSequences, Transcripts, WindowSet
from edgelstm.errors import InvalidInputError
from edgelstm.tasks import (
    DEFAULT_GATES,
    Gate,
    PreparedData,
    Split,
    anomaly_metrics,
    anomaly_scores,
    choose_threshold,
    classify_metrics,
    denormalize,
    forecast_metrics,
    prepare_anomaly,
    prepare_classify,
    prepare_forecast,
    seasonal_naive,
)
from edgelstm.training.baselines import (
    BaselineComparison,
    classification_baselines,
    compare_with_baselines,
    tagging_baselines,
)

#: Share of the training data held out as the test split when no test data is given.
DEFAULT_TEST_FRACTION = 0.2
#: Dataset-specific defaults, so `edgelstm train --dataset NAME` meets its quality target.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "Airline": {"lookback": 36, "horizon": 12, "season": 12},
    "KDD-TSAD_135": {"lookback": 64},
}


@dataclass(frozen=True)
class LoadedData:
    """Training and test data as read, before splitting and normalisation."""

    train: SequenceSet | Series | WindowSet | TaggedSequences | Transcripts
    test: SequenceSet | Series | WindowSet | TaggedSequences | Transcripts | None
    name: str
    source: str
    test_start: int | None
    defaults: dict[str, Any]


def load_task_data(
    task: str,
    dataset: str | None,
    data: Path | str | None,
    test: Path | str | None,
    target: str | None,
) -> LoadedData:
    """Read a built-in dataset or the user's files for ``task`` (exactly one of the two)."""
    if (dataset is None) == (data is None):
        raise InvalidInputError("give exactly one of --dataset NAME or --data FILE")
    if dataset is not None:
        from edgelstm.data.datasets import load_dataset

        if test is not None:
            raise InvalidInputError("--test applies to --data; built-in datasets bring their own")
        split = load_dataset(dataset)
        if split.spec.task != task:
            raise InvalidInputError(
                f"dataset {split.spec.name} is a {split.spec.task} dataset, not {task}; "
                f"use --task {split.spec.task}"
            )
        return LoadedData(
            train=split.train,
            test=split.test,
            name=split.spec.name,
            source=split.spec.source,
            test_start=split.test_start,
            defaults=DATASET_DEFAULTS.get(split.spec.name, {}),
        )
    from edgelstm.data.readers import load_training_data

    assert data is not None
    train_data = load_training_data(Path(data), task, target)
    test_data = load_training_data(Path(test), task, target) if test is not None else None
    if test_data is not None and type(test_data) is not type(train_data):
        raise InvalidInputError(
            f"--test {test} holds {type(test_data).__name__} data but --data {data} holds "
            f"{type(train_data).__name__}; give both in the same layout"
        )
    return LoadedData(
        train=train_data,
        test=test_data,
        name=Path(data).name,
        source=str(Path(data).resolve()) + (f" + {Path(test).resolve()}" if test else ""),
        test_start=None,
        defaults={},
    )


def prepare_task_data(
    task: str,
    loaded: LoadedData,
    config: TrainConfig,
    target: str | None,
    rng: np.random.Generator,
) -> PreparedData:
    """Cut and normalise the splits exactly as training does (the same ``rng`` gives the same
    cut), so a checkpoint's exports are evaluated on its own test split."""
    train_data, test_data = loaded.train, loaded.test
    if task == "classify":
        assert isinstance(train_data, SequenceSet)
        assert test_data is None or isinstance(test_data, SequenceSet)
        return prepare_classify(
            train_data,
            test_data,
            val_fraction=config.val_fraction,
            test_fraction=DEFAULT_TEST_FRACTION,
            rng=rng,
        )
    if task in ("tag", "transcribe"):
        from edgelstm.labelling import prepare_tag, prepare_transcribe

        prepare: Any = prepare_tag if task == "tag" else prepare_transcribe
        return prepare(  # type: ignore[no-any-return]
            train_data,
            test_data,
            val_fraction=config.val_fraction,
            test_fraction=DEFAULT_TEST_FRACTION,
            rng=rng,
        )
    if task == "forecast":
        assert isinstance(train_data, Series | WindowSet)
        assert test_data is None or isinstance(test_data, Series | WindowSet)
        if isinstance(train_data, WindowSet):
            targets = train_data.target_indices
        else:
            from edgelstm.data.readers import resolve_targets

            targets = resolve_targets(train_data.feature_names, target)
        return prepare_forecast(
            train_data,
            test_data,
            targets=targets,
            lookback=config.lookback,
            horizon=config.horizon,
            val_fraction=config.val_fraction,
            test_fraction=DEFAULT_TEST_FRACTION,
            test_start=loaded.test_start,
        )
    assert isinstance(train_data, Series)
    assert test_data is None or isinstance(test_data, Series)
    return prepare_anomaly(
        train_data,
        test_data,
        lookback=config.lookback,
        val_fraction=config.val_fraction,
        test_start=loaded.test_start,
    )


#: Anything that maps a split to raw model outputs: an ONNX Runtime session or a torch model.
Predictor = Callable[[Split], np.ndarray]


def task_metrics(
    run: Predictor, prepared: PreparedData, *, season: int = 1, stride: int = 1
) -> tuple[dict[str, Any], float | None]:
    """All test metrics in original units, and the anomaly threshold (None for other tasks).

    ``run`` maps a split to raw model outputs: an ONNX Runtime session
    (:class:`edgelstm.runtimes.model_io.feeding.SplitPredictor`) or a trained PyTorch model
    (:func:`edgelstm.training.trainer.torch_predictor`), so the checkpoint, its exports and
    their quantized versions are measured by exactly the same code. ``stride`` (a conv front
    end's frames per step) tells a transcriber's scorer how many of its steps each sequence has.
    """
    task = prepared.task
    test = prepared.test
    if task in ("tag", "transcribe"):
        from edgelstm.labelling import labelling_metrics

        return labelling_metrics(prepared, run(test), stride=stride), None
    if task == "classify":
        assert test.y is not None
        return classify_metrics(test.y, run(test)), None
    if task == "forecast":
        assert test.y is not None
        idx = prepared.target_indices
        y_true = denormalize(test.y, prepared.normalization, idx)
        y_pred = denormalize(run(test), prepared.normalization, idx)
        windows = denormalize(test.x[:, :, list(idx)], prepared.normalization, idx)
        baseline = seasonal_naive(windows, y_true.shape[1], season)
        result: dict[str, Any] = forecast_metrics(y_true, y_pred, baseline)
        result["test_windows"] = len(test)
        result["season"] = season
        return result, None
    assert prepared.reference is not None
    reference = prepared.reference.x[0]
    ref_scores = anomaly_scores(reference, run(prepared.reference)[0])
    # The first steps have almost no context; they would set the threshold on warm-up noise.
    warmup = min(prepared.details.get("lookback", 1), len(ref_scores) // 4)
    threshold = choose_threshold(ref_scores[warmup:])
    series = test.x[0]
    scores = anomaly_scores(series, run(test)[0])[prepared.test_start :]
    labels = None if test.y is None else np.asarray(test.y)[prepared.test_start :]
    result = anomaly_metrics(labels, scores, threshold)
    result["top_score_index"] += prepared.test_start
    result["evaluated_steps"] = len(scores)
    return result, threshold


def raw_classification_sets(prepared: PreparedData) -> tuple[SequenceSet, SequenceSet]:
    """The sequences a classifier learnt from (training + validation) and is evaluated on (test),
    unpadded and back in original units, with their class labels.

    The baselines of :mod:`edgelstm.training.baselines` are computed on exactly these, so they and
    the model share one train/test split, whether the test data came from ``--test`` or was
    held out of ``--data``.
    """
    if prepared.task != "classify":
        raise InvalidInputError(f"raw sequences exist for classify data, not {prepared.task}")
    indices = tuple(range(prepared.num_features))

    def unpad(split: Split) -> tuple[list[np.ndarray], list[str]]:
        assert split.lengths is not None and split.y is not None
        values = denormalize(split.x, prepared.normalization, indices)
        sequences = [values[i, : int(n)] for i, n in enumerate(split.lengths.tolist())]
        return sequences, [prepared.class_labels[int(k)] for k in split.y.tolist()]

    def as_set(*splits: Split) -> SequenceSet:
        sequences: list[np.ndarray] = []
        labels: list[str] = []
        for split in splits:
            seqs, labs = unpad(split)
            sequences += seqs
            labels += labs
        return SequenceSet(tuple(sequences), np.asarray(labels), prepared.feature_names)

    return as_set(prepared.train, prepared.val), as_set(prepared.test)


def compare_model_with_baselines(
    prepared: PreparedData, metrics: dict[str, Any], *, dtw_budget_s: float = 60.0
) -> BaselineComparison:
    """The task's baselines on the split ``metrics`` were computed on, beside the model.

    classify computes majority class, 1-NN ED and 1-NN DTW (:func:`classification_baselines`
    with ``dtw_budget_s``); anomaly and forecast read what ``metrics`` already hold (random
    scores' AUROC 0.5, the seasonal-naive MAE).
    """
    accuracies = None
    if prepared.task == "classify":
        train, test = raw_classification_sets(prepared)
        accuracies = classification_baselines(train, test, dtw_budget_s=dtw_budget_s)
    if prepared.task == "tag":
        metrics = {**metrics, **tagging_baselines(prepared)}
    return compare_with_baselines(prepared.task, metrics, accuracies)


def prepare_for_evaluation(run_dir: Path | str) -> tuple[PreparedData, RunRecord]:
    """Rebuild a checkpoint's splits exactly as training cut and normalised them.

    Used to evaluate exported or quantized models on the same test data as the checkpoint.
    The data must be unchanged: its normalisation statistics are compared with the stored ones.
    """
    from edgelstm.data.datasets import dataset_names
    from edgelstm.training.checkpoint import read_run_record

    record = read_run_record(Path(run_dir))
    info = record.dataset
    task = record.model.task
    target = ",".join(record.target_names) if task == "forecast" else None
    if info.name in dataset_names():
        loaded = load_task_data(task, info.name, None, None, target)
    else:
        data, _, test = info.source.partition(" + ")
        loaded = load_task_data(task, None, data, test or None, target)
    prepared = prepare_task_data(
        task, loaded, record.train, target, np.random.default_rng(record.train.seed)
    )
    if not np.allclose(prepared.normalization.mean, record.normalization.mean, rtol=1e-6) or not (
        np.allclose(prepared.normalization.std, record.normalization.std, rtol=1e-6)
    ):
        raise InvalidInputError(
            f"the data behind {run_dir} ({info.source}) changed since training (its statistics "
            "differ); evaluate on the original data or retrain"
        )
    return prepared, record


@dataclass(frozen=True)
class EvaluationData:
    """A checkpoint's test split, prepared once, with what evaluating on it needs besides.

    Preparing reads and cuts the whole dataset; a caller evaluating several models on one
    checkpoint (float and quantized in the gate, every artifact in a benchmark) builds this
    once and passes it to :func:`evaluate` for each.

    Example:
        >>> data = EvaluationData.from_run("runs/jv")  # doctest: +SKIP
        >>> data.gate.metric, evaluate(predictor, data)  # doctest: +SKIP
        ('accuracy', 0.9757)
    """

    run_dir: Path
    prepared: PreparedData
    #: forecast: the seasonal-naive baseline's season, as training used it.
    season: int
    #: frames per recurrent step (a conv front end's stride), for per-step scorers.
    stride: int = 1

    @classmethod
    def from_run(cls, run_dir: Path | str) -> EvaluationData:
        """The test split of the checkpoint in ``run_dir`` (see :func:`prepare_for_evaluation`)."""
        prepared, record = prepare_for_evaluation(run_dir)
        season = int(record.dataset.details.get("season", 1))
        return cls(Path(run_dir), prepared, season, record.model.stride)

    @property
    def gate(self) -> Gate:
        """The task's default gate; its ``metric`` is the number :func:`evaluate` returns."""
        return DEFAULT_GATES[self.prepared.task]


def evaluate(run: Predictor, data: EvaluationData) -> float:
    """The headline (gate) metric of ``run`` on the checkpoint's test split.

    NaN when the split cannot give it (an anomaly test series without labels has no AUROC):
    a gate then fails and a benchmark row shows no value, rather than a made-up number.
    """
    metrics, _ = task_metrics(run, data.prepared, season=data.season, stride=data.stride)
    return float(metrics.get(data.gate.metric, math.nan))
