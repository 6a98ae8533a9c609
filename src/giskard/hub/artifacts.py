"""Content-addressed storage of the artifacts (models, datasets) jobs refer to."""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024**3


class ArtifactStore:
    """Blobs keyed by SHA-256, in memory, least recently used evicted first.

    Artifacts pinned by a queued or running job are never evicted, so a job cannot lose its
    inputs between submission and the worker's download. The hub never interprets the bytes.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, bytes | bytearray] = OrderedDict()
        self._pins: defaultdict[str, int] = defaultdict(int)
        self._size = 0

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

    def get(self, sha256: str) -> bytes | bytearray | None:
        blob = self._blobs.get(sha256)
        if blob is not None:
            self._blobs.move_to_end(sha256)
        return blob

    def put(self, sha256: str, blob: bytes | bytearray) -> None:
        if sha256 in self._blobs:
            self._blobs.move_to_end(sha256)
            return
        self._blobs[sha256] = blob
        self._size += len(blob)
        self._evict()

    def pin(self, sha256: str) -> None:
        self._pins[sha256] += 1

    def unpin(self, sha256: str) -> None:
        self._pins[sha256] -= 1
        if self._pins[sha256] <= 0:
            del self._pins[sha256]
        self._evict()

    def _evict(self) -> None:
        for sha256 in list(self._blobs):
            if self._size <= self.max_bytes:
                return
            if self._pins.get(sha256):
                continue
            self._size -= len(self._blobs.pop(sha256))
            logger.debug("evicted artifact %s", sha256[:12])
