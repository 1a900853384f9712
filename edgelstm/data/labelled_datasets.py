"""Built-in sequence-labelling datasets, composed from real recordings bundled offline.

Each is built the same way on every call (fixed seeds, numpy's PCG64 ``default_rng``), so
results on it compare from run to run; test data is composed only from the source archive's
test items, so no test recording or image is seen in training.

- **ActivityStreams** (``--task tag``): streams of BasicMotions recordings (smartwatch
  accelerometer and gyroscope, 6 channels, 100 frames each; 4 activities). A stream
  concatenates 3-6 recordings picked at random, each cropped to a random contiguous 40-100
  frames, never two of the same activity in a row (so every segment boundary is a change of
  activity); each frame is labelled with its recording's activity. 200 training streams from
  the 40 TRAIN recordings, 100 test streams from the 40 TEST recordings.
- **SpeakerTurns** (``--task tag``): streams of 3-8 whole JapaneseVowels utterances (12
  cepstral channels, 7-29 frames each), never the same speaker twice in a row; each frame is
  labelled with its speaker (9 classes). 200 training streams from the 270 TRAIN utterances,
  100 test streams from the 370 TEST utterances.
- **DigitStrings** (``--task transcribe``): strings of handwritten digits from
  scikit-learn's ``load_digits`` (1797 real 8x8 images, 16 grey levels). The images are split
  first, by a seeded permutation: 70 % (1258) for training, 30 % (539) for test. A string is
  3-6 images drawn at random from its split's images, read column by column (a frame is one
  image column, its 8 features the pixel rows ``row0..row7``, scaled to 0..1 by /16), with
  0-3 all-zero frames between digits and 0-2 at each end; its text is the digits
  (``"4071"``). 3000 training strings, 1000 test strings.

Seeds: :data:`SEED` (24, the issue that introduced them); a split's draws come from
``default_rng([SEED, 0])`` (train) or ``default_rng([SEED, 1])`` (test), and DigitStrings'
image split from ``default_rng(SEED)``.

The builders take the source data as arguments, so :mod:`edgelstm.data.datasets` (which
loads BasicMotions and JapaneseVowels) registers them without an import circle; the
``compose_*`` functions also return, per composed sequence, the indices of the items it was
built from, so tests can check that test data never reuses a training item.

Example::

    from edgelstm.data.labelled_datasets import build_digit_strings

    train, test = build_digit_strings()
    train.texts[0], train.sequences[0].shape  # ("40712", (47, 8)), for instance
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgelstm.data.types import SequenceSet, TaggedSequences, Transcripts
from edgelstm.errors import InvalidInputError
from edgelstm.extras import missing_dependency

__all__ = [
    "ACTIVITY_STREAMS",
    "DIGIT_FEATURE_NAMES",
    "DIGIT_STRINGS_PER_SPLIT",
    "SEED",
    "SPEAKER_TURNS",
    "StreamRecipe",
    "build_digit_strings",
    "build_tag_streams",
    "compose_digit_strings",
    "compose_tag_streams",
    "digit_image_split",
    "load_digit_images",
]

#: The seed every built-in labelling set is composed with.
SEED = 24
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class StreamRecipe:
    """How a tagging set strings recordings together (bounds are inclusive)."""

    name: str
    #: streams composed per split: (train, test)
    streams: tuple[int, int]
    #: recordings per stream
    pieces: tuple[int, int]
    #: frames kept of each recording, a random contiguous part; None keeps it whole
    crop: tuple[int, int] | None


ACTIVITY_STREAMS = StreamRecipe(
    "ActivityStreams", streams=(200, 100), pieces=(3, 6), crop=(40, 100)
)
SPEAKER_TURNS = StreamRecipe("SpeakerTurns", streams=(200, 100), pieces=(3, 8), crop=None)

#: DigitStrings: strings per split (train, test), digits per string, zero frames between
#: digits and at each end, and the share of images that go to training.
DIGIT_STRINGS_PER_SPLIT = (3000, 1000)
_DIGITS_PER_STRING = (3, 6)
_GAP_BETWEEN = (0, 3)
_GAP_AT_ENDS = (0, 2)
_TRAIN_IMAGE_FRACTION = 0.7
#: load_digits' grey levels run 0..16.
_DIGIT_LEVELS = 16.0
DIGIT_FEATURE_NAMES = tuple(f"row{i}" for i in range(8))


def _split_rng(split: str) -> np.random.Generator:
    """The generator a split draws from: independent of whether the other split is built."""
    return np.random.default_rng([SEED, _SPLITS.index(split)])


def _between(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


# --------------------------------------------------------------------------------------------
# tagging streams


def build_tag_streams(
    recipe: StreamRecipe, train: SequenceSet, test: SequenceSet
) -> tuple[TaggedSequences, TaggedSequences]:
    """The training and test streams of ``recipe`` from a classification set's two splits.

    The class names are the training labels, sorted, so both splits index them alike.
    """
    if train.labels is None or test.labels is None:
        raise InvalidInputError(f"{recipe.name}: its source recordings need class labels")
    class_names = tuple(sorted({str(label) for label in train.labels}))
    unseen = sorted({str(label) for label in test.labels} - set(class_names))
    if unseen:
        raise InvalidInputError(
            f"{recipe.name}: test recordings use class(es) {', '.join(unseen)} that no training "
            "recording has"
        )
    return (
        compose_tag_streams(recipe, train, class_names, "train")[0],
        compose_tag_streams(recipe, test, class_names, "test")[0],
    )


def compose_tag_streams(
    recipe: StreamRecipe, recordings: SequenceSet, class_names: tuple[str, ...], split: str
) -> tuple[TaggedSequences, tuple[np.ndarray, ...]]:
    """One split's streams, and per stream the indices (into ``recordings``) it was cut from."""
    assert recordings.labels is not None
    rng = _split_rng(split)
    index = {name: i for i, name in enumerate(class_names)}
    class_of = np.array([index[str(label)] for label in recordings.labels], dtype=np.int64)
    everything = np.arange(len(recordings))
    streams: list[np.ndarray] = []
    frame_labels: list[np.ndarray] = []
    sources: list[np.ndarray] = []
    for _ in range(recipe.streams[_SPLITS.index(split)]):
        chosen: list[int] = []
        for _ in range(_between(rng, recipe.pieces)):
            # Never the same class twice in a row, so each boundary is a change of class.
            allowed = everything[class_of != class_of[chosen[-1]]] if chosen else everything
            chosen.append(int(rng.choice(allowed if allowed.size else everything)))
        pieces = [_crop(recordings.sequences[r], recipe.crop, rng) for r in chosen]
        streams.append(np.concatenate(pieces))
        frame_labels.append(
            np.concatenate(
                [np.full(len(p), class_of[r]) for p, r in zip(pieces, chosen, strict=True)]
            )
        )
        sources.append(np.array(chosen, dtype=np.int64))
    data = TaggedSequences(
        tuple(streams),
        tuple(frame_labels),
        recordings.feature_names,
        class_names,
        source=f"<{recipe.name} {split}>",
    )
    return data, tuple(sources)


def _crop(
    recording: np.ndarray, crop: tuple[int, int] | None, rng: np.random.Generator
) -> np.ndarray:
    if crop is None:
        return recording
    frames = len(recording)
    length = _between(rng, (min(crop[0], frames), min(crop[1], frames)))
    start = int(rng.integers(0, frames - length + 1))
    return recording[start : start + length]


# --------------------------------------------------------------------------------------------
# digit strings


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: float32 images ``[1797, 8, 8]`` (0..16), int64 digits.

    scikit-learn comes with aeon (the ``data`` extra); it is imported here, not at start-up.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise missing_dependency(exc, "building the DigitStrings dataset") from exc
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise InvalidInputError(
            f"scikit-learn's load_digits gave images of shape {images.shape}, not [n, 8, 8]; "
            "this scikit-learn version differs: report it"
        )
    return images, np.asarray(bunch.target, dtype=np.int64)


def digit_image_split(image_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Image indices (train, test), sorted: a seeded 70/30 split made before any string is
    composed, so no test string holds a training image."""
    order = np.random.default_rng(SEED).permutation(image_count)
    cut = round(image_count * _TRAIN_IMAGE_FRACTION)
    return np.sort(order[:cut]), np.sort(order[cut:])


def build_digit_strings() -> tuple[Transcripts, Transcripts]:
    """DigitStrings' training and test strings (see the module docstring)."""
    images, digits = load_digit_images()
    train_ids, test_ids = digit_image_split(len(images))
    return (
        compose_digit_strings(images, digits, train_ids, "train")[0],
        compose_digit_strings(images, digits, test_ids, "test")[0],
    )


def compose_digit_strings(
    images: np.ndarray, digits: np.ndarray, image_ids: np.ndarray, split: str
) -> tuple[Transcripts, tuple[np.ndarray, ...]]:
    """One split's strings drawn from ``image_ids``, and per string the image ids it shows."""
    rng = _split_rng(split)
    # A frame is one image column (the pen's left-to-right sweep); its features the 8 rows.
    columns = images.transpose(0, 2, 1) / _DIGIT_LEVELS
    width = images.shape[2]
    sequences: list[np.ndarray] = []
    texts: list[str] = []
    sources: list[np.ndarray] = []
    for _ in range(DIGIT_STRINGS_PER_SPLIT[_SPLITS.index(split)]):
        chosen = rng.choice(image_ids, size=_between(rng, _DIGITS_PER_STRING))
        gaps = [_between(rng, _GAP_AT_ENDS)]
        gaps += [_between(rng, _GAP_BETWEEN) for _ in range(len(chosen) - 1)]
        gaps.append(_between(rng, _GAP_AT_ENDS))
        frames = np.zeros((width * len(chosen) + sum(gaps), columns.shape[2]), dtype=np.float32)
        start = gaps[0]
        for image, gap in zip(chosen, gaps[1:], strict=True):
            frames[start : start + width] = columns[image]
            start += width + gap
        sequences.append(frames)
        texts.append("".join(str(int(digits[image])) for image in chosen))
        sources.append(np.asarray(chosen, dtype=np.int64))
    data = Transcripts(
        tuple(sequences), tuple(texts), DIGIT_FEATURE_NAMES, source=f"<DigitStrings {split}>"
    )
    return data, tuple(sources)
