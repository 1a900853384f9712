"""Integrity: weight checksums in every artifact, verified on load; durable atomic writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import pytest
from conftest import CliRunner, single_thread
from onnx import TensorProto, helper

from edgelstm.errors import CheckpointError, InvalidInputError
from edgelstm.metadata import (
    WEIGHTS_KEY,
    record_weights_sha256,
    verify_weights_sha256,
    weights_sha256,
)

if TYPE_CHECKING:
    from edgelstm.training.trainer import TrainResult


@pytest.fixture(scope="module")
def exported(trained_classify: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    single_thread()
    from edgelstm.exporters import export

    out = tmp_path_factory.mktemp("integrity") / "model.onnx"
    export(trained_classify.out, out)
    return out


def _flip_weight_bit(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(init.raw_data)
    data[len(data) // 2] ^= 0x01
    init.raw_data = bytes(data)
    onnx.save(model, str(dst))


def test_export_records_the_weights_checksum(exported: Path) -> None:
    model = onnx.load(str(exported))
    props = {p.key: p.value for p in model.metadata_props}
    assert props[WEIGHTS_KEY] == weights_sha256(model)
    assert verify_weights_sha256(exported) is True


def test_a_flipped_weight_bit_is_refused_everywhere(
    exported: Path, tmp_path: Path, cli: CliRunner, classify_npz: Path
) -> None:
    from edgelstm.runtimes.ort.session import open_session

    flipped = tmp_path / "flipped.onnx"
    _flip_weight_bit(exported, flipped)
    onnx.checker.check_model(str(flipped), full_check=True)  # the checker cannot tell
    with pytest.raises(InvalidInputError, match="do not match the checksum"):
        open_session(flipped)
    out = tmp_path / "preds.csv"
    result = cli("run", flipped, "--input", classify_npz, "--output", out)
    assert result.code == 2
    assert len(result.err_lines) == 1
    assert result.err_lines[0].startswith(f"error: {flipped}: the weights do not match")
    assert not out.exists()
    # quantize reads its source through the same artifact loader: a tampered FP32 model is
    # not turned into a fresh INT8 file with a valid checksum of its own.
    quantized = tmp_path / "flipped.int8.onnx"
    result = cli("quantize", flipped, "--mode", "dynamic-int8", "--out", quantized)
    assert result.code == 2, result
    assert result.err_lines == [result.err_lines[0]]
    assert result.err_lines[0].startswith(f"error: {flipped}: the weights do not match")
    assert not quantized.exists()


def test_metadata_changes_keep_the_checksum_valid(exported: Path, tmp_path: Path) -> None:
    model = onnx.load(str(exported))
    model.metadata_props.add(key="note", value="added later")
    path = tmp_path / "noted.onnx"
    onnx.save(model, str(path))
    assert verify_weights_sha256(path) is True


def test_models_without_a_checksum_are_not_verified_but_run(tmp_path: Path) -> None:
    from edgelstm.runtimes.ort.session import open_session

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    assert verify_weights_sha256(path) is False
    assert open_session(path).provider == "cpu"


def test_constant_node_weights_are_covered(tmp_path: Path) -> None:
    value = helper.make_tensor("c", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=value),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        "constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = record_weights_sha256(model)
    model.graph.node[0].attribute[0].t.float_data[1] = 2.5
    assert weights_sha256(model) != before


def test_quantized_models_carry_their_own_checksum(exported: Path, tmp_path: Path) -> None:
    from edgelstm.exporters.quantize import quantize

    out = tmp_path / "model.int8.onnx"
    quantize(exported, out, mode="dynamic-int8", max_degradation=1.0)
    assert verify_weights_sha256(out) is True
    flipped = tmp_path / "flipped.int8.onnx"
    _flip_weight_bit(out, flipped)
    with pytest.raises(InvalidInputError, match="do not match the checksum"):
        verify_weights_sha256(flipped)


def test_checkpoint_weights_are_verified(
    trained_classify: TrainResult, tmp_path: Path, cli: CliRunner
) -> None:
    import shutil

    from edgelstm.training.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(trained_classify.out, run)
    load_checkpoint(run)
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # the last tensor's bytes; the header stays readable
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_checkpoint(run)
    out = tmp_path / "m.onnx"
    result = cli("export", run, "--out", out)
    assert result.code == 2
    assert "model.safetensors does not match the checksum" in result.err_lines[0]
    assert not out.exists()
    # the configuration is covered too
    shutil.copy(trained_classify.out / "model.safetensors", weights)
    config = run / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 8', '"hidden_size": 9'))
    with pytest.raises(CheckpointError, match=r"config\.json does not match the checksum"):
        load_checkpoint(run)


def test_checkpoints_without_a_checksum_still_load(
    trained_classify: TrainResult, tmp_path: Path
) -> None:
    import shutil

    from edgelstm.training.checkpoint import load_checkpoint, verify_checksums

    run = tmp_path / "old"
    shutil.copytree(trained_classify.out, run)
    assert verify_checksums(run) is True
    (run / "checksums.json").unlink()  # a checkpoint from before checksums
    assert verify_checksums(run) is False
    assert load_checkpoint(run).model is not None


def test_a_checkpoint_left_aside_by_an_interrupted_replace_is_read_back(
    trained_classify: TrainResult, tmp_path: Path
) -> None:
    import shutil

    from edgelstm.training.checkpoint import load_checkpoint

    # Where folders cannot be swapped atomically, a kill between the two renames of an
    # --overwrite leaves the old checkpoint as `.run.*.old` and nothing at `run`.
    shutil.copytree(trained_classify.out, tmp_path / ".run.k1ll.old")
    record = load_checkpoint(tmp_path / "run").record
    assert record == trained_classify.record
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_atomic_writes_flush_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgelstm import fileio

    synced: list[int] = []
    real = os.fsync

    def counting(fd: Any) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", counting)
    fileio.write_text_atomic(tmp_path / "a.txt", "hello")
    assert len(synced) >= 2  # the file before the rename, the folder after it
    synced.clear()
    with fileio.atomic_folder(tmp_path / "folder") as tmp:
        (tmp / "x.bin").write_bytes(np.arange(4).tobytes())
    assert len(synced) >= 3  # the file, the temporary folder, the parent folder
    assert (tmp_path / "folder" / "x.bin").is_file()
