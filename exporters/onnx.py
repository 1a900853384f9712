"""PyTorch → ONNX export that is validated before a file appears at ``out``.

Strategy: try the TorchScript exporter first (fast; clean LSTM/GRU nodes whose weights are
initializers), then the torch.export-based exporter (its graph is constant-folded through
ONNX Runtime so the recurrent weights become initializers, and its axis names are restored).
Each candidate is checked structurally and numerically (see :mod:`edgelstm.exporters.validation`);
the first one that passes is written atomically with edgelstm metadata. If none passes, the
error names the failing shape and the largest difference, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgelstm.config import ModelConfig, to_dict
from edgelstm.errors import CheckFailedError, InvalidInputError, add_details
from edgelstm.exporters.exporter_output import captured_output, explain_export_failure
from edgelstm.exporters.graphs import GraphSpec, build_graph
from edgelstm.exporters.validation import (
    ValidationCase,
    ValidationReport,
    ValidationRow,
    inspect_graph,
    validate_cases,
    validate_sequence,
    validate_streaming,
)
from edgelstm.extras import missing_dependency
from edgelstm.fileio import atomic_file, check_output_path
from edgelstm.metadata import ModelMetadata, record_weights_sha256
from edgelstm.runtimes.model_io.contract import state_output_name
from edgelstm.training.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from edgelstm.training.models import SequenceModel
from edgelstm.version import __version__

if TYPE_CHECKING:
    from edgelstm.exporters.user_inputs import UserInputs

#: Tried in this order; the first candidate that validates is kept.
EXPORTERS = ("torchscript", "dynamo")
#: ``export(exporter=...)``: try both in order, or only one.
EXPORTER_CHOICES = ("auto", *EXPORTERS)
DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
#: protobuf cannot serialise a single message over 2 GiB.
PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote and how it was verified."""

    out: Path
    variant: str
    exporter: str
    opset: int
    report: ValidationReport
    #: exporters tried before the one kept, with why they were rejected.
    rejected: tuple[tuple[str, str], ...]
    size_bytes: int
    external_data: bool = False
    #: facts worth knowing that do not make the model wrong (``note:`` lines on stderr).
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The result and its validation as plain JSON values (``export --json``)."""
        return {
            "out": str(self.out),
            "variant": self.variant,
            "exporter": self.exporter,
            "opset": self.opset,
            "size_bytes": self.size_bytes,
            "external_data": self.external_data,
            "rejected": [list(r) for r in self.rejected],
            "notes": list(self.notes),
            "validation": self.report.to_json(),
        }

    def describe(self) -> str:
        """What was written, one line each, for a person reading the terminal."""
        lines = [
            f"wrote {self.out} ({self.size_bytes / 1e6:.2f} MB, {self.variant}, "
            f"{self.exporter} exporter, opset {self.opset})"
        ]
        if self.external_data:
            lines.append(f"the model is over 2 GB: its weights are in {self.out}.data; keep both")
        for name, why in self.rejected:
            lines.append(f"{name} exporter rejected: {why}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Source:
    module: nn.Module
    spec: GraphSpec
    example: tuple[torch.Tensor, ...]
    metadata: ModelMetadata
    zoo_model: SequenceModel | None
    #: a module edgelstm did not build: its checks, with PyTorch's outputs already recorded.
    cases: tuple[ValidationCase, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Rejected:
    """Why an exporter's candidate was not kept: one line, and the whole story for --debug."""

    reason: str
    details: str = ""


def export(
    source: nn.Module | Path | str,
    out: Path | str,
    *,
    streaming: bool = False,
    input_shape: tuple[int, ...] | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
    inputs: UserInputs | None = None,
    exporter: str = "auto",
) -> ExportResult:
    """Export a checkpoint folder or a module to a validated, self-contained ``.onnx`` file.

    ``source`` is an edgelstm checkpoint folder (``edgelstm train --out``), a model built by
    :func:`edgelstm.build_model`, or any ``nn.Module``: then ``input_shape`` gives one
    example input's shape (any rank; ``(batch, time, features)`` varies in batch and time,
    other ranks in batch), or ``inputs`` (:func:`~edgelstm.exporters.user_inputs.
    resolve_inputs`) gives several inputs, real examples and the axes that vary.
    ``exporter`` is ``auto`` (TorchScript, then torch.export), ``torchscript`` or ``dynamo``.

    When no candidate passes, the :class:`CheckFailedError` carries each exporter's whole
    output and ONNX Runtime's whole messages as exception notes (shown by ``--debug``).

    Example:
        >>> from edgelstm.exporters import export
        >>> result = export("runs/jv", "jv.onnx")  # doctest: +SKIP
        >>> result.report.passed  # doctest: +SKIP
        True
    """
    out = Path(out)
    if out.suffix != ".onnx":
        raise InvalidInputError(f"--out {out} should end in .onnx")
    if opset < 14:
        raise InvalidInputError(f"--opset {opset} is too old; recurrent layouts need opset >= 14")
    if atol <= 0:
        raise InvalidInputError(f"--atol must be > 0, got {atol}")
    if exporter not in EXPORTER_CHOICES:
        raise InvalidInputError(f"--exporter {exporter!r}: use {', '.join(EXPORTER_CHOICES)}")
    check_output_path(out, overwrite=overwrite, kind="file")
    prepared = _prepare_source(source, streaming, input_shape, inputs)
    rejected: list[tuple[str, _Rejected]] = []
    with atomic_file(out, overwrite=overwrite) as tmp:
        for name in EXPORTERS if exporter == "auto" else (exporter,):
            outcome = _try_exporter(name, prepared, opset, atol, tmp, out)
            if isinstance(outcome, _Rejected):
                rejected.append((name, outcome))
                continue
            report, used_opset, external = outcome
            kept = name
            break
        else:
            raise _no_valid_model(out, rejected)
    stray = out.with_name(out.name + ".data")
    if not external and stray.exists() and overwrite:
        # A self-contained model next to an old external-data file would mislead anyone
        # copying the folder; it was ours to replace.
        stray.unlink()
    return ExportResult(
        out=out,
        variant=prepared.spec.variant,
        exporter=kept,
        opset=used_opset,
        report=report,
        rejected=tuple((n, why.reason) for n, why in rejected),
        size_bytes=out.stat().st_size + (stray.stat().st_size if external else 0),
        external_data=external,
        notes=prepared.notes,
    )


def _no_valid_model(out: Path, rejected: list[tuple[str, _Rejected]]) -> CheckFailedError:
    """One line for the user; each exporter's captured output and ONNX Runtime's whole
    messages ride along as exception notes, which ``--debug``'s traceback prints."""
    reasons = "; ".join(f"{name}: {why.reason}" for name, why in rejected)
    error = CheckFailedError(f"no exporter produced a valid model for {out} ({reasons})")
    for name, why in rejected:
        if why.details:
            add_details(error, f"--- {name} exporter ---\n{why.details}")
    return error


def _source_hash(run_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update((run_dir / name).read_bytes())
    return digest.hexdigest()


def _output_labels(labels: tuple[str, ...], cfg: ModelConfig) -> dict[str, Any]:
    """What the outputs stand for: a transcriber's labels are its tokens (output i writes
    tokens[i]; the CTC blank is the last output), every other model's its class labels."""
    if cfg.task == "transcribe":
        return {"class_labels": (), "tokens": labels, "blank_index": cfg.num_classes - 1}
    return {"class_labels": labels}


def _prepare_source(
    source: nn.Module | Path | str,
    streaming: bool,
    input_shape: tuple[int, ...] | None,
    inputs: UserInputs | None = None,
) -> _Source:
    variant = "streaming" if streaming else "sequence"
    record = None
    source_path: Path | None = None
    if isinstance(source, str | Path):
        from edgelstm.training.checkpoint import load_checkpoint

        source_path = Path(source)
        checkpoint = load_checkpoint(source_path)
        model: nn.Module = checkpoint.model
        record = checkpoint.record
    else:
        model = source
    model = model.eval()
    if not isinstance(model, SequenceModel):
        return _foreign_source(model, streaming, input_shape, inputs)
    cfg = model.config
    if input_shape is not None and (len(input_shape) != 3 or input_shape[2] != cfg.input_size):
        raise InvalidInputError(
            f"--input-shape {input_shape} does not fit the model, which takes x [batch, time, "
            f"{cfg.input_size} features]; use B,T,{cfg.input_size}"
        )
    module, spec = build_graph(model, variant)
    example = _example(cfg, spec, record, input_shape, streaming)
    metadata = ModelMetadata(
        variant=variant,
        exporter="",
        opset=0,
        torch_version=torch.__version__,
        edgelstm_version=__version__,
        inputs=spec.inputs_meaning,
        outputs=spec.outputs_meaning,
        state=spec.state_shapes,
        stream_chunk_multiple=spec.chunk_multiple,
        task=cfg.task,
        arch=cfg.arch,
        feature_names=record.feature_names if record else (),
        normalization=(
            {"mean": list(record.normalization.mean), "std": list(record.normalization.std)}
            if record
            else None
        ),
        **_output_labels(record.class_labels if record else (), cfg),
        target_names=record.target_names if record else (),
        target_indices=cfg.target_indices,
        anomaly_threshold=record.anomaly_threshold if record else None,
        source=str(source_path.resolve()) if source_path else None,
        source_sha256=_source_hash(source_path) if source_path else None,
        run_record=to_dict(record) if record else {"model": to_dict(cfg)},
    )
    return _Source(module, spec, example, metadata, model)


def _foreign_source(
    model: nn.Module,
    streaming: bool,
    input_shape: tuple[int, ...] | None,
    inputs: UserInputs | None,
) -> _Source:
    """A module edgelstm did not build: exported as a sequence model on the inputs given."""
    if streaming:
        raise InvalidInputError(
            "--streaming needs an edgelstm model (its recurrent state is known); export "
            "this module as a sequence model"
        )
    if inputs is None:
        if input_shape is None:
            raise InvalidInputError(
                "--input-shape B,T,F is required for a module edgelstm did not build"
            )
        from edgelstm.exporters.user_inputs import inputs_from_shapes

        inputs = inputs_from_shapes([tuple(input_shape)])
    return _user_source(model, inputs)


def _example(
    cfg: Any,
    spec: GraphSpec,
    record: Any,
    input_shape: tuple[int, ...] | None,
    streaming: bool,
) -> tuple[torch.Tensor, ...]:
    """The export's example: seeded frames of the given (or the data's lookback, else 16)
    length, and zero state for a streaming graph."""
    batch = input_shape[0] if input_shape else 2
    if input_shape:
        steps = input_shape[1]
    elif record is not None and "lookback" in record.dataset.details:
        steps = int(record.dataset.details["lookback"])
    else:
        steps = 16
    if streaming:
        steps = -(-steps // cfg.stride) * cfg.stride  # a chunk the streaming graph accepts
    x = torch.zeros(batch, steps, cfg.input_size).normal_(
        generator=torch.Generator().manual_seed(0)
    )
    example: tuple[torch.Tensor, ...] = (x,)
    if streaming:
        example += tuple(
            torch.zeros([batch if isinstance(d, str) else d for d in shape])
            for shape in spec.state_shapes.values()
        )
    return example


def _user_source(model: nn.Module, inputs: UserInputs) -> _Source:
    from edgelstm.exporters.user_graph import probe_user_graph

    model = model.eval()
    graph = probe_user_graph(model, inputs)

    def shape(name: str, array: Any) -> str:
        axes = inputs.dynamic_axes.get(name, {})
        return ", ".join(axes.get(a, str(n)) for a, n in enumerate(array.shape))

    spec = GraphSpec(
        variant="sequence",
        input_names=inputs.names,
        output_names=graph.output_names,
        dynamic_axes=graph.dynamic_axes,
        inputs_meaning={
            n: f"model input [{shape(n, a)}]"
            for n, a in zip(inputs.names, inputs.examples, strict=True)
        },
        outputs_meaning={n: "model output" for n in graph.output_names},
        state_shapes={},
    )
    metadata = ModelMetadata(
        variant="sequence",
        exporter="",
        opset=0,
        torch_version=torch.__version__,
        edgelstm_version=__version__,
        inputs=spec.inputs_meaning,
        outputs=spec.outputs_meaning,
    )
    example = tuple(torch.from_numpy(a) for a in inputs.examples)
    return _Source(model, spec, example, metadata, None, graph.cases, graph.notes)


def _torch_export(source: _Source, path: Path, **options: Any) -> None:
    """torch.onnx.export with the graph's names; ``options`` pick and tune the exporter.

    On failure, what the exporter printed is added to the exception as a note.
    """
    failure: Exception | None = None
    with captured_output() as printed:
        try:
            torch.onnx.export(
                source.module,
                source.example,
                str(path),
                input_names=list(source.spec.input_names),
                output_names=list(source.spec.output_names),
                **options,
            )
        except Exception as exc:  # kept until the capture ends, so the note is complete
            failure = exc
    if failure is not None:
        if printed.getvalue().strip():
            add_details(failure, f"the exporter printed:\n{printed.getvalue().rstrip()}")
        raise failure


def _export_torchscript(source: _Source, path: Path, opset: int) -> int:
    _torch_export(
        source,
        path,
        dynamo=False,
        dynamic_axes={k: dict(v) for k, v in source.spec.dynamic_axes.items()},
        opset_version=opset,
        do_constant_folding=True,
    )
    return opset


def _export_dynamo(source: _Source, path: Path, opset: int) -> int:
    from torch.export import Dim

    try:
        # torch.onnx runs this exporter on onnxscript, which torch does not install: without
        # this check the fallback exporter would be rejected with a bare ModuleNotFoundError.
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise missing_dependency(exc, "the torch.export-based exporter") from exc

    opset = max(opset, 18)  # the torch.export-based exporter emits opset 18 and newer
    dynamic_shapes = tuple(
        {axis: Dim.AUTO for axis in source.spec.dynamic_axes.get(name, {})}
        for name in source.spec.input_names
    )
    raw = path.with_suffix(".raw.onnx")
    _torch_export(
        source,
        raw,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    constant_fold(raw, path)
    _restore_axis_names(path, source.spec)
    return opset


def constant_fold(src: Path, dst: Path) -> None:
    """ONNX Runtime's basic optimisation folds the weight plumbing into initializers."""
    from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime

    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 4
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def _restore_axis_names(path: Path, spec: GraphSpec) -> None:
    """torch.export names dynamic axes s0, s1, ...; give them the contract's names again."""
    import onnx

    model = onnx.load(str(path))
    rename: dict[str, str] = {}
    for value in model.graph.input:
        for axis, name in spec.dynamic_axes.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            if dim.dim_param:
                rename[dim.dim_param] = name
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]
    onnx.save(model, str(path))


def _declare_state_outputs(model: Any, spec: GraphSpec) -> None:
    """Give each ``<state>_out`` the declared shape of its state input.

    A state computed by slicing (the conv front end's last frames) comes out of the
    exporter with a symbolic length, which consumers that preallocate outputs (CUDA graphs,
    IO binding) cannot size; its shape is known, so it is written down.
    """
    outputs = {o.name: o for o in model.graph.output}
    for name, shape in spec.state_shapes.items():
        value = outputs.get(state_output_name(name))
        if value is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            continue
        for dim, size in zip(dims, shape, strict=True):
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size


def _whole(exc: BaseException) -> str:
    """An exception's whole text with its notes (what the exporter printed)."""
    return "\n".join([f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", [])])


def _try_exporter(
    exporter: str, source: _Source, opset: int, atol: float, dst: Path, out: Path
) -> tuple[ValidationReport, int, bool] | _Rejected:
    """Export, inspect and validate one candidate; write it to ``dst`` when it passes.

    Returns the report, the opset used and whether external data was needed, or the
    reason the candidate was rejected.
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix="edgelstm-export-") as work:
        candidate = Path(work) / "candidate.onnx"
        try:
            if exporter == "torchscript":
                used = _export_torchscript(source, candidate, opset)
            else:
                used = _export_dynamo(source, candidate, opset)
        except Exception as exc:  # exporters raise many types; the reason is what matters
            return _Rejected(explain_export_failure(exporter, exc), _whole(exc))
        proto = onnx.load(str(candidate))
        _declare_state_outputs(proto, source.spec)
        problems, recurrent = inspect_graph(proto, source.spec)
        meta = dataclasses.replace(source.metadata, exporter=exporter, opset=used)
        del proto.metadata_props[:]
        for key, value in meta.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        record_weights_sha256(proto)  # verified whenever edgelstm opens the file again
        final = Path(work) / out.name
        data_name = out.name + ".data"
        # protobuf cannot hold more than 2 GiB: such models keep their weights beside them.
        external = sum(t.ByteSize() for t in proto.graph.initializer) > PROTOBUF_LIMIT // 2
        if external:
            onnx.save(proto, str(final), save_as_external_data=True, location=data_name)
        else:
            onnx.save(proto, str(final))
        try:
            rows = [] if problems else _validate_candidate(final, source, atol)
        except InvalidInputError as exc:  # ONNX Runtime could not even load the candidate
            return _Rejected(str(exc), _whole(exc))
        report = ValidationReport(
            rows=tuple(rows), problems=tuple(problems), recurrent_nodes=tuple(recurrent), atol=atol
        )
        if not report.passed:
            return _Rejected(report.summary(), "\n".join([*problems, *report.errors()]))
        if external:
            (Path(work) / data_name).replace(out.with_name(data_name))
        final.replace(dst)
        return report, used, external


def _validate_candidate(path: Path, source: _Source, atol: float) -> list[ValidationRow]:
    if source.spec.variant == "streaming":
        assert source.zoo_model is not None
        return validate_streaming(path, source.zoo_model, source.spec, atol=atol)
    if source.cases:
        return validate_cases(path, source.spec, source.cases, atol=atol)
    example = source.example[0]
    return validate_sequence(
        path,
        source.module,
        source.spec,
        num_features=int(example.shape[2]),
        example_batch=int(example.shape[0]),
        example_time=int(example.shape[1]),
        atol=atol,
    )
