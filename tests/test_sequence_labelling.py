"""``--task tag`` and ``--task transcribe`` end to end: train, export, metadata, run, --stream,
serve, batch and quantize, with tiny models trained once for the module.

The central property: the frames of a sequence sent in any chunking give a stream the rows
of the offline run (tag: each frame's label; transcribe: the greedy text, its tokens and
their frames, and with a beam the text after the stream ends), for a model without a front
end and one with a stride-2 conv front end, whose last chunk may be shorter than a stride.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
from conftest import (
    TAG_CLASSES,
    TINY,
    TINY_KW,
    TRANSCRIBE_ALPHABET,
    CliRunner,
    assert_clean_failure,
    assert_nothing_written,
    single_thread,
    write_tag_npz,
    write_transcribe_npz,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgelstm.errors import InvalidInputError
from edgelstm.exporters import export
from edgelstm.metadata import ModelMetadata, metadata_from_props
from edgelstm.runtimes.batch import BatchOptions, run_batch
from edgelstm.runtimes.model_io.stream_rows import StreamRows, stream_columns
from edgelstm.runtimes.model_io.streaming_session import StreamingSession
from edgelstm.runtimes.ort.artifact import load_artifact
from edgelstm.runtimes.run_files import RunOptions, run_model
from edgelstm.runtimes.serve import create_app
from edgelstm.tasks import DEFAULT_GATES, HEADLINE_METRICS
from edgelstm.training.trainer import train
from edgelstm.version import __version__

if TYPE_CHECKING:
    from starlette.applications import Starlette

Row = dict[str, Any]

#: Enough training for the tiny transcribers to spell the synthetic texts (a model that only
#: writes blanks would make "streamed text equals offline text" hold trivially).
SPELLING_KW: dict[str, Any] = {**TINY_KW, "epochs": 30, "learning_rate": 0.05}
#: A sequence export and a streaming export of one checkpoint agree this closely (float32).
PROB_ATOL = 1e-5
#: Beam width of the beam-search checks.
BEAM = 4
#: Chunk sizes of a stream, in strides (see _chunk_sizes).
STRIDES = st.lists(st.integers(1, 6), min_size=1, max_size=20)
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# --------------------------------------------------------------------------------------------
# tiny models, trained once


@dataclass(frozen=True)
class Trained:
    """A checkpoint, its sequence and streaming exports, and the data it was trained on."""

    run: Path
    model: Path
    stream: Path
    data: Path

    @property
    def metrics(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.run / "metrics.json").read_text())
        return loaded

    def meta(self, path: Path) -> ModelMetadata:
        meta: ModelMetadata = load_artifact(path, verify=False).edgelstm_metadata()
        return meta

    def sequences(self) -> list[np.ndarray]:
        return _sequences(self.data)


def _sequences(path: Path) -> list[np.ndarray]:
    """An .npz's sequences in original units, cut to their lengths."""
    arrays = np.load(path)
    return [arrays["X"][i, :n].astype(np.float64) for i, n in enumerate(arrays["lengths"].tolist())]


def _trained(work: Path, name: str, task: str, data: Path, **kw: Any) -> Trained:
    run = train(task, data=data, out=work / f"{name}_run", seed=0, **kw).out
    model, stream = work / f"{name}.onnx", work / f"{name}.stream.onnx"
    export(run, model)
    export(run, stream, streaming=True)
    return Trained(run, model, stream, data)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labelling")


@pytest.fixture(scope="module")
def tag_npz(work: Path) -> Path:
    return write_tag_npz(work / "tag.npz")


@pytest.fixture(scope="module")
def transcribe_npz(work: Path) -> Path:
    return write_transcribe_npz(work / "transcribe.npz")


@pytest.fixture(scope="module")
def tagger(work: Path, tag_npz: Path) -> Trained:
    single_thread()
    return _trained(work, "tagger", "tag", tag_npz, **TINY_KW)


@pytest.fixture(scope="module")
def strided(work: Path, transcribe_npz: Path) -> Trained:
    """A transcriber with a causal conv front end of stride 2: one CTC step per 2 frames."""
    single_thread()
    return _trained(
        work,
        "strided",
        "transcribe",
        transcribe_npz,
        frontend="conv",
        frontend_stride=2,
        frontend_kernel=4,
        frontend_channels=4,
        **SPELLING_KW,
    )


@pytest.fixture(scope="module")
def plain(work: Path, transcribe_npz: Path) -> Trained:
    """A transcriber without a front end: one CTC step per frame (hidden 16: with 8 it does
    not learn to spell these texts in 30 epochs)."""
    single_thread()
    return _trained(
        work, "plain", "transcribe", transcribe_npz, frontend="none", **SPELLING_KW | {"hidden": 16}
    )


TRANSCRIBERS = ["plain", "strided"]


# --------------------------------------------------------------------------------------------
# helpers


def _offline(model: Path, data: Path, out: Path, **options: Any) -> list[Row]:
    """``run``'s rows for ``data`` (full precision, as the Python API returns them)."""
    result = run_model(model, data, out, options=RunOptions(overwrite=True, **options))
    table = result.predictions.table
    assert table is not None
    columns = [values.tolist() for values in table.values()]
    return [dict(zip(table, values, strict=True)) for values in zip(*columns, strict=True)]


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _chunk_sizes(length: int, strides: Sequence[int], multiple: int) -> list[int]:
    """Chunks of ``strides[k] * multiple`` frames covering ``length`` frames; what is left
    after the drawn sizes is one last chunk of any size (the stream's final one)."""
    sizes: list[int] = []
    start = 0
    for k in strides:
        if start >= length:
            break
        sizes.append(min(k * multiple, length - start))
        start += sizes[-1]
    if start < length:
        sizes.append(length - start)
    return sizes


class Streamer:
    """One streaming export pushed chunk by chunk the way ``run --stream`` does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.session = StreamingSession(path)
        self.meta = self.session.metadata
        self.multiple = int(self.session.chunk_multiple)

    def rows(self, frames: np.ndarray, sizes: Sequence[int], *, beam: int = 1) -> list[Row]:
        """A fresh stream's rows for ``frames`` cut into chunks of ``sizes``, then its end."""
        assert sum(sizes) == len(frames)
        self.session.reset()
        stream_rows = StreamRows(self.meta, self.path, beam=beam)
        rows: list[Row] = []
        start = 0
        for size in sizes:
            x = stream_rows.model_input(frames[start : start + size])
            out = self.session.push(x[None], final=size % self.multiple != 0)
            rows += stream_rows.rows(x, out[0])
            start += size
        end: list[Row] = stream_rows.finish()
        return rows + end


@pytest.fixture(scope="module")
def streamers(tagger: Trained, plain: Trained, strided: Trained) -> dict[str, Streamer]:
    return {
        "tagger": Streamer(tagger.stream),
        "plain": Streamer(plain.stream),
        "strided": Streamer(strided.stream),
    }


def _assert_rows_close(got: list[Row], want: list[Row], where: str) -> None:
    """Same columns in the same order; floats within PROB_ATOL, everything else identical."""
    assert len(got) == len(want), f"{where}: {len(got)} rows, expected {len(want)}"
    for n, (row, expected) in enumerate(zip(got, want, strict=True)):
        assert list(row) == list(expected), (where, n, list(row), list(expected))
        for key, value in row.items():
            if isinstance(expected[key], float):
                assert abs(value - expected[key]) <= PROB_ATOL, (where, n, key, row, expected)
            else:
                assert value == expected[key], (where, n, key, row, expected)


def _only_grows(texts: Sequence[str]) -> bool:
    """Whether each text extends the one before: what was final stays final."""
    return all(after.startswith(before) for before, after in itertools.pairwise(texts))


def _decisive(row: Row, labels: Sequence[str]) -> bool:
    """Whether a frame's top class leads the next by more than float noise between exports."""
    probs = sorted((row[f"prob_{c}"] for c in labels), reverse=True)
    return bool(probs[0] - probs[1] > 10 * PROB_ATOL)


# ============================================================================================
# 1. train: metrics, baselines, the checks


def test_tag_metrics_and_baselines_are_written(tagger: Trained) -> None:
    metrics = tagger.metrics
    for key in ("frame_accuracy", "macro_f1", "segment_f1"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    baselines = metrics["baselines"]
    assert baselines["metric"] == "macro_f1" and baselines["higher_is_better"] is True
    assert baselines["model"] == pytest.approx(metrics["macro_f1"])
    assert set(baselines["values"]) == {"majority frame", "window logistic regression"}
    assert baselines["trivial"] == "majority frame"
    assert all(0.0 <= v <= 1.0 for v in baselines["values"].values())


@pytest.mark.parametrize("kind", TRANSCRIBERS)
def test_transcribe_metrics_and_the_constant_baseline_are_written(
    kind: str, request: pytest.FixtureRequest
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    metrics = trained.metrics
    for key in ("error_rate", "beam_error_rate", "constant_error_rate"):
        assert metrics[key] >= 0.0, (key, metrics)
    assert 0.0 <= metrics["exact_match"] <= 1.0
    assert metrics["beam_width"] >= 2 and metrics["beam_sample"] >= 1
    baselines = metrics["baselines"]
    assert baselines["metric"] == "error_rate" and baselines["higher_is_better"] is False
    assert baselines["values"] == {"most frequent text": metrics["constant_error_rate"]}
    # The fixture's training spells the texts: the model beats writing one constant text.
    assert metrics["error_rate"] < metrics["constant_error_rate"]
    assert baselines["beats_best"] is True


def test_a_transcriber_trains_with_input_noise_unless_told_otherwise(
    strided: Trained, transcribe_npz: Path, work: Path
) -> None:
    def recorded(run: Path) -> float:
        noise: float = json.loads((run / "config.json").read_text())["train"]["input_noise"]
        return noise

    assert recorded(strided.run) == 0.3  # the transcribe default
    kw = {**TINY_KW, "epochs": 1}
    quiet = train("transcribe", data=transcribe_npz, out=work / "quiet", input_noise=0.0, **kw)
    assert recorded(quiet.out) == 0.0
    tagger = train("tag", data=write_tag_npz(work / "noise_tag.npz"), out=work / "nt", **kw)
    assert recorded(tagger.out) == 0.0  # other tasks keep the preset's


def test_the_headline_metrics_and_gates_of_both_tasks() -> None:
    assert HEADLINE_METRICS["tag"].key == "macro_f1"
    assert HEADLINE_METRICS["tag"].higher_is_better is True
    assert HEADLINE_METRICS["transcribe"].key == "error_rate"
    assert HEADLINE_METRICS["transcribe"].higher_is_better is False
    tag, transcribe = DEFAULT_GATES["tag"], DEFAULT_GATES["transcribe"]
    assert (tag.metric, tag.higher_is_better) == ("macro_f1", True)
    assert (transcribe.metric, transcribe.higher_is_better) == ("error_rate", False)
    # A higher error rate is a loss; a lower one is not.
    assert transcribe.degradation(0.10, 0.20) == pytest.approx(0.10)
    assert transcribe.degradation(0.10, 0.05) < 0
    assert transcribe.passes(0.10, 0.10 + transcribe.allowed / 2)
    assert not transcribe.passes(0.10, 0.10 + 2 * transcribe.allowed)


def test_require_baseline_fails_a_transcriber_that_loses_to_the_constant_text(
    cli: CliRunner, work: Path
) -> None:
    """Nine texts in ten are "ab": writing "ab" always is hard to beat in 2 epochs."""
    texts = ["ab"] * 54 + ["c", "ba", "ca", "b", "ac", "cb"]
    data = write_transcribe_npz(work / "mostly_ab.npz", texts=texts, seed=5)
    out = work / "loses_run"
    result = cli("train", "--task", "transcribe", "--data", data, "--out", out, *TINY,
                 "--require-baseline")  # fmt: skip
    assert result.code == 1, result
    assert "Traceback" not in result.err and result.out == ""
    line = result.err_lines[-1]
    assert line.startswith("error: "), result.err
    for word in ("most frequent text", "--require-baseline", f"nothing was written to {out}"):
        assert word in line, (word, line)
    assert_nothing_written(out)


def test_require_baseline_fails_a_tagger_that_loses_to_the_window_baseline(
    cli: CliRunner, tag_npz: Path, tagger: Trained, work: Path
) -> None:
    """The tiny tagger loses to the window classifier on these cleanly separated frames."""
    baselines = tagger.metrics["baselines"]
    assert baselines["beats_best"] is False, baselines  # the premise
    out = work / "tag_loses_run"
    result = cli("train", "--task", "tag", "--data", tag_npz, "--out", out, *TINY,
                 "--require-baseline")  # fmt: skip
    assert result.code == 1, result
    line = result.err_lines[-1]
    assert line.startswith("error: ") and "window logistic regression" in line, result.err
    assert f"nothing was written to {out}" in line
    assert_nothing_written(out)


def test_min_accuracy_is_refused_for_a_transcriber(
    cli: CliRunner, transcribe_npz: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = cli("train", "--task", "transcribe", "--data", transcribe_npz, "--out", out,
                 "--min-accuracy", "0.5")  # fmt: skip
    assert_clean_failure(result, out, "--min-accuracy", "error rate", "--require-baseline")


def test_bidirectional_tagging_trains_and_runs_offline_but_does_not_stream(
    cli: CliRunner, tag_npz: Path, work: Path
) -> None:
    run = train("tag", data=tag_npz, out=work / "bi_run", seed=0, bidirectional=True, **TINY_KW)
    model = work / "bi.onnx"
    export(run.out, model)
    rows = _offline(model, tag_npz, work / "bi.csv")
    assert len(rows) == int(np.load(tag_npz)["lengths"].sum())
    out = work / "bi.stream.onnx"
    result = cli("export", run.out, "--out", out, "--streaming")
    assert_clean_failure(result, out, "bidirectional", "cannot stream", "without --streaming")


# ============================================================================================
# 2. export: what the metadata records


def test_tag_metadata_names_the_classes(tagger: Trained) -> None:
    for path in (tagger.model, tagger.stream):
        meta = tagger.meta(path)
        assert meta.task == "tag"
        assert meta.class_labels == TAG_CLASSES
        assert meta.tokens == () and meta.blank_index is None
    assert tagger.meta(tagger.stream).stream_chunk_multiple == 1


@pytest.mark.parametrize(("kind", "multiple"), [("plain", 1), ("strided", 2)])
def test_transcribe_metadata_lists_tokens_blank_and_the_frame_multiple(
    kind: str, multiple: int, request: pytest.FixtureRequest
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    for path in (trained.model, trained.stream):
        meta = trained.meta(path)
        assert meta.task == "transcribe"
        assert meta.tokens == tuple(TRANSCRIBE_ALPHABET)
        assert meta.blank_index == len(TRANSCRIBE_ALPHABET)
    assert trained.meta(trained.stream).stream_chunk_multiple == multiple


def _rewritten(src: Path, dst: Path, **props: str | None) -> Path:
    """A copy of ``src`` with metadata props set (a value) or removed (None)."""
    model = onnx.load(str(src))
    kept = {p.key: p.value for p in model.metadata_props}
    for key, value in props.items():
        kept.pop(f"edgelstm.{key}", None)
        if value is not None:
            kept[f"edgelstm.{key}"] = value
    del model.metadata_props[:]
    for key, value in kept.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dst))
    return dst


def test_a_reader_refuses_a_task_it_does_not_know_naming_its_version(
    cli: CliRunner, strided: Trained, tmp_path: Path
) -> None:
    future = _rewritten(strided.model, tmp_path / "future.onnx", task="diarize")
    props = {p.key: p.value for p in onnx.load(str(future)).metadata_props}
    with pytest.raises(InvalidInputError) as exc:
        metadata_from_props(props, where=str(future))
    message = str(exc.value)
    assert "diarize" in message and __version__ in message and "upgrade" in message, message
    out = tmp_path / "out.csv"
    result = cli("run", future, "--input", strided.data, "--output", out)
    assert_clean_failure(result, out, "diarize", __version__)


def test_transcribe_metadata_without_tokens_is_refused(strided: Trained, tmp_path: Path) -> None:
    broken = _rewritten(strided.model, tmp_path / "no_tokens.onnx", tokens=None)
    props = {p.key: p.value for p in onnx.load(str(broken)).metadata_props}
    with pytest.raises(InvalidInputError, match="tokens"):
        metadata_from_props(props, where=str(broken))


# ============================================================================================
# 3. run: rows per frame, per segment, per sequence


def test_tag_rows_per_frame(cli: CliRunner, tagger: Trained, work: Path) -> None:
    out = work / "tag_rows.csv"
    result = cli("run", tagger.model, "--input", tagger.data, "--output", out)
    assert result.code == 0, result.err
    assert "macro F1" in result.err and "segment F1" in result.err
    rows = _csv(out.read_text())
    probs = [f"prob_{c}" for c in TAG_CLASSES]
    assert list(rows[0]) == ["index", "step", "label", "confidence", *probs, "true_label"]
    arrays = np.load(tagger.data)
    lengths = arrays["lengths"].tolist()
    assert [(int(r["index"]), int(r["step"])) for r in rows] == [
        (i, t) for i, n in enumerate(lengths) for t in range(n)
    ]
    truth = [TAG_CLASSES[arrays["y"][i, t]] for i, n in enumerate(lengths) for t in range(n)]
    assert [r["true_label"] for r in rows] == truth
    for row in rows:
        values = [float(row[p]) for p in probs]
        assert sum(values) == pytest.approx(1.0, abs=1e-5)
        assert float(row["confidence"]) == max(values)
        assert row["label"] == TAG_CLASSES[int(np.argmax(values))]


def test_tag_segments_partition_each_sequence_into_runs_of_one_label(
    tagger: Trained, work: Path
) -> None:
    frames = _offline(tagger.model, tagger.data, work / "frames.json")
    segments = _offline(tagger.model, tagger.data, work / "segments.json", segments=True)
    assert list(segments[0]) == ["index", "start", "end", "label", "mean_confidence"]
    lengths = np.load(tagger.data)["lengths"].tolist()
    for i, n in enumerate(lengths):
        mine = [s for s in segments if s["index"] == i]
        assert mine[0]["start"] == 0 and mine[-1]["end"] == n  # end is exclusive
        for before, after in itertools.pairwise(mine):
            assert before["end"] == after["start"] and before["label"] != after["label"]
        per_frame = [r for r in frames if r["index"] == i]
        for seg in mine:
            inside = per_frame[seg["start"] : seg["end"]]
            assert {r["label"] for r in inside} == {seg["label"]}
            mean = np.mean([r[f"prob_{seg['label']}"] for r in inside])
            assert seg["mean_confidence"] == pytest.approx(mean, abs=1e-5)


@pytest.mark.parametrize("kind", TRANSCRIBERS)
def test_transcribe_rows_per_sequence_with_timestamps(
    kind: str, request: pytest.FixtureRequest, cli: CliRunner, tmp_path: Path
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    out = tmp_path / "texts.csv"
    result = cli("run", trained.model, "--input", trained.data, "--output", out, "--timestamps")
    assert result.code == 0, result.err
    assert "greedy decoding" in result.err and "error rate" in result.err
    rows = _csv(out.read_text())
    assert list(rows[0]) == ["index", "text", "tokens", "frames", "true_text"]
    arrays = np.load(trained.data)
    assert [r["true_text"] for r in rows] == arrays["y"].tolist()
    stride = 2 if kind == "strided" else 1
    for row, length in zip(rows, arrays["lengths"].tolist(), strict=True):
        tokens = row["tokens"].split()
        assert "".join(tokens) == row["text"]
        frames = [int(f) for f in row["frames"].split()]
        assert len(frames) == len(tokens)
        assert frames == sorted(set(frames)), row  # one step emits at most one token
        assert all(f % stride == 0 and 0 <= f < length for f in frames), row
    # The fixture's model spells most texts (what the streaming checks compare is not blank).
    assert sum(r["text"] == r["true_text"] for r in rows) >= len(rows) // 2


def test_transcribe_beam_and_prune(cli: CliRunner, strided: Trained, tmp_path: Path) -> None:
    out = tmp_path / "beam.csv"
    result = cli("run", strided.model, "--input", strided.data, "--output", out,
                 "--beam", str(BEAM), "--prune", "0.01")  # fmt: skip
    assert result.code == 0, result.err
    assert f"beam {BEAM} decoding" in result.err
    rows = _csv(out.read_text())
    assert list(rows[0]) == ["index", "text", "tokens", "true_text"]
    assert all("".join(r["tokens"].split()) == r["text"] for r in rows)


@pytest.mark.parametrize(
    ("kind", "option"),
    [
        ("tagger", ["--beam", "3"]),
        ("tagger", ["--prune", "0.1"]),
        ("tagger", ["--timestamps"]),
        ("strided", ["--segments"]),
    ],
)
def test_options_of_the_other_task_are_refused(
    kind: str, option: list[str], request: pytest.FixtureRequest, cli: CliRunner, tmp_path: Path
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    out = tmp_path / "out.csv"
    result = cli("run", trained.model, "--input", trained.data, "--output", out, *option)
    assert_clean_failure(result, out, option[0], trained.model.name)


# ============================================================================================
# 4. bad labels: one error line naming the file and the index


def _tag_copy(tag_npz: Path, path: Path, **changes: Any) -> Path:
    arrays = dict(np.load(tag_npz))
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def _label_past_the_classes(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[2, 3] = len(TAG_CLASSES)
    return y


@pytest.mark.parametrize(
    ("name", "spoil", "words"),
    [
        ("bad_label.npz", _label_past_the_classes, ("y[2, 3] = 3", "out of range")),
        ("short_y.npz", lambda y: y[:, :10], ("y has shape (48, 10)",)),
    ],
)
def test_malformed_tag_labels_are_refused_by_train_and_run(
    name: str,
    spoil: Callable[[np.ndarray], np.ndarray],
    words: tuple[str, ...],
    cli: CliRunner,
    tagger: Trained,
    tmp_path: Path,
) -> None:
    bad = _tag_copy(tagger.data, tmp_path / name, y=spoil(np.load(tagger.data)["y"]))
    out = tmp_path / "run"
    result = cli("train", "--task", "tag", "--data", bad, "--out", out, *TINY)
    assert_clean_failure(result, out, name, *words)
    csv_out = tmp_path / "rows.csv"
    result = cli("run", tagger.model, "--input", bad, "--output", csv_out)
    assert_clean_failure(result, csv_out, name, *words)


def test_tag_labels_without_class_names_are_the_models_indices(
    tagger: Trained, tmp_path: Path
) -> None:
    """An input whose ``y`` holds class indices and no ``classes`` is scored against the
    model's classes by index (labels 0..2 of a model with classes idle, walk, run)."""
    unnamed = _tag_copy(tagger.data, tmp_path / "unnamed.npz", classes=None)
    named = _offline(tagger.model, tagger.data, tmp_path / "named.json")
    got = _offline(tagger.model, unnamed, tmp_path / "unnamed.json")
    assert [r["true_label"] for r in got] == [r["true_label"] for r in named]


def test_a_character_outside_the_alphabet_is_refused_by_train_and_run(
    cli: CliRunner, strided: Trained, tmp_path: Path
) -> None:
    texts = ["ab", "a", "cz", "c", "b"]
    test = write_transcribe_npz(tmp_path / "test_z.npz", texts=["ab", "a", "c", "c", "b"])
    arrays = dict(np.load(test))
    arrays["y"] = np.array(texts)
    np.savez(test, **arrays)
    out = tmp_path / "run"
    result = cli("train", "--task", "transcribe", "--data", strided.data, "--test", test,
                 "--out", out, *TINY)  # fmt: skip
    assert_clean_failure(result, out, "test_z.npz", "y[2]", "'z'")
    csv_out = tmp_path / "texts.csv"
    result = cli("run", strided.model, "--input", test, "--output", csv_out)
    assert_clean_failure(result, csv_out, "test_z.npz", "y[2]", "'z'")


# ============================================================================================
# 5. streaming equals offline, for every chunking


@pytest.fixture(scope="module")
def stream_inputs(work: Path, transcribe_npz: Path) -> Path:
    """The training sequences, then each cut at an odd length: most cuts end inside a token,
    so a stride-2 stream's last chunk, shorter than a stride, decides a token."""
    arrays = np.load(transcribe_npz)
    lengths = arrays["lengths"]
    rng = np.random.default_rng(1)
    cuts = np.array([int(rng.integers(n // 2, n)) | 1 for n in lengths.tolist()])
    path = work / "stream_inputs.npz"
    np.savez(path, X=np.concatenate([arrays["X"]] * 2), lengths=np.concatenate([lengths, cuts]))
    return path


@pytest.fixture(scope="module")
def offline_texts(
    plain: Trained, strided: Trained, stream_inputs: Path, work: Path
) -> dict[str, dict[str, list[Row]]]:
    """Per transcriber, the sequence export's rows for ``stream_inputs``: greedy (with
    timestamps) and beam."""
    return {
        name: {
            "greedy": _offline(
                t.model, stream_inputs, work / f"{name}_greedy.json", timestamps=True
            ),
            "beam": _offline(t.model, stream_inputs, work / f"{name}_beam.json", beam=BEAM),
        }
        for name, t in (("plain", plain), ("strided", strided))
    }


@pytest.mark.parametrize("kind", TRANSCRIBERS)
def test_the_streaming_export_run_whole_writes_the_sequence_exports_texts(
    kind: str,
    request: pytest.FixtureRequest,
    offline_texts: dict[str, Any],
    stream_inputs: Path,
    tmp_path: Path,
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    for decoder, options in (("greedy", {"timestamps": True}), ("beam", {"beam": BEAM})):
        whole = _offline(trained.stream, stream_inputs, tmp_path / f"{decoder}.json", **options)
        assert whole == offline_texts[kind][decoder], decoder


@pytest.mark.parametrize("kind", TRANSCRIBERS)
def test_streamed_greedy_text_equals_offline_in_any_chunking(
    kind: str, streamers: dict[str, Streamer], offline_texts: dict[str, Any], stream_inputs: Path
) -> None:
    streamer = streamers[kind]
    sequences = _sequences(stream_inputs)
    reference = offline_texts[kind]["greedy"]
    assert streamer.multiple == (2 if kind == "strided" else 1)

    @HYPOTHESIS
    @given(index=st.integers(0, len(sequences) - 1), strides=STRIDES)
    def check(index: int, strides: list[int]) -> None:
        sizes = _chunk_sizes(len(sequences[index]), strides, streamer.multiple)
        rows = streamer.rows(sequences[index], sizes)
        where = f"{kind} sequence {index} in chunks {sizes}"
        want = reference[index]
        assert len(rows) == len(sizes), where  # one row per chunk
        assert [r["frame"] for r in rows] == list(np.cumsum(sizes) - 1), where
        assert list(rows[0]) == stream_columns(streamer.meta)
        assert rows[-1]["text"] == want["text"], where
        # Greedy tokens are final once emitted: each appears in one chunk's row, at its frame.
        emitted = " ".join(r["tokens"] for r in rows if r["tokens"])
        assert emitted == want["tokens"], where
        frames_emitted = " ".join(r["token_frames"] for r in rows if r["token_frames"])
        assert frames_emitted == want["frames"], where
        assert _only_grows([r["text"] for r in rows]), where

    check()


def test_streamed_beam_text_equals_offline_beam_after_the_end(
    streamers: dict[str, Streamer], offline_texts: dict[str, Any], stream_inputs: Path
) -> None:
    streamer = streamers["strided"]
    sequences = _sequences(stream_inputs)
    reference = offline_texts["strided"]["beam"]

    @settings(HYPOTHESIS, max_examples=15)
    @given(index=st.integers(0, len(sequences) - 1), strides=STRIDES)
    def check(index: int, strides: list[int]) -> None:
        sizes = _chunk_sizes(len(sequences[index]), strides, streamer.multiple)
        rows = streamer.rows(sequences[index], sizes, beam=BEAM)
        where = f"sequence {index} in chunks {sizes}"
        assert list(rows[0]) == stream_columns(streamer.meta, beam=BEAM)
        assert rows[-1]["text"] == reference[index]["text"], where
        # What a beam decoder states final stays final: the text only grows, by its tokens.
        assert _only_grows([r["text"] for r in rows]), where
        assert "".join("".join(r["tokens"].split()) for r in rows) == rows[-1]["text"], where
        assert all(r["partial"].startswith(r["text"]) for r in rows), where

    check()


def test_streamed_tags_equal_offline_in_any_chunking(
    streamers: dict[str, Streamer], tagger: Trained, work: Path
) -> None:
    streamer = streamers["tagger"]
    sequences = tagger.sequences()
    offline = _offline(tagger.model, tagger.data, work / "tag_offline.json")
    columns = stream_columns(streamer.meta)

    @HYPOTHESIS
    @given(index=st.integers(0, len(sequences) - 1), strides=STRIDES)
    def check(index: int, strides: list[int]) -> None:
        sizes = _chunk_sizes(len(sequences[index]), strides, 1)
        rows = streamer.rows(sequences[index], sizes)
        want = [r for r in offline if r["index"] == index]
        where = f"tag sequence {index} in chunks {sizes}"
        assert len(rows) == len(sequences[index]) == len(want), where  # one row per frame
        for row, ref in zip(rows, want, strict=True):
            assert list(row) == columns
            assert row["frame"] == ref["step"], where
            for name in columns[2:]:
                assert abs(row[name] - ref[name]) <= PROB_ATOL, (where, row, ref)
            if _decisive(ref, TAG_CLASSES):
                assert row["label"] == ref["label"], (where, row, ref)

    check()


@pytest.mark.parametrize("kind", ["tagger", "strided"])
def test_run_stream_prints_the_streamed_rows(
    kind: str,
    request: pytest.FixtureRequest,
    streamers: dict[str, Streamer],
    cli: CliRunner,
    tmp_path: Path,
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    streamer = streamers[kind]
    frames = trained.sequences()[0]
    one = tmp_path / "one.npz"
    np.savez(one, X=frames[None].astype(np.float32))
    chunk = 4
    result = cli("run", trained.stream, "--input", one, "--stream", "--chunk", str(chunk))
    assert result.code == 0, result.err
    printed = _csv(result.out)
    want = streamer.rows(frames.astype(np.float32), _chunk_sizes(len(frames), [2] * 99, 2))
    assert list(printed[0]) == list(want[0])
    assert len(printed) == len(want)
    for line, row in zip(printed, want, strict=True):
        for key, value in row.items():
            if isinstance(value, float):
                assert float(line[key]) == pytest.approx(value, abs=2e-6), (key, line, row)
            else:
                assert line[key] == str(value), (key, line, row)


def test_run_stream_refuses_the_output_shapes_of_run(
    cli: CliRunner, tagger: Trained, tmp_path: Path
) -> None:
    one = tmp_path / "one.npz"
    np.savez(one, X=tagger.sequences()[0][None].astype(np.float32))
    result = cli("run", tagger.stream, "--input", one, "--stream", "--segments")
    assert_clean_failure(result, None, "--segments")


# ============================================================================================
# 6. serve: the rows of the stream, /v1/model, reset


@asynccontextmanager
async def _client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running and a client calling it in process."""
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            yield client
    finally:
        await asyncio.wait_for(lifespan.__aexit__(None, None, None), 20)


async def _post_all(client: httpx.AsyncClient, stream: str, chunks: list[np.ndarray]) -> list[Row]:
    rows: list[Row] = []
    for chunk in chunks:
        response = await client.post(
            f"/v1/streams/{stream}/frames", json={"frames": chunk.tolist()}
        )
        assert response.status_code == 200, response.text
        rows += response.json()["rows"]
    return rows


@pytest.mark.parametrize("kind", ["tagger", "plain", "strided"])
def test_serve_answers_the_streamed_rows_and_reset_clears_the_decoder(
    kind: str, request: pytest.FixtureRequest, streamers: dict[str, Streamer]
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    streamer = streamers[kind]
    frames = trained.sequences()[1]
    frames = frames[: len(frames) - len(frames) % 2]  # whole strides (serve takes no short end)
    sizes = _chunk_sizes(len(frames), [1, 3, 2, 4], 2)
    starts = np.cumsum([0, *sizes[:-1]])
    chunks = [frames[s : s + k] for s, k in zip(starts, sizes, strict=True)]
    want = streamer.rows(frames, sizes)

    async def main() -> tuple[dict[str, Any], list[list[Row]]]:
        async with _client(create_app(trained.stream)) as client:
            model = (await client.get("/v1/model")).json()
            first = await _post_all(client, "s", chunks)
            reset = await client.delete("/v1/streams/s", params={"reset": "true"})
            assert reset.status_code == 200, reset.text
            again = await _post_all(client, "s", chunks)
            ended = await client.delete("/v1/streams/s")
            assert ended.status_code == 200, ended.text
            anew = await _post_all(client, "s", chunks)
            return model, [first, again, anew]

    model, runs = asyncio.run(main())
    assert model["task"] == streamer.meta.task
    assert model["columns"] == stream_columns(streamer.meta)
    if kind == "tagger":
        assert model["classes"] == list(TAG_CLASSES)
    else:
        assert model["tokens"] == list(TRANSCRIBE_ALPHABET)
        assert model["blank_index"] == len(TRANSCRIBE_ALPHABET)
        assert model["frames_multiple"] == streamer.multiple
        assert want[-1]["text"], "the stream spells something, so a kept decoder would show"
    for n, rows in enumerate(runs):
        _assert_rows_close(rows, want, f"{kind}, pass {n}")


# ============================================================================================
# 7. batch: run's rows, in Parquet


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("tagger", {}),
        ("tagger", {"segments": True}),
        ("strided", {"timestamps": True}),
        ("plain", {"beam": BEAM}),
    ],
)
def test_batch_writes_runs_rows(
    kind: str, options: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from edgelstm.runtimes.model_io.predictions import PredictOptions

    trained: Trained = request.getfixturevalue(kind)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.npz").write_bytes(trained.data.read_bytes())
    out = tmp_path / "out"
    result = run_batch(
        trained.model,
        folder,
        out,
        options=PredictOptions(**options),
        batch=BatchOptions(partition_rows=7),
    )
    assert result.files == 1 and result.partitions > 1
    parts = sorted(out.glob("*.parquet"))
    got = [row for part in parts for row in pq.read_table(part).to_pylist()]
    want = _offline(trained.model, trained.data, tmp_path / "run.json", **options)
    assert result.rows == len(want)
    assert {r.pop("source") for r in got} == {"a.npz"}
    _assert_rows_close(got, want, f"{kind} {options}")


def test_run_engine_local_from_the_cli(cli: CliRunner, strided: Trained, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.npz").write_bytes(strided.data.read_bytes())
    out = tmp_path / "out"
    result = cli("run", strided.model, "--input", folder, "--output", out, "--engine", "local",
                 "--timestamps")  # fmt: skip
    assert result.code == 0, result.err
    got = [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    want = _offline(strided.model, strided.data, tmp_path / "run.json", timestamps=True)
    assert got == [{"source": "a.npz", **r} for r in want]


# ============================================================================================
# 8. quantize: dynamic INT8 gated on the task metric


@pytest.mark.parametrize(("kind", "metric"), [("tagger", "macro_f1"), ("strided", "error_rate")])
def test_dynamic_int8_is_gated_on_the_task_metric(
    kind: str, metric: str, request: pytest.FixtureRequest, cli: CliRunner, tmp_path: Path
) -> None:
    trained: Trained = request.getfixturevalue(kind)
    out = tmp_path / "q.onnx"
    result = cli("quantize", trained.model, "--mode", "dynamic-int8", "--out", out,
                 "--eval", trained.run, "--json")  # fmt: skip
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    gate = payload["gate"]
    assert gate["metric"] == metric and gate["passed"] is True, gate
    assert gate["float_value"] == pytest.approx(trained.metrics[metric])
    assert gate["degradation"] <= gate["allowed"]
    assert payload["baselines"]["metric"] == metric
    assert payload["audit"]["mode"] == "dynamic-int8"
    meta = load_artifact(out, verify=False).edgelstm_metadata()
    assert (meta.task, meta.class_labels, meta.tokens) == (
        trained.meta(trained.model).task,
        trained.meta(trained.model).class_labels,
        trained.meta(trained.model).tokens,
    )
    rows = _offline(out, trained.data, tmp_path / "q.json")  # the INT8 model runs
    assert len(rows) == len(_offline(trained.model, trained.data, tmp_path / "f.json"))
