"""Atomic writes: outputs appear whole or not at all, and existing outputs are protected."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edgelstm import fileio
from edgelstm.errors import InvalidInputError, OutputExistsError
from edgelstm.fileio import (
    atomic_file,
    atomic_folder,
    check_output_path,
    recover_interrupted_replace,
    write_json_atomic,
    write_text_atomic,
)


class Boom(RuntimeError):
    pass


def leftovers(folder: Path, name: str) -> list[Path]:
    """Temporary siblings (`.NAME.*`) that a write may have left in ``folder``."""
    return sorted(folder.glob(f".{name}.*"))


# --------------------------------------------------------------------------------------------
# atomic_file


def test_atomic_file_writes_through_a_temporary_sibling(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_file(target) as tmp:
        assert tmp != target
        assert tmp.parent == tmp_path
        tmp.write_text("done")
        assert not target.exists()  # not visible until the block completes
    assert target.read_text() == "done"
    assert leftovers(tmp_path, "out.txt") == []


def test_atomic_file_failure_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(Boom), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_file(target, overwrite=True) as tmp:
        tmp.write_text("new but broken")
        raise Boom
    assert target.read_text() == "old"
    assert leftovers(tmp_path, "out.txt") == []


def test_atomic_file_refuses_existing_file_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite") as exc, atomic_file(target):
        pytest.fail("the block must not run")
    assert str(target) in str(exc.value)
    assert isinstance(exc.value, InvalidInputError)
    assert target.read_text() == "old"


def test_atomic_file_overwrite_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new", overwrite=True)
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_file_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        write_text_atomic(tmp_path / "out", "x", overwrite=True)


def test_atomic_file_creates_missing_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.json"
    write_json_atomic(target, {"x": [1, 2]})
    assert json.loads(target.read_text()) == {"x": [1, 2]}


@pytest.mark.parametrize("below", ["direct", "nested"])
def test_parent_that_is_a_file_is_refused(tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep")
    target = blocker / "out.json" if below == "direct" else blocker / "sub" / "out.json"
    with pytest.raises(InvalidInputError, match=r"file\.txt is a file, not a folder"):
        write_json_atomic(target, {})
    with (
        pytest.raises(InvalidInputError, match=r"file\.txt is a file, not a folder"),
        atomic_folder(blocker / "run"),
    ):
        pytest.fail("the block must not run")
    assert blocker.read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_relative_path_in_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_text_atomic(Path("plain.txt"), "here")
    assert (tmp_path / "plain.txt").read_text() == "here"


# --------------------------------------------------------------------------------------------
# atomic_folder


def test_atomic_folder_success(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".run.")
        (tmp / "a.txt").write_text("a")
        assert not target.exists()
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    assert leftovers(tmp_path, "run") == []


def test_atomic_folder_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with pytest.raises(Boom), atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("a")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(Boom), atomic_folder(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise Boom
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert (target / "old.txt").read_text() == "old"
    assert leftovers(tmp_path, "run") == []


def test_atomic_folder_refuses_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_folder(target):
        pytest.fail("the block must not run")
    assert (target / "old.txt").read_text() == "old"
    assert leftovers(tmp_path, "run") == []


def test_atomic_folder_accepts_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in target.iterdir()] == ["a.txt"]


def test_atomic_folder_overwrite_replaces_everything(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (target / "sub").mkdir()
    with atomic_folder(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no `.run.*.old` left


def test_atomic_folder_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.write_text("a file")
    with (
        pytest.raises(InvalidInputError, match="is a file"),
        atomic_folder(target, overwrite=True),
    ):
        pytest.fail("the block must not run")
    assert target.read_text() == "a file"


def test_atomic_folder_creates_missing_parents(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "2024" / "jv"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (target / "a.txt").read_text() == "a"


def test_check_output_path_accepts_new_and_overwrite(tmp_path: Path) -> None:
    check_output_path(tmp_path / "new.txt", overwrite=False)
    check_output_path(tmp_path / "missing" / "deep" / "new.txt", overwrite=False)
    existing = tmp_path / "old.txt"
    existing.write_text("x")
    check_output_path(existing, overwrite=True)
    with pytest.raises(OutputExistsError):
        check_output_path(existing, overwrite=False)
    # A check never creates anything.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


# --------------------------------------------------------------------------------------------
# the two-rename fallback and its recovery (the SIGKILL itself is in test_hostile.py)


def _interrupted_replace(folder: Path) -> Path:
    """The state a kill between the fallback's two renames leaves: no ``run``, the old folder
    at ``.run.*.old``, the finished new one at ``.run.*.tmp``."""
    (folder / ".run.k3j9x_2a.old").mkdir()
    (folder / ".run.k3j9x_2a.old" / "old.txt").write_text("old")
    (folder / ".run.p0q8w7e1.tmp").mkdir()
    (folder / ".run.p0q8w7e1.tmp" / "new.txt").write_text("new")
    return folder / "run"


def test_fallback_overwrite_replaces_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fileio, "_exchange", lambda first, second: False)
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no `.run.*.old` left


def test_check_puts_back_a_folder_moved_aside_by_an_interrupted_replace(tmp_path: Path) -> None:
    target = _interrupted_replace(tmp_path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output_path(target, overwrite=False, kind="folder")
    assert (target / "old.txt").read_text() == "old"
    # The unfinished write's folder is not trusted, and not deleted either.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.p0q8w7e1.tmp", "run"]


def test_next_write_recovers_then_replaces(tmp_path: Path) -> None:
    target = _interrupted_replace(tmp_path)
    with pytest.raises(Boom), atomic_folder(target, overwrite=True) as tmp:
        (tmp / "broken.txt").write_text("x")
        raise Boom
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_folder(target, overwrite=True) as tmp:
        (tmp / "newer.txt").write_text("newer")
    assert [p.name for p in target.iterdir()] == ["newer.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.p0q8w7e1.tmp", "run"]


def test_recovery_leaves_alone_what_is_not_an_interrupted_replace(tmp_path: Path) -> None:
    # The path exists: a `.old` sibling is a leftover clean-up, not a missing folder.
    (tmp_path / "run").mkdir()
    (tmp_path / ".run.aaaa.old").mkdir()
    assert recover_interrupted_replace(tmp_path / "run") is False
    # A `.tmp` sibling alone (killed while writing) is never promoted.
    (tmp_path / ".new.bbbb.tmp").mkdir()
    assert recover_interrupted_replace(tmp_path / "new") is False
    # Another name's `.old`, and glob characters in the name, match nothing.
    (tmp_path / ".runs.cccc.old").mkdir()
    assert recover_interrupted_replace(tmp_path / "r*") is False
    # A file check never recovers folders.
    check_output_path(tmp_path / "gone", overwrite=False)
    (tmp_path / ".gone.dddd.old").mkdir()
    check_output_path(tmp_path / "gone", overwrite=False)
    assert not (tmp_path / "gone").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".gone.dddd.old",
        ".new.bbbb.tmp",
        ".run.aaaa.old",
        ".runs.cccc.old",
        "run",
    ]
    assert recover_interrupted_replace(tmp_path / "gone") is True
    assert (tmp_path / "gone").is_dir()


@pytest.mark.parametrize(
    ("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_outputs_get_the_mode_an_ordinary_write_would(
    tmp_path: Path, umask: int, file_mode: int, folder_mode: int
) -> None:
    # The temporary siblings are private while written; a finished output must not stay
    # so (a service user could not read deploy.json), nor be wider than the umask allows.
    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "deploy.json", "{}")
        with atomic_folder(tmp_path / "run") as tmp:
            (tmp / "metrics.json").write_text("{}", encoding="utf-8")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "deploy.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == folder_mode


def test_a_replaced_output_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o640)
    write_text_atomic(path, "new", overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_text(encoding="utf-8") == "new"
