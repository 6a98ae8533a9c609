"""The console's own id for each job, and the details of the last jobs that ended.

A client's job id is unique per API key only, and a job's dispatch id is new each time it is
sent (and missing while it waits): the console names each job it shows by an id of its own,
for its URLs (/jobs/<id>), the same from queued to ended. An ended job's details (its error,
traceback and the logs its worker captured) are kept for the last ENDED_KEPT jobs, in at most
ENDED_MAX_BYTES: a busy hub keeps the latest. What a worker says of a job is its own word, of
any size: the console keeps only so much of each part, and its page says which were cut.
"""

from __future__ import annotations

import itertools
import secrets
import sys
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from giskard import end_reasons
from giskard.hub.job import Job
from giskard.hub.jobs import FAILURE_TYPE_KEPT_CHARS
from giskard.hub.registry import WorkerRegistry
from giskard.rpc.v1 import common_pb2

ENDED_KEPT = 200
# A job's logs are up to 1 MiB (JOB_LOG_MAX_BYTES): the console keeps the last LOGS_KEPT_BYTES
# of each, the end of its traceback and the start of its error's message and type name
# (FAILURE_TYPE_KEPT_CHARS, as the hub's status), so that one job cannot push out the others.
LOGS_KEPT_BYTES = 256 * 1024
TRACEBACK_KEPT_CHARS = 64 * 1024
MESSAGE_KEPT_CHARS = 8 * 1024
ENDED_MAX_BYTES = 16 * 1024 * 1024
# What the console keeps of each part a worker says of a job's end: its start, or its end.
_KEPT = {
    "error type": slice(None, FAILURE_TYPE_KEPT_CHARS),
    "error message": slice(None, MESSAGE_KEPT_CHARS),
    "traceback": slice(-TRACEBACK_KEPT_CHARS, None),
    "logs": slice(-LOGS_KEPT_BYTES, None),
}
# What an EndedJobDetails holds besides its strings (the object, its numbers, its tuple).
DETAILS_OVERHEAD_BYTES = 512
# Said in place of the reason of an end this version does not know.
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True)
class EndedJobDetails:
    """What the console shows of a job that ended; `page_id` names it (JobDetails)."""

    page_id: str
    job_id: str  # its client's
    kind: str
    worker: str  # the name of the worker it was sent to; "" if it never was
    submitted_at: float
    sent_at: float  # 0: never sent
    ended_at: float
    reason: str  # an EndReason value, or UNKNOWN_REASON
    error_type: str  # JobFailure.type, or "ClientLeft"; "" on success
    error_message: str
    traceback: str
    logs: str
    cut: tuple[str, ...]  # the parts kept only in part: "error type", "logs"...

    @property
    def duration_s(self) -> float:
        return max(self.ended_at - self.submitted_at, 0.0)

    @property
    def size_bytes(self) -> int:
        """About what it holds in memory, for ENDED_MAX_BYTES: its strings, as Python
        stores them (up to 4 bytes a character), and the rest."""
        strings = (
            self.page_id,
            self.job_id,
            self.kind,
            self.worker,
            self.reason,
            self.error_type,
            self.error_message,
            self.traceback,
            self.logs,
        )
        return DETAILS_OVERHEAD_BYTES + sum(sys.getsizeof(text) for text in strings)


class JobDetails:
    """Console ids for the hub's jobs (`page_id`), and the details of the jobs that ended, as
    JobBoard.ended_observers tells them (`job_ended`)."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self._registry = registry
        # An id per job object while it lives; the ended keep theirs in their details.
        self._ids: weakref.WeakKeyDictionary[Job, str] = weakref.WeakKeyDictionary()
        # New for each hub run, so that a page id of an earlier run names no job of this one.
        self._run = secrets.token_hex(3)
        self._count = itertools.count(1)
        self._ended: deque[EndedJobDetails] = deque()
        self._ended_bytes = 0

    def page_id(self, job: Job) -> str:
        """The job's console id, given the first time it is asked for."""
        page_id = self._ids.get(job)
        if page_id is None:
            page_id = self._ids[job] = f"{self._run}-{next(self._count)}"
        return page_id

    def live_job(self, page_id: str, live: Iterable[Job]) -> Job | None:
        """The job among `live` (JobBoard.live_jobs) that `page_id` names, if any."""
        return next((job for job in live if self._ids.get(job) == page_id), None)

    def ended_job(self, page_id: str) -> EndedJobDetails | None:
        return next((ended for ended in self._ended if ended.page_id == page_id), None)

    @property
    def ended(self) -> list[EndedJobDetails]:
        """The details kept, the latest last."""
        return list(self._ended)

    def job_ended(self, job: Job, end: common_pb2.JobEnd | None, ended_at: float) -> None:
        """Keep its details; `end` None: its client left."""
        details = self._details(job, end, ended_at)
        self._ended.append(details)
        self._ended_bytes += details.size_bytes
        while len(self._ended) > ENDED_KEPT or self._ended_bytes > ENDED_MAX_BYTES:
            self._ended_bytes -= self._ended.popleft().size_bytes

    def _details(self, job: Job, end: common_pb2.JobEnd | None, ended_at: float) -> EndedJobDetails:
        # Copied now: the client's copy of the end may have its logs dropped for want of room.
        if end is None:
            end = common_pb2.JobEnd(reason=common_pb2.END_REASON_CANCELLED)
            end.failure.type = "ClientLeft"
            end.failure.message = "its client left before the job ended"
        reason = end_reasons.from_proto(end.reason)
        kept, cut = _kept(end)
        return EndedJobDetails(
            page_id=self.page_id(job),
            job_id=job.job_id,
            kind=job.kind,
            worker=self._worker_name(job.worker_id),
            submitted_at=job.submitted_at,
            sent_at=job.sent_at,
            ended_at=ended_at,
            reason=reason.value if reason is not None else UNKNOWN_REASON,
            error_type=kept["error type"],
            error_message=kept["error message"],
            traceback=kept["traceback"],
            logs=kept["logs"].decode(errors="replace"),
            cut=cut,
        )

    def _worker_name(self, worker_id: str) -> str:
        """The name of the worker of this id, connected or lately departed; its id's start
        if it is neither any more."""
        if not worker_id:
            return ""
        for session in self._registry.sessions:
            if session.info.worker_id == worker_id:
                return session.name
        for departed in self._registry.departed():
            if departed.info.worker_id == worker_id:
                return departed.info.name
        return worker_id[:8]


def _kept(end: common_pb2.JobEnd) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What the console keeps of each part of the failure and logs `end` tells (by name), and
    the names of those it cut."""
    failure = end.failure
    sent = {
        "error type": failure.type,
        "error message": failure.message,
        "traceback": failure.traceback,
        "logs": end.logs,
    }
    kept = {part: whole[_KEPT[part]] for part, whole in sent.items()}
    return kept, tuple(part for part, whole in sent.items() if len(kept[part]) < len(whole))
