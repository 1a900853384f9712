"""Plugin execution providers: discovery, registration, devices, and sessions on them.

The first tests run everywhere: a fake plugin package on sys.path (its library does not
load), and the real CPU device ONNX Runtime lists in `get_ep_devices()` driven through the
plugin path (`add_provider_for_devices`). The `plugin_ep` tests need a real plugin package
(`pip install onnxruntime-ep-openvino`); `.ci/providers` installs it beside onnxruntime.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgelstm.errors import InvalidInputError, ProviderUnavailableError
from edgelstm.runtimes.ort import plugin_eps
from edgelstm.runtimes.ort import session as session_mod
from edgelstm.runtimes.ort.onnxruntime_import import import_onnxruntime
from edgelstm.runtimes.ort.plugin_eps import EpDevice, PluginPackage
from edgelstm.runtimes.ort.provider_report import probe_provider
from edgelstm.runtimes.ort.providers import resolve_provider
from edgelstm.runtimes.ort.session import open_session
from edgelstm.runtimes.ort.session_config import SessionConfig, parse_provider_list


@pytest.fixture
def fresh_discovery() -> Iterator[None]:
    """Forget which plugins were found and registered, before and after the test."""
    plugin_eps._installed_plugins.cache_clear()
    saved = dict(plugin_eps._REGISTERED)
    yield
    plugin_eps._installed_plugins.cache_clear()
    # Libraries stay registered in ONNX Runtime; registering them again counts as done.
    plugin_eps._REGISTERED.clear()
    plugin_eps._REGISTERED.update(saved)


@pytest.fixture
def relu_model(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    return path


def _fake_plugin(root: Path, *, library: Path) -> None:
    """An installed `onnxruntime-ep-fake` distribution whose library is ``library``."""
    package = root / "onnxruntime_ep_fake"
    package.mkdir()
    (package / "__init__.py").write_text(
        f"def get_library_path():\n    return {str(library)!r}\n\n"
        "def get_ep_names():\n    return ['FakeExecutionProvider']\n"
    )
    info = root / "onnxruntime_ep_fake-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: onnxruntime-ep-fake\nVersion: 0.1\n"
    )
    (info / "top_level.txt").write_text("onnxruntime_ep_fake\n")
    (info / "RECORD").write_text("")


def test_a_plugin_whose_library_fails_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_discovery: None, relu_model: Path
) -> None:
    _fake_plugin(tmp_path, library=tmp_path / "libmissing.so")
    monkeypatch.syspath_prepend(str(tmp_path))
    packages = {p.distribution: p for p in plugin_eps.plugin_packages()}
    fake = packages["onnxruntime-ep-fake"]
    assert fake.ep_names == ("FakeExecutionProvider",) and fake.version == "0.1"
    assert fake.error is not None and fake.status.startswith("installed; not usable: ")
    assert fake.devices == ()
    # The name resolves (the plugin brings it), and opening on it says why it cannot.
    assert resolve_provider("fake").ep_name == "FakeExecutionProvider"
    with pytest.raises(
        ProviderUnavailableError, match=r"onnxruntime-ep-fake 0\.1 is installed; not usable"
    ):
        open_session(relu_model, SessionConfig(providers=("fake",)))
    opened = open_session(relu_model, SessionConfig(providers=("fake",), fallback=True))
    assert opened.provider == "cpu"
    probe = probe_provider("fake")
    assert not probe.usable and "not usable" in probe.detail


def test_providers_report_lists_the_plugin_with_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_discovery: None, cli: Any
) -> None:
    _fake_plugin(tmp_path, library=tmp_path / "libmissing.so")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli("providers", "--json")
    assert result.code == 0, result.err
    plugins = {p["distribution"]: p for p in json.loads(result.out)["plugins"]}
    assert plugins["onnxruntime-ep-fake"]["status"].startswith("installed; not usable")
    shown = cli("providers")
    assert "onnxruntime-ep-fake 0.1" in shown.out


def test_devices_are_matched_by_kind_or_index() -> None:
    gpu = EpDevice("XEp", "x", "gpu", "Intel", 0x8086, 0x56A0, 1)
    assert gpu.matches("gpu") and gpu.matches("GPU") and gpu.matches("1") and gpu.matches("gpu1")
    assert not gpu.matches("npu") and not gpu.matches("0")
    assert gpu.label == "GPU 1 (Intel, 8086:56a0)"


def test_an_unknown_device_lists_the_offered_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = EpDevice("XEp", "x", "cpu", "AMD", 0x1022, 0, 0)
    monkeypatch.setattr(plugin_eps, "ep_devices", lambda ep_name=None: [(cpu, object())])
    with pytest.raises(InvalidInputError, match=r"offers no device 'npu' here; it offers: CPU 0"):
        plugin_eps.select_devices("XEp", "npu")


def test_a_session_runs_on_ep_devices_through_the_plugin_path(
    relu_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin path for real: ONNX Runtime's own CPU device, chosen with
    add_provider_for_devices as a plugin's device would be."""
    ort = import_onnxruntime()
    if not hasattr(ort, "get_ep_devices"):
        pytest.skip(f"onnxruntime {ort.__version__} has no plugin EP API (needs 1.23+)")
    described = [d for d, _ in plugin_eps.ep_devices("CPUExecutionProvider")]
    assert described and described[0].kind == "cpu"
    package = PluginPackage(
        "fake", "1", "fake", ("CPUExecutionProvider",), None, None, tuple(described)
    )
    monkeypatch.setattr(session_mod, "plugin_for_ep", lambda ep: package)
    candidate = session_mod._Candidate(resolve_provider("cpu"), "cpu")
    config = SessionConfig()
    session, ops, device = session_mod._try_open(ort, relu_model, candidate, config, available=[])
    assert ops == {"cpu": ["Relu"]} and device == "cpu"
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))


def test_device_suffix_rules() -> None:
    with pytest.raises(InvalidInputError, match="--cuda-device"):
        parse_provider_list("cuda:1")
    with pytest.raises(InvalidInputError, match="one device"):
        parse_provider_list("cpu:0")
    with pytest.raises(InvalidInputError, match="ends with ':'"):
        parse_provider_list("openvino:")
    assert parse_provider_list("openvino:GPU,cpu") == ("openvino:GPU", "cpu")


# ---------------------------------------------------------------------------- real plugin

HAS_OPENVINO_PLUGIN = importlib.util.find_spec("onnxruntime_ep_openvino") is not None


@pytest.mark.plugin_ep
@pytest.mark.skipif(
    not HAS_OPENVINO_PLUGIN,
    reason="needs a real plugin EP package: pip install onnxruntime-ep-openvino (beside "
    "onnxruntime >= 1.23); .ci/providers does",
)
def test_the_real_openvino_plugin_registers_and_is_reported_truthfully(
    cli: Any, relu_model: Path
) -> None:
    package = next(
        p for p in plugin_eps.plugin_packages() if p.distribution == "onnxruntime-ep-openvino"
    )
    assert package.error is None, package.error
    assert package.ep_names == ("OpenVINOExecutionProvider",)
    assert package.library and Path(package.library).is_file()
    report = json.loads(cli("providers", "--json").out)
    listed = {p["distribution"]: p for p in report["plugins"]}["onnxruntime-ep-openvino"]
    if not package.devices:
        # AMD CPUs and machines without Intel hardware: the factory accepts Intel ids only.
        assert package.status.startswith("installed; no supported device on this machine")
        assert listed["status"] == package.status
        assert "openvino" not in [p["name"] for p in report["providers"]]
        with pytest.raises(ProviderUnavailableError, match="no supported device on this machine"):
            open_session(relu_model, SessionConfig(providers=("openvino",)))
        assert not probe_provider("openvino").usable
        return
    # Intel hardware: the plugin's devices are listed and a session really runs on one.
    openvino = next(p for p in report["providers"] if p["name"] == "openvino")
    assert openvino["devices"]
    opened = open_session(relu_model, SessionConfig(providers=("openvino",)))
    assert opened.provider == "openvino" and opened.placement.get("openvino")
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(opened.session.run(None, {"x": x})[0], np.maximum(x, 0))
    assert sys.modules.get("onnxruntime_ep_openvino") is not None
