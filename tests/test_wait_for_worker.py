"""A job that waits for a worker to connect (`wait_for_worker_s`): its inputs stay in the hub's
store meanwhile, and however the wait ends (no worker, the client leaves, a worker comes), the
job is listed with its reason and its inputs are released. Real hub, real worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.errors import EndReason, JobCancelledError, NoWorkerError
from giskard.hub import Hub

MIB = 1024**2
# Room for one 2 MiB input, not two: a second upload evicts the first unless it is pinned.
STORE_BYTES = 3 * MIB


def two_mib(fill: float) -> np.ndarray:
    return np.full(2 * MIB // 8, fill)


@pytest.fixture
def small_store_hub() -> Iterator[Hub]:
    with Hub(port=0, max_artifact_bytes=STORE_BYTES) as running:
        yield running


@pytest.fixture
def client(small_store_hub: Hub) -> Iterator[HubClient]:
    with HubClient(small_store_hub.address) as connected:
        yield connected


def pinned(client: HubClient) -> int:
    return client.status()["store"]["pinned"]


def test_a_waiting_jobs_input_is_not_evicted_before_its_worker_comes(
    small_store_hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    handle = client.submit_call(len, [two_mib(1.0)], worker="later", wait_for_worker_s=60)
    wait_until(lambda: pinned(client) == 1, 10, "the waiting job to hold its input")
    client.put(two_mib(2.0))  # another client's upload fills the store meanwhile
    worker = start_worker("-h", "127.0.0.1", "-p", str(small_store_hub.port), "--name", "later")
    worker.wait_for_output(CONNECTED)
    assert handle.result(timeout=60) == 2 * MIB // 8
    assert pinned(client) == 0


def test_every_end_of_a_wait_releases_the_input_and_is_listed_with_its_reason(
    client: HubClient,
) -> None:
    with pytest.raises(NoWorkerError, match="no worker named 'later'"):
        client.submit_call(len, [two_mib(1.0)], worker="later", wait_for_worker_s=0.2).result(
            timeout=60
        )
    assert pinned(client) == 0
    no_worker = client.status()["recent"][-1]
    assert (no_worker["reason"], no_worker["detail"]) == (EndReason.NO_WORKER, "NoWorker")
    assert no_worker["duration_s"] >= 0.2

    handle = client.submit_call(len, [two_mib(1.0)], worker="later", wait_for_worker_s=60)
    wait_until(lambda: pinned(client) == 1, 10, "the waiting job to hold its input")
    assert handle.cancel()
    with pytest.raises(JobCancelledError):
        handle.result(timeout=60)
    assert pinned(client) == 0
    cancelled = client.status()["recent"][-1]
    assert (cancelled["reason"], cancelled["detail"]) == (EndReason.CANCELLED, "JobCancelled")

    leaving = HubClient(client.address.target)
    abandoned = leaving.submit_call(len, [two_mib(1.0)], worker="later", wait_for_worker_s=60)
    wait_until(lambda: pinned(client) == 1, 10, "the waiting job to hold its input")
    leaving.close()  # its client goes away, never reading `abandoned`
    wait_until(lambda: pinned(client) == 0, 10, "the abandoned job to release its input")
    assert abandoned.done()
    left = client.status()["recent"][-1]
    assert (left["reason"], left["detail"]) == (EndReason.CANCELLED, "ClientLeft")
    assert client.status()["store"]["size_bytes"] <= STORE_BYTES
