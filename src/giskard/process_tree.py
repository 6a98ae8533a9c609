"""Ending a job's processes: every descendant of an executor, wherever it moved.

A process group is not enough: a job's program may start its own session (a server, a
daemon), and a double fork leaves orphans to init. So an executor is a child subreaper
(Linux): orphans of its descendants become its children instead of init's, and its tree,
walked through parent pids, holds every process its jobs started. The tree is frozen
(SIGSTOP) before it is killed, so none of it forks a process the walk would miss.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import psutil

# Each walk stops the processes it finds; a tree still growing after this many is a fork bomb.
MAX_ROUNDS = 64
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def set_parent_death_signal(signum: int) -> bool:
    """Have the kernel send `signum` to this process when its parent dies (Linux only)."""
    return _prctl(_PR_SET_PDEATHSIG, signum)


def become_subreaper() -> bool:
    """Adopt the orphans of this process's descendants (Linux only)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def kill_tree(root: int) -> None:
    """SIGKILL `root` and its descendants, `root` stopped first so it cannot fork either."""
    try:
        process = psutil.Process(root)
    except psutil.NoSuchProcess:
        return
    _send(process, signal.SIGSTOP)
    for descendant in [*_frozen_descendants(process), process]:
        _send(descendant, signal.SIGKILL)


def kill_descendants() -> bool:
    """SIGKILL every descendant of this process; whether there was any."""
    if not _reap():  # the common case, without a walk through /proc
        return False
    for descendant in _frozen_descendants(psutil.Process()):
        _send(descendant, signal.SIGKILL)
    return True


def _frozen_descendants(process: psutil.Process) -> list[psutil.Process]:
    """The descendants of `process`, all stopped; walked again until a walk finds no new one
    (a process found running may have forked before it stopped)."""
    stopped: dict[int, psutil.Process] = {}
    for _ in range(MAX_ROUNDS):
        try:
            found = [p for p in process.children(recursive=True) if p.pid not in stopped]
        except psutil.NoSuchProcess:  # its children went to init: its process group is left
            break
        if not found:
            break
        for descendant in found:
            _send(descendant, signal.SIGSTOP)
            stopped[descendant.pid] = descendant
    return list(stopped.values())


def _reap() -> bool:
    """Reap this process's ended children; whether any child remains (a subreaper's
    descendants all come back to it as children, so no child means no tree)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _send(process: psutil.Process, signum: int) -> None:
    # psutil checks the pid still names the same process: a recycled pid is left alone.
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        process.send_signal(signum)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
