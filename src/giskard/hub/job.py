"""A job at the hub, and the ends the hub itself decides for one; jobs.JobBoard writes it."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from giskard import compat
from giskard.hub.job_events import JobEvents
from giskard.hub.routing import Candidate, Constraint, incompatibilities
from giskard.rpc.v1 import common_pb2

if TYPE_CHECKING:
    from giskard.hub.registry import WorkerSession


class JobState(enum.Enum):
    NEW = "new"  # not received yet
    WAITING = "waiting"  # received, waiting for a worker that may run it to connect
    QUEUED = "queued"  # waiting at the hub for a slot
    RUNNING = "running"  # sent to a worker, holding one of its slots
    STOPPING = "stopping"  # ended for its client; its worker has not released the slot yet
    ENDED = "ended"


@dataclass(eq=False)
class Job:
    """A job submitted to the hub. Its fields are written by JobBoard only."""

    job_id: str
    spec: common_pb2.JobSpec
    events: JobEvents  # to the client that submitted it
    inputs: list[str] = field(default_factory=list)  # the artifacts it pins (BLAKE3)
    # time.monotonic() by which the job must end; None: no limit.
    deadline: float | None = None
    constraint: Constraint = field(default_factory=Constraint)  # the workers it may go to
    state: JobState = JobState.NEW
    session: WorkerSession | None = None  # the worker whose slot it holds
    submitted_at: float = 0.0  # time.time() when it was submitted
    sent_at: float = 0.0  # time.time() when it was sent
    worker_id: str = ""  # of the worker it was sent to
    # The id its worker knows it by: new for each hub and each time it is sent, so that a
    # client's id, which may come again once the job ended, never reaches a worker twice.
    dispatch_id: str = ""
    progress: tuple[int, int] = (0, 0)
    was_queued: bool = False
    received_bytes: int = 0  # of its result, from its worker
    cancel_sent: bool = False  # its worker was told to stop it
    # How the worker it was sent to differs from what its pickles need (not blocking).
    differences: Sequence[compat.Difference] = ()
    # Stopped when it ends, so that a finished job is not kept in memory until they fire.
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    # Among `timers`: running while no connected worker may run it.
    no_worker_timer: asyncio.TimerHandle | None = None
    # BLAKE3 -> size of each input it reads (job_inputs), remembered for the worker it goes
    # to (routing by cache); given by who listed its inputs on arrival.
    input_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        """Its one end happened: its client has it, or is gone."""
        return self.state in (JobState.STOPPING, JobState.ENDED)

    @property
    def kind(self) -> str:
        return self.spec.WhichOneof("kind") or ""

    @property
    def takes_a_slot(self) -> bool:
        """Info jobs run beside the others on the worker; the rest take one of its slots."""
        return self.kind != "info"

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


JobTransition = Callable[[Job], None]


def failure_end(
    job: Job, reason: common_pb2.EndReason.ValueType, kind: str, message: str
) -> common_pb2.JobEnd:
    """An end the hub decides; `kind` is the detail of `reason`, kept for the client."""
    failure = common_pb2.JobFailure(type=kind, message=message)
    return common_pb2.JobEnd(job_id=job.job_id, failure=failure, reason=reason)


def worker_lost_end(job: Job, message: str, kind: str = "WorkerLost") -> common_pb2.JobEnd:
    return failure_end(job, common_pb2.END_REASON_WORKER_LOST, kind, message)


def cancelled_end(job: Job, message: str) -> common_pb2.JobEnd:
    return failure_end(job, common_pb2.END_REASON_CANCELLED, "JobCancelled", message)


def incompatible_end(
    job_id: str, constraint: Constraint, sessions: Sequence[Candidate]
) -> common_pb2.JobEnd | None:
    """The end of a job that none of the connected workers it may go to can load, saying
    how each differs from what it needs; None if one can, or none is connected."""
    diffs = incompatibilities(constraint, sessions)
    if not diffs:
        return None
    failure = common_pb2.JobFailure(
        type="IncompatibleEnvironment",
        message=compat.explain(constraint.requirements, diffs),
        differences=[diff.to_proto() for diff in diffs],
    )
    reason = common_pb2.END_REASON_INCOMPATIBLE_ENVIRONMENT
    return common_pb2.JobEnd(job_id=job_id, failure=failure, reason=reason)
