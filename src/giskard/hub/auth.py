"""Who may call what: API keys checked on every call, and revocation of live calls."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import grpc

from giskard.credentials import METADATA_KEY
from giskard.hub.keys import KeyRecord, KeyStore

logger = logging.getLogger(__name__)


class Authenticator:
    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._on_revoke: defaultdict[str, list[Callable[[], None]]] = defaultdict(list)

    async def require(
        self, context: grpc.aio.ServicerContext, roles: Sequence[str], action: str
    ) -> KeyRecord:
        """The caller's key record; aborts the call with one clear reason otherwise.

        An admin key may do everything; the other roles only what `roles` lists.
        """
        key = _bearer(context.invocation_metadata() or ())
        if key is None:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "no API key", action)
        assert key is not None
        record = self.store.verify(key)
        if record is None:
            why = "the API key was revoked" if self.store.is_revoked(key) else "unknown API key"
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, why, action)
        assert record is not None
        if record.role != "admin" and record.role not in roles:
            why = f"a {record.role} key cannot {action}"
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, why, action)
        return record

    def on_revoke(self, record: KeyRecord, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` if `record`'s key is revoked; returns the function that forgets it."""
        self._on_revoke[record.name].append(callback)
        return lambda: self._forget(record.name, callback)

    def revoked(self, name: str) -> int:
        """Close what runs with key `name`; how many calls were closed."""
        callbacks = self._on_revoke.pop(name, [])
        for callback in callbacks:
            callback()
        return len(callbacks)

    def sync_revocations(self) -> int:
        """Close what runs with keys revoked elsewhere (another hub of this GISKARD_HOME
        revoked them in the shared key file); how many calls were closed."""
        live = set(self._on_revoke)
        if not live:
            return 0
        revoked = {r.name for r in self.store.records() if r.revoked}
        return sum(self.revoked(name) for name in revoked & live)

    def _forget(self, name: str, callback: Callable[[], None]) -> None:
        callbacks = self._on_revoke.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)

    async def _refuse(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, why: str, action: str
    ) -> None:
        logger.warning("Refused %s from %s: %s", action, context.peer(), why)
        await context.abort(code, why)


def _bearer(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key == METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return value.removeprefix("Bearer ").strip() or None
    return None
