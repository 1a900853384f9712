"""The PyTorch side of a benchmark row: the model it times (a checkpoint's, or the user's
own module built as ``export --model`` builds it) and the inputs it feeds it (the same
numbers the ONNX Runtime rows beside it get)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelstm.errors import InvalidInputError

if TYPE_CHECKING:
    from edgelstm.benchmarks.measure import Measurement

__all__ = ["torch_inputs", "torch_model"]


def torch_inputs(m: Measurement, checkpoint: Any, device: Any) -> Any:
    """What the row feeds: seeded frames for a checkpoint; for a user module, the arrays the
    ONNX rows of ``m.feeds_from`` get, in its input order (the order of ``forward()``)."""
    import torch

    from edgelstm.benchmarks.model_inputs import benchmark_feeds, sequence_frames

    if checkpoint is not None:
        frames = sequence_frames(m.batch, m.seq, checkpoint.record.model.input_size)
        return torch.from_numpy(frames).to(device)
    from edgelstm.runtimes.ort.feeds import input_specs
    from edgelstm.runtimes.ort.session import open_session

    if m.feeds_from is None:
        raise InvalidInputError(
            f"--torch {m.model}: PyTorch rows of your module are fed what an ONNX model's rows "
            "get; give its export beside it (edgelstm benchmark MODEL.onnx --torch ...)"
        )
    specs = input_specs(open_session(Path(m.feeds_from)).session)
    feeds, _, _ = benchmark_feeds(specs, batch=m.batch, seq=m.seq, inputs=m.inputs, dims=m.dims)
    return tuple(torch.from_numpy(feeds[s.name]).to(device) for s in specs)


def torch_model(m: Measurement) -> tuple[Any, Any, Any]:
    """(checkpoint or None, the model as the row times it, its torch device): a checkpoint's
    model, or a user module (``FILE.py:FACTORY`` with ``weights``), in eval mode, dynamically
    quantized for an ``int8`` row, moved to a CUDA row's device."""
    import warnings

    import torch

    checkpoint: Any = None
    if Path(m.model).is_dir():
        from edgelstm.training.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(Path(m.model))
        model = checkpoint.model.eval()
        if m.mode == "streaming":
            # The export's rule: a row must not time a streaming mode no export could have.
            model.config.check_streamable()
    else:
        model = _user_module(m).eval()
    if m.precision == "int8":
        if m.provider != "cpu":
            raise InvalidInputError("PyTorch dynamic INT8 runs on the CPU only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao announces its own deprecation
            model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
            )
    device = torch.device("cpu")
    if m.provider == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError("PyTorch here has no CUDA device; benchmark torch on cpu")
        device = torch.device("cuda", m.cuda_device)
        model = model.to(device)
    return checkpoint, model, device


def _user_module(m: Measurement) -> Any:
    """``FILE.py:FACTORY`` built and its weights loaded as ``export --model`` loads them."""
    from edgelstm.exporters.user_models import load_user_factory
    from edgelstm.exporters.user_weights import load_weights

    if m.mode == "streaming":
        raise InvalidInputError(
            f"--torch {m.model}: streaming rows need an edgelstm checkpoint (its step function)"
        )
    module, loader = load_user_factory(m.model)
    if m.weights is not None:
        load_weights(module, Path(m.weights), loader)
    return module
