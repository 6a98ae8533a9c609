"""What an executor prints, logged by the worker line by line and tagged with its job.

An executor's stdout and stderr (file descriptors 1 and 2, so C code and subprocesses are
caught too) are pipes the worker reads in its event loop. Each line becomes a log record
("job 1a2b3c4d stdout: ...", or "executor 4242 stderr: ..." between jobs), so a job's output
goes where the worker's log goes: the rotated ml-worker.log, and the journal for a systemd
service. A line is cut at MAX_LINE_BYTES, so the worker's memory stays bounded whatever a
job prints. An executor logs at most LINES_PER_S lines a second (after a burst of
BURST_LINES): logging costs the worker's event loop about 20 µs a line, and a job printing
without end must not delay its heartbeats; the lines beyond are counted, and the count logged.

Beside the log, what a job writes is kept as its own (both streams, in the order read, none
of it cut or dropped), to its last JOB_LOG_MAX_BYTES: the worker sends it with the job's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import select
import time

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 8 * 1024
LINES_PER_S = 1000
BURST_LINES = 10_000
# While a job floods its output, how often the count of lines not logged is.
DROPPED_REPORT_INTERVAL_S = 5.0
# Small reads: one callback logs at most a few thousand lines, so the loop stays responsive.
READ_BYTES = 4 * 1024
# A drain reads what the pipe holds (64 KiB on Linux) and stops, even if a writer goes on.
MAX_DRAIN_READS = 64
# What a job wrote is returned with its end up to this much, the last of it.
JOB_LOG_MAX_BYTES = 1024 * 1024


class ExecutorOutput:
    """The stdout and stderr pipes of one executor."""

    def __init__(self, pid: int, stdout_fd: int, stderr_fd: int) -> None:
        self._idle_tag = f"executor {pid}"
        self.tag = self._idle_tag
        self.budget = _LineBudget()
        self._job_log: _JobLog | None = None
        loop = asyncio.get_running_loop()
        self._streams = {
            stdout_fd: _Stream(self, "stdout", stdout_fd, loop),
            stderr_fd: _Stream(self, "stderr", stderr_fd, loop),
        }
        # Which pipes hold unread bytes, both asked at once: one system call at a job's end.
        self._unread = select.poll()
        for fd in self._streams:
            self._unread.register(fd, select.POLLIN)

    def job_started(self, job_id: str) -> None:
        """Output from now on is the job's; what came before is logged first, as the
        executor's: a thread the previous job left behind may have written just now, before
        the loop read it. One system call when the pipes hold nothing."""
        self.read_unread()
        self.tag = f"job {job_id[:8]}"
        self._job_log = _JobLog()

    def job_ended(self) -> bytes:
        """What the job printed before its end is logged as its own; what follows is not.
        Returns the last JOB_LOG_MAX_BYTES it printed."""
        self.read_unread()
        self.tag = self._idle_tag
        job_log, self._job_log = self._job_log, None
        return b"" if job_log is None else job_log.tail()

    def read_unread(self) -> None:
        """Log what the pipes hold now, as the tag says: what the executor printed before it
        answered (it flushes its streams first), which the loop may not have read yet. One
        system call when they hold nothing."""
        unread = {fd for fd, _ in self._unread.poll(0)}
        for fd, stream in self._streams.items():
            stream.drain(read=fd in unread)

    def record(self, data: bytes) -> None:
        """Bytes read from either pipe: the running job's, if any."""
        if self._job_log is not None:
            self._job_log.add(data)

    def close(self) -> None:
        """Log what is left in the pipes and close them (the executor is gone)."""
        for stream in self._streams.values():
            stream.close()

    def forget(self, fd: int) -> None:
        """A pipe is about to be closed: the poll must not name its number, which a file
        opened next may take."""
        self._unread.unregister(fd)


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
        self._dropped = 0  # lines beyond the budget, not reported yet
        self._reported_at = -math.inf
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def drain(self, *, read: bool = True) -> None:
        """Log what the pipe holds (if `read`) and the line begun before, as the tag says."""
        for _ in range(MAX_DRAIN_READS if read else 0):
            if not self._read():
                break
        if self._line or self._cut:
            self._end_line()
        if self._dropped:
            self._report_dropped()

    def close(self) -> None:
        self.drain()
        self._stop()

    def _stop(self) -> None:
        if self._fd is None:
            return
        self._output.forget(self._fd)
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
        self._end_line()
        self._report_dropped()

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
        self._output.record(data)
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
        if self._output.budget.take():
            self._report_dropped(DROPPED_REPORT_INTERVAL_S)
            text = self._line.decode(errors="replace").rstrip("\r")
            if self._cut:
                text += f" [{self._cut} more bytes cut]"
            logger.info("%s %s: %s", self._output.tag, self._name, text)
        else:
            self._dropped += 1
        self._line.clear()
        self._cut = 0

    def _report_dropped(self, interval_s: float = 0.0) -> None:
        now = time.monotonic()
        if self._dropped and now - self._reported_at >= interval_s:
            self._reported_at = now
            logger.warning(
                "%s %s: %d lines not logged (more than %d lines a second)",
                self._output.tag,
                self._name,
                self._dropped,
                LINES_PER_S,
            )
            self._dropped = 0


class _JobLog:
    """The last JOB_LOG_MAX_BYTES of a job's output. Trimmed once it holds twice that, so
    that a job printing without end costs a copy per MiB, not one per read."""

    def __init__(self) -> None:
        self._data = bytearray()

    def add(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > 2 * JOB_LOG_MAX_BYTES:
            del self._data[:-JOB_LOG_MAX_BYTES]

    def tail(self) -> bytes:
        return bytes(self._data[-JOB_LOG_MAX_BYTES:]) if self._data else b""


class _LineBudget:
    """A token bucket: BURST_LINES at once, then LINES_PER_S."""

    def __init__(self) -> None:
        self._tokens = float(BURST_LINES)
        self._time = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(BURST_LINES, self._tokens + (now - self._time) * LINES_PER_S)
        self._time = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
