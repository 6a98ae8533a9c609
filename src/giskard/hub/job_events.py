"""A job's events on their way to the client that submitted it, and the hub-wide bound on the
results held for clients that have not read them yet."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from giskard.rpc.v1 import client_pb2, common_pb2

# Results are relayed to the client as they come; this many chunks (1 MiB each) of a job may
# wait for a client that reads slowly, or not yet, after which that job's result stream
# waits (backpressure, not memory). Its worker's session and other jobs never wait.
JOB_EVENTS_QUEUED = 64
# What the hub holds of results not read yet, all jobs together: past it, a job whose result
# does not fit fails, instead of the hub's memory growing with every unread job.
UNREAD_RESULTS_MAX_BYTES = 1024**3
# In place of a job's logs (up to 1 MiB each) when they do not fit in that bound either.
LOGS_DROPPED = b"[the hub dropped this job's logs: it holds as much unread as it may]\n"


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
class JobEvents:
    """The events of one job waiting for its client. The job's lifecycle decides what goes in
    (jobs.JobBoard); the client's RunJob call or Jobs stream takes them out (`next`)."""

    unread: UnreadResults  # the hub's, shared by all jobs
    # None means: stop, the submitter's key was revoked. Unbounded, so that the worker's
    # session never waits on one client: result chunks, the bulk, wait for room instead
    # (`wait_for_room`), each in its own call.
    queue: asyncio.Queue[client_pb2.JobEvent | None] = field(default_factory=asyncio.Queue)
    taken: asyncio.Event = field(default_factory=asyncio.Event)
    # The job ended: nothing more is waited for.
    closed: bool = False
    held_logs: int = 0  # bytes of its end's logs counted in `unread`

    def hold_logs(self, end: common_pb2.JobEnd) -> None:
        """Count the job's logs among the unread bytes until its client reads its end; drop
        them, saying so, if they do not fit: an end itself is never refused."""
        if self.unread.take(len(end.logs)):
            self.held_logs = len(end.logs)
        else:
            end.logs = LOGS_DROPPED

    def put(self, event: client_pb2.JobEvent) -> None:
        self.queue.put_nowait(event)

    def put_output(self, output: common_pb2.JobOutput) -> bool:
        """Hold a piece of the result for the client; False (nothing held) if the hub already
        holds as much unread result as it may."""
        if not self.unread.take(len(output.chunk)):
            return False
        self.queue.put_nowait(client_pb2.JobEvent(output=output))
        return True

    def interrupt(self, event: client_pb2.JobEvent | None) -> None:
        """Put `event` now, in place of the events not sent yet: they are moot."""
        self.discard_pending()
        self.queue.put_nowait(event)

    def discard_pending(self) -> None:
        """Drop the events not sent yet, and wake a result stream waiting for room."""
        while not self.queue.empty():
            self._release_held(self.queue.get_nowait())
        self.taken.set()

    async def next(self) -> client_pb2.JobEvent | None:
        event = await self.queue.get()
        self._release_held(event)
        self.taken.set()
        return event

    async def wait_for_room(self) -> None:
        """Until fewer than JOB_EVENTS_QUEUED events wait for the client (or the job ended)."""
        while self.queue.qsize() >= JOB_EVENTS_QUEUED and not self.closed:
            self.taken.clear()
            await self.taken.wait()

    def _release_held(self, event: client_pb2.JobEvent | None) -> None:
        kind = None if event is None else event.WhichOneof("kind")
        if kind == "output":
            self.unread.give_back(len(event.output.chunk))  # type: ignore[union-attr]
        elif kind == "end":
            self.unread.give_back(self.held_logs)
            self.held_logs = 0
