"""Atomic file and folder writes: a crash or a failed check never leaves a half-written output.

Every output goes to a temporary sibling first (same filesystem, so the final ``os.replace``
is atomic) and only takes the requested name once it is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError, OutputExistsError


def check_output_path(path: Path, *, overwrite: bool, kind: str = "file") -> None:
    """Refuse an existing output unless ``overwrite``, or a parent path that is a file.

    A folder counts as existing only when it is non-empty (an empty folder holds nothing to lose).
    """
    if path.is_dir():
        if kind == "file":
            raise InvalidInputError(f"output {path} is a folder; give a file path")
        if any(path.iterdir()) and not overwrite:
            raise OutputExistsError(
                f"output folder {path} exists and is not empty; "
                "pass --overwrite to replace it or choose another --out"
            )
    elif path.exists():
        if kind == "folder":
            raise InvalidInputError(f"output {path} is a file; give a folder path")
        if not overwrite:
            raise OutputExistsError(
                f"output file {path} exists; pass --overwrite to replace it or choose another --out"
            )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInputError(f"cannot write {path}: {parent} is a file, not a folder")
            break


def _fsync(path: Path) -> None:
    """Flush a file's bytes to the disk before it is renamed into place.

    Without it, a power cut after the rename can leave the final name pointing at an empty
    or partial file on some file systems: the rename is durable before the data.
    """
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its renames are durable differently
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Replacing a non-empty folder otherwise takes two renames, and a crash between them
    leaves neither the old nor the new folder at the path. Returns False where the call is
    unavailable (other systems, old kernels or file systems), so the caller falls back.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    status = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    return bool(status == 0)


def _make_parent(path: Path) -> Path:
    # Missing parent folders are created (`--out runs/jv` on a fresh clone should just work).
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    return parent


@contextlib.contextmanager
def atomic_file(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    check_output_path(path, overwrite=overwrite, kind="file")
    parent = _make_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_folder(parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, payload: Any, *, overwrite: bool = False) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    write_text_atomic(
        path, json.dumps(payload, indent=2, sort_keys=False) + "\n", overwrite=overwrite
    )


@contextlib.contextmanager
def atomic_folder(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` only if the block succeeds.

    With ``overwrite`` an existing folder is swapped out after the new one is complete, so a
    failure while building the new content leaves the old content untouched.
    """
    path = Path(path)
    check_output_path(path, overwrite=overwrite, kind="folder")
    parent = _make_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                _fsync(item)
        _fsync_folder(tmp)
        if path.exists():
            if _exchange(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
            else:
                # No atomic swap here: a crash between these two renames leaves the old
                # folder at `.NAME.*.old` and the new one at `.NAME.*.tmp`.
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
                old.rmdir()
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_folder(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_json(
    path: Path, *, what: str, error: type[InvalidInputError] = InvalidInputError, fix: str = ""
) -> Any:
    """Parse the JSON file ``path``; a missing or unparsable file raises ``error``.

    ``what`` names the file in the message ("benchmark report"); ``fix`` is appended to the
    parse error as the next step.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}){fix}") from None


def relocate_paths(value: Any, old: Path, new: Path) -> Any:
    """A copy of a JSON-like ``value`` whose strings under folder ``old`` point under ``new``.

    Used after building in a temporary folder that is then renamed into place. Works on the
    objects (not on serialised text), so non-ASCII folder names survive.
    """
    old_text = str(old)
    if isinstance(value, str):
        if value == old_text:
            return str(new)
        if value.startswith(old_text + os.sep):
            return str(new) + value[len(old_text) :]
        return value
    if isinstance(value, dict):
        return {k: relocate_paths(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relocate_paths(v, old, new) for v in value]
    return value
