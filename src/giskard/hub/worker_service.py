"""The worker-facing gRPC service: sessions and artifact downloads."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Collection

import grpc
from google.protobuf.message import DecodeError

from giskard import __version__
from giskard.compression import AUTO, ChunkCompressor, session_codec
from giskard.display import printable
from giskard.hub.artifacts import ArtifactStore
from giskard.hub.auth import Authenticator
from giskard.hub.decoding import UNDECODABLE
from giskard.hub.job import Job
from giskard.hub.jobs import TO_WORKER, JobBoard
from giskard.hub.registry import NameTaken, WorkerRegistry, WorkerSession, put_evicting
from giskard.hub.shared_artifacts import shared_answer
from giskard.labels import check_labels, check_name
from giskard.protocol import (
    CHUNK_SIZE,
    INLINE_MAX_BYTES,
    PROTOCOL_VERSION,
    SESSION_METADATA_KEY,
)
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from giskard.session_batches import OutboxReader, hub_batch

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
# Workers send chunks of CHUNK_SIZE; anything bigger is not a worker of this protocol.
MAX_CHUNK_BYTES = CHUNK_SIZE
MAX_RESULT_BYTES = 16 * 1024**3
# What a worker may send of a result on its session stream, where nothing waits for the client.
SESSION_RESULT_MAX_BYTES = 4 * CHUNK_SIZE
# A worker's info, packages included, is a few tens of KB; the hub keeps it for each worker.
MAX_HELLO_BYTES = 256 * 1024
# A worker's cache report lists a few inputs (20 at most: 2 KB); the hub keeps the latest.
MAX_CACHE_REPORT_BYTES = 16 * 1024
# More slots than this would only let one worker hold the whole queue.
MAX_CONCURRENCY = 256


class ProtocolViolation(Exception):
    """What a worker sent breaks the protocol; the text says what it sent."""


class WorkerHubService(worker_pb2_grpc.WorkerHubServicer):
    def __init__(
        self,
        registry: WorkerRegistry,
        jobs: JobBoard,
        store: ArtifactStore,
        auth: Authenticator,
        max_result_bytes: int = MAX_RESULT_BYTES,
        compression: str = AUTO,
    ) -> None:
        """`compression`: whether artifact chunks are compressed for the workers that decode
        them (see giskard.compression)."""
        self._registry = registry
        self._jobs = jobs
        self._store = store
        self._auth = auth
        self._max_result_bytes = max_result_bytes
        self._compression = compression

    async def Connect(
        self,
        request_iterator: AsyncIterator[worker_pb2.WorkerMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[worker_pb2.HubMessage]:
        key = await self._auth.require(context, ["worker"], "open a worker session")
        hello = await _read_hello(request_iterator, context.peer())
        refusal = _check_hello(hello, context.peer())
        if refusal is not None:
            yield worker_pb2.HubMessage(refusal=refusal)
            return
        assert hello is not None
        session = _session_of(hello, key.name, context.peer())
        session.compression = session_codec(
            self._compression, session.peer, list(hello.compression)
        )
        reattached: list[str] = []
        refusal = self._register(session, hello.held_jobs, reattached)
        if refusal is not None:
            yield worker_pb2.HubMessage(refusal=refusal)
            return
        reader: asyncio.Task[None] | None = None
        forget = self._auth.on_revoke(key, lambda: _close_revoked(session))
        # From here on the session is registered: whatever happens (even a cancel while the
        # welcome is being sent), the finally below must take it out again.
        try:
            yield self._welcome(session, reattached)
            reader = asyncio.create_task(self._read_messages(request_iterator, session))
            outbox = OutboxReader(session.outbox, hub_batch)
            outbox.batching = hello.accepts_batches
            while (message := await outbox.next()) is not None:
                session.batches_sent = outbox.batches_sent
                yield message
        finally:
            forget()
            if reader is not None:
                reader.cancel()
            # Its jobs first, with no wait in between: a new session of this worker that
            # registers while the registry tells the others must find them detached.
            self._session_ended(session)
            self._registry.remove(session)

    def _welcome(self, session: WorkerSession, reattached: list[str]) -> worker_pb2.HubMessage:
        """The answer to a registered session's hello."""
        active = self._registry.is_active(session)
        logger.info(
            "Worker connected: %s from %s%s%s",
            session.describe(),
            session.peer,
            "" if active else " (standby)",
            f"; artifacts sent {session.compression}-compressed" if session.compression else "",
        )
        welcome = worker_pb2.Welcome(
            protocol_version=PROTOCOL_VERSION,
            hub_version=__version__,
            active=active,
            session_id=session.session_id,
            reattached=reattached,
            reattach_grace_s=self._jobs.reattach_grace_s,
            accepts_batches=True,
            compression=session.compression,
            accepts_cache_reports=True,
        )
        return worker_pb2.HubMessage(welcome=welcome)

    def _session_ended(self, session: WorkerSession) -> None:
        """Its jobs wait for the worker to come back if only its connection dropped; they
        fail if it was shutting down, the hub ended the session, or the worker does not keep
        its jobs through a dropped connection."""
        logger.info("Worker disconnected: %s", session.describe())
        reason = f"the worker {session.describe()} disconnected during the job"
        if session.draining or session.ended_by_hub or not session.reattaches:
            self._jobs.session_lost(session, reason)
        else:
            self._jobs.detach(session, reason)

    def _register(
        self, session: WorkerSession, held: Collection[str], reattached: list[str]
    ) -> worker_pb2.Refusal | None:
        """Add `session` to the registry, in place of an earlier session of the same worker,
        whose jobs it `held` go on with it (listed in `reattached`; the others fail); a
        refusal if another worker has its name. Not a coroutine: nothing may happen between
        the reattach and the registration."""
        # Before it joins the registry, which routes new jobs to its free slots.
        reattached += self._jobs.reattach(session, held)
        try:
            replaced = self._registry.add(session)
        except NameTaken as taken:
            text = f"{taken}; start this worker with another --name"
            logger.warning("Refused worker %s from %s: %s", session.describe(), session.peer, text)
            return worker_pb2.Refusal(reason=worker_pb2.Refusal.NAME_TAKEN, message=text)
        if replaced is not None:
            refusal = worker_pb2.Refusal(
                reason=worker_pb2.Refusal.REPLACED,
                message=printable(
                    f"replaced by a newer session of this worker (pid {session.info.pid})"
                ),
            )
            _put_end_of_stream(replaced, worker_pb2.HubMessage(refusal=refusal))
        return None

    async def _read_messages(
        self, request_iterator: AsyncIterator[worker_pb2.WorkerMessage], session: WorkerSession
    ) -> None:
        try:
            async for message in request_iterator:
                await self._handle(message, session)
        except (ProtocolViolation, DecodeError) as violation:
            what = violation if isinstance(violation, ProtocolViolation) else UNDECODABLE
            logger.warning("Disconnecting worker %s: it sent %s", session.describe(), what)
            self._jobs.session_lost(session, f"the worker broke the protocol: it sent {what}")
            refusal = worker_pb2.Refusal(
                reason=worker_pb2.Refusal.BAD_MESSAGE, message=f"protocol violation: {what}"
            )
            _put_end_of_stream(session, worker_pb2.HubMessage(refusal=refusal))
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            # Wakes the writer loop in Connect, which then cleans up the session.
            _put_end_of_stream(session)

    async def _handle(self, message: worker_pb2.WorkerMessage, session: WorkerSession) -> None:
        """Relay a worker's message, or each of a batch's in order. Nothing in it is trusted:
        a message that breaks the protocol ends the session (ProtocolViolation); one about a
        job this worker does not run (finished, cancelled, never sent) is dropped."""
        if message.WhichOneof("kind") != "batch":
            await self._handle_one(message, session)
            return
        batch = message.batch.messages
        if not batch:
            raise ProtocolViolation("an empty batch")
        session.batches_received += 1
        for inner in batch:
            await self._handle_one(inner, session)

    async def _handle_one(self, message: worker_pb2.WorkerMessage, session: WorkerSession) -> None:
        kind = message.WhichOneof("kind")
        if kind == "output":
            await self._relay_output(message.output, session)
        elif kind == "end":
            await self._end_job(message.end, session)
        elif kind == "progress":
            job = session.jobs.get(message.progress.job_id)
            if job is not None:
                self._jobs.progress(job, message.progress)
        elif kind == "draining":
            logger.info("Worker %s is shutting down; no more jobs for it", session.describe())
            self._registry.drain(session)
        elif kind == "cache":
            if message.cache.ByteSize() > MAX_CACHE_REPORT_BYTES:
                raise ProtocolViolation(f"a cache report of {message.cache.ByteSize()} bytes")
            session.remember_cache(message.cache)
        else:
            # A batch inside a batch lands here too: batches are never nested.
            where = "in a batch" if kind == "batch" else "after the hello"
            raise ProtocolViolation(f"a {kind or 'empty'} message {where}")

    async def _relay_output(self, output: common_pb2.JobOutput, session: WorkerSession) -> None:
        if len(output.chunk) > MAX_CHUNK_BYTES:
            raise ProtocolViolation(f"a result chunk of {len(output.chunk)} bytes")
        job = session.jobs.get(output.job_id)
        if job is None or job.ended:
            return
        # Not waited for: the session must never wait on one client. Bigger results come
        # with SendResult, which waits for the client.
        if job.received_bytes + len(output.chunk) > SESSION_RESULT_MAX_BYTES:
            raise ProtocolViolation(
                f"a result over {SESSION_RESULT_MAX_BYTES} bytes on the session (use SendResult)"
            )
        self._jobs.output(job, output)

    async def _end_job(self, end: common_pb2.JobEnd, session: WorkerSession) -> None:
        job = session.jobs.get(end.job_id)
        if job is None:
            return
        outcome = end.WhichOneof("outcome")
        if outcome is None:
            raise ProtocolViolation("a job end without an outcome")
        if outcome == "success":
            _check_result(end.success.result, job)
        self._jobs.worker_ended(job, end)

    async def SendResult(
        self,
        request_iterator: AsyncIterator[worker_pb2.ResultChunk],
        context: grpc.aio.ServicerContext,
    ) -> worker_pb2.ResultReceived:
        session = await self._caller_session(context, "send a result")
        try:
            return await self._receive_result(request_iterator, session, context)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
            raise  # not reached: abort raises

    async def _receive_result(
        self,
        request_iterator: AsyncIterator[worker_pb2.ResultChunk],
        session: WorkerSession,
        context: grpc.aio.ServicerContext,
    ) -> worker_pb2.ResultReceived:
        job: Job | None = None
        async for chunk in request_iterator:
            if job is None:
                # Only a job of the caller's own session: a result sent for another worker's
                # job would corrupt that job and end that worker's session.
                job = session.jobs.get(chunk.job_id)
                if job is None:
                    await context.abort(
                        grpc.StatusCode.NOT_FOUND, "no such job running on this session"
                    )
            assert job is not None
            if len(chunk.data) > MAX_CHUNK_BYTES:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a chunk over 1 MiB")
            await job.events.wait_for_room()  # this job's client sets the pace, no one else's
            if job.ended:  # the client left: tell the worker to stop sending
                return worker_pb2.ResultReceived()
            if job.received_bytes + len(chunk.data) > self._max_result_bytes:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the result is too large")
            output = common_pb2.JobOutput(job_id=job.job_id, chunk=chunk.data)
            if not self._jobs.output(job, output):
                break  # the job failed: returning tells the worker to stop sending
        return worker_pb2.ResultReceived()

    async def FetchArtifact(
        self, request: worker_pb2.FetchArtifactRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.Chunk]:
        session = await self._caller_session(context, "download an artifact")
        # Only the inputs of the caller's own jobs: another job's inputs are none of its
        # business. Refused as absent, so that the answer does not tell what the hub holds.
        mine = [job for job in session.jobs.values() if request.blake3 in job.inputs]
        shared = await shared_answer(self._store, request, context.peer()) if mine else None
        if shared is not None:
            self._jobs.bytes_moved[TO_WORKER] += mine[0].input_sizes.get(request.blake3, 0)
            yield shared
            return
        blob = self._store.get(request.blake3) if mine else None
        if blob is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no artifact {request.blake3}")
            return
        view = memoryview(blob)
        self._jobs.bytes_moved[TO_WORKER] += len(view)
        if session.compression:
            async for chunk in _compressed_chunks(view, ChunkCompressor(session.compression)):
                yield chunk
            return
        for start in range(0, len(view), CHUNK_SIZE):
            yield worker_pb2.Chunk(data=bytes(view[start : start + CHUNK_SIZE]))
        if not view:
            yield worker_pb2.Chunk()

    async def _caller_session(
        self, context: grpc.aio.ServicerContext, action: str
    ) -> WorkerSession:
        """The session a call beside it acts for: named by its metadata, opened with the
        caller's key. Aborts the call otherwise."""
        key = await self._auth.require(context, ["worker"], action)
        session_id = _metadata_value(context, SESSION_METADATA_KEY)
        if not session_id:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no {SESSION_METADATA_KEY} metadata: only a connected worker may {action}",
            )
        session = self._registry.find_session(session_id, key.name)
        if session is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no such worker session of this key: cannot {action}"
            )
        assert session is not None
        return session


async def _compressed_chunks(
    view: memoryview, compressor: ChunkCompressor
) -> AsyncIterator[worker_pb2.Chunk]:
    """`view` in compressed chunks. Each is compressed in a thread while the one before it is
    being sent, so that a link and a core both stay busy; an empty artifact is one empty
    chunk."""

    def chunk(start: int) -> worker_pb2.Chunk:
        data, codec = compressor.compress(view[start : start + CHUNK_SIZE])
        return worker_pb2.Chunk(data=bytes(data), compression=codec)

    starts = range(0, max(len(view), 1), CHUNK_SIZE)
    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, chunk, 0)
    try:
        for following in starts[1:]:
            ready = await pending
            pending = loop.run_in_executor(None, chunk, following)
            yield ready
        yield await pending
    finally:
        pending.cancel()
    logger.debug(
        "Sent an artifact of %d B in %d B (%s)",
        compressor.raw_bytes,
        compressor.sent_bytes,
        compressor.codec,
    )


def _metadata_value(context: grpc.aio.ServicerContext, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name and isinstance(value, str):
            return value
    return ""


def _check_result(result: common_pb2.ArtifactRef, job: Job) -> None:
    received = job.received_bytes
    if result.inline:
        if len(result.inline) > INLINE_MAX_BYTES or received:
            raise ProtocolViolation("an inline result that is too large or beside chunks")
        received = len(result.inline)
    # A job whose client left had its output dropped: there is nothing to check.
    if result.size != received and not job.ended:
        raise ProtocolViolation(f"a result of {received} bytes announced as {result.size} bytes")


def _session_of(hello: worker_pb2.Hello, key_name: str, peer: str) -> WorkerSession:
    """The session a valid hello opens, with the key named `key_name`."""
    session = WorkerSession(
        info=hello.info,
        peer=peer,
        key_name=key_name,
        concurrency=min(max(hello.concurrency, 1), MAX_CONCURRENCY),
        prefetch=min(hello.prefetch, MAX_CONCURRENCY),
        reattaches=hello.reattaches,
    )
    if not session.info.name:  # a worker that does not name itself gets a unique name
        session.info.name = f"worker-{secrets.token_hex(4)}"
    return session


async def _read_hello(
    request_iterator: AsyncIterator[worker_pb2.WorkerMessage], peer: str
) -> worker_pb2.Hello | None:
    try:
        first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
    except (TimeoutError, StopAsyncIteration, grpc.aio.AioRpcError, DecodeError):
        logger.warning("A client at %s opened a worker session but sent no hello", peer)
        return None
    return first.hello if first.WhichOneof("kind") == "hello" else None


def _check_hello(hello: worker_pb2.Hello | None, peer: str) -> worker_pb2.Refusal | None:
    if hello is None:
        return worker_pb2.Refusal(
            reason=worker_pb2.Refusal.BAD_HELLO, message="the session must start with a hello"
        )
    if hello.ByteSize() > MAX_HELLO_BYTES:
        logger.warning("Refused worker at %s: a hello of %d bytes", peer, hello.ByteSize())
        return worker_pb2.Refusal(
            reason=worker_pb2.Refusal.BAD_HELLO,
            message=f"the hello is larger than {MAX_HELLO_BYTES} bytes",
        )
    if hello.protocol_version != PROTOCOL_VERSION:
        text = (
            f"protocol version mismatch: the worker speaks v{hello.protocol_version}, "
            f"this hub speaks v{PROTOCOL_VERSION}; install matching versions of giskard"
        )
        logger.warning("Refused worker at %s: %s", peer, text)
        return worker_pb2.Refusal(reason=worker_pb2.Refusal.PROTOCOL_VERSION, message=text)
    return _check_identity(hello.info, peer)


def _check_identity(info: common_pb2.WorkerInfo, peer: str) -> worker_pb2.Refusal | None:
    """A worker's name and labels follow giskard.labels' rules (an empty name: the hub
    makes one)."""
    try:
        if info.name:
            check_name(info.name)
        check_labels(info.labels)
    except ValueError as exc:
        logger.warning("Refused worker at %s: %s", peer, printable(str(exc)))
        return worker_pb2.Refusal(reason=worker_pb2.Refusal.BAD_HELLO, message=str(exc))
    return None


def _close_revoked(session: WorkerSession) -> None:
    logger.warning("Closing the session of worker %s: its key was revoked", session.describe())
    refusal = worker_pb2.Refusal(
        reason=worker_pb2.Refusal.KEY_REVOKED, message="the API key of this worker was revoked"
    )
    _put_end_of_stream(session, worker_pb2.HubMessage(refusal=refusal))


def _put_end_of_stream(session: WorkerSession, last: worker_pb2.HubMessage | None = None) -> None:
    """End the session's stream after `last`. What is still queued for a worker that is gone
    or refused no longer matters, so it is dropped to make room."""
    session.ended_by_hub |= last is not None
    for message in (last, None) if last is not None else (None,):
        put_evicting(session.outbox, message)
