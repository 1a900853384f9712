"""Sequence labelling: cut, normalise and measure per-frame tagging and CTC transcription.

The counterpart of :mod:`edgelstm.tasks` for the two tasks whose model writes one output per
recurrent step and whose labels are themselves sequences:

- ``tag``: one class per frame; splits hold ``y`` ``[n, T]`` with ``-1`` at padding and at
  unlabelled frames, which are neither trained on nor scored.
- ``transcribe``: the token string a sequence spells, with no alignment; splits hold ``y``
  ``[n, L]`` token indices padded with ``-1``. The model's last output is the CTC blank.

Training, export checks, the quantization gate and ``benchmark --eval`` all measure through
:func:`labelling_metrics`, so a checkpoint and its exports are scored by the same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgelstm.ctc import Vocabulary, greedy_decode_batch, prefix_beam_search
from edgelstm.data.types import TaggedSequences, Transcripts
from edgelstm.errors import InvalidInputError
from edgelstm.sequence_metrics import exact_match, frame_metrics, token_error_rate
from edgelstm.tasks import PreparedData, Split, fit_normalization, normalize

#: Beam width of the beam-search line in a transcription's metrics (greedy is the headline).
METRICS_BEAM_WIDTH = 8
#: Sequences whose beam search the metrics run: beam search is Python, greedy is vectorised,
#: and the comparison needs a sample, not every test string.
METRICS_BEAM_SAMPLE = 300


def pad_labels(labels: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Stack int label rows of different lengths into ``[n, width]``, padding with ``-1``."""
    width = max((len(row) for row in labels), default=0) if width is None else width
    out = np.full((len(labels), width), -1, dtype=np.int64)
    for i, row in enumerate(labels):
        out[i, : len(row)] = row
    return out


def unpad_labels(y: np.ndarray, lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """Rows of ``y`` ``[n, T]`` cut to ``lengths`` (or, for token rows, to their non-padding)."""
    if lengths is not None:
        return [y[i, : int(n)] for i, n in enumerate(lengths.tolist())]
    return [row[row >= 0] for row in y]


def output_lengths(lengths: np.ndarray, stride: int) -> np.ndarray:
    """Recurrent steps per sequence: a conv front end of stride ``s`` reads ceil(L / s)."""
    return (np.asarray(lengths, dtype=np.int64) - 1) // max(stride, 1) + 1


def _require_sequences(count: int, source: str, test_given: bool) -> None:
    """Refuse data too small to split: training and validation need a sequence each."""
    if count < 2:
        held = "" if test_given else " after holding out the test split"
        raise InvalidInputError(
            f"{source or 'the training data'}: {count} training sequence(s){held}; training "
            "needs at least 2 (one held out for early stopping): give more sequences, e.g. "
            "an .npz of many, or several recordings"
        )


def _holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, holdout), about ``fraction`` held out at random (at least one each)."""
    order = rng.permutation(n)
    k = min(max(round(n * fraction), 1), n - 1) if n > 1 else 0
    return np.sort(order[k:]), np.sort(order[:k])


def _normalised_split(
    sequences: Sequence[np.ndarray], y: np.ndarray, num_features: int, norm: Any
) -> Split:
    lengths = np.array([s.shape[0] for s in sequences], dtype=np.int64)
    x = np.zeros((len(sequences), int(lengths.max(initial=1)), num_features), dtype=np.float32)
    for i, s in enumerate(sequences):
        x[i, : s.shape[0]] = normalize(s, norm)
    return Split(x=x, y=y, lengths=lengths)


def _check_test_features(train_features: int, test_features: int) -> None:
    if test_features != train_features:
        raise InvalidInputError(
            f"test data has {test_features} features, training data {train_features}; "
            "they must match"
        )


def prepare_tag(
    train: TaggedSequences,
    test: TaggedSequences | None,
    *,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
) -> PreparedData:
    """Normalise and split per-frame labelled sequences (whole sequences go to one split)."""
    if train.frame_labels is None:
        raise InvalidInputError(f"{train.source or 'the training data'}: tagging needs y labels")
    classes = train.class_names or tuple(
        str(i) for i in range(int(max(int(r.max(initial=-1)) for r in train.frame_labels)) + 1)
    )
    if len(classes) < 2:
        raise InvalidInputError(
            f"{train.source or 'the training data'}: tagging needs at least 2 classes, "
            f"the labels hold {len(classes)}"
        )
    sequences, labels = list(train.sequences), list(train.frame_labels)
    if test is None:
        keep, hold = _holdout(len(sequences), test_fraction, rng)
        test_seqs, test_labels = [sequences[i] for i in hold], [labels[i] for i in hold]
        sequences, labels = [sequences[i] for i in keep], [labels[i] for i in keep]
    else:
        if test.frame_labels is None:
            raise InvalidInputError(f"{test.source or 'the test data'}: has no y labels to score")
        _check_test_features(train.num_features, test.num_features)
        test_seqs, test_labels = list(test.sequences), _map_test_classes(test, classes)
    _require_sequences(len(sequences), train.source, test is not None)
    keep, hold = _holdout(len(sequences), val_fraction, rng)
    norm = fit_normalization(np.concatenate([sequences[i] for i in keep], axis=0))

    def split(
        idx: Sequence[int] | np.ndarray, seqs: list[np.ndarray], labs: list[np.ndarray]
    ) -> Split:
        chosen = [seqs[i] for i in idx]
        return _normalised_split(
            chosen,
            pad_labels([labs[i] for i in idx], max(len(s) for s in chosen)),
            train.num_features,
            norm,
        )

    return PreparedData(
        task="tag",
        train=split(keep, sequences, labels),
        val=split(hold, sequences, labels),
        test=split(range(len(test_seqs)), test_seqs, test_labels),
        normalization=norm,
        feature_names=train.feature_names,
        class_labels=classes,
        details={"variable_length": len({len(s) for s in train.sequences}) > 1},
    )


def _map_test_classes(test: TaggedSequences, classes: tuple[str, ...]) -> list[np.ndarray]:
    """Test frame labels as training class indices; a class training never saw is an error."""
    assert test.frame_labels is not None
    names = test.class_names or classes
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - set(classes))
    mapped = []
    for i, row in enumerate(test.frame_labels):
        used = {names[k] for k in np.unique(row[row >= 0]).tolist()}
        missing = sorted(used & set(unknown))
        if missing:
            raise InvalidInputError(
                f"{test.source or 'test data'}: sequence {i} is labelled {missing[0]!r}, a class "
                f"the training data never uses (classes: {', '.join(classes)})"
            )
        lookup = np.array([index.get(n, -1) for n in names] + [-1], dtype=np.int64)
        mapped.append(lookup[row])  # -1 indexes the trailing -1: unlabelled stays unlabelled
    return mapped


def prepare_transcribe(
    train: Transcripts,
    test: Transcripts | None,
    *,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
) -> PreparedData:
    """Build the vocabulary from the training texts, encode every text, normalise, split."""
    if train.texts is None:
        raise InvalidInputError(
            f"{train.source or 'the training data'}: transcription needs y texts"
        )
    vocab = Vocabulary.from_texts(train.texts, train.tokens)
    where = train.source or "training data"
    sequences = list(train.sequences)
    encoded = [vocab.encode(t, where=f"{where}: y[{i}]") for i, t in enumerate(train.texts)]
    texts = list(train.texts)
    if test is None:
        keep, hold = _holdout(len(sequences), test_fraction, rng)
        test_seqs, test_encoded = [sequences[i] for i in hold], [encoded[i] for i in hold]
        sequences, encoded = [sequences[i] for i in keep], [encoded[i] for i in keep]
        texts = [texts[i] for i in keep]
    else:
        if test.texts is None:
            raise InvalidInputError(f"{test.source or 'the test data'}: has no y texts to score")
        _check_test_features(train.num_features, test.num_features)
        test_where = test.source or "test data"
        test_seqs = list(test.sequences)
        test_encoded = [
            vocab.encode(t, where=f"{test_where}: y[{i}]") for i, t in enumerate(test.texts)
        ]
    _require_sequences(len(sequences), train.source, test is not None)
    keep, hold = _holdout(len(sequences), val_fraction, rng)
    norm = fit_normalization(np.concatenate([sequences[i] for i in keep], axis=0))

    def split(idx: Sequence[int] | np.ndarray, seqs: list[np.ndarray], codes: list[Any]) -> Split:
        y = pad_labels([np.asarray(codes[i], dtype=np.int64) for i in idx])
        return _normalised_split([seqs[i] for i in idx], y, train.num_features, norm)

    common = Counter(texts[i] for i in keep).most_common(1)[0][0]
    return PreparedData(
        task="transcribe",
        train=split(keep, sequences, encoded),
        val=split(hold, sequences, encoded),
        test=split(range(len(test_seqs)), test_seqs, test_encoded),
        normalization=norm,
        feature_names=train.feature_names,
        class_labels=vocab.tokens,
        details={
            "variable_length": True,
            "blank": vocab.blank,
            "tokens_given": bool(train.tokens),
            # The chance line: the error rate of always writing the most frequent string.
            "most_frequent_text": common,
        },
    )


def check_ctc_lengths(split: Split, stride: int, where: str) -> None:
    """Refuse a text CTC cannot align: it needs one step per token and one between repeats."""
    assert split.y is not None and split.lengths is not None
    steps = output_lengths(split.lengths, stride)
    for i, row in enumerate(unpad_labels(split.y)):
        needed = len(row) + int(np.sum(row[1:] == row[:-1]))
        if needed > steps[i]:
            raise InvalidInputError(
                f"{where}: sequence {i} has {len(row)} tokens but only {int(steps[i])} steps "
                f"after the front end (stride {stride}); CTC needs one step per token plus one "
                "between repeats: use a smaller --frontend-stride or drop the sequence"
            )


def labelling_metrics(
    prepared: PreparedData, outputs: np.ndarray, *, stride: int = 1
) -> dict[str, Any]:
    """Test metrics of per-step ``outputs`` ``[n, T', classes]`` on ``prepared.test``.

    tag: frame accuracy, macro F1 over frames and segment F1 (IoU >= 0.5). transcribe:
    token error rate (edit distance) and exact-match accuracy of the greedy decoding, and the
    same for a prefix beam search on a sample, so the two decoders can be compared.
    """
    test = prepared.test
    assert test.y is not None and test.lengths is not None
    if prepared.task == "tag":
        predicted = np.argmax(outputs, axis=-1)
        truth = unpad_labels(test.y, test.lengths)
        guesses = [predicted[i, : len(t)] for i, t in enumerate(truth)]
        result: dict[str, Any] = frame_metrics(truth, guesses)
        result["test_sequences"] = len(test)
        return result
    blank = int(prepared.details.get("blank", len(prepared.class_labels)))
    steps = output_lengths(test.lengths, stride)
    references = [tuple(row.tolist()) for row in unpad_labels(test.y)]
    greedy = [d.tokens for d in greedy_decode_batch(outputs, steps, blank)]
    sample = range(min(len(references), METRICS_BEAM_SAMPLE))
    beam = [
        prefix_beam_search(outputs[i, : int(steps[i])], blank, beam_width=METRICS_BEAM_WIDTH).tokens
        for i in sample
    ]
    sampled_refs = [references[i] for i in sample]
    common = prepared.details.get("most_frequent_text")
    result = {
        "error_rate": token_error_rate(references, greedy),
        "exact_match": exact_match(references, greedy),
        "beam_error_rate": token_error_rate(sampled_refs, beam),
        "greedy_error_rate_on_beam_sample": token_error_rate(
            sampled_refs, [greedy[i] for i in sample]
        ),
        "beam_width": METRICS_BEAM_WIDTH,
        "beam_sample": len(sample),
        "test_sequences": len(test),
    }
    if isinstance(common, str):
        vocab = Vocabulary(tuple(prepared.class_labels))
        constant = vocab.encode(common, where="the most frequent training text")
        result["constant_error_rate"] = token_error_rate(
            references, [tuple(constant)] * len(references)
        )
    return result
