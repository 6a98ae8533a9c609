"""Console logins: random session ids mapped, on the server only, to a key's name and role.

The key itself is checked once at login and kept nowhere: not in the cookie, a page, a URL
or a log.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from giskard.hub.keys import KeyStore

SESSION_TTL_S = 12 * 3600.0
# How long a one-time login URL may be used (once), as Jupyter's token URLs.
LOGIN_ONCE_TTL_S = 60.0
# The roles that may look at the console (a worker key may not).
CONSOLE_ROLES = ("client", "admin")


@dataclass(frozen=True)
class Login:
    key_name: str
    role: str
    expires_at: float  # time.monotonic()
    # Put in every form of this session's pages, checked on every action (against CSRF).
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def is_csrf_token(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token.encode())


class Sessions:
    def __init__(
        self, keys: KeyStore, ttl_s: float = SESSION_TTL_S, once_ttl_s: float = LOGIN_ONCE_TTL_S
    ) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._once_ttl_s = once_ttl_s
        self._logins: dict[str, Login] = {}
        # One-time login tokens: each, the admin key's name it logs in as and until when.
        self._once: dict[str, tuple[str, float]] = {}

    def open(self, key: str) -> str | None:
        """A new session id for a live client or admin `key`; None for any other key."""
        record = self._keys.verify(key)
        if record is None or record.role not in CONSOLE_ROLES:
            return None
        return self._open(record.name, record.role)

    def issue_once(self, key: str) -> str | None:
        """A token that opens one admin session, once, within once_ttl_s; None unless `key`
        is a live admin key."""
        record = self._keys.verify(key)
        if record is None or record.role != "admin":
            return None
        now = time.monotonic()
        self._once = {t: grant for t, grant in self._once.items() if grant[1] >= now}
        token = secrets.token_urlsafe(32)
        self._once[token] = (record.name, now + self._once_ttl_s)
        return token

    def open_once(self, token: str) -> str | None:
        """A new session id for a one-time `token`, which is used up; None when it is
        unknown, used, expired or its key revoked."""
        key_name, expires_at = self._once.pop(token, ("", 0.0))
        if expires_at < time.monotonic() or not self._is_live(key_name):
            return None
        return self._open(key_name, "admin")

    def _open(self, key_name: str, role: str) -> str:
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        self._logins[session_id] = Login(key_name, role, time.monotonic() + self._ttl_s)
        return session_id

    def login(self, session_id: str | None) -> Login | None:
        """Who `session_id` is logged in as; None when unknown, expired or its key revoked."""
        login = self._logins.get(session_id or "")
        if login is None:
            return None
        if login.expires_at < time.monotonic() or not self._is_live(login.key_name):
            del self._logins[session_id or ""]
            return None
        return login

    def close(self, session_id: str | None) -> None:
        self._logins.pop(session_id or "", None)

    def _is_live(self, key_name: str) -> bool:
        return any(r.name == key_name and not r.revoked for r in self._keys.records())

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for session_id in [s for s, login in self._logins.items() if login.expires_at < now]:
            del self._logins[session_id]


def is_bearer_allowed(keys: KeyStore, authorization: str) -> bool:
    """Whether an `Authorization: Bearer KEY` header carries a live client or admin key."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    record = keys.verify(key.strip())
    return record is not None and record.role in CONSOLE_ROLES
