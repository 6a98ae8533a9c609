"""A job leaves nothing behind: no working directory, environment or umask."""

from __future__ import annotations

from pathlib import Path

from conftest import WorkerProcess

from giskard.client import HubClient


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
