"""API keys: roles, hashed storage, creation and revocation.

A key is `gsk_<id>_<secret>` with 256 random bits of secret. The hub stores the SHA-256 of
the whole key, never the key: with that much entropy a slow hash adds nothing. The file is
0600 in a 0700 directory; every hub of this GISKARD_HOME shares it and rereads it when it
changes, so a key created through one hub is known to the others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from giskard.errors import ConfigurationError, KeyManagementError
from giskard.installer.files import write_atomically

logger = logging.getLogger(__name__)

ROLES = ("worker", "client", "admin")
KEY_PREFIX = "gsk_"
# A name says whose a key is, in lists, logs and pages; a page of text is not a name.
NAME_MAX_CHARS = 64


@dataclass(frozen=True)
class KeyRecord:
    name: str
    role: str
    key_id: str
    sha256: str
    created_at: float
    revoked: bool = False


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, KeyRecord] = {}
        self._loaded_mtime: float | None = None
        # The local admin key's file, once ensure_local_admin_key has made or found the key:
        # the key it holds is not revoked (every giskard command of this machine uses it).
        self.local_admin_key_path: Path | None = None
        self._reload()

    def records(self) -> list[KeyRecord]:
        self._reload()
        return sorted(self._records.values(), key=lambda r: r.created_at)

    def create(self, role: str, name: str = "") -> tuple[KeyRecord, str]:
        """A new key (returned once) and its record."""
        if role not in ROLES:
            raise KeyManagementError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
        self._reload()
        name = name or f"{role}-{secrets.token_hex(3)}"
        _check_name(name)
        if name in self._records:
            raise KeyManagementError(f"a key named {name!r} exists already")
        key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        key = f"{KEY_PREFIX}{key_id}_{secret}"
        record = KeyRecord(name, role, key_id, _digest(key), time.time())
        self._records[name] = record
        self._save()
        return record, key

    def revoke(self, name: str) -> KeyRecord:
        self._reload()
        if name not in self._records:
            raise KeyManagementError(f"no key named {name!r}")
        if name == self.local_admin_key_name():
            raise KeyManagementError(
                f"{name!r} is the local admin key, which the giskard commands on this machine"
                f" use: to replace it, remove {self.local_admin_key_path} and restart the hub"
                f" (it makes a new one), then revoke {name!r}"
            )
        record = replace(self._records[name], revoked=True)
        self._records[name] = record
        self._save()
        return record

    def local_admin_key_name(self) -> str | None:
        """The name of the live key the local admin key file holds, if it holds one."""
        if self.local_admin_key_path is None or not self.local_admin_key_path.exists():
            return None
        try:
            record = self.verify(_read_key_file(self.local_admin_key_path))
        except ConfigurationError:  # not a key: it protects none
            return None
        return None if record is None else record.name

    def verify(self, key: str) -> KeyRecord | None:
        """The live record of `key`, or None (unknown, malformed or revoked)."""
        self._reload()
        key_id = key.removeprefix(KEY_PREFIX).split("_", 1)[0] if key.startswith(KEY_PREFIX) else ""
        digest = _digest(key)
        for record in self._records.values():
            if record.key_id == key_id and hmac.compare_digest(record.sha256, digest):
                return None if record.revoked else record
        return None

    def is_revoked(self, key: str) -> bool:
        digest = _digest(key)
        return any(r.revoked and hmac.compare_digest(r.sha256, digest) for r in self.records())

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._loaded_mtime:
            return
        try:
            data = json.loads(self.path.read_text())
            records = [_record(r) for r in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"the key file {self.path} is unreadable: {exc}") from None
        self._records = {r.name: r for r in records}
        self._loaded_mtime = mtime

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path.parent, 0o700)
        data = {"keys": [asdict(r) for r in self._records.values()]}
        write_atomically(self.path, json.dumps(data, indent=1), mode=0o600)
        self._loaded_mtime = self.path.stat().st_mtime


def ensure_local_admin_key(store: KeyStore, key_path: Path) -> str:
    """The admin key kept for same-user clients on this machine, created on first start;
    `store` refuses to revoke it from now on."""
    store.local_admin_key_path = key_path
    if key_path.exists():
        key = _read_key_file(key_path)
        if store.verify(key) is not None:
            return key
        logger.warning(
            "The local admin key in %s is unknown or revoked; making a new one", key_path
        )
    _, key = store.create("admin", f"local-admin-{secrets.token_hex(3)}")
    write_atomically(key_path, key + "\n", mode=0o600)
    logger.info("Created the local admin key %s (mode 0600)", key_path)
    return key


def _read_key_file(path: Path) -> str:
    """Text that is not a key is replaced by the caller; what cannot be text at all, or be
    read, is refused: replacing it could destroy something that is not ours."""
    try:
        return path.read_text().strip()
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"the local admin key file {path} holds bytes that are not text: remove it,"
            " and the hub makes a new key"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the local admin key file {path}: {exc.strerror or exc}"
        ) from None


# The type of each field of a record in the key file (bool is not taken for a number).
_FIELD_TYPES = {
    "name": str,
    "role": str,
    "key_id": str,
    "sha256": str,
    "created_at": (int, float),
    "revoked": bool,
}


def _check_name(name: str) -> None:
    if len(name) > NAME_MAX_CHARS or not name.isprintable() or name != name.strip():
        raise KeyManagementError(
            f"a key's name is 1 to {NAME_MAX_CHARS} printable characters, with no space at"
            " either end"
        )


def _record(data: object) -> KeyRecord:
    """A record of the key file, checked: a wrong type is refused here, when the file is
    read, rather than failing a call that uses the record later."""
    if not isinstance(data, dict):
        raise ValueError(f"a record is not an object: {data!r}")
    name = data.get("name")
    for field_name, kind in _FIELD_TYPES.items():
        value = data.get(field_name, False if field_name == "revoked" else None)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ValueError(f"the record {name!r} has {field_name} = {value!r}")
    if data["role"] not in ROLES:
        raise ValueError(f"the record {name!r} has an unknown role {data['role']!r}")
    return KeyRecord(**data)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
