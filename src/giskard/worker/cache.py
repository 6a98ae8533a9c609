"""The executor's cache of deserialised inputs (models, functions, datasets) by content hash."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

# Many tiny entries (a call's small arguments) cost bookkeeping, not memory: cap their count.
MAX_ENTRIES = 10_000
# An entry decoded from shared memory keeps its mapping, and each mapping a file descriptor
# (Python's mmap holds its own): cap them well under the usual limit of 1024 descriptors.
MAX_MAPPED_ENTRIES = 256


class ObjectCache:
    """Objects by the BLAKE3 digest of their serialised form, least recently used evicted first.

    Bounded by the total size of the serialised forms, a stand-in for the objects' memory
    (exact for decoded datasets, which are views of their bytes). The worker mirrors which
    keys are held from `take_changes()`, to send an input only when the executor lacks it.
    """

    def __init__(
        self,
        max_bytes: int,
        max_entries: int = MAX_ENTRIES,
        max_mapped: int = MAX_MAPPED_ENTRIES,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_mapped = max_mapped
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._mapped: set[str] = set()  # the entries that hold a mapping
        self._size = 0
        self._added: list[str] = []
        self._evicted: list[str] = []

    def __contains__(self, address: str) -> bool:
        return address in self._entries

    @property
    def size_bytes(self) -> int:
        return self._size

    def get(self, address: str) -> Any:
        """The object; KeyError if it is not held."""
        self._entries.move_to_end(address)
        return self._entries[address][0]

    def put(
        self,
        address: str,
        value: Any,
        size: int,
        keep: Collection[str] = (),
        mapped: bool = False,
    ) -> None:
        """Hold `value` (`mapped`: it was decoded from shared memory, whose mapping it may
        keep), evicting the least recently used entries except those in `keep` (the running
        job's inputs). A value bigger than the whole cache is not held."""
        if address in self._entries or size > self.max_bytes:
            return
        self._entries[address] = (value, size)
        self._size += size
        self._added.append(address)
        if mapped:
            self._mapped.add(address)
        keep = {*keep, address}
        self._evict(self._entries, keep, self._fits)
        self._evict(self._mapped, keep, lambda: len(self._mapped) <= self.max_mapped)

    def _fits(self) -> bool:
        return self._size <= self.max_bytes and len(self._entries) <= self.max_entries

    def _evict(
        self, among: Collection[str], keep: Collection[str], done: Callable[[], bool]
    ) -> None:
        """Evict the least recently used of `among` (not in `keep`) until `done()`."""
        for key in [key for key in self._entries if key in among]:
            if done():
                return
            if key not in keep:
                self._size -= self._entries.pop(key)[1]
                self._mapped.discard(key)
                self._evicted.append(key)

    def take_changes(self) -> tuple[list[str], list[str]]:
        """Keys added and evicted since the last call."""
        changes = (self._added, self._evicted)
        self._added, self._evicted = [], []
        return changes
