"""``edgelstm train``: options for training a model, handed to :func:`edgelstm.training.train`."""

from __future__ import annotations

import json
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgelstm.errors import InvalidInputError


class TaskChoice(str, Enum):
    classify = "classify"
    forecast = "forecast"
    anomaly = "anomaly"


class ArchChoice(str, Enum):
    auto = "auto"
    lstm = "lstm"
    gru = "gru"
    lstm_fcn = "lstm-fcn"


class FrontendChoice(str, Enum):
    none = "none"
    conv = "conv"


class PoolingChoice(str, Enum):
    last = "last"
    mean = "mean"


def train(
    task: Annotated[
        Optional[TaskChoice], typer.Option(help="What the model learns.", show_default=False)  # noqa: UP045
    ] = None,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help="Checkpoint folder to write (config.json, model.safetensors, metrics.json)."
        ),
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option(help="Built-in dataset name (see --list-datasets).")  # noqa: UP045
    ] = None,
    data: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Training data: .npz (X, y\\[, lengths]), .npy, .csv or .ts."),
    ] = None,
    test: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Test data in the same layout; default: hold out 20 % of --data."),
    ] = None,
    target: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="forecast: columns to predict, names or 0-based indices (a,b or 0,2)."),
    ] = None,
    arch: Annotated[
        ArchChoice,
        typer.Option(
            help="auto: chosen from the data's length, channels and size (printed, and kept "
            "in config.json); lstm or gru: that recurrent cell; lstm-fcn (classify): an LSTM "
            "beside a fully convolutional branch with global pooling (does not stream)."
        ),
    ] = ArchChoice.auto,
    frontend: Annotated[
        Optional[FrontendChoice],  # noqa: UP045
        typer.Option(
            help="conv: a strided causal Conv1d before the LSTM/GRU that shortens long "
            "sequences; it streams (in chunks of a multiple of the stride) "
            "\\[default: auto's choice, else none].",
            show_default=False,
        ),
    ] = None,
    frontend_stride: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=1,
            help="--frontend conv: input frames per recurrent step \\[default: auto's, else 4].",
            show_default=False,
        ),
    ] = None,
    frontend_kernel: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=2,
            help="--frontend conv: frames each step reads (>= stride) \\[default: 2 x stride].",
            show_default=False,
        ),
    ] = None,
    frontend_channels: Annotated[
        int, typer.Option(min=1, help="--frontend conv: output channels.")
    ] = 64,
    fcn_filters: Annotated[
        str,
        typer.Option(help="lstm-fcn: filters of its three conv blocks (the paper: 128,256,128)."),
    ] = "64,128,64",
    layers: Annotated[int, typer.Option(min=1, help="Stacked recurrent layers.")] = 2,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden size per layer.")] = 128,
    bidirectional: Annotated[
        bool, typer.Option(help="Read sequences both ways (not for anomaly or streaming).")
    ] = False,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.95, help="Dropout.")] = 0.1,
    pooling: Annotated[
        Optional[PoolingChoice],  # noqa: UP045
        typer.Option(
            help="classify: last step or mean over time \\[default: auto's choice, else last].",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(min=1, help="Maximum epochs (early stopping may end sooner).")  # noqa: UP045
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Batch size.")] = None,  # noqa: UP045
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate.")] = None,  # noqa: UP045
    lookback: Annotated[
        Optional[int], typer.Option(min=2, help="forecast/anomaly: input window length.")  # noqa: UP045
    ] = None,
    horizon: Annotated[
        Optional[int], typer.Option(min=1, help="forecast: steps predicted per window.")  # noqa: UP045
    ] = None,
    season: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="forecast: season length of the seasonal-naive baseline."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same model.")] = 0,
    min_accuracy: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            min=0.0,
            max=1.0,
            help=(
                "Fail (exit 1, nothing written) below this test accuracy (classify) or AUROC "
                "(anomaly)."
            ),
            show_default=False,
        ),
    ] = None,
    require_baseline: Annotated[
        bool,
        typer.Option(
            help=(
                "Fail (exit 1, nothing written) unless the model beats chance clearly and "
                "scores at least as well as every baseline computed (classify: majority "
                "class, 1-NN ED, 1-NN DTW; anomaly: AUROC 0.5; forecast: seasonal naive)."
            )
        ),
    ] = False,
    dtw_budget: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="classify: time allowed for the 1-NN DTW baseline (estimated first; 0 skips).",
        ),
    ] = 60.0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the test metrics as JSON on stdout.")
    ] = False,
    list_datasets: Annotated[
        bool, typer.Option("--list-datasets", help="List the built-in datasets and exit.")
    ] = False,
) -> None:
    """Train an LSTM/GRU on a built-in dataset or your data and write a checkpoint folder."""
    from edgelstm.cli.console import (
        print_dataset_table,
        print_train_result,
        stderr_console,
        stdout_console,
        training_progress,
    )

    if list_datasets:
        from edgelstm.data.datasets import dataset_table_rows

        rows = dataset_table_rows()
        if json_output:
            typer.echo(json.dumps(rows, indent=2))
        else:
            print_dataset_table(rows, stdout_console())
        return
    if task is None:
        raise InvalidInputError("--task is required (classify, forecast or anomaly)")
    if out is None:
        raise InvalidInputError("--out RUN_DIR is required: the checkpoint folder to write")
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
            layers=layers,
            hidden=hidden,
            bidirectional=bidirectional,
            dropout=dropout,
            pooling=pooling.value if pooling else None,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            lookback=lookback,
            horizon=horizon,
            season=season,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
            min_accuracy=min_accuracy,
            require_baseline=require_baseline,
            dtw_budget_s=dtw_budget,
        )
    from edgelstm.cli.app import print_warnings

    if result.auto is not None:
        from edgelstm.cli.app import print_notes

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
