"""Model I/O: the stream contract, the one stream-state owner and the columnar predictions
every door writes from (runtimes/model_io)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.model_io.contract import StreamContract, state_output_name
from edgelstm.runtimes.model_io.predictions import Predictions
from edgelstm.runtimes.model_io.stream_state import StreamState
from edgelstm.runtimes.model_io.writers import table_records, write_predictions


def test_the_contract_names_state_outputs_and_finds_the_batch_axis() -> None:
    contract = StreamContract({"h": (2, "batch", 8), "c": (2, "batch", 8)}, chunk_multiple=2)
    assert contract.state_names == ("h", "c")
    assert contract.state_outputs == ("h_out", "c_out") == tuple(map(state_output_name, "hc"))
    assert contract.batch_axis("h") == 1
    assert contract.state_shape("c", 5) == (2, 5, 8)
    contract.check_chunk(4)
    with pytest.raises(InvalidInputError, match="multiple of 2"):
        contract.check_chunk(3)


def test_a_state_without_exactly_one_batch_axis_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="exactly one symbolic"):
        StreamContract({"h": ("layers", "batch", 8)})
    with pytest.raises(InvalidInputError, match="exactly one symbolic"):
        StreamContract({"h": (2, 3, 8)})


def test_stream_state_gathers_scatters_and_zeroes_slots() -> None:
    contract = StreamContract({"h": (1, "batch", 2), "frames": (3, "batch", 2)})
    state = StreamState(contract, capacity=4)
    slots = np.array([2, 0])
    new = {"h": np.ones((1, 2, 2), np.float32), "frames": np.full((3, 2, 2), 5, np.float32)}
    new["h"][:, 1] = 7
    state.scatter(slots, new)
    assert state.arrays["h"][0, :, 0].tolist() == [7, 0, 1, 0]
    gathered = state.gather(np.array([0, 2]))
    assert gathered["h"][0, :, 0].tolist() == [7, 1]
    assert gathered["frames"].shape == (3, 2, 2)
    state.zero(2)
    assert state.arrays["h"][0, :, 0].tolist() == [7, 0, 0, 0]
    snapshot = state.snapshot()
    state.zero()
    assert not state.arrays["h"].any()
    state.load(snapshot)
    assert state.arrays["h"][0, :, 0].tolist() == [7, 0, 0, 0]


def test_per_layer_states_of_one_shape_keep_their_own_rows() -> None:
    """Same-shaped states (one h and c per layer) share a buffer; each still gathers,
    scatters and zeroes only its own rows, in contiguous arrays a session can bind."""
    names = ["layer0_h", "layer0_c", "layer1_h", "layer1_c"]
    contract = StreamContract({**{n: (1, "batch", 2) for n in names}, "frames": (3, "batch", 2)})
    state = StreamState(contract, capacity=3)
    assert list(state.arrays) == [*names, "frames"]
    slots = np.array([2, 0])
    new = {n: np.full((1, 2, 2), [[[i], [10 + i]]], np.float32) for i, n in enumerate(names)}
    new["frames"] = np.zeros((3, 2, 2), np.float32)
    state.scatter(slots, new)
    for i, name in enumerate(names):
        assert state.arrays[name][0, :, 0].tolist() == [10 + i, 0, i]
        assert state.arrays[name].flags.c_contiguous
    gathered = state.gather(np.array([0, 2]))
    assert list(gathered) == [*names, "frames"]
    for i, name in enumerate(names):
        assert gathered[name][0, :, 0].tolist() == [10 + i, i]
        assert gathered[name].flags.c_contiguous
    state.zero(0)
    assert [state.arrays[n][0, :, 0].tolist() for n in names[:2]] == [[0, 0, 0], [0, 0, 1]]


def test_stream_state_load_checks_everything_before_changing_anything() -> None:
    state = StreamState(StreamContract({"h": (1, "batch", 2), "c": (1, "batch", 2)}), 1)
    bad = {"h": np.ones((1, 1, 2)), "c": np.full((1, 1, 2), np.nan)}
    with pytest.raises(InvalidInputError, match="`c` contains NaN"):
        state.load(bad)
    assert not state.arrays["h"].any()
    with pytest.raises(InvalidInputError, match="do not match"):
        state.load({"h": np.ones((1, 1, 2))})


def _classified(probs: np.ndarray) -> Predictions:
    labels = ("a", "b")
    table = {
        "index": np.arange(len(probs)),
        "label": np.array(labels)[probs.argmax(axis=1)],
        "confidence": probs.max(axis=1),
        "prob_a": probs[:, 0],
        "prob_b": probs[:, 1],
    }
    return Predictions("classify", {"probabilities": probs}, "probabilities", table)


def test_npz_keeps_float32_exactly_and_csv_rounds_probabilities(tmp_path: Path) -> None:
    probs = np.array([[0.123456789, 0.876543211], [0.5, 0.5]], np.float32)
    predictions = _classified(probs)
    write_predictions(predictions, tmp_path / "p.npz", overwrite=False)
    with np.load(tmp_path / "p.npz") as saved:
        assert saved["probabilities"].dtype == np.float32
        assert np.array_equal(saved["probabilities"], probs)
    write_predictions(predictions, tmp_path / "p.csv", overwrite=False)
    with (tmp_path / "p.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["index", "label", "confidence", "prob_a", "prob_b"]
    assert rows[0]["prob_a"] == "0.123457" and rows[0]["label"] == "b"
    records = table_records(predictions)
    assert records is not None and records[1] == {
        "index": 1, "label": "a", "confidence": 0.5, "prob_a": 0.5, "prob_b": 0.5
    }  # fmt: skip
