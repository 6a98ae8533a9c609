"""A job leaves nothing behind: no process, no working directory, environment or umask."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from pathlib import Path

import psutil
import pytest
import remote_models
from conftest import WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.job_handle import JobHandle


def test_a_job_leaves_no_directory_environment_or_umask_to_the_next(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    def state() -> dict:
        import os

        umask = os.umask(0)
        os.umask(umask)
        return {
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "umask": umask,
            "added": os.environ.get("GISKARD_JOB_ADDED"),
            "path": os.environ.get("PATH"),
        }

    def meddle(directory: str) -> int:
        import os

        os.chdir(directory)
        os.environ["GISKARD_JOB_ADDED"] = "leaked"
        del os.environ["PATH"]
        os.umask(0o077)
        return os.getpid()

    before = client.call(state)
    assert before["cwd"] != str(tmp_path) and before["umask"] != 0o077 and before["path"]
    assert client.call(meddle, str(tmp_path)) == before["pid"]  # the same warm executor
    assert client.call(state) == before


def sleeper_argv() -> list[str]:
    """A command no other process runs, to tell the job's child from any other `sleep`."""
    return ["sleep", f"300.{uuid.uuid4().int % 10**9}"]


def running(pid: int, argv: list[str]) -> bool:
    try:
        child = psutil.Process(pid)
        return child.cmdline() == argv and child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_jobs_using_a_pool_of_processes_work_one_after_another(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    def parallel(count: int) -> list[int]:
        from joblib import Parallel, delayed

        # joblib keeps its pool of processes for the next call: ended with the job, the
        # executor is replaced rather than left with a pool it believes alive.
        return Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(count))

    for _ in range(3):
        assert client.call(parallel, 20, timeout_s=120) == list(range(20))


def started_children(marker: Path) -> list[int]:
    """The pids remote_models.start_and_hold writes, once it has written both."""

    def pids() -> list[int]:
        text = marker.read_text() if marker.exists() else ""
        return [int(pid) for pid in text.split()] if len(text.split()) == 2 else []

    return wait_until(pids, 30, "the job to start its children")


def test_what_a_job_started_ends_with_the_job(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    argv = sleeper_argv()

    def start(argv: list[str]) -> list[int]:
        import subprocess

        # One in the executor's process group, one in a session of its own.
        return [subprocess.Popen(argv).pid, subprocess.Popen(argv, start_new_session=True).pid]

    wait_gone(argv, client.call(start, argv))
    assert client.call(lambda: 7) == 7
    assert connected_worker.process.poll() is None


def running_children(
    client: HubClient, tmp_path: Path, *, in_c: bool = False
) -> tuple[list[str], list[int], JobHandle]:
    """Start remote_models.start_and_hold: its argv, its children's pids, its job (to keep:
    a job whose handle is dropped is cancelled)."""
    argv, marker = sleeper_argv(), tmp_path / "children"
    job = client.submit(remote_models.start_and_hold, argv, marker, in_c=in_c)
    children = started_children(marker)
    assert all(running(child, argv) for child in children)
    return argv, children, job


def wait_gone(argv: list[str], children: list[int]) -> None:
    wait_until(
        lambda: not any(running(child, argv) for child in children), 10, "the job's children to end"
    )


@pytest.mark.parametrize("in_c", [False, True], ids=["in-python", "stuck-in-c"])
def test_what_a_job_started_dies_with_a_killed_worker(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path, in_c: bool
) -> None:
    argv, children, _job = running_children(client, tmp_path, in_c=in_c)
    connected_worker.process.kill()
    connected_worker.process.wait(10)
    wait_gone(argv, children)


def test_what_a_job_started_ends_when_the_worker_stops(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    argv, children, _job = running_children(client, tmp_path)
    # The first SIGTERM drains (the job would have 20 s to end), the second stops at once.
    connected_worker.process.send_signal(signal.SIGTERM)
    connected_worker.wait_for_output("SIGTERM received: stopping")
    connected_worker.process.send_signal(signal.SIGTERM)
    assert connected_worker.process.wait(30) == 0
    wait_gone(argv, children)


def test_a_killed_janitor_is_replaced_before_it_is_needed(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    def janitors() -> list[int]:
        found = []
        for child in psutil.Process(connected_worker.process.pid).children():
            with contextlib.suppress(psutil.Error):  # a dead one, not yet reaped
                if "giskard.janitor" in child.cmdline():
                    found.append(child.pid)
        return found

    (janitor,) = janitors()
    os.kill(janitor, signal.SIGKILL)

    def leave(argv: list[str]) -> None:
        import subprocess

        subprocess.Popen(argv)

    # A job that leaves a process behind: its executor is replaced, and the worker, telling the
    # janitor, finds it gone and starts another.
    client.call(leave, sleeper_argv())
    wait_until(lambda: janitors() not in ([], [janitor]), 10, "another janitor")
    argv, children, _job = running_children(client, tmp_path)
    connected_worker.process.kill()
    connected_worker.process.wait(10)
    wait_gone(argv, children)
