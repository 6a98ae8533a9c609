"""A real systemd user manager and journald for an unprivileged user, and a venv of this
project that the user can run (at a path with a space and a %, on purpose).

Started by .ci/systemd-user-session.sh when the tests run as root on a machine whose
systemd is installed but not PID 1 (CI, the project's VMs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION_SCRIPT = ROOT / ".ci" / "systemd-user-session.sh"
VENV_NAME = "venvs/py 100% giskard"


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    home: Path
    runtime_dir: Path
    venv: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def env(self, **extra: str) -> list[str]:
        values = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **extra,
        }
        return ["env", "-i", *(f"{k}={v}" for k, v in values.items())]

    def run(
        self, *argv: str, timeout_s: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run argv as the user, in their home, with a clean environment."""
        command = ["runuser", "-u", self.name, "--", *self.env(**(env or {})), *argv]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def giskard(
        self, *args: str, env: dict[str, str] | None = None, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`giskard ARGS` as the user, presenting the test hubs' key unless `env` sets one."""
        from conftest import local_admin_key

        key = local_admin_key()
        env = {**({"GISKARD_API_KEY": key} if key else {}), **(env or {})}
        return self.run(self.python, "-m", "giskard.cli", *args, env=env, timeout_s=timeout_s)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", "--no-pager", *args, timeout_s=60)

    def journal(self, unit: str, *args: str) -> str:
        return self.run(
            "journalctl", "--user", "-u", unit, "--no-pager", *args, timeout_s=30
        ).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", unit, "-p", prop, "--value").stdout.strip()


def unavailable_reason() -> str | None:
    """Why a real user manager cannot be started here, or None."""
    if os.geteuid() != 0:
        return "the service tests start a user manager for a test user, which needs root"
    if not Path("/lib/systemd/systemd").exists() or shutil.which("runuser") is None:
        return "systemd is not installed"
    if Path("/proc/1/comm").read_text().strip() == "systemd":
        return "systemd is PID 1 here: the CI harness is for machines where it is not"
    if not Path("/usr/bin/python3").exists():
        return "the test user needs /usr/bin/python3 for its venv"
    return None


def start_session() -> ServiceUser:
    result = subprocess.run(
        ["bash", str(SESSION_SCRIPT), "start"], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"cannot start the systemd user session: {result.stderr.strip()}")
    values = dict(line.split("=", 1) for line in result.stdout.split())
    home = Path(values["GISKARD_SVC_HOME"])
    user = ServiceUser(
        name=values["GISKARD_SVC_USER"],
        uid=int(values["GISKARD_SVC_UID"]),
        home=home,
        runtime_dir=Path(values["GISKARD_SVC_RUNTIME_DIR"]),
        venv=home / VENV_NAME,
    )
    install_project(user)
    return user


@contextlib.contextmanager
def user_session() -> Iterator[ServiceUser]:
    """The session for a test module: skipped where it cannot run, except in CI."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the systemd tests must run in CI: {reason}")
        pytest.skip(reason)
    session = start_session()
    try:
        yield session
    finally:
        stop_session()


def session_fixtures() -> tuple[object, object]:
    """For a test module: `user`, the session (module scope), and `clean`, which after each
    test stops every worker of the user's and removes their state."""

    @pytest.fixture(scope="module")
    def user() -> Iterator[ServiceUser]:
        with user_session() as session:
            yield session

    @pytest.fixture(autouse=True)
    def clean(user: ServiceUser) -> Iterator[None]:
        yield
        user.giskard("worker", "stop", "-a")
        user.run("rm", "-rf", str(user.home / "giskard-home"), str(user.home / "broken-home"))

    return user, clean


def stop_session() -> None:
    subprocess.run(["bash", str(SESSION_SCRIPT), "stop"], capture_output=True, timeout=120)


def install_project(user: ServiceUser) -> None:
    """A venv the user owns, with this checkout installed (its dependencies kept between runs)."""
    with tempfile.TemporaryDirectory() as wheels:
        os.chmod(wheels, 0o755)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, str(ROOT)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = Path(wheels).glob("*.whl")
        wheel.chmod(0o644)
        marker = user.venv / ".giskard-wheel"
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if marker.exists() and marker.read_text() == digest:
            return
        if not (user.venv / "bin" / "python").exists():
            _as_user_checked(user, "/usr/bin/python3", "-m", "venv", str(user.venv))
        # Dependencies only install the first time; the project itself every time it changed.
        _as_user_checked(user, user.python, "-m", "pip", "install", "-q", str(wheel))
        _as_user_checked(
            user,
            user.python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--force-reinstall",
            str(wheel),
        )
        _as_user_checked(user, "sh", "-c", f'echo -n {digest} > "$1"', "sh", str(marker))


def _as_user_checked(user: ServiceUser, *argv: str) -> None:
    result = user.run(*argv, timeout_s=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed as {user.name}: {result.stderr.strip()}")
