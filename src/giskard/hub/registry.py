"""The workers connected to the hub, which one is active, and the jobs each one runs."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from giskard.display import printable
from giskard.rpc.v1 import client_pb2, common_pb2, worker_pb2
from giskard.sizes import format_size

logger = logging.getLogger(__name__)
T = TypeVar("T")


# Results are relayed to the client as they come; this many chunks (1 MiB each) of a job may
# wait for a client that reads slowly, or not yet, after which that job's result stream
# waits (backpressure, not memory). Its worker's session and other jobs never wait.
JOB_EVENTS_QUEUED = 64
# What the hub holds of results not read yet, all jobs together: past it, a job whose result
# does not fit fails, instead of the hub's memory growing with every unread job.
UNREAD_RESULTS_MAX_BYTES = 1024**3


@dataclass
class UnreadResults:
    """The bytes of results the hub holds for clients that have not read them yet."""

    max_bytes: int = UNREAD_RESULTS_MAX_BYTES
    held_bytes: int = 0
    peak_bytes: int = 0

    def take(self, size: int) -> bool:
        """Count `size` more bytes held; False (nothing counted) if they do not fit."""
        if self.held_bytes + size > self.max_bytes:
            return False
        self.held_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        return True

    def give_back(self, size: int) -> None:
        self.held_bytes -= size


@dataclass(eq=False)
class JobRun:
    """A job sent to a worker; its events go to the client that submitted it."""

    job_id: str
    pinned: list[str]
    unread: UnreadResults  # the hub's, shared by all jobs
    spec: common_pb2.JobSpec = field(default_factory=common_pb2.JobSpec)
    # time.monotonic() by which the job must end; None: no limit.
    deadline: float | None = None
    session: WorkerSession | None = None  # the worker it was sent to
    sent_at: float = 0.0  # time.time() when it was sent
    progress: tuple[int, int] = (0, 0)
    was_queued: bool = False
    # The hub's timers for this job (its deadline), cancelled when it ends so that a finished
    # job is not kept in memory until then.
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    # None means: stop, the submitter's key was revoked. Unbounded, so that the worker's
    # session never waits on one client: result chunks, the bulk, wait for room instead
    # (`wait_for_room`), each in its own call.
    events: asyncio.Queue[client_pb2.JobEvent | None] = field(default_factory=asyncio.Queue)
    taken: asyncio.Event = field(default_factory=asyncio.Event)
    received_bytes: int = 0
    done: bool = False

    def finish(self, end: common_pb2.JobEnd) -> None:
        """End the job now, from synchronous code: unsent output is dropped if need be."""
        if not self.done:
            self.done = True
            self.interrupt(client_pb2.JobEvent(end=end))
        self.cancel_timers()

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def interrupt(self, event: client_pb2.JobEvent | None) -> None:
        # The job is over: its pending output is moot.
        self.discard_pending()
        self.events.put_nowait(event)

    def discard_pending(self) -> None:
        """Drop the events not sent yet, and wake a result stream waiting for room."""
        while not self.events.empty():
            self._release_held(self.events.get_nowait())
        self.taken.set()

    async def next_event(self) -> client_pb2.JobEvent | None:
        event = await self.events.get()
        self._release_held(event)
        self.taken.set()
        return event

    def queue_output(self, output: common_pb2.JobOutput) -> bool:
        """Hold a piece of the result for the client; if the hub holds as much unread result
        as it may, fail the job instead (its held output is dropped) and return False."""
        if self.unread.take(len(output.chunk)):
            self.events.put_nowait(client_pb2.JobEvent(output=output))
            return True
        self.fail(
            "UnreadResultsLimit",
            f"the hub holds {format_size(self.unread.max_bytes)} of results not read yet,"
            " as much as it may, and dropped this one: read results as they come, or submit"
            " fewer jobs at a time",
        )
        return False

    def _release_held(self, event: client_pb2.JobEvent | None) -> None:
        if event is not None and event.WhichOneof("kind") == "output":
            self.unread.give_back(len(event.output.chunk))

    async def wait_for_room(self) -> None:
        """Until fewer than JOB_EVENTS_QUEUED events wait for the client (or the job ended)."""
        while self.events.qsize() >= JOB_EVENTS_QUEUED and not self.done:
            self.taken.clear()
            await self.taken.wait()

    @property
    def kind(self) -> str:
        return self.spec.WhichOneof("kind") or ""

    @property
    def takes_a_slot(self) -> bool:
        """Info jobs run beside the others on the worker; the rest take one of its slots."""
        return self.kind != "info"

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def fail(self, kind: str, message: str) -> None:
        failure = common_pb2.JobFailure(type=kind, message=message)
        self.finish(common_pb2.JobEnd(job_id=self.job_id, failure=failure))


@dataclass(eq=False)
class WorkerSession:
    """One connected worker."""

    info: common_pb2.WorkerInfo
    peer: str
    # The name of the key that opened the session: only that key may act for it.
    key_name: str = ""
    # Names the session in the worker's calls beside it (SendResult, FetchArtifact).
    session_id: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    # Bounded so that a worker that stops reading cannot make the hub buffer without end.
    outbox: asyncio.Queue[worker_pb2.HubMessage | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=256)
    )
    connected_at: float = field(default_factory=time.time)
    jobs: dict[str, JobRun] = field(default_factory=dict)
    draining: bool = False
    concurrency: int = 1
    prefetch: int = 0

    @property
    def has_room(self) -> bool:
        held = sum(job.takes_a_slot for job in self.jobs.values())
        return held < self.concurrency + self.prefetch

    def waiting_jobs(self) -> set[str]:
        """The ids of the jobs waiting in the worker for a slot: it starts jobs in the order
        they were sent, so those past the first `concurrency` it holds are waiting."""
        held = [job.job_id for job in self.jobs.values() if job.takes_a_slot]
        return set(held[self.concurrency :])

    def describe(self) -> str:
        # Worker-supplied text: control characters could forge log lines or drive a terminal.
        return printable(
            f"pid {self.info.pid} on {self.info.hostname} "
            f"(Python {self.info.python_version}, {self.info.interpreter})"
        )

    def fail_jobs(self, reason: str) -> None:
        for job in self.jobs.values():
            job.fail("WorkerLost", reason)
        self.jobs.clear()


class WorkerRegistry:
    """Connected workers in connection order; the latest one that is not draining is active."""

    def __init__(self) -> None:
        self._sessions: list[WorkerSession] = []
        self._changed = asyncio.Condition()
        # Called whenever the workers change (the dispatcher sends queued jobs then).
        self.on_change: Callable[[], None] = lambda: None

    @property
    def sessions(self) -> list[WorkerSession]:
        """The active worker first, then the others, newest first."""
        active = self.active
        rest = [s for s in reversed(self._sessions) if s is not active]
        return [active, *rest] if active else rest

    @property
    def active(self) -> WorkerSession | None:
        for session in reversed(self._sessions):
            if not session.draining:
                return session
        return None

    async def add(self, session: WorkerSession) -> None:
        previous = self.active
        self._sessions.append(session)
        if previous is not None:
            message = f"superseded by a newer worker, {session.describe()}; standing by"
            _tell_role(previous, active=False, message=message)
        await self._notify()

    async def remove(self, session: WorkerSession) -> None:
        was_active = session is self.active
        if session in self._sessions:
            self._sessions.remove(session)
        await self._promote_if(was_active)

    async def drain(self, session: WorkerSession) -> None:
        was_active = session is self.active
        session.draining = True
        await self._promote_if(was_active)

    def find_session(self, session_id: str, key_name: str) -> WorkerSession | None:
        """The connected session of that id, if the key named `key_name` opened it."""
        for session in self._sessions:
            if session.session_id == session_id and session.key_name == key_name:
                return session
        return None

    async def wait_for_active(self, timeout_s: float) -> WorkerSession | None:
        """The active worker, waiting up to `timeout_s` for one to connect."""
        if self.active is not None or timeout_s <= 0:
            return self.active
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.active is not None), timeout_s
                )
            except TimeoutError:
                return None
        return self.active

    async def _promote_if(self, was_active: bool) -> None:
        successor = self.active
        if was_active and successor is not None:
            logger.info("Worker %s is active again", successor.describe())
            _tell_role(successor, active=True, message="the newer worker left; active again")
        await self._notify()

    async def _notify(self) -> None:
        self.on_change()
        async with self._changed:
            self._changed.notify_all()


def _tell_role(session: WorkerSession, *, active: bool, message: str) -> None:
    role = worker_pb2.HubMessage(role=worker_pb2.Role(active=active, message=message))
    try:
        session.outbox.put_nowait(role)
    except asyncio.QueueFull:
        logger.warning("Worker %s is not reading; role change not sent", session.describe())


def put_evicting(queue: asyncio.Queue[T], item: T) -> None:
    """Put `item` now, dropping the oldest queued items if the queue is full: for a stream
    that is ending, whose pending items no longer matter."""
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
