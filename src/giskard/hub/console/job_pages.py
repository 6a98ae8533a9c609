"""The console's job pages: /jobs lists the queued, running and lately ended jobs, each named by
its console id (job_details); /jobs/<id> shows one, with its error, traceback and logs once it
ended; an admin cancels a queued or running one from either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from giskard.hub.console import actions
from giskard.hub.console.job_details import JobDetails
from giskard.hub.console.pages import PageRenderer, PostChecker
from giskard.hub.job import Job, JobState
from giskard.hub.jobs import JobBoard

NO_SUCH_JOB = "no such job"
# A page the console fetches every 2 s lists no more queued (or running) jobs than this.
LISTED_MAX = 200


@dataclass(frozen=True)
class LiveJob:
    """What the console shows of a job not ended yet."""

    page_id: str
    job_id: str  # its client's
    kind: str
    state: str  # "queued" (at the hub) or "running" (sent to a worker)
    submitted_at: float
    sent_at: float  # 0: not sent
    worker: str  # the name of the worker it was sent to
    waiting_for: str  # what it waits for: a worker to connect, a slot; "" once it runs
    constraint: str  # the workers it asks for (their name, labels); "": any
    done: int
    total: int


class JobPages:
    """The job pages over the board's jobs and the console's details of the ended ones;
    `page` renders a logged-in reader's page, `checked_post` checks an action's POST."""

    def __init__(
        self,
        jobs: JobBoard,
        details: JobDetails,
        page: PageRenderer,
        checked_post: PostChecker,
    ) -> None:
        self._jobs = jobs
        self._details = details
        self._page = page
        self._checked_post = checked_post

    def listing(self) -> dict[str, Any]:
        """The values /jobs shows: the first LISTED_MAX queued and running jobs (and how many
        there are), then the ended, the latest first."""
        live = self._jobs.live_jobs()
        running = [job for job in live if job.state is JobState.RUNNING]
        queued = [job for job in live if job.state is not JobState.RUNNING]
        return {
            "queued_jobs": [self._live(job) for job in queued[:LISTED_MAX]],
            "queued_total": len(queued),
            "running_jobs": [self._live(job) for job in running[:LISTED_MAX]],
            "running_total": len(running),
            "ended_jobs": self._details.ended[::-1],
        }

    async def job(self, request: Request) -> Response:
        """One job's page: a live one, or one of the ended ones the console keeps."""
        page_id = request.path_params["page_id"]
        ended = self._details.ended_job(page_id)
        if ended is not None:
            return self._page(request, "job.html.j2", live=None, ended=ended)
        live = self._details.live_job(page_id, self._jobs.live_jobs())
        if live is None:
            raise HTTPException(404, NO_SUCH_JOB)
        return self._page(request, "job.html.j2", live=self._live(live), ended=None)

    async def cancel(self, request: Request) -> Response:
        acting = await self._checked_post(request, admin=True)
        if isinstance(acting, Response):
            return acting
        job = self._details.live_job(request.path_params["page_id"], self._jobs.live_jobs())
        if job is None:
            raise HTTPException(404, NO_SUCH_JOB)
        return actions.cancel_job(self._jobs, job, acting[0])

    def _live(self, job: Job) -> LiveJob:
        session = job.session
        running = job.state is JobState.RUNNING  # else waiting for a worker, or queued
        if running:
            in_worker = session is not None and job.job_id in session.waiting_jobs()
            waiting_for = "a slot in its worker" if in_worker else ""
        elif job.state is JobState.WAITING or job.no_worker_timer is not None:
            waiting_for = "a matching worker to connect"
        else:
            waiting_for = "a worker slot"
        return LiveJob(
            page_id=self._details.page_id(job),
            job_id=job.job_id,
            kind=job.kind,
            state="running" if running else "queued",
            submitted_at=job.submitted_at,
            sent_at=job.sent_at if running else 0.0,
            worker=session.name if session is not None else "",
            waiting_for=waiting_for,
            constraint=job.constraint.describe(),
            done=job.progress[0],
            total=job.progress[1],
        )
