"""``edgelstm adopt``: declare a foreign ONNX model's streaming contract once, in a copy, so
``run --stream``, ``serve``, ``bundle`` and ``verify`` treat it as an edgelstm streaming model.

A stateful recurrent model from elsewhere (a voice-activity detector with ``h``/``c`` in and
``hn``/``cn`` out, a GRU encoder run one chunk at a time) already streams; what edgelstm
lacks is which input carries the frames, which inputs and outputs are the state, what the
constant inputs hold and which output makes the rows. The copy says so in its metadata, and
the graph is given edgelstm's streaming names around the original nodes, which stay as they
are (the original file is never modified):

- the frame input becomes ``x`` ``[batch, time, features]``; a model that takes one window
  per call (``[batch, window]``) gets ``x`` ``[batch, 1, window]`` flattened into it, and
  every call then takes exactly one frame (one window);
- each state output ``OUT`` of ``--state IN=OUT`` is also named ``IN_out``;
- a constant input (``--constant sr=16000``) becomes an initializer;
- the row output comes first; outputs that are neither rows nor state are dropped.

It checks what it can by running the copy: state shapes out equal state shapes in, the rows'
width, and (for chunked models) that two chunks give what one whole run gives. What it cannot
check (that a zero state is the model's start, that the constants are right) it says.

Example::

    >>> adopt("vad.onnx", "vad.stream.onnx",
    ...       AdoptOptions(states=(("h", "hn"), ("c", "cn")), constants=(("sr", "16000"),)))
    ... # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import atomic_file, file_sha256
from edgelstm.metadata import ModelMetadata, record_weights_sha256
from edgelstm.version import __version__

__all__ = ["ADOPT_TASKS", "AdoptOptions", "AdoptResult", "adopt"]

#: What an adopted model's rows are: its outputs as they are, or class probabilities.
ADOPT_TASKS = ("raw", "classify")
_FRAMES = "x"


@dataclass(frozen=True)
class AdoptOptions:
    """The contract to declare. ``frames``: the frame input (default: the first float input
    that is neither state nor constant); ``states``: (input, output) pairs; ``constants``:
    (input, value); ``output``: the row output (default: the first that is not state);
    ``task``: ``raw`` or ``classify`` (its output is logits over ``classes``)."""

    frames: str | None = None
    states: tuple[tuple[str, str], ...] = ()
    constants: tuple[tuple[str, str], ...] = ()
    output: str | None = None
    task: str = "raw"
    classes: tuple[str, ...] = ()
    overwrite: bool = False


@dataclass(frozen=True)
class AdoptResult:
    """The adopted copy, what was checked (with numbers) and what could not be."""

    path: Path
    metadata: ModelMetadata
    checked: tuple[str, ...]
    unchecked: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def _value_info(graph: Any) -> dict[str, Any]:
    constants = {init.name for init in graph.initializer}
    return {i.name: i for i in graph.input if i.name not in constants}


def _shape(info: Any) -> list[int | str]:
    dims: list[int | str] = []
    for d in info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def _check_names(graph: Any, options: AdoptOptions, where: str) -> None:
    inputs = _value_info(graph)
    outputs = {o.name for o in graph.output}
    signature = "; ".join(f"{n} {_shape(i)}" for n, i in inputs.items())
    for name, _ in (*options.states, *options.constants):
        if name not in inputs:
            raise InvalidInputError(f"{where} has no input `{name}`; its inputs are: {signature}")
    for _, output in options.states:
        if output not in outputs:
            raise InvalidInputError(
                f"{where} has no output `{output}`; its outputs are: {', '.join(outputs)}"
            )
    if not options.states:
        raise InvalidInputError(
            f"{where}: name its state pairs, e.g. --state h=hn --state c=cn (inputs: {signature})"
        )
    if options.task not in ADOPT_TASKS:
        raise InvalidInputError(f"--task {options.task}: adopt knows {', '.join(ADOPT_TASKS)}")
    if options.task == "classify" and not options.classes:
        raise InvalidInputError("--task classify needs --classes NAME,NAME,... (output order)")


def _bake_constants(graph: Any, constants: tuple[tuple[str, str], ...], where: str) -> None:
    from onnx import helper, numpy_helper

    inputs = _value_info(graph)
    for name, text in constants:
        info = inputs[name]
        dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        shape = _shape(info)
        if any(not isinstance(d, int) for d in shape):
            raise InvalidInputError(
                f"{where}: constant input `{name}` has shape {shape}; only fixed shapes can be "
                "baked in"
            )
        try:
            value = np.full([int(d) for d in shape], float(text)).astype(dtype)
        except ValueError:
            raise InvalidInputError(f"--constant {name}={text}: give a number") from None
        graph.input.remove(info)
        graph.initializer.append(numpy_helper.from_array(value, name))


def _frames_input(graph: Any, options: AdoptOptions, where: str) -> tuple[Any, bool]:
    """The frame input and whether the model takes one window per call."""
    from onnx import TensorProto

    taken = {n for n, _ in (*options.states, *options.constants)}
    inputs = _value_info(graph)
    floats = [
        i for n, i in inputs.items()
        if n not in taken and i.type.tensor_type.elem_type
        in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    ]  # fmt: skip
    if options.frames is not None:
        if options.frames not in inputs:
            raise InvalidInputError(f"{where} has no input `{options.frames}`")
        info = inputs[options.frames]
    elif floats:
        info = floats[0]
    else:
        raise InvalidInputError(f"{where}: no float input left for the frames; name it: --frames")
    leftover = sorted(set(inputs) - taken - {info.name})
    if leftover:
        raise InvalidInputError(
            f"{where}: inputs {', '.join(leftover)} are neither frames, state nor constant; "
            "declare them with --state IN=OUT or --constant NAME=VALUE"
        )
    shape = _shape(info)
    if len(shape) not in (2, 3) or not isinstance(shape[-1], int):
        raise InvalidInputError(
            f"{where}: the frame input `{info.name}` is {shape}; adopt takes [batch, time, "
            "features] or one window per call [batch, window], with a fixed last axis"
        )
    if isinstance(shape[0], int) and shape[0] != 1:
        raise InvalidInputError(f"{where}: the frame input's batch axis is fixed at {shape[0]}")
    return info, len(shape) == 2


def _rename_frames(graph: Any, info: Any, window: bool) -> int:
    """Put ``x`` in front of the frame input; returns the feature count."""
    from onnx import TensorProto, helper

    shape = _shape(info)
    features = int(shape[-1])
    batch = shape[0] if isinstance(shape[0], str) else "batch"
    if not window and info.name == _FRAMES:
        return features
    dims = [batch, 1 if window else (shape[1] if isinstance(shape[1], str) else "time"), features]
    elem = info.type.tensor_type.elem_type
    new = helper.make_tensor_value_info(_FRAMES, elem, dims)
    if elem != TensorProto.FLOAT:
        raise InvalidInputError("adopt streams float32 frames; the frame input is another type")
    # A node produces the old name, so nodes (and subgraphs) that read it are untouched.
    if window:
        node = helper.make_node("Flatten", [_FRAMES], [info.name], axis=1)
    else:
        node = helper.make_node("Identity", [_FRAMES], [info.name])
    graph.node.insert(0, node)
    position = list(graph.input).index(info)
    graph.input.remove(info)
    graph.input.insert(position, new)
    return features


def _state_shapes(
    graph: Any, states: tuple[tuple[str, str], ...], where: str
) -> tuple[dict[str, list[Any]], bool]:
    """Each state's shape with its stream axis named ``batch``, and whether the model runs
    one stream per call: a state without a symbolic axis has its size-1 stream axis (axis 1
    of ``[layers, 1, hidden]``, axis 0 of ``[1, hidden]``) stand for the one stream."""
    inputs = _value_info(graph)
    shapes: dict[str, list[Any]] = {}
    one_stream = False
    for name, _ in states:
        shape = _shape(inputs[name])
        symbolic = [i for i, d in enumerate(shape) if isinstance(d, str)]
        axis = symbolic[0] if len(symbolic) == 1 else _stream_axis(shape)
        if len(symbolic) > 1 or axis is None:
            raise InvalidInputError(
                f"{where}: state `{name}` is {shape}; adopt needs one stream axis in it: one "
                "symbolic (batch) axis, or a size-1 axis 1 of [layers, 1, hidden] (0 of "
                "[1, hidden]) for a model that runs one stream per call"
            )
        one_stream = one_stream or not symbolic
        shapes[name] = ["batch" if i == axis else d for i, d in enumerate(shape)]
    return shapes, one_stream


def _stream_axis(shape: list[int | str]) -> int | None:
    axis = {3: 1, 2: 0}.get(len(shape))
    return axis if axis is not None and shape[axis] == 1 else None


def _name_outputs(graph: Any, options: AdoptOptions, where: str) -> str:
    """State outputs also named ``IN_out``; the row output first; others dropped."""
    import onnx
    from onnx import helper

    from edgelstm.runtimes.model_io.contract import state_output_name

    by_name = {o.name: o for o in graph.output}
    state_outputs = {out for _, out in options.states}
    row = options.output or next((n for n in by_name if n not in state_outputs), None)
    if row is None or row not in by_name or row in state_outputs:
        raise InvalidInputError(
            f"{where}: name the output that makes the rows with --output (outputs: "
            f"{', '.join(by_name)})"
        )
    kept = [by_name[row]]
    for state, out in options.states:
        wanted = state_output_name(state)
        if wanted != out:
            graph.node.append(helper.make_node("Identity", [out], [wanted]))
        info = onnx.ValueInfoProto()
        info.CopyFrom(by_name[out])
        info.name = wanted
        kept.append(info)
    del graph.output[:]
    graph.output.extend(kept)
    return str(row)


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # the declared contract does not fit the graph
        raise InvalidInputError(
            f"the adopted graph does not load in ONNX Runtime ({exc})"
        ) from None


def _run(
    session: Any,
    row: str,
    frames: np.ndarray,
    state: dict[str, np.ndarray],
    states: tuple[tuple[str, str], ...],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from edgelstm.runtimes.model_io.contract import state_output_name

    names = [row, *(state_output_name(s) for s, _ in states)]
    try:
        outputs = session.run(names, {_FRAMES: frames, **state})
    except Exception as exc:
        raise InvalidInputError(
            f"the adopted model fails on frames {list(frames.shape)} with zero state ({exc}); "
            "check the declared frames, state and constants"
        ) from None
    return outputs[0], {s: o for (s, _), o in zip(states, outputs[1:], strict=True)}


def _probe(
    model: Any, row: str, options: AdoptOptions, shapes: dict[str, list[Any]], features: int,
    window: bool, one_stream: bool,
) -> tuple[tuple[str, ...], list[str], list[str]]:  # fmt: skip
    """(row columns, what was checked, notes) from running the adopted graph."""
    session = _session(model)
    rng = np.random.default_rng(0)
    streams = 1 if one_stream else 2

    def zeros() -> dict[str, np.ndarray]:
        return {
            n: np.zeros([streams if d == "batch" else d for d in s], np.float32)
            for n, s in shapes.items()
        }

    steps = 1 if window else 4
    frames = rng.standard_normal((streams, steps, features)).astype(np.float32)
    out, state = _run(session, row, frames, zeros(), options.states)
    for name, value in state.items():
        want = tuple(zeros()[name].shape)
        if value.shape != want:
            raise InvalidInputError(
                f"state `{name}` goes in as {list(want)} but comes out as {list(value.shape)}; "
                "check the --state pairs"
            )
    checked = [f"state shapes out equal state shapes in ({', '.join(shapes)})"]
    per_frame = False
    if not window and out.ndim >= 3 and out.shape[1] == steps:
        other, _ = _run(session, row, frames[:, :3], zeros(), options.states)
        per_frame = other.shape[1] == 3
    width = int(np.prod(out.shape[2:] if per_frame else out.shape[1:]))
    columns = (row,) if width == 1 else tuple(f"{row}_{i}" for i in range(width))
    if options.task == "classify" and width != len(options.classes):
        raise InvalidInputError(
            f"--classes names {len(options.classes)} classes, the output `{row}` has {width}"
        )
    notes = [f"rows: one per {'frame' if per_frame else 'call'}, columns {', '.join(columns)}"]
    if window:
        notes.append("one window per call: each frame is one window, pushed alone")
        return columns, checked, notes
    whole, end = _run(session, row, frames, zeros(), options.states)
    first, middle = _run(session, row, frames[:, :2], zeros(), options.states)
    second, late = _run(session, row, frames[:, 2:], middle, options.states)
    chunked = np.concatenate([first, second], axis=1) if per_frame else second
    diff = max(
        float(np.abs(chunked - whole).max()),
        *(float(np.abs(late[n] - end[n]).max()) for n in end),
    )
    checked.append(f"two chunks of 2 frames equal one run of 4 (max |diff| {diff:.2g})")
    if diff > 1e-4:
        notes.append(
            f"chunked and whole runs differ by {diff:.2g}: the model's rows depend on how "
            "frames are chunked; stream it with one fixed --chunk"
        )
    return columns, checked, notes


def _metadata(
    source: Path, model: Any, options: AdoptOptions, shapes: dict[str, list[Any]],
    features: int, window: bool, row: str, columns: tuple[str, ...],
) -> ModelMetadata:  # fmt: skip
    from edgelstm.runtimes.model_io.contract import state_output_name

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelMetadata(
        variant="streaming",
        exporter="adopt",
        opset=int(opset),
        torch_version="",
        edgelstm_version=__version__,
        inputs={
            _FRAMES: "one window per call" if window else "frames [batch, time, features]",
            **{s: "recurrent state" for s in shapes},
        },
        outputs={row: "rows", **{state_output_name(s): "recurrent state" for s in shapes}},
        state=shapes,
        stream_frames_per_call=1 if window else None,
        task=options.task,
        feature_names=tuple(f"f{i}" for i in range(features)),
        # The model reads its frames as they come: identity statistics.
        normalization={"mean": [0.0] * features, "std": [1.0] * features},
        class_labels=options.classes,
        target_names=columns if options.task == "raw" else (),
        source=str(source),
        source_sha256=file_sha256(source),
    )


def _drop_sequence_metadata(proto: Any, source: Path) -> list[str]:
    """A whole-sequence export of ``export --model`` (a step with its state as inputs) is
    adopted like any model, its edgelstm metadata replaced; a streaming model is refused."""
    from edgelstm.metadata import metadata_from_props

    props = {p.key: p.value for p in proto.metadata_props}
    meta = metadata_from_props(props, where=str(source))
    if meta is None:
        return []
    if meta.variant == "streaming":
        raise InvalidInputError(
            f"{source} already streams (an edgelstm streaming model); use it as it is"
        )
    kept = [p for p in proto.metadata_props if not p.key.startswith("edgelstm.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    return [f"{source.name}: its whole-sequence edgelstm metadata is replaced by the contract"]


def adopt(model: Path | str, out: Path | str, options: AdoptOptions) -> AdoptResult:
    """Write ``out``: a copy of ``model`` carrying the declared streaming contract (see the
    module docstring), checked by running it. ``model`` is never modified."""
    import onnx

    source, out = Path(model), Path(out)
    if not source.is_file():
        raise InvalidInputError(f"model file {source} does not exist")
    if source.resolve() == out.resolve():
        raise InvalidInputError("--out must differ from the model: adopt never modifies it")
    try:
        proto = onnx.load(str(source))
    except Exception as exc:
        raise InvalidInputError(f"{source} is not a readable ONNX model ({exc})") from None
    notes = _drop_sequence_metadata(proto, source)
    graph, where = proto.graph, str(source)
    _check_names(graph, options, where)
    _bake_constants(graph, options.constants, where)
    frames, window = _frames_input(graph, options, where)
    features = _rename_frames(graph, frames, window)
    shapes, one_stream = _state_shapes(graph, options.states, where)
    row = _name_outputs(graph, options, where)
    columns, checked, probed = _probe(proto, row, options, shapes, features, window, one_stream)
    notes += probed
    meta = _metadata(source, proto, options, shapes, features, window, row, columns)
    if one_stream:
        meta = dataclasses.replace(meta, stream_max_batch=1)
        notes.append("the state has no batch axis: one stream per call (serve runs them in turn)")
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    record_weights_sha256(proto)
    with atomic_file(out, overwrite=options.overwrite) as tmp:
        onnx.save(proto, str(tmp))
    unchecked = (
        "that the model starts from zero state (every edgelstm stream does)",
        *(f"that constant {name}={value} is right" for name, value in options.constants),
    )
    return AdoptResult(out, meta, tuple(checked), unchecked, tuple(notes))
