"""systemd's readiness protocol, in the standard library: a datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

_address: str | None = None


def _socket_address() -> str | None:
    global _address
    if _address is None:
        _address = os.environ.get("NOTIFY_SOCKET") or ""
        # Children (data loaders, pools) must not be able to signal readiness for us.
        os.environ.pop("NOTIFY_SOCKET", None)
    if not _address:
        return None
    # A leading "@" names a socket in the abstract namespace.
    return "\0" + _address[1:] if _address.startswith("@") else _address


def notify(*fields: str) -> bool:
    """Send e.g. notify("READY=1", "STATUS=connected"); False when not under systemd."""
    address = _socket_address()
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True
