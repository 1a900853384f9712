"""Shared fixtures: tiny real data files on disk, tiny model options and an in-process CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from edgelstm.training.trainer import TrainResult

# Tiny models train in well under a second on one thread, but two OpenMP threads fighting
# over two busy cores made the same run ~60x slower here; set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Model options that keep every training run tiny (CLI spelling).
TINY = ["--hidden", "8", "--layers", "1", "--epochs", "2"]
#: Window options for forecast/anomaly runs on the ~200-step fixture series.
WINDOW = ["--lookback", "16", "--horizon", "4"]
#: The same, as keyword arguments of :func:`edgelstm.training.train`.
TINY_KW: dict[str, Any] = {"hidden": 8, "layers": 1, "epochs": 2}
WINDOW_KW: dict[str, Any] = {"lookback": 16, "horizon": 4}


def _cuda_built_in() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


#: Provider-policy tests expect a CPU-only onnxruntime (the `edgelstm[cpu]` install): on an
#: onnxruntime-gpu install `--provider cuda` is not an error, so their premise is gone.
needs_no_cuda = pytest.mark.skipif(
    _cuda_built_in(), reason="onnxruntime here has the CUDA provider; these tests need it absent"
)


def single_thread() -> None:
    """Keep torch on one thread even if something imported it before this conftest.

    Environments without torch (the openvino and plugin-EP ones in .ci/providers) have
    nothing to pin.
    """
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# CI refuses unexpected skips

#: The only reasons a test may skip in CI: the hardware or the onnxruntime build a test needs
#: is not in this environment. Any other skip there (most often a package the set-up line
#: should have installed) is a broken install that a green run would hide, so it fails the
#: run. Tests deselected with ``-m`` never run, so they need no entry.
ALLOWED_CI_SKIPS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        # No CUDA device or no onnxruntime-gpu: the `gpu` tests.
        r"^CUDA (provider|is) not usable here",
        r"sees no CUDA device",
        # On an onnxruntime-gpu install, the tests whose premise is a CPU-only build.
        r"^CUDA is built in here|^onnxruntime here has the CUDA provider",
        # `openvino` and `plugin_ep` tests outside their own environments; .ci/providers runs
        # them there and fails if one of them skips.
        r"^needs the openvino extra",
        r"^set EDGELSTM_QUICKSTART",
        r"^needs a real plugin EP package",
        # The OpenVINO build of onnxruntime (.ci/providers) ships no Azure provider.
        r"^this onnxruntime build has no Azure provider",
    )
)


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """Why ``report`` skipped, or None when it did not (an xfail is not a skip)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: <reason>")
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


class CiSkipPolicy:
    """Fails the run when a test or module skipped for a reason not in ALLOWED_CI_SKIPS."""

    def __init__(self) -> None:
        self.refused: list[tuple[str, str]] = []  # (test id, reason)

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        reason = skip_reason(report)
        if reason is not None and not any(p.search(reason) for p in ALLOWED_CI_SKIPS):
            self.refused.append((report.nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)  # a module-level skip skips its whole file at collection

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.refused:
            return
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        reporter.write_sep("=", f"{len(self.refused)} unexpected skip(s) in CI", red=True)
        for nodeid, reason in self.refused:
            reporter.write_line(f"{nodeid}: {reason}")
        reporter.write_line(
            "CI allows a skip only for a reason in ALLOWED_CI_SKIPS (tests/conftest.py): "
            "install what is missing, or fix the test"
        )


def running_in_ci() -> bool:
    """CI sets ``CI`` (``CI=true bash .ci/run``); "0" or "false" count as unset."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def pytest_configure(config: pytest.Config) -> None:
    if running_in_ci():
        config.pluginmanager.register(CiSkipPolicy(), "edgelstm-ci-skip-policy")


# --------------------------------------------------------------------------------------------
# data files


def write_classify_npz(
    path: Path, *, n: int = 60, steps: int = 20, features: int = 3, seed: int = 0, offset: float = 0
) -> Path:
    """Two classes separable by the sign of the mean; variable lengths via ``lengths``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = 0.5 * rng.normal(size=(n, steps, features)) + np.where(y == 1, 1.0, -1.0)[:, None, None]
    X = (X + offset).astype(np.float32)
    lengths = rng.integers(steps // 2, steps + 1, size=n).astype(np.int64)
    np.savez(path, X=X, y=y, lengths=lengths)
    return path


def write_forecast_csv(path: Path, *, steps: int = 200, seed: int = 0, offset: float = 0) -> Path:
    """A noisy sine and a cosine, with a header row."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    values = np.stack(
        [np.sin(t / 5) + 0.05 * rng.normal(size=steps) + offset, np.cos(t / 7) + offset], axis=1
    )
    np.savetxt(path, values, delimiter=",", header="load,temp", comments="", fmt="%.6f")
    return path


def write_anomaly_csv(path: Path, *, steps: int = 200, seed: int = 0, spike: bool = True) -> Path:
    """A noisy sine with a labelled spike region (steps 150..157), label column is_anomaly.

    ``spike=False`` writes the same kind of series with no spike (all labels 0): normal data.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    values = np.sin(t / 4) + 0.02 * rng.normal(size=steps)
    labels = np.zeros(steps, dtype=np.int64)
    if spike:
        labels[150:158] = 1
        values[150:158] += 4.0
    lines = ["value,is_anomaly"] + [f"{v:.6f},{k}" for v, k in zip(values, labels, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: What the tests' stand-in timer answers for quantization candidates: the FP32 model first,
#: then each candidate. Real timings would make which candidate wins (and whether a
#: "slower than FP32" warning appears) depend on the machine's load; tests that exercise the
#: choice set their own numbers.
FAKE_FP32_MS, FAKE_CANDIDATE_MS = 1.0, 0.5


@pytest.fixture(autouse=True, scope="session")
def _deterministic_quantization_timing() -> Iterator[None]:
    # Session scope: module fixtures that quantize run before any function-scoped patch.
    def fake(paths: Any, feed: Any) -> list[float]:
        return [FAKE_FP32_MS] + [FAKE_CANDIDATE_MS] * (len(paths) - 1)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("edgelstm.exporters.op_selection.measure_latencies", fake)
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def classify_npz(data_dir: Path) -> Path:
    """60 sequences, 2 classes (mean sign), 3 features, lengths 10..20. Do not modify."""
    return write_classify_npz(data_dir / "classify.npz")


@pytest.fixture(scope="session")
def forecast_csv(data_dir: Path) -> Path:
    """200 rows x 2 columns (load, temp) with a header. Do not modify."""
    return write_forecast_csv(data_dir / "forecast.csv")


@pytest.fixture(scope="session")
def anomaly_csv(data_dir: Path) -> Path:
    """200 rows: a sine with a spike at 150..157, labels in is_anomaly. Do not modify."""
    return write_anomaly_csv(data_dir / "anomaly.csv")


# --------------------------------------------------------------------------------------------
# a shared trained checkpoint


@pytest.fixture(scope="session")
def trained_classify(tmp_path_factory: pytest.TempPathFactory, classify_npz: Path) -> TrainResult:
    """One tiny classify run through the Python API, shared read-only between tests."""
    single_thread()
    from edgelstm.training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "classify"
    return train("classify", data=classify_npz, out=out, seed=0, **TINY_KW)


@pytest.fixture(scope="session")
def stream_model(trained_classify: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared classify run exported for streaming (``export --streaming``), read-only."""
    from edgelstm.exporters import export

    path = tmp_path_factory.mktemp("stream") / "classify.stream.onnx"
    export(trained_classify.out, path, streaming=True)
    return path


# --------------------------------------------------------------------------------------------
# the CLI, in process


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        """Non-blank stderr lines."""
        return [line for line in self.err.splitlines() if line.strip()]


CliRunner = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[CliRunner]:
    """``cli("train", "--task", ...)`` runs ``edgelstm.cli.main`` and captures its output."""
    single_thread()
    from edgelstm.cli import main

    def invoke(*argv: str | Path) -> CliResult:
        capsys.readouterr()  # drop whatever earlier code printed
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code=code, out=captured.out, err=captured.err)

    yield invoke


def assert_nothing_written(out: Path) -> None:
    """No file at ``out`` and no temporary sibling left behind."""
    assert not out.exists(), f"{out} was written"
    leftovers = list(out.parent.glob(f".{out.name}.*"))
    assert not leftovers, f"temporary siblings left behind: {leftovers}"


def assert_clean_failure(result: CliResult, out: Path | None, *words: str, code: int = 2) -> None:
    """The contract for bad input: exit ``code``, one `error:` line holding ``words``, no
    traceback, nothing on stdout, nothing written at ``out``."""
    assert result.code == code, result
    assert "Traceback" not in result.out + result.err, result.err
    assert result.out.strip() == "", result.out
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    if out is not None:
        assert_nothing_written(out)


# --------------------------------------------------------------------------------------------
# sequence-labelling data (tag, transcribe)

#: Class names of :func:`write_tag_npz`'s frames; class k raises feature k.
TAG_CLASSES = ("idle", "walk", "run")
#: The characters :func:`write_transcribe_npz` spells; token k raises feature k.
TRANSCRIBE_ALPHABET = "abc"


def write_tag_npz(
    path: Path, *, n: int = 48, steps: int = 30, features: int = 3, seed: int = 0
) -> Path:
    """Per-frame labels: each sequence is three segments of the classes in TAG_CLASSES (in a
    random order), class k adding 1.5 to feature k; lengths 20..steps, y -1 past them."""
    rng = np.random.default_rng(seed)
    X = 0.3 * rng.normal(size=(n, steps, features))
    y = np.full((n, steps), -1, dtype=np.int64)
    lengths = rng.integers(steps * 2 // 3, steps + 1, size=n).astype(np.int64)
    for i in range(n):
        cuts = np.sort(rng.choice(np.arange(3, int(lengths[i]) - 3), 2, replace=False))
        bounds = zip([0, *cuts], [*cuts, lengths[i]], rng.permutation(3), strict=True)
        for start, end, label in bounds:
            y[i, start:end] = label
            X[i, start:end, label] += 1.5
    np.savez(path, X=X.astype(np.float32), y=y, lengths=lengths, classes=np.array(TAG_CLASSES))
    return path


def write_transcribe_npz(
    path: Path,
    *,
    n: int = 60,
    features: int = 3,
    seed: int = 0,
    frames_per_token: int = 6,
    texts: list[str] | None = None,
) -> Path:
    """Texts of 1-3 characters from TRANSCRIBE_ALPHABET (or ``texts``), each character a run
    of ``frames_per_token`` frames raising its feature, with 2-4 silent frames around each;
    variable lengths via ``lengths``."""
    rng = np.random.default_rng(seed)
    if texts is None:
        letters = list(TRANSCRIBE_ALPHABET)
        texts = ["".join(rng.choice(letters, int(rng.integers(1, 4)))) for _ in range(n)]
    sequences = []
    for text in texts:
        parts = [np.zeros((int(rng.integers(2, 5)), features))]
        for char in text:
            token = np.zeros((frames_per_token, features))
            token[:, TRANSCRIBE_ALPHABET.index(char) % features] = 1.0
            parts += [token, np.zeros((int(rng.integers(2, 5)), features))]
        frames = np.concatenate(parts)
        sequences.append(frames + 0.1 * rng.normal(size=frames.shape))
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    X = np.zeros((len(texts), int(lengths.max()), features), dtype=np.float32)
    for i, frames in enumerate(sequences):
        X[i, : len(frames)] = frames
    np.savez(path, X=X, y=np.array(texts, dtype=str), lengths=lengths)
    return path


# --------------------------------------------------------------------------------------------
# serve: the ASGI app in process, and a port for a real server


@asynccontextmanager
async def serving(app: Any, hang_s: float = 20.0) -> AsyncIterator[Any]:
    """``app`` (``edgelstm serve``'s ASGI app) with its lifespan running, so the batcher has
    started, and an ``httpx.AsyncClient`` calling it in process; ``hang_s`` bounds the
    shutdown (queued chunks finish, then the batcher's tasks stop)."""
    import httpx  # the dev extra; the torch-free device environment never imports it

    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            health = await client.get("/healthz")
            assert health.status_code == 200, health.text
            yield client
    finally:
        await asyncio.wait_for(lifespan.__aexit__(None, None, None), hang_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server_process(
    args: list[str], log: Path, env: dict[str, str] | None = None, hang_s: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``edgelstm serve ARGS`` as a real process until the block ends (then SIGTERM and a
    clean exit 0 is asserted, unless the block saw it exit), yielding its stderr so far once
    it announced its address, and the process. ``hang_s`` bounds a hang, not a timing."""
    command = [sys.executable, "-m", "edgelstm", "serve", *args]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("wb") as err:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=environ)
    try:
        for _ in range(int(hang_s / 0.05)):
            text = " ".join(log.read_text(encoding="utf-8").split())  # unwrap rich's lines
            assert server.poll() is None, text
            if "serving " in text and " on http" in text:
                break
            time.sleep(0.05)  # the server is starting: a bounded poll, not a timing
        else:
            raise AssertionError("the server never announced its address")
        yield text, server
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=hang_s)
            stderr = log.read_text(encoding="utf-8")
            assert server.returncode == 0, stderr
            assert "Traceback" not in stderr, stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
