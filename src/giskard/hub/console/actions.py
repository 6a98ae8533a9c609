"""The console's admin actions: POST forms that control a worker or cancel a job.

They do what the admin gRPC service does (worker_control.control) and what a client's cancel
does (JobBoard.cancel), on the one job a console page names (job_pages). Every action is
refused (403) before anything when its Origin is foreign, its session is not an admin's, or
its CSRF token is not the session's.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from giskard.hub.console.sessions import Login
from giskard.hub.job import Job
from giskard.hub.jobs import JobBoard
from giskard.hub.registry import UnknownWorkerError, WorkerRegistry, find_worker
from giskard.hub.worker_control import Control, WorkerNotReadingError, control

logger = logging.getLogger(__name__)

WORKER_ACTIONS = {
    "pause": Control.PAUSE,
    "resume": Control.RESUME,
    "drain": Control.DRAIN,
    "stop": Control.STOP,
}


def refusal(
    request: Request, login: Login | None, form: dict[str, list[str]], *, admin: bool = True
) -> str | None:
    """Why this POST may not act (one line), None when it may; `admin`: only an admin may."""
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        return "refused: this form was not sent from this console"
    if login is None:
        return "refused: log in first"
    if admin and login.role != "admin":
        return "refused: only an admin key may act; this session is a client's"
    if not login.is_csrf_token(form.get("csrf", [""])[0]):
        return "refused: the form's CSRF token is missing or wrong; reload the page"
    return None


def own_origin(request: Request) -> str:
    """This console's origin as the browser sees it (scheme, host and port)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def control_worker(
    registry: WorkerRegistry, login: Login, worker: str, action: str, force: bool
) -> Response:
    if action not in WORKER_ACTIONS:
        raise HTTPException(404)  # the console's "no such page"
    order = Control(
        action=WORKER_ACTIONS[action], force=force, by=f"console login {login.key_name!r}"
    )
    try:
        control(registry, find_worker(registry, worker), order)
    except UnknownWorkerError:
        raise HTTPException(404, "no such worker") from None
    except WorkerNotReadingError as exc:
        return PlainTextResponse(str(exc), 503)
    return RedirectResponse("/workers", status_code=303)


def cancel_job(jobs: JobBoard, job: Job, login: Login) -> Response:
    """Cancel a queued or running job, as its client's cancel does."""
    jobs.cancel(job)
    logger.info("Cancelled job %s, by console login %r", job.job_id, login.key_name)
    return RedirectResponse("/jobs", status_code=303)
