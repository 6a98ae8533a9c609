"""Turns a job from the hub into result messages: fetch inputs, run user code off the event
loop, stream the encoded result back."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

from giskard import codec
from giskard.protocol import iter_chunks, sha256_of
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from giskard.worker import jobs
from giskard.worker.artifacts import ModelCache, fetch_artifact

logger = logging.getLogger(__name__)

Frames = list[bytes | memoryview]


class JobExecution:
    """Runs jobs; user code runs on `executor`, so the session's heartbeat never waits on it."""

    def __init__(
        self, executor: Executor, models: ModelCache, describe: Callable[[], dict]
    ) -> None:
        self._executor = executor
        self._models = models
        self._describe = describe
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    async def run(
        self,
        stub: worker_pb2_grpc.WorkerHubStub,
        job: worker_pb2.Job,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> AsyncIterator[worker_pb2.WorkerMessage]:
        """Output messages for `job`, ending with exactly one JobEnd."""
        kind = job.spec.WhichOneof("kind")
        logger.info("Job %s: %s", job.job_id[:8], kind)
        try:
            frames = await self._compute(stub, job.spec, metadata)
            result_sha, size = await self._in_executor(sha256_of, frames)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.info("Job %s failed: %s: %s", job.job_id[:8], type(exc).__name__, exc)
            failure = jobs.failure_from(exc)
            yield _end(job.job_id, failure=failure)
            return
        for chunk in iter_chunks(frames):
            yield worker_pb2.WorkerMessage(
                output=common_pb2.JobOutput(job_id=job.job_id, chunk=chunk)
            )
        result = common_pb2.ArtifactRef(sha256=result_sha, size=size)
        yield _end(job.job_id, success=common_pb2.JobSuccess(result=result))
        logger.info("Job %s done (%d bytes)", job.job_id[:8], size)

    async def _compute(
        self,
        stub: worker_pb2_grpc.WorkerHubStub,
        spec: common_pb2.JobSpec,
        metadata: tuple[tuple[str, str], ...],
    ) -> Frames:
        kind = spec.WhichOneof("kind")
        if kind == "info":
            return await self._in_executor(lambda: codec.encode(self._describe()))
        if kind == "predict":
            return await self._predict(stub, spec.predict, metadata)
        raise ValueError(f"this worker does not know jobs of kind {kind!r}")

    async def _predict(
        self,
        stub: worker_pb2_grpc.WorkerHubStub,
        spec: common_pb2.PredictJob,
        metadata: tuple[tuple[str, str], ...],
    ) -> Frames:
        # Holding the model here keeps it alive even if the cache evicts it meanwhile.
        model = self._models.get(spec.model.sha256)
        model_blob = None if model is not None else await fetch_artifact(stub, spec.model, metadata)
        data_blob = await fetch_artifact(stub, spec.data, metadata)
        return await self._in_executor(
            self._predict_sync, spec.model.sha256, model, model_blob, data_blob, spec.method
        )

    def _predict_sync(
        self,
        model_sha: str,
        model: Any,
        model_blob: bytearray | None,
        data_blob: bytearray,
        method: str,
    ) -> Frames:
        if model is None:
            assert model_blob is not None
            model = jobs.load_model(model_blob)
            self._models.put(model_sha, model, len(model_blob))
            logger.info("Loaded model %s (%d bytes)", model_sha[:12], len(model_blob))
        data = codec.decode(data_blob)
        return codec.encode(jobs.predict(model, data, method))

    @property
    def busy(self) -> bool:
        """Whether user code is running (or queued) on the executor."""
        return self._in_flight > 0

    async def _in_executor(self, function: Callable[..., Any], *args: Any) -> Any:
        with self._in_flight_lock:
            self._in_flight += 1
        future = self._executor.submit(function, *args)
        # On the executor's future, not asyncio's: counted until the code itself ends, even
        # when the job's task is cancelled first.
        future.add_done_callback(self._count_done)
        return await asyncio.wrap_future(future)

    def _count_done(self, _: object) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1


def _end(job_id: str, **outcome: Any) -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(end=common_pb2.JobEnd(job_id=job_id, **outcome))
