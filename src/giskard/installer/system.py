"""The system-wide worker service for fleets of machines: the systemd template unit
/etc/systemd/system/giskard-worker@.service, one instance per hub
(`giskard-worker@<service name>.service`), each running as an unprivileged user with its
API key passed by LoadCredential= from a root-only file.

Installed by root and managed with the system manager's systemctl; how units are written,
started, stopped and read is the per-user backend's (systemd.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from giskard.address import HubAddress
from giskard.credentials import Credentials
from giskard.errors import ConfigurationError, ExitCode, InstallerError
from giskard.installer.base import Action, InstallOutcome, ServiceSpec, current_spec
from giskard.installer.commands import run_tool
from giskard.installer.detect import manager_problem
from giskard.installer.files import write_atomically, write_secret
from giskard.installer.naming import SERVICE_PREFIX, is_worker_service, service_name
from giskard.installer.ownership import environment_prefixes, environment_problem
from giskard.installer.render import render
from giskard.installer.service import WorkerStatus
from giskard.installer.systemd import Runner, SystemdBackend
from giskard.paths import WORKER_LOG_NAME
from giskard.tls import ChannelSecurity

# Where /etc and /var are: for tests only, which install under a directory of theirs, never
# into the machine's. Not a setting for users: sudo resets the environment, so it would not
# reach a real `sudo giskard worker start -d --system` anyway.
SYSTEM_ROOT_ENV = "GISKARD_SYSTEM_ROOT"
TEMPLATE = f"{SERVICE_PREFIX}@"
DROP_IN = "giskard.conf"
# What systemd accepts in a unit name (unit_name_is_valid), and its length limit.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+@[A-Za-z0-9:_.\\-]*\.service")
_UNIT_NAME_MAX = 255


def system_root() -> Path:
    return Path(os.environ.get(SYSTEM_ROOT_ENV) or "/")


class SystemServiceBackend(SystemdBackend):
    name = "system"
    scope = ()

    def __init__(self, runner: Runner = run_tool, root: Path | None = None) -> None:
        super().__init__(runner)
        root = root or system_root()
        self.unit_dir = root / "etc" / "systemd" / "system"
        self.key_dir = root / "etc" / "giskard-worker"
        # Not in key_dir, which only root may enter: the instance's user reads its CA itself.
        self.ca_dir = root / "etc" / "giskard-worker-ca"
        self.state_dir = root / "var" / "lib" / "giskard-worker"  # the units' StateDirectory=

    @property
    def template_path(self) -> Path:
        return self.unit_dir / f"{TEMPLATE}.service"

    def unit(self, name: str) -> str:
        """`giskard-worker@<name>.service`. Service names are made of [a-z0-9._-] and stay
        short, so they are instance strings as they are: no escaping to undo in `status`."""
        unit = f"{TEMPLATE}{name}.service"
        if not _UNIT_NAME.fullmatch(unit) or len(unit) > _UNIT_NAME_MAX:
            raise InstallerError(f"{name!r} cannot name a systemd unit instance")
        return unit

    def unit_path(self, name: str) -> Path:
        """The instance's drop-in: the user, interpreter and hub of this instance alone."""
        return self.unit_dir / f"{self.unit(name)}.d" / DROP_IN

    def log_file(self, name: str) -> Path:
        return self.state_dir / name / "run" / WORKER_LOG_NAME

    def log_file_denied(self, name: str) -> str:
        # The state directory is the service user's alone (StateDirectoryMode=0700).
        return f"run as root (or as a member of systemd-journal, {self.logs_hint(name)})"

    def key_path(self, name: str) -> Path:
        return self.key_dir / f"{name}.key"

    def ca_path(self, name: str) -> Path:
        return self.ca_dir / f"{name}.ca"

    def render_template(self) -> str:
        context = {"key_dir": str(self.key_dir), "config_exit_code": int(ExitCode.CONFIG)}
        return render("systemd-system.service.j2", context)

    def render_unit(self, spec: ServiceSpec) -> str:
        # The template sets GISKARD_HOME (the instance's state directory) and GISKARD_SERVICE.
        shared = ("GISKARD_HOME", "GISKARD_SERVICE")
        environment = {k: v for k, v in spec.environment().items() if k not in shared}
        context = {
            "name": self.unit(spec.name),
            "hub": spec.address.target,
            "interpreter": spec.interpreter,
            "stop_args": spec.stop_args(),
            "user": spec.run_as,
            "group": spec.run_as_group,
            "argv": spec.argv(log_to_stderr=True),
            "environment": environment,
            # The worker, and the jobs it runs, may not change the code root runs there.
            "read_only": [str(path) for path in environment_prefixes(spec.interpreter)],
        }
        return render("systemd-system-instance.conf.j2", context)

    def files(self, spec: ServiceSpec) -> dict[Path, str]:
        return {self.template_path: self.render_template(), **super().files(spec)}

    def install(self, spec: ServiceSpec) -> InstallOutcome:
        """Converge the instance; when that rewrites the template every instance shares,
        restart the other running instances too: they would keep the old settings, and a
        later start of theirs would find its files as written and say "unchanged"."""
        path = self.template_path
        before = path.read_text() if path.exists() else None
        outcome = super().install(spec)  # writes the template and reloads the manager
        if before is None or before == self.render_template():
            return outcome
        others = [name for name in self.names() if name != spec.name and self._active(name)]
        restarted, failures = self._restart_each(others)
        # Its own drop-in may be as it was: the template's change is an update all the same.
        action = Action.UPDATED if outcome.action is Action.RESTARTED else outcome.action
        return dataclasses.replace(
            outcome, action=action, also_restarted=restarted, restart_failures=failures
        )

    def _restart_each(self, names: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Restart every one of `names`, whichever fails: the units restarted, and why the
        others were not. This instance is installed and running either way."""
        restarted, failures = [], []
        for name in names:
            try:
                self.restart(name)
            except InstallerError as exc:
                failures.append(str(exc))
            else:
                restarted.append(self.unit(name))
        return tuple(restarted), tuple(failures)

    def _active(self, name: str) -> bool:
        return self._show(name, "ActiveState").get("ActiveState") in ("active", "activating")

    def remove_files(self, name: str) -> None:
        drop_in = self.unit_path(name)
        drop_in.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: an administrator's own drop-ins
            drop_in.parent.rmdir()
        self.key_path(name).unlink(missing_ok=True)
        self.store_ca(name, None)
        if not any(self.unit_dir.glob(f"{TEMPLATE}*.service.d")):  # the last instance
            self.template_path.unlink(missing_ok=True)

    def names(self) -> list[str]:
        drop_ins = self.unit_dir.glob(f"{TEMPLATE}*.service.d")
        found = {p.name.removeprefix(TEMPLATE).removesuffix(".service.d") for p in drop_ins}
        found |= self._listed(f"{TEMPLATE}*.service", TEMPLATE)
        return sorted(n for n in found if is_worker_service(n))

    def store_key(self, name: str, key: str) -> bool:
        """Write the key file LoadCredential= reads, root's alone; whether it changed."""
        path, text = self.key_path(name), key + "\n"
        if path.exists() and path.read_text() == text:
            return False
        write_secret(path, text)
        return True

    def store_ca(self, name: str, certificates: bytes | None) -> bool:
        """Keep root's own copy of the CA certificates the instance trusts (None: the
        system's roots, no copy); whether it changed. The instance never reads the CA file
        where the administrator gave it: whoever may replace that file could stand in for
        the hub, take the worker's key and send it jobs."""
        path = self.ca_path(name)
        if (path.read_bytes() if path.exists() else None) == certificates:
            return False
        if certificates is None:
            path.unlink()
            with contextlib.suppress(OSError):  # other instances' copies are there
                self.ca_dir.rmdir()
            return True
        try:
            self.ca_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            os.chmod(self.ca_dir, 0o755)
            write_atomically(path, certificates, mode=0o644)
        except OSError as exc:
            where = f"{self.ca_dir}: {exc.strerror}"
            raise InstallerError(f"cannot store the CA file in {where}") from None
        return True


@dataclass(frozen=True)
class SystemStartReport:
    backend: SystemServiceBackend
    spec: ServiceSpec
    outcome: InstallOutcome


def start_system_service(
    address: HubAddress,
    credentials: Credentials,
    security: ChannelSecurity | None,
    *,
    run_as: str,
    verbose: bool = False,
    job_args: tuple[str, ...] = (),
) -> SystemStartReport:
    """Install and start the instance for `address`, running this environment's interpreter
    as `run_as`. Every check comes before the first file is written."""
    user, group = account(run_as)
    backend = SystemServiceBackend()
    spec = current_spec(address, verbose=verbose)
    spec = dataclasses.replace(spec, run_as=user, run_as_group=group)
    certificates = security.ca_certificates() if security else None
    spec = with_security(backend, spec, security, job_args)
    backend.files(spec)  # a value a unit cannot hold is refused here
    if not credentials.given or credentials.key is None:
        raise ConfigurationError(
            "a system-wide worker needs the hub's API key: --api-key-file FILE, or"
            " $GISKARD_API_KEY kept through sudo (sudo --preserve-env=GISKARD_API_KEY)"
        )
    if os.geteuid() != 0:
        raise ConfigurationError("--system installs a system-wide service: run it as root (sudo)")
    check_root_may_run(spec.interpreter)
    problem = system_manager_problem()
    if problem:
        raise InstallerError(f"cannot install a system service: {problem}")
    outcome = install_instance(backend, spec, credentials.key, certificates)
    return SystemStartReport(backend, spec, outcome)


def with_security(
    backend: SystemServiceBackend,
    spec: ServiceSpec,
    security: ChannelSecurity | None,
    job_args: tuple[str, ...] = (),
) -> ServiceSpec:
    """`spec` running the worker with `security` and `job_args`; a CA file becomes root's
    copy of it (`install_instance` writes it)."""
    if security and security.ca_file:
        security = dataclasses.replace(security, ca_file=str(backend.ca_path(spec.name)))
    extra = (*(security.args() if security else ()), *job_args)
    return dataclasses.replace(spec, extra_args=extra)


def check_root_may_run(interpreter: str) -> None:
    """Refuse an environment that someone other than root may change: root runs its code
    (`upgrade` reads its version and runs pip there)."""
    problem = environment_problem(interpreter)
    if problem:
        raise ConfigurationError(
            f"root would run {interpreter}, which others can change: {problem}"
            " (give the service an environment that only root can write)"
        )


def install_instance(
    backend: SystemServiceBackend,
    spec: ServiceSpec,
    key: str,
    certificates: bytes | None = None,
) -> InstallOutcome:
    """Store the key and the CA certificates (None: the system's roots) and converge the
    instance; a new key or CA alone restarts it too, since systemd hands a credential over
    and the worker reads its CA at start only."""
    changed = backend.store_key(spec.name, key)
    changed = backend.store_ca(spec.name, certificates) or changed
    outcome = backend.install(spec)
    if changed and outcome.action is Action.UNCHANGED:
        backend.restart(spec.name)
        status = backend.status(spec.name)
        outcome = InstallOutcome(Action.UPDATED, pid=status.pid if status else None)
    return outcome


def account(user: str) -> tuple[str, str]:
    """`user` and the name of its primary group; ConfigurationError when there is no such
    user here, or when it is root."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigurationError(
            f"--run-as {user}: there is no such user on this machine"
        ) from None
    if entry.pw_uid == 0:
        # Jobs run whatever code the hub's clients send: never as root.
        raise ConfigurationError(f"--run-as {user}: the worker must run as an unprivileged user")
    try:
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        return entry.pw_name, str(entry.pw_gid)


def system_manager_problem() -> str | None:
    """Why systemd's system manager cannot be used here, or None when it can."""
    if not Path("/run/systemd/system").is_dir():
        return "systemd is not running on this machine"
    return manager_problem((), "the systemd system manager")


def system_statuses() -> list[WorkerStatus]:
    """Every instance of the system service; what its worker says of itself (connected,
    jobs) stays in its state directory, which `status` does not read."""
    backend = SystemServiceBackend()
    found = (backend.status(name) for name in backend.names())
    return [WorkerStatus(status, None, None) for status in found if status is not None]


def stop_system_service(
    address: HubAddress | None, backend: SystemServiceBackend | None = None
) -> list[str]:
    """Stop and remove the instance for `address`, or every instance when None; what was
    stopped."""
    backend = backend or SystemServiceBackend()
    names = backend.names() if address is None else [service_name(address)]
    present = set(backend.names())
    return [
        f"system service {backend.unit(name)}"
        for name in names
        if name in present and backend.stop(name)
    ]
