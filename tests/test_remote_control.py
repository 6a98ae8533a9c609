"""An admin pauses, resumes, drains and stops a connected worker from the hub: a real hub, real
worker processes, real jobs."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, giskard_command, wait_until

from giskard.client import HubClient
from giskard.errors import AuthenticationError, JobCancelledError, WorkerNotFoundError
from giskard.hub import Hub, registry
from giskard.rpc.v1 import common_pb2, worker_pb2

JOB_S = 3.0


def _admin(client: HubClient, name: str) -> HubClient:
    """A client with a new admin key named `name`, which the worker's log then names."""
    _, key = client.create_key("admin", name)
    return HubClient(client.address.target, api_key=key)


def _ref(client: HubClient) -> str:
    """The only connected worker, as pid@hostname."""
    [worker] = client.workers()
    return f"{worker['pid']}@{worker['hostname']}"


def _slow_job(client: HubClient, tmp_path: Path, data: object) -> object:
    """A job of JOB_S seconds, once it runs on the worker."""
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.SlowModel(marker, JOB_S), data)
    wait_until(marker.exists, 30, "the slow job to start")
    return handle


def _worker_status(worker: WorkerProcess) -> str:
    result = subprocess.run(
        giskard_command("worker", "status"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GISKARD_HOME": str(worker.home)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_job_waits_at_the_hub_while_its_only_worker_is_paused(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple[object, object]
) -> None:
    model, data = iris
    ref = _ref(client)
    with _admin(client, "ops-pause") as admin:
        assert admin.pause_worker(ref)["pid"] == connected_worker.process.pid
        connected_worker.wait_for_output("Paused by admin key 'ops-pause' of the hub at")
        handle = client.submit_predict(model, data)
        wait_until(lambda: client.status()["queued"] == 1, 10, "the job to queue at the hub")
        [worker] = client.workers()
        assert worker["running"] == [] and worker["paused"]  # connected, but sent nothing
        assert not handle.done()
        assert "paused by the hub" in _worker_status(connected_worker)
        admin.resume_worker(ref)
    assert len(handle.result(timeout=60)) == len(data)
    connected_worker.wait_for_output("Resumed by admin key 'ops-pause'")
    assert connected_worker.process.poll() is None


def test_drain_lets_the_running_job_finish_then_the_worker_exits_0(
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple[object, object],
    tmp_path: Path,
) -> None:
    _, data = iris
    ref = _ref(client)
    handle = _slow_job(client, tmp_path, data)
    with _admin(client, "ops-drain") as admin:
        admin.drain_worker(ref)
    assert len(handle.result(timeout=60)) == len(data)
    assert connected_worker.process.wait(30) == 0
    address = f"127.0.0.1:{client.address.port}"
    assert f"Drained by admin key 'ops-drain' of the hub at {address}" in connected_worker.output
    wait_until(lambda: client.workers() == [], 10, "the worker to leave the hub")
    status = _worker_status(connected_worker)
    assert f"Drained by admin key 'ops-drain' of the hub at {address}" in status, status


def test_stop_force_cancels_the_running_job_and_the_worker_exits_0(
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple[object, object],
    tmp_path: Path,
) -> None:
    _, data = iris
    handle = _slow_job(client, tmp_path, data)
    with _admin(client, "ops-stop") as admin:
        admin.stop_worker(_ref(client), force=True)
    with pytest.raises(JobCancelledError):
        handle.result(timeout=60)
    assert connected_worker.process.wait(30) == 0
    assert "Force-stopped by admin key 'ops-stop'" in _worker_status(connected_worker)


def test_a_fresh_start_clears_the_last_stop_reason(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(hub.port))
    first = start_worker(*args)
    first.wait_for_output(CONNECTED)
    client.drain_worker(_ref(client))  # the local admin key
    assert first.process.wait(30) == 0
    assert "Drained by admin key 'local-admin-" in _worker_status(first)
    again = start_worker(*args, home=first.home)
    again.wait_for_output(CONNECTED)
    assert "Drained" not in _worker_status(again)
    assert again.stop() == 0


def test_a_client_key_cannot_control_a_worker(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple[object, object]
) -> None:
    model, data = iris
    _, key = client.create_key("client", "not-ops")
    ref = _ref(client)
    with HubClient(client.address.target, api_key=key) as platform:
        with pytest.raises(AuthenticationError, match="a client key cannot control workers"):
            platform.drain_worker(ref)
        # Nothing changed: the worker still takes jobs.
        assert len(platform.predict(model, data)) == len(data)
    assert "Drained" not in connected_worker.output


def test_an_unknown_worker_is_refused(client: HubClient, connected_worker: WorkerProcess) -> None:
    with pytest.raises(WorkerNotFoundError, match="no connected worker '999999@nowhere'"):
        client.pause_worker("999999@nowhere")


def test_the_cli_controls_a_worker_and_refuses_in_one_line(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple[object, object]
) -> None:
    def workers(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        command = giskard_command("hub", "workers", *args, "-p", str(hub.port))
        env = {**os.environ, **({"GISKARD_API_KEY": key} if key else {})}
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    listed = workers("--json")
    assert listed.returncode == 0, listed.stderr
    assert '"worker_id"' in listed.stdout
    assert "active" in workers().stdout
    worker_id = client.workers()[0]["worker_id"]

    unknown = workers("pause", "no-such-worker")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1
    assert "no connected worker 'no-such-worker'" in unknown.stderr

    _, client_key = client.create_key("client", "cli-not-ops")
    refused = workers("drain", worker_id, key=client_key)
    assert (refused.returncode, refused.stderr.count("\n")) == (78, 1), refused.stderr
    assert "a client key cannot control workers" in refused.stderr

    paused = workers("pause", worker_id[:8])
    assert paused.returncode == 0, paused.stderr
    assert f"Paused worker pid {connected_worker.process.pid}" in paused.stdout
    assert workers().stdout.startswith("paused  pid")
    assert workers("resume", worker_id[:8]).returncode == 0
    model, data = iris
    assert len(client.predict(model, data)) == len(data)
    stopped = workers("stop", worker_id)
    assert stopped.returncode == 0, stopped.stderr
    assert connected_worker.process.wait(30) == 0
    assert "Stopped by admin key" in connected_worker.output


@pytest.fixture
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A GISKARD_HOME for this test's hub and CLI subprocesses (ask for it before `hub`)."""
    home = tmp_path / "giskard-home"
    monkeypatch.setenv("GISKARD_HOME", str(home))
    yield home
    subprocess.run(giskard_command("worker", "stop", "-a"), capture_output=True, timeout=60)


def test_the_fallback_supervisor_leaves_a_drained_worker_stopped(
    own_home: Path, hub: Hub, client: HubClient
) -> None:
    start = giskard_command("worker", "start", "-d", "-p", str(hub.port), "--backend", "process")
    started = subprocess.run(start, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    [worker] = wait_until(client.workers, 15, "the worker to connect")
    supervisor = psutil.Process(worker["pid"]).parent()
    assert supervisor is not None
    client.drain_worker(f"{worker['pid']}@{worker['hostname']}")
    # The supervisor restarts a worker that fails; after a clean exit it ends too.
    _, alive = psutil.wait_procs([supervisor], timeout=30)
    assert alive == []
    assert client.workers() == []
    status = subprocess.run(
        giskard_command("worker", "status"), capture_output=True, text=True, timeout=60
    )
    assert "Drained by admin key 'local-admin-" in status.stdout, status.stdout


def test_find_worker_takes_a_name_a_worker_id_prefix_or_pid_at_host_and_refuses_ambiguity() -> None:
    from giskard.hub.registry import UnknownWorkerError, WorkerRegistry, WorkerSession, find_worker
    from giskard.rpc.v1 import common_pb2

    registry = WorkerRegistry()
    first, second = (
        WorkerSession(
            common_pb2.WorkerInfo(worker_id=wid, pid=pid, hostname="box", name=name), peer=""
        )
        for wid, pid, name in (("ab12", 10, "gpu-box"), ("ab34", 11, "cpu-box"))
    )

    async def connect() -> None:
        registry.add(first)
        registry.add(second)

    asyncio.run(connect())
    assert find_worker(registry, "ab3") is second
    assert find_worker(registry, "10@box") is first
    assert find_worker(registry, "gpu-box") is first
    with pytest.raises(UnknownWorkerError, match="2 connected workers match 'ab'"):
        find_worker(registry, "ab")
    with pytest.raises(UnknownWorkerError, match="no connected worker"):
        find_worker(registry, "")


def test_pausing_the_active_worker_hands_the_jobs_to_the_other_until_resumed(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    iris: tuple[object, object],
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(hub.port))
    older = start_worker(*args)
    older.wait_for_output(CONNECTED)
    newer = start_worker(*args)
    newer.wait_for_output(CONNECTED)

    def active_pid() -> int:
        [active] = [w for w in client.workers() if w["active"]]
        return active["pid"]

    assert active_pid() == newer.process.pid
    ref = f"{newer.process.pid}@{client.workers()[0]['hostname']}"
    client.pause_worker(ref)
    assert active_pid() == older.process.pid
    older.wait_for_output("now active")
    model, data = iris
    assert len(client.predict(model, data)) == len(data)
    client.resume_worker(ref)
    assert active_pid() == newer.process.pid
    older.wait_for_output("now standby: a resumed worker is active")


def test_a_paused_worker_that_restarts_comes_back_paused_until_resumed(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    iris: tuple[object, object],
) -> None:
    args = ("-h", "127.0.0.1", "-p", str(hub.port))
    first = start_worker(*args)
    first.wait_for_output(CONNECTED)
    with _admin(client, "ops-keep-paused") as admin:
        admin.pause_worker(_ref(client))
        assert first.stop() == 0
        wait_until(lambda: client.workers() == [], 10, "the worker to leave the hub")
        again = start_worker(*args, home=first.home)  # the same worker, restarted
        again.wait_for_output("Paused by admin key 'ops-keep-paused' of the hub at", 30)
        [worker] = client.workers()
        assert worker["pid"] == again.process.pid and worker["paused"]
        assert "paused by the hub" in _worker_status(again)
        model, data = iris
        handle = client.submit_predict(model, data)
        wait_until(lambda: client.status()["queued"] == 1, 10, "the job to queue at the hub")
        assert client.workers()[0]["running"] == []
        admin.resume_worker(_ref(client))
    assert len(handle.result(timeout=60)) == len(data)
    assert not client.workers()[0]["paused"]


@pytest.mark.parametrize("leaves", ["disconnects", "is_replaced"])
def test_a_pause_is_remembered_for_a_day_from_when_the_worker_left_not_from_the_pause(
    leaves: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(registry.time, "monotonic", lambda: now[0])
    day = registry.PAUSE_REMEMBERED_S
    order = worker_pb2.Control(action=worker_pb2.Control.PAUSE, by="admin key 'ops'")

    def session() -> registry.WorkerSession:
        info = common_pb2.WorkerInfo(name="gpu-box", hostname="host", environment="/venv")
        return registry.WorkerSession(info=info, peer="ipv4:192.0.2.1:1", key_name="ops")

    async def scenario() -> list[bool]:
        workers = registry.WorkerRegistry()
        first = session()
        workers.add(first)
        workers.set_paused(first, order)
        now[0] += 2 * day  # paused, and connected for two days
        if leaves == "disconnects":
            workers.remove(first)
        back = session()
        workers.add(back)  # replaces `first` if it did not disconnect
        workers.remove(back)
        now[0] += day - 1  # away for almost a day
        again = session()
        workers.add(again)
        workers.remove(again)
        now[0] += day + 1  # away for more than a day
        late = session()
        workers.add(late)
        return [back.paused, again.paused, late.paused]

    assert asyncio.run(scenario()) == [True, True, False]
