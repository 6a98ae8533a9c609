"""Which service manager this user can use, by cheap probes in priority order."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

from giskard.errors import InstallerError
from giskard.installer.base import Backend
from giskard.installer.commands import run_tool

BACKENDS = ("auto", "systemd", "launchd", "process")


def choose_backend(requested: str = "auto") -> tuple[Backend, str]:
    """The backend to use and, for the fallback, why no service manager was chosen."""
    if requested not in BACKENDS:
        raise InstallerError(f"unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested in ("auto", "systemd"):
        problem = systemd_problem()
        if problem is None and (requested == "systemd" or os.geteuid() != 0):
            return _backend("systemd"), ""
        if requested == "systemd":
            raise InstallerError(f"cannot use systemd: {problem}")
    if requested in ("auto", "launchd") and sys.platform == "darwin":
        return _backend("launchd"), ""
    if requested == "launchd":
        raise InstallerError("launchd exists only on macOS")
    return _backend("process"), "" if requested == "process" else fallback_reason()


def systemd_problem() -> str | None:
    """Why a systemd user manager cannot be used, or None when it can."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return "systemd is not running on this machine"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    try:
        owner = Path(runtime_dir).stat().st_uid
    except OSError:
        return f"no user session ({runtime_dir} does not exist)"
    if owner != os.getuid():
        return f"no user session of this user ({runtime_dir} belongs to uid {owner})"
    # systemctl --user finds the manager through this variable; su/sudo often drop it.
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    return manager_problem(("--user",), "the systemd user manager")


def manager_problem(scope: tuple[str, ...], manager: str) -> str | None:
    """Why the manager systemctl reaches with `scope` does not answer, or None."""
    try:
        state = run_tool(["systemctl", *scope, "is-system-running"], timeout_s=10).stdout.strip()
    except InstallerError as exc:
        return str(exc)
    # It exits 1 for "degraded" too (some unit failed), which is still a usable manager.
    if state not in ("running", "degraded", "starting", "initializing"):
        return f"{manager} is not reachable ({state or 'no answer'})"
    return None


def fallback_reason() -> str:
    """Why the detached-process fallback was chosen, in a few words."""
    if os.geteuid() == 0:
        return "running as root"
    if "microsoft" in platform.uname().release.lower():
        return "WSL without systemd"
    if _in_container():
        return "inside a container"
    if os.environ.get("CI"):
        return "CI"
    return systemd_problem() or "no service manager"


def _in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in cgroup for word in ("docker", "kubepods", "lxc", "containerd"))


def _backend(name: str) -> Backend:
    if name == "systemd":
        from giskard.installer.systemd import SystemdBackend

        return SystemdBackend()
    if name == "launchd":
        from giskard.installer.launchd import LaunchdBackend

        return LaunchdBackend()
    from giskard.installer.process import ProcessBackend

    return ProcessBackend()


def all_backends() -> list[Backend]:
    """Every backend that may hold workers of this user here (for `stop -a`, `status`)."""
    backends = [_backend("process")]
    if systemd_problem() is None:
        backends.insert(0, _backend("systemd"))
    if sys.platform == "darwin":
        backends.insert(0, _backend("launchd"))
    return backends
