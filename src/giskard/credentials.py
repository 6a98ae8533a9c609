"""Which API key to present to a hub, and where it came from.

Precedence: a key passed explicitly (argv or `HubClient(api_key=...)`), then a key file,
then, for the worker alone, the credential `giskard-api-key` that systemd passed to its
service (LoadCredential=), then $GISKARD_API_KEY, then — for a hub on this machine — the
local admin key that a hub of the same user's GISKARD_HOME created (0600, so other users
cannot read it). The local admin key is only ever sent over that hub's private socket (see
giskard.channel).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from giskard.errors import ConfigurationError
from giskard.paths import giskard_home

logger = logging.getLogger(__name__)

API_KEY_ENV = "GISKARD_API_KEY"
# systemd puts a service's credentials (LoadCredential=) in this directory, readable by the
# service alone; the system-wide worker service finds its key there. Only the worker looks:
# every process of any unit with credentials sees the variable, and a client or a notebook
# there must keep the key it was given ($GISKARD_API_KEY), not take the unit's.
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
SYSTEMD_CREDENTIAL = "giskard-api-key"
LOCAL_ADMIN_KEY = "local admin key"
METADATA_KEY = "authorization"


def hub_dir(home: Path | None = None) -> Path:
    """Where a hub keeps its keys (and certificates)."""
    return (home or giskard_home()) / "hub"


def local_admin_key_path(home: Path | None = None) -> Path:
    return hub_dir(home) / "admin.key"


def local_socket_path(port: int, home: Path | None = None) -> Path:
    """The Unix socket on which a hub of this GISKARD_HOME also listens.

    Clients presenting the local admin key dial it instead of TCP: it sits in a 0700
    directory, so whoever answers there is this user's hub, not another local user who
    took the port while the hub was down (to whom the admin key must never go).
    """
    return hub_dir(home) / "sockets" / f"{port}.sock"


@dataclass(frozen=True)
class Credentials:
    key: str | None
    source: str  # for messages: "--api-key", "file ...", "$GISKARD_API_KEY", "local admin key"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((METADATA_KEY, f"Bearer {self.key}"),) if self.key else ()

    @property
    def is_local(self) -> bool:
        """The local admin key, which may only travel over the hub's private socket."""
        return self.source == LOCAL_ADMIN_KEY

    @property
    def given(self) -> bool:
        """Given by the user (argv, a key file, the environment), not found on disk."""
        return self.source not in (LOCAL_ADMIN_KEY, "")

    def current(self, host: str) -> Credentials:
        """These credentials for the next connection attempt: a given key stays; otherwise
        the local admin key as it is now, which a hub started since has created (or made
        anew)."""
        return self if self.given else _local(host)


def resolve(
    host: str,
    *,
    api_key: str | None = None,
    api_key_file: str | Path | None = None,
    service_credential: bool = False,
) -> Credentials:
    """The key to use for the hub at `host`; `service_credential` for the worker, which a
    system-wide service runs with its key in a systemd credential."""
    if api_key:
        return Credentials(_not_blank(api_key, "--api-key"), "--api-key")
    if api_key_file:
        return Credentials(read_key_file(Path(api_key_file)), f"file {api_key_file}")
    credential = _systemd_credential() if service_credential else None
    if credential is not None:
        return Credentials(read_key_file(credential), f"systemd credential {credential}")
    # Empty means unset (`GISKARD_API_KEY= giskard ...`); blank is a mistake to point out.
    if os.environ.get(API_KEY_ENV):
        source = f"${API_KEY_ENV}"
        return Credentials(_not_blank(os.environ[API_KEY_ENV], source), source)
    return _local(host)


def _systemd_credential() -> Path | None:
    directory = os.environ.get(CREDENTIALS_DIRECTORY_ENV)
    path = Path(directory) / SYSTEMD_CREDENTIAL if directory else None
    return path if path is not None and path.exists() else None


def _local(host: str) -> Credentials:
    local = local_admin_key_path()
    if is_loopback(host) and local.exists():
        return Credentials(read_key_file(local), LOCAL_ADMIN_KEY)
    return Credentials(None, "")


def _not_blank(key: str, source: str) -> str:
    if not key.strip():
        raise ConfigurationError(f"{source} is blank (only white space): give the key itself")
    return key.strip()


def read_key_file(path: Path) -> str:
    try:
        key = path.read_bytes().decode().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the API key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"the API key file {path} is not text: byte 0x{exc.object[exc.start]:02x}"
            f" at offset {exc.start} is not UTF-8"
        ) from None
    if not key:
        raise ConfigurationError(f"the API key file {path} is empty")
    return key


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
