"""Atomic file and folder writes: a crash or a failed check never leaves a half-written output.

Every output goes to a temporary sibling first (same filesystem, so the final ``os.replace``
is atomic) and only takes the requested name once it is complete.

Test hook: with the environment variable ``EDGELSTM_TEST_KILL_AT`` set to ``write`` or
``rename`` the process SIGKILLs itself at that point of its first atomic write (see
:func:`_kill_point`), so the kill tests hit the moments that matter every time instead of
at random; with ``EDGELSTM_TEST_KILL_ONCE`` naming a marker file as well, only the first
process to get there dies (a worker pool's retries then run). Nothing else reads them; leave
them unset outside tests.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgelstm.errors import InvalidInputError, OutputExistsError

#: See the module docstring. Read only by :func:`_kill_point`.
KILL_AT_ENV = "EDGELSTM_TEST_KILL_AT"
#: With KILL_AT_ENV: a marker file path; only the process that creates it dies.
KILL_ONCE_ENV = "EDGELSTM_TEST_KILL_ONCE"


def _kill_point(point: str) -> None:
    """Die by SIGKILL here when the kill-test hook names ``point`` (``write`` or ``rename``).

    ``write``: the new content is complete in its temporary sibling, nothing renamed yet.
    ``rename``: just after the first rename of the swap (the new file is in place; a folder
    was published, exchanged, or, without an atomic exchange, the old one moved aside).
    """
    if os.environ.get(KILL_AT_ENV) != point:
        return
    once = os.environ.get(KILL_ONCE_ENV)
    if once:
        # Only the first process to get here dies: the one that creates the marker. Workers
        # that a distributed engine restarts then run on (see the batch kill tests).
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def recover_interrupted_replace(path: Path) -> bool:
    """Put an old folder back at ``path`` if a replace was killed between its two renames.

    Where folders cannot be swapped atomically, :func:`atomic_folder` moves the old folder
    aside to ``.NAME.*.old`` and then moves the new one in; a crash in between leaves no
    folder at ``path``. A ``.old`` sibling only exists while a swap is under way, and it is
    complete, so when ``path`` is missing it is restored: the path then holds the old content
    again, as if the interrupted write had never started (its finished ``.NAME.*.tmp`` cannot
    be told from one killed while writing, so it is not trusted). Returns True if it restored.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        return False
    parent = path.parent if str(path.parent) else Path(".")
    try:
        aside = [p for p in parent.glob(f".{glob.escape(path.name)}.*.old") if p.is_dir()]
    except OSError:  # an unreadable or missing parent: nothing to recover
        return False
    if not aside:
        return False
    # One at most in practice; after repeated crashes the most recently moved one is the newest.
    newest = max(aside, key=lambda p: p.stat().st_ctime_ns)
    os.replace(newest, path)
    _fsync_folder(parent)
    return True


#: The fix for an existing output, in both spellings: the CLI's commands and the library's
#: functions (train, export, quantize ...) share this check, and a Python caller has no flag.
#: "another path", not "--out": the outputs checked here include --output, --json, --markdown.
_REPLACE_OR_MOVE = (
    "pass --overwrite (overwrite=True from Python) to replace it, or choose another path"
)


def check_output_path(path: Path, *, overwrite: bool, kind: str = "file") -> None:
    """Refuse an existing output unless ``overwrite``, or a parent path that is a file.

    A folder counts as existing only when it is non-empty (an empty folder holds nothing to lose).
    For a folder, an old one left aside by an interrupted replace is put back first
    (:func:`recover_interrupted_replace`), so it is protected like any existing folder.
    """
    if kind == "folder":
        recover_interrupted_replace(path)
    if path.is_dir():
        if kind == "file":
            raise InvalidInputError(f"output {path} is a folder; give a file path")
        if any(path.iterdir()) and not overwrite:
            raise OutputExistsError(
                f"output folder {path} exists and is not empty; {_REPLACE_OR_MOVE}"
            )
    elif path.exists():
        if kind == "folder":
            raise InvalidInputError(f"output {path} is a file; give a folder path")
        if not overwrite:
            raise OutputExistsError(f"output file {path} exists; {_REPLACE_OR_MOVE}")
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


def _process_umask() -> int:
    """This process's umask. Linux reports it; elsewhere it can only be read by setting it,
    which is briefly wrong for other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_usual_mode(tmp: Path, path: Path) -> None:
    """Give a finished temporary file or folder the mode its final name should have.

    ``mkstemp``/``mkdtemp`` make them private (0600/0700) while they are written, which is
    right then; kept, a service user could not read a deploy.json or predictions another user
    wrote. A replaced output keeps its mode; a new one gets what ``open``/``mkdir`` would give.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = (0o777 if tmp.is_dir() else 0o666) & ~_process_umask()
    os.chmod(tmp, mode)


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
        _kill_point("write")
        _give_usual_mode(tmp, path)
        _fsync(tmp)
        os.replace(tmp, path)
        _kill_point("rename")
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
    check_output_path(path, overwrite=overwrite, kind="folder")  # also recovers, see there
    parent = _make_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        _kill_point("write")
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                _fsync(item)
        _give_usual_mode(tmp, path)
        _fsync_folder(tmp)
        if not path.exists():
            os.replace(tmp, path)
            _kill_point("rename")
        elif _exchange(tmp, path):
            _kill_point("rename")  # tmp now holds the old folder
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            # No atomic swap here (macOS, Windows, old kernels or file systems): the old
            # folder moves aside to `.NAME.*.old` first. A crash before the second rename
            # leaves no folder at the path, so the next check_output_path or atomic_folder
            # on it puts the `.old` back (recover_interrupted_replace): no write is lost.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            old.rmdir()
            os.replace(path, old)
            _kill_point("rename")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_folder(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (checkpoints, batch manifests, bundles)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
