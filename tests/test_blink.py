"""A worker's connection blinks (a proxy the test controls cuts it): its jobs keep running,
are reattached when it reconnects, and their results reach the client. A worker that does
not come back, or comes back without them, fails them as worker_lost."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until
from tcp_proxy import TcpProxy

from giskard.client import HubClient
from giskard.errors import EndReason, JobCancelledError, WorkerLostError
from giskard.hub import Hub
from giskard.job_handle import JobHandle

JOB_S = 3.0
# Rows of iris repeated: 15,000 int64 predictions are 120 KB, over the 64 KiB that travel
# inline in a job's end, so the result goes through SendResult.
BIG_ROWS = 15_000
WORKER_MAIN = str(Path(__file__).with_name("worker_main.py"))


def outcome(handle: JobHandle, timeout_s: float = 60) -> tuple[Any, BaseException | None]:
    """The job's result or failure, waited for at most `timeout_s`."""
    box: list[tuple[Any, BaseException | None]] = []

    def wait() -> None:
        try:
            box.append((handle.result(), None))
        except BaseException as exc:
            box.append((None, exc))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(timeout_s)
    assert box, f"the job did not end within {timeout_s} s"
    return box[0]


def start_worker_main(
    start_worker: Callable[..., WorkerProcess], port: int, *options: str
) -> WorkerProcess:
    """A real worker process with settings the CLI does not have (worker_main.py), connected."""
    worker = start_worker(argv=[sys.executable, WORKER_MAIN, str(port), *options])
    worker.wait_for_output(CONNECTED)
    return worker


def is_away(client: HubClient) -> bool:
    """Whether the hub's one worker is away: its connection dropped, its jobs wait for it."""
    return [bool(worker["away_since"]) for worker in client.workers()] == [True]


@pytest.fixture
def proxy(hub: Hub) -> Iterator[TcpProxy]:
    with TcpProxy(hub.port) as running:
        yield running


@pytest.fixture
def proxied_worker(proxy: TcpProxy, start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    worker = start_worker("-h", "127.0.0.1", "-p", str(proxy.port))
    worker.wait_for_output(CONNECTED)
    return worker


@pytest.mark.parametrize("rows", [150, BIG_ROWS], ids=["small-result", "big-result"])
def test_a_job_survives_a_blink_of_its_workers_connection(
    rows: int,
    client: HubClient,
    proxy: TcpProxy,
    proxied_worker: WorkerProcess,
    iris: tuple[Any, pd.DataFrame],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="giskard.hub")
    model, iris_data = iris
    data = pd.concat([iris_data] * (rows // len(iris_data)), ignore_index=True)
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SleepyModel(model, marker, JOB_S), data)
    wait_until(marker.exists, 30, "the job to start")
    proxy.cut()
    proxied_worker.wait_for_output(CONNECTED, count=2, timeout_s=15)
    result, failure = outcome(handle)
    assert failure is None, failure
    np.testing.assert_array_equal(result, model.predict(data))
    [worker] = client.workers()
    assert worker["pid"] == proxied_worker.process.pid  # the same process, reconnected
    assert "reconnected; 1 job(s) reattached, 0 lost" in caplog.text
    assert client.status()["recent"][-1]["reason"] is EndReason.SUCCEEDED


def test_a_worker_away_is_listed_with_its_job_until_it_comes_back(
    client: HubClient,
    proxy: TcpProxy,
    proxied_worker: WorkerProcess,
    iris: tuple[Any, pd.DataFrame],
    tmp_path: Path,
) -> None:
    model, data = iris
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SleepyModel(model, marker, JOB_S), data)
    wait_until(marker.exists, 30, "the job to start")
    cut_at = time.time()
    proxy.refuse()  # the worker cannot come back until restore()

    wait_until(lambda: is_away(client), 15, "the hub to list the worker as away")
    [worker] = client.workers()
    assert worker["pid"] == proxied_worker.process.pid and not worker["active"]
    assert cut_at - 1 <= worker["away_since"] <= time.time()
    assert [job["job_id"] for job in worker["running"]] == [handle.job_id]
    proxy.restore()
    result, failure = outcome(handle)
    assert failure is None, failure
    np.testing.assert_array_equal(result, model.predict(data))
    wait_until(lambda: client.workers()[0]["away_since"] is None, 15, "the worker to be back")


def test_a_worker_killed_for_good_fails_its_job_after_the_grace(
    start_worker: Callable[..., WorkerProcess], iris: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    _, data = iris
    grace_s = 2.0
    with Hub(port=0, reattach_grace_s=grace_s) as hub, HubClient(hub.address) as client:
        worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
        worker.wait_for_output(CONNECTED)
        marker = tmp_path / "started"
        handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
        wait_until(marker.exists, 30, "the job to start")
        worker.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, failure = outcome(handle, timeout_s=grace_s + 10)
        took_s = time.monotonic() - killed_at
    assert isinstance(failure, WorkerLostError), failure
    assert failure.reason is EndReason.WORKER_LOST
    assert "did not come back within 2 s" in str(failure)
    # No upper bound here but outcome's: the message says which timer failed it.
    assert took_s >= grace_s, f"failed {took_s:.1f} s after the kill"


def test_a_worker_that_comes_back_without_its_job_fails_it_at_once(
    client: HubClient,
    hub: Hub,
    start_worker: Callable[..., WorkerProcess],
    iris: tuple[Any, pd.DataFrame],
    tmp_path: Path,
) -> None:
    _, data = iris
    first = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--name", "blinker")
    first.wait_for_output(CONNECTED)
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
    wait_until(marker.exists, 30, "the job to start")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    wait_until(lambda: is_away(client), 10, "the hub to see the worker gone")
    second = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--name", "blinker")
    second.wait_for_output(CONNECTED, timeout_s=60)
    # Once it is back: not at the end of the hub's 30 s grace, which the message tells apart.
    _, failure = outcome(handle, timeout_s=20)
    assert isinstance(failure, WorkerLostError), failure
    assert "came back without the job" in str(failure)


def test_a_job_cancelled_during_a_blink_ends_cancelled_and_its_worker_stops_it(
    client: HubClient,
    proxy: TcpProxy,
    proxied_worker: WorkerProcess,
    iris: tuple[Any, pd.DataFrame],
    tmp_path: Path,
) -> None:
    _, data = iris
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
    wait_until(marker.exists, 30, "the job to start")
    executor = psutil.Process(int(marker.read_text()))
    proxy.refuse()
    wait_until(lambda: is_away(client), 10, "the hub to see the connection drop")
    assert handle.cancel()
    _, failure = outcome(handle, timeout_s=10)
    assert isinstance(failure, JobCancelledError), failure
    assert executor.is_running()  # the worker has not heard of the cancel yet
    proxy.restore()
    proxied_worker.wait_for_output(CONNECTED, count=2, timeout_s=15)

    wait_until(lambda: has_stopped(executor), 15, "the worker to stop the cancelled job")
    assert client.status()["recent"][-1]["reason"] is EndReason.CANCELLED


def test_a_worker_whose_connection_stays_down_stops_its_jobs_after_the_hubs_grace(
    start_worker: Callable[..., WorkerProcess], iris: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    """The worker keeps its jobs as long as the hub that welcomed it waits for them, whatever
    its own setting (30 s)."""
    _, data = iris
    with (
        Hub(port=0, reattach_grace_s=1) as hub,
        HubClient(hub.address) as client,
        TcpProxy(hub.port) as proxy,
    ):
        worker = start_worker_main(start_worker, proxy.port, "--reattach-grace", "30")
        marker = tmp_path / "started"
        handle = client.submit_predict(remote_models.SlowModel(marker, 600), data)
        wait_until(marker.exists, 30, "the job to start")
        executor = psutil.Process(int(marker.read_text()))
        proxy.refuse()
        proxy.cut()
        _, failure = outcome(handle, timeout_s=15)
        assert isinstance(failure, WorkerLostError), failure
        worker.wait_for_output("did not come back within 1 s: stopping 1 job(s)", timeout_s=15)
        wait_until(lambda: has_stopped(executor), 10, "the worker to stop the job")
        # Not "cancelled": a hub that still waited for it must not tell its client so.
        lost = "ended (worker_lost): the connection to the hub did not come back within 1 s"
        worker.wait_for_output(lost)
        assert worker.process.poll() is None  # it goes on trying to reconnect


def has_stopped(process: psutil.Process) -> bool:
    return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_a_blink_while_a_big_result_is_sent_fails_the_job_as_worker_lost(
    hub: Hub,
    client: HubClient,
    proxy: TcpProxy,
    proxied_worker: WorkerProcess,
    iris: tuple[Any, pd.DataFrame],
) -> None:
    _, data = iris
    # 100 MiB: unread, its stream stops at the hub's 64 MiB per job, cut in the middle.
    handle = client.submit_predict(remote_models.BigResultModel(100), data)
    wait_until(lambda: hub.unread_results.held_bytes > 32 * 1024**2, 60, "the result to flow")
    proxy.cut()
    proxied_worker.wait_for_output(CONNECTED, count=2, timeout_s=15)
    _, failure = outcome(handle, timeout_s=30)
    assert isinstance(failure, WorkerLostError), failure
    assert "dropped while it sent the job's result" in str(failure)
    proxied_worker.wait_for_output(
        "the connection to the hub dropped while the job sent its result"
    )
    assert hub.unread_results.held_bytes == 0  # what it held of the result is dropped
