"""A submitted job, as the client sees it: wait for its result, follow its progress, cancel it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from giskard import codec, compat, end_reasons
from giskard.errors import (
    DecodingError,
    DrainedError,
    EndReason,
    ExecutorCrashedError,
    GiskardError,
    IncompatibleEnvironmentError,
    JobCancelledError,
    JobError,
    JobTimeoutError,
    MemoryLimitError,
    NoWorkerError,
    ProtocolError,
    WorkerLostError,
)
from giskard.protocol import digest_of
from giskard.rpc.v1 import common_pb2

ProgressCallback = Callable[[int, int], None]
ErrorMapper = Callable[[grpc.RpcError], GiskardError]
DifferencesCallback = Callable[[list[compat.Difference]], None]

# The exception a failed job raises follows from its end reason alone (those that carry
# more than the failure's fields are made in `_error`).
_ERRORS: dict[EndReason | None, type[JobError]] = {
    cls.reason: cls
    for cls in (JobTimeoutError, JobCancelledError, WorkerLostError, MemoryLimitError, DrainedError)
}


class JobHandle:
    """Like a `concurrent.futures.Future` of the job's result.

    The result is read when `result()` is called, in the calling thread, which also runs
    `on_progress(done, total)` as the worker reports progress (with a `timeout`, a thread of
    the handle's reads it, and runs `on_progress`). `cancel()` may be called from
    any thread: the hub tells the worker, which kills the job's process; the job's end then
    comes as any other, with what the job wrote until then. Once it ended,
    `differences` lists how the worker that ran it differs from where its pickles were made,
    in ways that let it load them (other versions; giskard.compat).
    """

    def __init__(
        self,
        events: Any,
        errors: ErrorMapper,
        on_progress: ProgressCallback | None = None,
        on_differences: DifferencesCallback | None = None,
    ) -> None:
        # The job's events (a RunJob call, or its part of the client's stream): an iterator of
        # JobEvent with `done()` and `cancel()`, raising grpc.RpcError as a failed call does.
        self._events = events
        self._errors = errors
        self._on_progress = on_progress
        self._on_differences = on_differences
        self.differences: list[compat.Difference] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None  # reads the outcome for timed waits
        self._reader_lock = threading.Lock()
        self._cancelled = False
        self._outcome: tuple[bool, Any] | None = None  # (succeeded, value or exception)
        self._logs = ""
        self.job_id = ""
        self.worker_id = ""
        # Asks the hub to cancel the job and send its end; False if it did not take it (then
        # `cancel` stops waiting for its events, and the job's end is not heard).
        self.ask_to_cancel: Callable[[], bool] = lambda: False

    def result(self, timeout: float | None = None) -> Any:
        """The job's result; raises the JobError its end reason says (JobTimeoutError,
        JobCancelledError, WorkerLostError, ...) if it failed, or TimeoutError if it has not
        ended within `timeout` seconds (the job goes on: ask again, or cancel it)."""
        succeeded, value = self._outcome_within(timeout)
        if succeeded:
            return value
        raise value

    def logs(self, timeout: float | None = None) -> str:
        """The last MiB of what the job wrote (stdout, stderr, `logging`), once it ended (this
        waits for it, as `result()` does); failed jobs also have it in `JobError.logs`."""
        self._outcome_within(timeout)
        return self._logs

    def _outcome_within(self, timeout: float | None) -> tuple[bool, Any]:
        if timeout is None or self._outcome is not None:
            return self._read_outcome()
        with self._reader_lock:
            if self._reader is None:
                self._reader = threading.Thread(
                    target=self._read_outcome, name=f"giskard-job-{self.job_id[:8]}", daemon=True
                )
                self._reader.start()
            reader = self._reader
        reader.join(timeout)
        if self._outcome is None:
            raise TimeoutError(f"the job did not end within {timeout:g} s")
        return self._outcome

    def _read_outcome(self) -> tuple[bool, Any]:
        with self._lock:
            if self._outcome is None:
                self._outcome = self._wait()
            return self._outcome

    def cancel(self) -> bool:
        """Cancel the job unless it has ended; True if it was cancelled."""
        if self._outcome is not None or self._events.done():
            return False
        self._cancelled = True
        if not self.ask_to_cancel():
            self._events.cancel()
        return True

    def cancelled(self) -> bool:
        """Whether the job was cancelled: False if its result came first, even when `cancel`
        raced with it."""
        succeeded = self._outcome is not None and self._outcome[0]
        return self._cancelled and not succeeded

    def done(self) -> bool:
        """Whether the job has ended. A result over 64 KiB that `result()` has not read yet
        keeps its stream open, so this may stay False until then."""
        return self._outcome is not None or self._events.done()

    def _wait(self) -> tuple[bool, Any]:
        result = bytearray()
        try:
            for event in self._events:
                kind = event.WhichOneof("kind")
                if kind == "output":
                    result += event.output.chunk
                elif kind == "progress":
                    if self._on_progress is not None:
                        self._on_progress(event.progress.done, event.progress.total)
                elif kind == "started":
                    self.job_id, self.worker_id = event.started.job_id, event.started.worker_id
                elif kind == "queued":
                    self.job_id = event.queued.job_id
                elif kind == "end":
                    self._logs = event.end.logs.decode(errors="replace")
                    self._note_differences(event.end)
                    return _outcome(event.end, result, self._logs)
        except grpc.RpcError as exc:
            if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                cancelled = JobCancelledError("the job was cancelled", remote_type="JobCancelled")
                return False, cancelled
            return False, self._errors(exc)
        except GiskardError as exc:
            return False, exc
        return False, ProtocolError("the hub ended the job without a result")

    def _note_differences(self, end: common_pb2.JobEnd) -> None:
        self.differences = [compat.Difference.from_proto(d) for d in end.differences]
        if self.differences and self._on_differences is not None:
            self._on_differences(self.differences)


def _outcome(end: common_pb2.JobEnd, result: bytearray, logs: str) -> tuple[bool, Any]:
    if end.WhichOneof("outcome") == "failure":
        return False, _error(end, logs)
    expected = end.success.result
    if expected.inline:
        result = bytearray(expected.inline)
    if len(result) != expected.size or digest_of([result])[0] != expected.blake3:
        return False, ProtocolError("the job's result does not match its announced size and BLAKE3")
    # Never unpickle what a worker sends: the safe decoder refuses anything but data.
    try:
        return True, codec.decode(result)
    except DecodingError as exc:
        return False, ProtocolError(f"the worker sent a result that is not valid data: {exc}")


def _error(end: common_pb2.JobEnd, logs: str) -> GiskardError:
    """The exception of a failed job: its type follows from the end reason, its detail
    (`remote_type`) from the failure."""
    failure = end.failure
    reason = end_reasons.from_proto(end.reason)
    if reason is EndReason.NO_WORKER:
        return NoWorkerError(failure.message)
    fields = {"remote_type": failure.type, "remote_traceback": failure.traceback, "logs": logs}
    if reason is EndReason.EXECUTOR_CRASHED:
        return ExecutorCrashedError(failure.message, signal=failure.signal or None, **fields)
    if reason is EndReason.INCOMPATIBLE_ENVIRONMENT:
        error = IncompatibleEnvironmentError(failure.message, **fields)
        error.differences = [compat.Difference.from_proto(d) for d in failure.differences]
        return error
    return _ERRORS.get(reason, JobError)(failure.message, **fields)
