"""The last hour of the hub, for the console's charts: each ended job's latency and worker
(the hub's charts and each worker's), and the queue length sampled every SAMPLE_S in the hub's
loop."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from giskard.hub.job import Job
from giskard.rpc.v1 import common_pb2

KEPT_S = 3600.0
SAMPLE_S = 10.0
# A bound on the ends kept however busy the hub is and however many workers serve it: the
# charts then show the latest ones. A worker's charts read the same ends (about 20 MB at most).
ENDS_KEPT = 100_000


@dataclass(frozen=True)
class Minute:
    """The jobs that ended in the minute starting at `start` (time.time())."""

    start: float
    ended: int
    p50_s: float
    p95_s: float


class History:
    """Jobs ended (JobBoard.ended_observers), with the worker each ran on, and queue lengths
    (`sample_every`), kept KEPT_S."""

    def __init__(self, queued: Callable[[], int]) -> None:
        self._queued = queued
        # (ended at, latency, worker_id: "" if never sent), the latest last.
        self._ends: deque[tuple[float, float, str]] = deque(maxlen=ENDS_KEPT)
        self._queue: deque[tuple[float, int]] = deque(maxlen=int(KEPT_S // SAMPLE_S))

    def job_ended(self, job: Job, end: common_pb2.JobEnd | None, ended_at: float) -> None:
        """Its latency, from submitted to ended, and the worker it was sent to, if any; the
        ends more than KEPT_S older than it are forgotten."""
        self._ends.append((ended_at, max(0.0, ended_at - job.submitted_at), job.worker_id))
        while self._ends[0][0] < ended_at - KEPT_S:
            self._ends.popleft()

    def sample(self) -> None:
        self._queue.append((time.time(), self._queued()))

    async def sample_every(self, interval_s: float = SAMPLE_S) -> None:
        """Sample the queue length until cancelled (with the console)."""
        while True:
            self.sample()
            await asyncio.sleep(interval_s)

    def per_minute(self, worker_id: str = "") -> list[Minute]:
        """The minutes of the last hour in which jobs ended (on the worker of `worker_id`, if
        given), the oldest first."""
        since = time.time() - KEPT_S
        minutes: dict[float, list[float]] = {}
        for ended_at, latency, on in self._ends:
            if ended_at >= since and (not worker_id or on == worker_id):
                minutes.setdefault(ended_at // 60 * 60, []).append(latency)
        return [
            Minute(start, len(latencies), _quantile(latencies, 0.5), _quantile(latencies, 0.95))
            for start, latencies in sorted(minutes.items())
        ]

    def queue_lengths(self) -> list[tuple[float, int]]:
        since = time.time() - KEPT_S
        return [(at, length) for at, length in self._queue if at >= since]


def _quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile `q` of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
