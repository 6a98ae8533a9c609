"""What a job writes (stdout, stderr, `logging`) comes back with its end, its own only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.errors import EndReason, ExecutorCrashedError, JobCancelledError, JobError
from giskard.hub import Hub
from giskard.hub.job_events import LOGS_DROPPED

MIB = 1024 * 1024


def numbered_lines(prefix: str, count: int) -> str:
    return "".join(f"{prefix} {i:08d}\n" for i in range(count))


def test_a_job_that_prints_5_mib_returns_the_last_mib_of_it(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    count = 5 * MIB // len("big 00000000\n")
    handle = client.submit(remote_models.print_lines, "big", count)
    assert handle.result(timeout=60) == count
    assert handle.logs() == numbered_lines("big", count)[-MIB:]


def test_the_logs_of_two_jobs_running_at_once_do_not_mix(
    hub: Hub, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    def print_beside_the_other(me: Path, other: Path, tag: str) -> None:
        import sys
        import time

        me.touch()
        deadline = time.monotonic() + 30
        while not other.exists():  # both run at once, then print at once
            if time.monotonic() > deadline:
                raise TimeoutError("the other job did not start")
            time.sleep(0.01)
        for i in range(300):
            stream = sys.stdout if i % 2 else sys.stderr
            print(f"{tag} {i}", file=stream, flush=True)
            time.sleep(0.002)

    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--concurrency", "2")
    worker.wait_for_output(CONNECTED)
    with HubClient(hub.address) as client:
        a, b = tmp_path / "a", tmp_path / "b"
        handles = {
            "job-a": client.submit(print_beside_the_other, a, b, "job-a", timeout_s=60),
            "job-b": client.submit(print_beside_the_other, b, a, "job-b", timeout_s=60),
        }
        for tag, handle in handles.items():
            handle.result(timeout=60)
            lines = handle.logs().splitlines()
            assert sorted(lines) == sorted(f"{tag} {i}" for i in range(300))


def test_a_failing_job_returns_what_it_printed_and_logged_in_its_error(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    def fail_loudly() -> None:
        import logging
        import sys

        print("loading the model")
        print("half way", file=sys.stderr)
        logging.getLogger("user.model").warning("the weights look odd")
        raise ValueError("cannot go on")

    with pytest.raises(JobError, match="cannot go on") as failure:
        client.call(fail_loudly)
    logs = failure.value.logs.splitlines()
    assert {"loading the model", "half way", "the weights look odd"} <= set(logs)
    # The worker's own log has one line for the job, saying how it ended.
    connected_worker.wait_for_output("failed (model_error): ValueError: cannot go on")


def test_a_job_that_kills_its_process_returns_its_last_words(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    def exit_abruptly() -> None:
        import os

        print("last words", flush=True)
        os._exit(3)

    with pytest.raises(ExecutorCrashedError) as failure:
        client.call(exit_abruptly)
    assert failure.value.logs == "last words\n"


def test_a_successful_job_has_its_logs_too(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    handle = client.submit(remote_models.print_lines, "small", 3)
    assert handle.logs() == numbered_lines("small", 3)  # waits for the end
    assert handle.done() and handle.result(timeout=60) == 3
    wait_until(lambda: "small 00000002" in connected_worker.output, 10, "the worker's log")


def test_logs_beyond_what_the_hub_may_hold_unread_are_dropped_saying_so(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    with Hub(port=0, max_unread_result_bytes=512 * 1024) as hub:
        worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
        worker.wait_for_output(CONNECTED)
        with HubClient(hub.address) as client:
            assert client.submit(remote_models.print_lines, "small", 3).logs() == (
                numbered_lines("small", 3)
            )
            # Over what the hub may hold: the end comes, without the logs, and says so.
            big = client.submit(remote_models.print_lines, "big", MIB // 13)
            assert big.result(timeout=60) == MIB // 13
            assert big.logs() == LOGS_DROPPED.decode()
            assert hub.unread_results.held_bytes == 0


def test_a_job_cancelled_by_its_client_returns_what_it_wrote_before(
    client: HubClient, connected_worker: WorkerProcess, tmp_path: Path
) -> None:
    def print_then_wait(marker: Path) -> None:
        import time

        print("before the cancel", flush=True)
        marker.touch()
        time.sleep(60)

    marker = tmp_path / "printed"
    handle = client.submit(print_then_wait, marker)
    wait_until(marker.exists, 30, "the job to print")
    assert handle.cancel()
    with pytest.raises(JobCancelledError) as cancelled:
        handle.result(timeout=60)
    assert cancelled.value.logs == "before the cancel\n"
    assert handle.logs() == "before the cancel\n" and handle.cancelled()
    assert client.status()["recent"][-1]["reason"] is EndReason.CANCELLED
