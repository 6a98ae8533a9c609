"""The client's one Jobs stream to the hub: every job's submission, cancel and events travel
on it, several per message each way, instead of one call per job."""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from giskard.protocol import JOB_WINDOW_BYTES
from giskard.rpc.v1 import client_pb2

logger = logging.getLogger(__name__)

# A message up carries what waits to be sent, up to this many items or bytes: a lone
# submission goes at once, those made meanwhile go together.
REQUEST_MAX_ITEMS = 256
REQUEST_MAX_BYTES = 1024 * 1024

# What the requests' queue holds: ("submit", RunJobRequest), ("cancel", job_id), ("abandon",
# job_id), ("taken", (job_id, bytes)), or None: the client is done.
_Item = tuple[str, Any] | None
OpenCall = Callable[[Iterator[client_pb2.JobsRequest]], Any]
# Runs a job as its own RunJob call (request, deadline in seconds): for a hub without Jobs.
RunJob = Callable[[client_pb2.RunJobRequest, float | None], Any]


class StreamError(grpc.RpcError):
    """A job's call-like failure that did not come from gRPC itself: the hub refused the job,
    or the client's own deadline passed. Read as a failed call's status (`code`, `details`)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _Sink:
    """Where the stream's reader puts one job's events, for its StreamedJob to read."""

    def __init__(self, request: client_pb2.RunJobRequest, deadline_s: float | None) -> None:
        self.request, self.deadline_s = request, deadline_s
        # Its events; a RunJob call in their place if the hub has no Jobs stream.
        self.events: queue.SimpleQueue[client_pb2.JobEvent | grpc.RpcError | _Call] = (
            queue.SimpleQueue()
        )
        self.over = False  # its last event (or failure) came
        self.call: Any = None

    def deliver(self, event: client_pb2.JobEvent | grpc.RpcError, last: bool) -> None:
        """An event of this job, or the failure that ends it."""
        self.over = self.over or last
        self.events.put(event)

    def run_instead(self, call: Any) -> None:
        """The job goes as its own RunJob call (the hub has no Jobs stream): read that."""
        self.call = call
        self.events.put(_Call(call))


class _Call:
    def __init__(self, call: Any) -> None:
        self.call = call


class StreamedJob:
    """One job's events on the stream, read as a RunJob call's: iterate it (it raises a
    grpc.RpcError if the job failed as a call), `done()`, `cancel()`. Dropped before its end,
    the job is cancelled, as a RunJob call is."""

    def __init__(self, stream: JobStream, job_id: str, sink: _Sink) -> None:
        self._stream, self.job_id, self._sink = stream, job_id, sink
        deadline_s = sink.deadline_s
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self._taken = 0  # bytes of its result taken since the hub was last told

    def __iter__(self) -> Iterator[client_pb2.JobEvent]:
        while True:
            event = self._next()
            if isinstance(event, grpc.RpcError):
                raise event
            if isinstance(event, _Call):
                yield from event.call
                return
            yield event
            if event.WhichOneof("kind") == "output":
                self._took(len(event.output.chunk))

    def done(self) -> bool:
        call = self._sink.call
        return self._sink.over if call is None else call.done()

    def cancel(self) -> None:
        """Stop waiting for the job (its stream is gone, or the hub did not take the cancel)."""
        if self._sink.call is not None:
            self._sink.call.cancel()
            return
        self._stream.forget(self.job_id)
        self._sink.deliver(StreamError(grpc.StatusCode.CANCELLED, "cancelled by the client"), True)

    def _next(self) -> client_pb2.JobEvent | grpc.RpcError | _Call:
        timeout = None if self._deadline is None else max(self._deadline - time.monotonic(), 0)
        try:
            return self._sink.events.get(timeout=timeout)
        except queue.Empty:
            # The hub enforces the job's timeout; this one only covers a hub that stopped
            # answering, as a RunJob call's deadline did. The job is withdrawn, as on cancel.
            self._stream.cancel(self.job_id)
            self._stream.forget(self.job_id)
            self._sink.over = True
            return StreamError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

    def _took(self, size: int) -> None:
        self._taken += size
        if self._taken >= JOB_WINDOW_BYTES // 2 and not self._sink.over:
            self._stream.took(self.job_id, self._taken)
            self._taken = 0


class JobStream:
    """One Jobs call and its reader thread, which hands each event to its job. When the call
    breaks, each of its jobs fails with the call's error; `broken` then says to open another.
    A hub without Jobs (an older one) has them run by `run_job` instead, and `unimplemented`
    says to do so from now on."""

    def __init__(self, open_call: OpenCall, run_job: RunJob) -> None:
        self._run_job = run_job
        self.unimplemented = False
        self._lock = threading.Lock()
        self._jobs: dict[str, _Sink] = {}
        self._requests: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._error: grpc.RpcError | None = None
        self._call = open_call(self._messages())
        self._reader = threading.Thread(target=self._read, name="giskard-jobs", daemon=True)
        self._reader.start()

    @property
    def broken(self) -> bool:
        return self._error is not None

    def submit(self, request: client_pb2.RunJobRequest, deadline_s: float | None) -> StreamedJob:
        """Send the job; its events come to the returned StreamedJob."""
        sink = _Sink(request, deadline_s)
        with self._lock:
            error = self._error
            if error is None:
                # Known before it is sent, so that none of its events can come unclaimed.
                self._jobs[request.job_id] = sink
                self._requests.put(("submit", request))
        if error is not None:
            self._end(sink, error)
        job = StreamedJob(self, request.job_id, sink)
        weakref.finalize(job, _abandon, self._requests, sink, request.job_id)
        return job

    def cancel(self, job_id: str) -> bool:
        """Ask the hub to cancel the job, whose end then comes as any other; False if the
        stream is gone (the job failed with it)."""
        with self._lock:
            if self._error is not None or job_id not in self._jobs:
                return False
            self._requests.put(("cancel", job_id))
            return True

    def took(self, job_id: str, size: int) -> None:
        """The job's reader took `size` more bytes of its result: the hub may send as many."""
        self._requests.put(("taken", (job_id, size)))

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()

    def _messages(self) -> Iterator[client_pb2.JobsRequest]:
        """The messages up, run by gRPC: each holds what waited when it was made."""
        while (item := self._requests.get()) is not None:
            message = client_pb2.JobsRequest()
            size = self._add(message, item)
            while size < REQUEST_MAX_BYTES and _count(message) < REQUEST_MAX_ITEMS:
                try:
                    item = self._requests.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    break
                size += self._add(message, item)
            if _count(message):
                yield message
            if item is None:
                return

    def _add(self, message: client_pb2.JobsRequest, item: tuple[str, Any]) -> int:
        """Add the item to the message; its size in bytes, about."""
        kind, value = item
        if kind == "submit":
            message.submit.append(value)
            return value.ByteSize()
        if kind == "abandon":  # its handle is gone: cancel it unless it ended
            with self._lock:
                if self._jobs.pop(value, None) is None:
                    return 0
            message.cancel.append(value)
        elif kind == "cancel":
            message.cancel.append(value)
        else:
            message.taken.add(job_id=value[0], bytes=value[1])
        return 64

    def _read(self) -> None:
        try:
            for reply in self._call:
                for event in reply.events:
                    self._dispatch(event)
            error: grpc.RpcError = StreamError(
                grpc.StatusCode.UNAVAILABLE, "the hub ended the jobs' stream"
            )
        except grpc.RpcError as exc:
            error = exc
        except Exception as exc:  # a bug of ours: the jobs must fail, not wait forever
            logger.exception("the jobs' stream reader failed")
            error = StreamError(grpc.StatusCode.INTERNAL, f"the jobs' stream failed: {exc!r}")
            self._call.cancel()
        self._fail_all(error)

    def _dispatch(self, event: client_pb2.JobEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind is None:  # a kind of event this client does not know (a newer hub's)
            return
        job_id = getattr(event, kind).job_id
        last = kind in ("end", "refused")
        with self._lock:
            sink = self._jobs.pop(job_id, None) if last else self._jobs.get(job_id)
        if sink is None:
            return  # a job the client stopped waiting for
        if kind == "refused":
            sink.deliver(_refusal(event.refused), True)
        else:
            sink.deliver(event, last)

    def _fail_all(self, error: grpc.RpcError) -> None:
        self.unimplemented = error.code() == grpc.StatusCode.UNIMPLEMENTED
        with self._lock:
            self._error = error
            jobs, self._jobs = list(self._jobs.values()), {}
        self._requests.put(None)  # ends the messages up, if gRPC still reads them
        if jobs and not self.unimplemented:
            logger.debug("the jobs' stream broke: %d job(s) fail with it", len(jobs))
        for sink in jobs:
            self._end(sink, error)

    def _end(self, sink: _Sink, error: grpc.RpcError) -> None:
        """The stream is gone: the job fails with it, or goes as a RunJob call to a hub that
        has no Jobs stream."""
        if self.unimplemented:
            sink.run_instead(self._run_job(sink.request, sink.deadline_s))
        else:
            sink.deliver(error, True)


def _refusal(refused: client_pb2.JobRefused) -> StreamError:
    codes = {code.value[0]: code for code in grpc.StatusCode}
    return StreamError(codes.get(refused.code, grpc.StatusCode.UNKNOWN), refused.message)


def _abandon(requests: queue.SimpleQueue[_Item], sink: _Sink, job_id: str) -> None:
    """Its StreamedJob is gone: cancel the job unless it ended. Run by a finalizer, so it
    takes none of our locks (SimpleQueue.put is safe there)."""
    if not sink.over:
        requests.put(("abandon", job_id))


def _count(message: client_pb2.JobsRequest) -> int:
    return len(message.submit) + len(message.cancel) + len(message.taken)
