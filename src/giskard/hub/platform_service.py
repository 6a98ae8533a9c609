"""The client-facing gRPC service: upload artifacts, run jobs, list workers."""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from giskard import compat
from giskard.display import printable
from giskard.hub.artifacts import ArtifactStore
from giskard.hub.auth import Authenticator
from giskard.hub.decoding import UNDECODABLE
from giskard.hub.job import Job
from giskard.hub.job_events import JobEvents, UnreadResults
from giskard.hub.job_stream import JobStream, Refusal
from giskard.hub.jobs import UPLOAD, JobBoard
from giskard.hub.keys import KeyRecord
from giskard.hub.registry import WorkerRegistry, WorkerSession
from giskard.hub.routing import Constraint
from giskard.hub.shared_upload import take_shared
from giskard.job_inputs import job_inputs
from giskard.labels import MAX_LABELS, check_labels, check_name
from giskard.protocol import INLINE_MAX_BYTES, content_hasher, digest_of
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2
from giskard.shared_memory import SharedMemoryError, Unreachable
from giskard.sizes import format_size

logger = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 16 * 1024**3
# A job's id, chosen by its client or the hub: one word, printable in logs and status.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
LIST_REPLY_MAX_BYTES = 3 * 1024 * 1024
# What an input without a content address gets: a client of protocol v1 sends SHA-256 ones.
UNADDRESSED = (
    "an input without a BLAKE3 address: the client is older than this hub;"
    " install the same giskard version on both"
)
# The distinct constraints RunJob keeps made: a few per client environment and fleet; the
# bound keeps a client that varies them from growing the hub.
CONSTRAINTS_REMEMBERED = 256


class PlatformService(client_pb2_grpc.PlatformServicer):
    def __init__(
        self,
        registry: WorkerRegistry,
        jobs: JobBoard,
        store: ArtifactStore,
        auth: Authenticator,
        address: str,
        unread: UnreadResults,
    ) -> None:
        self._registry = registry
        self._unread = unread
        self._jobs = jobs
        self._store = store
        self._auth = auth
        self._address = address
        # The jobs whose client waits for their events (RunJob, Jobs), by the name of the key
        # that sent them and their id: ids are the clients' own, so two keys may use one id.
        self._calls: dict[tuple[str, str], Job] = {}
        # By worker name, labels and serialised requirements, as RunJob received them.
        self._constraints: dict[tuple[str, tuple[tuple[str, str], ...], bytes], Constraint] = {}
        self.streams_opened = 0  # Jobs streams, since the hub started

    async def ListWorkers(
        self, request: client_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> client_pb2.ListWorkersReply:
        await self._auth.require(context, ["client"], "list the workers")
        return fleet_status(self._registry, self._jobs, self._store)

    async def MissingArtifacts(
        self, request: client_pb2.ArtifactList, context: grpc.aio.ServicerContext
    ) -> client_pb2.ArtifactList:
        await self._auth.require(context, ["client"], "submit jobs")
        missing = [ref for ref in request.artifacts if ref.blake3 not in self._store]
        return client_pb2.ArtifactList(artifacts=missing)

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[client_pb2.Upload], context: grpc.aio.ServicerContext
    ) -> common_pb2.ArtifactRef:
        await self._auth.require(context, ["client"], "submit jobs")
        try:
            stored = await self._receive_upload(request_iterator, context)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
            raise  # not reached: abort raises
        self._jobs.bytes_moved[UPLOAD] += stored.size
        return stored

    async def _receive_upload(
        self, request_iterator: AsyncIterator[client_pb2.Upload], context: grpc.aio.ServicerContext
    ) -> common_pb2.ArtifactRef:
        ref: common_pb2.ArtifactRef | None = None
        buffer = bytearray()
        # Hashed as it arrives, so that checking overlaps receiving (a chunk's hash is ~0.3 ms).
        digest = content_hasher()
        async for message in request_iterator:
            if ref is None:
                ref = message.ref
                if not ref.blake3:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNADDRESSED)
                limit = min(MAX_ARTIFACT_BYTES, self._store.max_bytes)
                if ref.size > limit:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"an input of {format_size(ref.size)} is larger than this hub keeps"
                        f" ({format_size(limit)})",
                    )
                if message.shared_path:
                    return await self._take_shared(message, context)
            buffer += message.data
            digest.update(message.data)
            if len(buffer) > ref.size:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "more bytes than announced")
        if ref is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload")
        assert ref is not None
        # Kept as received, without a copy: nothing writes to it any more.
        blob, address = buffer, digest.hexdigest()
        if len(blob) != ref.size or address != ref.blake3:
            await context.abort(grpc.StatusCode.DATA_LOSS, "size or BLAKE3 mismatch")
        self._store.put(address, blob)
        return common_pb2.ArtifactRef(blake3=address, size=len(blob))

    async def _take_shared(
        self, offer: client_pb2.Upload, context: grpc.aio.ServicerContext
    ) -> common_pb2.ArtifactRef:
        """Keep the memfd a client of this machine offers in place of data, once hashed."""
        if not self._store.takes_shared():
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the hub holds all the memfds it may: send data",
            )
        try:
            blob, address = await take_shared(offer, context.peer())
        except Unreachable as exc:  # the client sends data instead
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise  # not reached: abort raises
        except SharedMemoryError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # not reached: abort raises
        if address != offer.ref.blake3:
            blob.close()
            await context.abort(grpc.StatusCode.DATA_LOSS, "size or BLAKE3 mismatch")
        self._store.put_shared(address, blob)
        logger.debug(
            "took artifact %s (%d B) from the client's shared memory", address[:12], blob.size
        )
        return common_pb2.ArtifactRef(blake3=address, size=blob.size)

    async def RunJob(
        self, request: client_pb2.RunJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[client_pb2.JobEvent]:
        key = await self._auth.require(context, ["client"], "submit jobs")
        try:
            job = self._admit(key, request)
        except Refusal as refusal:
            await context.abort(refusal.code, refusal.message)
            raise  # not reached: abort raises
        forget = self._auth.on_revoke(key, lambda: job.events.interrupt(None))
        try:
            self._start(job, request)
            while (event := await job.events.next()) is not None:
                yield event
                if event.WhichOneof("kind") == "end":
                    return
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the API key was revoked")
        finally:
            forget()
            self._release(key, job)

    async def Jobs(
        self,
        request_iterator: AsyncIterator[client_pb2.JobsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[client_pb2.JobsReply]:
        key = await self._auth.require(context, ["client"], "submit jobs")
        stream = JobStream(
            admit=lambda request: self._admit(key, request),
            start=self._start,
            release=lambda job: self._release(key, job),
            cancel=lambda job_id: self._cancel(key, job_id),
        )
        self.streams_opened += 1
        forget = self._auth.on_revoke(key, stream.revoke)
        try:
            async for reply in stream.serve(request_iterator):
                yield reply
            if stream.revoked:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the API key was revoked")
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
        finally:
            forget()
            await stream.close()

    def _admit(self, key: KeyRecord, request: client_pb2.RunJobRequest) -> Job:
        """The job `request` submits, from now cancellable by its id (until `_release`);
        raises Refusal if it is not one to run."""
        spec = request.spec
        refs = self._inputs(spec)
        constraint = self._constraint(request)
        job_id = request.job_id or uuid.uuid4().hex
        call = (key.name, job_id)
        if not JOB_ID.fullmatch(job_id) or call in self._calls:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                "job_id must be 8 to 64 of [A-Za-z0-9_-], not that of a running job of yours",
            )
        sizes = {ref.blake3: ref.size for ref in refs}
        events = JobEvents(self._unread)
        job = Job(job_id, spec, events, _stored(refs), constraint=constraint, input_sizes=sizes)
        self._calls[call] = job
        return job

    def _start(self, job: Job, request: client_pb2.RunJobRequest) -> None:
        """Hand an admitted job to the job board."""
        self._jobs.receive(job, request.wait_for_worker_s, lambda: self._no_worker(job.constraint))

    def _release(self, key: KeyRecord, job: Job) -> None:
        """Its client has its end, or cancelled, or went away (then the worker stops it)."""
        del self._calls[(key.name, job.job_id)]
        self._jobs.withdraw(job)

    async def CancelJob(
        self, request: client_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> client_pb2.CancelJobReply:
        key = await self._auth.require(context, ["client"], "cancel jobs")
        if not self._cancel(key, request.job_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such job running for this key")
        return client_pb2.CancelJobReply()

    def _cancel(self, key: KeyRecord, job_id: str) -> bool:
        """Cancel a running job of this key; False if it has none of this id."""
        # Only the caller's own jobs: another key's are none of its business.
        job = self._calls.get((key.name, job_id))
        if job is not None:
            self._jobs.cancel(job)
        return job is not None

    def _inputs(self, spec: common_pb2.JobSpec) -> list[common_pb2.ArtifactRef]:
        """The job's inputs (job_inputs); raises Refusal if the spec is not one to run or the
        store lacks one of those it needs from there."""
        if spec.WhichOneof("kind") is None:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "the job has no kind")
        if spec.timeout_s < 0 or not math.isfinite(spec.timeout_s):
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "timeout_s must be >= 0")
        refs = [ref for ref, _ in job_inputs(spec)]
        if not all(ref.blake3 for ref in refs):
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, UNADDRESSED)
        if any(len(ref.inline) > INLINE_MAX_BYTES for ref in refs):
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "an inline input is too large")
        if forged := _forged_inline(refs):
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"inline input {printable(forged.blake3[:12])} does not match its BLAKE3 or size",
            )
        missing = [address for address in _stored(refs) if address not in self._store]
        if missing:
            names = ", ".join(address[:12] for address in missing)
            raise Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"the hub does not hold the job's input(s) {names} (never uploaded, or evicted"
                " from its store since): upload them again (HubClient.put)",
            )
        return refs

    def _constraint(self, request: client_pb2.RunJobRequest) -> Constraint:
        """The workers the job may go to; raises Refusal if its name or labels are invalid.
        Job after job comes with one of a few constraints: each is checked and made once."""
        if len(request.labels) > MAX_LABELS:  # refused below, before anything is sorted
            return self._checked_constraint(request)
        key = (
            request.worker,
            tuple(sorted(request.labels.items())),
            request.spec.requirements.SerializeToString(deterministic=True),
        )
        constraint = self._constraints.get(key)
        if constraint is None:
            constraint = self._checked_constraint(request)
            if len(self._constraints) >= CONSTRAINTS_REMEMBERED:
                del self._constraints[next(iter(self._constraints))]  # the oldest
            self._constraints[key] = constraint
        return constraint

    def _checked_constraint(self, request: client_pb2.RunJobRequest) -> Constraint:
        try:
            if request.worker:
                check_name(request.worker)
            labels = check_labels(request.labels)
            compat.check_requirements(request.spec.requirements)
        except ValueError as exc:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        requirements = compat.Requirements.from_proto(request.spec.requirements)
        return Constraint.of(request.worker, labels, requirements)

    def _no_worker(self, constraint: Constraint) -> str:
        wanted = constraint.describe()
        if not wanted:
            return (
                f"no worker is connected to the hub at {self._address}; "
                f"start one with: giskard worker start -h HOST -p PORT"
            )
        names = [session.name for session in self._registry.sessions if session.takes_jobs]
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        return (
            f"no worker {wanted} is connected to the hub at {self._address}"
            f" (connected: {printable(shown) or 'none'}); start one with:"
            " giskard worker start --name NAME --label KEY=VALUE"
        )


def fleet_status(
    registry: WorkerRegistry, jobs: JobBoard, store: ArtifactStore
) -> client_pb2.ListWorkersReply:
    """The workers, the queue, the recent ended jobs and the store, as ListWorkers answers
    (the console shows the same)."""
    reply = client_pb2.ListWorkersReply(
        queued=jobs.queued,
        waiting_for_worker=jobs.waiting_for_worker,
        recent=jobs.recent,
        store=_store_status(store),
    )
    # The connected workers, then those away whose jobs wait for them to come back.
    listed = [(s, 0.0) for s in registry.sessions] + jobs.away
    for session, away_since in listed:
        # Stay well under the message limit however many workers there are.
        if reply.ByteSize() + session.info.ByteSize() > LIST_REPLY_MAX_BYTES:
            break
        reply.workers.append(
            client_pb2.ConnectedWorker(
                info=session.info,
                active=not away_since and registry.is_active(session),
                connected_at=session.connected_at,
                peer=session.peer,
                concurrency=session.concurrency,
                prefetch=session.prefetch,
                paused=session.paused,
                draining=session.draining,
                running=_running_jobs(session),
                away_since=away_since,
            )
        )
    return reply


def _store_status(store: ArtifactStore) -> client_pb2.ArtifactStoreStatus:
    return client_pb2.ArtifactStoreStatus(
        artifacts=store.count,
        size_bytes=store.size_bytes,
        max_bytes=store.max_bytes,
        pinned=store.pinned,
    )


def _stored(refs: list[common_pb2.ArtifactRef]) -> list[str]:
    """The BLAKE3 of the inputs a job reads from the store (the others travel inline)."""
    return [ref.blake3 for ref in refs if not ref.inline and ref.size]


def _forged_inline(refs: list[common_pb2.ArtifactRef]) -> common_pb2.ArtifactRef | None:
    """The first inline input whose bytes are not what its address says. Checked here, at the
    trust boundary: workers cache inputs by address, so an input under another's address
    would reach that other's jobs; past the hub, nobody hashes inputs again."""
    inline = [ref for ref in refs if ref.inline or not ref.size]  # those not in _stored
    return next((ref for ref in inline if not _matches(ref)), None)


def _matches(ref: common_pb2.ArtifactRef) -> bool:
    return len(ref.inline) == ref.size and digest_of([ref.inline])[0] == ref.blake3


def _running_jobs(session: WorkerSession) -> list[client_pb2.RunningJob]:
    waiting = session.waiting_jobs()
    return [
        client_pb2.RunningJob(
            job_id=job.job_id,
            kind=job.kind,
            started_at=job.sent_at,
            done=job.progress[0],
            total=job.progress[1],
            waiting=job.job_id in waiting,
        )
        for job in list(session.jobs.values())[:1000]
    ]
