"""Provider policy, session options and feed validation (runtimes/session.py, runtimes/feeds.py).

This machine has only the CPU provider; accelerator failure modes (not built in, failing to
initialise, silently replaced by the CPU) are reproduced with a stand-in onnxruntime module
that wraps the real one. Tests marked ``gpu`` need a usable CUDA provider and skip otherwise.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import CliRunner, needs_no_cuda
from onnx import TensorProto, helper

from edgelstm.errors import InvalidInputError, ProviderUnavailableError, first_line
from edgelstm.runtimes.ort import session as session_mod
from edgelstm.runtimes.ort.artifact import ModelProfile, load_artifact, model_profile
from edgelstm.runtimes.ort.execution import output_shapes, run_interruptible
from edgelstm.runtimes.ort.feeds import InputSpec, input_specs, validate_feeds
from edgelstm.runtimes.ort.providers import resolve_provider
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import (
    SessionConfig,
    parse_provider_list,
    provider_options,
)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x [batch, 4] -> Relu -> Mul by 2 -> y [batch, 4]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, tmp_path_factory.mktemp("models") / "relu.onnx")


class _FakeSession:
    """A real CPU session that reports whatever providers the stand-in says it got."""

    def __init__(self, real: Any, providers: list[str]) -> None:
        self._real = real
        self._providers = providers

    def get_providers(self) -> list[str]:
        return self._providers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _fake_ort(*, available: list[str], behaviour: str) -> types.SimpleNamespace:
    """onnxruntime look-alike: CUDA 'available'; sessions fail or silently run on CPU."""
    calls: list[Any] = []

    def make_session(path: str, options: Any, providers: list[Any]) -> Any:
        calls.append(providers)
        first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        real = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        if first == "CPUExecutionProvider":
            return real
        if behaviour == "fail":
            raise RuntimeError("libcudnn.so.9: cannot open shared object file")
        if behaviour == "accepts":  # listed first, yet every node lands on the CPU
            return _FakeSession(real, ["CUDAExecutionProvider", "CPUExecutionProvider"])
        return _FakeSession(real, ["CPUExecutionProvider"])

    return types.SimpleNamespace(
        get_available_providers=lambda: available,
        SessionOptions=ort.SessionOptions,
        GraphOptimizationLevel=ort.GraphOptimizationLevel,
        InferenceSession=make_session,
        calls=calls,
    )


# --------------------------------------------------------------------------------------------
# provider lists and config


def test_parse_provider_list_accepts_names_and_spacing() -> None:
    assert parse_provider_list("cuda, cpu") == ("cuda", "cpu")
    assert parse_provider_list("auto") == ("auto",)
    assert parse_provider_list("CUDAExecutionProvider") == ("CUDAExecutionProvider",)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("cuda,", "empty entry"), ("cdua", "did you mean"), ("auto,cpu", "auto cannot")],
)
def test_parse_provider_list_rejects(text: str, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        parse_provider_list(text)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"providers": ()}, "at least one provider"),
        ({"intra_op_threads": 0}, "intra-op threads"),
        ({"inter_op_threads": 0}, "inter-op threads"),
        ({"graph_optimization": "max"}, "graph optimization level"),
        ({"cuda_device": -1}, "device id"),
    ],
)
def test_session_config_rejects_bad_values(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        SessionConfig(**changes)


def test_session_options_are_applied(relu_model: Path) -> None:
    config = SessionConfig(
        intra_op_threads=2,
        inter_op_threads=1,
        spinning=False,
        graph_optimization="basic",
        memory_arena=False,
    )
    options = open_session(relu_model, config).session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.enable_cpu_mem_arena is False
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_provider_options_for_gpu_providers(tmp_path: Path) -> None:
    config = SessionConfig(
        cuda_device=1, cuda_graphs=True, tensorrt_fp16=True, tensorrt_cache=tmp_path
    )
    cuda = provider_options(resolve_provider("cuda"), config)
    assert cuda == {"device_id": "1", "enable_cuda_graph": "1"}
    trt = provider_options(resolve_provider("tensorrt"), config)
    assert trt["trt_fp16_enable"] == "1"
    assert trt["trt_engine_cache_path"] == str(tmp_path)
    assert provider_options(resolve_provider("cpu"), config) == {}


# --------------------------------------------------------------------------------------------
# strict policy and fallback


def test_cpu_session_runs_and_reports_placement(relu_model: Path) -> None:
    opened = open_session(relu_model)
    assert opened.provider == "cpu"
    assert not opened.fell_back
    assert opened.placement and set(opened.placement) == {"cpu"}
    assert sum(opened.placement.values()) >= 1
    out = opened.session.run(None, {"x": np.array([[-1, 0, 1, 2]], np.float32)})[0]
    np.testing.assert_array_equal(out, [[0, 0, 2, 4]])
    assert opened.to_json()["provider"] == "cpu"


def test_missing_provider_is_an_error_with_install_hint(relu_model: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match=r"edgelstm\[gpu\]") as caught:
        open_session(relu_model, SessionConfig(providers=("cuda",)))
    assert caught.value.exit_code == 2
    assert "--fallback" in str(caught.value)


def test_fallback_goes_on_and_says_why(relu_model: Path) -> None:
    opened = open_session(relu_model, SessionConfig(providers=("cuda", "cpu"), fallback=True))
    assert opened.provider == "cpu"
    assert opened.fell_back
    assert opened.requested == ("cuda", "cpu")
    assert any(n.startswith("cuda: not built into") for n in opened.notes)
    assert "fell back from cuda" in opened.describe()


@needs_no_cuda
def test_fallback_ends_on_the_cpu_when_the_list_omits_it(relu_model: Path) -> None:
    for providers in (("cuda",), ("cuda", "tensorrt")):
        opened = open_session(relu_model, SessionConfig(providers=providers, fallback=True))
        assert opened.provider == "cpu"
        assert opened.requested == (*providers, "cpu")
        assert any(n.startswith("cuda: not built into") for n in opened.notes)
        assert any("cpu: added as the last resort" in n for n in opened.notes), opened.notes
        assert opened.to_json()["session_config"]["providers"] == list(providers)


@needs_no_cuda
def test_a_listed_cpu_keeps_its_place_and_is_not_added_again(relu_model: Path) -> None:
    config = SessionConfig(providers=("cuda", "CPUExecutionProvider"), fallback=True)
    opened = open_session(relu_model, config)
    assert opened.requested == ("cuda", "cpu")
    assert not any("last resort" in n for n in opened.notes)


@needs_no_cuda
def test_strict_mode_adds_no_cpu(relu_model: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="--fallback") as caught:
        open_session(relu_model, SessionConfig(providers=("cuda",)))
    assert "cpu" not in str(caught.value).split(";")[0]


@needs_no_cuda
def test_streaming_session_falls_back_to_the_cpu_too(tmp_path: Path) -> None:
    from edgelstm.metadata import ModelMetadata
    from edgelstm.runtimes.model_io.streaming_session import StreamingSession

    # The smallest graph StreamingSession accepts: frames and state in, both passed through.
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("Identity", ["h"], ["h_out"]),
        ],
        "stream",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", 2]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "batch", 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time", 2]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, "batch", 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = ModelMetadata(
        variant="streaming",
        exporter="test",
        opset=17,
        torch_version="",
        edgelstm_version="",
        inputs={"x": "frames", "h": "state"},
        outputs={"y": "frames", "h_out": "state"},
        state={"h": [1, "batch", 3]},
    )
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    path = _save(model, tmp_path / "stream.onnx")
    stream = StreamingSession(path, session=SessionConfig(providers=("cuda",), fallback=True))
    assert stream.opened.provider == "cpu"
    assert any("last resort" in n for n in stream.opened.notes)


def test_fallback_with_nothing_usable_still_fails(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only an onnxruntime without its CPU provider leaves nothing to fall back to.
    fake = _fake_ort(available=["CUDAExecutionProvider"], behaviour="fail")
    monkeypatch.setattr(session_mod, "import_onnxruntime", lambda: fake)
    with pytest.raises(ProviderUnavailableError, match="no provider in the list") as caught:
        open_session(relu_model, SessionConfig(providers=("cuda",), fallback=True))
    assert "libcudnn" in str(caught.value)
    assert "cpu: not built into" in str(caught.value)


@needs_no_cuda
def test_cli_fallback_with_one_provider_runs_on_the_cpu_and_says_so(
    cli: CliRunner, relu_model: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.array([[-1, 0, 1, 2]], np.float32))
    out = tmp_path / "y.npz"
    argv = ["run", relu_model, "--input", inputs, "--output", out, "--provider", "cuda"]
    strict = cli(*argv)
    assert strict.code == 2 and "--fallback" in strict.err, strict.err
    result = cli(*argv, "--fallback")
    assert result.code == 0, result.err
    np.testing.assert_array_equal(np.load(out)["y"], [[0, 0, 2, 4]])
    notes = [line for line in result.err_lines if line.startswith("note:")]
    assert any("cuda: not built into" in line for line in notes), result.err
    assert any("cpu: added as the last resort" in line for line in notes), result.err
    assert "fell back from cuda" in result.err


def test_strict_order_without_fallback_does_not_try_the_second(relu_model: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="cuda"):
        open_session(relu_model, SessionConfig(providers=("cuda", "cpu")))


def test_silent_cpu_substitution_is_detected(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_ort(
        available=["CUDAExecutionProvider", "CPUExecutionProvider"], behaviour="silent"
    )
    monkeypatch.setattr(session_mod, "import_onnxruntime", lambda: fake)
    with pytest.raises(ProviderUnavailableError, match="silently replaced"):
        open_session(relu_model, SessionConfig(providers=("cuda",)))
    opened = open_session(relu_model, SessionConfig(providers=("cuda", "cpu"), fallback=True))
    assert opened.provider == "cpu"
    assert any("silently replaced" in n for n in opened.notes)
    # The CUDA attempt asked for the device and kept the CPU for unsupported nodes.
    assert fake.calls[0][0] == ("CUDAExecutionProvider", {"device_id": "0"})
    assert fake.calls[0][1] == "CPUExecutionProvider"


def test_provider_that_runs_no_node_is_not_used(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_ort(
        available=["CUDAExecutionProvider", "CPUExecutionProvider"], behaviour="accepts"
    )
    monkeypatch.setattr(session_mod, "import_onnxruntime", lambda: fake)
    with pytest.raises(ProviderUnavailableError, match="placed no node on it"):
        open_session(relu_model, SessionConfig(providers=("cuda",)))


def test_azure_provider_is_not_a_compute_device() -> None:
    from edgelstm.runtimes.ort.provider_report import probe_provider

    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no Azure provider")
    probe = probe_provider("azure")
    assert not probe.usable
    assert "placed no node" in probe.detail


def test_provider_that_fails_to_initialise(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_ort(available=["CUDAExecutionProvider", "CPUExecutionProvider"], behaviour="fail")
    monkeypatch.setattr(session_mod, "import_onnxruntime", lambda: fake)
    with pytest.raises(ProviderUnavailableError, match=r"failed to initialise.*libcudnn"):
        open_session(relu_model, SessionConfig(providers=("cuda",)))


def test_auto_picks_cpu_here_and_says_why(relu_model: Path) -> None:
    opened = open_session(relu_model, SessionConfig(providers=("auto",)))
    assert opened.provider == "cpu"
    assert opened.requested == ("cpu",)
    assert any(n.startswith("auto chose cpu") for n in opened.notes)


def test_auto_chooses_cuda_when_listed_and_falls_back_when_it_is_not_real(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_ort(
        available=["CUDAExecutionProvider", "CPUExecutionProvider"], behaviour="silent"
    )
    monkeypatch.setattr(session_mod, "import_onnxruntime", lambda: fake)
    opened = open_session(relu_model, SessionConfig(providers=("auto",)))
    assert opened.requested == ("cuda", "cpu")
    assert opened.provider == "cpu"
    assert opened.notes[0].startswith("auto chose cuda")


def test_a_broken_model_is_bad_input_not_a_provider_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InvalidInputError):
        open_session(bad)
    with pytest.raises(InvalidInputError, match="does not exist"):
        open_session(tmp_path / "missing.onnx")


def test_placement_notes_warn_about_cpu_only_ops_and_partial_placement() -> None:
    profile = ModelProfile("int8", frozenset({"DynamicQuantizeLSTM", "Gemm"}), False)
    cuda = resolve_provider("cuda")
    # Placement known: the note names what really ran on the CPU.
    (note,) = session_mod._placement_notes(
        cuda, profile, {"cuda": 5, "cpu": 3}, ("DynamicQuantizeLSTM", "DynamicQuantizeLSTM", "Gemm")
    )
    assert note.startswith("partial placement: 5 of 8 nodes on cuda, 3 on cpu")
    assert "(DynamicQuantizeLSTM x2, Gemm)" in note and "use --provider cpu" in note
    # Placement unknown (ONNX Runtime < 1.23): the graph's CPU-only ops are the best guess.
    (guess,) = session_mod._placement_notes(cuda, profile, {})
    assert "DynamicQuantizeLSTM has only a CPU kernel" in guess
    assert session_mod._placement_notes(cuda, profile, {"cuda": 8}) == []
    assert session_mod._placement_notes(resolve_provider("cpu"), profile, {"cpu": 7}) == []


# --------------------------------------------------------------------------------------------
# model profile and output shapes


def _single_node_model(tmp_path: Path, node: onnx.NodeProto, inits: list[Any]) -> Path:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _save(model, tmp_path / "m.onnx")


def test_first_line_keeps_the_head_of_a_long_message() -> None:
    error = RuntimeError("\n  [ONNXRuntimeError] : 1 : FAIL : bad node\n" + "detail\n" * 500)
    assert first_line(error) == "[ONNXRuntimeError] : 1 : FAIL : bad node"
    assert first_line(ValueError("x" * 1000)) == "x" * 300
    assert first_line(ValueError("x" * 1000), limit=200) == "x" * 200


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(""), RuntimeError(" \n \n")])
def test_first_line_of_an_exception_without_a_message_is_its_class_name(
    error: BaseException,
) -> None:
    # `str(exc).splitlines()[0]` raised IndexError here, inside the handler reporting the
    # failure (the serve batcher died of it).
    assert first_line(error) == type(error).__name__


def test_a_run_that_fails_without_a_message_is_still_one_readable_error() -> None:
    class FailingSession:
        def run(self, *args: Any) -> list[Any]:
            raise MemoryError()

    with pytest.raises(InvalidInputError, match=r"ONNX Runtime failed on x\.npz: MemoryError$"):
        run_interruptible(FailingSession(), None, {}, where="x.npz")


def test_model_profile_detects_int8_and_fp16(tmp_path: Path, relu_model: Path) -> None:
    b = helper.make_tensor("b", TensorProto.UINT8, [2, 2], [1, 2, 3, 4])
    int8 = _single_node_model(tmp_path, helper.make_node("MatMulInteger", ["a", "b"], ["y"]), [b])
    profile = model_profile(int8)
    assert profile.precision == "int8"
    assert profile.cpu_only_ops == ("MatMulInteger",)
    assert model_profile(relu_model).precision == "fp32"
    fp16 = onnx.load(str(relu_model))
    fp16.graph.initializer.append(helper.make_tensor("h", TensorProto.FLOAT16, [1], [1.0]))
    path = tmp_path / "fp16.onnx"
    onnx.save(fp16, str(path))
    assert model_profile(path).precision == "fp16"


def test_output_shapes_follow_input_symbols(relu_model: Path) -> None:
    session = open_session(relu_model).session
    assert output_shapes(session, {"x": (3, 4)}) == {"y": (3, 4)}
    with pytest.raises(InvalidInputError, match="does not follow from the input"):
        output_shapes(session, {})


# --------------------------------------------------------------------------------------------
# feeds


SPECS = (
    InputSpec("x", np.float32, ("batch", "time", 3)),
    InputSpec("ids", np.int32, ("batch",)),
)


def _feeds(**arrays: Any) -> dict[str, np.ndarray]:
    base = {"x": np.zeros((2, 5, 3), np.float32), "ids": np.zeros(2, np.int32)}
    base.update(arrays)
    return {k: v for k, v in base.items() if v is not None}


def test_input_specs_read_the_session(relu_model: Path) -> None:
    (spec,) = input_specs(open_session(relu_model).session)
    assert spec == InputSpec("x", np.float32, ("batch", 4))
    assert spec.describe() == "x: float32 [batch, 4]"


def test_valid_feeds_pass_unchanged() -> None:
    feeds, notices = validate_feeds(_feeds(), SPECS, source="in.npz")
    assert notices == []
    assert feeds["x"].dtype == np.float32 and feeds["ids"].dtype == np.int32


def test_float64_is_converted_with_a_notice() -> None:
    feeds, notices = validate_feeds(_feeds(x=np.ones((2, 5, 3))), SPECS, source="in.npz")
    assert feeds["x"].dtype == np.float32
    assert notices == ["in.npz: input `x` converted float64 → float32"]


def test_int64_that_fits_is_converted_with_a_notice() -> None:
    feeds, notices = validate_feeds(_feeds(ids=np.array([1, 2])), SPECS, source="in.npz")
    assert feeds["ids"].dtype == np.int32
    assert "int64 → int32 (lossless)" in notices[0]


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"ids": np.array([1, 2**40])}, "values outside int32"),
        ({"ids": np.array([1.0, 2.0], np.float32)}, "has dtype float32, the model expects int32"),
        ({"x": np.zeros((2, 5, 3), np.int64)}, "has dtype int64, the model expects float32"),
        ({"x": np.zeros((2, 5), np.float32)}, "rank 2"),
        ({"x": np.zeros((2, 5, 4), np.float32)}, "axis 2 has size 4, the model fixes it to 3"),
        ({"ids": np.zeros(3, np.int32)}, "dimension `batch` is 2 in input `x` but 3"),
        ({"x": np.zeros((2, 0, 3), np.float32)}, "is empty"),
        ({"x": np.full((2, 5, 3), np.nan, np.float32)}, r"NaN or Inf \(first at index \(0, 0, 0\)"),
        ({"extra": np.zeros(1)}, "extra are not inputs of the model"),
        ({"ids": None}, "missing input"),
        ({"x": np.full((2, 5, 3), 1e300)}, "outside the float32 range"),
    ],
)
def test_bad_feeds_are_refused_with_the_input_named(arrays: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle) as caught:
        validate_feeds(_feeds(**arrays), SPECS, source="in.npz")
    assert str(caught.value).startswith("in.npz: ")


def test_allow_nonfinite_passes_nan_on() -> None:
    x = np.full((2, 5, 3), np.inf, np.float32)
    feeds, _ = validate_feeds(_feeds(x=x), SPECS, source="in.npz", allow_nonfinite=True)
    assert np.isinf(feeds["x"]).all()


def test_optional_inputs_may_be_given_or_left_out() -> None:
    optional = (InputSpec("scale", np.float32, (1,)),)
    feeds, _ = validate_feeds(_feeds(), SPECS, source="s", optional=optional)
    assert "scale" not in feeds
    given = _feeds(scale=np.ones(1, np.float32))
    feeds, _ = validate_feeds(given, SPECS, source="s", optional=optional)
    assert feeds["scale"].shape == (1,)
    with pytest.raises(InvalidInputError, match="axis 0 has size 2"):
        validate_feeds(_feeds(scale=np.ones(2, np.float32)), SPECS, source="s", optional=optional)


def test_string_inputs_become_object_arrays() -> None:
    specs = (InputSpec("s", np.str_, (None,)),)
    feeds, _ = validate_feeds({"s": np.array(["a", "bc"])}, specs, source="s")
    assert feeds["s"].dtype == object


# --------------------------------------------------------------------------------------------
# GPU (skipped here with the reason)


def _cuda_or_skip() -> None:
    from edgelstm.runtimes.ort.provider_report import probe_provider

    probe = probe_provider("cuda")
    if not probe.usable:
        pytest.skip(f"CUDA provider not usable here: {probe.detail[:120]}")


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_device_runner_matches_cpu(relu_model: Path, cuda_graphs: bool) -> None:
    _cuda_or_skip()
    from edgelstm.runtimes.ort.execution import DeviceRunner

    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    cpu = open_session(relu_model).session.run(None, {"x": x})[0]
    opened = open_session(relu_model, SessionConfig(providers=("cuda",), cuda_graphs=cuda_graphs))
    assert opened.provider == "cuda"
    runner = DeviceRunner(opened, {"x": x})
    for _ in range(3):  # the first run captures the graph, later ones replay it
        np.testing.assert_allclose(runner.run({"x": x})[0], cpu, atol=1e-6)
    with pytest.raises(InvalidInputError, match="fixed shapes"):
        runner.run({"x": np.zeros((4, 4), np.float32)})


def test_runtimes_room_exports_resolve_lazily() -> None:
    import edgelstm.runtimes as room

    assert set(room.__all__) == set(room._EXPORTS)
    for name in room.__all__:
        assert getattr(room, name) is not None
    with pytest.raises(AttributeError):
        _ = room.no_such_name


def test_open_session_parses_the_model_once(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[object] = []
    real = onnx.load

    def counted(*args: Any, **kwargs: Any) -> Any:
        parsed.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx, "load", counted)
    open_session(relu_model)
    assert len(parsed) == 1  # checksum and profile share one parse
    artifact = load_artifact(relu_model)
    parsed.clear()
    opened = open_session(artifact)
    assert parsed == []
    assert opened.profile is artifact.profile
    assert opened.path == relu_model


def test_load_artifact_refuses_folders_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a folder; give the"):
        load_artifact(tmp_path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_artifact(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(InvalidInputError, match="is not a readable ONNX model"):
        load_artifact(tmp_path / "bad.onnx")
