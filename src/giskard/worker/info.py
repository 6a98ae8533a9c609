"""What a worker tells the hub about its environment (as the wire carries it: worker_info)."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
import uuid
from importlib import metadata
from typing import Any

from giskard import __version__
from giskard.identity import environment
from giskard.worker_info import info_from_proto, info_to_proto

WORKER_ID = uuid.uuid4().hex
_IMPORTED_AT = time.time()

__all__ = ["collect_info", "info_from_proto", "info_to_proto", "installed_packages"]


def _process_start_time() -> float:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # psutil cannot read /proc in some sandboxes; the import time is close
        return _IMPORTED_AT


def installed_packages() -> dict[str, str]:
    """Distribution name to version, for the interpreter running this code."""
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    return dict(sorted(packages.items(), key=lambda item: item[0].lower()))


def collect_info(
    hub_address: str, name: str = "", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The worker's info as plain values (the `info` job's result)."""
    uname = platform.uname()
    return {
        "worker_id": WORKER_ID,
        "interpreter": sys.executable,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "uname": {
            "system": uname.system,
            "node": uname.node,
            "release": uname.release,
            "version": uname.version,
            "machine": uname.machine,
        },
        "pid": os.getpid(),
        "started_at": _process_start_time(),
        "hostname": socket.gethostname(),
        "giskard_version": __version__,
        "packages": installed_packages(),
        "hub_address": hub_address,
        "name": name,
        "labels": dict(labels or {}),
        "environment": str(environment()),
    }
