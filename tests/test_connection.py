"""The session's life: connect, lose the hub, reconnect, standby workers, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, free_port, giskard_command, wait_until

from giskard.client import HubClient
from giskard.errors import NoWorkerError
from giskard.hub import Hub

BACKOFF_MAX_S = 3.0


@pytest.fixture
def start_hub_process(tmp_path: Path) -> Iterator[Callable[[int], subprocess.Popen[bytes]]]:
    """Start `giskard hub start -p PORT` as a subprocess; wait until it listens."""
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> subprocess.Popen[bytes]:
        log = tmp_path / f"hub-{len(started)}.stderr"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                giskard_command("hub", "start", "-p", str(port)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        started.append(process)
        wait_until(lambda: "Hub listening on" in log.read_text(), 10, "the hub to listen")
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_connected_is_logged_to_the_log_file(connected_worker: WorkerProcess) -> None:
    log_file = connected_worker.home / "run" / "ml-worker.log"
    assert CONNECTED in log_file.read_text()


def test_worker_connects_within_three_seconds(
    hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    began = time.monotonic()
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
    worker.wait_for_output(CONNECTED, timeout_s=3.0)
    assert time.monotonic() - began < 3.0


def test_worker_started_before_any_hub_waits_then_connects(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    port = free_port()
    worker = start_worker("-h", "127.0.0.1", "-p", str(port))
    worker.wait_for_output("Cannot reach the Giskard server", count=2)
    assert "Traceback" not in worker.output
    assert "connection refused; retrying in" in worker.output
    with Hub(port=port):
        appeared = time.monotonic()
        worker.wait_for_output(CONNECTED, timeout_s=BACKOFF_MAX_S + 3)
        assert time.monotonic() - appeared < BACKOFF_MAX_S + 3


def test_hub_killed_and_restarted_under_a_connected_worker(
    start_hub_process: Callable[[int], subprocess.Popen[bytes]],
    start_worker: Callable[..., WorkerProcess],
    iris: tuple,
) -> None:
    model, data = iris
    port = free_port()
    hub = start_hub_process(port)
    worker = start_worker("-h", "127.0.0.1", "-p", str(port))
    worker.wait_for_output(CONNECTED)
    hub.kill()
    hub.wait(10)
    worker.wait_for_output("Lost the connection to the Giskard server")
    start_hub_process(port)
    worker.wait_for_output(CONNECTED, count=2, timeout_s=BACKOFF_MAX_S + 5)
    with HubClient(f"127.0.0.1:{port}") as client:
        np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
    assert "Traceback" not in worker.output


def test_latest_worker_is_active_and_earlier_one_takes_over(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
    first.wait_for_output(CONNECTED)
    second = start_worker("-h", "127.0.0.1", "-p", str(hub.port))
    second.wait_for_output(CONNECTED)
    first.wait_for_output("now standby")

    workers = client.workers()
    assert [(w["pid"], w["active"]) for w in workers] == [
        (second.process.pid, True),
        (first.process.pid, False),
    ]
    assert client.info()["pid"] == second.process.pid

    assert second.stop() == 0
    first.wait_for_output("now active")
    assert [(w["pid"], w["active"]) for w in client.workers()] == [(first.process.pid, True)]
    assert client.info()["pid"] == first.process.pid


def test_worker_info_describes_the_environment(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    import sys

    (info,) = client.workers()
    assert info["active"] is True
    assert info["pid"] == connected_worker.process.pid
    assert info["interpreter"] == sys.executable
    assert info["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert info["packages"]["scikit-learn"]
    assert info["packages"]["giskard-worker"]
    assert info["hostname"] and info["platform"] and info["giskard_version"]
    process_start = psutil.Process(connected_worker.process.pid).create_time()
    assert abs(info["started_at"] - process_start) < 1.0


def test_sigterm_lets_the_running_job_finish_then_exits_zero(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    _, data = iris
    marker = tmp_path / "started"
    model = remote_models.SlowModel(marker, seconds=1.5)
    results: list[object] = []
    job = threading.Thread(target=lambda: results.append(client.predict(model, data)))
    job.start()
    wait_until(marker.exists, 10, "the job to start")
    connected_worker.process.send_signal(signal.SIGTERM)
    job.join(30)
    np.testing.assert_array_equal(results[0], np.arange(len(data)))
    assert connected_worker.process.wait(30) == 0
    assert "Worker stopped" in connected_worker.output


def test_a_stopped_worker_gets_no_new_jobs(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    assert connected_worker.stop() == 0
    with pytest.raises(NoWorkerError, match="no worker is connected"):
        client.predict(model, data)


def test_no_worker_waits_then_fails_clearly(client: HubClient, iris: tuple) -> None:
    model, data = iris
    began = time.monotonic()
    with pytest.raises(NoWorkerError, match="giskard worker start"):
        client.predict(model, data, wait_for_worker_s=0.5)
    assert 0.5 <= time.monotonic() - began < 5


def test_wait_for_worker_sees_a_worker_that_connects_meanwhile(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess], iris: tuple
) -> None:
    model, data = iris
    start_worker("-h", "127.0.0.1", "-p", str(hub.port))
    prediction = client.predict(model, data, wait_for_worker_s=20)
    np.testing.assert_array_equal(prediction, model.predict(data))


def test_the_worker_listens_on_no_port(connected_worker: WorkerProcess) -> None:
    process = psutil.Process(connected_worker.process.pid)
    connections = process.net_connections(kind="inet")
    assert any(c.status == psutil.CONN_ESTABLISHED for c in connections)
    assert [c for c in connections if c.status == psutil.CONN_LISTEN] == []


def test_sigint_on_an_idle_worker_exits_zero(connected_worker: WorkerProcess) -> None:
    os.kill(connected_worker.process.pid, signal.SIGINT)
    assert connected_worker.process.wait(15) == 0


def test_a_second_signal_abandons_a_job_that_outlives_the_grace(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    _, data = iris
    marker = tmp_path / "started"
    model = remote_models.SlowModel(marker, seconds=600)
    job = threading.Thread(target=lambda: _expect_failure(client, model, data), daemon=True)
    job.start()
    wait_until(marker.exists, 10, "the job to start")
    connected_worker.process.send_signal(signal.SIGTERM)
    connected_worker.wait_for_output("Waiting up to")
    connected_worker.process.send_signal(signal.SIGTERM)
    assert connected_worker.process.wait(10) == 0
    job.join(10)
    assert not job.is_alive()


def _expect_failure(client: HubClient, model: object, data: object) -> None:
    from giskard.errors import JobError

    with pytest.raises(JobError, match="disconnected during the job"):
        client.predict(model, data)


def test_an_unknown_host_name_is_said_plainly(start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker("-h", "no-such-host.invalid", "-p", "40051")
    worker.wait_for_output("Cannot reach the Giskard server at no-such-host.invalid:40051")
    assert "cannot resolve the host name" in worker.output
    assert "Traceback" not in worker.output


def test_a_hub_that_never_answers_is_a_timeout(
    hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    from test_hub_hardening import BlackHoleProxy

    proxy = BlackHoleProxy(hub.port)
    proxy.frozen.set()
    try:
        worker = start_worker("-h", "127.0.0.1", "-p", str(proxy.port))
        worker.wait_for_output("no answer to the hello", timeout_s=30)
        assert "Traceback" not in worker.output
    finally:
        proxy.close()


def test_hub_killed_during_a_job_the_worker_reconnects_and_serves_again(
    start_hub_process: Callable[[int], subprocess.Popen[bytes]],
    start_worker: Callable[..., WorkerProcess],
    iris: tuple,
    tmp_path: Path,
) -> None:
    model, data = iris
    port = free_port()
    hub = start_hub_process(port)
    worker = start_worker("-h", "127.0.0.1", "-p", str(port))
    worker.wait_for_output(CONNECTED)
    marker = tmp_path / "started"
    outcome: list[BaseException] = []

    def submit() -> None:
        with HubClient(f"127.0.0.1:{port}") as client:
            try:
                client.predict(remote_models.SlowModel(marker, 2), data)
            except Exception as exc:
                outcome.append(exc)

    job = threading.Thread(target=submit)
    job.start()
    wait_until(marker.exists, 10, "the job to start")
    hub.kill()
    job.join(10)
    assert outcome, "a job whose hub died must not succeed"
    worker.wait_for_output("Lost the connection to the Giskard server")
    start_hub_process(port)
    worker.wait_for_output(CONNECTED, count=2, timeout_s=BACKOFF_MAX_S + 10)
    with HubClient(f"127.0.0.1:{port}") as client:
        np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
