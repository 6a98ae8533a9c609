"""The contract every service backend (systemd, launchd, the process fallback) fulfils.

A backend installs the foreground worker (`python -m giskard.cli worker start ...`) as a
per-user service bound to one environment through its canonical executable, and leaves
daemonisation, restart on failure and log rotation to the service manager. One service per
hub: its name comes from the address, in its canonical spelling.
"""

from __future__ import annotations

import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from giskard.address import DEFAULT_HOST, DEFAULT_PORT, HubAddress
from giskard.identity import canonical_executable, canonical_hub
from giskard.installer.naming import service_name
from giskard.paths import giskard_home, worker_log_path


@dataclass(frozen=True)
class ServiceSpec:
    """What to run: a worker for `address`, bound to `interpreter`, with the install-time PATH."""

    address: HubAddress
    interpreter: str
    verbose: bool
    path: str
    home: str
    giskard_home: str
    # The worker reads its API key from this 0600 file: never in argv, unit or plist.
    api_key_file: str | None = None
    # Options of the worker command that say how to reach the hub (--tls, --ca-file...).
    extra_args: tuple[str, ...] = ()
    # The system-wide service runs as this user and group; a per-user one as its user.
    run_as: str | None = None
    run_as_group: str | None = None

    @property
    def name(self) -> str:
        return service_name(self.address)

    def argv(self, *, log_to_stderr: bool) -> list[str]:
        """The foreground worker command the service manager runs."""
        argv = [self.interpreter, "-m", "giskard.cli", "worker", "start", *self.address_args()]
        if self.verbose:
            argv.append("--verbose")
        if self.api_key_file:
            argv += ["--api-key-file", self.api_key_file]
        argv += self.extra_args
        if not log_to_stderr:
            argv.append("--no-log-stderr")
        return argv

    def address_args(self) -> list[str]:
        return ["-h", self.address.host, "-p", str(self.address.port)]

    def stop_args(self) -> str:
        """What to add to `giskard worker stop` to stop this worker."""
        default = HubAddress(DEFAULT_HOST, DEFAULT_PORT)
        return "" if self.address == default else " " + " ".join(self.address_args())

    def environment(self) -> dict[str, str]:
        return {
            "PYTHONUNBUFFERED": "1",
            "PATH": self.path,
            "GISKARD_HOME": self.giskard_home,
            "GISKARD_SERVICE": self.name,
        }


def secrets_dir() -> Path:
    return giskard_home() / "secrets"


def key_file_of(name: str) -> Path:
    """Where the service `name` finds its API key."""
    return secrets_dir() / f"{name}.key"


def current_spec(
    address: HubAddress,
    *,
    verbose: bool = False,
    api_key_file: str | None = None,
    extra_args: Sequence[str] = (),
) -> ServiceSpec:
    """The spec for this environment, whichever of its executables runs this, and for the
    hub in its canonical spelling: so every way of naming the two gives the same service."""
    interpreter = canonical_executable()
    return ServiceSpec(
        address=canonical_hub(address),
        interpreter=interpreter,
        verbose=verbose,
        path=_service_path(os.path.dirname(interpreter)),
        home=str(Path.home()),
        giskard_home=str(giskard_home().resolve()),
        api_key_file=api_key_file,
        extra_args=tuple(extra_args),
    )


def _service_path(bin_dir: str) -> str:
    """The service manager has neither the shell's PATH nor a venv's activation: capture it,
    with the environment's bin directory first so that its tools win, and once: the same
    directory reached through a symlink (a venv activated by another path) is dropped, so
    that every way into the environment gives the same service."""
    ours = os.path.realpath(bin_dir)
    shell = os.environ.get("PATH", "").split(os.pathsep)
    entries = [bin_dir, *(e for e in shell if e and os.path.realpath(e) != ours)]
    return os.pathsep.join(dict.fromkeys(entries))


class Action(enum.Enum):
    INSTALLED = "installed and started"
    UNCHANGED = "already running, unchanged"
    REBOUND = "rebound to a new interpreter and restarted"
    UPDATED = "updated and restarted"
    RESTARTED = "was not running; started"


@dataclass(frozen=True)
class InstallOutcome:
    action: Action
    pid: int | None = None
    previous_interpreter: str | None = None
    # Other services restarted because a file they share changed (the system template).
    also_restarted: tuple[str, ...] = ()
    # Those of them that failed to restart: why, one line each.
    restart_failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceStatus:
    backend: str
    name: str
    state: str  # "running", "failed", "stopped", "activating", ...
    pid: int | None = None
    since: float | None = None
    interpreter: str | None = None
    hub: str | None = None
    detail: str = ""  # e.g. systemd's Result or an orphan's nature

    @property
    def running(self) -> bool:
        return self.state == "running"


class Backend(ABC):
    """One service manager. Every method raises InstallerError with one line on failure."""

    name: str

    @abstractmethod
    def install(self, spec: ServiceSpec) -> InstallOutcome:
        """Converge: install, enable and start; a no-op when already so; rebind if needed."""

    @abstractmethod
    def stop(self, name: str) -> bool:
        """Stop the service and remove its files; False when there was nothing to stop."""

    @abstractmethod
    def restart(self, name: str) -> None: ...

    def halt(self, name: str) -> None:
        """Stop the service for a while, leaving it installed: `restart` starts it again.
        Where stopping would forget how to start it again (launchd's bootout), it keeps
        running and `restart` replaces its worker."""
        return None

    @abstractmethod
    def status(self, name: str) -> ServiceStatus | None:
        """None when this backend knows no such service."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every worker service of this user, orphans included (file without a running
        service, running service whose file is gone, leftover state)."""

    @abstractmethod
    def log_lines(self, name: str, lines: int) -> list[str]:
        """The last `lines` lines of the service's log."""

    @abstractmethod
    def follow_logs(self, name: str, lines: int) -> int:
        """Print the log and follow it until interrupted; returns an exit code."""

    def logs_hint(self, name: str) -> str:
        """Where a user reads this service's logs."""
        return f"tail -f {worker_log_path()}"
