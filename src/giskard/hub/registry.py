"""The workers connected to the hub: their names (unique), and which ones are active."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from giskard import compat
from giskard.display import printable
from giskard.hub.routing import LATEST, active_session
from giskard.rpc.v1 import common_pb2, worker_pb2

if TYPE_CHECKING:
    from giskard.hub.job import Job

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The inputs sent to a worker that the hub remembers, for routing by cache: the worker's own
# cache is bounded too, so older ones are likely gone from it anyway.
SENT_INPUTS_REMEMBERED = 256
# The requirements whose differences a session keeps: a hub sees few distinct ones (one per
# client environment), and a bound keeps a client that varies them from growing the hub.
REQUIREMENTS_JUDGED = 64
# An admin's pause outlives the session it paused (a blink, a restart): the hub remembers the
# latest this many paused workers, each for this long from when it left, until resumed.
PAUSES_REMEMBERED = 1024
PAUSE_REMEMBERED_S = 24 * 3600.0
# The workers that left, for the console: each kept this long, the latest this many.
DEPARTED_KEPT_S = 15 * 60.0
DEPARTED_REMEMBERED = 256

# A worker across its sessions: its name, host, environment and the name of its key.
WorkerIdentity = tuple[str, str, str, str]


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
    # The hub ended its stream (refused, replaced, revoked): its jobs cannot come back.
    ended_by_hub: bool = False
    # Who stopped or drained it, when an admin did (the order's `by`).
    drained_by: str = ""
    paused: bool = False  # by an admin (ControlWorker): connected, but gets no new jobs
    concurrency: int = 1
    prefetch: int = 0
    # It keeps its jobs through a dropped connection (Hello.reattaches).
    reattaches: bool = False
    # The stream messages that were batches of several, each way (see session_batches).
    batches_sent: int = 0
    batches_received: int = 0
    # The codec its artifact chunks are compressed with (giskard.compression); "": none.
    compression: str = ""
    # BLAKE3 -> size of the inputs sent to it lately, the latest last (routing by cache).
    sent_inputs: OrderedDict[str, int] = field(default_factory=OrderedDict)
    # What its caches held when it last said (WorkerMessage.cache); None: it never said.
    cache: worker_pb2.CacheReport | None = None
    # Its differences from each of the requirements its jobs had (`differences`).
    _judged: dict[compat.Requirements, tuple[compat.Difference, ...]] = field(
        default_factory=dict, repr=False
    )

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.info.labels

    @property
    def identity(self) -> WorkerIdentity:
        info = self.info
        return (info.name, info.hostname, info.environment, self.key_name)

    def is_same_worker(self, other: WorkerSession) -> bool:
        """Whether `other` is this worker come back (a restart, or a new connection the hub
        saw before noticing the old one died): same name, host, environment and key."""
        return self.identity == other.identity

    def cached_bytes(self, inputs: Sequence[str]) -> int:
        return sum(self.sent_inputs.get(address, 0) for address in inputs)

    def differences(self, requirements: compat.Requirements) -> tuple[compat.Difference, ...]:
        """How this worker differs from what `requirements` need (compat.differences), the
        blocking ones first. Routing asks at every step of every job; the worker's
        environment is fixed for its session, so each one is judged once."""
        if not requirements:
            return ()
        judged = self._judged.get(requirements)
        if judged is None:
            judged = tuple(compat.differences(requirements, self.info))
            if len(self._judged) >= REQUIREMENTS_JUDGED:
                del self._judged[next(iter(self._judged))]  # the oldest
            self._judged[requirements] = judged
        return judged

    def remember_sent(self, inputs: Mapping[str, int]) -> None:
        for address, size in inputs.items():
            self.sent_inputs[address] = size
            self.sent_inputs.move_to_end(address)
        while len(self.sent_inputs) > SENT_INPUTS_REMEMBERED:
            self.sent_inputs.popitem(last=False)

    def remember_cache(self, report: worker_pb2.CacheReport) -> None:
        """The one writer of `cache`: the latest report replaces the one before."""
        self.cache = report

    @property
    def takes_jobs(self) -> bool:
        """Whether new jobs may go to this worker at all (routing decides which)."""
        return not (self.draining or self.paused)

    @property
    def will_take_jobs(self) -> bool:
        """Whether it takes jobs now or will once resumed: a job waits for a paused worker as
        it does for a busy one, rather than fail for want of a worker."""
        return not self.draining

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
            f"{self.info.name}, pid {self.info.pid} on {self.info.hostname} "
            f"(Python {self.info.python_version}, {self.info.interpreter})"
        )


@dataclass(frozen=True)
class DepartedWorker:
    """A session that ended: the worker as it was, and when and why it left."""

    info: common_pb2.WorkerInfo
    connected_at: float
    left_at: float
    why: str


def why_left(session: WorkerSession) -> str:
    """Why a session the registry is removing ended, from what the hub knows of it."""
    if session.drained_by:
        return f"drained or stopped by {session.drained_by}"
    if session.draining:
        return "shut down (drained its jobs)"
    if session.ended_by_hub:
        return "ended by the hub (refused, key revoked or protocol broken)"
    return "connection lost"


class NameTaken(Exception):
    """Another worker (another host, environment or key) is connected under this name."""

    def __init__(self, holder: WorkerSession) -> None:
        info = holder.info
        where = f"pid {info.pid} on {info.hostname}, environment {info.environment or '?'}"
        super().__init__(
            printable(f"the name {holder.name!r} is taken by another worker on this hub ({where})")
        )
        self.holder = holder


class RememberedPauses:
    """The admins' pauses, by worker identity, each with the order that paused it: a paused
    worker that reconnects is paused again, until resumed (at most PAUSE_REMEMBERED_S later,
    the latest PAUSES_REMEMBERED workers)."""

    def __init__(self) -> None:
        self._orders: OrderedDict[WorkerIdentity, tuple[float, worker_pb2.Control]] = OrderedDict()

    def remember(self, identity: WorkerIdentity, order: worker_pb2.Control) -> None:
        self._orders[identity] = (time.monotonic(), order)
        self._orders.move_to_end(identity)
        while len(self._orders) > PAUSES_REMEMBERED:
            self._orders.popitem(last=False)

    def forget(self, identity: WorkerIdentity) -> None:
        self._orders.pop(identity, None)

    def left(self, identity: WorkerIdentity) -> None:
        """A paused worker's session ended: its pause is kept PAUSE_REMEMBERED_S from now,
        however long it was connected."""
        if identity in self._orders:
            self.remember(identity, self._orders[identity][1])

    def order_for(self, identity: WorkerIdentity) -> worker_pb2.Control | None:
        """The order that paused this worker, if it still holds."""
        paused_at, order = self._orders.get(identity, (0.0, None))
        if order is not None and time.monotonic() - paused_at > PAUSE_REMEMBERED_S:
            self.forget(identity)
            return None
        return order


class WorkerRegistry:
    """Connected workers in connection order, one per name. Under the "latest" routing policy
    the latest one that is not draining is active (routing.active_session) and the others
    stand by; under "spread", every one that takes jobs is active."""

    def __init__(self, policy: str = LATEST) -> None:
        self.policy = policy
        self._sessions: list[WorkerSession] = []
        self._pauses = RememberedPauses()
        self._departed: list[DepartedWorker] = []
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
        """The worker that gets the jobs that ask for nothing (the latest, under "spread")."""
        return active_session(self._sessions)

    def is_active(self, session: WorkerSession) -> bool:
        if self.policy == LATEST:
            return session is self.active
        return session.takes_jobs and session in self._sessions

    def named(self, name: str) -> WorkerSession | None:
        return next((s for s in self._sessions if s.name == name), None)

    @property
    def in_connection_order(self) -> Sequence[WorkerSession]:
        return self._sessions

    def add(self, session: WorkerSession) -> WorkerSession | None:
        """Register `session`; the session of the same worker it replaces, if any (its jobs
        and stream are the caller's to end). NameTaken if another worker has its name. A
        worker an admin paused comes back paused, and is told so."""
        replaced = self.named(session.name)
        if replaced is not None:
            if not replaced.is_same_worker(session):
                raise NameTaken(replaced)
            self._leave(replaced, "replaced by a newer session of this worker")
        self._pause_again(session)
        previous = self.active
        self._sessions.append(session)
        if previous is not None and self.active is session and self.policy == LATEST:
            message = (
                f"superseded by a newer worker, {session.describe()}; standing by for the"
                " jobs it may not run"
            )
            _tell_role(previous, active=False, message=message)
        self._notify()
        return replaced

    def remove(self, session: WorkerSession) -> None:
        was_active = session is self.active
        if session in self._sessions:
            self._leave(session, why_left(session))
        self._promote_if(was_active)

    def _leave(self, session: WorkerSession, why: str) -> None:
        """The one place a session leaves the registry: it is remembered as departed."""
        self._sessions.remove(session)
        if session.paused:
            self._pauses.left(session.identity)
        departed = DepartedWorker(session.info, session.connected_at, time.time(), why)
        self._departed = [*self.departed(), departed][-DEPARTED_REMEMBERED:]

    def departed(self) -> list[DepartedWorker]:
        """The workers that left in the last DEPARTED_KEPT_S, the latest last."""
        since = time.time() - DEPARTED_KEPT_S
        return [worker for worker in self._departed if worker.left_at >= since]

    def drain(self, session: WorkerSession, by: str = "") -> None:
        """`by`: the admin who drained or stopped it; "" when the worker itself is leaving."""
        was_active = session is self.active
        session.draining = True
        session.drained_by = session.drained_by or by
        self._promote_if(was_active)

    def set_paused(self, session: WorkerSession, order: worker_pb2.Control) -> None:
        """Pause `session` (it takes no new jobs; another may become active), remembering the
        `order` for when it reconnects, or resume it."""
        previous = self.active
        session.paused = order.action == worker_pb2.Control.PAUSE
        if session.paused:
            self._pauses.remember(session.identity, order)
        else:
            self._pauses.forget(session.identity)
        if session is previous or self.active is not session:
            self._promote_if(session is previous)
            return
        if previous is not None:  # resumed, it is the latest again: it takes over
            _tell_role(previous, active=False, message="a resumed worker is active; standing by")
        self._notify()

    def _pause_again(self, session: WorkerSession) -> None:
        order = self._pauses.order_for(session.identity)
        if order is None:
            return
        session.paused = True
        logger.info("Worker %s is paused again: %s paused it", session.describe(), order.by)
        _tell(session, worker_pb2.HubMessage(control=order), "pause")

    def find_session(self, session_id: str, key_name: str) -> WorkerSession | None:
        """The connected session of that id, if the key named `key_name` opened it."""
        for session in self._sessions:
            if session.session_id == session_id and session.key_name == key_name:
                return session
        return None

    def _promote_if(self, was_active: bool) -> None:
        successor = self.active
        if was_active and successor is not None and self.policy == LATEST:
            logger.info("Worker %s is active again", successor.describe())
            _tell_role(successor, active=True, message="the newer worker left; active again")
        self._notify()

    def _notify(self) -> None:
        self.on_change()


class UnknownWorkerError(LookupError):
    """No connected worker, or more than one, answers to the reference given."""


def find_worker(registry: WorkerRegistry, ref: str) -> WorkerSession:
    """The one connected worker that `ref` names: its name (unique on a hub), a prefix of its
    worker_id, or its pid@hostname, as `giskard hub workers` shows them."""
    ref = ref.strip()
    named = registry.named(ref) if ref else None
    if named is not None:
        return named
    matches = [s for s in registry.sessions if ref and _answers_to(s, ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownWorkerError(
            f"no connected worker {printable(ref)!r} (give its name, a worker_id prefix or"
            " pid@hostname, see `giskard hub workers`)"
        )
    raise UnknownWorkerError(
        f"{len(matches)} connected workers match {printable(ref)!r}; give a longer worker_id"
    )


def _answers_to(session: WorkerSession, ref: str) -> bool:
    info = session.info
    return info.worker_id.startswith(ref) or ref == f"{info.pid}@{info.hostname}"


def _tell_role(session: WorkerSession, *, active: bool, message: str) -> None:
    role = worker_pb2.HubMessage(role=worker_pb2.Role(active=active, message=message))
    _tell(session, role, "role change")


def _tell(session: WorkerSession, message: worker_pb2.HubMessage, what: str) -> None:
    try:
        session.outbox.put_nowait(message)
    except asyncio.QueueFull:
        logger.warning("Worker %s is not reading; %s not sent", session.describe(), what)


def put_evicting(queue: asyncio.Queue[T], item: T) -> None:
    """Put `item` now, dropping the oldest queued items if the queue is full: for a stream
    that is ending, whose pending items no longer matter."""
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
