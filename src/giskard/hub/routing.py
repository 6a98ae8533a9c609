"""Which queued job goes to which worker now: a pure function of the queue and the sessions.

The rule: the most recently connected worker that is not draining is the active one and gets
the jobs, in queue order, while it has free slots; the others stand by and get none. Info jobs
need no slot, so they go even behind a job that waits for one. Constraints (a worker's name or
labels, its environment, a spread policy) belong here, as more inputs to `route`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class QueuedJob(Protocol):
    @property
    def takes_a_slot(self) -> bool: ...


class Candidate(Protocol):
    @property
    def takes_jobs(self) -> bool: ...

    @property
    def free_slots(self) -> int: ...


J = TypeVar("J", bound=QueuedJob)
S = TypeVar("S", bound=Candidate)


def active_session(sessions: Sequence[S]) -> S | None:
    """The worker that gets the jobs: the latest connected (`sessions` are in connection
    order) that takes jobs (it is not draining)."""
    for session in reversed(sessions):
        if session.takes_jobs:
            return session
    return None


def route(queued: Iterable[J], sessions: Sequence[S]) -> list[tuple[J, S]]:
    """The jobs to send now and where, in the order to send them. `queued` in queue order,
    `sessions` in connection order. Reads, never changes, what it is given."""
    active = active_session(sessions)
    if active is None:
        return []
    free = active.free_slots
    plan: list[tuple[J, S]] = []
    for job in queued:
        if not job.takes_a_slot:
            plan.append((job, active))
        elif free > 0:
            free -= 1
            plan.append((job, active))
    return plan
