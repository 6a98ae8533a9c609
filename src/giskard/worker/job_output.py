"""What an executor prints, logged by the worker line by line and tagged with its job.

An executor's stdout and stderr (file descriptors 1 and 2, so C code and subprocesses are
caught too) are pipes the worker reads in its event loop. Each line becomes a log record
("job 1a2b3c4d stdout: ...", or "executor 4242 stderr: ..." between jobs), so a job's output
goes where the worker's log goes: the rotated ml-worker.log, and the journal for a systemd
service. A line is cut at MAX_LINE_BYTES, so the worker's memory stays bounded whatever a
job prints; a job printing faster than the worker logs waits on its full pipe.
"""

from __future__ import annotations

import asyncio
import logging
import os

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 8 * 1024
READ_BYTES = 64 * 1024
# A drain reads what the pipe holds (64 KiB on Linux) and stops, even if a writer goes on.
MAX_DRAIN_READS = 16


class ExecutorOutput:
    """The stdout and stderr pipes of one executor."""

    def __init__(self, pid: int, stdout_fd: int, stderr_fd: int) -> None:
        self._idle_tag = f"executor {pid}"
        self.tag = self._idle_tag
        loop = asyncio.get_running_loop()
        self._streams = [
            _Stream(self, "stdout", stdout_fd, loop),
            _Stream(self, "stderr", stderr_fd, loop),
        ]

    def job_started(self, job_id: str) -> None:
        """Output from now on is the job's; what came before is logged first."""
        self._retag(f"job {job_id[:8]}")

    def job_ended(self) -> None:
        """What the job printed before its end is logged as its own; what follows is not."""
        self._retag(self._idle_tag)

    def close(self) -> None:
        """Log what is left in the pipes and close them (the executor is gone)."""
        for stream in self._streams:
            stream.close()

    def _retag(self, tag: str) -> None:
        # The executor flushes its streams before it answers, so what the job printed is in
        # the pipes by the time its answer reaches the worker: read it now, before the tag
        # changes.
        for stream in self._streams:
            stream.drain()
        self.tag = tag


class _Stream:
    def __init__(
        self, output: ExecutorOutput, name: str, fd: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._output = output
        self._name = name
        self._fd: int | None = fd
        self._loop = loop
        self._line = bytearray()
        self._cut = 0  # bytes of the current line beyond MAX_LINE_BYTES, dropped
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def drain(self) -> None:
        for _ in range(MAX_DRAIN_READS):
            if not self._read():
                break
        self._end_line()

    def close(self) -> None:
        self.drain()
        self._stop()

    def _stop(self) -> None:
        if self._fd is None:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
        self._end_line()

    def _read(self) -> bool:
        """Log what one read brings; False when the pipe is empty or closed."""
        if self._fd is None:
            return False
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # every writer is gone
            self._stop()
            return False
        *complete, rest = data.split(b"\n")
        for part in complete:
            self._add(part)
            self._end_line()
        self._add(rest)
        return True

    def _add(self, part: bytes) -> None:
        room = MAX_LINE_BYTES - len(self._line)
        self._line += part[:room]
        self._cut += max(0, len(part) - room)

    def _end_line(self) -> None:
        if not self._line and not self._cut:  # blank lines say nothing in a log
            return
        text = self._line.decode(errors="replace").rstrip("\r")
        if self._cut:
            text += f" [{self._cut} more bytes cut]"
        logger.info("%s %s: %s", self._output.tag, self._name, text)
        self._line.clear()
        self._cut = 0
