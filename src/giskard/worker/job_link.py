"""The worker's jobs across its sessions with the hub.

A job outlives the session that brought it: when the connection drops, it keeps running for
a grace (as long as the hub that welcomed it last waits: Welcome.reattach_grace_s), and goes
on with the next session if the hub reattaches it (see Hello.held_jobs and
Welcome.reattached); past the grace it ends as worker lost, its end offered to nobody. What
it emits waits for a session; its calls beside the session (FetchArtifact, SendResult) use
the session current when they are made. A job's end may be lost with a session that dies
just after it was written, so the ends of recent jobs are kept until the next welcome, and
re-sent if the hub still waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from giskard.errors import EndReason
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from giskard.worker.execution import JobExecution, Metadata, job_end

logger = logging.getLogger(__name__)

# The ends kept for a re-send: each holds an inline result (<= 64 KiB) and logs (<= 1 MiB).
KEPT_ENDS = 256
KEPT_END_BYTES = 16 * 1024**2
# How long stopping tasks (jobs, a session's) may take.
CLOSE_TIMEOUT_S = 5.0

Outbox = asyncio.Queue[worker_pb2.WorkerMessage | None]


@dataclass(eq=False)
class _Attachment:
    """The session the jobs go on with now."""

    outbox: Outbox
    stub: worker_pb2_grpc.WorkerHubStub
    metadata: Metadata
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class JobLink:
    """Owns the worker's job tasks, and links them to the current session, if any."""

    def __init__(self, execution: JobExecution, reattach_grace_s: float) -> None:
        self._execution = execution
        self._grace_s = reattach_grace_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kept: OrderedDict[str, worker_pb2.WorkerMessage] = OrderedDict()
        self._kept_bytes = 0
        # Jobs that streamed part of a result on a session that dropped: they cannot resume.
        self._cut: set[str] = set()
        # On the current session; each job is in it until its end is forgotten (bounded).
        self._streamed: set[str] = set()
        self._current: _Attachment | None = None
        self._attached = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._resending: asyncio.Task[None] | None = None

    @property
    def jobs(self) -> list[str]:
        """The ids of the jobs running or waiting for a slot."""
        return list(self._tasks)

    def held(self) -> list[str]:
        """What a new session's hello lists: the jobs this worker may still go on with."""
        held = dict.fromkeys(self._tasks) | dict.fromkeys(self._kept)
        return [job_id for job_id in held if job_id not in self._cut]

    def start(self, job: worker_pb2.Job) -> None:
        """Run a job the hub sent."""
        job_id = job.job_id
        task = asyncio.create_task(self._execution.run(job, self._session, self.emit))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    def cancel(self, job_id: str) -> None:
        self._execution.cancel(job_id)

    def attach(
        self,
        outbox: Outbox,
        stub: worker_pb2_grpc.WorkerHubStub,
        metadata: Metadata,
        reattached: Collection[str],
        grace_s: float = 0.0,
    ) -> None:
        """A session was welcomed: the jobs the hub reattached go on with it (their kept ends
        are sent again), the others stop (the hub ended them, or never knew them). `grace_s`:
        how long the hub keeps them if this session drops too (0: it did not say)."""
        if grace_s > 0:
            self._grace_s = grace_s
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        lost = [job_id for job_id in self._tasks if job_id not in reattached]
        if reattached or lost:
            logger.info("%d job(s) reattached; %d stopped", len(reattached), len(lost))
        for job_id in lost:
            self._execution.cancel(job_id)
        self._cut.clear()
        self._current = _Attachment(outbox, stub, metadata)
        self._attached.set()
        self._resend_kept(self._current, reattached)

    def _resend_kept(self, attachment: _Attachment, reattached: Collection[str]) -> None:
        """Send again the ends the hub still waits for, keeping them until the next welcome
        (this session may drop before they are written); forget the others: the hub has them.
        A job the hub waits for that is neither running nor kept (its end was forgotten when
        the grace ended, just after the hello listed it) ends as lost, or the hub would wait
        for it forever."""
        for job_id in [job_id for job_id in self._kept if job_id not in reattached]:
            self._forget(job_id)
        for job_id in reattached:
            if job_id not in self._tasks and job_id not in self._kept:
                failure = common_pb2.JobFailure(
                    type="WorkerLost", message="the worker no longer holds the job"
                )
                self._keep(job_end(job_id, EndReason.WORKER_LOST, failure=failure))
        ends = list(self._kept.values())
        if self._resending is not None:
            self._resending.cancel()  # of a session that is gone
        # Beside the session, not in it: an outbox nobody reads must not stall its handshake.
        self._resending = asyncio.create_task(_put_all(attachment, ends)) if ends else None

    def detach(self, outbox: Outbox) -> None:
        """The session of `outbox` ended: the jobs wait for the next one, within the grace."""
        current = self._current
        if current is None or current.outbox is not outbox:
            return
        current.gone.set()
        self._current = None
        self._attached.clear()
        self._cut |= self._streamed
        self._streamed.clear()
        for job_id in self._cut:
            self._execution.lose(
                job_id, "the connection to the hub dropped while the job sent its result"
            )
        if self._tasks and self._expiry is None:
            logger.info(
                "Keeping %d job(s) for %g s, until the connection is back",
                len(self._tasks),
                self._grace_s,
            )
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self._grace_s, self._expire)

    async def emit(self, message: worker_pb2.WorkerMessage) -> None:
        """Send a job's message on the current session, waiting for one if there is none. An
        end does not wait: it is kept, for the next session if this one drops."""
        kind = message.WhichOneof("kind")
        if kind == "end":
            self._keep(message)
            if self._current is None:
                return
        attachment = self._current or await self._wait_attached()
        if kind == "output":
            self._streamed.add(message.output.job_id)
        await _put(attachment, message)

    async def finish(self, grace_s: float | None, why: str) -> None:
        """The worker stops: jobs not started yet are drained at once, running ones get
        `grace_s` (None: as long as they run), then are drained; `why` names who stopped it."""
        if not self._tasks:
            return
        if grace_s is not None:  # it takes no more jobs: those it holds do not start
            self._drain(self._execution.waiting, why)
        limit = "as long as they run" if grace_s is None else f"up to {grace_s:g} s"
        logger.info("Waiting %s for the running job(s) to finish", limit)
        _, pending = await asyncio.wait(self._tasks.values(), timeout=grace_s)
        if pending:
            logger.warning("%d job(s) did not finish in time and were drained", len(pending))
            self._drain(list(self._tasks), why)
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)

    async def close(self) -> None:
        """The worker exits: stop every job (boundedly)."""
        if self._expiry is not None:
            self._expiry.cancel()
        resending = () if self._resending is None else (self._resending,)
        await end_tasks(*self._tasks.values(), *resending)

    def _drain(self, job_ids: Iterable[str], why: str) -> None:
        for job_id in job_ids:
            self._execution.drain(job_id, why)

    def _expire(self) -> None:
        """No session came back within the grace: the hub has failed the jobs already."""
        self._expiry = None
        if self._current is not None:
            return
        logger.warning(
            "The connection did not come back within %g s: stopping %d job(s)",
            self._grace_s,
            len(self._tasks),
        )
        # The hub has given up on them: their ends are nobody's, and not offered again.
        self._cut |= set(self._tasks)
        why = f"the connection to the hub did not come back within {self._grace_s:g} s"
        for job_id in list(self._tasks):
            self._execution.lose(job_id, why)
        self._kept.clear()
        self._kept_bytes = 0

    async def _session(self) -> tuple[worker_pb2_grpc.WorkerHubStub, Metadata]:
        attachment = self._current or await self._wait_attached()
        return attachment.stub, attachment.metadata

    async def _wait_attached(self) -> _Attachment:
        while self._current is None:
            await self._attached.wait()
        return self._current

    def _keep(self, end: worker_pb2.WorkerMessage) -> None:
        job_id = end.end.job_id
        replaced = self._kept.pop(job_id, None)  # an end kept again replaces the one before
        if replaced is not None:
            self._kept_bytes -= replaced.ByteSize()
        self._kept[job_id] = end
        self._kept_bytes += end.ByteSize()
        while len(self._kept) > KEPT_ENDS or self._kept_bytes > KEPT_END_BYTES:
            self._forget(next(iter(self._kept)))

    def _forget(self, job_id: str) -> None:
        end = self._kept.pop(job_id, None)
        if end is not None:
            self._kept_bytes -= end.ByteSize()
            self._streamed.discard(job_id)  # forgotten: it matters no more


async def end_tasks(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait (boundedly) until they have ended, so that none is left
    pending, and none ends with an exception nobody reads."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()


async def _put_all(attachment: _Attachment, messages: list[worker_pb2.WorkerMessage]) -> None:
    for message in messages:
        if attachment.gone.is_set():
            return
        await _put(attachment, message)


async def _put(attachment: _Attachment, message: worker_pb2.WorkerMessage) -> None:
    """Put `message` in the session's outbox, unless the session ends first (then it is lost
    with the session: an end is kept, the rest no longer matters)."""
    with contextlib.suppress(asyncio.QueueFull):
        attachment.outbox.put_nowait(message)
        return
    put = asyncio.ensure_future(attachment.outbox.put(message))
    gone = asyncio.ensure_future(attachment.gone.wait())
    try:
        await asyncio.wait({put, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        put.cancel()
        gone.cancel()
