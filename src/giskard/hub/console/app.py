"""The console's routes: /healthz, /metrics (bearer key), /login, the pages and their actions."""

from __future__ import annotations

import datetime
import http
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from giskard.hub.console import actions
from giskard.hub.console.charts import Chart, job_charts, line_chart
from giskard.hub.console.history import KEPT_S, History
from giskard.hub.console.job_details import JobDetails
from giskard.hub.console.job_pages import JobPages
from giskard.hub.console.key_pages import KeyPages
from giskard.hub.console.pages import Form
from giskard.hub.console.sessions import (
    LOGIN_ONCE_TTL_S,
    SESSION_TTL_S,
    Login,
    Sessions,
    is_bearer_allowed,
)
from giskard.hub.console.worker_pages import WorkerPages
from giskard.hub.jobs import JobBoard
from giskard.hub.keys import KeyStore
from giskard.hub.metrics import CONTENT_TYPE, hub_metrics
from giskard.hub.registry import WorkerRegistry
from giskard.hub.worker_states import worker_state

logger = logging.getLogger(__name__)

COOKIE = "giskard_console"
INVALID_KEY = "invalid or revoked key"
USED_LOGIN_URL = "this login URL was used already or has expired: ask for a new one"
NO_SUCH_PAGE = "no such page"
ADMINS_ONLY = "refused: only an admin key may see this page; this session is a client's"
# A console form holds one key or one token (~60 characters): anything much longer is not one.
FORM_MAX_BYTES = 4096

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("giskard.hub.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _time(seconds: float | None) -> str:
    if not seconds:
        return ""
    try:
        return datetime.datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")
    except (ValueError, OverflowError, OSError):  # a worker's word (its start), not trusted
        return "?"


_templates.filters["time"] = _time
_templates.filters["state"] = worker_state


class Console:
    """The console's pages over the hub's status (`status` returns what HubClient.status
    does) and its actions on the registry's workers and the board's jobs."""

    def __init__(
        self,
        keys: KeyStore,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        control: tuple[WorkerRegistry, JobBoard],
        history: History,
        details: JobDetails,
        *,
        secure_cookie: bool,
        login_once_s: float,
        close_revoked: Callable[[str], int],
    ) -> None:
        self._keys = keys
        self._status = status
        self._registry, self._jobs = control
        self._metrics = metrics
        self._history = history
        self._sessions = Sessions(keys, once_ttl_s=login_once_s)
        self._secure_cookie = secure_cookie
        self._key_pages = KeyPages(
            keys,
            page=self._logged_in_page,
            checked_post=self._checked_post,
            render=_page,
            cookie=COOKIE,
            close_revoked=close_revoked,
        )
        self._job_pages = JobPages(self._jobs, details, self._logged_in_page, self._checked_post)
        self._worker_pages = WorkerPages(status, self._registry, history, self._logged_in_page)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/metrics", self.metrics),
                Route("/login", self.login_form, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/login/token", self.login_token, methods=["POST"]),
                Route("/login/once", self.login_once, methods=["GET"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/", self.home),
                Route("/workers", self.workers),
                Route("/jobs", self.jobs),
                Route("/jobs/{page_id}", self._job_pages.job),
                Route("/workers/{worker}", self._worker_pages.worker),
                Route("/workers/{worker}/{action}", self.control_worker, methods=["POST"]),
                Route("/keys", self._key_pages.list_keys, methods=["GET"]),
                Route("/keys", self._key_pages.create, methods=["POST"]),
                Route("/keys/new", self._key_pages.new_key_form, methods=["GET"]),
                Route("/keys/revoke", self._key_pages.revoke, methods=["POST"]),
                Route("/jobs/{page_id}/cancel", self._job_pages.cancel, methods=["POST"]),
            ],
            exception_handlers={404: self.not_found},
        )

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """Any 404: no such route, or a route's HTTPException(404, "no such job"). A small
        page saying only that; a reader not logged in is sent to log in first, so that what
        exists is not told to anyone."""
        login = self._sessions.login(request.cookies.get(COOKIE))
        if login is None and request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        detail = exc.detail if isinstance(exc, HTTPException) else ""
        default = http.HTTPStatus.NOT_FOUND.phrase  # the router's, for a path it does not know
        what = detail if detail and detail != default else NO_SUCH_PAGE
        return _page("not_found.html.j2", status_code=404, what=what)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics(self, request: Request) -> Response:
        if not is_bearer_allowed(self._keys, request.headers.get("authorization", "")):
            headers = {"WWW-Authenticate": 'Bearer realm="giskard hub"'}
            return PlainTextResponse("a client or admin API key is needed", 401, headers=headers)
        return Response(self._metrics(), media_type=CONTENT_TYPE)

    async def login_form(self, request: Request) -> Response:
        return _page("login.html.j2", error="")

    async def login(self, request: Request) -> Response:
        form = await _small_form(request)
        if form is None:
            return PlainTextResponse("a login form is much smaller than that", 413)
        session_id = self._sessions.open(form.get("key", [""])[0].strip())
        if session_id is None:
            logger.warning("Console login refused from %s", _peer(request))
            return _page("login.html.j2", error=INVALID_KEY, status_code=401)
        return self._logged_in(session_id)

    async def login_token(self, request: Request) -> Response:
        """A one-time login token for the admin key given as bearer (`giskard hub console`)."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        token = self._sessions.issue_once(key.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            logger.warning("Console login token refused from %s", _peer(request))
            return PlainTextResponse("an admin API key is needed", 401)
        return PlainTextResponse(token, headers={"Cache-Control": "no-store"})

    async def login_once(self, request: Request) -> Response:
        """Log in with a one-time token, then leave its URL (303) so that it does not stay."""
        session_id = self._sessions.open_once(request.query_params.get("token", ""))
        if session_id is None:
            logger.warning("Console one-time login refused from %s", _peer(request))
            return _page("login.html.j2", error=USED_LOGIN_URL, status_code=401)
        return self._logged_in(session_id)

    def _logged_in(self, session_id: str) -> Response:
        """Off to the workers' page with the session's cookie."""
        response = RedirectResponse("/workers", status_code=303)
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(SESSION_TTL_S),
            httponly=True,
            samesite="strict",
            secure=self._secure_cookie,
        )
        return response

    async def logout(self, request: Request) -> Response:
        checked = await self._checked_post(request, admin=False)
        if isinstance(checked, Response):
            return checked
        self._sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/workers", status_code=303)

    async def workers(self, request: Request) -> Response:
        return self._logged_in_page(request, "workers.html.j2")

    async def jobs(self, request: Request) -> Response:
        return self._logged_in_page(
            request, "jobs.html.j2", charts=self._charts(), **self._job_pages.listing()
        )

    def _charts(self) -> list[Chart]:
        """Jobs ended and their latency per minute, and the queue length, over the last hour."""
        return [
            *job_charts(self._history.per_minute(), KEPT_S),
            line_chart(
                "Queue length",
                "jobs",
                {"queued": [(at, n) for at, n in self._history.queue_lengths()]},
                KEPT_S,
            ),
        ]

    async def control_worker(self, request: Request) -> Response:
        acting = await self._checked_post(request, admin=True)
        if isinstance(acting, Response):
            return acting
        login, form = acting
        params = request.path_params
        force = form.get("force", [""])[0] == "yes"
        return actions.control_worker(
            self._registry, login, params["worker"], params["action"], force
        )

    async def _checked_post(
        self, request: Request, *, admin: bool
    ) -> tuple[Login, Form] | Response:
        """As pages.PostChecker says."""
        form = await _small_form(request)
        if form is None:
            return PlainTextResponse("a console form is much smaller than that", 413)
        login = self._sessions.login(request.cookies.get(COOKIE))
        why = actions.refusal(request, login, form, admin=admin)
        if why is not None:
            logger.warning(
                "Console POST %s refused from %s: %s", request.url.path, _peer(request), why
            )
            return PlainTextResponse(why, 403)
        assert login is not None  # refusal() refuses a POST without a login
        return login, form

    def _logged_in_page(
        self, request: Request, template: str, *, admin: bool = False, **values: Any
    ) -> Response:
        """As pages.PageRenderer says."""
        login = self._sessions.login(request.cookies.get(COOKIE))
        if login is None:
            return RedirectResponse("/login", status_code=303)
        if admin and login.role != "admin":
            return PlainTextResponse(ADMINS_ONLY, 403)
        render = _main_section if request.query_params.get("partial") else _page
        return render(
            template,
            login=login,
            status=self._status(),
            departed=self._registry.departed()[::-1],
            actions=actions.WORKER_ACTIONS,
            **values,
        )


async def _small_form(request: Request) -> Form | None:
    """The URL-encoded form of `request`; None past FORM_MAX_BYTES, read no further."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            return None
    return parse_qs(body.decode(errors="replace"))


def _page(template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**values), status_code)


def _main_section(template: str, **values: Any) -> HTMLResponse:
    """Only what the page shows in its <main>: the pages' script replaces it in place."""
    page = _templates.get_template(template)
    return HTMLResponse("".join(page.blocks["content"](page.new_context(values))))


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def console_app(
    keys: KeyStore,
    status: Callable[[], dict[str, Any]],
    registry: WorkerRegistry,
    jobs: JobBoard,
    history: History,
    *,
    secure_cookie: bool,
    close_revoked: Callable[[str], int],
    login_once_s: float = LOGIN_ONCE_TTL_S,
) -> Starlette:
    """The console of a hub whose keys, status (as HubClient.status), workers and jobs these
    are, charting `history` (told of each job that ends) and showing the details of the jobs
    that end; its one-time login URLs last `login_once_s`; `close_revoked(name)` closes the
    hub's calls made with a key just revoked."""
    jobs.ended_observers.append(history.job_ended)
    details = JobDetails(registry)
    jobs.ended_observers.append(details.job_ended)
    return Console(
        keys,
        status,
        hub_metrics(status, jobs),
        (registry, jobs),
        history,
        details,
        secure_cookie=secure_cookie,
        login_once_s=login_once_s,
        close_revoked=close_revoked,
    ).app()
