"""The ONNX metadata contract: what an exported file says about itself, and who is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
import torch
from conftest import single_thread
from onnx import TensorProto, helper

from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.metadata import PREFIX, SCHEMA, ModelMetadata, metadata_from_props, read_metadata
from edgelstm.training.trainer import TrainResult


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


def _sha256_of_checkpoint(run_dir: Path) -> str:
    data = (run_dir / "config.json").read_bytes() + (run_dir / "model.safetensors").read_bytes()
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("streaming", [False, True], ids=["sequence", "streaming"])
def test_exported_checkpoint_carries_its_record(
    tmp_path: Path, trained_classify: TrainResult, streaming: bool
) -> None:
    out = tmp_path / "m.onnx"
    result = export(trained_classify.out, out, streaming=streaming)
    assert result.report.passed
    record = trained_classify.record
    meta = read_metadata(out)

    assert meta.variant == ("streaming" if streaming else "sequence")
    assert meta.task == "classify"
    assert meta.arch == record.model.arch
    assert meta.feature_names == record.feature_names == ("f0", "f1", "f2")
    assert meta.normalization == {
        "mean": list(record.normalization.mean),
        "std": list(record.normalization.std),
    }
    assert meta.class_labels == record.class_labels == ("0", "1")
    assert meta.anomaly_threshold is None
    assert meta.exporter == "torchscript"
    assert meta.opset == 17
    assert meta.torch_version == torch.__version__
    assert meta.edgelstm_version
    assert meta.source_sha256 == _sha256_of_checkpoint(trained_classify.out)
    assert meta.source is not None and Path(meta.source) == trained_classify.out.resolve()
    assert meta.run_record is not None
    assert meta.run_record["model"]["hidden_size"] == record.model.hidden_size

    proto = onnx.load(str(out))
    assert list(meta.inputs) == [i.name for i in proto.graph.input]
    assert list(meta.outputs) == [o.name for o in proto.graph.output]
    assert proto.opset_import[0].version == 17
    if streaming:
        hidden, layers = record.model.hidden_size, record.model.num_layers
        states = [f"layer{i}_{kind}" for i in range(layers) for kind in ("h", "c")]
        assert meta.state == {name: [1, "batch", hidden] for name in states}
        assert list(meta.inputs) == ["x", *states]
        assert list(meta.outputs) == ["logits", *(f"{name}_out" for name in states)]
    else:
        assert meta.state == {}


def test_checkpoint_hash_follows_the_weights(tmp_path: Path, trained_classify: TrainResult) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "run"
    shutil.copytree(trained_classify.out, copy)
    weights = copy / "model.safetensors"
    state = load_file(str(weights))
    name = next(iter(state))
    state[name] = state[name] + 1.0
    save_file(state, str(weights))
    (copy / "checksums.json").unlink()  # edited by hand: the manifest would refuse it
    export(copy, tmp_path / "m.onnx")
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta.source_sha256 == _sha256_of_checkpoint(copy)
    assert meta.source_sha256 != _sha256_of_checkpoint(trained_classify.out)


def _full_metadata() -> ModelMetadata:
    return ModelMetadata(
        variant="streaming",
        exporter="torchscript",
        opset=17,
        torch_version="2.13.0",
        edgelstm_version="0.1.0",
        inputs={"x": "features", "h": "state", "c": "state"},
        outputs={"prediction": "next frame", "h_out": "state", "c_out": "state"},
        state={"h": [2, "batch", 8], "c": [2, "batch", 8]},
        task="anomaly",
        arch="lstm",
        feature_names=("température", "load"),
        normalization={"mean": [0.1, -2.5], "std": [1.0, 0.30000000000000004]},
        class_labels=(),
        target_names=("load",),
        target_indices=(1,),
        anomaly_threshold=3.25,
        source="/runs/a",
        source_sha256="ab" * 32,
        run_record={"model": {"task": "anomaly", "nested": [1, 2.5, None]}},
    )


def test_props_round_trip() -> None:
    meta = _full_metadata()
    props = meta.to_props()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert all(k.startswith(PREFIX) for k in props)
    assert props[PREFIX + "schema"] == SCHEMA
    assert ModelMetadata.from_props(props) == meta


def test_minimal_props_round_trip() -> None:
    meta = ModelMetadata(
        variant="sequence",
        exporter="dynamo",
        opset=18,
        torch_version="2.13.0",
        edgelstm_version="0.1.0",
        inputs={"x": "model input"},
        outputs={"output": "model output"},
    )
    props = meta.to_props()
    assert PREFIX + "task" not in props  # None values are left out, not written as "null"
    assert ModelMetadata.from_props(props) == meta


def test_props_survive_an_onnx_file(tmp_path: Path) -> None:
    meta = _full_metadata()
    path = tmp_path / "m.onnx"
    model = _identity_model()
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    assert read_metadata(path) == meta


def _identity_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_foreign_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.onnx"
    model = _identity_model()
    model.metadata_props.add(key="author", value="someone else")
    onnx.save(model, str(path))
    with pytest.raises(InvalidInputError, match="no edgelstm metadata"):
        read_metadata(path)


def test_wrong_schema_is_refused() -> None:
    props = _full_metadata().to_props()
    props[PREFIX + "schema"] = "edgelstm.onnx/999"
    with pytest.raises(InvalidInputError, match="edgelstm export"):
        ModelMetadata.from_props(props, where="m.onnx")


def test_corrupt_json_value_is_refused() -> None:
    props = _full_metadata().to_props()
    props[PREFIX + "normalization"] = "{not json"
    with pytest.raises(InvalidInputError, match="normalization"):
        ModelMetadata.from_props(props)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("normalization", '{"mean": [0.1, -2.5], "std": [1.0, 0.3', ["not valid JSON"]),
        ("normalization", '{"mean": [0.1], "std": [1.0]}', ["1 mean(s) for 2 feature(s)"]),
        ("normalization", '{"mean": [0.1, 2], "std": [1.0, 0]}', ["std > 0"]),
        ("normalization", '{"mean": [0.1, 2]}', ["std"]),
        ("class_labels", '"ab"', ["expected a list"]),
        ("feature_names", "[1, 2]", ["expected a string"]),
        ("opset", '"17"', ["expected an integer"]),
        ("anomaly_threshold", '"high"', ["expected a number"]),
        ("state", "[]", ["expected an object"]),
        ("inputs", '{"x": 3}', ["inputs.x", "expected a string"]),
        ("variant", None, ["is missing"]),
    ],
)
def test_corrupt_values_are_refused_by_key(key: str, value: str | None, words: list[str]) -> None:
    """A value that parses as JSON but not as what the key holds (or a key every export
    writes, missing) is refused just the same, naming the key, instead of a ValueError later
    or a wrong tuple of characters."""
    props = _full_metadata().to_props()
    if value is None:
        del props[PREFIX + key]
    else:
        props[PREFIX + key] = value
    with pytest.raises(InvalidInputError) as exc:
        ModelMetadata.from_props(props, where="m.onnx")
    message = str(exc.value)
    for word in ["m.onnx", f"{PREFIX}{key}", "export it again", *words]:
        assert word in message, message


def test_only_a_model_without_the_schema_is_foreign() -> None:
    assert metadata_from_props({"author": "someone else"}) is None
    props = _full_metadata().to_props()
    assert metadata_from_props(props) == _full_metadata()
    props[PREFIX + "normalization"] = "{not json"
    with pytest.raises(InvalidInputError, match=r"edgelstm\.normalization"):
        metadata_from_props(props)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n", bytes(range(256)) * 4],
    ids=["empty", "text", "binary"],
)
def test_non_onnx_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=str(path)):
        read_metadata(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_metadata(tmp_path / "absent.onnx")
