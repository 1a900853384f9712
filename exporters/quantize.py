"""INT8 and FP16 artifacts that really take effect on recurrent layers, audited and gated.

- ``dynamic-int8``: ONNX Runtime dynamic quantization; every LSTM must become
  ``DynamicQuantizeLSTM`` (recurrent weights are constant-folded into initializers first, or
  the quantizer silently skips them). GRU has no quantized kernel: reported, never hidden.
- ``static-int8``: QDQ quantization calibrated on real data; ONNX Runtime leaves LSTM/GRU in
  float in this mode, and the audit says so.
- ``fp16``: float16 weights, float32 inputs/outputs kept; for CUDA/TensorRT. On the CPU
  provider the LSTM runs in float32 between Casts: smaller file, no speed.

INT8 weights are 7-bit (``reduce_range``) unless asked otherwise: ONNX Runtime's x86 u8s8
kernels without VNNI add pairs of u8*s8 products in 16 bits (VPMADDUBSW), which saturates with
8-bit weights. The model runs on a device, not on the machine that quantizes it, so the
default is the choice that is safe on every x86; ``off`` is for targets known to have VNNI
(or ARM), ``auto`` decides from the CPU running ``quantize``. The choice is recorded in the
metadata (:data:`~edgelstm.metadata.REDUCE_RANGE_KEY`) so ``run`` can warn on the wrong CPU.

The result is written atomically only after the audit and the accuracy gate pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from edgelstm.config import PER_STEP_TASKS
from edgelstm.errors import CheckFailedError, InvalidInputError
from edgelstm.exporters.accuracy_gate import (
    AccuracyGate,
    accuracy_gate,
    eval_run_dir,
    gate_baselines,
    refuse_failed_gate,
)
from edgelstm.exporters.audit import (
    QUANTIZED_OPS,
    CheckpointBaselines,
    OpAudit,
    QuantizationAudit,
    all_graphs,
    all_nodes,
    audit_ops,
    copy_outer_weights_into_subgraphs,
    subgraph_ops,
)
from edgelstm.exporters.calibration import calibration_reader, model_inputs
from edgelstm.exporters.fidelity import FidelityReport, FidelityThresholds, fidelity_inputs
from edgelstm.exporters.op_selection import (
    STATIC_CONV,
    OpChoice,
    choose_op_types,
    parse_ops,
    present_op_types,
    working_session,
)
from edgelstm.fileio import atomic_file, check_output_path
from edgelstm.metadata import (
    PREFIX,
    REDUCE_RANGE_KEY,
    ModelMetadata,
    record_weights_sha256,
)

if TYPE_CHECKING:
    from edgelstm.hardware import CpuInfo

MODES = ("dynamic-int8", "static-int8", "fp16")
#: ``reduce_range`` choices: 7-bit INT8 weights, 8-bit, or whatever the quantizing CPU needs.
REDUCE_RANGE_CHOICES = ("on", "off", "auto")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeResult:
    out: Path
    audit: QuantizationAudit
    gate: AccuracyGate | None
    #: streaming models: max |chunked - whole| of the quantized model per chunk size.
    streaming_drift: dict[str, float] = field(default_factory=dict)
    #: INT8: whether the weights are 7-bit (also in the metadata); None for fp16.
    reduce_range: bool | None = None
    #: the gated checkpoint (None when no gate ran) and the baselines it stored, if any.
    eval_run: Path | None = None
    baselines: CheckpointBaselines | None = None
    #: the quantized model against its FP32 self, and the op types chosen by measurement
    fidelity: FidelityReport | None = None
    op_choice: OpChoice | None = None

    def baseline_scores(self) -> dict[str, float | None]:
        """``{"float": .., "quantized": ..}``: the gate's scores, to judge by the baselines."""
        if self.gate is None:
            return {}
        return {"float": self.gate.float_value, "quantized": self.gate.quantized_value}


def resolve_reduce_range(choice: str | bool, cpu: CpuInfo | None = None) -> tuple[bool, str]:
    """``reduce_range`` for a ``--reduce-range`` choice, and a note saying why.

    ``on`` (7-bit weights) is safe on every CPU and costs a little precision; ``off`` keeps 8
    bits for targets with VNNI or ARM; ``auto`` asks ``cpu`` (default: this machine) and
    stays on unless its flags are known and show no need. ``True``/``False`` mean on/off.

    Example::

        >>> resolve_reduce_range("on")[0]
        True
    """
    if isinstance(choice, bool):
        choice = "on" if choice else "off"
    if choice == "on":
        return True, "reduce_range on (7-bit weights: safe on every x86, VNNI or not)"
    if choice == "off":
        return False, (
            "reduce_range off (8-bit weights): for CPUs with VNNI or ARM; on x86 without VNNI "
            "ONNX Runtime's u8s8 products can saturate"
        )
    if choice != "auto":
        raise InvalidInputError(
            f"unknown --reduce-range {choice!r}; choose {', '.join(REDUCE_RANGE_CHOICES)}"
        )
    from edgelstm.hardware import cpu_info, int8_note

    cpu = cpu or cpu_info()
    # Unknown flags prove nothing about the target: keep the safe choice.
    needed = cpu.reduce_range_advised or not cpu.flags_known
    state = "on (7-bit weights)" if needed else "off (8-bit weights)"
    scope = "safe on any CPU" if needed else "run it only on CPUs with VNNI or ARM"
    return needed, (
        f"reduce_range {state}, chosen by --reduce-range auto for the CPU that quantized "
        f"({cpu.model}: {int8_note(cpu)}): {scope}"
    )


def _check_graph(model: Any, path: Path) -> None:
    """Refuse what the quantizer would choke on with a traceback: no nodes, an invalid graph."""
    if len(model.graph.node) == 0:
        raise InvalidInputError(f"{path} holds no graph (empty or truncated file); re-export it")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidInputError(f"{path} is not a valid ONNX model: {exc}") from None


def quantize(
    model: Path | str,
    out: Path | str,
    *,
    mode: str,
    calibration: Path | str | None = None,
    calibration_method: str = "minmax",
    calibration_samples: int = 128,
    eval_run: Path | str | None = None,
    max_degradation: float | None = None,
    allow_partial: bool = False,
    per_channel: bool = True,
    reduce_range: str | bool = "on",
    overwrite: bool = False,
    eval_inputs: Path | str | None = None,
    ops: str | tuple[str, ...] = "auto",
    fidelity: FidelityThresholds | None = None,
) -> QuantizeResult:
    """Quantize an exported model, audit it, check it against its FP32 self and gate it on
    task accuracy, then write it.

    ``ops`` (dynamic INT8): ``"auto"`` keeps the fastest candidate that stays faithful
    (:mod:`edgelstm.exporters.op_selection`), ``"all"``, or op types. Fidelity to the FP32
    outputs (``fidelity`` bounds) is checked on ``eval_inputs`` (arrays by input name), else
    the test split of ``eval_run`` (default: the checkpoint recorded in the metadata), which
    also scores the task-metric gate, else on synthetic inputs.
    ``reduce_range`` (INT8): ``"on"`` 7-bit weights, safe on any x86; ``"off"`` 8-bit, for VNNI
    or ARM targets; ``"auto"`` from this CPU (:func:`resolve_reduce_range`); recorded in the
    output's metadata.

    Example:
        >>> result = quantize("jv.onnx", "jv.int8.onnx", mode="dynamic-int8")  # doctest: +SKIP
        >>> result.audit.ratio < 0.3  # doctest: +SKIP
        True
    """
    src, out = Path(model), Path(out)
    _check_request(src, out, mode, calibration_method, overwrite)
    request = parse_ops(ops) if isinstance(ops, str) else tuple(ops)
    original, meta = _float_source(src)
    run_dir = eval_run_dir(eval_run, meta)
    reduced, range_note = resolve_reduce_range(reduce_range)
    int8 = mode != "fp16"
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgelstm-quantize-") as work:
        folded = Path(work) / "folded.onnx"
        _fold_recurrent_weights(src, original, folded, notes)
        build = _CandidateBuilder(
            mode, folded, per_channel, reduced, calibration, calibration_method,
            calibration_samples, run_dir, meta, notes,
        )  # fmt: skip
        choice = _choose(build, request, eval_inputs, fidelity, Path(work))
        if int8:
            notes.append(f"per-channel {per_channel}, {range_note}")
        result_model = onnx.load(str(choice.chosen.path))
        ops_audit = audit_ops(original, result_model, mode)
        notes.extend([*_what_stayed_float(ops_audit, mode), *choice.left_float()])
        _stamp(result_model, mode, reduced if int8 else None)
        record_weights_sha256(result_model)
        _refuse_partial(ops_audit, mode, allow_partial, choice.chosen.op_types)
        final = Path(work) / "final.onnx"
        onnx.save(result_model, str(final))
        gate = accuracy_gate(src, final, run_dir, max_degradation) if run_dir else None
        baselines = gate_baselines(run_dir, gate)
        drift = _streaming_drift(final, meta) if meta and meta.variant == "streaming" else {}
        audit = _audit(original, result_model, ops_audit, mode, src, final, notes, choice)
        _save_with_record(result_model, final, audit, gate, choice, drift)
        # The stored audit cannot count its own bytes; the returned one measures the final file.
        audit = dataclasses.replace(audit, size_after=final.stat().st_size)
        refuse_failed_gate(gate, baselines, out)
        with atomic_file(out, overwrite=overwrite) as tmp:
            final.replace(tmp)
    return QuantizeResult(
        out=out, audit=audit, gate=gate, streaming_drift=drift,
        reduce_range=reduced if int8 else None, eval_run=run_dir if gate is not None else None,
        baselines=baselines, fidelity=choice.chosen.fidelity, op_choice=choice,
    )  # fmt: skip


class _CandidateBuilder:
    """Writes one quantized candidate for given op types, in the requested mode."""

    def __init__(
        self, mode: str, folded: Path, per_channel: bool, reduced: bool,
        calibration: Path | str | None, method: str, samples: int, run_dir: Path | None,
        meta: ModelMetadata | None, notes: list[str],
    ) -> None:  # fmt: skip
        self.mode, self.folded, self.per_channel, self.reduced = mode, folded, per_channel, reduced
        self.calibration, self.method, self.samples = calibration, method, samples
        self.run_dir, self.meta, self.notes = run_dir, meta, notes

    def __call__(self, op_types: tuple[str, ...], destination: Path) -> None:
        if self.mode == "dynamic-int8" and STATIC_CONV in op_types:
            # Convolutions as calibrated QLinearConv first, then the rest dynamically.
            convs = destination.with_suffix(".static-conv.onnx")
            reader = calibration_reader(None, self.run_dir, self.meta, self.samples)
            _static(self.folded, convs, reader, self.method, self.per_channel, self.reduced,
                    op_types=("Conv",), operator_format=True)  # fmt: skip
            rest = tuple(op for op in op_types if op != STATIC_CONV)
            _dynamic(convs, destination, self.per_channel, self.reduced, op_types=rest)
        elif self.mode == "dynamic-int8":
            chosen = None if op_types == EVERY_OP else op_types
            _dynamic(self.folded, destination, self.per_channel, self.reduced, op_types=chosen)
        elif self.mode == "static-int8":
            reader = calibration_reader(self.calibration, self.run_dir, self.meta, self.samples)
            _static(self.folded, destination, reader, self.method, self.per_channel, self.reduced)
            self.notes.append(f"calibration: {reader.description}, method {self.method}")
        else:
            _fp16(self.folded, destination)


#: The one candidate of modes without op selection (static INT8, FP16), and of a dynamic
#: INT8 model with no op type to choose among: whatever ONNX Runtime quantizes by default.
EVERY_OP = ("all",)


def _choose(
    build: _CandidateBuilder,
    request: str | tuple[str, ...],
    eval_inputs: Path | str | None,
    thresholds: FidelityThresholds | None,
    work: Path,
) -> OpChoice:
    """The inputs to check on, the candidates for ``request``, and the one kept."""
    inputs = fidelity_inputs(
        working_session(build.folded),
        Path(eval_inputs) if eval_inputs is not None else None,
        build.meta,
        build.run_dir,
    )
    present = present_op_types(onnx.load(str(build.folded))) if build.mode == "dynamic-int8" else ()
    if not present:
        present, request = EVERY_OP, "all"
    # Calibrated QLinearConv can beat ConvInteger (and float Conv) where the training split
    # is at hand to calibrate on.
    # (Not for a streaming graph: calibration runs whole sequences through the sequence graph.)
    static_conv = (
        build.run_dir is not None
        and build.meta is not None
        and build.meta.variant != "streaming"
        and "Conv" in present
        and request == "auto"
    )
    try:
        return choose_op_types(
            build.folded, work, present, request, build, inputs,
            thresholds or FidelityThresholds(), build.meta, static_conv=static_conv,
        )  # fmt: skip
    except CheckFailedError as exc:
        saturates_here, _ = resolve_reduce_range("auto")
        if build.mode == "fp16" or build.reduced or not saturates_here:
            raise
        # 8-bit weights saturate on this CPU's INT8 kernels but not on the target's (VNNI,
        # ARM): the drift measured here may be this CPU's, not the model's.
        raise CheckFailedError(
            f"{exc}. This CPU has no VNNI, so the 8-bit weights of --reduce-range off saturate "
            "here: check the model on its target (with VNNI or ARM), or quantize with "
            "--reduce-range on"
        ) from None


def _float_source(src: Path) -> tuple[Any, ModelMetadata | None]:
    """The FP32 model to quantize (weights loaded) and its edgelstm metadata, if any.

    One reading: the checksum is verified, a corrupt edgelstm.* value names its key, and a
    model from another tool (metadata None) is quantized all the same.
    """
    from edgelstm.runtimes.ort.artifact import load_artifact

    artifact = load_artifact(src)
    original = artifact.with_weights()
    _check_graph(original, src)
    if artifact.metadata is not None and PREFIX + "precision" in artifact.props:
        raise InvalidInputError(
            f"{src} is already quantized ({artifact.props[PREFIX + 'precision']}); quantize the "
            "FP32 export"
        )
    return original, artifact.metadata


def _save_with_record(
    result_model: Any,
    final: Path,
    audit: QuantizationAudit,
    gate: AccuracyGate | None,
    choice: OpChoice,
    drift: dict[str, float],
) -> None:
    """Store what quantization did (audit, gate, fidelity, op choice, drift) in the file."""
    record = {
        **audit.to_json(),
        "gate": gate.describe() if gate else None,
        "fidelity": choice.chosen.fidelity.to_json(),
        "op_selection": choice.to_json(),
        "streaming_drift": drift,
    }
    result_model.metadata_props.add(key=PREFIX + "quantization", value=json.dumps(record))
    onnx.save(result_model, str(final))


def _audit(
    original: Any, result_model: Any, ops: tuple[OpAudit, ...], mode: str, src: Path,
    final: Path, notes: list[str], choice: OpChoice,
) -> QuantizationAudit:  # fmt: skip
    """What quantization did: per-op counts, integer kernels, sizes, providers, notes."""
    kernels = Counter(
        n.op_type
        for n in all_nodes(result_model)
        if n.op_type in QUANTIZED_OPS or n.op_type == "DequantizeLinear"
    )
    return QuantizationAudit(
        mode=mode,
        ops=ops,
        size_before=src.stat().st_size,
        size_after=final.stat().st_size,
        providers=choice.speed_note(),
        kernels=dict(kernels),
        notes=tuple(notes),
        subgraph_ops=subgraph_ops(original, result_model, mode),
    )


def _check_request(
    src: Path, out: Path, mode: str, calibration_method: str, overwrite: bool
) -> None:
    """Refuse a request that cannot succeed, before anything is read or written."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown --mode {mode!r}; choose {', '.join(MODES)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise InvalidInputError(
            f"unknown calibration method {calibration_method!r}; choose "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    if out.suffix != ".onnx":
        raise InvalidInputError(f"--out {out} should end in .onnx")
    if src.resolve() == out.resolve():
        raise InvalidInputError("--out must differ from the input model; the original is kept")
    check_output_path(out, overwrite=overwrite, kind="file")


def _what_stayed_float(ops: Sequence[OpAudit], mode: str) -> list[str]:
    """Notes on the layers ONNX Runtime cannot quantize in this mode, and on FP16's speed."""
    notes = []
    for op in ops:
        if op.op == "GRU" and mode != "fp16" and op.still_float:
            notes.append(
                "GRU cannot be quantized by ONNX Runtime: it stays float; the rest was quantized"
            )
        if op.op == "LSTM" and mode == "static-int8" and op.still_float:
            notes.append(
                "static (QDQ) quantization leaves LSTM in float in ONNX Runtime; "
                "use dynamic-int8 for the recurrent layers"
            )
    if mode == "fp16":
        notes.append("fp16 brings no speed on the CPU provider; use it with cuda/tensorrt")
    return notes


def _refuse_partial(
    ops: Sequence[OpAudit], mode: str, allow_partial: bool, chosen: tuple[str, ...]
) -> None:
    # LSTM and Conv carry the arithmetic of the zoo's models and have integer kernels
    # (DynamicQuantizeLSTM, ConvInteger): one left in float is a partial result, unless the
    # op selection chose to keep that op type in float (and said why).
    wanted = ("LSTM", "Conv") if chosen == EVERY_OP else chosen
    partial = [o for o in ops if o.op in ("LSTM", "Conv") and o.op in wanted and o.still_float]
    if mode == "dynamic-int8" and partial and not allow_partial:
        raise CheckFailedError(
            f"{partial[0].still_float} of {partial[0].before} {partial[0].op} node(s) stayed "
            "float after dynamic-int8 quantization (their weights are not constant "
            "initializers); pass --allow-partial to keep the partial result"
        )


def _fold_recurrent_weights(src: Path, model: Any, dst: Path, notes: list[str]) -> None:
    """Make recurrent weights initializers (constant folding) so the quantizer sees them."""
    # Names are unique across scopes: a branch's LSTM may read an outer initializer.
    initializers = {t.name for graph in all_graphs(model) for t in graph.initializer}
    computed = [
        n.name
        for n in all_nodes(model)
        if n.op_type in ("LSTM", "GRU", "RNN")
        and any(i and i not in initializers for i in list(n.input)[1:4])
    ]
    if not computed:
        onnx.save(model, str(dst))
        return
    from edgelstm.exporters.onnx import constant_fold

    constant_fold(src, dst)
    notes.append(f"constant-folded the weights of {len(computed)} recurrent node(s) first")


def _dynamic(
    src: Path,
    dst: Path,
    per_channel: bool,
    reduce_range: bool,
    *,
    op_types: tuple[str, ...] | None = None,
) -> None:
    """ONNX Runtime's dynamic quantization, inside If/Loop/Scan bodies too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    if copy_outer_weights_into_subgraphs(model, op_types):
        src = dst.with_name(f"{dst.stem}.local-weights.onnx")
        onnx.save(model, str(src))
    with _quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(op_types) if op_types else None,
            extra_options={"EnableSubgraph": True},
        )


def _static(
    src: Path,
    dst: Path,
    reader: Any,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    *,
    op_types: tuple[str, ...] | None = None,
    operator_format: bool = False,
) -> None:
    """Static INT8, calibrated on ``reader``: QDQ (``static-int8``), or integer operators
    (``QLinearConv``) for the op types a dynamic-INT8 candidate quantizes statically."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # The samples are matched to this model's input names (they may be input, h, c, not x).
    reader.bind(model_inputs(onnx.load(str(src), load_external_data=False)))
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with _quiet_quantizer():
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QOperator if operator_format else QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
        )


def _fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet_quantizer():
        converted = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(converted, str(dst))


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger and warns; silence both."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _stamp(model: Any, mode: str, reduce_range: bool | None) -> None:
    precision = "fp16" if mode == "fp16" else "int8"
    for prop in list(model.metadata_props):
        if prop.key in (PREFIX + "precision", PREFIX + "quantization", REDUCE_RANGE_KEY):
            model.metadata_props.remove(prop)
    model.metadata_props.add(key=PREFIX + "precision", value=precision)
    if reduce_range is not None:
        model.metadata_props.add(key=REDUCE_RANGE_KEY, value=json.dumps(reduce_range))


def _streaming_drift(path: Path, meta: ModelMetadata) -> dict[str, float]:
    """Chunked vs whole-sequence difference of the quantized streaming model.

    Dynamic INT8 computes activation scales per call, so chunks see different scales than
    one whole-sequence call: the difference is real and reported, not hidden.
    """
    from edgelstm.runtimes.model_io.feeding import cpu_session, run_in_chunks
    from edgelstm.runtimes.ort.feeds import input_specs

    session = cpu_session(path)
    inputs = {i.name: i for i in session.get_inputs()}
    state_specs = [s for s in input_specs(session) if s.name in meta.state]
    features = inputs["x"].shape[2]
    if not isinstance(features, int):
        return {}
    rng = np.random.default_rng(0)
    multiple = meta.stream_chunk_multiple  # a strided front end takes whole strides only
    steps, batch = -(-60 // multiple) * multiple, 2
    x = rng.standard_normal((batch, steps, features)).astype(np.float32)
    joined = meta.task in PER_STEP_TASKS
    whole, _ = run_in_chunks(session, x, steps, state_specs, concatenate=joined)
    drift = {}
    for chunk in (multiple, 7 * multiple):
        chunked, _ = run_in_chunks(session, x, chunk, state_specs, concatenate=joined)
        drift[f"chunk {chunk}"] = float(np.max(np.abs(chunked - whole)))
    return drift
