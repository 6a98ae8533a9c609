"""Runs the hub's jobs: user code in an executor process, results streamed back.

The worker process only moves bytes: it streams a job's inputs from the hub into an
executor (none it already holds) and the executor's result back to the hub. User code never
runs here, so the session's heartbeats never wait on it, and a job that must stop (timeout,
cancel) or that breaks its process (segfault, `os._exit`, memory) costs only its executor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from giskard import compat, end_reasons
from giskard.codec_plain import encode_plain
from giskard.errors import EndReason, ProtocolError
from giskard.job_inputs import job_inputs
from giskard.protocol import CHUNK_SIZE, INLINE_MAX_BYTES, digest_of
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from giskard.worker.executor import ExecutorProcess, describe_exit
from giskard.worker.input_transfer import Delivery, send_inputs, shares
from giskard.worker.pipe import PipeClosed
from giskard.worker.pool import ExecutorPool

logger = logging.getLogger(__name__)

Emit = Callable[[worker_pb2.WorkerMessage], Awaitable[None]]
Metadata = tuple[tuple[str, str], ...]
# The current session's stub and metadata, once there is one (see job_link.JobLink).
HubSession = Callable[[], Awaitable[tuple[worker_pb2_grpc.WorkerHubStub, Metadata]]]
# The codes of a call cut by the connection dropping (or by its channel closing with it).
DROPPED_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class ConnectionDropped(Exception):
    """The connection to the hub dropped under a call a job made beside the session."""


@dataclass(frozen=True, eq=False)
class _Input:
    ref: common_pb2.ArtifactRef
    form: str  # "pickle" or "data"


@dataclass(eq=False)
class _RunningJob:
    job_id: str
    task: asyncio.Task[Any]
    reason: str | None = None  # why it was stopped: "timeout", "cancel", "drained" or "lost"
    why: str = ""  # who stopped the worker (drained), or what the connection did (lost)
    executor: ExecutorProcess | None = None
    waiting: bool = False  # for an executor: it has not started
    logs: bytes = b""  # the last of what it wrote, once its executor is done with it

    def stop(self, reason: str) -> None:
        if self.reason is not None or self.task.done():
            return
        self.reason = reason
        if self.executor is not None:
            self.executor.kill()
        self.task.cancel()


class JobExecution:
    """Runs jobs on a pool of executors; `cancel` stops one."""

    def __init__(self, pool: ExecutorPool, describe: Callable[[], dict]) -> None:
        self._pool = pool
        self._describe = describe
        self._running: dict[str, _RunningJob] = {}

    @property
    def running(self) -> int:
        """Jobs whose code runs now (not those waiting for a slot)."""
        return sum(job.executor is not None for job in self._running.values())

    @property
    def waiting(self) -> list[str]:
        """The ids of the jobs waiting for an executor."""
        return [job.job_id for job in self._running.values() if job.waiting]

    def cancel(self, job_id: str) -> None:
        """Stop a job now (its executor is killed); it ends as cancelled."""
        job = self._running.get(job_id)
        if job is not None:
            logger.info("Job %s: cancelled", job_id[:8])
            job.stop("cancel")

    def drain(self, job_id: str, why: str) -> None:
        """Stop a job now because the worker stops (`why` says who stopped it); it ends as
        drained."""
        self._stop_for(job_id, "drained", why)

    def lose(self, job_id: str, why: str) -> None:
        """Stop a job now because its hub can no longer have its end (`why` says what the
        connection did); it ends as worker lost."""
        self._stop_for(job_id, "lost", why)

    def _stop_for(self, job_id: str, reason: str, why: str) -> None:
        job = self._running.get(job_id)
        if job is not None:
            job.why = why
            job.stop(reason)

    async def run(self, job: worker_pb2.Job, hub: HubSession, emit: Emit) -> None:
        """Run `job`, emitting its output, progress and exactly one JobEnd."""
        task = asyncio.current_task()
        assert task is not None
        running = _RunningJob(job.job_id, task)
        self._running[job.job_id] = running
        timeout_s = job.spec.timeout_s
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout_s, running.stop, "timeout") if timeout_s > 0 else None
        logger.debug("Job %s: %s", job.job_id[:8], job.spec.WhichOneof("kind"))
        try:
            await self._run(running, job, hub, emit)
        except asyncio.CancelledError:
            if running.reason is None:
                raise
            reason, failure = _stopped(running.reason, running.why)
            logger.info("Job %s ended (%s): %s", job.job_id[:8], reason, failure.message)
            await emit(job_end(job.job_id, reason, failure=failure, logs=running.logs))
        except Exception as exc:  # the worker's own trouble (hub gone mid-fetch, ...)
            logger.info("Job %s failed: %s: %s", job.job_id[:8], type(exc).__name__, exc)
            failure = common_pb2.JobFailure(type=type(exc).__name__, message=str(exc))
            end = job_end(job.job_id, EndReason.WORKER_LOST, failure=failure, logs=running.logs)
            await emit(end)
        finally:
            if timer is not None:
                timer.cancel()
            self._running.pop(job.job_id, None)

    async def _run(
        self,
        running: _RunningJob,
        job: worker_pb2.Job,
        hub: HubSession,
        emit: Emit,
    ) -> None:
        spec = job.spec
        kind = spec.WhichOneof("kind")
        if kind == "info":
            result = await asyncio.to_thread(lambda: encode_plain(self._describe()))
            await _emit_result(job.job_id, [result], emit)
            return
        if kind == "predict":
            header = {"kind": "predict", "method": spec.predict.method}
        elif kind == "call":
            header = {"kind": "call", "kwargs": sorted(spec.call.kwargs)}
        else:
            raise ProtocolError(f"this worker does not know jobs of kind {kind!r}")
        inputs = [_Input(ref, form) for ref, form in job_inputs(spec)]
        header |= {"t": "job", "id": job.job_id, "progress": spec.progress}
        await self._in_executor(running, header, inputs, spec.requirements, _HubCalls(hub), emit)

    async def _in_executor(
        self,
        running: _RunningJob,
        header: dict[str, Any],
        inputs: list[_Input],
        requirements: common_pb2.Requirements,
        hub: _HubCalls,
        emit: Emit,
    ) -> None:
        running.waiting = True
        executor = await self._pool.acquire([i.ref.blake3 for i in inputs])
        running.waiting = False
        running.executor = executor
        executor.output.job_started(running.job_id)
        broken = True
        end: worker_pb2.WorkerMessage
        delivery = Delivery(executor.pid)
        try:
            to_send = _unsent(inputs, executor.cached)
            # `in` compares _Inputs by identity: of an input named twice, one is sent.
            header["inputs"] = [_announced(i, i in to_send) for i in inputs]
            if any(i.form == "pickle" for i in to_send):  # what loading them needs, if it fails
                header["requirements"] = compat.Requirements.from_proto(requirements).to_plain()
            await executor.send(header)
            await send_inputs(executor, [i.ref for i in to_send], hub.chunks, delivery)
            end, answer = await _relay_answer(executor, running.job_id, emit, hub)
            used = {i.ref.blake3: i.ref.size for i in inputs}
            executor.cache.job_ended(used, answer, time.time())
            broken = bool(answer.get("replace"))
            logger.info(
                "Job %s: %s %s; %d of %d input(s) cached, %s",
                running.job_id[:8],
                header["kind"],
                _outcome_text(answer),
                len(inputs) - len(to_send),
                len(inputs),
                delivery.describe(),
            )
        except PipeClosed:
            if running.reason is not None:
                raise asyncio.CancelledError from None  # stopped on purpose: see run()
            end = await _crashed(executor, running.job_id)
        finally:
            # The executor has answered (or is gone): it holds its own mappings of them now.
            delivery.release()
            # Its answer came after what it printed: the pipes hold the last of it now.
            running.logs = executor.output.job_ended()
            running.executor = None
            self._pool.release(executor, broken=broken)
        end.end.logs = running.logs
        await emit(end)


class _HubCalls:
    """The calls a job makes to the hub beside the session: inputs that did not come within
    the job, and results too big for its end. Each goes on the session current when it
    starts: a job outlives the session that brought it."""

    def __init__(self, session: HubSession) -> None:
        self._session = session

    async def chunks(
        self, ref: common_pb2.ArtifactRef, shared_memory: bool = False
    ) -> AsyncIterator[worker_pb2.Chunk]:
        """The input's chunks; with `shared_memory`, the hub may answer where to map it."""
        stub, metadata = await self._session()
        request = worker_pb2.FetchArtifactRequest(blake3=ref.blake3, shared_memory=shared_memory)
        try:
            async for chunk in stub.FetchArtifact(request, metadata=metadata):
                yield chunk
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            raise _dropped(exc, "fetched its input") from None

    async def send_result(
        self, executor: ExecutorProcess, job_id: str, first: bytes, size: int
    ) -> bool:
        """Relay the executor's result chunks to the hub; False if the hub stopped taking
        them (the client left), leaving the rest unread in the executor's pipe."""
        received = len(first)

        async def chunks() -> AsyncIterator[worker_pb2.ResultChunk]:
            nonlocal received
            yield worker_pb2.ResultChunk(job_id=job_id, data=first)
            while received < size:
                _, chunk = await executor.receive()
                received += len(chunk)
                yield worker_pb2.ResultChunk(data=chunk)

        stub, metadata = await self._session()
        try:
            await stub.SendResult(chunks(), metadata=metadata)
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            raise _dropped(exc, "sent its result") from None
        return received >= size


def _dropped(exc: grpc.aio.AioRpcError | asyncio.CancelledError, doing: str) -> BaseException:
    """ConnectionDropped if the call failed because the connection dropped (the job cannot
    resume the stream: it fails as worker_lost, saying so), else `exc`. A call is cancelled
    too when its session's channel closes: that is no cancel of the job itself."""
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is None or task.cancelling():
            return exc  # the job is being stopped
    elif exc.code() not in DROPPED_CODES:
        return exc
    return ConnectionDropped(f"the connection to the hub dropped while the job {doing}")


def _announced(item: _Input, send: bool) -> dict[str, Any]:
    """How the job's header names an input to the executor (`send`: it follows the header,
    through the pipe or, if `shared`, through shared memory)."""
    announced = {"address": item.ref.blake3, "size": item.ref.size, "form": item.form, "send": send}
    if send and shares(item.ref):
        announced["shared"] = True
    return announced


def _unsent(inputs: list[_Input], cached: set[str]) -> list[_Input]:
    """The inputs to send: those the executor lacks, each once."""
    seen = set(cached)
    to_send = []
    for item in inputs:
        if item.ref.blake3 not in seen:
            seen.add(item.ref.blake3)
            to_send.append(item)
    return to_send


async def _crashed(executor: ExecutorProcess, job_id: str) -> worker_pb2.WorkerMessage:
    """The end of a job whose executor died under it."""
    code = await executor.exit_code()
    how = "still running" if code is None else describe_exit(code)
    logger.warning("Job %s: the executor died (%s)", job_id[:8], how)
    failure = common_pb2.JobFailure(
        type="ExecutorCrashed",
        message=f"the process running the job died ({how}); the worker replaced it",
        signal=-code if code is not None and code < 0 else 0,
    )
    return job_end(job_id, EndReason.EXECUTOR_CRASHED, failure=failure)


async def _relay_answer(
    executor: ExecutorProcess, job_id: str, emit: Emit, hub: _HubCalls
) -> tuple[worker_pb2.WorkerMessage, dict[str, Any]]:
    """Pass the executor's progress on to the hub; returns the job's end (not sent yet) and
    the executor's answer."""
    while True:
        header, payload = await executor.receive()
        kind = header.get("t")
        if kind == "progress":
            progress = common_pb2.JobProgress(
                job_id=job_id, done=header["done"], total=header["total"]
            )
            await emit(worker_pb2.WorkerMessage(progress=progress))
            continue
        if kind == "failure":
            fields = {k: header.get(k, "") for k in ("type", "message", "traceback")}
            reason = EndReason(header.get("reason", EndReason.MODEL_ERROR))
            diffs = [common_pb2.EnvironmentDifference(**d) for d in header.get("differences", [])]
            failure = common_pb2.JobFailure(**fields, differences=diffs)
            return job_end(job_id, reason, failure=failure), header
        if kind != "result":
            raise PipeClosed(f"the executor sent {kind!r}: the stream is out of step")
        result = common_pb2.ArtifactRef(blake3=header["address"], size=header["size"])
        if len(payload) == result.size <= INLINE_MAX_BYTES:
            result.inline = payload  # one message instead of two: small results are common
        elif not await hub.send_result(executor, job_id, payload, result.size):
            left = common_pb2.JobFailure(type="JobCancelled", message="the client left")
            # The rest of the result is still in the pipe: the executor is replaced.
            return job_end(job_id, EndReason.CANCELLED, failure=left), header | {"replace": True}
        return job_end(
            job_id, EndReason.SUCCEEDED, success=common_pb2.JobSuccess(result=result)
        ), header


def _outcome_text(answer: dict[str, Any]) -> str:
    if answer.get("t") == "result":
        return f"done ({answer['size']} B result)"
    reason = answer.get("reason", EndReason.MODEL_ERROR)
    return f"failed ({reason}): {answer.get('type')}: {answer.get('message')}"


async def _emit_result(job_id: str, frames: list[bytes], emit: Emit) -> None:
    address, size = digest_of(frames)
    data = b"".join(frames)
    result = common_pb2.ArtifactRef(blake3=address, size=size)
    if size <= INLINE_MAX_BYTES:
        result.inline = data
    else:
        for start in range(0, len(data), CHUNK_SIZE):
            await emit(_output(job_id, data[start : start + CHUNK_SIZE]))
    await emit(job_end(job_id, EndReason.SUCCEEDED, success=common_pb2.JobSuccess(result=result)))


def _stopped(reason: str, why: str) -> tuple[EndReason, common_pb2.JobFailure]:
    if reason == "timeout":
        message = "the job reached its timeout and was stopped"
        return EndReason.TIMEOUT, common_pb2.JobFailure(type="JobTimeout", message=message)
    if reason == "drained":
        message = f"{why} before the job could finish"
        return EndReason.DRAINED, common_pb2.JobFailure(type="WorkerStopped", message=message)
    if reason == "lost":
        return EndReason.WORKER_LOST, common_pb2.JobFailure(type="WorkerLost", message=why)
    failure = common_pb2.JobFailure(type="JobCancelled", message="the job was cancelled")
    return EndReason.CANCELLED, failure


def _output(job_id: str, chunk: bytes) -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(output=common_pb2.JobOutput(job_id=job_id, chunk=chunk))


def job_end(job_id: str, reason: EndReason, **fields: Any) -> worker_pb2.WorkerMessage:
    """A job's end, for `reason`; `fields` are its outcome and its logs."""
    end = common_pb2.JobEnd(job_id=job_id, reason=end_reasons.to_proto(reason), **fields)
    return worker_pb2.WorkerMessage(end=end)
