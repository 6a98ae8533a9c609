"""What the console (app.Console) gives its page modules (job_pages, key_pages, worker_pages):
its renderer of a logged-in reader's page and its check of an action's POST."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from giskard.hub.console.sessions import Login

Form = dict[str, list[str]]


class PageRenderer(Protocol):
    def __call__(
        self, request: Request, template: str, *, admin: bool = False, **values: Any
    ) -> Response:
        """The page of the reader `request` logged in (its <main> only, for the pages' live
        update, with ?partial=1), else the way to log in; `admin`: only for an admin, a
        client session is refused (403)."""
        ...


class PostChecker(Protocol):
    async def __call__(self, request: Request, *, admin: bool) -> tuple[Login, Form] | Response:
        """The login and form of a POST from one of the console's pages (an admin's, if
        `admin`), or the reply refusing it."""
        ...
