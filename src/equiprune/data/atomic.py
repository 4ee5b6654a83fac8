"""Atomic file writes with unique temporary names, and write failures said in one sentence.

Every file equiprune writes (JSON, checkpoints, training state, tables,
reports, plots) goes through `atomic_write`: the bytes go to a temporary
file with a name no other process can pick (``mkstemp`` in the same folder),
which is renamed over the target only once it is complete. So a reader, an
interrupt or a second process never sees half a file, and on a full disk or
a read-only folder the temporary file is removed and a `WriteError` names
the file and says what to do instead of a traceback from deep inside
``torch.save`` or pandas.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["WriteError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "check_writable",
           "write_error"]

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class WriteError(OSError):
    """A file could not be written; the message names it and says what to do."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` (itself, or its cause/context chain), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def write_error(path: str | os.PathLike, exc: BaseException) -> WriteError | None:
    """A `WriteError` saying why `path` could not be written, or None if `exc` is not a write failure.

    Recognises a full disk (also ``torch.save``'s ``enforce fail at
    inline_container.cc``, whose cause is the disk), a read-only or foreign
    folder, and other OS errors.
    """
    if isinstance(exc, WriteError):
        return exc
    path = Path(path)
    os_exc = _os_error(exc)
    code = os_exc.errno if os_exc is not None else None
    if code is None and isinstance(exc, RuntimeError) and "inline_container" in str(exc) \
            and _nearly_full(path.parent):
        code = errno.ENOSPC
    if code in _FULL:
        return WriteError(f"the disk is full: could not write {path}; free some space on it (or pass an output "
                          "folder on another disk) and run the same command again (finished steps are kept)", code)
    if code in _READ_ONLY:
        what = f"in the folder {path}" if path.is_dir() else str(path)
        return WriteError(f"cannot write {what}: it is on a read-only disk or not yours "
                          f"({os.strerror(code)}); pass an output folder you can write to (--out)", code)
    if os_exc is not None:
        return WriteError(f"could not write {path}: {os_exc.strerror or os_exc}; check the folder and "
                          "run the same command again", code)
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)``, then rename the finished file onto `path`.

    The temporary name is unique (two processes writing the same file never
    share it) and is removed if writing fails; a write failure is raised as a
    `WriteError` naming `path`. The temporary name ends with `path`'s own
    suffix, because writers such as ``np.save``/``np.savez`` append ``.npy``
    / ``.npz`` to a name without it (and the rename would then move an empty
    file); a stray ``.npy``/``.npz`` next to it (a target with another
    suffix) is refused rather than left behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    except OSError as exc:
        raise write_error(path, exc) from exc
    os.close(fd)
    strays = [tmp + ext for ext in (".npy", ".npz")]
    try:
        write(tmp)
        wrong = [s for s in strays if os.path.exists(s)]
        if wrong:  # np.save / np.savez given a bare name whose suffix is not theirs
            raise ValueError(f"writing {path}: numpy wrote {os.path.basename(wrong[0])} instead of the temporary "
                             "file; give np.save/np.savez an open file (open(tmp, 'wb')) or a target ending in "
                             ".npy/.npz")
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        err = write_error(path, exc)
        if err is None:
            raise
        raise err from exc
    finally:
        for leftover in (tmp, *strays):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def check_writable(folder: str | os.PathLike) -> None:
    """Raise `WriteError` unless `folder` (or, if it does not exist yet, the folder that would hold it) is writable.

    Done by creating and removing a temporary file, so it also catches a
    read-only file system for root, which permission bits do not.
    """
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise WriteError(f"cannot create the output folder {folder}: {probe} is a file, not a folder; "
                         "pass another output folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".equiprune-write-check.")
    except OSError as exc:
        raise write_error(folder, exc) from exc
    os.close(fd)
    os.unlink(tmp)
