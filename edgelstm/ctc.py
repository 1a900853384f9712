"""CTC decoding in plain numpy: greedy and prefix beam search, offline and streaming.

A ``transcribe`` model scores, per frame, each token of a :class:`Vocabulary` plus a blank
(the last index). The streaming decoders say which tokens are final, so a live user sees
text that never changes once shown. Plain numpy: devices decode without torch.

Example::

    >>> import numpy as np
    >>> vocabulary = Vocabulary.from_texts(["ab", "ba"])
    >>> logits = np.log(np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]))
    >>> vocabulary.decode(greedy_decode(logits, vocabulary.blank).tokens)
    'ab'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edgelstm.errors import InvalidInputError

#: How many tokens an unknown-character message lists before it abbreviates.
_TOKENS_SHOWN = 20


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64.

    Subtracting the row maximum first keeps ``exp`` from overflowing on large logits. A row
    with NaN, ``+inf`` or no finite value gives NaN (the decoders refuse such frames).

    Example::

        >>> np.exp(log_softmax(np.array([0.0, 0.0]))).tolist()
        [0.5, 0.5]
    """
    values = np.asarray(logits, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] == 0:
        raise InvalidInputError(
            f"logits need a class axis with at least one class, got shape {values.shape}"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = values - np.max(values, axis=-1, keepdims=True)
        result: np.ndarray = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return result


@dataclass(frozen=True)
class Decoded:
    """Tokens, the frame (0-based time step) each was emitted at, and the log-probability of
    the result: the best path's for greedy, the whole labelling's for the beam search."""

    tokens: tuple[int, ...]
    frames: tuple[int, ...]
    log_prob: float


def _log_probs(logits: np.ndarray, blank: int, *, what: str = "logits") -> np.ndarray:
    """``logits`` ``[time, classes]`` as checked float64 log-probabilities."""
    array = np.asarray(logits)
    if array.ndim != 2:
        raise InvalidInputError(
            f"{what} must be [time, classes], got shape {array.shape}; decode one sequence at a "
            "time (greedy_decode_batch takes [batch, time, classes])"
        )
    _check_blank(blank, array.shape[-1], what)
    log_probs = log_softmax(array)
    _refuse_nan(np.isnan(log_probs).any(axis=-1), what)
    return log_probs


def _check_blank(blank: int, classes: int, what: str) -> None:
    if classes < 1 or not 0 <= blank < classes:
        raise InvalidInputError(
            f"blank {blank} is not one of the {classes} classes of the {what}; the blank is the "
            "last class index (Vocabulary.blank)"
        )


def _refuse_nan(bad_frames: np.ndarray, what: str) -> None:
    if bad_frames.any():
        where = np.argwhere(bad_frames)[0].tolist()
        raise InvalidInputError(
            f"{what} at frame {where[-1]}{f' of sequence {where[0]}' if len(where) > 1 else ''} "
            "hold NaN, +inf or no finite value; check the model's output"
        )


# --------------------------------------------------------------------------------------------
# Greedy (best path)


def _emissions(path: np.ndarray, blank: int, previous: int = -1) -> np.ndarray:
    """Frames of ``path`` that emit a token: not blank, not a repeat of the frame before.
    ``previous`` is the symbol before ``path[0]`` (-1: none): a run crossing chunks emits once."""
    before = np.concatenate([[previous], path[:-1]])
    return np.flatnonzero((path != blank) & (path != before))


def greedy_decode(logits: np.ndarray, blank: int) -> Decoded:
    """Best-path CTC decoding of one sequence's ``[time, classes]`` logits (or log-probs).

    The best path takes the most probable class per frame; collapsing repeats and dropping
    blanks gives the tokens, each stamped with the first frame of its run. ``log_prob`` is the
    sum of the path's per-frame log-softmax values.

    Example::

        >>> greedy_decode(np.log(np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])), blank=1).tokens
        (0,)
    """
    log_probs = _log_probs(logits, blank)
    path = np.argmax(log_probs, axis=-1)
    frames = _emissions(path, blank)
    log_prob = float(np.take_along_axis(log_probs, path[:, None], axis=-1).sum())
    return Decoded(tuple(path[frames].tolist()), tuple(frames.tolist()), log_prob)


def greedy_decode_batch(
    logits: np.ndarray, lengths: np.ndarray | None, blank: int
) -> list[Decoded]:
    """:func:`greedy_decode` of each row of padded ``[batch, time, classes]`` outputs.

    Only the first ``lengths[i]`` frames of row ``i`` are read (all frames when ``lengths`` is
    None), so padding may hold anything. The argmax and the path scores run on the whole batch
    at once; only the short per-row collapse is a Python loop.
    """
    array = np.asarray(logits)
    if array.ndim != 3:
        raise InvalidInputError(
            f"batch logits must be [batch, time, classes], got shape {array.shape}"
        )
    _check_blank(blank, array.shape[-1], "batch logits")
    batch, time = array.shape[:2]
    valid_lengths = _valid_lengths(lengths, batch, time)
    valid = np.arange(time)[None, :] < valid_lengths[:, None]
    log_probs = log_softmax(array)
    _refuse_nan(np.isnan(log_probs).any(axis=-1) & valid, "batch logits")
    paths = np.argmax(log_probs, axis=-1)
    path_scores = np.where(
        valid, np.take_along_axis(log_probs, paths[..., None], axis=-1)[..., 0], 0.0
    )
    results = []
    for row, length in enumerate(valid_lengths.tolist()):
        path = paths[row, :length]
        frames = _emissions(path, blank)
        tokens, starts = tuple(path[frames].tolist()), tuple(frames.tolist())
        results.append(Decoded(tokens, starts, float(path_scores[row].sum())))
    return results


def _valid_lengths(lengths: np.ndarray | None, batch: int, time: int) -> np.ndarray:
    if lengths is None:
        return np.full(batch, time, dtype=np.int64)
    array = np.asarray(lengths)
    if array.shape != (batch,) or not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(
            f"lengths must be {batch} integers (one per sequence), got {array.dtype} "
            f"shape {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() > time):
        raise InvalidInputError(
            f"lengths must lie in 0..{time} (the time axis), got {array.min()}..{array.max()}"
        )
    return array.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Prefix beam search: one step, shared by the offline and the streaming decoder


@dataclass(frozen=True)
class _Beam:
    """Live hypotheses, best first: each prefix, its tokens' frames, and the log-probability
    of the paths writing it that end in a blank (``log_blank``) or in its last token
    (``log_token``), kept apart so that ``a, blank, a`` writes two tokens and ``a, a`` one."""

    prefixes: tuple[tuple[int, ...], ...]
    frames: tuple[tuple[int, ...], ...]
    log_blank: np.ndarray
    log_token: np.ndarray

    @staticmethod
    def empty() -> _Beam:
        return _Beam(((),), ((),), np.zeros(1), np.full(1, -np.inf))

    def best(self) -> Decoded:
        log_prob = float(np.logaddexp(self.log_blank[0], self.log_token[0]))
        return Decoded(self.prefixes[0], self.frames[0], log_prob)

    def settled(self) -> list[tuple[int, int]]:
        """(token, frame) pairs every hypothesis agrees on: the longest common prefix.

        Hypotheses only ever grow, and a prefix keeps its tokens' frames, so every later
        hypothesis starts with these pairs: they are final.
        """
        pairs = [
            list(zip(p, f, strict=True)) for p, f in zip(self.prefixes, self.frames, strict=True)
        ]
        columns = enumerate(zip(*pairs, strict=False))  # stops at the shortest hypothesis
        common = next((at for at, column in columns if len(set(column)) > 1), min(map(len, pairs)))
        return pairs[0][:common]


def _beam_step(
    beam: _Beam, log_probs: np.ndarray, frame: int, blank: int, beam_width: int, log_prune: float
) -> _Beam:
    """Advance ``beam`` by one frame of log-probabilities ``[classes]``.

    Each hypothesis either stays (a blank, or its last token repeated, writes nothing new) or
    grows by one token. A grown prefix that is already live merges into it (log-sum-exp);
    its frames follow the larger of the two contributions, so a token is stamped where its
    probable paths write it rather than where some improbable path first did. Tokens below
    the prune threshold are not grown, except the prefix's last token.
    """
    classes = log_probs.shape[0]
    size = len(beam.prefixes)
    rows = np.arange(size)
    last = np.array([prefix[-1] if prefix else -1 for prefix in beam.prefixes], dtype=np.int64)
    has_last = last >= 0
    last_score = np.where(has_last, log_probs[np.maximum(last, 0)], -np.inf)
    total = np.logaddexp(beam.log_blank, beam.log_token)
    stay_blank = total + log_probs[blank]
    stay_token = beam.log_token + last_score
    # Growing by the last token needs a blank in between: only blank-ending paths may.
    grow = total[:, None] + log_probs[None, :]
    grow[rows[has_last], last[has_last]] = beam.log_blank[has_last] + last_score[has_last]
    allowed = np.broadcast_to(log_probs >= log_prune, (size, classes)).copy()
    allowed[rows[has_last], last[has_last]] = True
    allowed[:, blank] = False
    grow[~allowed] = -np.inf
    frames = list(beam.frames)
    index = {prefix: row for row, prefix in enumerate(beam.prefixes)}
    for row, prefix in enumerate(beam.prefixes):
        parent = index.get(prefix[:-1]) if prefix else None
        if parent is None:
            continue
        grown = grow[parent, prefix[-1]]
        grow[parent, prefix[-1]] = -np.inf
        if grown > np.logaddexp(stay_blank[row], stay_token[row]):
            frames[row] = beam.frames[parent] + (frame,)
        stay_token[row] = np.logaddexp(stay_token[row], grown)
    # Keep the most probable candidates; a stable sort puts stays first on ties, so every
    # caller (offline or any chunking) keeps the same ones.
    scores = np.concatenate([np.logaddexp(stay_blank, stay_token), grow.ravel()])
    order = np.argsort(-scores, kind="stable")[:beam_width]
    kept = order[np.isfinite(scores[order])]
    prefixes, new_frames, log_blank, log_token = [], [], [], []
    # With nothing possible left (pruned away), keep one hypothesis so decoding goes on.
    for candidate in (kept if kept.size else order[:1]).tolist():
        if candidate < size:
            prefixes.append(beam.prefixes[candidate])
            new_frames.append(frames[candidate])
            log_blank.append(stay_blank[candidate])
            log_token.append(stay_token[candidate])
        else:
            parent, token = divmod(candidate - size, classes)
            prefixes.append(beam.prefixes[parent] + (token,))
            new_frames.append(beam.frames[parent] + (frame,))
            log_blank.append(-np.inf)
            log_token.append(grow[parent, token])
    return _Beam(tuple(prefixes), tuple(new_frames), np.array(log_blank), np.array(log_token))


def _beam_options(beam_width: int, prune: float) -> float:
    """Check the beam options; the log of ``prune`` (the threshold the step compares with)."""
    if not isinstance(beam_width, int | np.integer) or beam_width < 1:
        raise InvalidInputError(f"beam width must be an integer >= 1, got {beam_width!r}")
    if not 0.0 <= prune < 1.0:
        raise InvalidInputError(
            f"prune must be a probability in [0, 1) (tokens below it at a frame are not "
            f"extended; 0 keeps all), got {prune!r}"
        )
    return float(np.log(prune)) if prune > 0 else -np.inf


def prefix_beam_search(
    logits: np.ndarray, blank: int, *, beam_width: int = 8, prune: float = 0.0
) -> Decoded:
    """CTC prefix beam search over one sequence's ``[time, classes]`` logits (or log-probs).

    Unlike the best path, this sums over every alignment that writes the same prefix, so a
    labelling spread over several mediocre paths can beat one sharp path. ``beam_width``
    prefixes survive each frame; ``prune`` is a minimum per-frame probability below which a
    token is not extended (blank and the prefix's last token are always considered). With a
    beam wide enough to keep every prefix, the result is the most probable labelling and
    ``log_prob`` its exact log-probability.

    ``frames[i]`` is the frame where token ``i`` entered the returned prefix; when the prefix
    is reached both by staying and by growing at a frame, the larger contribution decides, so
    for a confident model it is the first frame of the token's run, as greedy reports.

    Example::

        >>> probs = np.array([[0.4, 0.6], [0.4, 0.6]])  # blank=1: best path writes nothing
        >>> prefix_beam_search(np.log(probs), blank=1).tokens  # but "0" has 0.64 > 0.36
        (0,)
    """
    log_prune = _beam_options(beam_width, prune)
    log_probs = _log_probs(logits, blank)
    beam = _Beam.empty()
    for frame, row in enumerate(log_probs):
        beam = _beam_step(beam, row, frame, blank, beam_width, log_prune)
    return beam.best()


# --------------------------------------------------------------------------------------------
# Streaming


class StreamDecoder(ABC):
    """A CTC decoder fed chunk by chunk, as the streaming doors (``run --stream``, serve) use.

    :meth:`feed` returns the (token, global frame) pairs that became final in the chunk;
    :meth:`finish` flushes what was still tentative; :meth:`reset` starts a new stream.
    """

    def __init__(self, blank: int) -> None:
        self.blank = blank
        self.reset()

    @abstractmethod
    def feed(self, logits: np.ndarray) -> list[tuple[int, int]]: ...

    @abstractmethod
    def finish(self) -> list[tuple[int, int]]: ...

    @property
    @abstractmethod
    def partial(self) -> tuple[int, ...]: ...

    def reset(self) -> None:
        """Forget the stream: the next chunk starts at frame 0."""
        self._classes: int | None = None
        self._frames_seen = 0
        self._final: list[tuple[int, int]] = []

    def _chunk(self, logits: np.ndarray) -> np.ndarray:
        log_probs = _log_probs(logits, self.blank, what="chunk logits")
        classes = log_probs.shape[1]
        if self._classes is not None and classes != self._classes:
            raise InvalidInputError(
                f"chunk logits have {classes} classes but the stream's earlier chunks had "
                f"{self._classes}; feed one model's outputs per stream (reset() starts anew)"
            )
        self._classes = classes
        return log_probs

    @property
    def tokens(self) -> tuple[int, ...]:
        """All final tokens so far."""
        return tuple(token for token, _ in self._final)

    @property
    def frames(self) -> tuple[int, ...]:
        """The frames of :attr:`tokens` (global frame indices since the last reset)."""
        return tuple(frame for _, frame in self._final)

    @property
    def frames_seen(self) -> int:
        """Frames fed since the last reset."""
        return self._frames_seen


class GreedyStreamDecoder(StreamDecoder):
    """Best-path decoding chunk by chunk; a token is final as soon as it is emitted.

    Any chunking gives exactly :func:`greedy_decode`'s tokens and frames on the whole.

    Example::

        >>> decoder = GreedyStreamDecoder(blank=1)
        >>> decoder.feed(np.array([[2.0, 0.0]])), decoder.feed(np.array([[2.0, 0.0], [0.0, 2.0]]))
        ([(0, 0)], [])
    """

    _previous: int  # the last frame's symbol, so a run crossing chunks is emitted once
    _log_prob: float

    def feed(self, logits: np.ndarray) -> list[tuple[int, int]]:
        """Decode the next ``[t, classes]`` frames; the (token, global frame) pairs emitted."""
        log_probs = self._chunk(logits)
        if not len(log_probs):
            return []
        path = np.argmax(log_probs, axis=-1)
        emitted = _emissions(path, self.blank, self._previous)
        new = [(int(path[at]), self._frames_seen + int(at)) for at in emitted]
        self._log_prob += float(np.take_along_axis(log_probs, path[:, None], axis=-1).sum())
        self._previous = int(path[-1])
        self._frames_seen += len(path)
        self._final.extend(new)
        return new

    def finish(self) -> list[tuple[int, int]]:
        """Nothing is pending in greedy decoding: always ``[]`` (here for a common interface)."""
        return []

    @property
    def partial(self) -> tuple[int, ...]:
        """Greedy output has nothing tentative: the same as :attr:`tokens`."""
        return self.tokens

    def result(self) -> Decoded:
        """Everything so far, equal to :func:`greedy_decode` on the frames fed."""
        return Decoded(self.tokens, self.frames, self._log_prob)

    def reset(self) -> None:
        super().reset()
        self._previous = -1
        self._log_prob = 0.0


class BeamStreamDecoder(StreamDecoder):
    """Prefix beam search chunk by chunk, reporting the tokens that became final.

    Finality rule: a token is final when every hypothesis in the beam agrees on it (and on its
    frame), i.e. it lies in the longest common prefix of all live beams. Hypotheses only grow,
    so such a token can never be taken back. :attr:`partial` shows the best hypothesis
    (final + tentative); :meth:`finish` ends the stream and reports the rest of it. After
    ``finish()``, the final tokens equal :func:`prefix_beam_search` on the concatenated logits
    with the same beam options, for any chunking (the two share one beam step).
    """

    _beam: _Beam
    _finished: bool

    def __init__(self, blank: int, *, beam_width: int = 8, prune: float = 0.0) -> None:
        self._log_prune = _beam_options(beam_width, prune)
        self.beam_width = beam_width
        super().__init__(blank)

    def feed(self, logits: np.ndarray) -> list[tuple[int, int]]:
        """Decode the next ``[t, classes]`` frames; the (token, global frame) pairs now final."""
        if self._finished:
            raise InvalidInputError(
                "this stream was finished; call reset() before feeding a new one"
            )
        log_probs = self._chunk(logits)
        for row in log_probs:
            self._beam = _beam_step(
                self._beam, row, self._frames_seen, self.blank, self.beam_width, self._log_prune
            )
            self._frames_seen += 1
        return self._report(self._beam.settled())

    def finish(self) -> list[tuple[int, int]]:
        """End the stream: the best hypothesis becomes final; its unreported pairs."""
        if self._finished:
            return []
        self._finished = True
        best = self._beam.best()
        return self._report(list(zip(best.tokens, best.frames, strict=True)))

    def _report(self, final: list[tuple[int, int]]) -> list[tuple[int, int]]:
        new = final[len(self._final) :]
        self._final.extend(new)
        return new

    @property
    def partial(self) -> tuple[int, ...]:
        """The best hypothesis so far: the final tokens followed by the tentative ones."""
        return self._beam.prefixes[0]

    def result(self) -> Decoded:
        """The best hypothesis so far with its frames and labelling log-probability."""
        return self._beam.best()

    def reset(self) -> None:
        super().reset()
        self._beam = _Beam.empty()
        self._finished = False


# --------------------------------------------------------------------------------------------
# Vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """The tokens a ``transcribe`` model writes; index ``len(tokens)`` is the CTC blank.

    Tokens may be longer than one character; :meth:`encode` matches the longest token at each
    position, so with tokens ``("a", "ab")`` the text ``"ab"`` is one token.

    Example::

        >>> vocabulary = Vocabulary.from_texts(["12", "31"])
        >>> vocabulary.tokens, vocabulary.blank, vocabulary.encode("312", where="y[0]")
        (('1', '2', '3'), 3, (2, 0, 1))
    """

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        tokens = tuple(str(token) for token in self.tokens)
        object.__setattr__(self, "tokens", tokens)
        if not tokens:
            raise InvalidInputError("the alphabet is empty: give at least one token")
        if "" in tokens:
            raise InvalidInputError("a token is the empty string; every token needs a character")
        if len(set(tokens)) != len(tokens):
            repeated = sorted({token for token in tokens if tokens.count(token) > 1})
            raise InvalidInputError(
                f"tokens repeat: {', '.join(map(_shown, repeated))}; list each once"
            )

    @property
    def blank(self) -> int:
        """The CTC blank's class index: the last one."""
        return len(self.tokens)

    @property
    def size(self) -> int:
        """Classes the model's output needs: the tokens plus the blank."""
        return len(self.tokens) + 1

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str] | np.ndarray,
        tokens: Sequence[str] | np.ndarray | None = (),
        *,
        where: str = "labels",
    ) -> Vocabulary:
        """The sorted set of characters in ``texts``, or ``tokens`` when given (deduplicated,
        order kept). ``where`` names the labels in the error when no token results."""
        if tokens is not None and len(tokens):
            chosen = tuple(dict.fromkeys(str(token) for token in tokens))
        else:
            chosen = tuple(sorted({character for text in texts for character in str(text)}))
        if not chosen:
            raise InvalidInputError(
                f"{where}: no alphabet: every label is an empty string and no tokens were given; "
                "give labels with at least one character"
            )
        return cls(chosen)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {token: index for index, token in enumerate(self.tokens)}

    @cached_property
    def _lengths(self) -> tuple[int, ...]:
        return tuple(sorted({len(token) for token in self.tokens}, reverse=True))

    def encode(self, text: str, *, where: str) -> tuple[int, ...]:
        """Token indices of ``text``, matching the longest token at each position.

        ``where`` names the text in the error (e.g. ``"test.npz: y[17]"``); positions are
        0-based character offsets.
        """
        text, index, indices, position = str(text), self._index, [], 0
        while position < len(text):
            for length in self._lengths:
                found = index.get(text[position : position + length])
                if found is not None:
                    indices.append(found)
                    position += length
                    break
            else:
                raise InvalidInputError(
                    f"{where}: character {text[position]!r} (position {position}) is not in the "
                    f"alphabet ({self._shown_tokens()}); the model can only write tokens it was "
                    "trained on"
                )
        return tuple(indices)

    def decode(self, indices: Sequence[int]) -> str:
        """The text of token ``indices`` (blanks are skipped)."""
        pieces = []
        for value in indices:
            index = int(value)
            if index == self.blank:
                continue
            if not 0 <= index < self.blank:
                raise InvalidInputError(
                    f"token index {index} is outside this vocabulary (0..{self.blank}, "
                    f"{self.blank} = blank); the model's output has more classes than its alphabet"
                )
            pieces.append(self.tokens[index])
        return "".join(pieces)

    def _shown_tokens(self) -> str:
        shown = ", ".join(map(_shown, self.tokens[:_TOKENS_SHOWN]))
        return shown + (" ..." if len(self.tokens) > _TOKENS_SHOWN else "")


def _shown(token: str) -> str:
    """A token as a message shows it: quoted when it has spaces or unprintable characters."""
    return token if token.isprintable() and not any(c.isspace() for c in token) else repr(token)
