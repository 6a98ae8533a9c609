"""The local admin's one-time login URL (`giskard hub console`), as Jupyter's token URLs.

The CLI asks the console itself, with the local admin key as bearer (POST /login/token): the
console holds the tokens, next to the sessions they open, so it needs no gRPC call of its own.
The token is good once, for a minute; its URL is left (303) as soon as it is used.
"""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

from giskard.address import HubAddress
from giskard.credentials import is_loopback, local_admin_key_path, read_key_file
from giskard.errors import AuthenticationError, ConfigurationError, HubUnavailableError

TIMEOUT_S = 10.0


def one_time_login_url(host: str, port: int, *, tls: bool, ca_file: Path | None) -> str:
    """A URL that logs a browser in to the console at `host:port` as the local admin."""
    if not is_loopback(host):
        raise ConfigurationError(
            f"a one-time login URL is for the local admin only: {host} is not this machine"
            " (run giskard hub console on the hub's machine, or log in with a key)"
        )
    key_path = local_admin_key_path()
    if not key_path.exists():
        raise ConfigurationError(f"no local admin key at {key_path}: no hub ran on this machine")
    address = HubAddress(host, port).target
    base = f"{'https' if tls or ca_file else 'http'}://{address}"
    token = _ask_token(host, port, read_key_file(key_path), tls or ca_file is not None, ca_file)
    return f"{base}/login/once?token={token}"


def _ask_token(host: str, port: int, key: str, tls: bool, ca_file: Path | None) -> str:
    if tls:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=TIMEOUT_S, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    where = HubAddress(host, port).target
    try:
        connection.request("POST", "/login/token", headers={"Authorization": f"Bearer {key}"})
        reply = connection.getresponse()
        body = reply.read(4096).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        raise HubUnavailableError(f"no console answers on {where}: {exc}") from None
    finally:
        connection.close()
    if reply.status == 401:
        raise AuthenticationError(f"the console on {where} refused the local admin key")
    if reply.status != 200 or not body:
        raise HubUnavailableError(f"the console on {where} gave no login token ({reply.status})")
    return body
