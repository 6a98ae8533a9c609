"""The worker's side of one executor process: start it, talk to it, kill it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import KeysView
from dataclasses import dataclass
from typing import Any

from giskard.janitor import Janitor
from giskard.process_tree import kill_tree
from giskard.worker.cache import CacheMirror
from giskard.worker.job_output import ExecutorOutput
from giskard.worker.pipe import Buffer, PipeClosed, read_message, write_message

logger = logging.getLogger(__name__)

# Python, numpy, pandas and cloudpickle imports: about a second, far more on a cold disk.
START_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 5.0


class ExecutorStartError(Exception):
    """An executor process could not start; the text says why."""


@dataclass(frozen=True)
class ExecutorOptions:
    """Set from WorkerConfig.executor_options(), where the defaults live."""

    cache_bytes: int
    # How much more memory a job may allocate than the executor holds before it; 0: no limit.
    max_job_memory: int


class ExecutorProcess:
    """A running executor; one job at a time talks to it."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        janitor: Janitor,
        output: ExecutorOutput,
    ) -> None:
        self._process = process
        self._janitor = janitor
        # Tells which job prints what (execution.py says when a job starts and ends).
        self.output = output
        self._reader = reader
        self._writer = writer
        # What the executor's cache holds, mirrored from its answers: inputs it has are not sent.
        self.cache = CacheMirror()
        # A child the job forked may hold the pipe open after the executor died: its exit,
        # not the pipe's end, says it is gone.
        self._exit = asyncio.ensure_future(process.wait())
        self._exit.add_done_callback(lambda _: reader.feed_eof())

    @classmethod
    async def start(cls, options: ExecutorOptions, janitor: Janitor) -> ExecutorProcess:
        argv = [
            sys.executable,
            "-m",
            "giskard.worker.executor_main",
            f"--parent-pid={os.getpid()}",
            f"--cache-bytes={options.cache_bytes}",
            f"--max-job-memory={options.max_job_memory}",
        ]
        # Pipes of its own for jobs and answers, not stdin/stdout: whatever prints to stdout
        # (the job, a library at import, a sitecustomize) cannot corrupt them. Its stdout and
        # stderr are pipes too, which the worker logs (see job_output).
        job_in, to_executor = os.pipe()
        from_executor, answers_out = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                f"--pipe-in={job_in}",
                f"--pipe-out={answers_out}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout_w,
                stderr=stderr_w,
                pass_fds=(job_in, answers_out),
                # Its own process group, killed with it (see kill()).
                start_new_session=True,
            )
        except BaseException:
            for fd in (to_executor, from_executor, stdout_r, stderr_r):
                os.close(fd)
            raise
        finally:
            for fd in (job_in, answers_out, stdout_w, stderr_w):
                os.close(fd)
        # Told at once: the executor stops (its parent-death signal) as soon as the worker dies.
        janitor.watch(process.pid)
        output = ExecutorOutput(process.pid, stdout_r, stderr_r)
        reader, writer = await _connect(from_executor, to_executor)
        executor = cls(process, reader, writer, janitor, output)
        try:
            header, _ = await asyncio.wait_for(executor.receive(), START_TIMEOUT_S)
        except asyncio.CancelledError:  # the pool closes while it starts
            executor.kill()
            raise
        except (PipeClosed, TimeoutError):
            executor.kill()
            why = await executor.exit_description()
            raise ExecutorStartError(
                f"the process that runs jobs did not start ({why}); its error is in the"
                " worker's log"
            ) from None
        if header.get("t") != "ready":
            executor.kill()
            raise ExecutorStartError(f"the executor process said {header!r} instead of ready")
        output.read_unread()  # what it printed as it started is its own, not its first job's
        logger.debug("Executor %d ready", process.pid)
        return executor

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    async def send(self, header: dict[str, Any], payload: Buffer = b"") -> None:
        await write_message(self._writer, header, payload)

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        return await read_message(self._reader)

    @property
    def cached(self) -> KeysView[str]:
        """The addresses of the inputs its cache holds."""
        return self.cache.addresses

    def kill(self) -> None:
        """SIGKILL to the executor and what it started: whatever the job does stops now.

        Its tree holds every process its job started while it lives (it is their subreaper);
        its process group, what a job forked before a crash took the executor down."""
        if self.alive:  # once reaped, its pid may be another process's
            kill_tree(self._process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._ended()

    async def exit_code(self) -> int | None:
        """Its exit code, negative for the signal that killed it; None if it still runs."""
        try:
            return await asyncio.wait_for(self._process.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            return None

    async def exit_description(self) -> str:
        """How the process ended ("killed by SIGSEGV", "exited with code 3")."""
        code = await self.exit_code()
        return "still running" if code is None else describe_exit(code)

    async def close(self) -> None:
        """End the process: closing its input makes it exit between jobs (it has ended what
        its last job started); kill it if it lingers."""
        self._writer.close()
        try:
            await asyncio.wait_for(self._process.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.kill()
            await self._process.wait()
        self._ended()

    def _ended(self) -> None:
        self._janitor.forget(self._process.pid)
        self.output.close()


async def _connect(
    read_fd: int, write_fd: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", buffering=0)
    )
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
