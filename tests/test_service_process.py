"""The detached-process fallback, for machines without a service manager: real processes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import CONNECTED, PipeLines, giskard_command, wait_until

from giskard.client import HubClient
from giskard.hub import Hub
from giskard.progress import report_progress

BACKEND = ("--backend", "process")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A GISKARD_HOME for this test, for the CLI subprocesses and for the checks here."""
    home = tmp_path / "giskard-home"
    monkeypatch.setenv("GISKARD_HOME", str(home))
    yield home
    subprocess.run(giskard_command("worker", "stop", "-a"), capture_output=True, timeout=60)


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        giskard_command(*args), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def hub_args(hub: Hub) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(hub.port)]


def worker_status(home: Path) -> list[dict]:
    result = cli("worker", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stays_alive(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert psutil.pid_exists(pid), f"pid {pid} died"
        time.sleep(0.1)


def files_under(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_os_popen_returns_at_once_and_the_worker_serves_predict(
    home: Path, hub: Hub, client: HubClient, iris: tuple
) -> None:
    command = f"{sys.executable} -m giskard.cli worker start -d -h 127.0.0.1 -p {hub.port} "
    began = time.monotonic()
    with os.popen(command + " ".join(BACKEND)) as pipe:
        output = "".join(PipeLines(pipe).rest(timeout_s=30))
    assert time.monotonic() - began < 5
    assert "Backend: process" in output and "Connected to the Giskard server" in output
    (worker,) = client.workers()
    stays_alive(worker["pid"], 5)
    model, data = iris
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))


def test_subprocess_run_with_captured_output_returns_at_once(home: Path, hub: Hub) -> None:
    began = time.monotonic()
    result = cli("worker", "start", "-d", *hub_args(hub), *BACKEND, timeout_s=10)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 5


def test_a_terminal_hang_up_does_not_kill_the_worker(
    home: Path, hub: Hub, client: HubClient
) -> None:
    # As IPython's `!cmd` does: the command runs on a pty that is closed when it returns.
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        giskard_command("worker", "start", "-d", *hub_args(hub), *BACKEND),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    assert process.wait(10) == 0
    os.close(leader)  # hang-up
    (worker,) = client.workers()
    stays_alive(worker["pid"], 3)
    assert client.workers()[0]["pid"] == worker["pid"]


def test_repeat_is_a_no_op_and_status_and_logs_tell_the_truth(home: Path, hub: Hub) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    again = cli("worker", "start", "-d", *hub_args(hub), *BACKEND)
    assert again.returncode == 0 and "already running, unchanged" in again.stdout
    (status,) = worker_status(home)
    # Named and shown by the hub's canonical spelling, bound to the environment's python.
    name = f"giskard-worker-localhost-{hub.port}"
    assert status["backend"] == "process" and status["name"] == name
    assert status["state"] == "running" and status["connected"] is True
    assert status["hub"] == f"localhost:{hub.port}"
    assert status["interpreter"] == str(Path(sys.prefix).resolve() / "bin" / "python")
    assert psutil.Process(status["pid"]).cmdline()[1:5] == ["-m", "giskard.cli", "worker", "start"]
    logs = cli("worker", "logs", *hub_args(hub), "-n", "20")
    assert logs.returncode == 0 and CONNECTED in logs.stdout


def test_stop_leaves_no_process_and_no_state(home: Path, hub: Hub) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    (status,) = worker_status(home)
    stopped = cli("worker", "stop", *hub_args(hub))
    assert stopped.returncode == 0 and "Stopped process service" in stopped.stdout
    assert not psutil.pid_exists(status["pid"])
    assert files_under(home / "run" / "services") == []
    assert files_under(home / "run" / "workers") == []
    again = cli("worker", "stop", *hub_args(hub))
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def test_stop_all_stops_workers_of_several_hubs(home: Path) -> None:
    with Hub(port=0) as first, Hub(port=0) as second:
        for hub in (first, second):
            assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
        pids = [s["pid"] for s in worker_status(home)]
        assert len(pids) == 2
        result = cli("worker", "stop", "-a")
        assert result.returncode == 0 and result.stdout.count("Stopped") == 2
        assert not any(psutil.pid_exists(pid) for pid in pids)
        assert worker_status(home) == []


def test_a_killed_worker_leaves_no_blocking_state(home: Path, hub: Hub) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    supervisor = json.loads(next((home / "run" / "services").glob("*.json")).read_text())["pid"]
    os.killpg(supervisor, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(supervisor), 10, "the supervisor to die")
    wait_until(lambda: worker_status(home)[0]["state"] == "stopped", 10, "status to say stopped")
    restarted = cli("worker", "start", "-d", *hub_args(hub), *BACKEND)
    assert restarted.returncode == 0, restarted.stderr
    assert "installed and started" in restarted.stdout


def test_the_supervisor_restarts_a_crashed_worker(home: Path, hub: Hub, client: HubClient) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    (first,) = client.workers()
    os.kill(first["pid"], signal.SIGKILL)
    wait_until(
        lambda: [w["pid"] for w in client.workers()] not in ([], [first["pid"]]),
        15,
        "a new worker to connect",
    )
    assert "restarting in" in (home / "run" / "ml-worker.log").read_text()


def test_one_worker_per_interpreter_and_hub(home: Path, hub: Hub) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    (status,) = worker_status(home)
    foreground = cli("worker", "start", *hub_args(hub), timeout_s=20)
    assert foreground.returncode == 78
    assert f"already running: pid {status['pid']}" in foreground.stderr
    assert "Traceback" not in foreground.stderr

    assert cli("worker", "stop", *hub_args(hub)).returncode == 0
    with foreground_worker(home, hub) as running:
        daemon = cli("worker", "start", "-d", *hub_args(hub), *BACKEND)
        assert daemon.returncode == 78
        assert f"pid {running.pid} (in the foreground" in daemon.stderr


def test_a_refused_start_d_stores_no_key(home: Path, hub: Hub, client: HubClient) -> None:
    key_file = home.parent / "worker.key"
    key_file.write_text(client.create_key("worker", "refused-start")[1] + "\n")
    with foreground_worker(home, hub):
        args = ("--api-key-file", str(key_file), *BACKEND)
        daemon = cli("worker", "start", "-d", *hub_args(hub), *args)
        assert daemon.returncode == 78, daemon.stderr
        assert files_under(home / "secrets") == []


@contextlib.contextmanager
def foreground_worker(home: Path, hub: Hub) -> Iterator[subprocess.Popen[bytes]]:
    """A worker in the foreground for `hub`, once its status shows it; stopped after."""
    with subprocess.Popen(
        giskard_command("worker", "start", *hub_args(hub)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as running:
        try:
            wait_until(lambda: worker_status(home), 10, "the foreground worker")
            yield running
        finally:
            running.terminate()
            running.wait(30)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the choice made for root")
def test_root_gets_the_fallback_with_the_reason_said(home: Path, hub: Hub) -> None:
    result = cli("worker", "start", "-d", *hub_args(hub))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Backend: process (no service manager: running as root)"


def test_the_supervisor_gives_up_after_a_burst_of_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from giskard.installer.supervisor import BURST_LIMIT, Supervisor
    from giskard.worker.backoff import Backoff

    crashing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor = Supervisor("giskard-worker-test", crashing, Backoff(0.01, 0.02))
    began = time.monotonic()
    supervisor.run()
    assert time.monotonic() - began < 30
    failures = [r for r in caplog.records if "exited with code 3; restarting" in r.getMessage()]
    assert len(failures) == BURST_LIMIT - 1
    assert "giving up" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("code", [0, 78])
def test_the_supervisor_does_not_restart_a_clean_exit_or_a_configuration_error(code: int) -> None:
    from giskard.installer.supervisor import Supervisor

    supervisor = Supervisor("giskard-worker-test", [sys.executable, "-c", f"exit({code})"])
    supervisor.run()
    assert supervisor.child is not None and supervisor.child.returncode == code


def test_restart_replaces_the_worker(home: Path, hub: Hub, client: HubClient) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    (first,) = client.workers()
    result = cli("worker", "restart", *hub_args(hub))
    assert result.returncode == 0 and "Restarted process service" in result.stdout
    wait_until(
        lambda: [w["pid"] for w in client.workers()] not in ([], [first["pid"]]),
        30,
        "the new worker to connect",
    )
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == "zombie"


def test_stop_all_removes_leftovers_of_dead_workers(home: Path) -> None:
    services = home / "run" / "services"
    services.mkdir(parents=True)
    for suffix in (".lock", ".json", ".out"):
        (services / f"giskard-worker-gone-1{suffix}").write_text("{}")
    result = cli("worker", "stop", "-a")
    assert (
        result.returncode == 0 and "Stopped process service giskard-worker-gone-1" in result.stdout
    )
    assert files_under(services) == []


def test_logs_follow_prints_new_lines(home: Path, hub: Hub) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    with subprocess.Popen(
        giskard_command("worker", "logs", *hub_args(hub), "-f", "-n", "5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as follower:
        try:
            assert follower.stdout is not None
            lines = PipeLines(follower.stdout)
            lines.wait_for(CONNECTED, timeout_s=10)
            assert cli("worker", "restart", *hub_args(hub)).returncode == 0
            lines.wait_for("Restarting worker", timeout_s=20)
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(10)


def test_a_killed_supervisor_takes_its_worker_along_and_start_d_tells_the_truth(
    home: Path, hub: Hub, client: HubClient
) -> None:
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    (before,) = worker_status(home)
    supervisor = json.loads(next((home / "run" / "services").glob("*.json")).read_text())["pid"]
    os.kill(supervisor, signal.SIGKILL)  # the supervisor alone, not its group
    wait_until(lambda: not is_running(before["pid"]), 30, "the worker to end with its supervisor")
    assert [s["state"] for s in worker_status(home)] == ["stopped"]
    again = cli("worker", "start", "-d", *hub_args(hub), *BACKEND)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "installed and started" in again.stdout and "Connected" in again.stdout
    (after,) = worker_status(home)
    assert after["state"] == "running" and after["pid"] != before["pid"]
    wait_until(lambda: [w["pid"] for w in client.workers()] == [after["pid"]], 15, "one worker")


def test_an_orphaned_worker_is_shown_and_replaced_by_start_d(
    home: Path, hub: Hub, client: HubClient
) -> None:
    name = f"giskard-worker-localhost-{hub.port}"
    with orphan_of(hub, name) as orphan:
        wait_until(lambda: client.workers(), 15, "the orphan to connect")
        (shown,) = worker_status(home)
        assert (shown["pid"], shown["name"], shown["state"]) == (orphan.pid, name, "running")
        assert shown["backend"] == "unmanaged" and "orphan" in shown["detail"]
        started = cli("worker", "start", "-d", *hub_args(hub), *BACKEND)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"Stopped an orphaned worker of {name}, pid {orphan.pid}" in started.stdout
        assert "Connected to the Giskard server" in started.stdout
        assert orphan.wait(10) == 0
        (service,) = worker_status(home)
        assert service["backend"] == "process" and service["pid"] != orphan.pid
        wait_until(
            lambda: [w["pid"] for w in client.workers()] == [service["pid"]], 15, "one worker"
        )


def test_stop_stops_an_orphan_of_the_service(home: Path, hub: Hub) -> None:
    name = f"giskard-worker-localhost-{hub.port}"
    with orphan_of(hub, name) as orphan:
        wait_until(lambda: worker_status(home), 15, "the orphan's lock")
        stopped = cli("worker", "stop", "-h", "localhost", "-p", str(hub.port))
        assert stopped.returncode == 0
        assert f"Stopped orphaned worker of {name} pid {orphan.pid}" in stopped.stdout
        assert orphan.wait(10) == 0


@contextlib.contextmanager
def orphan_of(hub: Hub, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A worker that believes it runs as the service `name`, with no manager: what a
    supervisor that died leaves behind where the kernel cannot end its child (macOS)."""
    with subprocess.Popen(
        giskard_command("worker", "start", *hub_args(hub)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GISKARD_SERVICE": name},
    ) as orphan:
        try:
            yield orphan
        finally:
            orphan.kill()


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_while_upgrade_stops_the_worker_starts_it_again(
    home: Path, hub: Hub, client: HubClient
) -> None:
    """Stopping waits for the worker to drain; a Ctrl-C meanwhile must still leave the
    service running: once the draining supervisor is gone, a new one starts."""
    assert cli("worker", "start", "-d", *hub_args(hub), *BACKEND).returncode == 0
    [before] = wait_until(client.workers, 20, "the worker to connect")

    def report_then_sleep(seconds: float) -> None:
        report_progress(1, 2)
        time.sleep(seconds)

    # A running job keeps the stopping worker draining; it reports progress to the hub
    # only for a client that asks for it.
    job = client.submit_call(report_then_sleep, (8,), on_progress=lambda done, total: None)

    def reported() -> bool:
        return [[j["done"] for j in w["running"]] for w in client.workers()] == [[1]]

    wait_until(reported, 30, "the job to run")
    wheel = "/nonexistent/giskard_worker-99.0.0-py3-none-any.whl"
    upgrade = subprocess.Popen(
        giskard_command("worker", "upgrade", *hub_args(hub), "--requirement", wheel),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: [w["draining"] for w in client.workers()] == [True], 20, "a drain")
        upgrade.send_signal(signal.SIGINT)
        _, stderr = upgrade.communicate(timeout=60)
    finally:
        upgrade.kill()
    assert upgrade.returncode not in (0, None) and "Traceback" not in stderr, stderr
    assert job.result(timeout=30) is None  # the drain let it finish

    def running_again() -> bool:
        return [w["pid"] != before["pid"] for w in client.workers()] == [True]

    wait_until(running_again, 30, "a new worker to connect")
    [row] = worker_status(home)
    assert (row["backend"], row["state"]) == ("process", "running")
