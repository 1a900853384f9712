"""Built-in real datasets, one per task, read from the files aeon's wheel bundles (no network).

The sequence-labelling sets (ActivityStreams, SpeakerTurns, DigitStrings) are composed from
BasicMotions, JapaneseVowels and scikit-learn's handwritten digits with fixed seeds; how is
documented in :mod:`edgelstm.data.labelled_datasets`.

They let ``edgelstm train --dataset NAME`` and the quickstart run end to end on real data
without the user finding a file first. Each name maps to a :class:`DatasetSpec`;
:func:`load_dataset` returns a :class:`DatasetSplit` holding both the training data and the test
data the evaluation uses, so callers need one object.

Example::

    from edgelstm.data.datasets import load_dataset

    split = load_dataset("JapaneseVowels")
    len(split.train), len(split.test)  # (270, 370)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.data.labelled_datasets import (
    ACTIVITY_STREAMS,
    SPEAKER_TURNS,
    StreamRecipe,
    build_digit_strings,
    build_tag_streams,
)
from edgelstm.data.ts import sequence_set_from_aeon
from edgelstm.data.types import SequenceSet, Series, TaggedSequences, Transcripts
from edgelstm.errors import DatasetNotFoundError, InvalidInputError, MissingDependencyError
from edgelstm.extras import missing_dependency

__all__ = [
    "DatasetSpec",
    "DatasetSplit",
    "dataset_names",
    "dataset_table_rows",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
]


@dataclass(frozen=True)
class DatasetSpec:
    """What a built-in dataset is: its name, the task it serves and where it comes from."""

    name: str
    task: str
    description: str
    source: str
    domain: str


@dataclass(frozen=True)
class DatasetSplit:
    """A loaded built-in dataset: training data, test data and where evaluation starts.

    ``test_start`` indexes into ``test`` (a :class:`Series`) where the evaluated part begins:
    for Airline the test series is the whole 144 months and forecasts are scored on windows
    whose targets fall in months 120..143, so the model sees the history it needs; for
    KDD-TSAD_135 the first 1200 test points are the training data. None for classification
    and sequence labelling, where every test sequence is evaluated.
    """

    spec: DatasetSpec
    train: SequenceSet | Series | TaggedSequences | Transcripts
    test: SequenceSet | Series | TaggedSequences | Transcripts
    test_start: int | None

    @property
    def sizes(self) -> dict[str, str]:
        """Human-readable sizes for tables: ``train``, ``test``, ``length``, ``features``,
        ``classes`` (for transcription: the tokens, the distinct characters of the training
        texts unless the data lists multi-character tokens)."""
        if not isinstance(self.train, Series) and not isinstance(self.test, Series):
            lengths = np.concatenate([self.train.lengths, self.test.lengths])
            low, high = int(lengths.min()), int(lengths.max())
            return {
                "train": f"{len(self.train)} sequences",
                "test": f"{len(self.test)} sequences",
                "length": str(low) if low == high else f"{low}-{high}",
                "features": str(self.train.num_features),
                "classes": str(_class_count(self.train)),
            }
        start = self.test_start or 0
        evaluated = len(self.test) - start
        return {
            "train": f"{len(self.train)} steps",
            "test": f"{evaluated} steps scored (of {len(self.test)})",
            "length": str(len(self.test)),
            "features": str(self.train.num_features),
            "classes": "",
        }


def _class_count(data: SequenceSet | TaggedSequences | Transcripts) -> int:
    """Classes a model trained on ``data`` tells apart (tokens, for transcription)."""
    if isinstance(data, SequenceSet):
        return len(np.unique(data.labels)) if data.labels is not None else 0
    if isinstance(data, TaggedSequences):
        return len(data.class_names)
    if data.tokens:
        return len(data.tokens)
    return len(set("".join(data.texts or ())))


_SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="JapaneseVowels",
        task="classify",
        description=(
            "9 male speakers saying the vowel pair /ae/; 12 LPC cepstral channels, variable "
            "length 7-29; predict the speaker"
        ),
        source="UEA archive via aeon (JapaneseVowels_TRAIN.ts / _TEST.ts)",
        domain="speech",
    ),
    DatasetSpec(
        name="BasicMotions",
        task="classify",
        description=(
            "smartwatch accelerometer and gyroscope (6 channels, length 100); 4 activities: "
            "standing, walking, running, badminton"
        ),
        source="UEA archive via aeon (BasicMotions_TRAIN.ts / _TEST.ts)",
        domain="motion sensors",
    ),
    DatasetSpec(
        name="ACSF1",
        task="classify",
        description=(
            "power consumption of home appliances (ACS-F1 signature database), univariate, "
            "length 1460, long idle stretches with short bursts; 10 appliance types, "
            "100 train / 100 test sequences"
        ),
        source="UCR archive via aeon's bundled files (ACSF1_TRAIN.ts / _TEST.ts)",
        domain="energy",
    ),
    DatasetSpec(
        name="OSULeaf",
        task="classify",
        description=(
            "leaf outlines traced from segmented images as one-dimensional series, univariate, "
            "length 427; 6 maple and oak species, 200 train / 242 test, classes unbalanced"
        ),
        source="UCR archive via aeon's bundled files (OSULeaf_TRAIN.ts / _TEST.ts)",
        domain="image outlines",
    ),
    DatasetSpec(
        name="ItalyPowerDemand",
        task="classify",
        description=(
            "Italian electrical power demand, 24 hourly values per day, univariate; tell days "
            "of October-March from April-September; only 67 train / 1029 test sequences"
        ),
        source="UCR archive via aeon's bundled files (ItalyPowerDemand_TRAIN.ts / _TEST.ts)",
        domain="energy",
    ),
    DatasetSpec(
        name="Airline",
        task="forecast",
        description=(
            "monthly international airline passengers 1949-1960 (Box & Jenkins), 144 points, "
            "univariate; train on the first 120 months, forecast the last 24"
        ),
        source="aeon load_airline()",
        domain="transport",
    ),
    DatasetSpec(
        name="KDD-TSAD_135",
        task="anomaly",
        description=(
            "UCR anomaly archive #135 InternalBleeding16, heart rate of a patient with internal "
            "bleeding; 1200 normal training points, 7501 test points with one labelled anomaly"
        ),
        source="UCR anomaly archive (KDD Cup 2021) via aeon load_kdd_tsad_135()",
        domain="medical",
    ),
    DatasetSpec(
        name="ActivityStreams",
        task="tag",
        description=(
            "BasicMotions recordings strung into streams (seed 24): 3-6 recordings each, "
            "cropped to 40-100 frames, no activity twice in a row; 6 channels; label every "
            "frame with its activity (4 classes); 200 train streams from TRAIN recordings, "
            "100 test streams from TEST recordings"
        ),
        source="BasicMotions (UEA archive via aeon), composed by edgelstm (seed 24)",
        domain="motion sensors",
    ),
    DatasetSpec(
        name="SpeakerTurns",
        task="tag",
        description=(
            "JapaneseVowels utterances strung into streams (seed 24): 3-8 whole utterances "
            "each, no speaker twice in a row; 12 cepstral channels; label every frame with its "
            "speaker (9 classes); 200 train streams from TRAIN, 100 test streams from TEST"
        ),
        source="JapaneseVowels (UEA archive via aeon), composed by edgelstm (seed 24)",
        domain="speech",
    ),
    DatasetSpec(
        name="DigitStrings",
        task="transcribe",
        description=(
            "strings of 3-6 real handwritten 8x8 digits read column by column (8 features "
            "per frame, 0-3 blank frames between digits); transcribe the digits; images split "
            "70/30 before composing (seed 24), 3000 train / 1000 test strings"
        ),
        source="scikit-learn load_digits(), composed by edgelstm (seed 24)",
        domain="handwriting",
    ),
)

_JAPANESE_VOWELS_NAMES = tuple(f"cepstrum_{i}" for i in range(12))
_BASIC_MOTIONS_NAMES = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
_UNIVARIATE_NAMES = {"ACSF1": ("power",), "OSULeaf": ("outline",), "ItalyPowerDemand": ("demand",)}
_AIRLINE_TRAIN_MONTHS = 120
_KDD_TRAIN_POINTS = 1200


def list_datasets() -> list[DatasetSpec]:
    """All built-in datasets, in a stable order (classification, forecasting, anomaly,
    tagging, transcription)."""
    return list(_SPECS)


def dataset_names() -> list[str]:
    """The names :func:`load_dataset` accepts, with their canonical spelling."""
    return [spec.name for spec in _SPECS]


def get_dataset_spec(name: str) -> DatasetSpec:
    """Find a built-in dataset by name, ignoring case.

    Unknown names raise :class:`DatasetNotFoundError` listing the valid names, with a
    "did you mean" when one is close (``basicmotion`` → ``BasicMotions``).

    Example::

        get_dataset_spec("japanesevowels").task  # "classify"
    """
    by_lower = {spec.name.lower(): spec for spec in _SPECS}
    spec = by_lower.get(name.strip().lower())
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=1, cutoff=0.6)
    hint = f"did you mean {by_lower[close[0]].name!r}? " if close else ""
    raise DatasetNotFoundError(
        f"unknown dataset {name!r}; {hint}built-in datasets: {', '.join(dataset_names())} "
        "(see `edgelstm train --list-datasets`)"
    )


def load_dataset(name: str) -> DatasetSplit:
    """Load a built-in dataset's train and test data from aeon's bundled files.

    Classification datasets give :class:`SequenceSet` pairs with string class labels;
    Airline and KDD-TSAD_135 give :class:`Series` pairs plus ``test_start`` (see
    :class:`DatasetSplit`). Needs aeon (``pip install 'edgelstm[data]'``); no network.

    Example::

        split = load_dataset("Airline")
        split.train.values.shape, split.test_start  # ((120, 1), 120)
    """
    spec = get_dataset_spec(name)
    return _LOADERS[spec.name](spec)


def dataset_table_rows() -> list[dict[str, str]]:
    """One row per dataset for ``edgelstm train --list-datasets``.

    Keys: ``name``, ``task``, ``domain``, ``train``, ``test``, ``length``, ``features``,
    ``source``. Sizes come from loading the data (a second or two for all of them after
    aeon is imported), so the table cannot drift from what training sees.
    """
    rows: list[dict[str, str]] = []
    for spec in _SPECS:
        sizes = load_dataset(spec.name).sizes
        rows.append(
            {
                "name": spec.name,
                "task": spec.task,
                "domain": spec.domain,
                "train": sizes["train"],
                "test": sizes["test"],
                "length": sizes["length"],
                "features": sizes["features"],
                "source": spec.source,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# loaders


def _aeon_datasets() -> Any:
    """Import ``aeon.datasets`` lazily: it takes seconds and is an optional extra."""
    try:
        import aeon.datasets
    except ImportError as exc:
        raise missing_dependency(exc, "loading a built-in dataset") from exc
    return aeon.datasets


def _classification(
    spec: DatasetSpec, loader_name: str, feature_names: tuple[str, ...]
) -> DatasetSplit:
    loader = getattr(_aeon_datasets(), loader_name)
    parts: list[SequenceSet] = []
    for split in ("train", "test"):
        X, y = loader(split=split)
        # Same conversion as user .ts files, so built-in and user data behave identically.
        data = sequence_set_from_aeon(X, y, Path(f"<aeon {spec.name} {split}>"))
        if data.num_features != len(feature_names) or data.labels is None:
            raise InvalidInputError(
                f"aeon's {spec.name} {split} data has {data.num_features} channels "
                f"(expected {len(feature_names)}) or no labels; this aeon version bundles a "
                "different file: report it, and use --data with your own copy meanwhile"
            )
        parts.append(replace(data, feature_names=feature_names))
    return DatasetSplit(spec=spec, train=parts[0], test=parts[1], test_start=None)


def _load_japanese_vowels(spec: DatasetSpec) -> DatasetSplit:
    return _classification(spec, "load_japanese_vowels", _JAPANESE_VOWELS_NAMES)


def _load_basic_motions(spec: DatasetSpec) -> DatasetSplit:
    return _classification(spec, "load_basic_motions", _BASIC_MOTIONS_NAMES)


def _bundled_ts(spec: DatasetSpec) -> DatasetSplit:
    """A classification set read straight from the ``.ts`` files in aeon's package data.

    aeon 1.6 deprecates its ``load_acsf1``/``load_osuleaf`` functions (they warn) and plans to
    drop those two bundled files in 1.7; reading the files through its ``.ts`` parser works
    for as long as they ship, and a missing file says what to do instead.
    """
    aeon_datasets = _aeon_datasets()
    folder = Path(aeon_datasets.__file__).parent / "data" / spec.name
    feature_names = _UNIVARIATE_NAMES[spec.name]
    parts: list[SequenceSet] = []
    for split in ("TRAIN", "TEST"):
        path = folder / f"{spec.name}_{split}.ts"
        if not path.is_file():
            import aeon

            raise MissingDependencyError(
                f"aeon {aeon.__version__} does not bundle {spec.name} ({path} is missing); "
                "install an aeon that does (pip install 'aeon>=1.0,<1.7'), or download "
                f"{spec.name}_TRAIN.ts and _TEST.ts from timeseriesclassification.com and "
                "train with --data/--test"
            )
        X, y = aeon_datasets.load_from_ts_file(str(path))
        data = sequence_set_from_aeon(X, y, path)
        if data.num_features != len(feature_names) or data.labels is None:
            raise InvalidInputError(
                f"{path} has {data.num_features} channels (expected {len(feature_names)}) or "
                "no labels; this aeon version bundles a different file: report it, and use "
                "--data with your own copy meanwhile"
            )
        parts.append(replace(data, feature_names=feature_names))
    return DatasetSplit(spec=spec, train=parts[0], test=parts[1], test_start=None)


def _column(values: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1, 1))


def _load_airline(spec: DatasetSpec) -> DatasetSplit:
    series = _column(_aeon_datasets().load_airline())
    names = ("passengers",)
    return DatasetSplit(
        spec=spec,
        train=Series(values=series[:_AIRLINE_TRAIN_MONTHS].copy(), feature_names=names),
        test=Series(values=series, feature_names=names),
        test_start=_AIRLINE_TRAIN_MONTHS,
    )


def _load_kdd_tsad_135(spec: DatasetSpec) -> DatasetSplit:
    aeon_datasets = _aeon_datasets()
    train_x, _ = aeon_datasets.load_kdd_tsad_135("train")
    test_x, test_y = aeon_datasets.load_kdd_tsad_135("test")
    train = _column(train_x)
    names = ("heart_rate",)
    return DatasetSplit(
        spec=spec,
        # The training part is normal by construction (semi-supervised setting): all zeros.
        train=Series(
            values=train, feature_names=names, labels=np.zeros(len(train), dtype=np.int64)
        ),
        test=Series(
            values=_column(test_x),
            feature_names=names,
            labels=np.asarray(test_y, dtype=np.int64),
        ),
        test_start=len(train),
    )


def _load_activity_streams(spec: DatasetSpec) -> DatasetSplit:
    recordings = _load_basic_motions(get_dataset_spec("BasicMotions"))
    return _tag_streams(spec, ACTIVITY_STREAMS, recordings)


def _load_speaker_turns(spec: DatasetSpec) -> DatasetSplit:
    recordings = _load_japanese_vowels(get_dataset_spec("JapaneseVowels"))
    return _tag_streams(spec, SPEAKER_TURNS, recordings)


def _tag_streams(spec: DatasetSpec, recipe: StreamRecipe, recordings: DatasetSplit) -> DatasetSplit:
    # The archive's split is kept: training streams from TRAIN recordings, test from TEST.
    assert isinstance(recordings.train, SequenceSet) and isinstance(recordings.test, SequenceSet)
    train, test = build_tag_streams(recipe, recordings.train, recordings.test)
    return DatasetSplit(spec=spec, train=train, test=test, test_start=None)


def _load_digit_strings(spec: DatasetSpec) -> DatasetSplit:
    train, test = build_digit_strings()
    return DatasetSplit(spec=spec, train=train, test=test, test_start=None)


_LOADERS: dict[str, Callable[[DatasetSpec], DatasetSplit]] = {
    "JapaneseVowels": _load_japanese_vowels,
    "BasicMotions": _load_basic_motions,
    "ACSF1": _bundled_ts,
    "OSULeaf": _bundled_ts,
    "ItalyPowerDemand": _bundled_ts,
    "Airline": _load_airline,
    "KDD-TSAD_135": _load_kdd_tsad_135,
    "ActivityStreams": _load_activity_streams,
    "SpeakerTurns": _load_speaker_turns,
    "DigitStrings": _load_digit_strings,
}
