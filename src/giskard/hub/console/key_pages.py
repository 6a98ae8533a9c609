"""The console's API keys, for admins only: listed (never a key nor its digest), created (the
new key shown once, on the reply to its POST, which neither updates itself nor stays in a
cache) and revoked (what uses the key is refused from then on, this console's sessions too).

Only admins see them, as only an admin key may list keys over gRPC (`giskard hub keys list`):
a client key reads the fleet, not who else holds keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from giskard.errors import KeyManagementError
from giskard.hub.console.pages import Form, PageRenderer, PostChecker
from giskard.hub.console.sessions import Login
from giskard.hub.keys import NAME_MAX_CHARS, ROLES, KeyStore

logger = logging.getLogger(__name__)

NO_NAME = "a key needs a name: it is how the list shows it and how it is revoked"
# The reply that shows a new key: kept by no cache, the browser's included.
NOT_STORED = {"Cache-Control": "no-store"}
# What the new key's form offers, however it is shown.
_FORM = {"roles": ROLES, "name_max": NAME_MAX_CHARS}

Render = Callable[..., HTMLResponse]


class KeyPages:
    """GET /keys (the list), GET /keys/new (the form), POST /keys (create), POST /keys/revoke.

    `page` renders an admin's page (the console's, for logged-in readers), `checked_post`
    checks an action's POST (its Origin, login, role and CSRF token); `render(template,
    status_code, **values)` renders the reply to a POST; `cookie` is the session cookie's
    name; `close_revoked(name)` closes the hub's calls (worker sessions, job streams) made
    with key `name`, as its admin service does.
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        page: PageRenderer,
        checked_post: PostChecker,
        render: Render,
        cookie: str,
        close_revoked: Callable[[str], int],
    ) -> None:
        self._keys = keys
        self._page = page
        self._checked_post = checked_post
        self._render = render
        self._cookie = cookie
        self._close_revoked = close_revoked

    async def list_keys(self, request: Request) -> Response:
        return self._page(
            request,
            "keys.html.j2",
            admin=True,
            keys=self._keys.records()[::-1],
            local_admin=self._keys.local_admin_key_name(),
        )

    async def new_key_form(self, request: Request) -> Response:
        return self._page(
            request, "key_new.html.j2", admin=True, name="", role="client", error="", **_FORM
        )

    async def create(self, request: Request) -> Response:
        acting = await self._checked_post(request, admin=True)
        if isinstance(acting, Response):
            return acting
        login, form = acting
        name, role = _field(form, "name").strip(), _field(form, "role")
        if not name:
            return self._form(login, name=name, role=role, error=NO_NAME, status_code=400)
        if role not in ROLES:  # KeyStore says so too, but this message names no input
            error = f"a key's role is one of {', '.join(ROLES)}"
            return self._form(login, name=name, role="client", error=error, status_code=400)
        try:
            record, key = self._keys.create(role, name)
        except KeyManagementError as exc:
            return self._form(login, name=name, role=role, error=str(exc), status_code=400)
        logger.info(
            "Created the %s key %r, by console login %r", record.role, record.name, login.key_name
        )
        # The key goes in this reply only: not in a URL (no redirect to a page showing it), a
        # log, nor a cache; and the page does not fetch itself again.
        response = self._render("key_created.html.j2", login=login, record=record, key=key)
        response.headers.update(NOT_STORED)
        return response

    async def revoke(self, request: Request) -> Response:
        acting = await self._checked_post(request, admin=True)
        if isinstance(acting, Response):
            return acting
        login, form = acting
        name = _field(form, "name")
        if name not in {record.name for record in self._keys.records()}:
            raise HTTPException(404, "no such key")
        try:
            self._keys.revoke(name)
        except KeyManagementError as exc:  # the local admin key
            return PlainTextResponse(f"refused: {exc}", 409)
        closed = self._close_revoked(name)
        logger.info(
            "Revoked the key %r, by console login %r; closed %d live call(s)",
            name,
            login.key_name,
            closed,
        )
        if name == login.key_name:  # this session's own key: it has ended
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(self._cookie)
            return response
        return RedirectResponse("/keys", status_code=303)

    def _form(self, login: Login, status_code: int, **values: Any) -> Response:
        """The new key's form again, with what was typed and why it was refused."""
        return self._render("key_new.html.j2", status_code, login=login, **values, **_FORM)


def _field(form: Form, name: str) -> str:
    return form.get(name, [""])[0]
