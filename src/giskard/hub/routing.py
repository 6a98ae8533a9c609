"""Which queued job goes to which worker now: a pure function of the queue and the sessions.

A job may go only to a worker that takes jobs (it is not draining), meets the job's
constraint (the worker's name, its labels) and can load it (giskard.compat). Among those,
the policy chooses:
- "latest" (the default): the most recently connected gets the job, which waits for one of
  its slots. So the latest worker is the active one for the jobs that ask for nothing, and
  the others stand by, taking only the jobs the latest one may not run.
- "spread": a worker with a slot free to start the job at once, then the one that already
  holds the job's inputs (the hub sent them to it lately), then the one with the most free
  slots, then the latest connected.
Info jobs need no slot, so they go even behind a job that waits for one. Jobs keep their
queue order on each worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from giskard import compat
from giskard.display import printable

LATEST, SPREAD = "latest", "spread"
POLICIES = (LATEST, SPREAD)


class Candidate(Protocol):
    @property
    def takes_jobs(self) -> bool: ...

    @property
    def will_take_jobs(self) -> bool: ...

    @property
    def free_slots(self) -> int: ...

    @property
    def prefetch(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    def differences(self, requirements: compat.Requirements) -> Sequence[compat.Difference]:
        """How it differs from what `requirements` need, blocking first (compat.differences)."""
        ...

    def cached_bytes(self, inputs: Sequence[str]) -> int:
        """How much of these inputs (BLAKE3) the hub sent this worker lately."""
        ...


@dataclass(frozen=True)
class Constraint:
    """Which workers a job may go to: the one named `worker` (if set), with all `labels`,
    that can load what the job needs (`requirements`)."""

    worker: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    requirements: compat.Requirements = compat.NOTHING

    @classmethod
    def of(
        cls,
        worker: str = "",
        labels: Mapping[str, str] | None = None,
        requirements: compat.Requirements | None = None,
    ) -> Constraint:
        return cls(worker, tuple(sorted((labels or {}).items())), requirements or compat.NOTHING)

    def admits(self, session: Candidate) -> bool:
        if not self.selects(session):
            return False
        # A job that needs nothing (no pickle, an older client) loads anywhere.
        return not self.requirements or not compat.blocking(session.differences(self.requirements))

    def selects(self, session: Candidate) -> bool:
        """Whether the session has the name and labels asked for (whatever it can load)."""
        if self.worker and session.name != self.worker:
            return False
        return all(session.labels.get(key) == value for key, value in self.labels)

    def describe(self) -> str:
        """E.g. "named 'gpu-box' with labels gpu=a100"; "" for no constraint."""
        parts = [f"named {self.worker!r}"] if self.worker else []
        if self.labels:
            parts.append("with labels " + ", ".join(f"{k}={v}" for k, v in self.labels))
        # A client's text, for logs and other clients' messages.
        return printable(" ".join(parts))


class QueuedJob(Protocol):
    @property
    def takes_a_slot(self) -> bool: ...

    @property
    def constraint(self) -> Constraint: ...

    @property
    def inputs(self) -> Sequence[str]: ...


J = TypeVar("J", bound=QueuedJob)
S = TypeVar("S", bound=Candidate)


def active_session(sessions: Sequence[S]) -> S | None:
    """The worker that gets the jobs that ask for nothing, under the "latest" policy: the
    latest connected (`sessions` are in connection order) that takes jobs."""
    for session in reversed(sessions):
        if session.takes_jobs:
            return session
    return None


def may_run(constraint: Constraint, sessions: Sequence[Candidate]) -> bool:
    """Whether any of `sessions` may run a job of `constraint`, now or once it has a slot (or
    is resumed)."""
    return any(session.will_take_jobs and constraint.admits(session) for session in sessions)


def incompatibilities(
    constraint: Constraint, sessions: Sequence[Candidate]
) -> list[compat.Difference]:
    """Why no session may run a job of `constraint` though some have the name and labels it
    asks for: how each of those differs from what the job needs. Empty when one of them can
    load it, or none has them."""
    selected = [s for s in sessions if s.will_take_jobs and constraint.selects(s)]
    found = [session.differences(constraint.requirements) for session in selected]
    if any(not compat.blocking(diffs) for diffs in found):
        return []
    return [diff for diffs in found for diff in diffs]


def route(queued: Iterable[J], sessions: Sequence[S], policy: str = LATEST) -> list[tuple[J, S]]:
    """The jobs to send now and where, in the order to send them. `queued` in queue order,
    the jobs that need no slot first; `sessions` in connection order. Reads, never changes,
    what it is given."""
    free = [session.free_slots if session.takes_jobs else 0 for session in sessions]
    slots_left = sum(count for count in free if count > 0)
    choose = _spread if policy == SPREAD else _latest
    # Per constraint, not per job: a long queue asks for few distinct ones.
    eligible: dict[Constraint, list[int]] = {}
    plan: list[tuple[J, S]] = []
    for job in queued:
        if job.takes_a_slot and slots_left <= 0:
            # None of the jobs left can go: a queue thousands long is not scanned at every
            # job's end only to find that.
            break
        if job.constraint not in eligible:
            eligible[job.constraint] = [
                i
                for i, session in enumerate(sessions)
                if session.takes_jobs and job.constraint.admits(session)
            ]
        chosen = choose(job, eligible[job.constraint], sessions, free)
        if chosen is None:
            continue
        if job.takes_a_slot:
            free[chosen] -= 1
            slots_left -= 1
        plan.append((job, sessions[chosen]))
    return plan


def _latest(
    job: QueuedJob, eligible: list[int], sessions: Sequence[Candidate], free: list[int]
) -> int | None:
    if not eligible:
        return None
    latest = eligible[-1]
    return latest if free[latest] > 0 or not job.takes_a_slot else None


def _spread(
    job: QueuedJob, eligible: list[int], sessions: Sequence[Candidate], free: list[int]
) -> int | None:
    if job.takes_a_slot:
        eligible = [i for i in eligible if free[i] > 0]
    if not eligible:
        return None

    def rank(i: int) -> tuple[bool, int, int, int]:
        # Beyond its prefetch, a free slot starts the job at once; within, it waits there.
        starts_now = free[i] > sessions[i].prefetch
        return starts_now, sessions[i].cached_bytes(job.inputs), free[i], i

    return max(eligible, key=rank)
