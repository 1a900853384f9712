""".npy and .npz files: loaded safely (no pickle) and within a memory budget.

This module owns reading NumPy files into a dict of arrays: refusing files of other formats
under a NumPy name (a CSV saved as ``.npz``) and object (pickled) arrays, and checking every
array header against the file's real size and the machine's memory before NumPy allocates
anything, so a forged or truncated file cannot take the machine down. What the arrays mean
for each task is decided in :mod:`edgelstm.data.readers`.

Example::

    from pathlib import Path
    from edgelstm.data.arrays import read_arrays

    arrays = read_arrays(Path("train.npz"))  # {"X": ..., "y": ..., "lengths": ...}
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgelstm.data.checks import require_file
from edgelstm.errors import InvalidInputError

__all__ = ["array_shape", "read_arrays"]


#: Largest array total edgelstm loads from one file: half the machine's memory (or 8 GiB
#: when that cannot be read). Bigger inputs need splitting, not a machine-wide swap storm.
def _memory_budget() -> int:
    try:
        budget = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (ValueError, OSError, AttributeError):
        budget = 8 * 2**30
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        limit = -1
    if limit > 0:  # a memory-limited process (ulimit -v): stay well inside its limit
        budget = min(budget, limit // 2)
    return budget


def _read_header(handle: BinaryIO) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """Shape and dtype from the ``.npy`` header in ``handle`` (None when it is not one)."""
    from numpy.lib import format as npy_format

    # NumPy's format helpers are untyped; the header is (shape, fortran_order, dtype).
    format_module: Any = npy_format
    try:
        version = format_module.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = format_module.read_array_header_1_0(handle)
        else:
            shape, _, dtype = format_module.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError, SyntaxError):
        return None  # np.load reports the malformed header itself
    return tuple(int(d) for d in shape), dtype


def _declared_bytes(handle: BinaryIO, where: str) -> int | None:
    """Bytes the ``.npy`` header in ``handle`` promises (None when it is not an .npy header)."""
    header = _read_header(handle)
    if header is None:
        return None
    shape, dtype = header
    if dtype.hasobject:
        return 0  # object arrays are refused later, with the pickle explanation
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * int(dtype.itemsize)


def array_shape(path: Path, name: str = "X") -> tuple[int, ...] | None:
    """The shape of array ``name`` in an ``.npz`` (or of an ``.npy``), from its header alone.

    Reads a few hundred bytes, not the array: the batch engines plan their partitions of
    large files with it. None when the file or the array cannot be read that way (the full
    read that comes later reports why).
    """
    try:
        if path.suffix.lower() == ".npy":
            with path.open("rb") as handle:
                header = _read_header(handle)
        else:
            with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
                header = _read_header(member)  # type: ignore[arg-type]
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    return None if header is None else header[0]


def _check_declared_sizes(path: Path) -> None:
    """Refuse files whose headers claim more data than they hold or than memory allows.

    A forged or truncated header (``shape=(10**7, 10**6, 40)`` in a 1 kB file) would make
    NumPy try to allocate terabytes before noticing; checking first keeps the machine up.
    """
    budget = _memory_budget()
    total = 0
    try:
        if path.suffix.lower() == ".npy":
            with path.open("rb") as handle:
                declared = _declared_bytes(handle, str(path))
                available = path.stat().st_size - handle.tell()
            members = [(path.name, declared, available)]
        else:
            members = []
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with archive.open(info) as member:
                        declared = _declared_bytes(member, info.filename)  # type: ignore[arg-type]
                        available = info.file_size - member.tell()
                    members.append((info.filename, declared, available))
    except (OSError, zipfile.BadZipFile):
        return  # np.load gives the precise error for unreadable files
    for name, declared, available in members:
        if declared is None:
            continue
        if declared > available:
            raise InvalidInputError(
                f"{path}: array {name} claims {_size(declared)} but the file holds "
                f"{_size(max(available, 0))}; it is truncated or its header is forged: save it "
                "again with np.save / np.savez"
            )
        total += declared
    if total > budget:
        raise InvalidInputError(
            f"{path}: holds {_size(total)} of arrays, more than edgelstm loads at once "
            f"({_size(budget)}, half of the memory this process may use); split it into "
            "smaller files"
        )


#: What ``np.load`` recognises a file by: a zip archive (``.npz``; an empty one starts with
#: its end record) or the ``.npy`` header. It unpickles anything else, so without this check
#: a CSV saved as ``.npz`` met the pickle refusal and was called an object array.
_NPZ_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _refuse_other_formats(path: Path) -> None:
    """Refuse a file that is neither an ``.npy`` nor an ``.npz`` by its first bytes, saying
    what it looks like; either format under either suffix is left to ``np.load``, which
    reads both whatever the name."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return  # np.load reports the unreadable file
    if head.startswith((_NPY_MAGIC, *_NPZ_MAGICS)):
        return
    suffix = path.suffix.lower()
    save = "np.savez(path, X=X, y=y)" if suffix == ".npz" else "np.save(path, X)"
    what, advice = _looks_like(head)
    fix = f"{advice}, or save the arrays with {save}" if advice else f"save the arrays with {save}"
    raise InvalidInputError(f"{path}: is not a NumPy {suffix} file: {what}; {fix}")


def _looks_like(head: bytes) -> tuple[str, str]:
    """What a file that is not NumPy's seems to be, from its first bytes, and what to do if
    it is that (empty when saving it again is the only fix)."""
    if not head:
        return "it is empty", ""
    if head.startswith(b"\x80"):  # pickle protocols 2+
        return "it is a Python pickle, which edgelstm never loads", ""
    if head.startswith(b"PAR1"):
        return "it is a Parquet file", "rename it to .parquet"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed", "decompress it if it holds a NumPy file"
    # A multi-byte character cut at the end of the 512 bytes is not a sign of binary data.
    text = head.decode("utf-8", errors="replace")
    if "\x00" in text or text.count("\ufffd") > 1:
        return "its first bytes are neither a zip archive's (.npz) nor NumPy's header (.npy)", ""
    first = text.lstrip().split("\n", 1)[0].strip()[:60]
    if first.startswith("@") or "@problemname" in text.lower():  # sktime/aeon's header
        return f"it starts with text ({first!r}), like a .ts file", "rename it to .ts if it is one"
    if any(sep in first for sep in ",;\t"):
        return f"it starts with text ({first!r}), like a CSV", "rename it to .csv if it is one"
    return f"it starts with text ({first!r})", ""


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Load a ``.npy`` (as ``{"X": array}``) or ``.npz`` file into a dict of arrays.

    Pickle is never allowed: an object array in a file someone sent you could run arbitrary
    code when loaded, so such files are refused with an explanation, and so is a file of
    another format under a NumPy name (``np.load`` would try it as a pickle).

    Example::

        arrays = read_arrays(Path("train.npz"))  # {"X": ..., "y": ..., "lengths": ...}
    """
    require_file(path)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InvalidInputError(f"{path}: expected a .npy or .npz file, got {path.suffix!r}")
    _refuse_other_formats(path)
    _check_declared_sizes(path)
    try:
        # We own the file handle: np.load(path) leaks it when the zip is corrupt.
        with path.open("rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"X": loaded}
            with loaded as archive:
                arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InvalidInputError(
                f"{path}: holds an object (pickled) array; object arrays are refused for safety "
                "because loading them can run code. Save plain numeric arrays, e.g. "
                "np.savez(path, X=np.asarray(X, dtype=np.float32), y=np.asarray(y))"
            ) from exc
        raise InvalidInputError(
            f"{path}: is not a valid NumPy file ({exc}); it may be truncated or corrupt: "
            "save it again with np.save / np.savez"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InvalidInputError(
            f"{path}: could not be read as a NumPy file ({type(exc).__name__}: {exc}); it may be "
            "truncated or corrupt: save it again with np.save / np.savez"
        ) from exc
    if not arrays:
        raise InvalidInputError(f"{path}: the .npz archive holds no arrays; expected at least X")
    return arrays
