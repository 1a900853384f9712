"""Evaluate ONNX models on a checkpoint's test split: the one path for every such number.

The quantization gate (float vs quantized), ``benchmark --eval`` (every artifact) and the
tuner that reads those values all come here, so the same model gets the same metric value
wherever it is reported. It needs an ONNX Runtime session, hence the runtime room; the
arithmetic (:class:`~edgelstm.training.evaluation.EvaluationData`,
:class:`~edgelstm.tasks.Gate`) stays in the core, and nothing here imports torch.

Example:
    >>> from edgelstm.training.evaluation import EvaluationData
    >>> data = EvaluationData.from_run("runs/jv")  # doctest: +SKIP
    >>> [evaluate_onnx(p, data) for p in ("jv.onnx", "jv.int8.onnx")]  # doctest: +SKIP
    [0.9757, 0.9730]
"""

from __future__ import annotations

from pathlib import Path

from edgelstm.errors import InvalidInputError
from edgelstm.runtimes.model_io.feeding import SplitPredictor, cpu_session
from edgelstm.training.evaluation import EvaluationData, evaluate

__all__ = ["evaluate_onnx"]


def evaluate_onnx(path: Path | str, data: EvaluationData | Path | str) -> float:
    """The gate metric (``data.gate.metric``) of the ONNX model at ``path``.

    ``data`` is a checkpoint folder, or its
    :class:`~edgelstm.training.evaluation.EvaluationData` when several models are evaluated on
    it (the data is then read and cut only once).
    """
    if not isinstance(data, EvaluationData):
        data = EvaluationData.from_run(data)
    session = cpu_session(Path(path))
    features = session.get_inputs()[0].shape[-1]
    # A model from another checkpoint would otherwise stop with a shape error from deep
    # inside ONNX Runtime; say which folder it needs instead.
    if isinstance(features, int) and features != data.prepared.num_features:
        raise InvalidInputError(
            f"{path} takes {features} features but {data.run_dir} has "
            f"{data.prepared.num_features}; --eval needs the checkpoint the models came from"
        )
    return evaluate(SplitPredictor(session), data)
