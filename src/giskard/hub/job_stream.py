"""One client's Jobs stream: its jobs' submissions and cancels come in batches, their events go
out in batches, each job paced by what its client took of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc

from giskard.hub.job import Job
from giskard.protocol import JOB_WINDOW_BYTES
from giskard.rpc.v1 import client_pb2

logger = logging.getLogger(__name__)

# A reply carries what waits to be sent, up to this many events or bytes (a result chunk is
# 1 MiB): a lone event goes at once, those that piled up meanwhile go together.
REPLY_MAX_EVENTS = 256
REPLY_MAX_BYTES = 2 * 1024 * 1024
# Result bytes of all the stream's jobs in its outbox or in the reply being sent. Beyond it a
# job's results wait in its JobEvents, where the hub's bound on unread results counts them:
# gRPC takes replies only as fast as the client reads them.
OUTBOX_MAX_BYTES = 4 * REPLY_MAX_BYTES


class Refusal(Exception):
    """A submitted job the hub does not take: the status its call ends with, and why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Window:
    """How much more of a job's result may be sent before its client says it took some: its
    client holds at most JOB_WINDOW_BYTES of it, so that a client reading one job slowly holds
    up that job only (the rest waits at the hub, job_events.JobEvents.wait_for_room)."""

    def __init__(self) -> None:
        self._room = JOB_WINDOW_BYTES
        self._given = asyncio.Event()

    async def take(self, event: client_pb2.JobEvent) -> None:
        if event.WhichOneof("kind") != "output":
            return  # small, and few: only result chunks are the bulk
        while self._room <= 0:
            self._given.clear()
            await self._given.wait()
        self._room -= len(event.output.chunk)

    def give(self, size: int) -> None:
        self._room = min(self._room + size, JOB_WINDOW_BYTES)
        self._given.set()


class _OutboxBytes:
    """The result bytes in the stream's outbox and in its last reply, at most
    OUTBOX_MAX_BYTES (one chunk may always go, however big)."""

    def __init__(self) -> None:
        self._held = 0
        self._freed = asyncio.Event()

    async def reserve(self, size: int) -> None:
        while self._held and self._held + size > OUTBOX_MAX_BYTES:
            self._freed.clear()
            await self._freed.wait()
        self._held += size

    def release(self, size: int) -> None:
        self._held -= size
        self._freed.set()


class JobStream:
    """The jobs of one Jobs call. `admit` makes a request's job (raising Refusal), `start`
    hands it to the job board, `release` forgets it once its client has its end or left, and
    `cancel` cancels one by id."""

    def __init__(
        self,
        admit: Callable[[client_pb2.RunJobRequest], Job],
        start: Callable[[Job, client_pb2.RunJobRequest], None],
        release: Callable[[Job], None],
        cancel: Callable[[str], bool],
    ) -> None:
        self._admit, self._start, self._release, self._cancel = admit, start, release, cancel
        self._relays: dict[str, tuple[_Window, asyncio.Task[None]]] = {}
        # The events to send, in order; None: stop (the client is done, or its key revoked).
        self._outbox: asyncio.Queue[client_pb2.JobEvent | None] = asyncio.Queue()
        self._outbox_bytes = _OutboxBytes()
        self._replying = 0  # result bytes of the reply being sent
        self._client_done = False
        self.revoked = False

    async def serve(
        self, requests: AsyncIterator[client_pb2.JobsRequest]
    ) -> AsyncIterator[client_pb2.JobsReply]:
        """The replies to `requests`, until the client is done and its jobs ended, or `revoke`."""
        receiving = asyncio.create_task(self._receive(requests))
        try:
            while (reply := await self._next_reply()) is not None:
                yield reply
        finally:
            receiving.cancel()
        if receiving.done() and not receiving.cancelled() and receiving.exception() is not None:
            raise receiving.exception()  # type: ignore[misc]

    def revoke(self) -> None:
        """The client's key was revoked: the stream stops."""
        self.revoked = True
        self._outbox.put_nowait(None)

    async def close(self) -> None:
        """The stream is over: its jobs still running are withdrawn (their workers stop them)."""
        relays = [task for _, task in self._relays.values()]
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _receive(self, requests: AsyncIterator[client_pb2.JobsRequest]) -> None:
        try:
            async for message in requests:
                self._take(message)
        except Exception:
            self._outbox.put_nowait(None)  # a message that does not decode: stop now
            raise
        # The client sends no more: the stream ends with its last job.
        self._client_done = True
        self._stop_when_idle()

    def _take(self, message: client_pb2.JobsRequest) -> None:
        for taken in message.taken:
            if (relay := self._relays.get(taken.job_id)) is not None:
                relay[0].give(taken.bytes)
        for request in message.submit:
            self._submit(request)
        for job_id in message.cancel:
            self._cancel(job_id)

    def _submit(self, request: client_pb2.RunJobRequest) -> None:
        try:
            if not request.job_id:  # its events could not be told from the others'
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "a job on a stream needs its id")
            job = self._admit(request)
        except Exception as exc:
            if not isinstance(exc, Refusal):  # a bug of ours: this job fails, not the stream
                logger.exception("Could not take job %s", request.job_id[:8])
                exc = Refusal(grpc.StatusCode.INTERNAL, f"the hub could not take the job: {exc}")
            refused = client_pb2.JobRefused(
                job_id=request.job_id, code=exc.code.value[0], message=exc.message
            )
            self._outbox.put_nowait(client_pb2.JobEvent(refused=refused))
            return
        window = _Window()
        self._relays[job.job_id] = (window, asyncio.create_task(self._relay(job, window)))
        self._start(job, request)

    async def _relay(self, job: Job, window: _Window) -> None:
        """Move the job's events to the outbox as its window lets them, until its end."""
        try:
            while (event := await job.events.next()) is not None:
                await window.take(event)
                await self._outbox_bytes.reserve(_result_bytes(event))
                self._outbox.put_nowait(event)
                if event.WhichOneof("kind") == "end":
                    return
        finally:
            del self._relays[job.job_id]
            self._release(job)
            self._stop_when_idle()

    def _stop_when_idle(self) -> None:
        if self._client_done and not self._relays:
            self._outbox.put_nowait(None)

    async def _next_reply(self) -> client_pb2.JobsReply | None:
        # Asked for once gRPC took the last reply: its results are no longer held here.
        self._outbox_bytes.release(self._replying)
        self._replying = 0
        event = await self._outbox.get()
        if event is None:
            return None
        reply = client_pb2.JobsReply(events=[event])
        size = event.ByteSize()
        while size < REPLY_MAX_BYTES and len(reply.events) < REPLY_MAX_EVENTS:
            try:
                event = self._outbox.get_nowait()
            except asyncio.QueueEmpty:
                break
            if event is None:  # stop after what came before it
                self._outbox.put_nowait(None)
                break
            reply.events.append(event)
            size += event.ByteSize()
        self._replying = sum(_result_bytes(event) for event in reply.events)
        return reply


def _result_bytes(event: client_pb2.JobEvent) -> int:
    return len(event.output.chunk) if event.WhichOneof("kind") == "output" else 0
