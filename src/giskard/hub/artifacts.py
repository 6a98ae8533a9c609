"""Content-addressed storage of the artifacts (models, datasets) jobs refer to."""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict

from giskard import shared_memory
from giskard.shared_memory import SealedBlob

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024**3
# Each memfd is a descriptor the hub holds: beyond this many, artifacts stay bytes, leaving
# most of a default limit of 1024 descriptors to connections.
MAX_SHARED_BLOBS = 256

Blob = bytes | bytearray | memoryview


class ArtifactStore:
    """Blobs keyed by SHA-256, in memory, least recently used evicted first.

    Artifacts pinned by a queued or running job are never evicted, so a job cannot lose its
    inputs between submission and the worker's download. The hub never interprets the bytes.

    On Linux a big blob is kept in a sealed memfd (see giskard.shared_memory), which a worker
    of this machine and user maps instead of downloading it. An evicted one lives on while a
    worker or an executor still holds it: the kernel frees it after them.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, Blob | SealedBlob] = OrderedDict()
        self._pins: defaultdict[str, int] = defaultdict(int)
        self._size = 0
        self._shared = 0  # how many blobs are SealedBlobs

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._blobs

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def count(self) -> int:
        return len(self._blobs)

    @property
    def pinned(self) -> int:
        """How many artifacts jobs hold (whether the store holds them yet or not)."""
        return len(self._pins)

    def get(self, sha256: str) -> Blob | None:
        """The artifact's bytes, or None."""
        blob = self._touch(sha256)
        return blob.map() if isinstance(blob, SealedBlob) else blob

    def shared(self, sha256: str) -> SealedBlob | None:
        """The artifact's sealed memfd, or None if it is not kept in one (or not at all)."""
        blob = self._touch(sha256)
        return blob if isinstance(blob, SealedBlob) else None

    def put(self, sha256: str, blob: Blob) -> None:
        if sha256 in self._blobs:
            self._blobs.move_to_end(sha256)
            return
        kept = self._kept(blob)
        self._blobs[sha256] = kept
        self._shared += isinstance(kept, SealedBlob)
        self._size += len(blob)
        self._evict()

    def pin(self, sha256: str) -> None:
        self._pins[sha256] += 1

    def unpin(self, sha256: str) -> None:
        self._pins[sha256] -= 1
        if self._pins[sha256] <= 0:
            del self._pins[sha256]
        self._evict()

    def _touch(self, sha256: str) -> Blob | SealedBlob | None:
        blob = self._blobs.get(sha256)
        if blob is not None:
            self._blobs.move_to_end(sha256)
        return blob

    def _evict(self) -> None:
        for sha256 in list(self._blobs):
            if self._size <= self.max_bytes:
                return
            if self._pins.get(sha256):
                continue
            blob = self._blobs.pop(sha256)
            if isinstance(blob, SealedBlob):
                self._size -= blob.size
                self._shared -= 1
                blob.close()
            else:
                self._size -= len(blob)
            logger.debug("evicted artifact %s", sha256[:12])

    def _kept(self, blob: Blob) -> Blob | SealedBlob:
        """How the store keeps `blob`: big ones in a sealed memfd where there are memfds."""
        if not shared_memory.worth_sharing(len(blob)) or self._shared >= MAX_SHARED_BLOBS:
            return blob
        try:
            return SealedBlob.of(shared_memory.HUB_NAME, blob)
        except OSError as exc:  # out of descriptors or memory for memfds: bytes serve as well
            logger.warning("Keeping an artifact of %d B outside shared memory: %s", len(blob), exc)
            return blob
