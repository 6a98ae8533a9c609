"""The hub's private Unix socket for same-user clients, owned by one hub at a time.

Clients find it by port alone (credentials.local_socket_path), so two hubs of one
GISKARD_HOME on one port (say 127.0.0.1:P and [::1]:P) would share it: the second would take
it over, and delete it when it stops. A lock held for the hub's life makes the socket one
hub's: the second hub is refused, and a socket found without a live holder is a dead hub's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from giskard import lockfile
from giskard.credentials import local_socket_path
from giskard.errors import ConfigurationError

logger = logging.getLogger(__name__)

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last one a NUL


@dataclass(frozen=True)
class LocalSocket:
    path: Path
    _lock_path: Path
    _lock_fd: int

    @classmethod
    def claim(cls, port: int, home: Path | None) -> LocalSocket | None:
        """The socket path for `port`, ours until `release()`; None if a Unix socket cannot
        have that path. Raises ConfigurationError if another hub owns it."""
        path = local_socket_path(port, home)
        if len(str(path)) > UNIX_PATH_MAX:
            logger.warning("Not listening on %s: the path is too long for a Unix socket", path)
            return None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        lock_path = path.with_name(f"{path.name}.lock")
        lock_fd = lockfile.try_lock(lock_path)
        if lock_fd is None:
            raise ConfigurationError(
                f"another hub of this GISKARD_HOME serves port {port} (it owns {path}):"
                " stop it, or give this hub another port"
            )
        # Any socket there is a dead hub's: a live one would hold the lock.
        path.unlink(missing_ok=True)
        return cls(path, lock_path, lock_fd)

    def release(self) -> None:
        """Remove the socket, then let another hub have the path."""
        self.path.unlink(missing_ok=True)
        lockfile.release(self._lock_path, self._lock_fd)
