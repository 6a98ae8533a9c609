"""systemd user units: ~/.config/systemd/user/<name>.service, managed with systemctl --user."""

from __future__ import annotations

import getpass
import os
import subprocess
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


class ServiceFailedError(InstallerError):
    """The service did not start; carries the last log lines for the user."""

    def __init__(self, message: str, log_lines: list[str]) -> None:
        super().__init__(message)
        self.log_lines = log_lines


class SystemdBackend(Backend):
    name = "systemd"

    def __init__(self) -> None:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        self.unit_dir = Path(config_home) / "systemd" / "user"

    def unit_path(self, name: str) -> Path:
        return self.unit_dir / f"{name}.service"

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
        path, text = self.unit_path(spec.name), self.render_unit(spec)
        previous_text = path.read_text() if path.exists() else None
        shown = self._show(spec.name)
        if previous_text == text and shown.get("ActiveState") == "active":
            return InstallOutcome(Action.UNCHANGED, pid=_pid(shown))
        write_atomically(path, text, mode=0o644)
        self._systemctl("daemon-reload", check=True)
        # A unit that hit its start limit refuses to start until this is reset.
        self._systemctl("reset-failed", f"{spec.name}.service")
        self._systemctl("enable", f"{spec.name}.service", check=True)
        result = self._systemctl("restart", f"{spec.name}.service", timeout_s=START_TIMEOUT_S)
        shown = self._show(spec.name)
        if not result.ok or shown.get("ActiveState") != "active":
            raise ServiceFailedError(
                f"the service {spec.name} failed to start ({_failure(shown, result)})",
                self.log_lines(spec.name, 15),
            )
        previous = _interpreter_of(previous_text) if previous_text else None
        return InstallOutcome(_action(previous_text, text, previous, spec), _pid(shown), previous)

    def stop(self, name: str) -> bool:
        path = self.unit_path(name)
        shown = self._show(name)
        # A unit whose file is gone reads "not-found" after any daemon-reload, yet may run.
        running = shown.get("ActiveState") in ("active", "activating", "deactivating", "reloading")
        loaded = running or shown.get("LoadState") not in (None, "", "not-found")
        if not loaded and not path.exists():
            return False
        if loaded:
            result = self._systemctl("disable", "--now", f"{name}.service", timeout_s=60)
            if not result.ok and not path.exists():  # disable needs the file; stop does not
                result = self._systemctl("stop", f"{name}.service", timeout_s=60)
            if not result.ok:
                raise InstallerError(f"cannot stop {name}: {result.first_error_line()}")
        path.unlink(missing_ok=True)
        self._systemctl("daemon-reload", check=True)
        self._systemctl("reset-failed", f"{name}.service")
        return True

    def restart(self, name: str) -> None:
        if not self.unit_path(name).exists():
            raise InstallerError(f"no systemd service {name}")
        self._systemctl("reset-failed", f"{name}.service")
        result = self._systemctl("restart", f"{name}.service", timeout_s=START_TIMEOUT_S)
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
        listed = self._systemctl(
            "list-units", "--all", "--plain", "--no-legend", f"{SERVICE_PREFIX}*.service"
        )
        for line in listed.stdout.splitlines():
            unit = line.split()[0] if line.split() else ""
            found.add(unit.removesuffix(".service"))
        return sorted(n for n in found if is_worker_service(n))

    def log_lines(self, name: str, lines: int) -> list[str]:
        problem, output = self._journal(name, lines)
        if problem is None:
            return output
        return [f"({problem}; showing {worker_log_path()})", *read_tail(worker_log_path(), lines)]

    def follow_logs(self, name: str, lines: int) -> int:
        problem, _ = self._journal(name, 1)
        if problem is not None:
            from giskard.installer.files import follow_file

            print(f"({problem}; following {worker_log_path()})", flush=True)
            return follow_file(worker_log_path(), lines)
        argv = ["journalctl", "--user", "-u", f"{name}.service", "-f", "-n", str(lines)]
        try:
            return subprocess.run(
                [*argv, "--no-pager"], stdin=subprocess.DEVNULL, check=False
            ).returncode
        except KeyboardInterrupt:  # how a user stops following: not an error
            return 0

    def logs_hint(self, name: str) -> str:
        return f"journalctl --user -u {name}"

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
        argv = ["journalctl", "--user", "-u", f"{name}.service", "-n", str(lines), "--no-pager"]
        result = run_tool([*argv, "-o", "short-iso"], timeout_s=20)
        text = (result.stderr + result.stdout).strip()
        if "insufficient permissions" in text or "No journal files" in text:
            return "the user journal is not readable (journald keeps no per-user files here)", []
        if not result.ok:
            return f"journalctl failed: {result.first_error_line()}", []
        entries = [line for line in result.stdout.splitlines() if not line.startswith("-- ")]
        if not entries:
            return "the user journal has no entries for it (journald may keep no user files)", []
        return None, entries

    def _show(self, name: str, properties: str = _SHOW_PROPERTIES, *, unix: bool = False) -> dict:
        argv = ["show", f"{name}.service", "-p", properties]
        if unix:
            argv.append("--timestamp=unix")
        result = self._systemctl(*argv)
        pairs = (line.partition("=") for line in result.stdout.splitlines())
        return {key: value for key, _, value in pairs if key}

    def _systemctl(self, *args: str, check: bool = False, timeout_s: float = 30.0) -> Result:
        return run_tool(
            ["systemctl", "--user", "--no-pager", *args], check=check, timeout_s=timeout_s
        )


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
