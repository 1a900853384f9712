"""``edgelstm train``: options for training a model, handed to
:func:`edgelstm.training.trainer.train`."""

from __future__ import annotations

import json
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from edgelstm.cli.app import OverwriteFolderOption, above_zero, print_notes, print_warnings
from edgelstm.errors import InvalidInputError

if TYPE_CHECKING:
    from edgelstm.training.trainer import TrainResult


class TaskChoice(str, Enum):
    classify = "classify"
    forecast = "forecast"
    anomaly = "anomaly"
    tag = "tag"
    transcribe = "transcribe"


class ArchChoice(str, Enum):
    auto = "auto"
    lstm = "lstm"
    gru = "gru"
    lstm_fcn = "lstm-fcn"


class FrontendChoice(str, Enum):
    none = "none"
    conv = "conv"


class PresetChoice(str, Enum):
    """The names of :data:`edgelstm.config.TRAIN_PRESETS` (not imported here, so ``--help``
    stays light; a test keeps the two in step)."""

    default = "default"
    smoke = "smoke"


class PoolingChoice(str, Enum):
    last = "last"
    mean = "mean"


TaskOption = Annotated[
    Optional[TaskChoice], typer.Option(help="What the model learns.", show_default=False)  # noqa: UP045
]
OutOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="Checkpoint folder to write (config.json, model.safetensors, metrics.json)."),
]
DatasetOption = Annotated[
    Optional[str], typer.Option(help="Built-in dataset name (see --list-datasets).")  # noqa: UP045
]
DataOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="Training data: .npz (X, y\\[, lengths]), .npy, .csv or .ts."),
]
TestOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(help="Test data in the same layout; default: hold out 20 % of --data."),
]
TargetOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="forecast: columns to predict, names or 0-based indices (a,b or 0,2)."),
]
ArchOption = Annotated[
    ArchChoice,
    typer.Option(
        help="auto: chosen from the data's length, channels and size (printed, and kept "
        "in config.json); lstm or gru: that recurrent cell; lstm-fcn (classify): an LSTM "
        "beside a fully convolutional branch with global pooling (does not stream)."
    ),
]
FrontendOption = Annotated[
    Optional[FrontendChoice],  # noqa: UP045
    typer.Option(
        help="conv: a strided causal Conv1d before the LSTM/GRU that shortens long "
        "sequences; it streams (in chunks of a multiple of the stride) "
        "\\[default: auto's choice, else none].",
        show_default=False,
    ),
]
FrontendStrideOption = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        min=1,
        help="--frontend conv: input frames per recurrent step \\[default: auto's, else 4].",
        show_default=False,
    ),
]
FrontendKernelOption = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        min=2,
        help="--frontend conv: frames each step reads (>= stride) \\[default: 2 x stride].",
        show_default=False,
    ),
]
FrontendChannelsOption = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        min=1,
        help="--frontend conv: output channels \\[default: auto's choice, else 64].",
        show_default=False,
    ),
]
InputNoiseOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        min=0.0,
        help="Std of Gaussian noise added to the normalised training inputs "
        "\\[default: 0.3 for transcribe, else 0].",
        show_default=False,
    ),
]
FcnFiltersOption = Annotated[
    str,
    typer.Option(help="lstm-fcn: filters of its three conv blocks (the paper: 128,256,128)."),
]
SeriesNormOption = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option(
        "--series-norm/--no-series-norm",
        help="classify: z-normalise each sequence by its own mean and std per channel, so "
        "only its shape decides (does not stream) \\[default: auto's choice, else off].",
        show_default=False,
    ),
]
LayersOption = Annotated[int, typer.Option(min=1, help="Stacked recurrent layers.")]
HiddenOption = Annotated[int, typer.Option(min=1, help="Hidden size per layer.")]
BidirectionalOption = Annotated[
    bool, typer.Option(help="Read sequences both ways (not for anomaly or streaming).")
]
DropoutOption = Annotated[float, typer.Option(min=0.0, max=0.95, help="Dropout.")]
PoolingOption = Annotated[
    Optional[PoolingChoice],  # noqa: UP045
    typer.Option(
        help="classify: last step or mean over time \\[default: auto's choice, else last].",
        show_default=False,
    ),
]
PresetOption = Annotated[
    PresetChoice,
    typer.Option(
        help="Training settings: default, or smoke (2 epochs, seconds: to try a command, not "
        "a model to deploy). Flags given beside it override it."
    ),
]
EpochsOption = Annotated[
    Optional[int], typer.Option(min=1, help="Maximum epochs (early stopping may end sooner).")  # noqa: UP045
]
BatchSizeOption = Annotated[Optional[int], typer.Option(min=1, help="Batch size.")]  # noqa: UP045
LearningRateOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(callback=above_zero, help="Learning rate; must be > 0."),
]
LookbackOption = Annotated[
    Optional[int], typer.Option(min=2, help="forecast/anomaly: input window length.")  # noqa: UP045
]
HorizonOption = Annotated[
    Optional[int], typer.Option(min=1, help="forecast: steps predicted per window.")  # noqa: UP045
]
SeasonOption = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(min=1, help="forecast: season length of the seasonal-naive baseline."),
]
SeedOption = Annotated[int, typer.Option(help="Random seed; the same seed gives the same model.")]
MinAccuracyOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        min=0.0,
        max=1.0,
        help=(
            "Fail (exit 1, nothing written) below this test accuracy (classify), AUROC "
            "(anomaly) or frame macro F1 (tag)."
        ),
        show_default=False,
    ),
]
RequireBaselineOption = Annotated[
    bool,
    typer.Option(
        help=(
            "Fail (exit 1, nothing written) unless the model beats chance clearly and "
            "scores at least as well as every baseline computed (classify: majority "
            "class, 1-NN ED, 1-NN DTW; anomaly: AUROC 0.5; forecast: seasonal naive; tag: "
            "majority frame, window logistic regression; transcribe: the most frequent text)."
        )
    ),
]
DtwBudgetOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        metavar="SECONDS",
        help="classify: time allowed for the 1-NN DTW baseline (estimated first; 0 skips).",
    ),
]
JsonMetricsOption = Annotated[
    bool, typer.Option("--json", help="Print the test metrics as JSON on stdout.")
]
ListDatasetsOption = Annotated[
    bool, typer.Option("--list-datasets", help="List the built-in datasets and exit.")
]


def train(
    task: TaskOption = None,
    out: OutOption = None,
    dataset: DatasetOption = None,
    data: DataOption = None,
    test: TestOption = None,
    target: TargetOption = None,
    arch: ArchOption = ArchChoice.auto,
    frontend: FrontendOption = None,
    frontend_stride: FrontendStrideOption = None,
    frontend_kernel: FrontendKernelOption = None,
    frontend_channels: FrontendChannelsOption = None,
    fcn_filters: FcnFiltersOption = "64,128,64",
    series_norm: SeriesNormOption = None,
    layers: LayersOption = 2,
    hidden: HiddenOption = 128,
    bidirectional: BidirectionalOption = False,
    dropout: DropoutOption = 0.1,
    pooling: PoolingOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LearningRateOption = None,
    input_noise: InputNoiseOption = None,
    lookback: LookbackOption = None,
    horizon: HorizonOption = None,
    season: SeasonOption = None,
    seed: SeedOption = 0,
    preset: PresetOption = PresetChoice.default,
    min_accuracy: MinAccuracyOption = None,
    require_baseline: RequireBaselineOption = False,
    dtw_budget: DtwBudgetOption = 60.0,
    overwrite: OverwriteFolderOption = False,
    json_output: JsonMetricsOption = False,
    list_datasets: ListDatasetsOption = False,
) -> None:
    """Train an LSTM/GRU on a built-in dataset or your data and write a checkpoint folder."""
    if list_datasets:
        _print_datasets(json_output)
        return
    task, out = _required(task, out)
    from edgelstm.cli.console import stderr_console, training_progress
    from edgelstm.training.trainer import train as train_model

    err = stderr_console()
    with training_progress(err) as progress:
        result = train_model(
            task.value,
            out=out,
            dataset=dataset,
            data=data,
            test=test,
            target=target,
            arch=arch.value,
            frontend=frontend.value if frontend else None,
            frontend_stride=frontend_stride,
            frontend_kernel=frontend_kernel,
            frontend_channels=frontend_channels,
            fcn_filters=_int_list(fcn_filters, "--fcn-filters"),
            series_norm=series_norm,
            layers=layers,
            hidden=hidden,
            bidirectional=bidirectional,
            dropout=dropout,
            pooling=pooling.value if pooling else None,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            input_noise=input_noise,
            lookback=lookback,
            horizon=horizon,
            season=season,
            seed=seed,
            preset=preset.value,
            overwrite=overwrite,
            progress=progress,
            min_accuracy=min_accuracy,
            require_baseline=require_baseline,
            dtw_budget_s=dtw_budget,
        )
    _print_result(result, err, json_output)


def _required(task: TaskChoice | None, out: Path | None) -> tuple[TaskChoice, Path]:
    """``--task`` and ``--out``, which only ``--list-datasets`` goes without."""
    if task is None:
        raise InvalidInputError(
            "--task is required (classify, forecast, anomaly, tag or transcribe)"
        )
    if out is None:
        raise InvalidInputError("--out RUN_DIR is required: the checkpoint folder to write")
    return task, out


def _print_datasets(json_output: bool) -> None:
    from edgelstm.cli.console import print_dataset_table, stdout_console
    from edgelstm.data.datasets import dataset_table_rows

    rows = dataset_table_rows()
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_dataset_table(rows, stdout_console())


def _print_result(result: TrainResult, err: Any, json_output: bool) -> None:
    """What ``--arch auto`` chose (a note), the run's warnings, then the metrics."""
    from edgelstm.cli.console import print_train_result, stdout_console

    if result.auto is not None:
        reasons = "".join(f"\n  - {why}" for why in result.auto.reasons)
        print_notes(err, [f"--arch auto, for {result.auto.facts.describe()}:{reasons}"])
    print_warnings(err, result.warnings)
    if json_output:
        typer.echo(json.dumps(result.metrics, indent=2))
    else:
        print_train_result(replace(result, metrics=summary_rows(result.metrics)), stdout_console())


def summary_rows(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics as table rows: the ``baselines`` entry becomes one row per baseline
    (``baseline 1-NN ED``) and a ``better than chance`` row, right after the model's metrics."""
    rows = {k: v for k, v in metrics.items() if k != "baselines"}
    baselines = metrics.get("baselines")
    if not isinstance(baselines, dict):
        return rows
    notes = baselines.get("notes") or {}
    for name, value in (baselines.get("values") or {}).items():
        rows[f"baseline {name}"] = value if value is not None else notes.get(name, "skipped")
    clears = baselines.get("clears_chance")
    if clears is not None:
        rows["better than chance"] = clears
        rows[f"beats {baselines.get('best')}"] = baselines.get("beats_best")
    return rows


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(
            f"{option} {text!r} must be comma-separated integers (e.g. 64,128,64)"
        ) from None
