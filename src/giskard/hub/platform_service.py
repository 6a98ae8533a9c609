"""The client-facing gRPC service: upload artifacts, run jobs, list workers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator

import grpc

from giskard.hub.artifacts import ArtifactStore
from giskard.hub.auth import Authenticator
from giskard.hub.registry import JobRun, WorkerRegistry, WorkerSession
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2

logger = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 16 * 1024**3
DISPATCH_TIMEOUT_S = 10.0
LIST_REPLY_MAX_BYTES = 3 * 1024 * 1024


class PlatformService(client_pb2_grpc.PlatformServicer):
    def __init__(
        self, registry: WorkerRegistry, store: ArtifactStore, auth: Authenticator, address: str
    ) -> None:
        self._registry = registry
        self._store = store
        self._auth = auth
        self._address = address

    async def ListWorkers(
        self, request: client_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> client_pb2.ListWorkersReply:
        await self._auth.require(context, ["client"], "list the workers")
        active = self._registry.active
        reply = client_pb2.ListWorkersReply()
        for session in self._registry.sessions:
            # Stay well under the message limit however many workers there are.
            if reply.ByteSize() + session.info.ByteSize() > LIST_REPLY_MAX_BYTES:
                break
            reply.workers.append(
                client_pb2.ConnectedWorker(
                    info=session.info,
                    active=session is active,
                    connected_at=session.connected_at,
                    peer=session.peer,
                )
            )
        return reply

    async def MissingArtifacts(
        self, request: client_pb2.ArtifactList, context: grpc.aio.ServicerContext
    ) -> client_pb2.ArtifactList:
        await self._auth.require(context, ["client"], "submit jobs")
        missing = [ref for ref in request.artifacts if ref.sha256 not in self._store]
        return client_pb2.ArtifactList(artifacts=missing)

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[client_pb2.Upload], context: grpc.aio.ServicerContext
    ) -> common_pb2.ArtifactRef:
        await self._auth.require(context, ["client"], "submit jobs")
        ref: common_pb2.ArtifactRef | None = None
        buffer = bytearray()
        async for message in request_iterator:
            if ref is None:
                ref = message.ref
                if ref.size > MAX_ARTIFACT_BYTES:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "artifact too large")
            buffer += message.data
            if len(buffer) > ref.size:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "more bytes than announced")
        if ref is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload")
        assert ref is not None
        blob = bytes(buffer)
        del buffer
        digest = await asyncio.to_thread(lambda: hashlib.sha256(blob).hexdigest())
        if len(blob) != ref.size or digest != ref.sha256:
            await context.abort(grpc.StatusCode.DATA_LOSS, "size or SHA-256 mismatch")
        self._store.put(digest, blob)
        return common_pb2.ArtifactRef(sha256=digest, size=len(blob))

    async def RunJob(
        self, request: client_pb2.RunJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[client_pb2.JobEvent]:
        key = await self._auth.require(context, ["client"], "submit jobs")
        if request.spec.WhichOneof("kind") is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the job has no kind")
        inputs = _artifacts_of(request.spec)
        missing = [sha for sha in inputs if sha not in self._store]
        if missing:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown artifacts: {missing}")
        session = await self._registry.wait_for_active(request.wait_for_worker_s)
        if session is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no worker is connected to the hub at {self._address}; "
                f"start one with: giskard worker start -h HOST -p PORT",
            )
        assert session is not None
        job = JobRun(job_id=uuid.uuid4().hex, pinned=inputs)
        for sha in inputs:
            self._store.pin(sha)
        forget = self._auth.on_revoke(key, lambda: job.interrupt(None))
        try:
            await _dispatch(session, job, request.spec)
            yield client_pb2.JobEvent(
                started=client_pb2.JobStarted(job_id=job.job_id, worker_id=session.info.worker_id)
            )
            while (event := await job.events.get()) is not None:
                yield event
                if event.WhichOneof("kind") == "end":
                    return
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the API key was revoked")
        finally:
            forget()
            session.jobs.pop(job.job_id, None)
            # The client is gone: output already queued is moot, and a worker session
            # waiting for room in this queue must not wait forever.
            job.done = True
            while not job.events.empty():
                job.events.get_nowait()
            for sha in inputs:
                self._store.unpin(sha)


async def _dispatch(session: WorkerSession, job: JobRun, spec: common_pb2.JobSpec) -> None:
    session.jobs[job.job_id] = job
    message = worker_pb2.HubMessage(job=worker_pb2.Job(job_id=job.job_id, spec=spec))
    try:
        # A worker that does not read its stream must not hang the client.
        await asyncio.wait_for(session.outbox.put(message), DISPATCH_TIMEOUT_S)
    except TimeoutError:
        failure = common_pb2.JobFailure(
            type="WorkerNotReading", message=f"the worker {session.describe()} is not reading"
        )
        job.finish(common_pb2.JobEnd(job_id=job.job_id, failure=failure))
        return
    logger.debug("job %s (%s) sent to %s", job.job_id, spec.WhichOneof("kind"), session.describe())


def _artifacts_of(spec: common_pb2.JobSpec) -> list[str]:
    if spec.WhichOneof("kind") == "predict":
        return [spec.predict.model.sha256, spec.predict.data.sha256]
    return []
