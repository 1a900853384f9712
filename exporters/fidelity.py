"""Fidelity of a quantized model to its own FP32 outputs: the check every quantization gets.

A task-metric gate needs the checkpoint a model was trained from; a model from elsewhere has
none. What every model has is its FP32 self: :func:`check_fidelity` runs both on the same
inputs and compares, per output,

- **decisions**, for outputs that carry them: the argmax over the last axis for class-like
  outputs (rows that sum to 1, an edgelstm classifier's logits, or an output named like
  logits or classes), and a threshold for
  probabilities in [0, 1] with one value per row (a detector's speech / no-speech);
  ``max_disagreement`` bounds the share of decisions that may change;
- the **relative error** ``||quantized - float|| / ||float||`` of every other output,
  bounded by ``max_relative_error``.

The inputs are, best first: the user's own (``--eval-inputs``, arrays keyed by the model's
input names, or ``X`` for a single sequence input), the checkpoint's test split, or synthetic
inputs drawn to the model's signature, which say little and are reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import InvalidInputError
from edgelstm.metadata import ModelMetadata
from edgelstm.runtimes.model_io.feeding import zero_state
from edgelstm.runtimes.ort.feeds import InputSpec, input_specs

__all__ = [
    "FidelityInputs",
    "FidelityReport",
    "FidelityThresholds",
    "OutputFidelity",
    "check_fidelity",
    "fidelity_inputs",
]

#: Samples taken from a checkpoint's test split or drawn synthetically (each run at batch 1).
SAMPLES = 32
#: An output named with one of these (``logits``, ``class_scores``...) holds per-class values:
#: its decisions are the argmax over the last axis.
CLASS_OUTPUT_WORDS = ("logit", "class")
#: Time steps of a synthetic sample when the time axis is symbolic.
SYNTHETIC_STEPS = 32


@dataclass(frozen=True)
class FidelityThresholds:
    """How far a quantized model may drift from its FP32 outputs (``quantize`` flags).

    ``max_disagreement``: share of decisions (argmax or thresholded probability) that may
    change; ``max_relative_error``: ``||q - f|| / ||f||`` of other outputs; ``threshold``:
    the decision threshold of probability outputs.
    """

    max_disagreement: float = 0.02
    max_relative_error: float = 0.25
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_disagreement", "threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                flag = "--" + name.replace("_", "-")
                raise InvalidInputError(f"{flag} must be in [0, 1], got {getattr(self, name)}")
        if self.max_relative_error < 0:
            raise InvalidInputError(
                f"--max-relative-error must be >= 0, got {self.max_relative_error}"
            )


@dataclass(frozen=True)
class FidelityInputs:
    """Feeds to compare on, one dict per sample, and where they came from."""

    samples: tuple[dict[str, np.ndarray], ...]
    description: str
    synthetic: bool


@dataclass(frozen=True)
class OutputFidelity:
    """One output: how it was compared, the measured drift and its bound."""

    output: str
    kind: str  # "argmax", "threshold" or "relative error"
    value: float
    allowed: float

    @property
    def passed(self) -> bool:
        return bool(self.value <= self.allowed)

    def describe(self) -> str:
        what = "relative error" if self.kind == "relative error" else f"{self.kind} disagreement"
        return f"{self.output}: {what} {self.value:.4f} (allowed {self.allowed:g})"


@dataclass(frozen=True)
class FidelityReport:
    """Every output's comparison, on which inputs."""

    outputs: tuple[OutputFidelity, ...]
    inputs: str
    synthetic: bool

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def failures(self) -> list[OutputFidelity]:
        return [o for o in self.outputs if not o.passed]

    def describe(self) -> str:
        return "; ".join(o.describe() for o in self.outputs) + f" (on {self.inputs})"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "inputs": self.inputs,
            "synthetic": self.synthetic,
            "outputs": [{**o.__dict__, "passed": o.passed} for o in self.outputs],
        }


# --------------------------------------------------------------------------------------------
# inputs


def fidelity_inputs(
    session: Any,
    eval_inputs: Path | None,
    meta: ModelMetadata | None,
    run_dir: Path | None,
) -> FidelityInputs:
    """The inputs to compare the FP32 and quantized model on (see the module docstring)."""
    specs = input_specs(session)
    state = set(meta.state) if meta is not None else set()
    if eval_inputs is not None:
        return _from_file(eval_inputs, specs, state)
    if run_dir is not None and meta is not None:
        return _from_checkpoint(run_dir, specs, state)
    return _synthetic(specs, state)


def _zero_state(spec: InputSpec) -> np.ndarray:
    return zero_state([spec], batch=1)[spec.name]


def _from_file(path: Path, specs: Sequence[InputSpec], state: set[str]) -> FidelityInputs:
    from edgelstm.data.arrays import read_arrays
    from edgelstm.exporters.calibration import split_samples

    arrays = read_arrays(path)
    # An edgelstm streaming model's state may be left out of the file: it starts at zero.
    given = [s for s in specs if s.name in arrays or s.name not in state]
    samples = split_samples(arrays, given, source=f"--eval-inputs {path}")[: SAMPLES * 4]
    for feed in samples:
        feed.update({s.name: _zero_state(s) for s in specs if s.name not in feed})
    return FidelityInputs(tuple(samples), f"{len(samples)} samples from {path}", False)


def _from_checkpoint(run_dir: Path, specs: Sequence[InputSpec], state: set[str]) -> FidelityInputs:
    from edgelstm.training.evaluation import prepare_for_evaluation

    prepared, _ = prepare_for_evaluation(run_dir)
    split = prepared.test
    samples = []
    for i in range(min(len(split.x), SAMPLES)):
        steps = int(split.lengths[i]) if split.lengths is not None else split.x.shape[1]
        x = np.ascontiguousarray(split.x[i : i + 1, :steps]).astype(np.float32)
        feed = {specs[0].name: x}
        feed.update({s.name: _zero_state(s) for s in specs[1:] if s.name in state})
        samples.append(feed)
    text = f"{len(samples)} test sequences of {run_dir}"
    return FidelityInputs(tuple(samples), text, False)


def _synthetic_shape(spec: InputSpec) -> list[int]:
    """Symbolic axes become 1, except a time axis: one named like time (``time``,
    ``seq_len``...), or axis 1 of a batch-first ``[batch, time, features]`` input."""
    dims = []
    for axis, dim in enumerate(spec.shape):
        name = str(dim).lower() if not isinstance(dim, int) else ""
        batch_first_time = axis == 1 and len(spec.shape) == 3 and not isinstance(spec.shape[0], int)
        timelike = any(word in name for word in ("time", "seq", "len", "step", "frame"))
        if isinstance(dim, int):
            dims.append(dim)
        else:
            dims.append(SYNTHETIC_STEPS if timelike or batch_first_time else 1)
    return dims


def _synthetic(specs: Sequence[InputSpec], state: set[str]) -> FidelityInputs:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(SAMPLES // 4):
        feed = {}
        for spec in specs:
            if spec.name in state:
                feed[spec.name] = _zero_state(spec)
            elif np.issubdtype(spec.dtype, np.floating):
                feed[spec.name] = rng.standard_normal(_synthetic_shape(spec)).astype(spec.dtype)
            else:
                feed[spec.name] = np.zeros(_synthetic_shape(spec), spec.dtype)
        samples.append(feed)
    text = f"{len(samples)} synthetic samples drawn to the model's signature"
    return FidelityInputs(tuple(samples), text, True)


# --------------------------------------------------------------------------------------------
# comparison


def _outputs(session: Any, samples: Sequence[Mapping[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """Per output, every sample's value (a list over samples)."""
    names = [o.name for o in session.get_outputs()]
    runs = [session.run(names, dict(feed)) for feed in samples]
    return [[np.asarray(run[j], dtype=np.float64) for run in runs] for j in range(len(names))]


def _kind(name: str, values: list[np.ndarray], meta: ModelMetadata | None, first: bool) -> str:
    """How an output is compared: ``argmax``, ``threshold`` or ``relative error``.

    An edgelstm model says what its outputs are (a classifier's first output is its logits);
    another model's outputs are judged by their values.
    """
    if meta is not None and meta.task is not None:
        return (
            "argmax"
            if first and meta.task in ("classify", "tag", "transcribe")
            else "relative error"
        )
    stacked = [v for v in values if v.size]
    if not stacked or not all(np.isfinite(v).all() for v in stacked):
        return "relative error"
    width = stacked[0].shape[-1] if stacked[0].ndim else 1
    if width > 1 and any(word in name.lower() for word in CLASS_OUTPUT_WORDS):
        return "argmax"
    lowest = min(float(v.min()) for v in stacked)
    highest = max(float(v.max()) for v in stacked)
    if lowest < 0.0 or highest > 1.0:
        return "relative error"
    if width == 1:
        return "threshold"
    sums = np.concatenate([v.reshape(-1, width).sum(axis=1) for v in stacked])
    return "argmax" if np.allclose(sums, 1.0, atol=1e-3) else "relative error"


def _compare(
    name: str,
    kind: str,
    want: list[np.ndarray],
    got: list[np.ndarray],
    thresholds: FidelityThresholds,
) -> OutputFidelity:
    if kind == "relative error":
        diff = np.sqrt(sum(float(np.sum((g - w) ** 2)) for g, w in zip(got, want, strict=True)))
        norm = np.sqrt(sum(float(np.sum(w**2)) for w in want))
        value = diff / norm if norm > 0 else diff
        return OutputFidelity(name, kind, float(value), thresholds.max_relative_error)
    if kind == "argmax":
        decisions = [
            (np.argmax(g, axis=-1), np.argmax(w, axis=-1)) for g, w in zip(got, want, strict=True)
        ]
    else:
        cut = thresholds.threshold
        decisions = [(g > cut, w > cut) for g, w in zip(got, want, strict=True)]
    changed = sum(int(np.sum(a != b)) for a, b in decisions)
    total = sum(int(np.size(b)) for _, b in decisions)
    value = changed / total if total else 0.0
    return OutputFidelity(name, kind, value, thresholds.max_disagreement)


def check_fidelity(
    float_session: Any,
    quantized_session: Any,
    inputs: FidelityInputs,
    thresholds: FidelityThresholds,
    meta: ModelMetadata | None = None,
) -> FidelityReport:
    """Compare the quantized model's outputs with the float model's on ``inputs``.

    An edgelstm classifier's first output (its logits) is compared by argmax; its state
    outputs, forecasts and predictions by relative error.

    Example::

        >>> report = check_fidelity(fp32, int8, inputs, FidelityThresholds())
        ... # doctest: +SKIP
        >>> report.passed, report.describe()  # doctest: +SKIP
    """
    names = [o.name for o in float_session.get_outputs()]
    want = _outputs(float_session, inputs.samples)
    got = _outputs(quantized_session, inputs.samples)
    results = []
    for j, (name, w, g) in enumerate(zip(names, want, got, strict=True)):
        kind = _kind(name, w, meta, first=j == 0)
        results.append(_compare(name, kind, w, g, thresholds))
    return FidelityReport(tuple(results), inputs.description, inputs.synthetic)
