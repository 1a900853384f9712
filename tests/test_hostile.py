"""The hostile-input suite: every bad input the CLI can be handed, end to end, in one place.

Each refusal must be exit code 2, exactly one stderr line starting with ``error:`` that
names the file or input, no traceback anywhere, and nothing at the output path (not even a
``.NAME.*.tmp`` sibling). Output is captured at the file-descriptor level (``capfd``), so
lines ONNX Runtime's C++ logger writes straight to fd 2 count too.

Cases that need a clean process (memory limits, pickles that warn, signals, SIGKILL while
writing or at the rename) run ``python -m edgelstm`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import (
    TINY,
    CliResult,
    CliRunner,
    assert_clean_failure,
    assert_nothing_written,
    needs_no_cuda,
    single_thread,
    write_classify_npz,
)
from onnx import TensorProto, helper, numpy_helper

from edgelstm import fileio
from edgelstm.errors import OutputExistsError
from edgelstm.exporters import export
from edgelstm.training.trainer import TrainResult

FEATURES = 3  # the fixture classify data has 3 features (f0, f1, f2)
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
#: address-space cap for children that are handed files claiming gigabytes or terabytes.
MEMORY_LIMIT = 2 * 2**30
#: memory limits, process groups and SIGKILL are POSIX
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX rlimits and signals")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    single_thread()


# --------------------------------------------------------------------------------------------
# running the CLI


@pytest.fixture
def cli_fd(capfd: pytest.CaptureFixture[str]) -> Iterator[CliRunner]:
    """Like conftest's ``cli`` but captures fd 1 and 2: ONNX Runtime logs bypass sys.stderr."""
    from edgelstm.cli import main

    def invoke(*argv: str | Path) -> CliResult:
        capfd.readouterr()
        code = main([str(a) for a in argv])
        captured = capfd.readouterr()
        return CliResult(code=code, out=captured.out, err=captured.err)

    yield invoke


def _limit_memory() -> None:  # runs in the child between fork and exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def cli_subprocess(
    *argv: str | Path, cwd: Path, limit_memory: bool = False, timeout: float = 120
) -> CliResult:
    """``python -m edgelstm ARGV`` in a fresh process; optionally under RLIMIT_AS."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgelstm", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=SUBPROCESS_ENV,
        timeout=timeout,
        preexec_fn=_limit_memory if limit_memory else None,
        check=False,
    )
    return CliResult(code=proc.returncode, out=proc.stdout, err=proc.stderr)


# --------------------------------------------------------------------------------------------
# models


def _save(path: Path, model: onnx.ModelProto, *, check: bool = True) -> Path:
    if check:
        onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _tensor(name: str, dtype: int, shape: list[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def classify_model(trained_classify: TrainResult, work: Path) -> Path:
    """The tiny edgelstm classifier (features f0, f1, f2), exported. Read-only."""
    out = work / "classify.onnx"
    export(trained_classify.out, out)
    return out


@pytest.fixture(scope="module")
def stream_model(trained_classify: TrainResult, work: Path) -> Path:
    out = work / "classify.stream.onnx"
    export(trained_classify.out, out, streaming=True)
    return out


@pytest.fixture(scope="module")
def pair_model(work: Path) -> Path:
    """x float [N, 3], w float [N, 3] -> y = x + w: two named inputs, a fixed axis."""
    return _save(
        work / "pair.onnx",
        _model(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            [_tensor("x", TensorProto.FLOAT, ["N", 3]), _tensor("w", TensorProto.FLOAT, ["N", 3])],
            [_tensor("y", TensorProto.FLOAT, ["N", 3])],
        ),
    )


@pytest.fixture(scope="module")
def double_model(work: Path) -> Path:
    """x float [N, 3] -> y = 2 x: one input, so it also takes an .npy."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    return _save(
        work / "double.onnx",
        _model(
            [helper.make_node("Mul", ["x", "two"], ["y"])],
            [_tensor("x", TensorProto.FLOAT, ["N", 3])],
            [_tensor("y", TensorProto.FLOAT, ["N", 3])],
            [two],
        ),
    )


LSTM_IN, LSTM_HIDDEN = 2, 3


def _lstm_model(opset: int = 17, **attributes: Any) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    h, i = LSTM_HIDDEN, LSTM_IN
    weights = [
        numpy_helper.from_array(rng.normal(size=(1, 4 * h, i)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(1, 4 * h, h)).astype(np.float32), "R"),
    ]
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y"], **attributes)
    return _model(
        [node],
        [_tensor("x", TensorProto.FLOAT, ["T", "N", i])],
        [_tensor("y", TensorProto.FLOAT, ["T", 1, "N", h])],
        weights,
        opset=opset,
    )


@pytest.fixture
def arrays_in(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, **arrays: Any) -> Path:
        path = tmp_path / name
        if path.suffix == ".npy":
            np.save(path, arrays["X"])
        else:
            np.savez(path, **arrays)
        return path

    return write


def _x(n: int = 4, steps: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, steps, FEATURES)).astype(np.float32)


# ============================================================================================
# 1-6: arrays that do not fit the model: rank, fixed axis, dtype, keys, NaN/Inf/overflow, empty

_P = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
_NAN = _P.astype(np.float64)
_NAN[1, 2] = np.nan
_INF = _P.astype(np.float64)
_INF[2, 0] = -np.inf
_HUGE = _P.astype(np.float64)
_HUGE[3, 1] = 1e39  # finite in float64, inf in float32

#: (arrays for the pair model, words the error line must hold)
RAW_BAD: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "rank-1": ({"x": _P[:, 0], "w": _P}, ("`x`", "rank 1", "rank 2")),
    "rank-3": ({"x": _P[:, :, None], "w": _P}, ("`x`", "rank 3", "rank 2")),
    "fixed-axis": ({"x": np.ones((4, 5), np.float32), "w": _P}, ("`x`", "axis 1", "5", "3")),
    "int64-for-float32": ({"x": np.ones((4, 3), np.int64), "w": _P}, ("`x`", "int64", "float32")),
    "missing-key": ({"x": _P}, ("missing", "w")),
    "extra-key": ({"x": _P, "w": _P, "bias": _P}, ("bias", "not inputs")),
    "nan-float64": ({"x": _NAN, "w": _P}, ("`x`", "NaN", "(1, 2)")),
    "inf-float64": ({"x": _INF, "w": _P}, ("`x`", "Inf", "(2, 0)")),
    "1e39-float64": ({"x": _HUGE, "w": _P}, ("`x`", "float32")),
    "empty": ({"x": np.zeros((0, 3), np.float32), "w": np.zeros((0, 3), np.float32)}, ("empty",)),
}


@pytest.mark.parametrize("case", sorted(RAW_BAD))
def test_raw_model_refuses_bad_arrays(
    cli_fd: CliRunner, tmp_path: Path, pair_model: Path, case: str
) -> None:
    arrays, words = RAW_BAD[case]
    source = tmp_path / "in.npz"
    np.savez(source, **arrays)
    out = tmp_path / "out.npz"
    result = cli_fd("run", pair_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), *words)


def test_raw_model_float64_is_converted_with_a_note(
    cli_fd: CliRunner, tmp_path: Path, double_model: Path
) -> None:
    source = tmp_path / "x.npy"
    np.save(source, _P.astype(np.float64))
    out = tmp_path / "y.npy"
    result = cli_fd("run", double_model, "--input", source, "--output", out)
    assert result.code == 0, result.err
    notes = [line for line in result.err_lines if line.startswith("note:")]
    assert any("float64" in n and "float32" in n for n in notes), result.err
    assert not any(line.startswith("error:") for line in result.err_lines)
    np.testing.assert_allclose(np.load(out), 2 * _P, rtol=1e-6)


def _with_nan(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64)
    y[1, 4, 2] = np.nan
    return y


def _with_inf(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64)
    y[0, 3, 1] = np.inf
    return y


def _with_1e39(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64)
    y[2, 5, 0] = 1e39
    return y


#: (file name, arrays for the edgelstm classifier, words the error line must hold)
EDGE_BAD: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "rank-1": ("x.npy", {"X": _x()[0, 0]}, ("shape (3,)",)),
    "rank-4": ("x.npz", {"X": _x()[None]}, ("shape (1, 4, 10, 3)",)),
    "wrong-feature-count": ("x.npz", {"X": np.ones((2, 10, 4), np.float32)}, ("4 feature(s)",)),
    "missing-key": ("x.npz", {"inputs": _x()}, ("'X'", "inputs")),
    "nan-float64": ("x.npz", {"X": _with_nan(_x())}, ("X[1, 4, 2]", "NaN")),
    "inf-float64": ("x.npz", {"X": _with_inf(_x())}, ("X[0, 3, 1]", "inf")),
    "1e39-float64": ("x.npz", {"X": _with_1e39(_x())}, ("X[2, 5, 0]", "float32 range")),
    "zero-length-sequence": ("x.npz", {"X": np.zeros((1, 0, 3), np.float32)}, ("empty",)),
    "zero-sequences": ("x.npy", {"X": np.zeros((0, 10, 3), np.float32)}, ("empty",)),
    "bool": ("x.npz", {"X": np.ones((2, 10, 3), bool)}, ("bool",)),
}


@pytest.mark.parametrize("case", sorted(EDGE_BAD))
def test_edgelstm_model_refuses_bad_arrays(
    cli_fd: CliRunner,
    tmp_path: Path,
    classify_model: Path,
    arrays_in: Callable[..., Path],
    case: str,
) -> None:
    name, arrays, words = EDGE_BAD[case]
    source = arrays_in(name, **arrays)
    out = tmp_path / "preds.csv"
    result = cli_fd("run", classify_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), *words)


def test_edgelstm_model_refuses_an_unknown_npz_key(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path
) -> None:
    source = tmp_path / "typo.npz"
    np.savez(source, X=_x(), lenghts=np.array([10, 5, 5, 5]))
    out = tmp_path / "preds.csv"
    result = cli_fd("run", classify_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), "lenghts")


def test_edgelstm_model_takes_float64_and_known_extra_keys(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path
) -> None:
    x = _x()
    plain, wide = tmp_path / "plain.npz", tmp_path / "wide.npz"
    np.savez(plain, X=x)
    np.savez(wide, X=x.astype(np.float64), y=np.array([0, 1, 0, 1]))
    results = [
        cli_fd("run", classify_model, "--input", src, "--output", tmp_path / f"{src.stem}.out.npz")
        for src in (plain, wide)
    ]
    assert [r.code for r in results] == [0, 0], [r.err for r in results]
    with np.load(tmp_path / "plain.out.npz") as a, np.load(tmp_path / "wide.out.npz") as b:
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)


# ============================================================================================
# 7: malformed CSV, as --input of an edgelstm model and as training data

_ROWS = "\n".join(",".join(f"{v:.5f}" for v in row) for row in _x(1, 12, seed=3)[0])
_GOOD_CSV = f"f0,f1,f2\n{_ROWS}\n"

BAD_CSV: dict[str, tuple[str, tuple[str, ...]]] = {
    "ragged": ("f0,f1,f2\n1,2,3\n4,5\n6,7,8\n", ("row 3", "2 columns")),
    "header-repeated": ("f0,f1,f2\n1,2,3\nf0,f1,f2\n6,7,8\n", ("row 3", "'f0'")),
    "non-numeric": ("f0,f1,f2\n1,2,3\n4,n/a,6\n", ("row 3", "'n/a'")),
    "header-only": ("f0,f1,f2\n", ("no data rows",)),
    "empty": ("", ("empty",)),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_malformed_csv_input(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path, case: str
) -> None:
    text, words = BAD_CSV[case]
    source = tmp_path / "in.csv"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "preds.csv"
    result = cli_fd("run", classify_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), *words)


def _series_csv(rows: int = 40) -> str:
    t = np.arange(rows)
    lines = [f"{np.sin(t_ / 3):.5f},{np.cos(t_ / 5):.5f}" for t_ in t]
    return "load,temp\n" + "\n".join(lines) + "\n"


_TRAIN_WINDOW = ["--lookback", "6", "--horizon", "2"]


def _replace_line(text: str, index: int, line: str, *, insert: bool = False) -> str:
    lines = text.splitlines()
    lines[index : index if insert else index + 1] = [line]
    return "\n".join(lines) + "\n"


#: (how to spoil the good series CSV, words the error line must hold); row N = file line N.
BAD_TRAIN_CSV: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "ragged": (lambda t: _replace_line(t, 3, "0.25"), ("row 4", "1 columns")),
    "header-repeated": (
        lambda t: _replace_line(t, 20, "load,temp", insert=True),
        ("row 21", "'load'"),
    ),
    "non-numeric": (lambda t: _replace_line(t, 2, "0.5,warm"), ("row 3", "'warm'")),
    "header-only": (lambda t: t.splitlines()[0] + "\n", ("no data rows",)),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_CSV))
def test_malformed_csv_training_data(cli_fd: CliRunner, tmp_path: Path, case: str) -> None:
    spoil, words = BAD_TRAIN_CSV[case]
    data = tmp_path / "series.csv"
    data.write_text(spoil(_series_csv()), encoding="utf-8")
    out = tmp_path / "run"
    result = cli_fd(
        "train", "--task", "forecast", "--data", data, "--out", out, *TINY, *_TRAIN_WINDOW
    )
    assert_clean_failure(result, out, str(data), *words)


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf_input_csv_read_like_the_plain_file(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path, variant: str
) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_bytes(_GOOD_CSV.encode())
    text = _GOOD_CSV.replace("\n", "\r\n") if "crlf" in variant else _GOOD_CSV
    odd = tmp_path / "odd.csv"
    odd.write_bytes(("\ufeff" if "bom" in variant else "").encode() + text.encode())
    for source in (plain, odd):
        result = cli_fd("run", classify_model, "--input", source, "--output", f"{source}.json")
        assert result.code == 0, result.err
        assert not any(line.startswith("note:") for line in result.err_lines), result.err
    want = json.loads(Path(f"{plain}.json").read_text())["records"]
    assert json.loads(Path(f"{odd}.json").read_text())["records"] == want


@pytest.mark.parametrize("variant", ["bom", "crlf"])
def test_bom_and_crlf_training_csv_is_tolerated(
    cli_fd: CliRunner, tmp_path: Path, variant: str
) -> None:
    from edgelstm.training.checkpoint import read_run_record

    text = _series_csv()
    raw = ("\ufeff" + text).encode() if variant == "bom" else text.replace("\n", "\r\n").encode()
    data = tmp_path / "series.csv"
    data.write_bytes(raw)
    out = tmp_path / "run"
    result = cli_fd(
        "train", "--task", "forecast", "--data", data, "--out", out, *TINY, *_TRAIN_WINDOW
    )
    assert result.code == 0, result.err
    assert read_run_record(out).feature_names == ("load", "temp")


def _stream_rows(result: CliResult) -> list[str]:
    return [line for line in result.out.splitlines() if line.strip()]


@pytest.mark.parametrize("header", [False, True], ids=["no-header", "reordered-header"])
def test_stream_csv_with_a_bom_reads_like_the_plain_file(
    cli_fd: CliRunner, tmp_path: Path, stream_model: Path, header: bool
) -> None:
    frames = _x(1, 6, seed=4)[0]
    if header:  # columns in another order: must be matched by name
        body = "\n".join(f"{c:.5f},{b:.5f},{a:.5f}" for a, b, c in frames)
        text = "f2,f1,f0\n" + body + "\n"
    else:
        text = "\n".join(",".join(f"{v:.5f}" for v in row) for row in frames) + "\n"
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes(text.encode())
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    want = cli_fd("run", stream_model, "--stream", "--input", plain)
    got = cli_fd("run", stream_model, "--stream", "--input", bom)
    assert want.code == 0 and got.code == 0, (want.err, got.err)
    assert len(_stream_rows(want)) == 1 + len(frames)
    assert _stream_rows(got) == _stream_rows(want)


# ============================================================================================
# 8 and 14: pickles and files whose header claims more memory than the machine has


def test_pickled_npy_is_refused(cli_fd: CliRunner, tmp_path: Path, classify_model: Path) -> None:
    source = tmp_path / "objects.npy"
    np.save(source, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    out = tmp_path / "preds.csv"
    result = cli_fd("run", classify_model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(source), "pickle")


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


TERABYTES = (10**7, 10**6, 40)


def _huge_input(kind: str, folder: Path) -> Path:
    if kind == "npy-terabytes":
        path = folder / "huge.npy"
        path.write_bytes(_npy_header(TERABYTES) + b"\x00" * 64)
    elif kind == "npz-terabytes":
        path = folder / "huge.npz"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("X.npy", _npy_header(TERABYTES) + b"\x00" * 64)
    elif kind == "npy-3gib-truncated":
        path = folder / "big.npy"
        path.write_bytes(_npy_header((1000, 8000, 100)) + b"\x00" * 64)
    else:  # a real 3 GiB file of zeros, sparse on disk: valid, just too big for the limit
        path = folder / "sparse.npy"
        with path.open("wb") as handle:
            handle.write(_npy_header((1000, 8000, 100)))
            handle.truncate(handle.tell() + 1000 * 8000 * 100 * 4)
    return path


@posix_only
@pytest.mark.parametrize("kind", ["npy-terabytes", "npz-terabytes", "npy-3gib-truncated"])
def test_forged_size_header_is_refused_without_allocating(
    tmp_path: Path, classify_model: Path, kind: str
) -> None:
    source = _huge_input(kind, tmp_path)
    out = tmp_path / "preds.csv"
    result = cli_subprocess(
        "run", classify_model, "--input", source, "--output", out, cwd=tmp_path, limit_memory=True
    )
    assert_clean_failure(result, out, str(source))


@posix_only
def test_input_too_big_for_memory_is_a_clean_error(tmp_path: Path, classify_model: Path) -> None:
    source = _huge_input("npy-3gib-sparse", tmp_path)
    out = tmp_path / "preds.csv"
    try:
        result = cli_subprocess(
            "run", classify_model, "--input", source, "--output", out,
            cwd=tmp_path, limit_memory=True,
        )  # fmt: skip
    finally:
        source.unlink()  # sparse, but do not leave 3 GiB of apparent size behind
    # A clean error naming the file: not a MemoryError traceback, not a signal.
    assert_clean_failure(result, out, str(source))


@posix_only
def test_memory_limited_child_still_runs_a_normal_input(
    tmp_path: Path, classify_model: Path
) -> None:
    """Control for the two tests above: the memory cap alone does not make `run` fail."""
    source = tmp_path / "ok.npy"
    np.save(source, _x(2))
    out = tmp_path / "preds.csv"
    result = cli_subprocess(
        "run", classify_model, "--input", source, "--output", out, cwd=tmp_path, limit_memory=True
    )
    assert result.code == 0, result.err
    assert out.is_file()


# ============================================================================================
# 9 and 10: model files that are not models, and models ONNX Runtime cannot run


def _bad_model_file(kind: str, folder: Path, good: Path) -> Path:
    path = folder / f"{kind}.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(7).bytes(4096))
    elif kind == "csv-renamed":
        path.write_text(_GOOD_CSV, encoding="utf-8")
    elif kind == "directory":
        path.mkdir()
        (path / "model.onnx").write_bytes(good.read_bytes())
    elif kind == "lstm-without-hidden-size":
        _save(path, _lstm_model())
    elif kind == "opset-999":
        _save(path, _lstm_model(opset=999, hidden_size=LSTM_HIDDEN), check=False)
    elif kind == "lstm-layout-1":
        _save(path, _lstm_model(hidden_size=LSTM_HIDDEN, layout=1))
    # "missing": nothing is created
    return path


MODEL_FILES = ["empty", "truncated", "random-bytes", "csv-renamed", "missing"]
#: ONNX Runtime would log these load failures to fd 2 itself (edgelstm sets it to fatal-only).
WRONG_MODELS = [
    "lstm-without-hidden-size",
    "opset-999",
    "lstm-layout-1",
]


@pytest.mark.parametrize("kind", MODEL_FILES)
def test_unreadable_model_file(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path, kind: str
) -> None:
    model = _bad_model_file(kind, tmp_path, classify_model)
    source = tmp_path / "x.npz"
    np.savez(source, X=_x())
    out = tmp_path / "preds.csv"
    result = cli_fd("run", model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(model))


def test_model_path_that_is_a_folder(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path
) -> None:
    model = _bad_model_file("directory", tmp_path, classify_model)
    source = tmp_path / "x.npz"
    np.savez(source, X=_x())
    out = tmp_path / "preds.csv"
    result = cli_fd("run", model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(model))
    assert "does not exist" not in result.err
    assert "folder" in result.err or "directory" in result.err


@pytest.mark.parametrize("kind", WRONG_MODELS)
def test_well_formed_model_onnx_runtime_cannot_run(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path, kind: str
) -> None:
    model = _bad_model_file(kind, tmp_path, classify_model)
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((5, 2, LSTM_IN), np.float32))
    out = tmp_path / "y.npy"
    result = cli_fd("run", model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(model))


def test_the_lstm_control_model_runs(cli_fd: CliRunner, tmp_path: Path) -> None:
    """The same LSTM with hidden_size and layout 0 runs: the failures above are the attribute."""
    model = _save(tmp_path / "ok.onnx", _lstm_model(hidden_size=LSTM_HIDDEN))
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((5, 2, LSTM_IN), np.float32))
    out = tmp_path / "y.npy"
    result = cli_fd("run", model, "--input", source, "--output", out)
    assert result.code == 0, result.err
    assert np.load(out).shape == (5, 1, 2, LSTM_HIDDEN)


# ============================================================================================
# 11: external data that points outside the model's folder

SECRET = np.array([31337.5, 27182.25, 16180.125], np.float32)


def _external_model(folder: Path, location: str) -> Path:
    """y = x + w, with w [1, 3] stored as external data at ``location``."""
    w = TensorProto()
    w.name = "w"
    w.data_type = TensorProto.FLOAT
    w.dims.extend([1, 3])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    model = _model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [_tensor("x", TensorProto.FLOAT, ["N", 3])],
        [_tensor("y", TensorProto.FLOAT, ["N", 3])],
        [w],
    )
    folder.mkdir(parents=True, exist_ok=True)
    return _save(folder / "model.onnx", model, check=False)


@pytest.fixture
def escape_layout(tmp_path: Path) -> tuple[Path, Path]:
    """``outside.bin`` (the secret) next to an empty ``models/`` folder."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(SECRET.tobytes())
    return tmp_path / "models", outside


def _escaping_model(kind: str, models: Path, outside: Path) -> Path:
    if kind == "parent-relative":
        return _external_model(models, "../outside.bin")
    if kind == "absolute":
        return _external_model(models, str(outside.resolve()))
    models.mkdir()
    (models / "weights.bin").symlink_to(outside)
    return _external_model(models, "weights.bin")


ESCAPES = ["parent-relative", "absolute", "symlink"]


@pytest.mark.parametrize("kind", ESCAPES)
def test_external_data_outside_the_model_folder_is_refused(
    cli_fd: CliRunner, tmp_path: Path, escape_layout: tuple[Path, Path], kind: str
) -> None:
    models, outside = escape_layout
    model = _escaping_model(kind, models, outside)
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((2, 3), np.float32))
    out = tmp_path / "y.npy"
    result = cli_fd("run", model, "--input", source, "--output", out)
    assert_clean_failure(result, out, str(model))
    assert "31337" not in result.out + result.err  # the secret's values are nowhere


@pytest.mark.parametrize("kind", ESCAPES)
def test_quantize_refuses_escaping_external_data(
    cli_fd: CliRunner, tmp_path: Path, escape_layout: tuple[Path, Path], kind: str
) -> None:
    models, outside = escape_layout
    model = _escaping_model(kind, models, outside)
    out = tmp_path / "q.onnx"
    result = cli_fd("quantize", model, "--mode", "dynamic-int8", "--out", out)
    assert_clean_failure(result, out, str(model))


def test_external_data_inside_the_model_folder_is_read(cli_fd: CliRunner, tmp_path: Path) -> None:
    """Control: the same layout with the weights really inside the folder runs."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(SECRET.tobytes())
    model = _external_model(models, "weights.bin")
    source = tmp_path / "x.npy"
    np.save(source, np.ones((2, 3), np.float32))
    out = tmp_path / "y.npy"
    result = cli_fd("run", model, "--input", source, "--output", out)
    assert result.code == 0, result.err
    np.testing.assert_array_equal(np.load(out), np.ones((2, 3)) + SECRET)


# ============================================================================================
# 12: hostile weights for `export --model file.py:factory --weights W`, hostile checkpoints

USER_MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def make():
    return Net()
"""


class Payload:
    """Unpickling this opens (creates) ``marker``: proof that the pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@dataclass(frozen=True)
class UserModel:
    source: Path
    marker: Path
    folder: Path

    def export_args(self, weights: Path, out: Path) -> list[str | Path]:
        reference = f"{self.source}:make"
        return ["export", "--model", reference, "--weights", weights, "--input-shape", "1,5,3",
                "--out", out]  # fmt: skip


@pytest.fixture
def user_model(tmp_path: Path) -> UserModel:
    source = tmp_path / "net.py"
    source.write_text(USER_MODULE, encoding="utf-8")
    return UserModel(source, tmp_path / "PWNED", tmp_path)


def _hostile_weights(kind: str, user: UserModel, classify_model: Path) -> Path:
    folder = user.folder
    if kind == "pickle-payload":
        path = folder / "evil.pt"
        torch.save({"gru.weight_ih_l0": Payload(user.marker)}, path)
    elif kind == "whole-module":
        path = folder / "whole.pt"
        torch.save(torch.nn.GRU(3, 4, batch_first=True), path)
    elif kind == "truncated":
        path = folder / "half.pt"
        torch.save({"w": torch.zeros(64, 64)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # an .onnx model handed over as weights
        path = folder / "model.onnx"
        shutil.copyfile(classify_model, path)
    return path


@pytest.mark.parametrize("force_no_weights_only", [False, True], ids=["default", "env-override"])
@pytest.mark.parametrize("kind", ["pickle-payload", "whole-module", "truncated", "onnx-as-weights"])
def test_hostile_weights_are_refused_without_running_code(
    cli_fd: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    user_model: UserModel,
    classify_model: Path,
    kind: str,
    force_no_weights_only: bool,
) -> None:
    weights = _hostile_weights(kind, user_model, classify_model)
    if force_no_weights_only:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    out = user_model.folder / "out.onnx"
    result = cli_fd(*user_model.export_args(weights, out))
    assert_clean_failure(result, out, str(weights))
    assert not user_model.marker.exists(), "the pickle payload ran"


def test_plain_pickle_weights_give_only_the_error_line(user_model: UserModel) -> None:
    weights = user_model.folder / "raw.pt"
    with weights.open("wb") as handle:
        pickle.dump({"gru.weight_ih_l0": Payload(user_model.marker)}, handle, protocol=4)
    out = user_model.folder / "out.onnx"
    result = cli_subprocess(*user_model.export_args(weights, out), cwd=user_model.folder)
    assert not user_model.marker.exists(), "the pickle payload ran"
    assert_clean_failure(result, out, str(weights))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_checkpoint_with_damaged_safetensors(
    cli_fd: CliRunner, tmp_path: Path, trained_classify: TrainResult, damage: str
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_classify.out, run_dir)
    weights = run_dir / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.write_bytes(np.random.default_rng(5).bytes(len(data)))
    out = tmp_path / "m.onnx"
    result = cli_fd("export", run_dir, "--out", out)
    assert_clean_failure(result, out, str(weights))


# ============================================================================================
# 13: a provider that is not here


@needs_no_cuda
def test_cuda_without_cuda_is_refused(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path
) -> None:
    source = tmp_path / "x.npz"
    np.savez(source, X=_x())
    out = tmp_path / "preds.csv"
    result = cli_fd("run", classify_model, "--input", source, "--output", out, "--provider", "cuda")
    assert_clean_failure(result, out, "cuda", "--fallback")


@needs_no_cuda
def test_cuda_fallback_json_is_exactly_one_document(
    cli_fd: CliRunner, tmp_path: Path, classify_model: Path
) -> None:
    source = tmp_path / "x.npz"
    np.savez(source, X=_x())
    out = tmp_path / "preds.csv"
    result = cli_fd(
        "run", classify_model, "--input", source, "--output", out,
        "--provider", "cuda,cpu", "--fallback", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    document = json.loads(result.out)  # the whole of stdout, nothing else
    assert document["session"]["provider"] == "cpu"
    assert document["session"]["fell_back"] is True
    assert any("cuda" in n for n in document["notices"])
    assert out.is_file()


# ============================================================================================
# Ctrl-C during a long session.run: exit 130, nothing written


LOOP_WIDTH = 256
LOOP_TRIPS = 40_000  # ~15 s uninterrupted on one core


@pytest.fixture(scope="module")
def loop_model(work: Path) -> Path:
    """x [N, 256] -> y: a Loop of LOOP_TRIPS matrix products, one long session.run."""
    n = LOOP_WIDTH
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "W"], ["acc_out"]),
        ],
        "body",
        [
            _tensor("i", TensorProto.INT64, []),
            _tensor("cond_in", TensorProto.BOOL, []),
            _tensor("acc_in", TensorProto.FLOAT, ["N", n]),
        ],
        [
            _tensor("cond_out", TensorProto.BOOL, []),
            _tensor("acc_out", TensorProto.FLOAT, ["N", n]),
        ],
    )
    initializers = [
        numpy_helper.from_array(np.array(LOOP_TRIPS, np.int64), "M"),
        numpy_helper.from_array(np.array(True), "C"),
        numpy_helper.from_array(np.eye(n, dtype=np.float32), "W"),
    ]
    model = _model(
        [helper.make_node("Loop", ["M", "C", "x"], ["y"], body=body)],
        [_tensor("x", TensorProto.FLOAT, ["N", n])],
        [_tensor("y", TensorProto.FLOAT, ["N", n])],
        initializers,
    )
    return _save(work / "loop.onnx", model)


def _interrupt(argv: list[str | Path], cwd: Path, *, after_s: float) -> CliResult:
    """Start ``edgelstm ARGV``, press Ctrl-C (SIGINT to its process group) after ``after_s``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgelstm", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=SUBPROCESS_ENV,
        start_new_session=True,
    )
    try:
        time.sleep(after_s)
        assert proc.poll() is None, "the command ended before the signal; make it longer"
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)  # uninterrupted it runs ~15-20 s more
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not stop the command within 10 s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return CliResult(code=proc.returncode, out=out, err=err)


def _assert_interrupted(result: CliResult, out: Path) -> None:
    assert result.code == 130, result
    assert "Traceback" not in result.out + result.err, result.err
    assert "interrupted" in result.err
    assert_nothing_written(out)


@posix_only
def test_ctrl_c_stops_run_mid_session(tmp_path: Path, loop_model: Path) -> None:
    source = tmp_path / "x.npy"
    np.save(source, np.ones((LOOP_WIDTH, LOOP_WIDTH), np.float32))
    out = tmp_path / "y.npy"
    result = _interrupt(
        ["run", loop_model, "--input", source, "--output", out], tmp_path, after_s=3.0
    )
    _assert_interrupted(result, out)


@posix_only
def test_ctrl_c_stops_benchmark(tmp_path: Path, classify_model: Path) -> None:
    out = tmp_path / "bench.json"
    argv: list[str | Path] = [
        "benchmark", classify_model, "--batch", "64", "--seq", "20000",
        "--warmup", "0", "--iterations", "60", "--json", out,
    ]  # fmt: skip
    result = _interrupt(argv, tmp_path, after_s=4.0)
    _assert_interrupted(result, out)


# ============================================================================================
# 15: SIGKILL while writing or at the rename leaves the old artifact, a complete new one, or
# nothing. The kills are deterministic: fileio's test hook (EDGELSTM_TEST_KILL_AT) makes the
# child SIGKILL itself with the new content complete in its temporary sibling ("write") or just
# after the first rename ("rename"), the two moments a timed kill almost never hit.


LANES = 2  # concurrent children (the suite targets 2 cores)
KILL_POINTS = ("write", "rename")


def _exchange_works(folder: Path) -> bool:
    """Whether this system swaps folders atomically (Linux renameat2 on this file system)."""
    first, second = folder / "probe-a", folder / "probe-b"
    first.mkdir()
    second.mkdir()
    try:
        return fileio._exchange(first, second)
    finally:
        shutil.rmtree(first)
        shutil.rmtree(second)


def _layout(folder: Path) -> list[str]:
    """The names in ``folder``, the random part of temporary siblings spelt ``*``."""
    return sorted(
        re.sub(r"^(\..+)\.[a-z0-9_]+\.(tmp|old)$", r"\1.*.\2", p.name) for p in folder.iterdir()
    )


def _sibling(folder: Path, name: str, suffix: str) -> Path:
    (found,) = folder.glob(f".{name}.*.{suffix}")
    return found


@dataclass
class Child:
    """One ``python -m edgelstm`` process that SIGKILLs itself at ``kill_at``."""

    argv: list[str]
    target: Path
    kill_at: str
    old: bytes | None = None  # the pre-existing artifact (--overwrite runs)
    code: int | None = None


def _run_children(children: list[Child], cwd: Path, timeout_s: float = 300) -> None:
    """Run ``children`` LANES at a time, each with the kill hook set to its ``kill_at``."""
    waiting = list(children)
    running: list[tuple[Child, subprocess.Popen[bytes]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while waiting or running:
            while waiting and len(running) < LANES:
                child = waiting.pop(0)
                env = {**SUBPROCESS_ENV, fileio.KILL_AT_ENV: child.kill_at}
                proc = subprocess.Popen(
                    [sys.executable, "-m", "edgelstm", *child.argv],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=cwd,
                    env=env,
                )
                running.append((child, proc))
            time.sleep(0.02)
            assert time.monotonic() < deadline, "kill-test children hang"
            for child, proc in list(running):
                if proc.poll() is not None:
                    child.code = proc.returncode
                    running.remove((child, proc))
    finally:
        for _, proc in running:
            proc.kill()
            proc.wait()


def _old_model_bytes() -> bytes:
    """A valid model that is not what any command writes: recognisable if it survives."""
    model = _model(
        [helper.make_node("Neg", ["x"], ["y"])],
        [_tensor("x", TensorProto.FLOAT, ["N", 3])],
        [_tensor("y", TensorProto.FLOAT, ["N", 3])],
    )
    return bytes(model.SerializeToString())


def _assert_complete_onnx(path: Path) -> None:
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _assert_complete_checkpoint(path: Path) -> None:
    from edgelstm.training.checkpoint import load_checkpoint

    load_checkpoint(path)


@dataclass(frozen=True)
class KillCommand:
    name: str
    argv: Callable[[Path], list[str]]  # output path -> arguments
    folder: bool  # the artifact is a checkpoint folder


@pytest.fixture(scope="module")
def kill_runs(
    trained_classify: TrainResult, classify_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[Child]]:
    """Per command, one child per kill point, writing fresh and overwriting an old artifact;
    each in its own folder, all run LANES at a time."""
    root = tmp_path_factory.mktemp("kills")
    data = write_classify_npz(root / "tiny.npz", n=16, steps=8)
    tiny = ["--hidden", "4", "--layers", "1", "--epochs", "1"]
    commands = [
        KillCommand("export", lambda out: ["export", str(trained_classify.out), "--out", str(out)],
                    folder=False),
        KillCommand("quantize", lambda out: ["quantize", str(classify_model), "--mode",
                                             "dynamic-int8", "--out", str(out)], folder=False),
        KillCommand("train", lambda out: ["train", "--task", "classify", "--data", str(data),
                                          "--out", str(out), *tiny], folder=True),
    ]  # fmt: skip
    children: dict[str, list[Child]] = {}
    for command in commands:
        children[command.name] = []
        for kill_at in KILL_POINTS:
            for overwrite in (False, True):
                case = root / command.name / f"{kill_at}-{'overwrite' if overwrite else 'fresh'}"
                case.mkdir(parents=True)
                target = case / ("run" if command.folder else "out.onnx")
                argv = command.argv(target)
                old: bytes | None = None
                if overwrite:
                    argv.append("--overwrite")
                    if command.folder:
                        target.mkdir()
                        old = b"old checkpoint"
                        (target / "keep.txt").write_bytes(old)
                    else:
                        old = _old_model_bytes()
                        target.write_bytes(old)
                children[command.name].append(Child(argv, target, kill_at, old=old))
    _run_children([c for kids in children.values() for c in kids], root)
    return children


@posix_only
@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "quantize", "train"])
def test_sigkill_leaves_nothing_old_or_complete(
    kill_runs: dict[str, list[Child]], command: str, tmp_path: Path
) -> None:
    folder = command == "train"
    complete = _assert_complete_checkpoint if folder else _assert_complete_onnx
    exchange = _exchange_works(tmp_path)
    name = "run" if folder else "out.onnx"
    killed_while_writing = []
    for child in kill_runs[command]:
        case, target = child.target.parent, child.target
        where = f"{command} killed at {child.kill_at} ({'overwrite' if child.old else 'fresh'})"
        assert child.code == -signal.SIGKILL, f"{where}: exit {child.code}, the hook never fired"
        layout = _layout(case)
        if child.kill_at == "write":
            # The new content is complete in the temporary sibling; the target is untouched.
            expected = [f".{name}.*.tmp"] + ([name] if child.old else [])
            assert layout == sorted(expected), f"{where}: {layout}"
            complete(_sibling(case, name, "tmp"))
            killed_while_writing.append(child)
            if child.old is None:
                continue
            if folder:
                assert [p.name for p in target.iterdir()] == ["keep.txt"], where
                assert (target / "keep.txt").read_bytes() == child.old, where
            else:
                assert target.read_bytes() == child.old, where
        elif not folder or child.old is None:
            # A file is replaced in one rename; a new folder appears in one rename.
            assert layout == [name], f"{where}: {layout}"
            complete(target)
            if child.old is not None:
                assert target.read_bytes() != child.old, where
        elif exchange:
            # One atomic exchange: the new checkpoint is in place, the old one waits in the
            # temporary sibling for a clean-up that never ran.
            assert layout == [f".{name}.*.tmp", name], f"{where}: {layout}"
            complete(target)
            kept = _sibling(case, name, "tmp")
            assert (kept / "keep.txt").read_bytes() == child.old, where
        else:
            # Two renames, killed between them: the next check puts the old folder back.
            assert layout == [f".{name}.*.old", f".{name}.*.tmp"], f"{where}: {layout}"
            fileio.check_output_path(target, overwrite=True, kind="folder")
            assert (target / "keep.txt").read_bytes() == child.old, where
    assert killed_while_writing, "no kill found the temporary sibling: the test proves nothing"


@posix_only
@pytest.mark.parametrize("kill_at", KILL_POINTS)
@pytest.mark.parametrize("swap", ["exchange", "two-renames"])
def test_crash_between_the_renames_of_an_overwrite_keeps_a_folder(
    tmp_path: Path, swap: str, kill_at: str
) -> None:
    """A folder replace killed at the write or the rename, with the atomic exchange and with
    the two-rename fallback of systems without one (macOS, Windows, older kernels)."""
    if swap == "exchange" and not _exchange_works(tmp_path):
        pytest.skip("no atomic folder exchange (renameat2) on this system")
    target = tmp_path / "run"
    target.mkdir()
    (target / "keep.txt").write_text("old", encoding="utf-8")
    script = """
import sys
from pathlib import Path
from edgelstm import fileio

if sys.argv[2] == "two-renames":
    fileio._exchange = lambda first, second: False  # as where renameat2 is missing
with fileio.atomic_folder(Path(sys.argv[1]), overwrite=True) as tmp:
    (tmp / "new.txt").write_text("new")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, str(target), swap],
        cwd=tmp_path,
        env={**SUBPROCESS_ENV, fileio.KILL_AT_ENV: kill_at},
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}: the hook never fired"

    def contents(folder: Path) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}

    layout = _layout(tmp_path)
    if kill_at == "write":
        assert layout == [".run.*.tmp", "run"], layout
        assert contents(target) == {"keep.txt": "old"}
    elif swap == "exchange":
        assert layout == [".run.*.tmp", "run"], layout
        assert contents(target) == {"new.txt": "new"}
        assert contents(_sibling(tmp_path, "run", "tmp")) == {"keep.txt": "old"}
    else:
        # The gap: the old folder moved aside, the new one not yet in place...
        assert layout == [".run.*.old", ".run.*.tmp"], layout
        assert contents(_sibling(tmp_path, "run", "old")) == {"keep.txt": "old"}
        assert contents(_sibling(tmp_path, "run", "tmp")) == {"new.txt": "new"}
        # ... closed by the next look at the path: the old folder is back, and protected.
        with pytest.raises(OutputExistsError, match="--overwrite"):
            fileio.check_output_path(target, overwrite=False, kind="folder")
        assert _layout(tmp_path) == [".run.*.tmp", "run"]
        assert contents(target) == {"keep.txt": "old"}


def _constant_of_shape_model(path: Path) -> Path:
    """A model whose output size comes from an input *value*: the caller picks the memory."""
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["y"])],
        "bomb",
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@posix_only
@pytest.mark.parametrize("rows", [10**5, 10**6])  # 20 GB and 200 GB of float32 zeros
def test_value_driven_allocation_fails_cleanly_under_a_memory_limit(
    cli_fd: CliRunner, tmp_path: Path, rows: int
) -> None:
    model = _constant_of_shape_model(tmp_path / "bomb.onnx")
    source = tmp_path / "shape.npz"
    np.savez(source, shape=np.array([rows, 5 * 10**4], np.int64))
    out = tmp_path / "y.npz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgelstm",
            "run",
            str(model),
            "--input",
            str(source),
            "--output",
            str(out),
            "--memory-limit",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ONNX Runtime failed on"), lines
    assert "Failed to allocate memory" in lines[0]
    assert not out.exists()
