"""The last hour of the hub, for the console's charts: each ended job's latency, on the hub
and on each worker, and the queue length sampled every SAMPLE_S in the hub's loop."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from giskard.hub.job import Job
from giskard.rpc.v1 import common_pb2

KEPT_S = 3600.0
SAMPLE_S = 10.0
# A bound on the ends kept however busy the hub is: the charts then show the latest ones.
ENDS_KEPT = 100_000
# The same for each worker, and a bound on the workers kept: those whose latest job ended
# longest ago are forgotten first.
WORKER_ENDS_KEPT = 10_000
WORKERS_KEPT = 256


@dataclass(frozen=True)
class Minute:
    """The jobs that ended in the minute starting at `start` (time.time())."""

    start: float
    ended: int
    p50_s: float
    p95_s: float


Ends = deque[tuple[float, float]]  # (ended at, latency)


class History:
    """Jobs ended (JobBoard.ended_observers), on the hub and on each worker, and queue lengths
    (`sample_every`), kept KEPT_S."""

    def __init__(self, queued: Callable[[], int]) -> None:
        self._queued = queued
        self._ends: Ends = deque(maxlen=ENDS_KEPT)
        # By worker_id, the worker whose latest job ended last, last.
        self._worker_ends: OrderedDict[str, Ends] = OrderedDict()
        self._queue: deque[tuple[float, int]] = deque(maxlen=int(KEPT_S // SAMPLE_S))

    def job_ended(self, job: Job, end: common_pb2.JobEnd | None, ended_at: float) -> None:
        """Its latency: from submitted to ended; on its worker's too, if it was sent to one."""
        end = (ended_at, max(0.0, ended_at - job.submitted_at))
        _keep(self._ends, end)
        if job.worker_id:
            ends = self._worker_ends.pop(job.worker_id, None) or deque(maxlen=WORKER_ENDS_KEPT)
            self._worker_ends[job.worker_id] = ends
            _keep(ends, end)
            if len(self._worker_ends) > WORKERS_KEPT:
                self._worker_ends.popitem(last=False)

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
        ends = self._worker_ends.get(worker_id, ()) if worker_id else self._ends
        since = time.time() - KEPT_S
        minutes: dict[float, list[float]] = {}
        for ended_at, latency in ends:
            if ended_at >= since:
                minutes.setdefault(ended_at // 60 * 60, []).append(latency)
        return [
            Minute(start, len(latencies), _quantile(latencies, 0.5), _quantile(latencies, 0.95))
            for start, latencies in sorted(minutes.items())
        ]

    def queue_lengths(self) -> list[tuple[float, int]]:
        since = time.time() - KEPT_S
        return [(at, length) for at, length in self._queue if at >= since]


def _keep(ends: Ends, end: tuple[float, float]) -> None:
    """Add `end`, forgetting those that ended more than KEPT_S before it."""
    ends.append(end)
    while ends and ends[0][0] < end[0] - KEPT_S:
        ends.popleft()


def _quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile `q` of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
