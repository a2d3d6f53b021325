"""Durable file writes, and one error naming the file when a write fails.

A file is written as ``NAME.tmp``, fsync'd and renamed, so a reader sees the old file or the whole
new one. A write that fails for want of space (a full disk, a file-size limit such as ``ulimit -f``,
a quota) is an :class:`OutOfSpace` naming the file and the filesystem to free, whatever layer
(the OS, h5py, torch) reported it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from suite.errors import DataError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# errno -> what it means for the writer; h5py words them only in its message ("errno = 28")
NO_SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file too large (a file-size limit such as ulimit -f, or the filesystem's largest file)",
    errno.EDQUOT: "disk quota exceeded",
}
_NO_SPACE_TEXT = {
    "no space left on device": errno.ENOSPC,
    "file too large": errno.EFBIG,
    "disk quota exceeded": errno.EDQUOT,
}


def out_of_space(err: BaseException) -> int | None:
    """ENOSPC, EFBIG or EDQUOT when ``err`` (or what it wraps) is a full disk, size limit or quota."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutOfSpace):
            return current.code
        if isinstance(current, OSError | RuntimeError):
            code = getattr(current, "errno", None)
            if code in NO_SPACE:
                return code
            text = str(current).lower()
            for number in map(int, re.findall(r"errno = (\d+)", text)):
                if number in NO_SPACE:
                    return number
            for words, number in _NO_SPACE_TEXT.items():
                if words in text:
                    return number
        current = current.__cause__ or current.__context__
    return None


class OutOfSpace(DataError):
    """A write that failed for want of space (full disk, file-size limit, quota), naming the file."""

    def __init__(self, path: Path, code: int, fix: str) -> None:
        self.path = Path(path)
        self.code = code
        super().__init__(f"writing {path} failed: {NO_SPACE[code]}", fix)


def space_fix(code: int, where: Path, retarget: str = "write to another folder") -> str:
    """The fix of an :class:`OutOfSpace` for the filesystem holding ``where``."""
    mount = mount_point(where)
    if code == errno.EFBIG:
        return (
            f"raise the file-size limit (ulimit -f unlimited) or {retarget} on a filesystem that "
            "holds larger files"
        )
    if code == errno.EDQUOT:
        return f"free space within your quota on {mount} or {retarget}"
    return f"free space on {mount} (the filesystem of {where}) or {retarget}"


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds ``path`` (or would, for a path not yet made)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    current = current.resolve()
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def write_error(path: Path, err: BaseException) -> DataError:
    """The error to raise for a failed write of ``path``: one message naming the file and the fix."""
    code = out_of_space(err)
    if code is not None:
        return OutOfSpace(path, code, space_fix(code, path.parent))
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return DataError(
        f"writing {path} failed: {reason}", f"check that {path.parent} is writable, then rerun"
    )


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never half.

    A failed write removes its ``.tmp`` and raises a :class:`DataError` naming ``path``.
    """
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` via ``path.<pid>.tmp``, fsync'd and renamed; the ``.tmp`` never
    outlives a failure. The pid keeps two processes writing one file (the folds of a run, run
    side by side) off each other's temporary file: the last rename wins, whole."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        _discard(tmp)
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise
    fsync_dir(path.parent)
