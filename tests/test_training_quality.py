"""The tables and options of `python -m edgelstm.benchmarks.suites.training_quality`, on synthetic
rows (the script itself trains for many minutes and is run by hand)."""

from __future__ import annotations

from typing import Any

import pytest

from edgelstm.benchmarks.suites import training_quality as tq

LSTM = {"task": "classify", "arch": "lstm", "num_layers": 2, "hidden_size": 128,
        "pooling": "last", "frontend": "none"}  # fmt: skip


def _row(
    dataset: str,
    seed: int,
    accuracy: float,
    *,
    dtw: float | None = 0.90,
    ed: float = 0.85,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    values = {"majority": 0.5, "1-NN ED": ed, "1-NN DTW": dtw}
    beaten = {k: None if v is None else accuracy >= v for k, v in values.items()}
    baselines: dict[str, Any] = {"metric": "accuracy", "values": values, "beaten": beaten}
    if dtw is None:
        baselines["notes"] = {"1-NN DTW": "skipped: estimated 900 s"}
    metrics = {"accuracy": accuracy, "macro_f1": accuracy, "baselines": baselines}
    target = tq._classify_target(dataset)
    return {
        "dataset": dataset,
        "task": "classify",
        "seed": seed,
        "target": target.description,
        "target_met": target.passes(metrics),
        "seconds": 12.3,
        "baseline_seconds": 4.5,
        "within_time_budget": True,
        "onnx_bytes": 804_881,
        "model": model or LSTM,
        "metrics": metrics,
    }


def test_classification_table_has_one_line_per_set_with_every_seed_and_the_baselines() -> None:
    rows = [
        _row("OSULeaf", 0, 0.95),
        _row("OSULeaf", 1, 0.88),  # below 1-NN DTW (0.90): bold
        _row("OSULeaf", 2, 0.91),
        _row("ACSF1", 0, 0.80, dtw=None),  # DTW skipped: judged by 1-NN ED (0.85)
    ]
    lines = tq.classification_table(rows, (0, 1, 2))
    assert lines[0] == (
        "| dataset | seed 0 | seed 1 | seed 2 | majority | 1-NN ED | 1-NN DTW | beats DTW | "
        "architecture |"
    )
    assert lines[2] == (
        "| OSULeaf | 0.9500 | **0.8800** | 0.9100 | 0.5000 | 0.8500 | 0.9000 | 2/3 | "
        "lstm 2x128, last pooling |"
    )
    assert lines[3].startswith("| ACSF1 | **0.8000** | - | - | 0.5000 | 0.8500 | skipped (")
    assert "| 0/1 |" in lines[3]
    assert len(lines) == 4


def test_detail_table_has_one_line_per_run() -> None:
    rows = [_row("OSULeaf", 0, 0.95), _row("OSULeaf", 1, 0.88)]
    lines = tq.detail_table(rows)
    assert len(lines) == 2 + len(rows)
    first = lines[2].split(" | ")
    assert first[0] == "| OSULeaf" and first[2] == "0"
    assert "+0.0500" in lines[2] and "-0.0200" in lines[3]  # accuracy minus 1-NN DTW's
    assert "| yes |" in lines[2] and "| **no** |" in lines[3]
    assert "| 0.80 |" in lines[2]  # ONNX MB
    assert "| 12.3 | 4.5 |" in lines[2]


def test_markdown_holds_both_tables() -> None:
    doc = {
        "command": "python -m edgelstm.benchmarks.suites.training_quality",
        "environment": {
            "cpu": "Test CPU",
            "logical_cores": 2,
            "torch": "2",
            "torch_threads": 2,
            "python": "3.11",
            "edgelstm": "0.1",
        },
        "time_budget_s": 120.0,
        "dtw_budget_s": 300.0,
        "seeds": [0, 1],
        "rows": [_row("OSULeaf", 0, 0.95), _row("OSULeaf", 1, 0.92)],
    }
    text = tq.to_markdown(doc)
    assert "| dataset | seed 0 | seed 1 | majority |" in text
    assert "| OSULeaf | 0.9500 | 0.9200 |" in text
    assert "## Every run" in text and "(budget 300 s)" in text


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (LSTM, "lstm 2x128, last pooling"),
        (
            {
                **LSTM,
                "arch": "gru",
                "frontend": "conv",
                "frontend_kernel": 8,
                "frontend_stride": 4,
                "frontend_channels": 64,
                "pooling": "mean",
            },
            "gru 2x128, conv front end k8/s4 x64, mean pooling",
        ),
        (
            {**LSTM, "arch": "lstm-fcn", "fcn_filters": [64, 128, 64]},
            "lstm-fcn 2x128, FCN 64-128-64",
        ),
    ],
)
def test_architecture_in_a_few_words(model: dict[str, Any], expected: str) -> None:
    assert tq.architecture(model) == expected


def test_options_refuse_reserved_and_unknown_sets(capsys: pytest.CaptureFixture[str]) -> None:
    args = tq.parse_args(["--dataset", "ACSF1", "--dataset", "Airline", "--seeds", "3,4"])
    assert args.dataset == ["ACSF1", "Airline"] and args.seeds == (3, 4)
    assert tq.parse_args([]).seeds == (0, 1, 2)
    for name in tq.RESERVED_SETS:
        with pytest.raises(SystemExit):
            tq.parse_args(["--dataset", name])
        assert "reserved for independent checking" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tq.parse_args(["--seeds", "0,0"])
    with pytest.raises(SystemExit):
        tq.parse_args(["--dataset", "NoSuchSet"])
    assert "unknown dataset" in capsys.readouterr().err


def test_the_five_tuning_sets_and_no_reserved_one_are_run() -> None:
    names = [t.dataset for t in tq.TARGETS if t.task == "classify"]
    assert names == list(tq.CLASSIFY_SETS)
    assert not set(names) & set(tq.RESERVED_SETS)
