"""Big inputs shared between the processes of one machine and one user instead of copied.

A blob lives in a memfd sealed against writing, growing and shrinking, so whoever maps it
may keep objects made from it: nobody can change it afterwards. Another process of the same
user opens it through its holder's descriptor, `/proc/<holder pid>/fd/<n>`, which the holder
keeps open until the opener has it; the kernel frees the memory once no process holds it
(a descriptor or a mapping), so a process killed with a mapped blob leaks nothing.

Linux only (`available()`); elsewhere, and for small inputs, bytes go through pipes and
streams as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import mmap
import os
import sys
import weakref
from collections.abc import Iterable

# Below this, a pipe costs less than creating, sealing and mapping a memfd.
MIN_BYTES = 1024 * 1024
# The names in /proc/<pid>/fd and /proc/<pid>/maps ("memfd:giskard-artifact (deleted)").
HUB_NAME = "giskard-artifact"
INPUT_NAME = "giskard-input"
UPLOAD_NAME = "giskard-upload"
# os.write takes at most about 2 GiB at once (Linux's MAX_RW_COUNT).
_WRITE_BYTES = 1024**3

_SEALS = (
    getattr(fcntl, "F_SEAL_WRITE", 0)
    | getattr(fcntl, "F_SEAL_GROW", 0)
    | getattr(fcntl, "F_SEAL_SHRINK", 0)
)


class SharedMemoryError(Exception):
    """A blob offered through shared memory is not what it was announced to be."""


class Unreachable(SharedMemoryError):
    """The announced blob cannot be opened from here (another machine or pid namespace)."""


@functools.cache
def available() -> bool:
    """Whether this process can share blobs through sealed memfds: Linux, and neither the
    kernel nor a sandbox (seccomp, an old kernel) refuses them, which one try tells."""
    if sys.platform != "linux" or not hasattr(os, "memfd_create"):
        return False
    try:
        fd = os.memfd_create("giskard-probe", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def worth_sharing(size: int) -> bool:
    """Whether a blob of `size` bytes should move through shared memory here."""
    return size >= MIN_BYTES and available()


class SealedBlob:
    """A sealed memfd this process holds open; other processes open it by `path`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        stat = os.fstat(fd)
        self.size = stat.st_size
        self.inode = stat.st_ino
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def of(cls, name: str, data: bytes | bytearray | memoryview) -> SealedBlob:
        """A sealed copy of `data`."""
        writer = BlobWriter(name)
        try:
            writer.write(data)
        except BaseException:
            writer.close()
            raise
        return writer.seal()

    @classmethod
    def open(cls, path: str, size: int, inode: int = 0) -> SealedBlob:
        """The blob another process offers at `path`, checked: sealed, of `size` bytes and,
        if given, of that `inode`. Unreachable if it cannot be opened or is another file."""
        try:
            # Non-blocking: opening a FIFO named instead of a memfd must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise Unreachable(f"cannot open {path}: {exc.strerror}") from None
        try:
            _check(fd, size, inode)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    @property
    def path(self) -> str:
        """Where another process of this user opens it while this one holds it."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def map(self) -> memoryview:
        """A read-only view of the whole blob, valid as long as the view (or whatever is made
        from it) lives, even after close()."""
        return map_readonly(self.fd, self.size)

    def close(self) -> None:
        """Let go of the descriptor; mappings stay valid."""
        self._finalizer()


class BlobWriter:
    """A memfd filled piece by piece, then sealed into a SealedBlob."""

    def __init__(self, name: str) -> None:
        self._fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            count = os.write(self._fd, view[:_WRITE_BYTES])
            view = view[count:]
            self.written += count

    def seal(self) -> SealedBlob:
        """The blob, sealed: nobody can change it any more. The writer is spent."""
        fcntl.fcntl(self._fd, fcntl.F_ADD_SEALS, _SEALS | fcntl.F_SEAL_SEAL)
        fd, self._fd = self._fd, -1
        return SealedBlob(fd)

    def close(self) -> None:
        """Give up an unsealed blob."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def map_input(path: str, size: int) -> memoryview:
    """A read-only view of the sealed blob of `size` bytes offered at `path` (SharedMemoryError
    if it is not one). The descriptor is closed at once: the mapping keeps the memory."""
    blob = SealedBlob.open(path, size)
    try:
        return blob.map()
    finally:
        blob.close()


def map_readonly(fd: int, size: int) -> memoryview:
    """A read-only shared mapping of `size` bytes of `fd`, as a view."""
    return memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ))


def _check(fd: int, size: int, inode: int) -> None:
    stat = os.fstat(fd)
    if inode and stat.st_ino != inode:
        raise Unreachable("the descriptor offered is another file than the one announced")
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0  # not a memfd at all
    if seals & _SEALS != _SEALS:
        raise SharedMemoryError("the blob offered is not sealed against changes")
    if stat.st_size != size:
        raise SharedMemoryError(f"the blob offered has {stat.st_size} bytes, not {size}")


def close_all(blobs: Iterable[SealedBlob]) -> None:
    for blob in blobs:
        with contextlib.suppress(OSError):
            blob.close()
