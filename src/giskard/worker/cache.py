"""The executor's cache of deserialised inputs (models, functions, datasets) by content hash."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from typing import Any

# Many tiny entries (a call's small arguments) cost bookkeeping, not memory: cap their count.
MAX_ENTRIES = 10_000


class ObjectCache:
    """Objects by the BLAKE3 digest of their serialised form, least recently used evicted first.

    Bounded by the total size of the serialised forms, a stand-in for the objects' memory
    (exact for decoded datasets, which are views of their bytes). The worker mirrors which
    keys are held from `take_changes()`, to send an input only when the executor lacks it.
    """

    def __init__(self, max_bytes: int, max_entries: int = MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
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

    def put(self, address: str, value: Any, size: int, keep: Collection[str] = ()) -> None:
        """Hold `value`, evicting the least recently used entries except those in `keep`
        (the running job's inputs). A value bigger than the whole cache is not held."""
        if address in self._entries or size > self.max_bytes:
            return
        self._entries[address] = (value, size)
        self._size += size
        self._added.append(address)
        for key in list(self._entries):
            if self._size <= self.max_bytes and len(self._entries) <= self.max_entries:
                break
            if key in keep or key == address:
                continue
            self._size -= self._entries.pop(key)[1]
            self._evicted.append(key)

    def take_changes(self) -> tuple[list[str], list[str]]:
        """Keys added and evicted since the last call."""
        changes = (self._added, self._evicted)
        self._added, self._evicted = [], []
        return changes
