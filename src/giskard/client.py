"""The platform-side client: submit jobs to the hub's workers and see the workers.

from giskard.client import HubClient
with HubClient("localhost:40051") as hub:
    hub.workers()
    hub.predict(model, dataframe)
    hub.predict(model, dataframe, labels={"gpu": "a100"})  # only on a worker labelled so

A job goes to the most recently connected worker among those it may go to: every worker,
or the one named `worker=`, or those with all the `labels=` (or, on a hub started with
`--routing spread`, spread over them), that can load what it pickles (giskard.compat).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import cloudpickle
import grpc

from giskard import codec, compat, end_reasons, shared_memory
from giskard.address import parse_address
from giskard.channel import open_channel, uses_local_socket
from giskard.client_stream import JobStream
from giskard.credentials import resolve
from giskard.errors import (
    AuthenticationError,
    EncodingError,
    GiskardError,
    HubUnavailableError,
    JobTimeoutError,
    NoWorkerError,
    WorkerNotFoundError,
)
from giskard.job_handle import JobHandle, ProgressCallback
from giskard.labels import check_labels, check_name
from giskard.pickle_cache import PickleCache
from giskard.protocol import INLINE_MAX_BYTES, digest_of, iter_chunks
from giskard.rpc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    client_pb2,
    client_pb2_grpc,
    common_pb2,
    worker_pb2,
)
from giskard.rpc_errors import describe_rpc_error
from giskard.shared_upload import sealed_input
from giskard.tls import channel_security, explain_failure
from giskard.worker_info import info_from_proto

logger = logging.getLogger(__name__)

DEADLINE_MARGIN_S = 10.0
# Pickles whose requirements are remembered (by BLAKE3): scanning a pickle is not free.
REQUIREMENTS_REMEMBERED = 256
# Version differences already warned about: each (worker, difference) is said once.
DIFFERENCES_WARNED = 1024
# How a hub refuses an input in shared memory that it cannot open (another pid namespace)
# or, for a hub that knows no such uploads, finds without data: the input goes in chunks.
_SHARED_REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DATA_LOSS)


@dataclass(frozen=True)
class Stored:
    """A value uploaded to the hub by `HubClient.put` (or small enough to travel inline)."""

    ref: common_pb2.ArtifactRef
    pickled: bool
    # For a pickle: what loading it needs (a worker that cannot is not sent the job).
    requirements: compat.Requirements = compat.NOTHING

    @property
    def address(self) -> str:
        return self.ref.blake3

    @property
    def size(self) -> int:
        return self.ref.size


class HubClient:
    """A connection to a hub's client API. Thread-safe; close it, or use it as a context manager."""

    def __init__(
        self,
        address: str = "localhost:40051",
        *,
        api_key: str | None = None,
        api_key_file: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        insecure: bool = False,
    ) -> None:
        """`api_key` defaults to $GISKARD_API_KEY, then to the local admin key of a hub
        on this machine (see giskard.credentials). TLS is used to a non-loopback hub, or
        when `tls` or `ca_file` (a PEM of the hub's CA or certificate) asks for it; see
        giskard.tls for `insecure`."""
        self.address = parse_address(address)
        credentials = resolve(self.address.host, api_key=api_key, api_key_file=api_key_file)
        self._metadata = credentials.metadata()
        self._security = channel_security(
            self.address.host, tls=tls, ca_file=ca_file, insecure=insecure
        )
        self._local = uses_local_socket(credentials, self._security)
        self._channel = open_channel(self.address, credentials, self._security)
        self._stub = client_pb2_grpc.PlatformStub(self._channel)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._requirements: OrderedDict[str, compat.Requirements] = OrderedDict()
        self._warned: OrderedDict[compat.Difference, None] = OrderedDict()
        self._stream: JobStream | None = None  # opened by the first job
        self._pickles: PickleCache[Stored] = PickleCache()
        self._stream_lock = threading.Lock()

    def close(self) -> None:
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
        self._channel.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def workers(self) -> list[dict[str, Any]]:
        """The connected workers' info, the active one first; each has its `name` and
        `labels`, an `active` flag (it gets the jobs that ask for no worker or label),
        `paused` and `draining` flags (see `pause_worker`), its `concurrency` and the jobs it
        is `running`. A worker whose connection dropped while it ran jobs is listed too until
        it comes back or the hub gives up on them: `away_since` says since when (time.time()),
        None for a connected worker."""
        return self.status()["workers"]

    def status(self) -> dict[str, Any]:
        """`workers` (as in `workers()`); how many jobs are `queued` at the hub, waiting for a
        free worker slot, and how many are `waiting_for_worker` to connect
        (`wait_for_worker_s`); the `recent` jobs that ended (the last 100, the latest last),
        each with its `reason` (an EndReason); and its `store` of the jobs' inputs: how many
        `artifacts`, their `size_bytes`, its `max_bytes`, and how many jobs hold `pinned`."""
        reply = self._call(self._stub.ListWorkers, client_pb2.ListWorkersRequest())
        return status_from_reply(reply)

    def predict(
        self,
        model: Any,
        data: Any,
        method: str = "predict",
        *,
        wait_for_worker_s: float = 0.0,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Any:
        """`getattr(model, method)(data)`, computed by a worker of the hub.

        The worker stops the job after `timeout_s` (counted from its submission) and this
        raises JobTimeoutError. With `on_progress`, the rows are predicted in batches and
        `on_progress(rows_done, rows_total)` is called as they finish. With `worker` (a
        name) or `labels`, only a worker that has them runs it; when none is connected
        within `wait_for_worker_s`, this raises NoWorkerError. Only a worker that can load the
        model runs it (giskard.compat: the same Python minor, the distributions it refers to
        installed); when those connected cannot, this raises IncompatibleEnvironmentError at
        once."""
        return self.submit_predict(
            model,
            data,
            method,
            wait_for_worker_s=wait_for_worker_s,
            timeout_s=timeout_s,
            on_progress=on_progress,
            worker=worker,
            labels=labels,
        ).result()

    def submit_predict(
        self,
        model: Any,
        data: Any,
        method: str = "predict",
        *,
        wait_for_worker_s: float = 0.0,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> JobHandle:
        """Like `predict`, without waiting: a handle to the job's result, which can cancel it."""
        target = _target(worker, labels)
        code = self._code(model)
        data_ref = self._data(data)
        spec = common_pb2.JobSpec(
            predict=common_pb2.PredictJob(model=code.ref, data=data_ref, method=method)
        )
        _require(spec, [code])
        return self._submit(spec, wait_for_worker_s, timeout_s, on_progress, target)

    def call(
        self,
        function: Callable[..., Any],
        *args: Any,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """`function(*args, **kwargs)` run by a worker of the hub (as `predict` chooses it);
        its result must be data (None, bool, int, float, str, lists and dicts of those, numpy
        arrays, pandas DataFrames and Series), decoded here without pickle. The function may
        call `giskard.progress.report_progress(done, total)`, which reaches `on_progress`. To
        pass the function arguments named `timeout_s`, `on_progress`, `worker` or `labels`,
        use `submit_call`."""
        return self.submit(
            function,
            *args,
            timeout_s=timeout_s,
            on_progress=on_progress,
            worker=worker,
            labels=labels,
            **kwargs,
        ).result()

    def submit(
        self,
        function: Callable[..., Any],
        *args: Any,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Like `call`, without waiting: a handle to the job's result, which can cancel it."""
        return self.submit_call(
            function,
            args,
            kwargs,
            timeout_s=timeout_s,
            on_progress=on_progress,
            worker=worker,
            labels=labels,
        )

    def submit_call(
        self,
        function: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        wait_for_worker_s: float = 0.0,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> JobHandle:
        """`submit` with the arguments as a sequence and a dict. Arguments that are data
        (DataFrames, arrays, plain values) travel in the safe data format, the others with
        cloudpickle; big ones are uploaded once and cached by the worker."""
        target = _target(worker, labels)
        code = self._code(function)
        arguments = [self._stored(value) for value in args]
        named = {name: self._stored(value) for name, value in (kwargs or {}).items()}
        call = common_pb2.CallJob(
            function=code.ref,
            args=[_argument(stored) for stored in arguments],
            kwargs={name: _argument(stored) for name, stored in named.items()},
        )
        spec = common_pb2.JobSpec(call=call)
        _require(spec, [code, *arguments, *named.values()])
        return self._submit(spec, wait_for_worker_s, timeout_s, on_progress, target)

    def info(
        self,
        *,
        wait_for_worker_s: float = 0.0,
        timeout_s: float | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A worker's info (the active one's, or that of the one `worker` or `labels` ask
        for), freshly collected by the worker itself."""
        spec = common_pb2.JobSpec(info=common_pb2.InfoJob())
        target = _target(worker, labels)
        return self._submit(spec, wait_for_worker_s, timeout_s, None, target).result()

    def create_key(self, role: str, name: str = "") -> tuple[dict[str, Any], str]:
        """A new API key (admin only): its info, and the key itself, which is shown once."""
        created = self._call(
            self._admin.CreateKey, admin_pb2.CreateKeyRequest(role=role, name=name)
        )
        return _key_info(created.info), created.key

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's name, role, creation time and whether it is revoked (admin only)."""
        return [
            _key_info(k) for k in self._call(self._admin.ListKeys, admin_pb2.ListKeysRequest()).keys
        ]

    def revoke_key(self, name: str) -> dict[str, Any]:
        """Revoke a key; the hub closes what runs with it (admin only)."""
        return _key_info(self._call(self._admin.RevokeKey, admin_pb2.RevokeKeyRequest(name=name)))

    def pause_worker(self, worker: str) -> dict[str, Any]:
        """Stop sending jobs to a connected worker until `resume_worker` (admin only), even if
        it reconnects or restarts meanwhile. `worker` is its name, a prefix of its
        `worker_id` or its `pid@hostname`; returns its info."""
        return self._control_worker(worker, worker_pb2.Control.PAUSE)

    def resume_worker(self, worker: str) -> dict[str, Any]:
        """Send jobs to a paused worker again (admin only)."""
        return self._control_worker(worker, worker_pb2.Control.RESUME)

    def drain_worker(self, worker: str) -> dict[str, Any]:
        """Send a worker no more jobs; it finishes those it holds, then exits 0 and stays
        stopped (admin only)."""
        return self._control_worker(worker, worker_pb2.Control.DRAIN)

    def stop_worker(self, worker: str, force: bool = False) -> dict[str, Any]:
        """Make a worker exit now, as on SIGTERM: its running jobs get its drain grace to end
        (admin only). With `force`, they are cancelled at once (JobCancelledError)."""
        return self._control_worker(worker, worker_pb2.Control.STOP, force=force)

    def _control_worker(self, worker: str, action: int, force: bool = False) -> dict[str, Any]:
        request = admin_pb2.ControlWorkerRequest(worker=worker, action=action, force=force)
        try:
            reply = self._admin.ControlWorker(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise WorkerNotFoundError(exc.details()) from None  # type: ignore[attr-defined]
            raise self._error(exc) from None
        return info_from_proto(reply.worker)

    def put(self, value: Any) -> Stored:
        """Upload `value` once: the handle stands for it in `predict` (as the model or the
        data) and in `call` arguments, which then neither encode, hash nor upload it again,
        as Ray's `put` or Dask's `scatter`. Data (DataFrames, arrays, plain values) is stored
        in the safe data format, anything else with cloudpickle. The hub may evict it after a
        while unused (its store is bounded); a job naming it then fails: put it again."""
        return self._stored(value)

    def _stored(self, value: Any) -> Stored:
        if isinstance(value, Stored):
            return value
        try:
            return Stored(self._input(codec.encode(value)), pickled=False)
        except EncodingError:
            return self._pickled(value)

    def _pickled(self, value: Any) -> Stored:
        """`value` pickled, or as pickled last time if unchanged since (giskard.pickle_cache)
        and still held by the hub."""
        cached, state = self._pickles.lookup(value)
        if cached is not None and self._held(cached.ref):
            return cached
        stored = self._pickle(value)
        self._pickles.remember(value, state, stored)
        return stored

    def _held(self, ref: common_pb2.ArtifactRef) -> bool:
        """Whether a job may name this input: it travels inline, or the hub has it."""
        return bool(ref.inline) or not ref.size or not self._missing(ref)

    def _pickle(self, value: Any) -> Stored:
        pickled = cloudpickle.dumps(value)
        ref = self._input([pickled])
        requirements = self._requirements.get(ref.blake3)
        if requirements is None:
            requirements = compat.requirements_of(pickled)
            self._requirements[ref.blake3] = requirements
            if len(self._requirements) > REQUIREMENTS_REMEMBERED:
                self._requirements.popitem(last=False)
        self._requirements.move_to_end(ref.blake3)
        return Stored(ref, pickled=True, requirements=requirements)

    def _code(self, value: Any) -> Stored:
        if isinstance(value, Stored):
            if not value.pickled:
                raise ValueError("a model or function must be code; this stored value is data")
            return value
        return self._pickled(value)

    def _data(self, value: Any) -> common_pb2.ArtifactRef:
        if isinstance(value, Stored):
            if value.pickled:
                raise ValueError("predict takes data (a DataFrame, an array...); this is code")
            return value.ref
        return self._input(codec.encode(value))

    def _input(self, frames: list[bytes | memoryview]) -> common_pb2.ArtifactRef:
        """A reference to an input: inline if small, else uploaded unless the hub has it.
        Hashed first: an input the hub already holds (the same dataset for another model) then
        costs one read of its bytes, and no copy."""
        address, size = digest_of(frames)
        ref = common_pb2.ArtifactRef(blake3=address, size=size)
        if size <= INLINE_MAX_BYTES:
            ref.inline = b"".join(frames)
            return ref
        if not self._missing(ref):
            return ref
        if not (
            self._local and shared_memory.worth_sharing(size) and self._shared_upload(ref, frames)
        ):
            self._call(self._stub.UploadArtifact, _upload_messages(ref, frames))
        return ref

    def _shared_upload(self, ref: common_pb2.ArtifactRef, frames: list[bytes | memoryview]) -> bool:
        """Hand a big input to the hub on this machine in a sealed memfd, which the hub takes
        as it is; held until the hub answers (it has its own by then). False when it could not
        go so (no memfd here, a hub in another pid namespace or one that knows no shared
        uploads): then it goes in chunks."""
        try:
            blob = sealed_input(frames)
        except OSError as exc:  # out of memory or descriptors for memfds
            logger.debug("Uploading in chunks: no memfd for the input (%s)", exc)
            return False
        offer = client_pb2.Upload(ref=ref, shared_path=blob.path, shared_inode=blob.inode)
        try:
            self._stub.UploadArtifact(iter([offer]), metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() not in _SHARED_REFUSALS:  # type: ignore[attr-defined]
                raise self._error(exc) from None
            logger.debug(
                "Uploading in chunks: the hub did not take shared memory (%s)",
                exc.details(),  # type: ignore[attr-defined]
            )
            return False
        finally:
            blob.close()
        return True

    def _missing(self, ref: common_pb2.ArtifactRef) -> bool:
        """Whether the hub lacks the input."""
        missing = self._call(self._stub.MissingArtifacts, client_pb2.ArtifactList(artifacts=[ref]))
        return bool(missing.artifacts)

    def _submit(
        self,
        spec: common_pb2.JobSpec,
        wait_for_worker_s: float,
        timeout_s: float | None,
        on_progress: ProgressCallback | None,
        target: dict[str, Any] | None = None,
    ) -> JobHandle:
        """`target`: the workers the job may go to, from `_target`; None: any."""
        if timeout_s is not None:
            if timeout_s <= 0:
                raise ValueError("timeout_s must be positive")
            spec.timeout_s = timeout_s
        spec.progress = on_progress is not None
        # Ours, so that the handle can cancel the job before hearing from the hub.
        job_id = uuid.uuid4().hex
        request = client_pb2.RunJobRequest(
            spec=spec, wait_for_worker_s=wait_for_worker_s, job_id=job_id, **(target or {})
        )
        # The hub and the worker enforce timeout_s; this deadline only covers a hub that
        # stopped answering.
        deadline = None if timeout_s is None else wait_for_worker_s + timeout_s + DEADLINE_MARGIN_S
        stream = self._job_stream()
        if stream is None:  # an older hub: cancelling the call cancels the job
            events, ask_to_cancel = self._run_job(request, deadline), lambda: False
        else:
            events, ask_to_cancel = stream.submit(request, deadline), lambda: stream.cancel(job_id)
        handle = JobHandle(events, self._error, on_progress, self._warn_differences)
        handle.job_id = job_id
        handle.ask_to_cancel = ask_to_cancel
        return handle

    def _job_stream(self) -> JobStream | None:
        """The stream the jobs go on: opened on the first job, and again after it broke; None
        if the hub has none (an older hub: each job is a RunJob call)."""
        with self._stream_lock:
            if self._stream is not None and self._stream.unimplemented:
                return None
            if self._stream is None or self._stream.broken:
                self._stream = JobStream(
                    lambda requests: self._stub.Jobs(requests, metadata=self._metadata),
                    self._run_job,
                )
            return self._stream

    def _run_job(self, request: client_pb2.RunJobRequest, deadline_s: float | None) -> Any:
        return self._stub.RunJob(request, metadata=self._metadata, timeout=deadline_s)

    def _warn_differences(self, differences: list[compat.Difference]) -> None:
        """One warning per (worker, difference) a job ran with: a version difference is
        allowed, but may change what the model does."""
        for diff in differences:
            if diff in self._warned:
                continue
            self._warned[diff] = None
            if len(self._warned) > DIFFERENCES_WARNED:
                self._warned.popitem(last=False)
            logger.warning(
                "A job ran on a worker with other versions than it was pickled with: %s", diff
            )

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> GiskardError:
        code = exc.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return NoWorkerError(exc.details())  # type: ignore[attr-defined]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return JobTimeoutError(
                f"no result from the hub at {self.address} in time", remote_type="JobTimeout"
            )
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return AuthenticationError(f"the hub at {self.address} refused: {exc.details()}")  # type: ignore[attr-defined]
        if code == grpc.StatusCode.UNAVAILABLE:
            host, port = self.address.host, self.address.port
            reason = explain_failure(
                describe_rpc_error(exc), host, port, self._security, local_socket=self._local
            )
            return HubUnavailableError(f"cannot reach the hub at {self.address}: {reason}")
        return GiskardError(f"the hub at {self.address} answered {code.name}: {exc.details()}")  # type: ignore[attr-defined]


def _target(worker: str | None, labels: Mapping[str, str] | None) -> dict[str, Any]:
    """The RunJobRequest fields for the workers a job may go to: the one of that name (if
    any), with those labels. Checked here, before anything is uploaded (ValueError)."""
    return {
        "worker": "" if worker is None else check_name(worker),
        "labels": check_labels(labels or {}),
    }


def _argument(stored: Stored) -> common_pb2.Argument:
    return common_pb2.Argument(value=stored.ref, pickled=stored.pickled)


def _require(spec: common_pb2.JobSpec, inputs: Sequence[Stored]) -> None:
    """Record in `spec` what loading its pickled inputs needs."""
    requirements = compat.merged(stored.requirements for stored in inputs)
    if requirements:
        spec.requirements.CopyFrom(requirements.to_proto())


def _upload_messages(ref: common_pb2.ArtifactRef, frames: list[bytes | memoryview]) -> Any:
    # The first message announces the artifact, even an empty one.
    yield client_pb2.Upload(ref=ref)
    for chunk in iter_chunks(frames):
        yield client_pb2.Upload(data=chunk)


def status_from_reply(reply: client_pb2.ListWorkersReply) -> dict[str, Any]:
    """A ListWorkers reply as the plain values `HubClient.status` returns."""
    workers = [
        {
            **info_from_proto(worker.info),
            "active": worker.active,
            "connected_at": worker.connected_at,
            "peer": worker.peer,
            "concurrency": worker.concurrency,
            "prefetch": worker.prefetch,
            "paused": worker.paused,
            "draining": worker.draining,
            "away_since": worker.away_since or None,
            "running": [
                {
                    "job_id": job.job_id,
                    "kind": job.kind,
                    "started_at": job.started_at,
                    "done": job.done,
                    "total": job.total,
                    "waiting": job.waiting,
                }
                for job in worker.running
            ],
        }
        for worker in reply.workers
    ]
    recent = [_ended_job(job) for job in reply.recent]
    store = {
        "artifacts": reply.store.artifacts,
        "size_bytes": reply.store.size_bytes,
        "max_bytes": reply.store.max_bytes,
        "pinned": reply.store.pinned,
    }
    return {
        "workers": workers,
        "queued": reply.queued,
        "waiting_for_worker": reply.waiting_for_worker,
        "recent": recent,
        "store": store,
    }


def _ended_job(job: client_pb2.EndedJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "worker_id": job.worker_id,
        "submitted_at": job.submitted_at,
        "ended_at": job.ended_at,
        "duration_s": max(job.ended_at - job.submitted_at, 0.0),
        "reason": end_reasons.from_proto(job.reason),
        "detail": job.detail,
    }


def _key_info(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "role": info.role,
        "created_at": info.created_at,
        "revoked": info.revoked,
    }
