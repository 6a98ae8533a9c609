"""The executor's cache of deserialised inputs (models, functions, datasets) by content hash,
and the worker's view of it."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, KeysView, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CachedInput:
    address: str
    size: int
    last_used_at: float  # time.time()


class CacheMirror:
    """The worker's view of one executor's ObjectCache, from the changes the executor reports
    as each job ends: which inputs it holds (those are not sent again), their sizes and when a
    job last used each."""

    def __init__(self) -> None:
        self._entries: dict[str, CachedInput] = {}
        self.changes = 0  # how many jobs changed it: a report is built only after one did

    @property
    def addresses(self) -> KeysView[str]:
        return self._entries.keys()

    @property
    def entries(self) -> Iterable[CachedInput]:
        return self._entries.values()

    def job_ended(
        self, inputs: Mapping[str, int], changes: Mapping[str, Any], ended_at: float
    ) -> None:
        """A job with these `inputs` (address -> size) ended, the executor's cache having
        changed as its answer says (ObjectCache.take_changes: "added", "evicted"): those of
        its inputs the cache holds were used at `ended_at`."""
        for address in changes.get("evicted", ()):
            self._entries.pop(address, None)
        held = {*changes.get("added", ()), *(a for a in inputs if a in self._entries)}
        for address in held:
            self._entries[address] = CachedInput(address, inputs.get(address, 0), ended_at)
        self.changes += 1


@dataclass(frozen=True)
class CacheSummary:
    """What several executors' caches hold, with the biggest and the latest used inputs."""

    entries: int
    size_bytes: int
    limit_bytes: int
    largest: tuple[CachedInput, ...]
    latest: tuple[CachedInput, ...]


def summarize(mirrors: Iterable[CacheMirror], limit_bytes: int, listed: int) -> CacheSummary:
    """The caches of `mirrors` together, listing at most `listed` inputs of each kind (an input
    held twice is listed once, as last used)."""
    held: dict[str, CachedInput] = {}
    entries = size = 0
    for mirror in mirrors:
        for entry in mirror.entries:
            entries += 1
            size += entry.size
            if entry.address not in held or held[entry.address].last_used_at < entry.last_used_at:
                held[entry.address] = entry
    return CacheSummary(
        entries,
        size,
        limit_bytes,
        tuple(heapq.nlargest(listed, held.values(), key=lambda e: e.size)),
        tuple(heapq.nlargest(listed, held.values(), key=lambda e: e.last_used_at)),
    )
