"""CTC decoders against brute force, streaming against offline, and the vocabulary.

The brute-force references enumerate every path of tiny inputs (T <= 5 frames, C <= 3
classes): the most probable path for greedy decoding, and each labelling's exact
probability (the sum over all paths that collapse to it) for the prefix beam search.
Property tests run a bounded number of examples with ``derandomize=True`` and
``database=None`` (the same examples every run; nothing written into the repository).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelstm.ctc import (
    BeamStreamDecoder,
    Decoded,
    GreedyStreamDecoder,
    StreamDecoder,
    Vocabulary,
    greedy_decode,
    greedy_decode_batch,
    log_softmax,
    prefix_beam_search,
)
from edgelstm.errors import InvalidInputError

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """The labelling a path writes: repeats merged, then blanks dropped."""
    merged = [symbol for at, symbol in enumerate(path) if at == 0 or symbol != path[at - 1]]
    return tuple(symbol for symbol in merged if symbol != blank)


def _path_log_probs(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    time, classes = log_probs.shape
    return {
        path: float(sum(log_probs[t, symbol] for t, symbol in enumerate(path)))
        for path in itertools.product(range(classes), repeat=time)
    }


def _labelling_log_probs(log_probs: np.ndarray, blank: int) -> dict[tuple[int, ...], float]:
    """Exact log-probability of every labelling: log-sum-exp over the paths writing it."""
    labellings: dict[tuple[int, ...], float] = {}
    for path, score in _path_log_probs(log_probs).items():
        labelling = _collapse(path, blank)
        labellings[labelling] = float(np.logaddexp(labellings.get(labelling, -np.inf), score))
    return labellings


@st.composite
def _small_logits(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    time, classes = draw(st.integers(1, 5)), draw(st.integers(2, 3))
    seed, scale = draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.5, 2.0, 5.0]))
    logits = np.random.default_rng(seed).normal(scale=scale, size=(time, classes))
    return logits, draw(st.integers(0, classes - 1))


@st.composite
def _chunked_logits(draw: st.DrawFn) -> tuple[np.ndarray, list[int], int]:
    """Random logits of up to 40 frames, cut points of a chunking, and the blank."""
    time, classes = draw(st.integers(0, 40)), draw(st.integers(2, 5))
    seed, scale = draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.5, 3.0, 8.0]))
    logits = np.random.default_rng(seed).normal(scale=scale, size=(time, classes))
    cuts = sorted(draw(st.lists(st.integers(0, time), max_size=8)))
    return logits, cuts, draw(st.integers(0, classes - 1))


# ============================================================================================
# greedy


@given(_small_logits())
@PROPERTY
def test_greedy_is_the_most_probable_path_collapsed(case: tuple[np.ndarray, int]) -> None:
    logits, blank = case
    paths = _path_log_probs(log_softmax(logits))
    best_path = max(paths, key=paths.__getitem__)
    decoded = greedy_decode(logits, blank)
    assert decoded.tokens == _collapse(best_path, blank)
    assert np.isclose(decoded.log_prob, paths[best_path])
    # Each token is stamped with the first frame of its run in the best path.
    for token, frame in zip(decoded.tokens, decoded.frames, strict=True):
        assert best_path[frame] == token and (frame == 0 or best_path[frame - 1] != token)


def test_greedy_collapses_repeats_and_keeps_tokens_split_by_blank() -> None:
    blank = 2
    path = [0, 0, 2, 0, 1, 1, 2, 2, 1]
    logits = np.eye(3)[path] * 10
    decoded = greedy_decode(logits, blank)
    assert decoded == Decoded((0, 0, 1, 1), (0, 3, 4, 8), decoded.log_prob)
    assert decoded.log_prob == pytest.approx(len(path) * float(log_softmax(np.eye(3)[0] * 10)[0]))


def test_greedy_of_no_frames_is_empty() -> None:
    assert greedy_decode(np.zeros((0, 4)), blank=3) == Decoded((), (), 0.0)


def test_greedy_batch_reads_only_each_rows_length() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(3, 7, 4))
    lengths = np.array([7, 3, 0])
    logits[1, 3:] = np.nan  # padding may hold anything
    decoded = greedy_decode_batch(logits, lengths, blank=3)
    for row, length in enumerate(lengths):
        expected = greedy_decode(logits[row, :length], blank=3)
        assert decoded[row].tokens == expected.tokens
        assert decoded[row].frames == expected.frames
        assert decoded[row].log_prob == pytest.approx(expected.log_prob)
    whole = greedy_decode_batch(logits[:1], None, blank=3)[0]
    assert whole.tokens == greedy_decode(logits[0], 3).tokens


def test_log_softmax_is_stable_for_large_logits() -> None:
    result = log_softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]]))
    assert np.all(np.isfinite(result[:, :2]))
    assert np.allclose(np.exp(result).sum(axis=-1), 1.0)
    assert result[0, 0] == pytest.approx(np.log(0.5))


@pytest.mark.parametrize(
    ("logits", "blank", "message"),
    [
        (np.zeros(3), 0, "must be \\[time, classes\\]"),
        (np.zeros((2, 3)), 3, "blank 3 is not one of the 3 classes"),
        (np.zeros((2, 3)), -1, "blank -1"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), 1, "at frame 1 hold NaN"),
        (np.array([[0.0, np.inf]]), 1, "at frame 0 hold NaN, \\+inf"),
        (np.full((1, 2), -np.inf), 1, "no finite value"),
    ],
)
def test_decoders_refuse_bad_logits(logits: np.ndarray, blank: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        greedy_decode(logits, blank)
    with pytest.raises(InvalidInputError, match=message):
        prefix_beam_search(logits, blank)


def test_greedy_batch_refuses_bad_lengths() -> None:
    with pytest.raises(InvalidInputError, match=r"lengths must lie in 0\.\.4"):
        greedy_decode_batch(np.zeros((2, 4, 3)), np.array([5, 1]), blank=2)
    with pytest.raises(InvalidInputError, match="lengths must be 2 integers"):
        greedy_decode_batch(np.zeros((2, 4, 3)), np.array([1.0, 2.0]), blank=2)
    with pytest.raises(InvalidInputError, match="NaN"):
        greedy_decode_batch(np.full((1, 2, 3), np.nan), None, blank=2)


# ============================================================================================
# prefix beam search


@given(_small_logits())
@PROPERTY
def test_wide_beam_finds_the_most_probable_labelling(case: tuple[np.ndarray, int]) -> None:
    logits, blank = case
    time, classes = logits.shape
    labellings = _labelling_log_probs(log_softmax(logits), blank)
    best = max(labellings.values())
    decoded = prefix_beam_search(logits, blank, beam_width=classes**time)
    assert np.isclose(labellings[decoded.tokens], best)
    assert np.isclose(decoded.log_prob, labellings[decoded.tokens])
    assert len(decoded.frames) == len(decoded.tokens)
    assert list(decoded.frames) == sorted(set(decoded.frames))


def test_beam_beats_the_best_path_when_paths_spread() -> None:
    probs = np.array([[0.4, 0.6], [0.4, 0.6]])  # blank 1: best path "blank blank" writes ""
    assert greedy_decode(np.log(probs), blank=1).tokens == ()
    decoded = prefix_beam_search(np.log(probs), blank=1)
    assert decoded.tokens == (0,)
    assert decoded.log_prob == pytest.approx(np.log(0.64))


def test_prune_stops_unlikely_tokens_from_growing() -> None:
    probs = np.array([[0.3, 0.7], [0.3, 0.7]])  # "0": 0.51 against "": 0.49
    assert prefix_beam_search(np.log(probs), blank=1).tokens == (0,)
    pruned = prefix_beam_search(np.log(probs), blank=1, prune=0.4)
    assert pruned.tokens == ()
    assert pruned.log_prob == pytest.approx(np.log(0.49))


def test_prune_keeps_the_last_token_alive() -> None:
    # Frame 0 writes "0" surely; later frames give token 0 less than the prune threshold, but
    # the paths repeating it ("0 0 b", "0 0 0") still count: "0" keeps 1 - P("0 b 0") = 0.91,
    # not the 0.81 + 0.09 of the blank-only continuations.
    probs = np.array([[1.0, 0.0, 0.0], [0.1, 0.0, 0.9], [0.1, 0.0, 0.9]])
    decoded = prefix_beam_search(np.log(probs + 1e-300), blank=2, prune=0.5)
    assert decoded.tokens == (0,)
    assert decoded.log_prob == pytest.approx(np.log(0.91))


def test_beam_frames_follow_the_probable_paths_like_greedy() -> None:
    # A confident model: the beam's stamps are the first frames of each token's run.
    path = [2, 2, 0, 0, 2, 1, 1, 2, 2, 0, 2]
    logits = np.eye(3)[path] * 6
    greedy = greedy_decode(logits, blank=2)
    for width in (1, 4, 16):
        decoded = prefix_beam_search(logits, blank=2, beam_width=width)
        assert (decoded.tokens, decoded.frames) == (greedy.tokens, greedy.frames)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_width": 0}, "beam width must be an integer >= 1, got 0"),
        ({"beam_width": 2.5}, "beam width must be an integer"),
        ({"prune": 1.0}, "prune must be a probability in \\[0, 1\\)"),
        ({"prune": -0.1}, "prune must be"),
    ],
)
def test_beam_refuses_bad_options(options: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        prefix_beam_search(np.zeros((2, 3)), 2, **options)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=message):
        BeamStreamDecoder(2, **options)  # type: ignore[arg-type]


# ============================================================================================
# streaming


def _chunks(logits: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    return np.split(logits, cuts)


@given(_chunked_logits())
@PROPERTY
def test_greedy_stream_equals_offline_for_any_chunking(
    case: tuple[np.ndarray, list[int], int],
) -> None:
    logits, cuts, blank = case
    decoder = GreedyStreamDecoder(blank)
    reported = [pair for chunk in _chunks(logits, cuts) for pair in decoder.feed(chunk)]
    reported += decoder.finish()
    offline = greedy_decode(logits, blank)
    assert reported == list(zip(offline.tokens, offline.frames, strict=True))
    assert (decoder.tokens, decoder.frames) == (offline.tokens, offline.frames)
    assert decoder.partial == offline.tokens
    assert decoder.frames_seen == len(logits)
    assert np.isclose(decoder.result().log_prob, offline.log_prob)


@given(_chunked_logits(), st.sampled_from([1, 3, 8]), st.sampled_from([0.0, 0.05]))
@PROPERTY
def test_beam_stream_equals_offline_and_never_retracts(
    case: tuple[np.ndarray, list[int], int], beam_width: int, prune: float
) -> None:
    logits, cuts, blank = case
    offline = prefix_beam_search(logits, blank, beam_width=beam_width, prune=prune)
    final_pairs = list(zip(offline.tokens, offline.frames, strict=True))
    decoder = BeamStreamDecoder(blank, beam_width=beam_width, prune=prune)
    reported: list[tuple[int, int]] = []
    for chunk in _chunks(logits, cuts):
        reported += decoder.feed(chunk)
        # What was reported final is never taken back: it starts the offline answer, and the
        # best hypothesis so far starts with it too.
        assert reported == final_pairs[: len(reported)]
        assert decoder.partial[: len(reported)] == tuple(token for token, _ in reported)
    reported += decoder.finish()
    assert reported == final_pairs
    assert decoder.tokens == offline.tokens
    assert np.isclose(decoder.result().log_prob, offline.log_prob)
    assert decoder.finish() == []


def test_beam_stream_reports_tokens_before_the_end_when_the_beam_agrees() -> None:
    path = [0, 0, 2, 1, 2, 2, 2, 2]
    decoder = BeamStreamDecoder(blank=2, beam_width=4)
    first = decoder.feed(np.eye(3)[path[:5]] * 8)
    # Every hypothesis agrees on "0" once later tokens are written after it.
    assert first[:1] == [(0, 0)]
    rest = decoder.feed(np.eye(3)[path[5:]] * 8) + decoder.finish()
    assert first + rest == [(0, 0), (1, 3)]


@pytest.mark.parametrize("make", [lambda: GreedyStreamDecoder(2), lambda: BeamStreamDecoder(2)])
def test_stream_decoders_reset_and_check_chunks(make: Callable[[], StreamDecoder]) -> None:
    decoder = make()
    decoder.feed(np.eye(3)[[0, 2, 1]] * 8)
    assert decoder.frames_seen == 3
    with pytest.raises(InvalidInputError, match="4 classes but the stream's earlier chunks had 3"):
        decoder.feed(np.zeros((1, 4)))
    assert decoder.feed(np.zeros((0, 3))) == []
    decoder.reset()
    assert (decoder.tokens, decoder.frames_seen) == ((), 0)
    assert decoder.feed(np.eye(3)[[1, 1]] * 8) + decoder.finish() == [(1, 0)]


def test_beam_stream_refuses_feeding_after_finish() -> None:
    decoder = BeamStreamDecoder(blank=1)
    decoder.finish()
    with pytest.raises(InvalidInputError, match="call reset\\(\\)"):
        decoder.feed(np.zeros((1, 2)))


# ============================================================================================
# vocabulary


def test_vocabulary_from_texts_is_the_sorted_character_set() -> None:
    vocabulary = Vocabulary.from_texts(np.array(["31", "2a", ""]))
    assert vocabulary.tokens == ("1", "2", "3", "a")
    assert (vocabulary.blank, vocabulary.size) == (4, 5)
    assert vocabulary.encode("a13", where="y[0]") == (3, 0, 2)


def test_vocabulary_tokens_are_matched_longest_first() -> None:
    vocabulary = Vocabulary.from_texts(["ignored"], tokens=["a", "ab", "b", "abc", "a"])
    assert vocabulary.tokens == ("a", "ab", "b", "abc")
    assert vocabulary.encode("abcab", where="y[0]") == (3, 1)
    assert vocabulary.encode("aab", where="y[0]") == (0, 1)
    assert vocabulary.encode("abb", where="y[0]") == (1, 2)
    assert Vocabulary.from_texts(["ba"], tokens=None).tokens == ("a", "b")


@pytest.mark.parametrize("text", ["", "a", "abcab", "bbaab", "cabbage"])
def test_vocabulary_decode_inverts_encode(text: str) -> None:
    vocabulary = Vocabulary(("a", "ab", "b", "c", "ge"))
    indices = vocabulary.encode(text, where="y[0]")
    assert vocabulary.decode(indices) == text
    # The blank writes nothing, wherever the decoder leaves it.
    assert vocabulary.decode([vocabulary.blank, *indices, vocabulary.blank]) == text


def test_vocabulary_names_the_label_and_the_unknown_character() -> None:
    vocabulary = Vocabulary.from_texts(["abc"])
    message = (
        "test.npz: y[17]: character 'x' (position 3) is not in the alphabet (a, b, c); "
        "the model can only write tokens it was trained on"
    )
    with pytest.raises(InvalidInputError) as caught:
        vocabulary.encode("abcx", where="test.npz: y[17]")
    assert str(caught.value) == message
    with pytest.raises(InvalidInputError, match="character ' ' \\(position 1\\)"):
        vocabulary.encode("a b", where="y[0]")
    long = Vocabulary(tuple(chr(ord("A") + i) for i in range(26)))
    with pytest.raises(InvalidInputError, match=r"\(A, B, .*, T \.\.\.\)"):
        long.encode("z", where="y[0]")


def test_vocabulary_refuses_empty_repeated_and_out_of_range() -> None:
    with pytest.raises(InvalidInputError, match=r"train\.npz: y: no alphabet"):
        Vocabulary.from_texts(["", ""], where="train.npz: y")
    with pytest.raises(InvalidInputError, match="alphabet is empty"):
        Vocabulary(())
    with pytest.raises(InvalidInputError, match="tokens repeat: a"):
        Vocabulary(("a", "b", "a"))
    with pytest.raises(InvalidInputError, match="empty string"):
        Vocabulary(("a", ""))
    with pytest.raises(InvalidInputError, match="token index 5 is outside"):
        Vocabulary(("a", "b")).decode([0, 5])
