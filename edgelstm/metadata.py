"""The ONNX metadata contract: what an edgelstm ``.onnx`` file says about itself.

Every exported model carries ``metadata_props`` under the ``edgelstm.`` prefix. The runtime
layer reads them to turn raw inputs into model inputs (normalisation, feature order) and raw
outputs into labels, forecasts in original units and anomaly verdicts. Values are strings;
structured values are JSON.

``edgelstm quantize`` adds ``edgelstm.precision`` (``int8`` or ``fp16``), the audit in
``edgelstm.quantization`` and, for INT8, ``edgelstm.reduce_range`` (:data:`REDUCE_RANGE_KEY`);
none of them is a weight, so adding them leaves :func:`weights_sha256` unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError

SCHEMA = "edgelstm.onnx/1"
PREFIX = "edgelstm."
#: metadata key holding the SHA-256 of the model's weights (see :func:`weights_sha256`).
WEIGHTS_KEY = PREFIX + "weights_sha256"
#: metadata key of INT8 models: ``"true"`` when the weights were quantized to 7 bits
#: (``reduce_range``, safe on x86 without VNNI), ``"false"`` for 8 bits. The running CPU
#: cannot tell from the weights alone, so ``run`` and ``benchmark`` read this to warn.
REDUCE_RANGE_KEY = PREFIX + "reduce_range"


@dataclass(frozen=True)
class ModelMetadata:
    """Typed view of an exported model's ``edgelstm.*`` metadata."""

    variant: str  # "sequence" or "streaming"
    exporter: str  # "torchscript" or "dynamo"
    opset: int
    torch_version: str
    edgelstm_version: str
    #: input name -> what it holds; output name -> what it holds.
    inputs: dict[str, str]
    outputs: dict[str, str]
    #: streaming only: state input name -> [layers*directions, "batch", hidden]; the matching
    #: output is the same name with ``_out``.
    state: dict[str, list[Any]] = field(default_factory=dict)
    task: str | None = None
    arch: str | None = None
    feature_names: tuple[str, ...] = ()
    normalization: dict[str, list[float]] | None = None
    class_labels: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    target_indices: tuple[int, ...] = ()
    anomaly_threshold: float | None = None
    source: str | None = None
    source_sha256: str | None = None
    #: the checkpoint's whole config.json, so nothing a later stage needs is lost.
    run_record: dict[str, Any] | None = None

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings)."""
        raw: dict[str, Any] = {
            "schema": SCHEMA,
            "variant": self.variant,
            "exporter": self.exporter,
            "opset": self.opset,
            "torch_version": self.torch_version,
            "edgelstm_version": self.edgelstm_version,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "state": self.state,
            "task": self.task,
            "arch": self.arch,
            "feature_names": list(self.feature_names),
            "normalization": self.normalization,
            "class_labels": list(self.class_labels),
            "target_names": list(self.target_names),
            "target_indices": list(self.target_indices),
            "anomaly_threshold": self.anomaly_threshold,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "run_record": self.run_record,
        }
        return {
            PREFIX + key: value if isinstance(value, str) else json.dumps(value)
            for key, value in raw.items()
            if value is not None
        }

    @classmethod
    def from_props(cls, props: dict[str, str], *, where: str = "model") -> ModelMetadata:
        """Parse ``metadata_props``; raises :class:`InvalidInputError` when they are not ours."""
        if props.get(PREFIX + "schema") != SCHEMA:
            raise InvalidInputError(
                f"{where} has no edgelstm metadata (schema {SCHEMA}); export it with "
                "`edgelstm export`"
            )

        def get(key: str, default: Any = None) -> Any:
            value = props.get(PREFIX + key)
            if value is None:
                return default
            if key in (
                "variant",
                "exporter",
                "torch_version",
                "edgelstm_version",
                "task",
                "arch",
                "source",
                "source_sha256",
            ):
                return value
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise InvalidInputError(
                    f"{where}: metadata {PREFIX}{key} is not valid JSON; re-export the model"
                ) from None

        return cls(
            variant=get("variant", "sequence"),
            exporter=get("exporter", ""),
            opset=int(get("opset", 0)),
            torch_version=get("torch_version", ""),
            edgelstm_version=get("edgelstm_version", ""),
            inputs=get("inputs", {}),
            outputs=get("outputs", {}),
            state=get("state", {}),
            task=get("task"),
            arch=get("arch"),
            feature_names=tuple(get("feature_names", [])),
            normalization=get("normalization"),
            class_labels=tuple(get("class_labels", [])),
            target_names=tuple(get("target_names", [])),
            target_indices=tuple(get("target_indices", [])),
            anomaly_threshold=get("anomaly_threshold"),
            source=get("source"),
            source_sha256=get("source_sha256"),
            run_record=get("run_record"),
        )


def reduce_range_from_props(props: Mapping[str, str]) -> bool | None:
    """The recorded ``reduce_range`` choice; None when the model does not record one.

    INT8 models from other tools, and edgelstm's from before the key existed, say nothing:
    their weight range is unknown rather than assumed.
    """
    return {"true": True, "false": False}.get(props.get(REDUCE_RANGE_KEY, ""))


def read_metadata(path: Path) -> ModelMetadata:
    """Read the edgelstm metadata of an ``.onnx`` file without loading its weights."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for non-ONNX files
        raise InvalidInputError(f"{path} is not a readable ONNX model ({exc})") from None
    props = {p.key: p.value for p in model.metadata_props}
    return ModelMetadata.from_props(props, where=str(path))


# --------------------------------------------------------------------------------------------
# integrity: a checksum of the weights, stored in the model and verified on load


def weights_sha256(model: Any) -> str:
    """SHA-256 over every weight of an ``onnx.ModelProto`` (external data must be loaded).

    Covers initializers and ``Constant`` node tensors, each with its name, type and shape,
    in graph order; metadata is left out, so adding metadata does not change the digest. A
    flipped bit in a weight passes the ONNX checker and ONNX Runtime; it does not pass this.
    """
    import hashlib

    from onnx import numpy_helper

    digest = hashlib.sha256()

    def add(name: str, tensor: Any) -> None:
        array = numpy_helper.to_array(tensor)
        digest.update(f"{name}|{tensor.data_type}|{list(tensor.dims)}|".encode())
        digest.update(array.tobytes())

    for initializer in model.graph.initializer:
        add(initializer.name, initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    add(node.output[0], attribute.t)
    return digest.hexdigest()


def record_weights_sha256(model: Any) -> str:
    """Store :func:`weights_sha256` in the model's metadata (replacing an old value)."""
    value = weights_sha256(model)
    for prop in list(model.metadata_props):
        if prop.key == WEIGHTS_KEY:
            model.metadata_props.remove(prop)
    model.metadata_props.add(key=WEIGHTS_KEY, value=value)
    return value


def verify_weights_sha256(path: Path) -> bool:
    """Check an ``.onnx`` file's weights against its stored checksum.

    Returns False when the file carries none (a model from another tool, or an edgelstm
    model from before checksums); raises :class:`InvalidInputError` naming the file when the
    weights do not match, i.e. the file changed after edgelstm wrote it.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends for files that are not ONNX
        raise InvalidInputError(f"{path} is not a readable ONNX model ({exc})") from None
    stored = next((p.value for p in model.metadata_props if p.key == WEIGHTS_KEY), None)
    if stored is None:
        return False
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # missing or escaping external data: onnx refuses it
        raise InvalidInputError(f"{path}: its external weights cannot be read ({exc})") from None
    actual = weights_sha256(model)
    if actual != stored:
        raise InvalidInputError(
            f"{path}: the weights do not match the checksum stored when edgelstm wrote it "
            f"(stored {stored[:12]}..., now {actual[:12]}...): the file was modified or is "
            "corrupt; export it again"
        )
    return True
