"""A worker stopped (SIGTERM, an admin's stop) before its jobs could finish ends them as
`drained`, naming who stopped it: the one it runs past its drain grace, and the one it held
without starting it."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import remote_models
from conftest import WorkerProcess, wait_until
from tcp_proxy import TcpProxy
from test_blink import outcome, start_worker_main

from giskard.client import HubClient
from giskard.errors import DrainedError, EndReason, WorkerLostError
from giskard.hub import Hub


@pytest.mark.parametrize("stopped_by", ["sigterm", "admin-stop"])
def test_a_stopped_worker_ends_the_jobs_it_cannot_finish_as_drained(
    stopped_by: str,
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    iris: tuple[Any, pd.DataFrame],
    tmp_path: Path,
) -> None:
    _, data = iris
    worker = start_worker_main(start_worker, hub.port, "--drain-grace", "1")
    markers = [tmp_path / "first", tmp_path / "second"]
    # Concurrency 1, prefetch 1: one runs, the other waits in the worker.
    handles = [client.submit_predict(remote_models.SlowModel(m, 600), data) for m in markers]
    wait_until(lambda: any(m.exists() for m in markers), 30, "a job to start")
    wait_until(lambda: len(client.workers()[0]["running"]) == 2, 10, "both jobs to be sent")
    if stopped_by == "sigterm":
        worker.process.send_signal(signal.SIGTERM)
        who = "SIGTERM"
    else:
        [info] = client.workers()
        client.stop_worker(f"{info['pid']}@{info['hostname']}")
        who = "Stopped by"
    for handle in handles:
        _, failure = outcome(handle, timeout_s=20)
        assert isinstance(failure, DrainedError), failure
        assert failure.reason is EndReason.DRAINED
        assert who in str(failure)
    assert sum(m.exists() for m in markers) == 1  # the held one never started
    assert worker.process.wait(20) == 0
    reasons = [job["reason"] for job in client.status()["recent"][-2:]]
    assert reasons == [EndReason.DRAINED, EndReason.DRAINED]


def test_a_worker_whose_connection_drops_while_it_drains_still_exits(
    start_worker: Callable[..., WorkerProcess], iris: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    """The hub has failed the jobs of a draining worker whose connection dropped: the worker
    does not come back for them; it stops the one it runs when the reattach grace ends, and
    exits as drained."""
    _, data = iris
    with (
        Hub(port=0, reattach_grace_s=2) as hub,
        HubClient(hub.address) as client,
        TcpProxy(hub.port) as proxy,
    ):
        worker = start_worker_main(start_worker, proxy.port)
        marker = tmp_path / "started"
        handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
        wait_until(marker.exists, 30, "the job to start")
        [info] = client.workers()
        client.drain_worker(f"{info['pid']}@{info['hostname']}")
        worker.wait_for_output("exiting once its 1 job(s) end")
        proxy.refuse()
        proxy.cut()
        _, failure = outcome(handle, timeout_s=20)
        assert isinstance(failure, WorkerLostError), failure
        assert worker.process.wait(30) == 0
    assert "The connection dropped while the worker drained" in worker.output
    assert "did not come back within 2 s" in worker.output
