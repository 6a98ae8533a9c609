"""The hub's job queue: jobs wait here until the active worker has a free slot.

A worker says in its hello how many jobs it runs at once; the hub never sends it more, so a
burst of jobs waits at the hub (where it can be cancelled or time out cheaply) rather than
in a worker's memory. Info jobs do not take a slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from giskard.hub.registry import JobRun, WorkerRegistry, WorkerSession
from giskard.rpc.v1 import client_pb2, worker_pb2

logger = logging.getLogger(__name__)

# A worker asked to stop a job answers at once; past this, the hub gives up on it.
STOP_GRACE_S = 3.0
# Queued jobs wait this long for a worker when none is connected (one restarting comes back
# within seconds), then fail rather than wait forever.
NO_WORKER_GRACE_S = 30.0


class Dispatcher:
    def __init__(self, registry: WorkerRegistry, no_worker_grace_s: float = NO_WORKER_GRACE_S):
        self._registry = registry
        self._pending: deque[JobRun] = deque()
        self._no_worker_grace_s = no_worker_grace_s
        self._no_worker_timer: asyncio.TimerHandle | None = None
        registry.on_change = self.pump

    @property
    def queued(self) -> int:
        return len(self._pending)

    def submit(self, job: JobRun) -> None:
        """Queue `job` (it goes out at once if the active worker has room)."""
        self._pending.append(job)
        remaining = job.remaining_s()
        if remaining is not None:
            loop = asyncio.get_running_loop()
            job.timers.append(loop.call_later(max(remaining, 0), self._expire, job))
        self.pump()
        if job.session is None and not job.done:
            job.was_queued = True
            position = len(self._pending) - 1
            queued = client_pb2.JobQueued(job_id=job.job_id, position=position)
            job.events.put_nowait(client_pb2.JobEvent(queued=queued))

    def withdraw(self, job: JobRun) -> None:
        """The client is gone: forget a queued job, or tell the worker to stop a sent one.
        A sent job keeps its slot until the worker confirms it has stopped."""
        job.done = True
        job.cancel_timers()
        if job.session is None:
            if job in self._pending:
                self._pending.remove(job)
            return
        if job.job_id in job.session.jobs:
            self._cancel_on_worker(job)
            job.timers.append(
                asyncio.get_running_loop().call_later(STOP_GRACE_S, self._give_up, job)
            )

    def pump(self) -> None:
        """Send queued jobs while the active worker has room."""
        session = self._registry.active
        self._watch_for_no_worker(session)
        while self._pending and session is not None:
            job = self._pending[0]
            if job.done:
                self._pending.popleft()
                continue
            if job.takes_a_slot and not session.has_room:
                # Info jobs behind it may still go: they need no slot.
                self._send_infos(session)
                return
            self._pending.popleft()
            self._send(session, job)

    def _send_infos(self, session: WorkerSession) -> None:
        for job in [job for job in self._pending if not job.takes_a_slot]:
            self._pending.remove(job)
            self._send(session, job)

    def _send(self, session: WorkerSession, job: JobRun) -> None:
        spec = job.spec
        remaining = job.remaining_s()
        if remaining is not None:
            spec = type(spec)()
            spec.CopyFrom(job.spec)
            spec.timeout_s = max(remaining, 0.001)
        message = worker_pb2.HubMessage(job=worker_pb2.Job(job_id=job.job_id, spec=spec))
        try:
            session.outbox.put_nowait(message)
        except asyncio.QueueFull:
            job.fail("WorkerNotReading", f"the worker {session.describe()} is not reading")
            return
        job.session, job.sent_at = session, time.time()
        session.jobs[job.job_id] = job
        if job.was_queued:  # a job sent at once needs no event: it would only add latency
            started = client_pb2.JobStarted(job_id=job.job_id, worker_id=session.info.worker_id)
            job.events.put_nowait(client_pb2.JobEvent(started=started))
        logger.debug("job %s (%s) sent to %s", job.job_id, job.kind, session.describe())

    def _expire(self, job: JobRun) -> None:
        if job.done:
            return
        if job.session is None:
            if job in self._pending:
                self._pending.remove(job)
            job.fail("JobTimeout", "the job's timeout passed while it waited for a worker slot")
            return
        # The worker stops it at the deadline itself; this is for a worker that does not.
        job.timers.append(asyncio.get_running_loop().call_later(STOP_GRACE_S, self._give_up, job))

    def _give_up(self, job: JobRun) -> None:
        """The worker did not end a job it was told to stop: free its slot anyway."""
        session = job.session
        if session is None or session.jobs.get(job.job_id) is not job:
            return
        if not job.done:
            self._cancel_on_worker(job)
        del session.jobs[job.job_id]
        job.fail("JobTimeout", "the worker did not stop the job at its deadline")
        self.pump()

    def _cancel_on_worker(self, job: JobRun) -> None:
        assert job.session is not None
        cancel = worker_pb2.HubMessage(cancel=worker_pb2.CancelJob(job_id=job.job_id))
        try:
            job.session.outbox.put_nowait(cancel)
        except asyncio.QueueFull:
            logger.warning("Worker %s is not reading; cancel not sent", job.session.describe())

    def _watch_for_no_worker(self, session: WorkerSession | None) -> None:
        if session is not None:
            if self._no_worker_timer is not None:
                self._no_worker_timer.cancel()
                self._no_worker_timer = None
            return
        if self._no_worker_timer is None and self._pending:
            loop = asyncio.get_running_loop()
            self._no_worker_timer = loop.call_later(self._no_worker_grace_s, self._fail_queued)

    def _fail_queued(self) -> None:
        self._no_worker_timer = None
        if self._registry.active is not None:
            return
        while self._pending:
            job = self._pending.popleft()
            message = f"no worker connected for {self._no_worker_grace_s:.0f} s"
            job.fail("NoWorker", f"the job waited in the queue but {message}")
