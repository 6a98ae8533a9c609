"""The janitor: a small process that ends every executor's tree once the worker is gone.

The worker dies however it dies (SIGKILL, a crash) and its executors then stop: the kernel
sends them SIGSTOP (their parent-death signal), which no code stuck in C can delay or
ignore, and which keeps each one alive as the subreaper holding its job's processes. The
janitor reads the executors' pids on a pipe only the worker holds; when the pipe closes,
it kills each executor's tree and process group.

It lives in a session of its own and ignores the signals a terminal or a service manager
sends to stop a worker: it ends when the worker's end closes its pipe, not before.
Kept apart from giskard.worker so that it imports little (it is alive as long as the worker).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys

logger = logging.getLogger(__name__)


class Janitor:
    """The worker's side: start the janitor, tell it which executors run."""

    def __init__(self) -> None:
        self._watched: set[int] = set()
        self._closed = False
        self._process = _spawn()

    def watch(self, pid: int) -> None:
        """An executor started: its tree ends when the worker does."""
        self._watched.add(pid)
        self._tell(f"+{pid}")

    def forget(self, pid: int) -> None:
        """An executor ended (and its tree was killed): its pid may be reused."""
        self._watched.discard(pid)
        self._tell(f"-{pid}")

    def close(self) -> None:
        """The worker ends normally: the janitor ends too, killing what may be left."""
        self._closed = True
        _close_input(self._process)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)

    def _tell(self, line: str) -> None:
        if self._closed:  # an executor killed after the pool closed: nothing to tell
            return
        # A few bytes to a pipe the janitor keeps reading: these writes do not block.
        try:
            _write(self._process, [line])
        except OSError:
            # Killed by someone: without it, executors stopped by the worker's death would stay
            # stopped. Another one learns every executor that runs.
            logger.warning("The process that ends jobs' processes was gone; starting another")
            _close_input(self._process)
            self._process = _spawn()
            _write(self._process, [f"+{pid}" for pid in self._watched])


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "giskard.janitor"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _close_input(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):  # what a dead janitor did not read is lost with it
        assert process.stdin is not None
        process.stdin.close()


def _write(process: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("".join(f"{line}\n" for line in lines).encode())
    process.stdin.flush()


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    executors: set[int] = set()
    for line in sys.stdin.buffer:  # until the worker's end closes the pipe
        sign, pid = line[:1], int(line[1:])
        if sign == b"+":
            executors.add(pid)
        else:
            executors.discard(pid)
    from giskard.process_tree import kill_tree

    for pid in executors:
        kill_tree(pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
