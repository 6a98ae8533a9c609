"""Content-addressed storage of the artifacts (models, datasets) jobs refer to."""

from __future__ import annotations

import asyncio
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
    """Blobs keyed by BLAKE3, in memory, least recently used evicted first.

    Artifacts pinned by a queued or running job are never evicted, so a job cannot lose its
    inputs between submission and the worker's download. The hub never interprets the bytes.

    On Linux a big blob a worker of this machine and user asks for is moved into a sealed
    memfd (see giskard.shared_memory), which the worker maps instead of downloading it; blobs
    only ever downloaded stay bytes, so a hub of remote workers copies nothing more. A client
    of this machine may hand over its own sealed memfd (put_shared), kept without a copy. An
    evicted memfd lives on while a worker or an executor still holds it: the kernel frees it
    after them.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, Blob | SealedBlob] = OrderedDict()
        self._pins: defaultdict[str, int] = defaultdict(int)
        self._size = 0
        self._shared = 0  # how many blobs are SealedBlobs

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

    def get(self, address: str) -> Blob | None:
        """The artifact's bytes, or None."""
        blob = self._touch(address)
        return blob.map() if isinstance(blob, SealedBlob) else blob

    async def shared(self, address: str) -> SealedBlob | None:
        """The artifact in a sealed memfd, made at the first ask (copied off the event loop);
        None if there is no such artifact or it stays bytes (small, too many memfds, none
        here)."""
        blob = self._touch(address)
        if blob is None or isinstance(blob, SealedBlob):
            return blob
        if not self._may_share(blob):
            return None
        try:
            sealed = await asyncio.to_thread(SealedBlob.of, shared_memory.HUB_NAME, blob)
        except OSError as exc:  # out of descriptors or memory for memfds: bytes serve as well
            logger.warning("Keeping an artifact of %d B outside shared memory: %s", len(blob), exc)
            return None
        return self._swap(address, blob, sealed)

    def put(self, address: str, blob: Blob) -> None:
        if address in self._blobs:
            self._blobs.move_to_end(address)
            return
        self._blobs[address] = blob
        self._size += len(blob)
        self._evict()

    def takes_shared(self) -> bool:
        """Whether it may keep one more memfd (each is a descriptor the hub holds; so would a
        mapping be): if not, a client sends its input in chunks."""
        return self._shared < MAX_SHARED_BLOBS

    def put_shared(self, address: str, sealed: SealedBlob) -> None:
        """Keep a sealed memfd a client handed over (checked against `address`) as it is. Asked
        for only when `takes_shared`; uploads that raced past that check may pass
        MAX_SHARED_BLOBS by as many as ran at once."""
        if address in self._blobs:
            sealed.close()
            self._blobs.move_to_end(address)
            return
        self._blobs[address] = sealed
        self._size += sealed.size
        self._shared += 1
        self._evict()

    def pin(self, address: str) -> None:
        self._pins[address] += 1

    def unpin(self, address: str) -> None:
        self._pins[address] -= 1
        if self._pins[address] <= 0:
            del self._pins[address]
        self._evict()

    def _touch(self, address: str) -> Blob | SealedBlob | None:
        blob = self._blobs.get(address)
        if blob is not None:
            self._blobs.move_to_end(address)
        return blob

    def _evict(self) -> None:
        for address in list(self._blobs):
            if self._size <= self.max_bytes:
                return
            if self._pins.get(address):
                continue
            blob = self._blobs.pop(address)
            if isinstance(blob, SealedBlob):
                self._size -= blob.size
                self._shared -= 1
                blob.close()
            else:
                self._size -= len(blob)
            logger.debug("evicted artifact %s", address[:12])

    def _may_share(self, blob: Blob) -> bool:
        return shared_memory.worth_sharing(len(blob)) and self._shared < MAX_SHARED_BLOBS

    def _swap(self, address: str, blob: Blob, sealed: SealedBlob) -> SealedBlob | None:
        """Keep `sealed` in place of `blob`, unless the store changed during the copy (another
        ask made its memfd first, or it was evicted, or the memfds ran out meanwhile)."""
        current = self._blobs.get(address)
        if current is not blob or not self._may_share(blob):
            sealed.close()
            return current if isinstance(current, SealedBlob) else None
        self._blobs[address] = sealed  # the same key: its place in the LRU order stays
        self._shared += 1
        return sealed
