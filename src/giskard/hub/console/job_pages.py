"""The console's job pages: /jobs lists the lately ended jobs, each named by its console id
(job_details); /jobs/<id> shows one, with its error, traceback and logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from giskard.hub.console.job_details import JobDetails

NO_SUCH_JOB = "no such job"

# The console's page renderer: a logged-in reader's page, else the login redirect.
PageRenderer = Callable[..., Response]


class JobPages:
    """The job pages over the console's details of the ended jobs; `page` renders a logged-in
    reader's page."""

    def __init__(self, details: JobDetails, page: PageRenderer) -> None:
        self._details = details
        self._page = page

    def listing(self) -> dict[str, Any]:
        """The values /jobs shows: the ended jobs, the latest first."""
        return {"ended_jobs": self._details.ended[::-1]}

    async def job(self, request: Request) -> Response:
        """One job's page, of those the console keeps."""
        ended = self._details.ended_job(request.path_params["page_id"])
        if ended is None:
            raise HTTPException(404, NO_SUCH_JOB)
        return self._page(request, "job.html.j2", ended=ended)
