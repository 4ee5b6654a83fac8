"""One writer per run folder: an advisory exclusive lock (``fcntl.flock``) on ``<run>/.equiprune.lock``.

Two processes writing one run folder corrupt it (one's config.json, the
other's model), so the process that writes a folder holds this lock for as
long as it works on it, and a second process is refused with the holder's
pid. The kernel drops a ``flock`` when its holder exits or crashes (even on
SIGKILL), so there is no stale marker to clean up by hand: the file may stay
behind after a crash, but it is only locked while a process holds it.

Within one process the lock is shared: every `RunDir` on the folder, or on a
folder inside it (a pruning iteration, a sweep point), holds the same
`RunLock`, and the lock is released when the last of them is garbage
collected (or the process ends). Under torchrun only rank 0 locks.
"""
from __future__ import annotations

import errno
import os
import sys
import weakref
from pathlib import Path

LOCK_NAME = ".equiprune.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, run folders are not guarded
    fcntl = None  # type: ignore[assignment]

_held: "weakref.WeakValueDictionary[str, RunLock]" = weakref.WeakValueDictionary()


class RunLockedError(ValueError):
    """Another process is writing this run folder."""


class RunLock:
    """The held lock of one run folder; released (and its file removed) when this object goes away."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:  # remove the file first, while still holding it, so no one locks a file that is about to vanish
            os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)  # closing drops the flock
        _held.pop(str(self.folder), None)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown; the kernel drops the lock anyway
            pass

    def __repr__(self) -> str:
        return f"RunLock({str(self.folder)!r})"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().split("\n")
    except OSError:
        return "another process"
    pid = text[0].strip() if text else ""
    cmd = text[1].strip() if len(text) > 1 else ""
    if not pid.isdigit():
        return "another process"
    return f"process {pid}" + (f" ({cmd})" if cmd else "")


def held_lock(folder: str | Path) -> RunLock | None:
    """The lock this process holds on `folder` or on a folder containing it, if any."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        lock = _held.get(str(candidate))
        if lock is not None:
            return lock
    return None


def lock_run_folder(folder: str | Path) -> RunLock | None:
    """Take the exclusive lock of the existing run folder `folder` (or share this process's lock on it).

    Raises `RunLockedError` naming the holder's pid when another process
    writes the folder. Returns None where advisory locks do not exist.
    """
    folder = Path(folder).resolve()
    lock = held_lock(folder)
    if lock is not None:
        return lock
    if fcntl is None:  # pragma: no cover
        return None
    path = folder / LOCK_NAME
    for _ in range(20):  # retry while a releasing holder removes the file under us
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(
                f"{folder} is being written by {_holder(path)}; wait for it to finish (two processes on one "
                "run folder would mix their results), or pass another output folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed this file on release: lock the new one
            os.close(fd)
            continue
        try:  # who holds it, for the refusal of a second process
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{' '.join(sys.argv[1:])[:300]}\n".encode())
        except OSError:  # a full disk: the lock still holds, the refusal just cannot name the pid
            pass
        lock = RunLock(folder, fd)
        _held[str(folder)] = lock
        return lock
    raise RunLockedError(f"could not lock {folder}: its lock file keeps changing; is another process "
                         "starting and stopping on it?")
