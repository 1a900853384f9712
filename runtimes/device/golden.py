"""Golden files: sample inputs with the outputs this machine computed, and the tolerances a
device's outputs are held to.

A golden file (``.golden.npz``, schema ``edgelstm.golden/1``) holds a few *cases*: the exact
arrays fed to the model (inputs and, for a streaming model, the recurrent state carried
from the case before) and every output ONNX Runtime returned here. A device that feeds the
same arrays must get the same outputs within the tolerance of the model's precision
(:func:`tolerance_for`):

- FP32: tight (``1e-5 + 1e-5·|expected|``). Measured between x86-64 and aarch64 (Cortex-A72,
  A76, Neoverse-N1, SVE): at most 4.8e-7 on the quickstart LSTM; only the order of float
  additions differs.
- INT8 with 7-bit weights (``reduce_range``, ``edgelstm quantize``'s default), run on as
  many threads as it was recorded with (one): the same tight bound. The integer products
  are exact on every CPU; measured at most 4.8e-7 between x86-64 AVX2 and aarch64.
- Any other INT8: the tight bound plus one quantization step of each output (its recorded
  range / 255). A different thread count splits the float work around the integer products
  differently, and values at a rounding boundary land one step apart: measured 0.24 of a
  step on the quickstart INT8 model and 0.51 on its streaming states, 1 thread against 2 or
  4, on one x86 CPU. With 8-bit weights (``--reduce-range off``), x86 CPUs without VNNI
  saturate (they add u8·s8 pairs in 16-bit registers) and differ from ARM by 7 to 130
  steps: ``edgelstm bundle`` refuses to record those outputs on such a CPU.
- FP16: ``1e-3 + 1e-3·|expected|`` (half precision carries 11 significant bits).
- Any provider other than the CPU (CUDA, TensorRT, OpenVINO): ``1e-3 + 1e-3·|expected|`` on
  top of the precision's bound: other kernels, other summation orders, TF32 on GPUs.

The inputs are seeded standard-normal arrays in the model's input space (a model normalises
before its graph, so that is the scale it sees), at two batch sizes and two lengths for a
whole-sequence model, and three chained chunks for a streaming one.

Example::

    >>> golden = record_golden("model.onnx", "model.golden.npz")  # doctest: +SKIP
    >>> compare_golden("model.onnx", golden).passed  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.fileio import atomic_file, file_sha256
from edgelstm.runtimes.model_io.contract import StreamContract, state_output_name
from edgelstm.runtimes.ort.artifact import Artifact, load_artifact
from edgelstm.runtimes.ort.feeds import InputSpec, input_specs
from edgelstm.runtimes.ort.session import OpenedSession, open_session
from edgelstm.runtimes.ort.session_config import SessionConfig

__all__ = [
    "GOLDEN_SCHEMA",
    "GoldenCase",
    "GoldenFile",
    "OutputCheck",
    "Tolerance",
    "compare_golden",
    "read_golden",
    "record_golden",
    "tolerance_for",
]

GOLDEN_SCHEMA = "edgelstm.golden/1"
#: Whole-sequence cases: (batch, time steps); the lengths differ so a frozen time axis shows.
_SEQUENCE_CASES = ((2, 24), (1, 9))
#: Streaming cases: chained chunks of this many steps for this many streams.
_STREAM_CHUNKS, _STREAM_STEPS, _STREAMS = 3, 4, 2
#: Golden outputs are computed on one thread: what deployments choose on small devices, and
#: the one setting whose INT8 results a device reproduces exactly.
_RECORD_THREADS = 1


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol + rtol·|expected| + steps·step`` element-wise, where
    ``step`` is the output's quantization step recorded in the golden file."""

    rule: str
    atol: float
    rtol: float
    steps: float = 0.0

    def allowed(self, expected: np.ndarray, step: float) -> np.ndarray:
        """The largest difference allowed at each element."""
        bound: np.ndarray = self.atol + self.rtol * np.abs(expected) + self.steps * step
        return bound

    def describe(self) -> str:
        """``int8: 1e-05 + 1e-05*|expected| + 1 step`` for tables."""
        text = f"{self.rule}: {self.atol:g} + {self.rtol:g}*|expected|"
        return text + (f" + {self.steps:g} step" if self.steps else "")


_TIGHT = (1e-5, 1e-5)
_LOOSE = (1e-3, 1e-3)


def tolerance_for(precision: str, provider: str = "cpu", *, exact_int8: bool = False) -> Tolerance:
    """The tolerance a device's outputs are held to (see the module docstring for why).

    ``exact_int8``: an INT8 model with 7-bit weights run on the thread count its golden
    outputs were recorded with, which computes them to float rounding.
    """
    if precision == "int8" and exact_int8:
        rule, (atol, rtol), steps = "int8 exact", _TIGHT, 0.0
    elif precision == "int8":
        rule, (atol, rtol), steps = "int8", _TIGHT, 1.0
    elif precision == "fp16":
        rule, (atol, rtol), steps = "fp16", _LOOSE, 0.0
    else:
        rule, (atol, rtol), steps = "fp32", _TIGHT, 0.0
    if provider.split(":")[0].lower() != "cpu":
        rule += f" on {provider}"
        atol, rtol = atol + _LOOSE[0], rtol + _LOOSE[1]
    return Tolerance(rule, atol, rtol, steps)


@dataclass(frozen=True)
class GoldenCase:
    """One call: the arrays fed and the outputs this machine got for them."""

    feeds: Mapping[str, np.ndarray]
    expected: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class GoldenFile:
    """A golden file's content. ``recorded`` says where it was made (machine, CPU, onnxruntime)."""

    model_sha256: str
    precision: str
    reduce_range: bool | None
    cases: tuple[GoldenCase, ...]
    recorded: Mapping[str, Any]

    def step(self, case: int, output: str) -> float:
        """The quantization step of an expected output: its range split in 255 (what an
        8-bit quantizer would give that tensor)."""
        values = np.asarray(self.cases[case].expected[output], dtype=np.float64)
        finite = values[np.isfinite(values)]
        return float(finite.max() - finite.min()) / 255.0 if finite.size else 0.0


def _dims(spec: InputSpec, batch: int, time: int) -> list[int]:
    """Concrete dims: fixed ones kept; a symbolic one named like a batch (or the first
    unnamed one) takes ``batch``, every other symbolic one ``time``."""
    dims: list[int] = []
    batch_given = False
    for dim in spec.shape:
        if isinstance(dim, int):
            dims.append(dim)
        elif (dim is not None and "batch" in dim.lower()) or (dim is None and not batch_given):
            dims.append(batch)
            batch_given = True
        else:
            dims.append(time)
    return dims


def _sample(spec: InputSpec, dims: list[int], rng: np.random.Generator, time: int) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(dims).astype(dtype)
    if dtype.kind in "iu":  # lengths and the like: the whole length
        return np.full(dims, time, dtype=dtype)
    raise InvalidInputError(
        f"input {spec.describe()}: a golden file can be recorded only for numeric inputs"
    )


def _sequence_feeds(
    specs: tuple[InputSpec, ...], multiple: int, rng: np.random.Generator
) -> list[dict[str, np.ndarray]]:
    cases = []
    for batch, steps in _SEQUENCE_CASES:
        time = steps * multiple
        cases.append({s.name: _sample(s, _dims(s, batch, time), rng, time) for s in specs})
    return cases


def _run(opened: OpenedSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in opened.session.get_outputs()]
    return dict(zip(names, opened.session.run(names, dict(feeds)), strict=True))


def _record_cases(artifact: Artifact, opened: OpenedSession, seed: int) -> list[GoldenCase]:
    rng = np.random.default_rng(seed)
    specs = input_specs(opened.session)
    meta = artifact.metadata
    multiple = meta.stream_chunk_multiple if meta is not None else 1
    if meta is None or meta.variant != "streaming":
        return [GoldenCase(f, _run(opened, f)) for f in _sequence_feeds(specs, multiple, rng)]
    contract = StreamContract.of(meta, artifact.path)
    time = contract.frames_per_call or _STREAM_STEPS * multiple
    streams = min(_STREAMS, contract.max_streams_per_call or _STREAMS)
    state = {
        n: np.zeros(contract.state_shape(n, streams), np.float32) for n in contract.state_names
    }
    cases = []
    for _ in range(_STREAM_CHUNKS):
        feeds = {
            s.name: _sample(s, _dims(s, streams, time), rng, time)
            for s in specs
            if s.name not in state
        }
        feeds.update({n: value.astype(_dtype_of(specs, n)) for n, value in state.items()})
        outputs = _run(opened, feeds)
        cases.append(GoldenCase(feeds, outputs))
        state = {n: outputs[state_output_name(n)] for n in contract.state_names}
    return cases


def _dtype_of(specs: tuple[InputSpec, ...], name: str) -> Any:
    return next(s.dtype for s in specs if s.name == name)


def _machine() -> dict[str, Any]:
    from edgelstm.hardware import cpu_info
    from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime

    cpu = cpu_info()
    return {
        "machine": platform.machine(),
        "cpu": cpu.model,
        "flags": sorted(
            f
            for f in ("avx2", "avx512_vnni", "avx_vnni", "asimddp", "i8mm")
            if getattr(cpu, f, False)
        ),
        "onnxruntime": str(import_onnxruntime().__version__),
        "python": platform.python_version(),
    }


def record_golden(
    model: Path | str, out: Path | str, *, seed: int = 0, overwrite: bool = False
) -> GoldenFile:
    """Run seeded sample inputs through ``model`` on this machine's CPU provider and write
    them with the outputs to ``out`` (atomically)."""
    artifact = load_artifact(model)
    config = SessionConfig(providers=("cpu",), intra_op_threads=_RECORD_THREADS)
    opened = open_session(artifact, config)
    golden = GoldenFile(
        model_sha256=file_sha256(artifact.path),
        precision=artifact.profile.precision,
        reduce_range=artifact.profile.reduce_range,
        cases=tuple(_record_cases(artifact, opened, seed)),
        recorded={**_machine(), "provider": "cpu", "threads": _RECORD_THREADS, "seed": seed},
    )
    write_golden(golden, Path(out), overwrite=overwrite)
    return golden


def write_golden(golden: GoldenFile, path: Path, *, overwrite: bool = False) -> None:
    """Save ``golden`` as one ``.npz`` (arrays ``case<i>.in.<name>``, ``case<i>.out.<name>``
    and a JSON ``meta`` string): numpy reads it on any device without pickles."""
    meta = {
        "schema": GOLDEN_SCHEMA,
        "model_sha256": golden.model_sha256,
        "precision": golden.precision,
        "reduce_range": golden.reduce_range,
        "cases": len(golden.cases),
        "recorded": dict(golden.recorded),
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for i, case in enumerate(golden.cases):
        arrays.update({f"case{i}.in.{k}": v for k, v in case.feeds.items()})
        arrays.update({f"case{i}.out.{k}": v for k, v in case.expected.items()})
    with atomic_file(path, overwrite=overwrite) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def read_golden(path: Path | str) -> GoldenFile:
    """Read a golden file; anything else (or a damaged one) is refused naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"golden file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as exc:  # zip, npy or JSON damage: all mean the same to the user
        raise InvalidInputError(f"{path} is not a readable golden file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("schema") != GOLDEN_SCHEMA:
        raise InvalidInputError(f"{path} is not an edgelstm golden file ({GOLDEN_SCHEMA})")
    cases = []
    for i in range(int(meta["cases"])):
        feeds: dict[str, np.ndarray] = {}
        expected: dict[str, np.ndarray] = {}
        for key, value in arrays.items():
            case, kind, name = key.split(".", 2)
            if case == f"case{i}":
                (feeds if kind == "in" else expected)[name] = value
        cases.append(GoldenCase(feeds, expected))
    return GoldenFile(
        meta["model_sha256"], meta["precision"], meta["reduce_range"], tuple(cases),
        meta.get("recorded", {}),
    )  # fmt: skip


@dataclass(frozen=True)
class OutputCheck:
    """One output of one case: how far it is from the golden value, and the verdict."""

    model: str
    case: int
    output: str
    max_abs_diff: float
    allowed: float  # the bound at the element closest to (or furthest past) its bound
    tolerance: str
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return {
            "model": self.model,
            "case": self.case,
            "output": self.output,
            "max_abs_diff": self.max_abs_diff,
            "allowed": self.allowed,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def _check(
    label: str, case: int, output: str, actual: np.ndarray, golden: GoldenFile,
    tolerance: Tolerance,
) -> OutputCheck:  # fmt: skip
    expected = np.asarray(golden.cases[case].expected[output])
    if actual.shape != expected.shape:
        return OutputCheck(
            label, case, output, float("inf"), 0.0,
            f"shape {list(actual.shape)} != golden {list(expected.shape)}", False,
        )  # fmt: skip
    exp64, act64 = expected.astype(np.float64), actual.astype(np.float64)
    diff = np.abs(act64 - exp64)
    same_nonfinite = ~np.isfinite(exp64) & (exp64 == act64)  # inf == inf; NaN never equals
    diff = np.where(same_nonfinite, 0.0, np.where(np.isnan(diff), np.inf, diff))
    allowed = tolerance.allowed(np.where(np.isfinite(exp64), exp64, 0.0), golden.step(case, output))
    worst = int(np.argmax(diff - allowed)) if diff.size else 0
    passed = bool(np.all(diff <= allowed))
    max_diff = float(diff.max()) if diff.size else 0.0
    bound = float(allowed.flat[worst]) if diff.size else 0.0
    return OutputCheck(label, case, output, max_diff, bound, tolerance.describe(), passed)


def compare_golden(
    model: Path | str,
    golden: GoldenFile,
    *,
    config: SessionConfig | None = None,
    label: str | None = None,
) -> tuple[OpenedSession, list[OutputCheck]]:
    """Run ``golden``'s cases through ``model`` on ``config``'s provider (the CPU by default)
    and hold every output to :func:`tolerance_for` its precision and provider.

    A model that is not the one the golden file was recorded with is refused (exit 2): the
    comparison would say nothing.
    """
    path = Path(model)
    artifact = load_artifact(path)
    digest = file_sha256(path)
    if digest != golden.model_sha256:
        raise InvalidInputError(
            f"{path} is not the model the golden file was recorded with (sha256 {digest[:12]} "
            f"vs {golden.model_sha256[:12]}); copy the model again or give its own --golden"
        )
    opened = open_session(artifact, config or SessionConfig(providers=("cpu",), intra_op_threads=1))
    recorded_threads = golden.recorded.get("threads", _RECORD_THREADS)
    exact = golden.reduce_range is True and opened.config.intra_op_threads == recorded_threads
    tolerance = tolerance_for(golden.precision, opened.provider, exact_int8=exact)
    checks = []
    for i, case in enumerate(golden.cases):
        try:
            outputs = _run(opened, case.feeds)
        except Exception as exc:  # ONNX Runtime refuses the recorded feeds: a broken copy
            raise InvalidInputError(
                f"{path}: the golden inputs of case {i} do not run ({exc})"
            ) from None
        for name in case.expected:
            if name not in outputs:
                checks.append(OutputCheck(label or str(path), i, name, float("inf"), 0.0,
                                          "output missing", False))  # fmt: skip
                continue
            checks.append(_check(label or str(path), i, name, outputs[name], golden, tolerance))
    return opened, checks
