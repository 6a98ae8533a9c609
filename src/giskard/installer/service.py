"""What the `giskard worker` service commands do, over whichever backends exist here."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from giskard.address import HubAddress
from giskard.credentials import LOCAL_ADMIN_KEY, Credentials
from giskard.errors import AlreadyRunningError, InstallerError
from giskard.identity import environment
from giskard.installer.base import (
    Backend,
    InstallOutcome,
    ServiceSpec,
    ServiceStatus,
    current_spec,
    key_file_of,
    secrets_dir,
)
from giskard.installer.detect import all_backends, choose_backend
from giskard.installer.files import write_secret
from giskard.installer.naming import service_name
from giskard.instance import InstanceState, find_running, remove_stale, running_instances
from giskard.tls import ChannelSecurity

CONNECT_WAIT_S = 5.0


@dataclass(frozen=True)
class StartReport:
    backend: Backend
    fallback_reason: str
    spec: ServiceSpec
    outcome: InstallOutcome
    connected: bool
    linger: str | None  # systemd only: "yes", "no", or None when unknown
    stopped_orphans: tuple[int, ...] = ()  # pids of this service's workers no manager ran


def start_service(
    address: HubAddress,
    credentials: Credentials,
    security: ChannelSecurity | None = None,
    *,
    verbose: bool = False,
    backend: str = "auto",
    enable_linger: bool = False,
    job_args: Sequence[str] = (),
) -> StartReport:
    """Install and start (or confirm) the service for `address`, bound to this environment;
    `job_args` are the worker's job options (--concurrency ...), passed through."""
    chosen, reason = choose_backend(backend)
    name = service_name(address)
    key_file = str(key_file_of(name)) if _keeps_key(credentials) else None
    extra = [*(security.args() if security else []), *job_args]
    spec = current_spec(address, verbose=verbose, api_key_file=key_file, extra_args=extra)
    orphans = _orphans_of(chosen, spec)  # may refuse: before anything is written
    linger = None
    if chosen.name == "systemd":
        from giskard.installer.systemd import SystemdBackend

        assert isinstance(chosen, SystemdBackend)
        if enable_linger:  # first: a request that cannot be met should change nothing
            chosen.enable_linger()
        linger = chosen.linger()
    for orphan in orphans:  # before the new worker, which would find its lock held
        _terminate(orphan)
    _store_key(name, credentials)
    outcome = chosen.install(spec)
    connected = wait_for_connection(chosen, spec, CONNECT_WAIT_S)
    return StartReport(chosen, reason, spec, outcome, connected, linger, tuple(orphans))


def _orphans_of(chosen: Backend, spec: ServiceSpec) -> list[int]:
    """The pids of this service's workers whose manager died; refuses when a worker of this
    environment and hub runs that the service `chosen` does not manage."""
    here = str(environment())
    orphans = []
    for other in find_running(spec.address):
        manager = manager_of(other)
        if manager is None and other.service == spec.name:
            orphans.append(other.pid)
        elif other.environment == here and (manager is None or manager.name != chosen.name):
            where = f" as a {manager.name} service" if manager else ""
            raise AlreadyRunningError(
                f"a worker for {spec.address} from this environment is already running"
                f"{where}: {other.describe()}; stop it first"
            )
    return orphans


def manager_of(worker: InstanceState) -> Backend | None:
    """The backend whose service runs `worker`; None for a foreground worker or an orphan."""
    if not worker.service:
        return None
    for backend in all_backends():
        status = backend.status(worker.service)
        if status is not None and runs(status, worker):
            return backend
    return None


def runs(status: ServiceStatus, worker: InstanceState) -> bool:
    """Whether the service `status` runs `worker`: as its main process (systemd, launchd)
    or as the child of its supervisor (the process backend)."""
    return (
        worker.service == status.name
        and status.pid is not None
        and status.pid in (worker.pid, worker.parent_pid)
    )


def wait_for_connection(backend: Backend, spec: ServiceSpec, timeout_s: float) -> bool:
    """Whether the service's own worker reports a connection to the hub within `timeout_s`;
    raises ServiceFailedError when the service stops meanwhile (a bad key, a refused
    hello, another worker holding the lock...)."""
    from giskard.installer.systemd import ServiceFailedError

    deadline = time.monotonic() + timeout_s
    while True:
        status = backend.status(spec.name)
        if status is None or status.state not in ("running", "starting"):
            raise ServiceFailedError(
                f"the worker of {spec.name} stopped right after starting"
                f" ({status.state if status else 'gone'})",
                backend.log_lines(spec.name, 15),
            )
        if any(state.connected and runs(status, state) for state in running_instances()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _keeps_key(credentials: Credentials) -> bool:
    """Whether the service needs a key of its own: one was given, and not the local admin
    key, which the worker finds by itself."""
    return credentials.key is not None and credentials.source != LOCAL_ADMIN_KEY


def _store_key(name: str, credentials: Credentials) -> None:
    """Put a key given to `start -d` where the service will read it; remove one stored by an
    earlier start -d when the worker finds its key by itself, or has none."""
    if not _keeps_key(credentials):
        with contextlib.suppress(OSError):
            key_file_of(name).unlink()
        return
    assert credentials.key is not None  # _keeps_key
    write_secret(key_file_of(name), credentials.key + "\n")


def stop_service(address: HubAddress) -> list[str]:
    """Stop and remove the service for `address` on every backend, and the orphans its
    manager left running; what was stopped."""
    name = service_name(address)
    stopped = [
        f"{backend.name} service {name}"
        for backend in all_backends()
        if name in backend.names() and backend.stop(name)
    ]
    for state in find_running(address):
        if state.service == name:  # its service is gone: an orphan
            _terminate(state.pid)
            stopped.append(f"orphaned worker of {name} pid {state.pid}")
    key_file_of(name).unlink(missing_ok=True)
    return stopped


def stop_all() -> list[str]:
    """Stop every worker of this user: services of all backends, orphans, foreground ones."""
    stopped = [
        f"{backend.name} service {name}"
        for backend in all_backends()
        for name in backend.names()
        if backend.stop(name)
    ]
    for state in running_instances():  # in the foreground, or orphaned
        how = f"orphaned worker of {state.service}" if state.service else "foreground worker"
        stopped.append(f"{how} pid {state.pid} ({state.hub})")
        _terminate(state.pid)
    remove_stale()
    for key_file in secrets_dir().glob("*.key"):
        key_file.unlink()
    return stopped


def restart_service(address: HubAddress, *, system: bool = False) -> str:
    backend = find_backend(address, system=system)
    backend.restart(service_name(address))
    return f"{backend.name} service {service_name(address)}"


@dataclass(frozen=True)
class WorkerStatus:
    service: ServiceStatus
    connected: bool | None
    linger: str | None
    jobs: tuple[int, int] | None = None  # (running, concurrency), when the worker runs
    worker: InstanceState | None = None  # what the running worker says of itself

    @property
    def paused(self) -> bool:
        """Paused by the hub's admin (the worker says so in its state)."""
        return self.worker is not None and self.worker.paused


def statuses() -> list[WorkerStatus]:
    """Every worker service of this user, and every worker running outside one: in the
    foreground, or orphaned by a service manager that died."""
    found: list[WorkerStatus] = []
    instances = list(running_instances())
    managed: set[int] = set()
    for backend in all_backends():
        linger = getattr(backend, "linger", lambda: None)()
        for name in backend.names():
            status = backend.status(name)
            if status is None:
                continue
            worker = next((s for s in instances if runs(status, s)), None)
            if worker is not None:  # the worker's own pid, not its supervisor's
                managed.add(worker.pid)
                status = dataclasses.replace(status, pid=worker.pid)
            connected = worker.connected if worker else (False if status.running else None)
            jobs = (worker.running_jobs, worker.concurrency) if worker else None
            found.append(WorkerStatus(status, connected, linger, jobs, worker))
    for state in instances:
        if state.pid not in managed:
            jobs = (state.running_jobs, state.concurrency)
            status = _unmanaged_status(state)
            found.append(WorkerStatus(status, state.connected, None, jobs, state))
    return found


def find_backend(address: HubAddress, *, system: bool = False) -> Backend:
    """The backend holding the service for `address`: this user's, or with `system` the
    system-wide service."""
    name = service_name(address)
    if system:
        from giskard.installer.system import SystemServiceBackend

        candidates: list[Backend] = [SystemServiceBackend()]
    else:
        candidates = all_backends()
    for backend in candidates:
        if name in backend.names():
            return backend
    where = " system-wide" if system else ""
    status = "giskard worker status" + (" --system" if system else "")
    raise InstallerError(f"no{where} worker service for {address} (see `{status}`)")


def _unmanaged_status(state: InstanceState) -> ServiceStatus:
    return ServiceStatus(
        backend="unmanaged" if state.service else "foreground",
        name=state.service or "-",
        state="running",
        pid=state.pid,
        since=state.started_at,
        interpreter=state.interpreter,
        hub=state.hub,
        detail="orphan: its service manager is gone; stop it with `giskard worker stop`"
        if state.service
        else "",
    )


def _terminate(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM a foreground worker (it drains), and SIGKILL it if it outlives `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(state.pid == pid for state in running_instances()):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.05)
