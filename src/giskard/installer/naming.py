"""Service names: stable, derived from the hub address, recomputable by `stop -h H -p P`."""

from __future__ import annotations

import hashlib
import re

from giskard.address import DEFAULT_HOST, DEFAULT_PORT, HubAddress
from giskard.identity import canonical_hub

SERVICE_PREFIX = "giskard-worker"
LAUNCHD_PREFIX = "ai.giskard.worker"
_UNSAFE = re.compile(r"[^a-z0-9.]+")
# A DNS name may have 253 characters, a file name 255 bytes: the lock, state, key and unit
# files add their suffixes to the service name, so the host part stays one label long.
_MAX_HOST_CHARS = 63


def service_name(address: HubAddress) -> str:
    """`giskard-worker` for the default hub, `giskard-worker-<host>-<port>` otherwise.

    The hub is taken in its canonical spelling (every loopback spelling is `localhost`).
    Host names are case-insensitive, so lowercase loses nothing; anything else outside
    [a-z0-9.] is replaced, a long host is cut, and then a short hash of the exact address
    keeps names distinct.
    """
    address = canonical_hub(address)
    if address == HubAddress(DEFAULT_HOST, DEFAULT_PORT):
        return SERVICE_PREFIX
    host = address.host
    safe_host = _UNSAFE.sub("_", host).strip("_.")[:_MAX_HOST_CHARS].rstrip("_.") or "host"
    name = f"{SERVICE_PREFIX}-{safe_host}-{address.port}"
    if safe_host != host:
        digest = hashlib.sha256(f"{host}:{address.port}".encode()).hexdigest()[:8]
        name = f"{name}-{digest}"
    return name


def launchd_label(name: str) -> str:
    """`ai.giskard.worker` for `giskard-worker`, `ai.giskard.worker.<suffix>` for the others."""
    suffix = name.removeprefix(SERVICE_PREFIX).lstrip("-")
    return f"{LAUNCHD_PREFIX}.{suffix}" if suffix else LAUNCHD_PREFIX


def name_of_label(label: str) -> str:
    """The inverse of `launchd_label`."""
    suffix = label.removeprefix(LAUNCHD_PREFIX).lstrip(".")
    return f"{SERVICE_PREFIX}-{suffix}" if suffix else SERVICE_PREFIX


def is_worker_service(name: str) -> bool:
    return name == SERVICE_PREFIX or name.startswith(f"{SERVICE_PREFIX}-")
