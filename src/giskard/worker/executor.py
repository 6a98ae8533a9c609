"""The worker's side of one executor process: start it, talk to it, kill it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from giskard.worker.pipe import Buffer, PipeClosed, read_message, write_message

logger = logging.getLogger(__name__)

# Python, numpy, pandas and cloudpickle imports: about a second, far more on a cold disk.
START_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 5.0


class ExecutorStartError(Exception):
    """An executor process could not start; the text says why."""


@dataclass(frozen=True)
class ExecutorOptions:
    cache_bytes: int = 2 * 1024**3
    # How much more memory a job may allocate than the executor holds before it; 0: no limit.
    max_job_memory: int = 0


class ExecutorProcess:
    """A running executor; one job at a time talks to it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        # What the executor's cache holds, mirrored from its answers: inputs it has are not sent.
        self.cached: set[str] = set()

    @classmethod
    async def start(cls, options: ExecutorOptions) -> ExecutorProcess:
        argv = [
            sys.executable,
            "-m",
            "giskard.worker.executor_main",
            f"--parent-pid={os.getpid()}",
            f"--cache-bytes={options.cache_bytes}",
            f"--max-job-memory={options.max_job_memory}",
        ]
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        executor = cls(process)
        try:
            header, _ = await asyncio.wait_for(executor.receive(), START_TIMEOUT_S)
        except (PipeClosed, TimeoutError):
            executor.kill()
            why = await executor.exit_description()
            raise ExecutorStartError(f"the executor process did not start ({why})") from None
        if header.get("t") != "ready":
            executor.kill()
            raise ExecutorStartError(f"the executor process said {header!r} instead of ready")
        logger.debug("Executor %d ready", process.pid)
        return executor

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    async def send(self, header: dict[str, Any], payload: Buffer = b"") -> None:
        assert self._process.stdin is not None
        await write_message(self._process.stdin, header, payload)

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        assert self._process.stdout is not None
        return await read_message(self._process.stdout)

    def apply_cache_changes(self, answer: dict[str, Any]) -> None:
        self.cached.difference_update(answer.get("evicted", ()))
        self.cached.update(answer.get("added", ()))

    def kill(self) -> None:
        """SIGKILL: whatever the job is doing stops now."""
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    async def exit_description(self) -> str:
        """How the process ended ("killed by SIGSEGV", "exited with code 3")."""
        try:
            code = await asyncio.wait_for(self._process.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            return "still running"
        return describe_exit(code)

    async def close(self) -> None:
        """End the process: closing its input makes it exit between jobs; kill if it lingers."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.kill()
            await self._process.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
