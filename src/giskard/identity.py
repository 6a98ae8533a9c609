"""A worker's identity: (hub, environment), whatever the spelling of either.

The environment is the resolved `sys.prefix`: `python`, `python3`, `python3.11`, the
console script and a symlinked path to the venv all run one environment, so they are one
worker and one service. The hub is its address with the spellings of this machine's
loopback (`localhost`, `127.0.0.1`, `::1`) made one.
"""

from __future__ import annotations

import filecmp
import hashlib
import ipaddress
import os
import re
import socket
import sys
from pathlib import Path

from giskard.address import DEFAULT_HOST, HubAddress
from giskard.paths import giskard_home

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "localhost.localdomain"})
_LOOPBACK_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
)


def canonical_hub(address: HubAddress) -> HubAddress:
    """One spelling per hub: lowercase, no trailing dot, IPv6 compressed, and `localhost`
    for the loopback spellings of a port (other 127.x addresses are other listeners)."""
    host = address.host.lower()
    host = host.rstrip(".") or host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host in _LOOPBACK_NAMES or ip in _LOOPBACK_ADDRESSES:
        return HubAddress(DEFAULT_HOST, address.port)
    return HubAddress(str(ip) if ip else host, address.port)


def environment() -> Path:
    """The Python environment this process runs in: its resolved prefix."""
    return Path(sys.prefix).resolve()


def default_worker_name() -> str:
    """The name a worker has without --name: the same for every start of one environment on
    one machine (so a restarted worker comes back under its name), different for another
    environment, host or $GISKARD_HOME (another user's workers, on a shared Python). Readable:
    `<host>-<environment's directory>-<6 hex digits>`, at most 63 characters."""
    host = socket.gethostname()
    home = giskard_home().resolve()
    digest = hashlib.sha256(f"{host}\0{environment()}\0{home}".encode()).hexdigest()[:6]
    readable = [_name_part(host.split(".")[0], 24), _name_part(environment().name, 24)]
    return "-".join([part for part in readable if part] + [digest])


def _name_part(text: str, max_chars: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-._")[:max_chars]


def canonical_executable() -> str:
    """The one executable a service of this environment runs, whichever one started it.

    The rule: the first of `bin/python`, `bin/python3`, `bin/pythonX.Y` under the resolved
    prefix that runs this very interpreter (the same file once symlinks are followed, or an
    identical copy, as `venv --copies` makes); `sys.executable` when none does (a base
    install whose `python` is another version, an unusual layout). Not resolved further: a
    venv's python must keep its path to find its `pyvenv.cfg`.
    """
    bin_dir = environment() / "bin"
    major, minor = sys.version_info[:2]
    for name in ("python", f"python{major}", f"python{major}.{minor}"):
        candidate = bin_dir / name
        if _runs_this_interpreter(candidate):
            return str(candidate)
    return sys.executable


def _runs_this_interpreter(candidate: Path) -> bool:
    ours = os.path.realpath(sys.executable)
    try:
        return os.path.realpath(candidate) == ours or filecmp.cmp(candidate, ours, shallow=False)
    except OSError:
        return False
