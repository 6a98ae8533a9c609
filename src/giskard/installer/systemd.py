"""systemd user units: ~/.config/systemd/user/<name>.service, managed with systemctl --user."""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from giskard.errors import ExitCode, InstallerError
from giskard.installer.base import Action, Backend, InstallOutcome, ServiceSpec, ServiceStatus
from giskard.installer.commands import Result, run_tool
from giskard.installer.files import read_tail, write_atomically
from giskard.installer.naming import SERVICE_PREFIX, is_worker_service
from giskard.installer.render import render
from giskard.paths import worker_log_path

# `systemctl restart` of a Type=notify unit waits for READY=1; the worker sends it within a
# second or two, plus the interpreter's start-up.
START_TIMEOUT_S = 90.0
_SHOW_PROPERTIES = "LoadState,ActiveState,SubState,MainPID,Result,ExecMainStatus,FragmentPath"

Runner = Callable[..., Result]


class ServiceFailedError(InstallerError):
    """The service did not start; carries the last log lines for the user."""

    def __init__(self, message: str, log_lines: list[str]) -> None:
        super().__init__(message)
        self.log_lines = log_lines


class SystemdBackend(Backend):
    """Per-user units of the user's own manager; the system-wide service (system.py)
    changes only where its files live, its unit names and the manager it talks to."""

    name = "systemd"
    # The arguments of systemctl and journalctl that choose the manager.
    scope: tuple[str, ...] = ("--user",)

    def __init__(self, runner: Runner = run_tool) -> None:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        self.unit_dir = Path(config_home) / "systemd" / "user"
        self._runner = runner

    def unit(self, name: str) -> str:
        """The unit that runs the service `name`."""
        return f"{name}.service"

    def unit_path(self, name: str) -> Path:
        """The file that holds the service's own settings (its `# Interpreter:` line)."""
        return self.unit_dir / f"{name}.service"

    def files(self, spec: ServiceSpec) -> dict[Path, str]:
        """Every file `install` writes, with its text."""
        return {self.unit_path(spec.name): self.render_unit(spec)}

    def remove_files(self, name: str) -> None:
        self.unit_path(name).unlink(missing_ok=True)

    def log_file(self, name: str) -> Path:
        """The worker's own log, read where the journal has nothing."""
        return worker_log_path()

    def render_unit(self, spec: ServiceSpec) -> str:
        return render(
            "systemd.service.j2",
            {
                "hub": spec.address.target,
                "interpreter": spec.interpreter,
                "stop_args": spec.stop_args(),
                "argv": spec.argv(log_to_stderr=True),
                "environment": spec.environment(),
                "config_exit_code": int(ExitCode.CONFIG),
            },
        )

    def install(self, spec: ServiceSpec) -> InstallOutcome:
        files = self.files(spec)
        previous = {path: path.read_text() if path.exists() else None for path in files}
        shown = self._show(spec.name)
        if previous == files and shown.get("ActiveState") == "active":
            return InstallOutcome(Action.UNCHANGED, pid=_pid(shown))
        for path, text in files.items():
            write_atomically(path, text, mode=0o644)
        unit = self.unit(spec.name)
        self._systemctl("daemon-reload", check=True)
        # A unit that hit its start limit refuses to start until this is reset.
        self._systemctl("reset-failed", unit)
        self._systemctl("enable", unit, check=True)
        result = self._systemctl("restart", unit, timeout_s=START_TIMEOUT_S)
        shown = self._show(spec.name)
        if not result.ok or shown.get("ActiveState") != "active":
            raise ServiceFailedError(
                f"the service {spec.name} failed to start ({_failure(shown, result)})",
                self.log_lines(spec.name, 15),
            )
        path = self.unit_path(spec.name)
        previous_text, text = previous[path], files[path]
        interpreter = _interpreter_of(previous_text) if previous_text else None
        action = _action(previous_text, text, interpreter, spec)
        return InstallOutcome(action, _pid(shown), interpreter)

    def stop(self, name: str) -> bool:
        path = self.unit_path(name)
        shown = self._show(name)
        # A unit whose file is gone reads "not-found" after any daemon-reload, yet may run.
        running = shown.get("ActiveState") in ("active", "activating", "deactivating", "reloading")
        loaded = running or shown.get("LoadState") not in (None, "", "not-found")
        if not loaded and not path.exists():
            return False
        unit = self.unit(name)
        if loaded:
            result = self._systemctl("disable", "--now", unit, timeout_s=60)
            if not result.ok and not path.exists():  # disable needs the file; stop does not
                result = self._systemctl("stop", unit, timeout_s=60)
            if not result.ok:
                raise InstallerError(f"cannot stop {name}: {result.first_error_line()}")
        self.remove_files(name)
        self._systemctl("daemon-reload", check=True)
        self._systemctl("reset-failed", unit)
        return True

    def halt(self, name: str) -> None:
        """Stop the service (the worker drains) and leave it installed and enabled."""
        result = self._systemctl("stop", self.unit(name), timeout_s=60)
        if not result.ok:
            raise InstallerError(f"cannot stop {name}: {result.first_error_line()}")

    def restart(self, name: str) -> None:
        if not self.unit_path(name).exists():
            raise InstallerError(f"no systemd service {name}")
        self._systemctl("reset-failed", self.unit(name))
        result = self._systemctl("restart", self.unit(name), timeout_s=START_TIMEOUT_S)
        if not result.ok:
            shown = self._show(name)
            raise ServiceFailedError(
                f"the service {name} failed to restart ({_failure(shown, result)})",
                self.log_lines(name, 15),
            )

    def status(self, name: str) -> ServiceStatus | None:
        path = self.unit_path(name)
        shown = self._show(name)
        if shown.get("LoadState") in (None, "", "not-found") and not path.exists():
            return None
        text = path.read_text() if path.exists() else ""
        return ServiceStatus(
            backend=self.name,
            name=name,
            state=_state(shown),
            pid=_pid(shown),
            since=_timestamp(self._show(name, "ActiveEnterTimestamp", unix=True)),
            interpreter=_interpreter_of(text),
            hub=_comment(text, "Hub"),
            detail="" if path.exists() else "orphan: running, but its unit file is gone",
        )

    def names(self) -> list[str]:
        found = {p.stem for p in self.unit_dir.glob(f"{SERVICE_PREFIX}*.service")}
        return sorted(
            n
            for n in found | self._listed(f"{SERVICE_PREFIX}*.service", "")
            if is_worker_service(n)
        )

    def _listed(self, pattern: str, prefix: str) -> set[str]:
        """The services whose units the manager knows (running ones whose file is gone too)."""
        listed = self._systemctl("list-units", "--all", "--plain", "--no-legend", pattern)
        units = (line.split()[0] for line in listed.stdout.splitlines() if line.split())
        return {u.removeprefix(prefix).removesuffix(".service") for u in units}

    def log_lines(self, name: str, lines: int) -> list[str]:
        problem, output = self._journal(name, lines)
        if problem is None:
            return output
        log_file = self.log_file(name)
        tail = read_tail(log_file, lines, denied=self.log_file_denied(name))
        return [f"({problem}; showing {log_file})", *tail]

    def follow_logs(self, name: str, lines: int) -> int:
        problem, _ = self._journal(name, 1)
        if problem is not None:
            from giskard.installer.files import follow_file

            print(f"({problem}; following {self.log_file(name)})", flush=True)
            return follow_file(self.log_file(name), lines, denied=self.log_file_denied(name))
        argv = ["journalctl", *self.scope, "-u", self.unit(name), "-f", "-n", str(lines)]
        try:
            return subprocess.run(
                [*argv, "--no-pager"], stdin=subprocess.DEVNULL, check=False
            ).returncode
        except KeyboardInterrupt:  # how a user stops following: not an error
            return 0

    def logs_hint(self, name: str) -> str:
        return " ".join(["journalctl", *self.scope, "-u", self.unit(name).removesuffix(".service")])

    def log_file_denied(self, name: str) -> str:
        """Why this user may not read the worker's own log: it is theirs, so a mode."""
        return "permission denied"

    def linger(self) -> str | None:
        """ "yes", "no", or None when logind cannot tell."""
        try:
            result = run_tool(
                ["loginctl", "show-user", getpass.getuser(), "-p", "Linger", "--value"],
                timeout_s=10,
            )
        except InstallerError:
            return None
        value = result.stdout.strip()
        return value if result.ok and value in ("yes", "no") else None

    def enable_linger(self) -> None:
        result = run_tool(["loginctl", "enable-linger", getpass.getuser()], timeout_s=30)
        if not result.ok or self.linger() != "yes":
            raise InstallerError(f"could not enable linger: {result.first_error_line()}")

    def _journal(self, name: str, lines: int) -> tuple[str | None, list[str]]:
        argv = ["journalctl", *self.scope, "-u", self.unit(name), "-n", str(lines), "--no-pager"]
        result = self._runner([*argv, "-o", "short-iso"], timeout_s=20)
        text = (result.stderr + result.stdout).strip()
        # Per-user journal files exist only where journald stores them persistently.
        journal, why = ("the user journal", "journald keeps no per-user files here")
        if not self.scope:
            journal, why = ("the journal", "not root, nor in the systemd-journal group")
        if "insufficient permissions" in text or "No journal files" in text:
            return f"{journal} is not readable ({why})", []
        if not result.ok:
            return f"journalctl failed: {result.first_error_line()}", []
        entries = [line for line in result.stdout.splitlines() if not line.startswith("-- ")]
        if not entries:
            maybe = " (journald may keep no user files)" if self.scope else ""
            return f"{journal} has no entries for it{maybe}", []
        return None, entries

    def _show(self, name: str, properties: str = _SHOW_PROPERTIES, *, unix: bool = False) -> dict:
        argv = ["show", self.unit(name), "-p", properties]
        if unix:
            argv.append("--timestamp=unix")
        result = self._systemctl(*argv)
        pairs = (line.partition("=") for line in result.stdout.splitlines())
        return {key: value for key, _, value in pairs if key}

    def _systemctl(self, *args: str, check: bool = False, timeout_s: float = 30.0) -> Result:
        argv = ["systemctl", *self.scope, "--no-pager", *args]
        return self._runner(argv, check=check, timeout_s=timeout_s)


def _action(
    previous_text: str | None, text: str, previous: str | None, spec: ServiceSpec
) -> Action:
    if previous_text is None:
        return Action.INSTALLED
    if previous and previous != spec.interpreter:
        return Action.REBOUND
    return Action.UPDATED if previous_text != text else Action.RESTARTED


def _comment(text: str | None, key: str) -> str | None:
    for line in (text or "").splitlines():
        if line.startswith(f"# {key}: "):
            return line.removeprefix(f"# {key}: ")
    return None


def _interpreter_of(text: str | None) -> str | None:
    return _comment(text, "Interpreter")


def _pid(shown: dict) -> int | None:
    pid = int(shown.get("MainPID") or 0)
    return pid or None


def _state(shown: dict) -> str:
    active, sub = shown.get("ActiveState", ""), shown.get("SubState", "")
    if active == "active":
        return "running"
    if active in ("activating", "reloading"):
        return "restarting" if sub == "auto-restart" else "starting"
    if active == "failed":
        return "failed"
    return "stopped"


def _timestamp(shown: dict) -> float | None:
    value = shown.get("ActiveEnterTimestamp", "")
    return float(value[1:]) if value.startswith("@") else None


def _failure(shown: dict, result: Result) -> str:
    status = shown.get("ExecMainStatus")
    parts = [f"result {shown.get('Result', '?')}"]
    if status and status != "0":
        parts.append(f"exit status {status}")
        if status == str(int(ExitCode.CONFIG)):
            parts.append("a configuration error: it will not be retried")
    if not result.ok:
        parts.append(result.first_error_line())
    return "; ".join(parts)
