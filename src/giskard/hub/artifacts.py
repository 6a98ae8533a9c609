"""Content-addressed storage of the artifacts (models, datasets) jobs refer to."""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024**3


class ArtifactStore:
    """Blobs keyed by BLAKE3, in memory, least recently used evicted first.

    Artifacts pinned by a queued or running job are never evicted, so a job cannot lose its
    inputs between submission and the worker's download. The hub never interprets the bytes.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, bytes | bytearray] = OrderedDict()
        self._pins: defaultdict[str, int] = defaultdict(int)
        self._size = 0

    def __contains__(self, address: str) -> bool:
        return address in self._blobs

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

    def get(self, address: str) -> bytes | bytearray | None:
        blob = self._blobs.get(address)
        if blob is not None:
            self._blobs.move_to_end(address)
        return blob

    def put(self, address: str, blob: bytes | bytearray) -> None:
        if address in self._blobs:
            self._blobs.move_to_end(address)
            return
        self._blobs[address] = blob
        self._size += len(blob)
        self._evict()

    def pin(self, address: str) -> None:
        self._pins[address] += 1

    def unpin(self, address: str) -> None:
        self._pins[address] -= 1
        if self._pins[address] <= 0:
            del self._pins[address]
        self._evict()

    def _evict(self) -> None:
        for address in list(self._blobs):
            if self._size <= self.max_bytes:
                return
            if self._pins.get(address):
                continue
            self._size -= len(self._blobs.pop(address))
            logger.debug("evicted artifact %s", address[:12])
