"""Exclusive lock files that are removed when released.

Removing a lock file races with a process that opened it just before: that process would
then lock an unlinked file while a third one creates a new file at the same path. So after
locking, a holder checks that the path still names the file it locked, and retries if not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def try_lock(path: Path) -> int | None:
    """Lock `path` (created 0600 if needed) without waiting: the fd, or None if held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _still_linked(path, fd):
            return fd
        os.close(fd)  # removed by its previous holder meanwhile: lock the new file


def release(path: Path, fd: int) -> None:
    """Remove the lock file, then drop the lock (in that order, see the module's note)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on `path` (probed without keeping it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _still_linked(path: Path, fd: int) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
