"""In CI a skip is a failure unless its reason is on the allow-list in tests/conftest.py.

Each test runs pytest on a small test file with a copy of the suite's conftest.py, once with
``CI`` set (as `.ci/run` runs) and once without (a developer's machine, where a skip stays a
skip). Before this policy, a test that importorskipped a package the set-up line failed to
install was a skip, and CI stayed green.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")

#: A package the set-up line should have installed, and did not.
BROKEN_INSTALL = """
import pytest

def test_needs_a_package():
    pytest.importorskip("edgelstm_no_such_package")
"""

#: A whole file skipped at collection: a module-level importorskip.
BROKEN_MODULE = """
import pytest

pytest.importorskip("edgelstm_no_such_package")

def test_never_runs():
    pass
"""

#: Skips for reasons on the allow-list (an OpenVINO test outside its environment, no CUDA),
#: and an xfail, which is not a skip.
ALLOWED = """
import pytest

@pytest.mark.skipif(True, reason="needs the openvino extra (onnxruntime-openvino)")
def test_openvino_elsewhere():
    pass

def test_gpu_elsewhere():
    pytest.skip("CUDA provider not usable here: not built into this onnxruntime")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_runs():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A test folder with the real conftest.py, so the real allow-list decides."""
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    return pytester


def _in_ci(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)


def test_in_ci_an_unlisted_skip_fails_the_run_and_names_the_test(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(test_broken_install=BROKEN_INSTALL, test_broken_module=BROKEN_MODULE)
    _in_ci(monkeypatch, "true")
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*= 2 unexpected skip(s) in CI =*",
            "test_broken_module.py: could not import 'edgelstm_no_such_package'*",
            "test_broken_install.py::test_needs_a_package: could not import "
            "'edgelstm_no_such_package'*",
            "CI allows a skip only for a reason in ALLOWED_CI_SKIPS (tests/conftest.py)*",
        ],
    )


def test_in_ci_allow_listed_skips_and_xfails_pass(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(test_allowed=ALLOWED)
    _in_ci(monkeypatch, "true")
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    result.stdout.no_fnmatch_line("*unexpected skip*")


@pytest.mark.parametrize("ci", [None, "false"], ids=["unset", "false"])
def test_outside_ci_an_unlisted_skip_is_only_a_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    suite.makepyfile(test_broken_install=BROKEN_INSTALL)
    _in_ci(monkeypatch, ci)
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(skipped=1)
    result.stdout.no_fnmatch_line("*unexpected skip*")
