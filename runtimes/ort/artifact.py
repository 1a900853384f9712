"""The artifact: an ``.onnx`` file read once (graph, metadata, profile, checksum).

``run`` used to parse a model several times before ONNX Runtime parsed it once more: to
verify the weights' checksum, to profile the graph, to read the edgelstm metadata.
:func:`load_artifact` parses the graph once (without external weights), verifies the checksum
edgelstm stored in it and profiles it; :func:`~edgelstm.runtimes.ort.session.open_session`,
:class:`~edgelstm.runtimes.model_io.streaming_session.StreamingSession` and
:func:`~edgelstm.runtimes.run_files.run_model` take an :class:`Artifact` or a path.

Example::

    >>> artifact = load_artifact("jv.onnx")  # doctest: +SKIP
    >>> artifact.profile.precision, artifact.metadata.task  # doctest: +SKIP
    ('fp32', 'classify')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import (
    ModelMetadata,
    metadata_from_props,
    not_edgelstm_model,
    reduce_range_from_props,
    verify_weights_sha256,
)

__all__ = ["Artifact", "ModelProfile", "load_artifact", "model_profile"]


#: Ops that only ONNX Runtime's CPU provider implements; on an accelerator they run on the
#: host between copies (or the session fails), so their presence decides ``auto``.
_CPU_ONLY_INT8_OPS = frozenset({"DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulInteger"})
_INT8_OPS = _CPU_ONLY_INT8_OPS | {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul"}


@dataclass(frozen=True)
class ModelProfile:
    """What the graph says about where it can run: precision and notable ops.

    ``reduce_range`` is what ``edgelstm quantize`` recorded for INT8 weights (True: 7-bit),
    None when the model records nothing. ``metadata`` is the model's edgelstm metadata, None
    for a model from another tool.
    """

    precision: str  # fp32, fp16 or int8
    op_types: frozenset[str]
    streaming: bool
    reduce_range: bool | None = None
    metadata: ModelMetadata | None = None

    @property
    def cpu_only_ops(self) -> tuple[str, ...]:
        """Ops in the graph that only the CPU provider implements."""
        return tuple(sorted(self.op_types & _CPU_ONLY_INT8_OPS))


def model_profile(path: Path) -> ModelProfile:
    """Read the graph (not its weights) to learn precision, op types and streaming state.

    The edgelstm metadata is parsed here, once per opened model, so a corrupt value stops
    ``run``, ``--stream`` and ``benchmark`` alike with the same error naming the key.
    """
    return _profile(_parse(Path(path)), Path(path))


def _parse(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends for files that are not ONNX
        raise InvalidInputError(f"{path} is not a readable ONNX model ({exc})") from None


def _profile(model: Any, path: Path) -> ModelProfile:
    import onnx

    ops = frozenset(node.op_type for node in model.graph.node)
    fp16 = onnx.TensorProto.FLOAT16
    if ops & _INT8_OPS:
        precision = "int8"
    elif any(init.data_type == fp16 for init in model.graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    props = {p.key: p.value for p in model.metadata_props}
    # `edgelstm quantize` stamps the precision it produced; trust it over the op scan.
    precision = props.get("edgelstm.precision", precision)
    meta = metadata_from_props(props, where=str(path))
    streaming = meta is not None and meta.variant == "streaming"
    return ModelProfile(precision, ops, streaming, reduce_range_from_props(props), meta)


@dataclass(frozen=True)
class Artifact:
    """An ``.onnx`` file parsed once: its path, graph, metadata properties and profile.

    ``proto`` is the parsed ``onnx.ModelProto``; external weights are loaded into it only when
    its checksum was verified (``verified``). ``metadata`` is the edgelstm metadata, None for a
    model from another tool.
    """

    path: Path
    proto: Any
    props: dict[str, str]
    profile: ModelProfile
    verified: bool

    @property
    def metadata(self) -> ModelMetadata | None:
        """The edgelstm metadata; None for a model from another tool."""
        return self.profile.metadata

    def edgelstm_metadata(self) -> ModelMetadata:
        """The edgelstm metadata, or an error naming the file for a model from another tool
        (for callers that need it: streaming, ``run --stream``)."""
        if self.profile.metadata is None:
            raise not_edgelstm_model(str(self.path))
        return self.profile.metadata

    def with_weights(self) -> Any:
        """``proto`` with its external weights loaded (in place, once), for callers that
        rewrite the graph and save it, as the quantizer does."""
        import onnx

        try:
            onnx.load_external_data_for_model(self.proto, str(self.path.parent))
        except Exception as exc:  # missing or escaping external data: onnx refuses it
            raise InvalidInputError(
                f"{self.path}: its external weights cannot be read ({exc})"
            ) from None
        return self.proto

    def verify(self) -> Artifact:
        """This artifact with its weights checked against the stored checksum (once)."""
        if self.verified:
            return self
        verify_weights_sha256(self.path, self.proto)
        return Artifact(self.path, self.proto, self.props, self.profile, True)


def load_artifact(path: Path | str, *, verify: bool = True) -> Artifact:
    """Parse ``path`` once; verify the checksum (unless ``verify=False``) and profile it.

    Raises :class:`~edgelstm.errors.InvalidInputError` for a folder, a missing or unreadable
    file, weights that do not match their checksum and corrupt edgelstm metadata, in that
    order. ``verify=False`` leaves the checksum to :meth:`Artifact.verify` (``open_session``
    calls it), for callers whose own checks come first.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"model path {path} is a folder; give the .onnx file inside it")
    if not path.is_file():
        raise InvalidInputError(f"model file {path} does not exist")
    model = _parse(path)
    if verify:
        verify_weights_sha256(path, model)  # an edgelstm artifact changed since: refuse
    profile = _profile(model, path)
    props = {p.key: p.value for p in model.metadata_props}
    return Artifact(path, model, props, profile, verify)
