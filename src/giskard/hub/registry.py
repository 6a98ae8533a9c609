"""The workers connected to the hub and which one is active."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from giskard.display import printable
from giskard.hub.routing import active_session
from giskard.rpc.v1 import common_pb2, worker_pb2

if TYPE_CHECKING:
    from giskard.hub.jobs import Job

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
    # The jobs holding its slots, in the order they were sent; written by jobs.JobBoard only.
    jobs: dict[str, Job] = field(default_factory=dict)
    draining: bool = False
    paused: bool = False  # by an admin (ControlWorker): connected, but gets no new jobs
    concurrency: int = 1
    prefetch: int = 0

    @property
    def takes_jobs(self) -> bool:
        """Whether new jobs may go to this worker at all (routing decides which)."""
        return not (self.draining or self.paused)

    @property
    def free_slots(self) -> int:
        held = sum(job.takes_a_slot for job in self.jobs.values())
        return self.concurrency + self.prefetch - held

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


class WorkerRegistry:
    """Connected workers in connection order; the latest one that is not draining is active
    (routing.active_session)."""

    def __init__(self) -> None:
        self._sessions: list[WorkerSession] = []
        self._changed = asyncio.Condition()
        # Called whenever the workers change (jobs.JobBoard routes queued jobs then).
        self.on_change: Callable[[], None] = lambda: None

    @property
    def sessions(self) -> list[WorkerSession]:
        """The active worker first, then the others, newest first."""
        active = self.active
        rest = [s for s in reversed(self._sessions) if s is not active]
        return [active, *rest] if active else rest

    @property
    def active(self) -> WorkerSession | None:
        return active_session(self._sessions)

    @property
    def in_connection_order(self) -> Sequence[WorkerSession]:
        return self._sessions

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

    async def set_paused(self, session: WorkerSession, paused: bool) -> None:
        """Pause `session` (it takes no new jobs; another may become active) or resume it."""
        previous = self.active
        session.paused = paused
        if session is previous or self.active is not session:
            await self._promote_if(session is previous)
            return
        if previous is not None:  # resumed, it is the latest again: it takes over
            _tell_role(previous, active=False, message="a resumed worker is active; standing by")
        await self._notify()

    def find_session(self, session_id: str, key_name: str) -> WorkerSession | None:
        """The connected session of that id, if the key named `key_name` opened it."""
        for session in self._sessions:
            if session.session_id == session_id and session.key_name == key_name:
                return session
        return None

    @property
    def serving(self) -> bool:
        """Whether a connected worker takes jobs, or will once resumed: jobs wait for a
        paused worker as they do for a busy one."""
        return any(s.takes_jobs or (s.paused and not s.draining) for s in self._sessions)

    async def wait_for_worker(self, timeout_s: float) -> bool:
        """Whether a worker is `serving`, waiting up to `timeout_s` for one to connect."""
        if self.serving or timeout_s <= 0:
            return self.serving
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.serving), timeout_s)
            except TimeoutError:
                return False
        return True

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


class UnknownWorkerError(LookupError):
    """No connected worker, or more than one, answers to the reference given."""


def find_worker(registry: WorkerRegistry, ref: str) -> WorkerSession:
    """The one connected worker that `ref` names: a prefix of its worker_id, or its
    pid@hostname, as `giskard hub workers` shows them."""
    ref = ref.strip()
    matches = [s for s in registry.sessions if ref and _answers_to(s, ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownWorkerError(
            f"no connected worker {printable(ref)!r} (give a worker_id prefix or pid@hostname,"
            " see `giskard hub workers --json`)"
        )
    raise UnknownWorkerError(
        f"{len(matches)} connected workers match {printable(ref)!r}; give a longer worker_id"
    )


def _answers_to(session: WorkerSession, ref: str) -> bool:
    info = session.info
    return info.worker_id.startswith(ref) or ref == f"{info.pid}@{info.hostname}"


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
