"""What a job prints goes to the worker's log, tagged with the job, and the log stays bounded."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from conftest import CONNECTED, WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.logs import LOG_FILE_BACKUPS, LOG_FILE_MAX_BYTES
from giskard.worker.job_output import MAX_LINE_BYTES, ExecutorOutput


def log_path(worker: WorkerProcess) -> Path:
    return worker.home / "run" / "ml-worker.log"


def test_what_a_job_prints_is_in_the_worker_log_tagged_with_the_job(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    def talk(go: Path) -> int:
        import os
        import subprocess
        import sys
        import threading
        import time

        def after_the_job() -> None:  # between jobs: the executor's output, not the job's
            deadline = time.monotonic() + 30
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            print("said after the job")

        threading.Thread(target=after_the_job, daemon=True).start()
        print("said with print")
        sys.stderr.write("said on stderr\n")
        os.write(1, b"said on file descriptor 1\n")
        subprocess.run(["echo", "said by a child process"], check=True)
        print("x" * 100_000)
        sys.stdout.write("said without a newline")
        return os.getpid()

    go = tmp_path / "go"
    executor = client.call(talk, go)
    go.touch()  # the worker was done with the job before the client had its result
    log = log_path(connected_worker)
    done = wait_until(
        lambda: re.search(r"Job ([0-9a-f]{8}): call done", log.read_text()), 10, "the job's end"
    )
    tag = f"job {done.group(1)}"
    expected = [
        f"{tag} stdout: said with print",
        f"{tag} stderr: said on stderr",
        f"{tag} stdout: said on file descriptor 1",
        f"{tag} stdout: said by a child process",
        f"{tag} stdout: said without a newline",
        f"executor {executor} stdout: said after the job",
    ]

    def missing() -> list[str]:
        text = log.read_text()
        return [line for line in expected if line not in text]

    wait_until(lambda: not missing(), 10, f"{expected} in ml-worker.log")
    lines = log_path(connected_worker).read_text().splitlines()
    (long_line,) = [line for line in lines if f"{tag} stdout: xxx" in line]
    assert long_line.endswith(f"xx [{100_000 - MAX_LINE_BYTES} more bytes cut]")
    assert len(long_line) < MAX_LINE_BYTES + 200


def test_a_job_printing_without_end_fills_no_disk(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    def shout(megabytes: int) -> int:
        line = "y" * 1999
        for _ in range(megabytes * 500):
            print(line)
        return megabytes

    megabytes = 100  # twice the log's 50 MB
    assert client.call(shout, megabytes, timeout_s=300) == megabytes
    directory = log_path(connected_worker).parent
    assert (directory / "ml-worker.log.1").exists()  # a burst of 20 MB was logged, and rotated
    total = sum(path.stat().st_size for path in directory.glob("ml-worker.log*"))
    assert total <= (LOG_FILE_BACKUPS + 1) * LOG_FILE_MAX_BYTES
    text = "".join(path.read_text() for path in directory.glob("ml-worker.log*"))
    assert re.search(r"job [0-9a-f]{8} stdout: \d+ lines not logged \(more than", text)
    assert client.call(lambda: "still here") == "still here"
    assert connected_worker.process.poll() is None
    assert connected_worker.output.count(CONNECTED) == 1, "the worker reconnected"


def test_a_job_printing_without_end_holds_back_no_other_work(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    def flood(stop: Path) -> None:
        while not stop.exists():
            print("a\na\na\na\na\na\na\na\na\na")

    stop = tmp_path / "stop"
    handle = client.submit(flood, stop, timeout_s=120)
    log = log_path(connected_worker)
    wait_until(lambda: "lines not logged" in log.read_text(), 30, "the job to flood its log")
    for _ in range(5):  # the worker answers on the event loop that reads the job's output
        began = time.monotonic()
        client.info(timeout_s=30)
        assert time.monotonic() - began < 3.0  # 0.6 s at most here; 2.4 to 3.7 s unbounded
    stop.touch()
    assert handle.result(timeout=60) is None


def test_what_the_executor_wrote_before_a_job_started_is_not_the_jobs() -> None:
    """A thread the previous job left behind may write just before the next job starts,
    before the worker's loop has read it: it is not the next job's (another client's)."""

    async def scenario() -> tuple[bytes, bytes]:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        output = ExecutorOutput(4242, out_read, err_read)
        try:
            output.job_started("first")
            os.write(out_write, b"first job\n")
            first = output.job_ended()
            os.write(out_write, b"left behind\n")  # the loop has not run since
            output.job_started("second")
            os.write(err_write, b"second job\n")
            return first, output.job_ended()
        finally:
            output.close()
            os.close(out_write)
            os.close(err_write)

    first, second = asyncio.run(scenario())
    assert first == b"first job\n"
    assert second == b"second job\n"
