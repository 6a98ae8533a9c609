"""The fallback where no service manager exists (containers, WSL without systemd, Colab, CI,
root): a detached supervisor process that runs the foreground worker and restarts it.

The supervisor runs in a session of its own with stdin, stdout and stderr redirected, so
`!giskard worker start -d` in Jupyter and `os.popen(...).read()` return at once: they wait
only for holders of their pipe or pty. It holds an exclusive lock for its whole life; "lock
free" means "not running", so no stale pid file can block a start or kill a stranger.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from giskard.credentials import API_KEY_ENV
from giskard.errors import InstallerError
from giskard.installer.base import Action, Backend, InstallOutcome, ServiceSpec, ServiceStatus
from giskard.installer.files import follow_file, read_tail
from giskard.installer.naming import is_worker_service
from giskard.installer.systemd import ServiceFailedError
from giskard.lockfile import is_held
from giskard.paths import run_dir, worker_log_path

START_TIMEOUT_S = 10.0
# The supervisor gives the worker this long to drain after SIGTERM, then kills it; stop()
# waits a little longer than that before killing the whole group itself.
STOP_TIMEOUT_S = 35.0


def services_dir() -> Path:
    return run_dir() / "services"


class ProcessBackend(Backend):
    name = "process"

    def __init__(self) -> None:
        # What `halt` stopped, by service: the command and environment to start it again.
        self._halted: dict[str, dict] = {}

    def paths(self, name: str) -> tuple[Path, Path, Path]:
        """Lock, state and early-output files of a service."""
        # Not with_suffix: names contain dots (giskard-worker-10.0.0.1-40051).
        directory = services_dir()
        return directory / f"{name}.lock", directory / f"{name}.json", directory / f"{name}.out"

    def install(self, spec: ServiceSpec) -> InstallOutcome:
        current = self._running_state(spec.name)
        argv = spec.argv(log_to_stderr=False)
        if current and current.get("argv") == argv and current.get("env") == spec.environment():
            return InstallOutcome(Action.UNCHANGED, pid=current.get("pid"))
        previous = current.get("argv", [None])[0] if current else None
        if current:
            self.stop(spec.name)
        pid = self._spawn(spec.name, argv, spec.environment())
        if previous is None:
            action = Action.INSTALLED
        else:
            action = Action.REBOUND if previous != spec.interpreter else Action.UPDATED
        return InstallOutcome(action, pid=pid, previous_interpreter=previous)

    def _spawn(self, name: str, argv: list[str], environment: dict[str, str]) -> int:
        """Start the supervisor of `name`, running the worker command `argv` (its first
        word is the interpreter) with the service's `environment`; its pid."""
        lock, _, output = self.paths(name)
        services_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        supervisor = [argv[0], "-m", "giskard.installer.supervisor", name, *argv]
        # Truncated at each start: it only catches what happens before logging is set up.
        with open(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            process = subprocess.Popen(
                supervisor,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
                cwd=Path.home(),
                # The key reaches the worker through its file, not through the environment.
                env={**_without(os.environ, API_KEY_ENV), **environment},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not is_held(lock):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServiceFailedError(
                    f"the worker process for {name} did not start", read_tail(output, 15)
                )
            time.sleep(0.02)
        # Not ours to wait for: the supervisor outlives this command by design.
        process.returncode = 0
        return process.pid

    def stop(self, name: str) -> bool:
        lock, state_path, output = self.paths(name)
        state = self._running_state(name)
        existed = any(p.exists() for p in (lock, state_path, output))
        if state:
            self._terminate(lock, int(state["pid"]))
        for path in (lock, state_path, output):
            path.unlink(missing_ok=True)
        return existed

    def _terminate(self, lock: Path, pid: int) -> None:
        # Only the supervisor gets SIGTERM: it forwards one to the worker, which drains. A
        # signal to the whole group would reach the worker twice, which means "stop now".
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _await_exit(lock, pid)

    def halt(self, name: str) -> None:
        """Stop the supervisor (its worker drains), keeping the command it ran: `restart`
        starts it again with it."""
        state = self._running_state(name)
        if state:
            # Kept before stopping, which waits for the drain: a Ctrl-C meanwhile must not
            # forget how to start the service again.
            self._halted[name] = state
            self.stop(name)

    def restart(self, name: str) -> None:
        halted = self._halted.pop(name, None)
        if halted is not None:
            # A halt cut short by Ctrl-C leaves the old supervisor draining, its lock held:
            # a new supervisor would find the lock taken and give up.
            _await_exit(self.paths(name)[0], int(halted["pid"]))
            self._spawn(name, halted["argv"], halted["env"])
            return
        state = self._running_state(name)
        if not state:
            raise InstallerError(f"the worker process {name} is not running; start it with -d")
        # The supervisor restarts its worker on SIGHUP (the worker drains first).
        os.kill(int(state["pid"]), signal.SIGHUP)

    def status(self, name: str) -> ServiceStatus | None:
        lock, state_path, _ = self.paths(name)
        if not (lock.exists() or state_path.exists()):
            return None
        state = self._last_state(name) or {}
        running = is_held(lock)
        return ServiceStatus(
            backend=self.name,
            name=name,
            state="running" if running else "stopped",
            pid=state.get("pid") if running else None,
            since=state.get("started_at") if running else None,
            interpreter=(state.get("argv") or [None])[0],
            hub=state.get("hub"),
            detail=state.get("detail", "") if running else "leftover state of a dead process",
        )

    def names(self) -> list[str]:
        if not services_dir().is_dir():
            return []
        found = {p.stem for p in services_dir().iterdir() if p.suffix in (".lock", ".json", ".out")}
        return sorted(n for n in found if is_worker_service(n))

    def log_lines(self, name: str, lines: int) -> list[str]:
        return read_tail(worker_log_path(), lines)

    def follow_logs(self, name: str, lines: int) -> int:
        return follow_file(worker_log_path(), lines)

    def _running_state(self, name: str) -> dict | None:
        lock, _, _ = self.paths(name)
        return self._last_state(name) if is_held(lock) else None

    def _last_state(self, name: str) -> dict | None:
        _, state_path, _ = self.paths(name)
        try:
            return json.loads(state_path.read_text())
        except (OSError, ValueError):
            return None


def _without(environment: Mapping[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in environment.items() if k != name}


def _await_exit(lock: Path, pid: int) -> None:
    """Wait for the supervisor `pid`, told to stop, to release `lock`; past the drain's
    bound, kill its whole group."""
    if _wait_released(lock, STOP_TIMEOUT_S):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the supervisor leads its session and group
    if not _wait_released(lock, 5.0):
        raise InstallerError(f"process {pid} survived SIGKILL")


def _wait_released(lock: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_held(lock):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
