"""Every job ends for one named reason, which the client's exception and the hub's recent
jobs say (the reasons an executor's death gives are in test_execution)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import remote_models
from conftest import WorkerProcess, giskard_command, wait_until

from giskard.client import HubClient
from giskard.errors import EndReason, JobError, JobTimeoutError, WorkerLostError
from giskard.hub import Hub
from giskard.job_handle import JobHandle


def last_ended(client: HubClient) -> dict:
    return client.status()["recent"][-1]


def test_a_job_that_succeeds_is_listed_with_its_reason_by_the_hub(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    before = time.time()
    handle = client.submit_predict(model, data)
    np.testing.assert_array_equal(handle.result(timeout=60), model.predict(data))
    ended = last_ended(client)
    (worker,) = client.workers()
    assert (ended["kind"], ended["worker_id"]) == ("predict", worker["worker_id"])
    assert (ended["reason"], ended["detail"]) == (EndReason.SUCCEEDED, "")
    assert before <= ended["submitted_at"] <= ended["ended_at"] <= time.time()
    assert ended["duration_s"] == pytest.approx(ended["ended_at"] - ended["submitted_at"])
    result = subprocess.run(
        giskard_command("hub", "workers", "-h", "127.0.0.1", "-p", str(hub.port)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if ended["job_id"][:12] in line]
    assert line.endswith("succeeded") and f"predict {ended['job_id'][:12]}" in line


def test_a_model_that_raises_ends_as_a_model_error(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    _, data = iris
    with pytest.raises(JobError, match="cannot predict on 150 rows") as failure:
        client.predict(remote_models.FailingModel(), data)
    assert type(failure.value) is JobError
    assert (failure.value.reason, failure.value.remote_type) == (
        EndReason.MODEL_ERROR,
        "ValueError",
    )
    ended = last_ended(client)
    assert (ended["reason"], ended["detail"]) == (EndReason.MODEL_ERROR, "ValueError")


def test_a_job_whose_timeout_passes_in_the_queue_ends_as_a_timeout(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    _, data = iris
    marker = tmp_path / "started"
    # One runs, one waits on the worker (its prefetch): the next waits at the hub.
    busy = [client.submit_predict(remote_models.SlowModel(marker, 600), data) for _ in range(2)]
    wait_until(lambda: client.status()["workers"][0]["running"][1:], 30, "the jobs to be sent")
    with pytest.raises(JobTimeoutError, match="waited for a worker slot") as failure:
        client.predict(remote_models.FailingModel(), data, timeout_s=0.5)
    assert failure.value.reason is EndReason.TIMEOUT
    assert last_ended(client)["worker_id"] == ""  # it never reached a worker
    for handle in busy:
        handle.cancel()
    wait_until(lambda: last_ended(client)["reason"] is EndReason.CANCELLED, 10, "the cancel")


# Without a grace: a worker whose connection drops is lost at once (test_blink has the grace).
@pytest.mark.parametrize("hub", [{"reattach_grace_s": 0}], indirect=True)
def test_a_job_whose_worker_is_killed_ends_as_worker_lost(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    _, data = iris
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
    wait_until(marker.exists, 30, "the job to start")
    failures: list[BaseException] = []
    waiter = threading.Thread(target=lambda: failures.append(_failure_of(handle)))
    waiter.start()
    connected_worker.process.send_signal(signal.SIGKILL)
    waiter.join(10)
    assert not waiter.is_alive(), "the job did not end"
    (failure,) = failures
    assert isinstance(failure, WorkerLostError)
    assert (failure.reason, failure.remote_type) == (EndReason.WORKER_LOST, "WorkerLost")
    assert last_ended(client)["reason"] is EndReason.WORKER_LOST


def _failure_of(handle: JobHandle) -> BaseException | None:
    try:
        handle.result(timeout=60)
    except BaseException as exc:
        return exc
    return None
