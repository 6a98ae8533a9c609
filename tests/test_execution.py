"""Jobs run in executor processes: what breaks one of them fails its job, and nothing else."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.errors import (
    EndReason,
    ExecutorCrashedError,
    JobCancelledError,
    JobError,
    JobTimeoutError,
    MemoryLimitError,
)
from giskard.hub import Hub


def executor_pids(worker: WorkerProcess) -> set[int]:
    children = psutil.Process(worker.process.pid).children()
    return {c.pid for c in children if "giskard.worker.executor_main" in " ".join(c.cmdline())}


def ready_executors(worker: WorkerProcess, count: int = 1) -> set[int]:
    return wait_until(
        lambda: len(executor_pids(worker)) == count and executor_pids(worker), 30, "executors"
    )


@pytest.fixture
def limited_worker(hub: Hub, start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--max-job-memory", "1G")
    worker.wait_for_output(CONNECTED)
    return worker


def assert_still_serving(
    client: HubClient, worker: WorkerProcess, breast_cancer: tuple, old_executor: int
) -> None:
    """Same worker, same session, a new executor, and the next job is right."""
    model, data = breast_cancer
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
    assert worker.process.poll() is None
    assert worker.output.count(CONNECTED) == 1, "the worker reconnected"
    assert old_executor not in executor_pids(worker)


CRASHED = (ExecutorCrashedError, EndReason.EXECUTOR_CRASHED)


@pytest.mark.parametrize(
    ("failing", "cause", "remote_type", "error"),
    [
        (remote_models.SegfaultingModel, "killed by SIGSEGV", "ExecutorCrashed", CRASHED),
        (remote_models.ExitingModel, "exited with code 3", "ExecutorCrashed", CRASHED),
        # Its forked child keeps the pipes open: the executor's exit is what counts.
        (remote_models.ForkingExitModel, "exited with code 4", "ExecutorCrashed", CRASHED),
        # It allocates 4 GiB under a 1 GiB limit.
        (
            remote_models.GreedyModel,
            "--max-job-memory",
            "MemoryLimitExceeded",
            (MemoryLimitError, EndReason.MEMORY_LIMIT),
        ),
    ],
    ids=["segfault", "os._exit", "fork-then-exit", "memory"],
)
def test_a_model_that_breaks_its_process_fails_its_job_and_the_executor_is_replaced(
    client: HubClient,
    limited_worker: WorkerProcess,
    breast_cancer: tuple,
    failing: type,
    cause: str,
    remote_type: str,
    error: tuple[type[JobError], EndReason],
) -> None:
    model, data = breast_cancer
    (executor,) = ready_executors(limited_worker)
    with pytest.raises(JobError, match=cause) as failure:
        client.predict(failing(model), data, timeout_s=60)
    assert failure.value.remote_type == remote_type
    assert (type(failure.value), failure.value.reason) == error
    if failing is remote_models.SegfaultingModel:
        assert failure.value.signal == signal.SIGSEGV
    elif error[0] is ExecutorCrashedError:
        assert failure.value.signal is None  # it exited
    assert_still_serving(client, limited_worker, breast_cancer, executor)


def test_an_endless_model_is_killed_at_its_timeout(
    client: HubClient, limited_worker: WorkerProcess, breast_cancer: tuple
) -> None:
    model, data = breast_cancer
    (executor,) = ready_executors(limited_worker)
    began = time.monotonic()
    with pytest.raises(JobTimeoutError, match="timeout") as failure:
        client.predict(remote_models.LoopingModel(model), data, timeout_s=1.5)
    assert failure.value.reason is EndReason.TIMEOUT
    # The loop never ends by itself: ending at all proves the kill. The bound is loose for a
    # busy machine; the benchmarks, not this test, say how close to the deadline it is.
    assert time.monotonic() - began < 1.5 + 10
    wait_until(lambda: not psutil.pid_exists(executor), 10, "the executor to be killed")
    assert_still_serving(client, limited_worker, breast_cancer, executor)


def test_what_a_stopped_job_forked_is_killed_with_it(
    client: HubClient, limited_worker: WorkerProcess, breast_cancer: tuple, tmp_path: Path
) -> None:
    def fork_and_wait(marker: Path) -> None:
        import os
        import time

        child = os.fork()
        if child == 0:
            while True:
                time.sleep(1)
        marker.write_text(str(child))
        while True:
            time.sleep(1)

    marker = tmp_path / "child"
    handle = client.submit(fork_and_wait, marker)
    wait_until(marker.exists, 30, "the job to fork")
    handle.cancel()
    child = int(marker.read_text())
    wait_until(lambda: not psutil.pid_exists(child), 2, "the job's child to be killed")
    assert_still_serving(client, limited_worker, breast_cancer, 0)


def test_a_cancelled_job_is_killed_within_a_second_and_reported_as_cancelled(
    client: HubClient, limited_worker: WorkerProcess, breast_cancer: tuple, tmp_path: Path
) -> None:
    model, data = breast_cancer
    (executor,) = ready_executors(limited_worker)
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.LoopingModel(model, marker), data)
    wait_until(marker.exists, 30, "the job to start")
    assert handle.cancel()
    began = time.monotonic()
    wait_until(lambda: not psutil.pid_exists(executor), 1.0, "the executor to be killed")
    assert time.monotonic() - began < 1.0
    with pytest.raises(JobCancelledError) as failure:
        handle.result(timeout=60)
    assert failure.value.reason is EndReason.CANCELLED
    assert handle.cancelled()
    assert_still_serving(client, limited_worker, breast_cancer, executor)


def test_the_connection_is_served_while_user_code_hogs_the_executor(
    client: HubClient, limited_worker: WorkerProcess, breast_cancer: tuple, tmp_path: Path
) -> None:
    model, data = breast_cancer
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.LoopingModel(model, marker), data)
    wait_until(marker.exists, 30, "the job to start")
    began = time.monotonic()
    # An info job needs no slot: the worker answers it while its only slot is busy.
    assert client.info(timeout_s=10)["pid"] == limited_worker.process.pid
    (worker,) = client.workers()
    assert [job["kind"] for job in worker["running"]] == ["predict"]
    assert time.monotonic() - began < 2.0
    handle.cancel()


def test_a_result_waited_for_with_a_timeout_raises_timeout_error_and_the_job_goes_on(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    model, data = iris
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not end within 0\.5 s"):
        handle.result(timeout=0.5)
    assert 0.5 <= time.monotonic() - began < 30
    wait_until(marker.exists, 30, "the job to start")
    assert not handle.done()  # still running: a timed wait does not cancel it
    assert handle.cancel()
    with pytest.raises(JobCancelledError):
        handle.result(timeout=30)
    assert client.predict(model, data[:3]).tolist() == model.predict(data[:3]).tolist()
