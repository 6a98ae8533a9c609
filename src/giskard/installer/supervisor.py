"""The fallback's detached supervisor: `python -m giskard.installer.supervisor NAME ARGV...`.

Holds the service's lock, runs the worker, restarts it on failure like systemd's
Restart=on-failure (not after a clean exit or a configuration error), and gives up after a
burst of failures. SIGTERM stops it (the worker drains first); SIGHUP restarts the worker.
If the supervisor dies, even by SIGKILL, its worker gets a SIGTERM from the kernel (see
`die_with_supervisor`): no worker runs on unmanaged.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from giskard import lockfile
from giskard.address import HubAddress
from giskard.errors import ExitCode
from giskard.installer.files import write_atomically
from giskard.installer.process import services_dir
from giskard.logs import configure_logging
from giskard.paths import worker_log_path
from giskard.worker.backoff import Backoff

logger = logging.getLogger("giskard.supervisor")

# Like the systemd unit: at most 5 failures in 300 s, then stay down.
BURST_LIMIT = 5
BURST_WINDOW_S = 300.0
# The worker drains for at most 20 s; past this it is killed.
DRAIN_TIMEOUT_S = 30.0
SERVICE_ENVIRONMENT = ("PYTHONUNBUFFERED", "PATH", "GISKARD_HOME", "GISKARD_SERVICE")
# Tells the worker which process supervises it, so that it can die with it.
SUPERVISOR_PID_ENV = "GISKARD_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class Supervisor:
    def __init__(self, name: str, argv: list[str], backoff: Backoff | None = None) -> None:
        self.name = name
        self.argv = argv
        self.backoff = backoff or Backoff(1.0, 10.0)
        self.stopping = threading.Event()
        self.restarting = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def on_stop(self, signum: int, _frame: object) -> None:
        self.stopping.set()
        self._terminate_child()

    def on_restart(self, signum: int, _frame: object) -> None:
        self.restarting.set()
        self._terminate_child()

    def _terminate_child(self) -> None:
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            # Handlers only set flags and signal; a timer enforces the drain bound.
            timer = threading.Timer(DRAIN_TIMEOUT_S, _kill_if_running, (child,))
            timer.daemon = True
            timer.start()

    def run(self) -> None:
        failures: list[float] = []
        while not self.stopping.is_set():
            self.child = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                env={**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())},
            )
            if self.stopping.is_set():  # a SIGTERM between the check and the start
                self._terminate_child()
            code = _exit_code(self.child.wait())
            if self.restarting.is_set():
                self.restarting.clear()
                logger.info("Restarting worker %s", self.name)
                continue
            if self.stopping.is_set() or code in (ExitCode.OK, ExitCode.CONFIG):
                logger.info("Worker %s exited with code %s; not restarting", self.name, code)
                return
            now = time.monotonic()
            failures = [t for t in failures if now - t < BURST_WINDOW_S] + [now]
            if len(failures) >= BURST_LIMIT:
                logger.error(
                    "Worker %s failed %d times within %.0f s; giving up (start it again with -d)",
                    self.name,
                    len(failures),
                    BURST_WINDOW_S,
                )
                return
            delay_s = self.backoff.next_delay_s()
            logger.warning(
                "Worker %s exited with code %s; restarting in %.1f s", self.name, code, delay_s
            )
            self.stopping.wait(delay_s)


def die_with_supervisor() -> None:
    """In a worker started by a supervisor: have the kernel send it SIGTERM (it drains, then
    exits) when the supervisor dies, however it dies. Linux only; elsewhere `start -d` and
    `stop` find such an orphan by its lock and stop it."""
    supervisor = os.environ.pop(SUPERVISOR_PID_ENV, "")
    if not supervisor.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning(
            "Cannot tie the worker to its supervisor: %s", os.strerror(ctypes.get_errno())
        )
        return
    # The supervisor may have died before the call above, which then never fires.
    if os.getppid() != int(supervisor):
        raise SystemExit(0)


def _kill_if_running(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        logger.warning(
            "Worker pid %d did not stop within %.0f s; killing it", child.pid, DRAIN_TIMEOUT_S
        )
        child.kill()


def _exit_code(returncode: int) -> int:
    # Popen reports death by signal N as -N; shells and systemd say 128 + N.
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str]) -> int:
    name, worker_argv = argv[0], argv[1:]
    configure_logging(log_file=worker_log_path(), to_stderr=False)
    lock_path = services_dir() / f"{name}.lock"
    # A status probe may hold the lock for an instant: retry briefly before giving up.
    deadline = time.monotonic() + 1.0
    while (lock_fd := lockfile.try_lock(lock_path)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if lock_fd is None:
        print(f"{name} is already running", file=sys.stderr)
        return 1
    supervisor = Supervisor(name, worker_argv)
    signal.signal(signal.SIGTERM, supervisor.on_stop)
    signal.signal(signal.SIGINT, supervisor.on_stop)
    signal.signal(signal.SIGHUP, supervisor.on_restart)
    _write_state(name, worker_argv)
    try:
        supervisor.run()
    finally:
        (services_dir() / f"{name}.json").unlink(missing_ok=True)
        (services_dir() / f"{name}.out").unlink(missing_ok=True)
        lockfile.release(lock_path, lock_fd)
    return 0


def _write_state(name: str, argv: list[str]) -> None:
    state = {
        "pid": os.getpid(),
        "argv": argv,
        "env": {k: os.environ[k] for k in SERVICE_ENVIRONMENT if k in os.environ},
        "hub": _hub_of(argv),
        "started_at": time.time(),
    }
    write_atomically(services_dir() / f"{name}.json", json.dumps(state), mode=0o600)


def _hub_of(argv: list[str]) -> str:
    host = argv[argv.index("-h") + 1] if "-h" in argv else "localhost"
    port = int(argv[argv.index("-p") + 1]) if "-p" in argv else 40051
    return HubAddress(host, port).target


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
