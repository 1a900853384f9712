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

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from edgelstm.config import MODEL_TASKS, from_dict, to_dict
from edgelstm.errors import InvalidInputError
from edgelstm.version import __version__

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
    #: streaming only: state input name -> its shape with one symbolic "batch" axis (per layer,
    #: ``layer0_h`` [directions, "batch", hidden]; stacked ``h`` in older files); the matching
    #: output is the same name with ``_out``.
    state: dict[str, list[Any]] = field(default_factory=dict)
    #: streaming only: every chunk must hold a multiple of this many frames (a conv front end
    #: with stride > 1 reads one step per that many frames); 1 for any chunk.
    stream_chunk_multiple: int = 1
    #: streaming only: every call takes exactly this many frames (1 for a model adopted
    #: with "one window per call"); None: any multiple of ``stream_chunk_multiple``.
    stream_frames_per_call: int | None = None
    #: streaming only: at most this many streams per call (1 for a model adopted whose
    #: state has no batch axis: one stream per call); None: any number.
    stream_max_batch: int | None = None
    task: str | None = None
    arch: str | None = None
    feature_names: tuple[str, ...] = ()
    normalization: dict[str, list[float]] | None = None
    class_labels: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    target_indices: tuple[int, ...] = ()
    anomaly_threshold: float | None = None
    #: transcribe: the tokens output index i writes (``tokens[i]``); the CTC blank is output
    #: ``blank_index`` (the last). Older readers ignore both keys and refuse the task by name.
    tokens: tuple[str, ...] = ()
    blank_index: int | None = None
    source: str | None = None
    source_sha256: str | None = None
    #: the checkpoint's whole config.json, so nothing a later stage needs is lost.
    run_record: dict[str, Any] | None = None

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings)."""
        raw: dict[str, Any] = {"schema": SCHEMA, **to_dict(self)}
        return {
            PREFIX + key: value if isinstance(value, str) else json.dumps(value)
            for key, value in raw.items()
            if value is not None
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, where: str = "model") -> ModelMetadata:
        """Parse ``metadata_props``; raises :class:`InvalidInputError` when they are not ours.

        :func:`metadata_from_props` is the same parse for callers that also take models
        from other tools.
        """
        meta = metadata_from_props(props, where=where)
        if meta is None:
            raise not_edgelstm_model(where)
        return meta


def not_edgelstm_model(where: str) -> InvalidInputError:
    """The error for a model from another tool where edgelstm metadata is needed."""
    return InvalidInputError(
        f"{where} has no edgelstm metadata (schema {SCHEMA}); export it with `edgelstm export`"
    )


#: Stands for the metadata in from_dict's error messages, so the field name can be read back.
_KEY_MARK = "<metadata>"


def _is_normalization(value: dict[str, list[float]]) -> bool:
    # from_dict already checked it is an object of number lists; its shape is checked here.
    return set(value) == {"mean", "std"} and (
        len(value["mean"]) == len(value["std"]) and all(s > 0 for s in value["std"])
    )


def metadata_from_props(props: Mapping[str, str], *, where: str = "model") -> ModelMetadata | None:
    """The edgelstm metadata in ``metadata_props``; None for a model from another tool.

    A model is edgelstm's when it carries ``edgelstm.schema``. Its other ``edgelstm.*`` values
    must then parse: a corrupt one (truncated JSON, a wrong type, normalisation statistics
    that do not match the features) raises :class:`InvalidInputError` naming the key, because
    running such a model as a foreign one would write raw, un-normalised outputs as if all
    were well. Every reader of a model's metadata (``run``, ``--stream``, ``benchmark``,
    :class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession`) comes through here.
    """
    schema = props.get(PREFIX + "schema")
    if schema is None:
        return None
    if schema != SCHEMA:
        raise InvalidInputError(
            f"{where}: metadata {PREFIX}schema is {schema[:40]!r}; this edgelstm reads "
            f"{SCHEMA}: export it again with `edgelstm export`"
        )

    def corrupt(key: str, problem: str) -> InvalidInputError:
        return InvalidInputError(
            f"{where}: metadata {PREFIX}{key} {problem}; the model's metadata is corrupt: "
            "export it again with `edgelstm export`"
        )

    # Each field is stored as a plain string when its type is a string, as JSON otherwise
    # (the inverse of ModelMetadata.to_props); the typed from_dict checks every parsed value
    # against the dataclass, so a truncated or hand-edited value is refused by name here,
    # once, instead of surfacing later as a KeyError or as silently wrong outputs.
    hints = get_type_hints(ModelMetadata)
    raw: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(ModelMetadata)):
        value = props.get(PREFIX + name)
        if value is None:
            continue
        if hints[name] in (str, str | None):
            raw[name] = value
            continue
        try:
            raw[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise corrupt(name, f"is not valid JSON ({exc.msg} at character {exc.pos})") from None
    no_default = dataclasses.MISSING
    required = (
        f
        for f in dataclasses.fields(ModelMetadata)
        if f.default is no_default and f.default_factory is no_default
    )
    missing = next((f.name for f in required if f.name not in raw), None)
    if missing is not None:  # every export writes these: the file lost part of its metadata
        raise corrupt(missing, "is missing")
    try:
        meta = from_dict(ModelMetadata, raw, where=_KEY_MARK, error=InvalidInputError)
    except InvalidInputError as exc:
        # from_dict names the field as "<mark>.<field>[.<item>]: <problem>".
        key, _, problem = str(exc).removeprefix(_KEY_MARK + ".").partition(": ")
        raise corrupt(key, problem) from None
    if meta.task is not None and meta.task not in MODEL_TASKS:
        raise InvalidInputError(
            f"{where}: the model's task is {meta.task[:40]!r}, which edgelstm {__version__} does "
            f"not know (it knows {', '.join(MODEL_TASKS)}); upgrade edgelstm to run it"
        )
    if meta.task == "transcribe" and (not meta.tokens or meta.blank_index != len(meta.tokens)):
        raise corrupt(
            "tokens",
            f"must list the model's tokens, with {PREFIX}blank_index the index after them",
        )
    stats = meta.normalization
    if stats is not None and not _is_normalization(stats):
        raise corrupt(
            "normalization",
            'must be an object {"mean": [...], "std": [...]} of equal-length number lists, std > 0',
        )
    if stats is not None and meta.feature_names and len(stats["mean"]) != len(meta.feature_names):
        raise corrupt(
            "normalization",
            f"holds {len(stats['mean'])} mean(s) for {len(meta.feature_names)} feature(s) "
            f"({', '.join(meta.feature_names)})",
        )
    return meta


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


def verify_weights_sha256(path: Path, model: Any | None = None) -> bool:
    """Check an ``.onnx`` file's weights against its stored checksum.

    Returns False when the file carries none (a model from another tool, or an edgelstm
    model from before checksums); raises :class:`InvalidInputError` naming the file when the
    weights do not match, i.e. the file changed after edgelstm wrote it. ``model`` is the
    file already parsed without external data (the runtime's artifact), so it is not parsed
    twice; its external weights are loaded into it.
    """
    import onnx

    path = Path(path)
    if model is None:
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
