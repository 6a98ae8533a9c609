"""One worker per (environment, hub): an exclusive lock held for the worker's whole life.

"Lock free" means "not running", so a stale file can never block a start or point at a
stranger's pid. Beside the lock, a small JSON file says who holds it and whether it is
connected; it is trusted only while the lock is held. A worker that the hub's admin drained or
stopped leaves a third file saying so (StopRecord), for `worker status`, until it starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from giskard import lockfile
from giskard.address import HubAddress
from giskard.errors import AlreadyRunningError
from giskard.identity import canonical_hub, environment
from giskard.installer.files import write_atomically
from giskard.installer.naming import service_name
from giskard.paths import run_dir

# A probe (status, start -d) holds a lock for microseconds; a starting worker retries this long
# before concluding that another worker holds it.
ACQUIRE_PATIENCE_S = 1.0


@dataclass(frozen=True)
class InstanceState:
    pid: int
    interpreter: str  # the executable it was started with, for people to read
    environment: str  # with `hub`, the worker's identity
    hub: str  # the canonical spelling of the hub's address
    started_at: float
    service: str  # the service name when run by a service manager, else ""
    parent_pid: int  # the service manager's process, for the process backend's supervisor
    connected: bool = False
    state_since: float = 0.0
    running_jobs: int = 0
    concurrency: int = 1
    paused: bool = False  # by the hub's admin
    name: str = ""  # the worker's name on its hub
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        how = f"service {self.service}" if self.service else "in the foreground"
        return f"pid {self.pid} ({how}, {self.interpreter}, started {started})"


def instances_dir() -> Path:
    return run_dir() / "workers"


def instance_key(address: HubAddress, prefix: Path) -> str:
    """Short whatever the host: the service name is, and the environment is hashed."""
    digest = hashlib.sha256(str(prefix).encode()).hexdigest()[:10]
    return f"{service_name(address)}--{digest}"


class InstanceLock:
    """Held by a running worker; `acquire` refuses a second worker for the same pair."""

    def __init__(
        self, address: HubAddress, name: str = "", labels: dict[str, str] | None = None
    ) -> None:
        prefix = environment()
        key = instance_key(address, prefix)
        self.lock_path = instances_dir() / f"{key}.lock"
        self.state_path = instances_dir() / f"{key}.json"
        self.stop_path = instances_dir() / f"{key}{STOP_SUFFIX}"
        self._state = InstanceState(
            pid=os.getpid(),
            interpreter=sys.executable,
            environment=str(prefix),
            hub=canonical_hub(address).target,
            started_at=time.time(),
            service=os.environ.get("GISKARD_SERVICE", ""),
            parent_pid=os.getppid(),
            name=name,
            labels=dict(labels or {}),
        )
        self._fd: int | None = None

    def acquire(self) -> None:
        instances_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        while (fd := lockfile.try_lock(self.lock_path)) is None:
            if time.monotonic() > deadline:
                holder = read_state(self.state_path)
                who = holder.describe() if holder else "another process"
                raise AlreadyRunningError(
                    f"a worker for {self._state.hub} from the environment "
                    f"{self._state.environment} is already running: {who}"
                )
            time.sleep(0.05)
        self._fd = fd
        self.stop_path.unlink(missing_ok=True)  # a fresh start: the last stop is history
        self._write(self._state)

    def set_connected(self, connected: bool) -> None:
        if self._fd is not None and connected != self._state.connected:
            # A new session is never paused: a pause lasts as long as the session it paused.
            changed = replace(self._state, connected=connected, paused=False)
            self._write(replace(changed, state_since=time.time()))

    def set_paused(self, paused: bool) -> None:
        if self._fd is not None and paused != self._state.paused:
            self._write(replace(self._state, paused=paused))

    def record_stop(self, reason: str) -> None:
        """Say why the worker is exiting (the hub's admin drained or stopped it)."""
        state = self._state
        record = StopRecord(state.pid, state.hub, state.service, state.interpreter, reason)
        write_atomically(self.stop_path, json.dumps(asdict(record)), mode=0o600)

    def set_jobs(self, running: int, concurrency: int) -> None:
        state = self._state
        if self._fd is not None and (running, concurrency) != (
            state.running_jobs,
            state.concurrency,
        ):
            self._write(replace(state, running_jobs=running, concurrency=concurrency))

    def release(self) -> None:
        if self._fd is None:
            return
        self.state_path.unlink(missing_ok=True)
        lockfile.release(self.lock_path, self._fd)
        self._fd = None

    def _write(self, state: InstanceState) -> None:
        self._state = state
        write_atomically(self.state_path, json.dumps(asdict(state)), mode=0o600)


STOP_SUFFIX = ".stopped"


@dataclass(frozen=True)
class StopRecord:
    """Why a worker that is not running now stopped: left by it as it exited."""

    pid: int
    hub: str
    service: str  # as in InstanceState
    interpreter: str
    reason: str  # e.g. "Drained by admin key 'ops' of the hub at localhost:40051"
    stopped_at: float = field(default_factory=time.time)


def stop_records() -> list[StopRecord]:
    """The workers that stopped on the hub's order and have not started since, oldest first."""
    records = []
    for path in instances_dir().glob(f"*{STOP_SUFFIX}"):
        try:
            records.append(StopRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(records, key=lambda record: record.stopped_at)


def read_state(path: Path) -> InstanceState | None:
    try:
        return InstanceState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_instances() -> Iterator[InstanceState]:
    """The workers of this user running now (any backend, any hub)."""
    for lock_path in sorted(instances_dir().glob("*.lock")):
        if lockfile.is_held(lock_path):
            state = read_state(lock_path.with_suffix(".json"))
            if state is not None:
                yield state


def remove_stale() -> int:
    """Delete the files of workers that died without cleaning up; how many were removed."""
    removed = 0
    for lock_path in sorted(instances_dir().glob("*.lock")):
        fd = lockfile.try_lock(lock_path)
        if fd is not None:
            lock_path.with_suffix(".json").unlink(missing_ok=True)
            lockfile.release(lock_path, fd)
            removed += 1
    return removed


def find_running(address: HubAddress) -> list[InstanceState]:
    """Running workers for `address`, whichever its spelling, from any environment."""
    hub = canonical_hub(address).target
    return [state for state in running_instances() if state.hub == hub]
