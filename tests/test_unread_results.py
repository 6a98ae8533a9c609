"""The hub holds results that their clients have not read yet up to a bound for all jobs
together: past it, a job whose result does not fit fails with a clear error."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from conftest import CONNECTED, WorkerProcess, wait_until

from giskard.client import HubClient
from giskard.errors import JobError
from giskard.hub import Hub

# The worker cannot import this module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

MAX_UNREAD = 24 * 1024**2
# 10 MiB each: gRPC's buffers take a little of each, the hub the rest
RESULT_FLOATS = 10 * 1024**2 // 8
JOBS = 6


def big_result(marker: str) -> np.ndarray:
    Path(marker).touch()
    return np.arange(RESULT_FLOATS, dtype=np.float64)


@pytest.fixture
def small_hub() -> Iterator[Hub]:
    with Hub(port=0, max_unread_result_bytes=MAX_UNREAD) as running:
        yield running


def test_unread_results_beyond_the_hubs_bound_fail_with_a_clear_error(
    small_hub: Hub, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    start_worker("-h", "127.0.0.1", "-p", str(small_hub.port)).wait_for_output(CONNECTED)
    markers = [tmp_path / f"ran-{n}" for n in range(JOBS)]
    with HubClient(small_hub.address) as client:
        handles = [client.submit_call(big_result, [str(marker)]) for marker in markers]

        def all_ended_at_the_hub() -> bool:
            status = client.status()
            busy = status["queued"] or any(w["running"] for w in status["workers"])
            return all(marker.exists() for marker in markers) and not busy

        wait_until(all_ended_at_the_hub, 120, "every job to end at the hub, unread")
        assert small_hub.unread_results.held_bytes <= MAX_UNREAD
        expected = np.arange(RESULT_FLOATS, dtype=np.float64)
        succeeded = failed = 0
        for handle in handles:
            try:
                np.testing.assert_array_equal(handle.result(timeout=60), expected)
                succeeded += 1
            except JobError as error:
                assert error.remote_type == "UnreadResultsLimit"
                assert "read results as they come" in str(error)
                failed += 1
        assert succeeded >= 1 and failed >= 1
        assert small_hub.unread_results.peak_bytes <= MAX_UNREAD
        assert small_hub.unread_results.held_bytes == 0
        # Once read, the room is free again.
        np.testing.assert_array_equal(client.call(big_result, str(markers[0])), expected)
