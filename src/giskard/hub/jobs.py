"""The hub's job lifecycle: the one writer of a job's state, its slot, its timers and its pins.

    WAITING  ── a worker that may run it is connected ──────────► QUEUED
    WAITING  ── client leaves, no worker came, none can load it ─► ENDED
    QUEUED   ── routed ─────────────────────────────────────────► RUNNING  (takes a slot)
    QUEUED   ── client leaves, timeout, no worker, not reading ──► ENDED
    RUNNING  ── worker ends it, hub gives up, worker lost ───────► ENDED    (slot freed)
    RUNNING  ── client leaves, unread limit (cancel sent) ───────► STOPPING (slot kept)
    RUNNING  ── client cancels: worker ends it, or past a grace ─► ENDED    (slot freed)
    STOPPING ── worker ends it, hub gives up, worker lost ───────► ENDED    (slot freed)
    RUNNING, STOPPING ── its worker's connection drops ──► the same, on the worker's next
                         session within the reattach grace (or worker lost)
    RUNNING  ── its worker's session ends before the job left the hub ──► QUEUED (at the head)

A job's inputs are pinned from its arrival (`receive`), so that a job waiting for a worker
to connect does not lose them. It has exactly one end, whichever path comes first (`_end`):
its client gets it (unless gone), its timers stop, its inputs are unpinned. A sent job holds
one of its worker's slots until the worker says it stopped, the hub gives up on it, or the
worker leaves (`_free_slot`); STOPPING is a job ended for its client that still holds its
slot. The gRPC services only translate messages into these transitions; `routing.route`
decides where queued jobs go.

A worker says in its hello how many jobs it runs at once; the hub never sends it more, so a
burst of jobs waits at the hub (where it can be cancelled or time out cheaply) rather than
in a worker's memory. Info jobs do not take a slot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import NamedTuple

from giskard.display import printable
from giskard.hub.artifacts import ArtifactStore
from giskard.hub.job import (
    Job,
    JobState,
    JobTransition,
    cancelled_end,
    failure_end,
    incompatible_end,
    worker_lost_end,
)
from giskard.hub.registry import WorkerRegistry, WorkerSession
from giskard.hub.routing import Constraint, incompatibilities, may_run, route
from giskard.job_inputs import job_inputs
from giskard.rpc.v1 import client_pb2, common_pb2, worker_pb2
from giskard.sizes import format_size

logger = logging.getLogger(__name__)

# The ways bytes move through the hub (JobBoard.bytes_moved): inputs from clients, inputs
# to workers, results from workers.
UPLOAD, TO_WORKER, RESULT = "upload", "to_worker", "result"
BYTES_MOVED = (UPLOAD, TO_WORKER, RESULT)
# A worker asked to stop a job answers at once; past this, the hub gives up on it.
STOP_GRACE_S = 3.0
# Queued jobs wait this long for a worker when none that may run them is connected (one
# restarting comes back within seconds), then fail rather than wait forever.
NO_WORKER_GRACE_S = 30.0
# How many ended jobs the hub remembers for its status (`giskard hub workers`).
RECENT_JOBS = 100
# What the hub keeps of a failure's type name (a worker's word, of any size; real ones are far
# shorter) beyond the end its client gets: in its status, and the console's job pages.
FAILURE_TYPE_KEPT_CHARS = 256
# How long the jobs of a worker whose connection dropped wait for it to come back.
REATTACH_GRACE_S = 30.0


class _EndedJob(NamedTuple):
    """The fields of a client_pb2.EndedJob."""

    job_id: str
    kind: str
    worker_id: str
    submitted_at: float
    ended_at: float
    reason: common_pb2.EndReason.ValueType
    detail: str


class JobBoard:
    """The queued and sent jobs, and every transition of their lifecycle."""

    def __init__(
        self,
        registry: WorkerRegistry,
        store: ArtifactStore,
        no_worker_grace_s: float = NO_WORKER_GRACE_S,
        reattach_grace_s: float = REATTACH_GRACE_S,
    ) -> None:
        """Jobs are routed by the registry's policy. `reattach_grace_s`: how long the jobs of
        a session whose connection dropped wait for their worker."""
        self._registry = registry
        self._store = store
        # Queue order; dicts so that a job leaves them in O(1) from anywhere. Jobs that need
        # no slot (info) wait apart: routing takes them first, so that it can stop scanning
        # the others once no worker has a slot left.
        self._queue: dict[Job, None] = {}
        self._slotless: dict[Job, None] = {}
        # The received jobs waiting for a worker to connect, each with what says why none did.
        self._waiting: dict[Job, Callable[[], str]] = {}
        self._no_worker_grace_s = no_worker_grace_s
        # Kept as plain values, made messages only when the status is asked for (seldom).
        self._recent: deque[_EndedJob] = deque(maxlen=RECENT_JOBS)
        # Every job that ended since the hub started, by end reason (the console's /metrics).
        self.ended_by_reason: Counter[common_pb2.EndReason.ValueType] = Counter()
        # Bytes of inputs and results the hub took in or handed out since it started, by
        # direction (BYTES_MOVED): each movement counted in full, however it went (chunks,
        # compressed, inline, shared memory): an input a worker fetches again counts again; a
        # result piece the hub refuses, not. For the console's /metrics.
        self.bytes_moved: Counter[str] = Counter()
        # Told of each job as it ends, with its end (None: its client left) and when
        # (time.time()), before its logs may be dropped for want of room: the console's
        # latency metrics, charts and job pages.
        self.ended_observers: list[Callable[[Job, common_pb2.JobEnd | None, float], None]] = []
        self._reattach_grace_s = reattach_grace_s
        # Sessions whose connection dropped with jobs, each with the timer that fails them
        # and when it dropped (time.time()).
        self._detached: dict[WorkerSession, tuple[asyncio.TimerHandle, float]] = {}
        # A job's dispatch id: its id, this hub's run, and a count (see Job.dispatch_id).
        self._hub_run = secrets.token_hex(3)
        self._dispatches = itertools.count(1)
        registry.on_change = self._workers_changed

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._slotless)

    @property
    def waiting_for_worker(self) -> int:
        return len(self._waiting)

    @property
    def reattach_grace_s(self) -> float:
        """How long a dropped session's jobs wait for their worker to come back."""
        return self._reattach_grace_s

    @property
    def away(self) -> list[tuple[WorkerSession, float]]:
        """The sessions whose connection dropped while they held jobs, each with when it
        dropped (time.time()): their jobs wait for them to come back."""
        return [(session, since) for session, (_, since) in self._detached.items()]

    @property
    def recent(self) -> list[client_pb2.EndedJob]:
        """The last RECENT_JOBS jobs that ended, the latest last."""
        return [client_pb2.EndedJob(**ended._asdict()) for ended in self._recent]

    def live_jobs(self) -> list[Job]:
        """The jobs not ended yet: waiting for a worker to connect, queued (in queue order),
        then those sent to a worker, connected or away."""
        # A session is detached just before the registry removes it: never listed twice.
        sessions = dict.fromkeys(itertools.chain(self._registry.sessions, self._detached))
        sent = (job for session in sessions for job in session.jobs.values())
        found = itertools.chain(self._waiting, self._slotless, self._queue, sent)
        return [job for job in found if not job.ended]

    def receive(self, job: Job, wait_for_worker_s: float, no_worker: Callable[[], str]) -> None:
        """The job arrived: its inputs are pinned from now until it ends. It is submitted once
        a worker that may run it is connected, waiting up to `wait_for_worker_s` for one;
        then, or at once if the workers it asks for are there but cannot load it, it ends as
        incompatible or as finding no worker (`no_worker()` says why)."""
        self._arrive(job)
        sessions = self._registry.in_connection_order
        if may_run(job.constraint, sessions):
            self.submit(job)
        elif wait_for_worker_s > 0 and not incompatibilities(job.constraint, sessions):
            self._waiting[job] = no_worker
            self._start_timer(job, wait_for_worker_s, self._wait_over)
        else:
            self._refuse(job, no_worker())

    def submit(self, job: Job) -> None:
        """Queue `job` (received or not); it goes out at once if a worker has room. Its spec's
        timeout counts from now."""
        if job.state is JobState.NEW:
            self._arrive(job)
        _stop_timers(job)  # of its wait for a worker
        job.state = JobState.QUEUED
        if job.spec.timeout_s:
            job.deadline = time.monotonic() + job.spec.timeout_s
        queue = self._queue_of(job)
        queue[job] = None
        remaining = job.remaining_s()
        if remaining is not None:
            self._start_timer(job, max(remaining, 0), self._expire)
        self.pump()
        if job.state is JobState.QUEUED:
            job.was_queued = True
            self._watch_for_no_worker([job], self._registry.in_connection_order)
            queued = client_pb2.JobQueued(job_id=job.job_id, position=len(queue) - 1)
            job.events.put(client_pb2.JobEvent(queued=queued))

    def pump(self) -> None:
        """Send the queued jobs that routing places now."""
        if not (self._queue or self._slotless):  # the common case at a job's end
            return
        sessions = self._registry.in_connection_order
        queued = itertools.chain(self._slotless, self._queue)
        for job, session in route(queued, sessions, self._registry.policy):
            self._send(job, session)

    def _arrive(self, job: Job) -> None:
        """NEW -> WAITING: its inputs are pinned from now, so that the store does not evict
        what it waits for a worker with."""
        for address in job.inputs:
            self._store.pin(address)
        job.state, job.submitted_at = JobState.WAITING, time.time()
        self.bytes_moved[UPLOAD] += _inline_bytes(job)  # the others were uploaded before

    def _wait_over(self, job: Job) -> None:
        if job.state is JobState.WAITING:
            self._refuse(job, self._waiting[job]())

    def _refuse(self, job: Job, no_worker: str) -> None:
        """No worker may run the received job: it ends as incompatible if workers it asks for
        are connected but cannot load it, else as finding no worker (`no_worker` says so)."""
        end = self._unservable_end(job, no_worker)
        logger.info("Job %s refused: %s", job.job_id, printable(end.failure.message))
        self._end(job, end)

    def _workers_changed(self) -> None:
        # A worker came: the jobs waiting for one that may run them go to the queue; those
        # that it may run but cannot load fail at once, as they would have on arrival.
        sessions = self._registry.in_connection_order
        for job, no_worker in list(self._waiting.items()):
            if may_run(job.constraint, sessions):
                del self._waiting[job]
                self.submit(job)
            elif incompatibilities(job.constraint, sessions):
                self._refuse(job, no_worker())
        # Only a change of the workers (one came, left, paused...) changes which queued jobs
        # some worker may run: the no-worker timers are looked at then, not at every job end.
        self._watch_for_no_worker(
            itertools.chain(self._slotless, self._queue), self._registry.in_connection_order
        )
        self.pump()

    def _queue_of(self, job: Job) -> dict[Job, None]:
        return self._queue if job.takes_a_slot else self._slotless

    def progress(self, job: Job, progress: common_pb2.JobProgress) -> None:
        """Its worker reports progress."""
        if job.state is not JobState.RUNNING:
            return
        job.progress = (progress.done, progress.total)
        progress.job_id = job.job_id  # its client's id, not its dispatch id
        job.events.put(client_pb2.JobEvent(progress=progress))

    def output(self, job: Job, output: common_pb2.JobOutput) -> bool:
        """A piece of its result from its worker, for its client. False if the job takes no
        more: it ended, or the hub holds as much unread result as it may (the job fails).
        Only the pieces it takes count as moved."""
        if job.state is not JobState.RUNNING:
            return False
        job.received_bytes += len(output.chunk)
        output.job_id = job.job_id  # its client's id, not its dispatch id
        if job.events.put_output(output):
            self.bytes_moved[RESULT] += len(output.chunk)
            return True
        limit = format_size(job.events.unread.max_bytes)
        message = (
            f"the hub holds {limit} of results not read yet, as much as it may, and dropped"
            " this one: read results as they come, or submit fewer jobs at a time"
        )
        self._end(
            job, failure_end(job, common_pb2.END_REASON_CANCELLED, "UnreadResultsLimit", message)
        )
        self._stop_on_worker(job)
        return False

    def worker_ended(self, job: Job, end: common_pb2.JobEnd) -> None:
        """Its worker says the job is over: its slot is free. A result inline in the end
        counts as moved if the job still takes it (its client did not leave)."""
        if job.state is JobState.RUNNING:
            self.bytes_moved[RESULT] += len(end.success.result.inline)
        self._free_slot(job)
        # Queued behind the output, never instead of it: dropping a chunk to make room
        # would corrupt the result.
        self._end(job, end, behind_output=True)
        self.pump()

    def withdraw(self, job: Job) -> None:
        """Its client is gone: forget it if queued, or tell its worker to stop it. A sent job
        keeps its slot until the worker confirms it has stopped."""
        was_running = job.state is JobState.RUNNING
        self._end(job, None)
        if was_running:
            self._stop_on_worker(job)
        # A result stream waiting for room in its events must not wait forever.
        job.events.discard_pending()

    def cancel(self, job: Job) -> None:
        """Its client cancels it and waits for its end: a job not sent yet ends now; a sent
        one is stopped on its worker, whose end (with what the job wrote) goes to the client,
        or the hub's own if it does not come within STOP_GRACE_S."""
        if job.state in (JobState.WAITING, JobState.QUEUED):
            self._end(job, cancelled_end(job, "the job was cancelled"))
        elif job.state is JobState.RUNNING:
            self._cancel_on_worker(job)
            self._start_timer(job, STOP_GRACE_S, self._cancel_unconfirmed)

    def session_lost(self, session: WorkerSession, reason: str) -> None:
        """The worker is gone: its jobs fail, but those it never received."""
        self._take_back_unsent(session)
        self._forget_detached(session)
        for job in list(session.jobs.values()):
            self._free_slot(job)
            self._end(job, worker_lost_end(job, reason))

    def detach(self, session: WorkerSession, reason: str) -> None:
        """The session's connection dropped: its jobs keep their state and slots, waiting for
        the worker to come back (`reattach`) within the grace, then fail as worker lost (at
        once, for `reason`, without a grace). Those it never received go back to the queue."""
        self._take_back_unsent(session)
        if not session.jobs:
            return
        grace_s = self._reattach_grace_s
        if grace_s <= 0:
            self.session_lost(session, reason)
            return
        loop = asyncio.get_running_loop()
        self._detached[session] = (loop.call_later(grace_s, self._not_back, session), time.time())
        logger.info(
            "Keeping %d job(s) of worker %s for %.0f s, until it reconnects",
            len(session.jobs),
            printable(session.name),
            grace_s,
        )

    def reattach(self, session: WorkerSession, held: Collection[str]) -> list[str]:
        """A worker's new session, before it takes jobs: of the jobs of its earlier session
        (dropped, noticed or not), those it still `held` go on with it, keeping their slots;
        the others fail as worker lost. The ids of the jobs reattached."""
        holder = self._registry.named(session.name)
        if holder is not None and not holder.is_same_worker(session):
            return []  # another worker has the name: the registry refuses this session
        earlier = [old for old in self._detached if old.is_same_worker(session)]
        earlier += [holder] if holder is not None and holder not in earlier else []
        reattached: list[str] = []
        lost = 0
        for old in earlier:
            self._take_back_unsent(old)
            self._forget_detached(old)
            for job in list(old.jobs.values()):
                why = _not_reattached(job, held, old)
                if why is None:
                    self._move(job, session)
                    reattached.append(job.dispatch_id)
                    continue
                lost += not job.ended
                self._free_slot(job)
                self._end(job, worker_lost_end(job, why))
        if earlier:
            logger.info(
                "Worker %s reconnected; %d job(s) reattached, %d lost",
                printable(session.name),
                len(reattached),
                lost,
            )
        return reattached

    def _forget_detached(self, session: WorkerSession) -> None:
        """Its jobs wait for it no more (they went on with a new session, or failed): its
        grace timer stops."""
        detached = self._detached.pop(session, None)
        if detached is not None:
            detached[0].cancel()

    def _take_back_unsent(self, session: WorkerSession) -> None:
        """RUNNING -> QUEUED, at the head of the queue, for the jobs whose message still waits
        in the outbox of a session that is gone or going: the worker never received them."""
        unsent: list[Job] = []
        others: list[worker_pb2.HubMessage | None] = []
        while not session.outbox.empty():
            message = session.outbox.get_nowait()
            job = None
            if message is not None and message.WhichOneof("kind") == "job":
                job = session.jobs.get(message.job.job_id)
            if job is not None and job.state is JobState.RUNNING and not job.cancel_sent:
                unsent.append(job)
            else:
                others.append(message)
        for message in others:
            session.outbox.put_nowait(message)
        for job in reversed(unsent):
            del session.jobs[job.dispatch_id]
            job.session, job.state, job.worker_id = None, JobState.QUEUED, ""
            queue = self._queue_of(job)
            queue_again = {job: None, **queue}
            queue.clear()
            queue.update(queue_again)
        if unsent:
            logger.info(
                "%d job(s) sent to worker %s never left the hub: queued again",
                len(unsent),
                printable(session.name),
            )

    def closing(self) -> None:
        """The hub stops: the jobs waiting for their worker to come back fail now."""
        self._reattach_grace_s = 0
        for session in list(self._detached):
            self.session_lost(session, "the hub stopped while the worker was away")

    def _not_back(self, session: WorkerSession) -> None:
        grace_s = self._reattach_grace_s
        reason = f"the worker {session.describe()} did not come back within {grace_s:g} s"
        self.session_lost(session, reason)

    def _move(self, job: Job, session: WorkerSession) -> None:
        """Its slot moves to its worker's new session."""
        assert job.session is not None
        del job.session.jobs[job.dispatch_id]
        job.session, job.worker_id = session, session.info.worker_id
        session.jobs[job.dispatch_id] = job
        if job.cancel_sent:  # the first cancel may have gone with the dropped connection
            self._cancel_on_worker(job)

    def _send(self, job: Job, session: WorkerSession) -> None:
        job.dispatch_id = f"{job.job_id}.{self._hub_run}{next(self._dispatches)}"
        message = _job_message(job)
        try:
            session.outbox.put_nowait(message)
        except asyncio.QueueFull:
            reason = f"the worker {session.describe()} is not reading"
            lost = worker_lost_end(job, reason, kind="WorkerNotReading")
            self._end(job, lost)
            return
        del self._queue_of(job)[job]
        if not job.sent_at:
            # Its inline inputs leave the hub once: a job sent again was taken back from an
            # outbox its worker never read (_take_back_unsent). The others are counted as
            # workers fetch them.
            self.bytes_moved[TO_WORKER] += _inline_bytes(job)
        job.state, job.session, job.sent_at = JobState.RUNNING, session, time.time()
        job.worker_id = session.info.worker_id
        job.differences = session.differences(job.constraint.requirements)
        session.jobs[job.dispatch_id] = job
        session.remember_sent(job.input_sizes)
        if job.was_queued:  # a job sent at once needs no event: it would only add latency
            started = client_pb2.JobStarted(job_id=job.job_id, worker_id=session.info.worker_id)
            job.events.put(client_pb2.JobEvent(started=started))
        if logger.isEnabledFor(logging.DEBUG):  # describing the worker costs more than sending
            logger.debug("job %s (%s) sent to %s", job.job_id, job.kind, session.describe())

    def _end(self, job: Job, end: common_pb2.JobEnd | None, behind_output: bool = False) -> None:
        """The job's one end; nothing if it already ended. `end` goes to its client (None: the
        client is gone), in place of its pending output unless `behind_output`."""
        if job.state is JobState.NEW or job.ended:
            return
        if job.state is JobState.QUEUED:
            del self._queue_of(job)[job]
        self._waiting.pop(job, None)
        job.state = JobState.STOPPING if job.session is not None else JobState.ENDED
        _stop_timers(job)
        for address in job.inputs:
            self._store.unpin(address)
        job.events.closed = True
        self._remember(job, end)
        if end is None:
            return
        event = client_pb2.JobEvent(end=end)
        event.end.job_id = job.job_id  # the worker knows it by its dispatch id
        # The hub's word only: a worker's end may not say what its client is warned about.
        event.end.ClearField("differences")
        if job.differences:  # a version difference is reported
            event.end.differences.extend(diff.to_proto() for diff in job.differences)
        job.events.hold_logs(event.end)
        if behind_output:
            job.events.put(event)
        else:
            job.events.interrupt(event)

    def _remember(self, job: Job, end: common_pb2.JobEnd | None) -> None:
        """Keep the job's end for the hub's status; None: its client left (cancelled)."""
        if end is None:
            reason, detail = common_pb2.END_REASON_CANCELLED, "ClientLeft"
        else:
            reason, detail = end.reason, end.failure.type[:FAILURE_TYPE_KEPT_CHARS]
        self.ended_by_reason[reason] += 1
        ended_at = time.time()
        for observe in self.ended_observers:
            observe(job, end, ended_at)
        self._recent.append(
            _EndedJob(
                job.job_id, job.kind, job.worker_id, job.submitted_at, ended_at, reason, detail
            )
        )

    def _free_slot(self, job: Job) -> None:
        session = job.session
        if session is None:
            return
        del session.jobs[job.dispatch_id]
        job.session = None
        if job.state is JobState.STOPPING:
            job.state = JobState.ENDED
        # Whoever freed the slot ends the job if it has not ended: nothing is left to time.
        _stop_timers(job)

    def _expire(self, job: Job) -> None:
        if job.state is JobState.QUEUED:
            message = "the job's timeout passed while it waited for a worker slot"
            self._end(job, failure_end(job, common_pb2.END_REASON_TIMEOUT, "JobTimeout", message))
        elif job.state is JobState.RUNNING:
            # The worker stops it at the deadline itself; this is for a worker that does not.
            self._start_timer(job, STOP_GRACE_S, self._give_up)

    def _give_up(self, job: Job) -> None:
        """The worker did not end a job it was told to stop: free its slot anyway."""
        if job.state is JobState.RUNNING:
            self._cancel_on_worker(job)
        elif job.state is not JobState.STOPPING:
            return
        self._free_slot(job)
        message = "the worker did not stop the job at its deadline"
        self._end(job, failure_end(job, common_pb2.END_REASON_TIMEOUT, "JobTimeout", message))
        self.pump()

    def _stop_on_worker(self, job: Job) -> None:
        """A job ended for its client goes on, holding its slot, until its worker stops it:
        tell it to, and give up on it (freeing the slot) if it does not."""
        self._cancel_on_worker(job)
        self._start_timer(job, STOP_GRACE_S, self._give_up)

    def _cancel_unconfirmed(self, job: Job) -> None:
        """The worker did not end a job its client cancelled: free its slot anyway."""
        if job.state is not JobState.RUNNING:
            return
        self._free_slot(job)
        message = "the job was cancelled; its worker did not confirm that it stopped"
        self._end(job, cancelled_end(job, message))
        self.pump()

    def _cancel_on_worker(self, job: Job) -> None:
        assert job.session is not None
        job.cancel_sent = True
        cancel = worker_pb2.HubMessage(cancel=worker_pb2.CancelJob(job_id=job.dispatch_id))
        try:
            job.session.outbox.put_nowait(cancel)
        except asyncio.QueueFull:
            logger.warning("Worker %s is not reading; cancel not sent", job.session.describe())

    def _start_timer(
        self, job: Job, delay_s: float, transition: JobTransition
    ) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        job.timers.append(timer := loop.call_later(delay_s, transition, job))
        return timer

    def _watch_for_no_worker(
        self, queued: Iterable[Job], sessions: Sequence[WorkerSession]
    ) -> None:
        """Each of the `queued` jobs that no connected worker may run has its timer (a job
        asking for a worker that never comes must not wait forever); one that some worker may
        run, not."""
        servable: dict[Constraint, bool] = {}  # per constraint: a long queue has few
        for job in queued:
            if job.constraint not in servable:
                servable[job.constraint] = may_run(job.constraint, sessions)
            if servable[job.constraint]:
                if job.no_worker_timer is not None:
                    job.no_worker_timer.cancel()
                    job.timers.remove(job.no_worker_timer)
                    job.no_worker_timer = None
            elif job.no_worker_timer is None:
                grace_s = self._no_worker_grace_s
                job.no_worker_timer = self._start_timer(job, grace_s, self._no_worker)

    def _no_worker(self, job: Job) -> None:
        job.no_worker_timer = None
        if job.state is not JobState.QUEUED or may_run(job.constraint, self._registry.sessions):
            return
        wanted = job.constraint.describe()
        message = (
            f"the job waited in the queue but no worker{' ' + wanted if wanted else ''}"
            f" was connected for {self._no_worker_grace_s:.0f} s"
        )
        self._end(job, self._unservable_end(job, message))

    def _unservable_end(self, job: Job, no_worker: str) -> common_pb2.JobEnd:
        # Workers it asked for may be there, unable to load it: then that is why it ends.
        end = incompatible_end(job.job_id, job.constraint, self._registry.sessions)
        return end or failure_end(job, common_pb2.END_REASON_NO_WORKER, "NoWorker", no_worker)


def _not_reattached(job: Job, held: Collection[str], old: WorkerSession) -> str | None:
    """Why `job` cannot go on with its worker's new session, which holds `held`; None if it
    can."""
    if job.dispatch_id not in held:
        return f"the worker {old.describe()} came back without the job"
    if job.received_bytes:
        # The worker cannot resume the stream from where it broke: better fail than corrupt.
        return "the connection to the worker dropped while it sent the job's result"
    return None


def _job_message(job: Job) -> worker_pb2.HubMessage:
    """The job for its worker, with what is left of its timeout. Its spec is copied once,
    into the message (a message given to a constructor is copied at each level)."""
    message = worker_pb2.HubMessage()
    message.job.job_id = job.dispatch_id
    message.job.spec.CopyFrom(job.spec)
    remaining = job.remaining_s()
    if remaining is not None:
        message.job.spec.timeout_s = max(remaining, 0.001)
    return message


def _stop_timers(job: Job) -> None:
    for timer in job.timers:
        timer.cancel()
    job.timers.clear()


def _inline_bytes(job: Job) -> int:
    """The bytes of the inputs that travel within the job's spec."""
    return sum(len(ref.inline) for ref, _ in job_inputs(job.spec))
