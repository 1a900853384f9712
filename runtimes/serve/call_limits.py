"""What a model allows a server per call, over what was asked: ``edgelstm serve`` says so
before it starts, and the batcher keeps to it whoever built its limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from edgelstm.runtimes.model_io.contract import StreamContract

if TYPE_CHECKING:
    from edgelstm.runtimes.serve.batcher import ServeLimits

__all__ = ["capped_limits", "limits_for_model"]


def capped_limits(limits: ServeLimits, contract: StreamContract) -> tuple[ServeLimits, str | None]:
    """``limits`` with ``max_batch`` lowered to what the model takes per call, and a note
    saying so (a model adopted with no batch axis on its state runs one stream per call)."""
    cap = contract.max_streams_per_call
    if cap is None or limits.max_batch <= cap:
        return limits, None
    note = (
        f"the model runs {cap} stream(s) per call (its state has no batch axis): batches of "
        f"{cap}, not {limits.max_batch}"
    )
    return dataclasses.replace(limits, max_batch=cap), note


def limits_for_model(model: Path, limits: ServeLimits) -> tuple[ServeLimits, str | None]:
    """:func:`capped_limits` for the model file (its metadata only; a model that cannot
    stream is left to the server's own refusal)."""
    from edgelstm.runtimes.ort.artifact import load_artifact

    meta = load_artifact(model, verify=False).metadata
    if meta is None or meta.variant != "streaming" or not meta.state:
        return limits, None
    return capped_limits(limits, StreamContract.of(meta, model))
