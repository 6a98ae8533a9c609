"""What the worker tells the hub its executors' caches hold (WorkerMessage.cache)."""

from __future__ import annotations

from giskard.rpc.v1 import worker_pb2
from giskard.worker.cache import CachedInput, summarize
from giskard.worker.pool import ExecutorPool

# How many of the biggest, and of the latest used, inputs a report lists.
CACHE_REPORT_LISTED = 10


class CacheReports:
    """The report of the caches of `pool`'s executors, built again only once a job changed
    one of them or an executor was replaced."""

    def __init__(self, pool: ExecutorPool) -> None:
        self._pool = pool
        # The mirrors themselves, not their ids: a replaced executor's id may be reused.
        self._built_for: tuple[object, ...] = ()
        self._report = worker_pb2.CacheReport(limit_bytes=pool.cache_limit_bytes)

    def current(self) -> worker_pb2.CacheReport:
        mirrors = self._pool.caches
        version = tuple((mirror, mirror.changes) for mirror in mirrors)
        if version != self._built_for:
            summary = summarize(mirrors, self._pool.cache_limit_bytes, CACHE_REPORT_LISTED)
            self._report = worker_pb2.CacheReport(
                entries=summary.entries,
                size_bytes=summary.size_bytes,
                limit_bytes=summary.limit_bytes,
                largest=[_listed(entry) for entry in summary.largest],
                latest=[_listed(entry) for entry in summary.latest],
            )
            self._built_for = version
        return self._report


def _listed(entry: CachedInput) -> worker_pb2.CachedInput:
    return worker_pb2.CachedInput(
        blake3=entry.address, size=entry.size, last_used_at=entry.last_used_at
    )
