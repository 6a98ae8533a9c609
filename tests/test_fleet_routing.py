"""Several workers on one hub, with names and labels: jobs go where their constraint allows, a
name is one worker's, and `--routing spread` uses every worker. Real hub, real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import (
    CONNECTED,
    WorkerProcess,
    free_port,
    giskard_command,
    local_admin_key,
    wait_until,
)

from giskard.client import HubClient
from giskard.errors import ExitCode, NoWorkerError
from giskard.hub import Hub

# The jobs below are this module's functions: the workers cannot import it.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def pid() -> int:
    """The worker's pid: jobs run in its executor processes, its children."""
    return os.getppid()


def meet(rendezvous: str, others: int) -> dict:
    """Where the job ran, and whether `others` other jobs were running at the same time: each
    leaves its mark in `rendezvous`, then waits (30 s at most) to see theirs."""
    marks = Path(rendezvous)
    (marks / str(os.getpid())).touch()
    deadline = time.monotonic() + 30
    while len(list(marks.iterdir())) <= others and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"pid": os.getppid(), "met": len(list(marks.iterdir())) > others}


def pid_and_rows(frame: pd.DataFrame) -> list[int]:
    return [os.getppid(), len(frame)]


def hub_args(hub: Hub) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(hub.port)]


def connected(worker: WorkerProcess) -> WorkerProcess:
    worker.wait_for_output(CONNECTED, timeout_s=30)
    return worker


@pytest.fixture
def cpu_and_gpu(
    hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> tuple[WorkerProcess, WorkerProcess]:
    """Two workers: "cpu-box" (zone=eu) connected first, then "gpu-box" (gpu=a100)."""
    cpu = connected(start_worker(*hub_args(hub), "--name", "cpu-box", "--label", "zone=eu"))
    gpu = connected(
        start_worker(*hub_args(hub), "--name=gpu-box", "--label", "gpu=a100", "--label", "zone=eu")
    )
    return cpu, gpu


def test_jobs_go_to_the_worker_their_name_or_labels_ask_for_and_the_rest_to_the_latest(
    client: HubClient, cpu_and_gpu: tuple[WorkerProcess, WorkerProcess], iris: tuple
) -> None:
    cpu, gpu = cpu_and_gpu
    assert client.call(pid, worker="cpu-box") == cpu.process.pid
    assert client.call(pid, labels={"gpu": "a100"}) == gpu.process.pid
    assert (
        client.submit(pid, worker="gpu-box", labels={"zone": "eu"}).result(timeout=60)
        == gpu.process.pid
    )
    assert client.call(pid) == gpu.process.pid  # both may: the latest connected gets it
    assert client.info(worker="cpu-box")["name"] == "cpu-box"
    model, data = iris
    handle = client.submit_predict(model, data, worker="cpu-box")
    np.testing.assert_array_equal(handle.result(timeout=60), model.predict(data))

    by_name = {w["name"]: w for w in client.workers()}
    assert by_name["cpu-box"]["labels"] == {"zone": "eu"}
    assert by_name["gpu-box"]["labels"] == {"gpu": "a100", "zone": "eu"}
    assert (by_name["gpu-box"]["active"], by_name["cpu-box"]["active"]) == (True, False)


def test_hub_workers_shows_names_and_labels(
    hub: Hub, cpu_and_gpu: tuple[WorkerProcess, WorkerProcess]
) -> None:
    summary = run_cli("hub", "workers", *hub_args(hub))
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert "worker gpu-box gpu=a100 zone=eu" in lines[0] and lines[0].startswith("active")
    assert "worker cpu-box zone=eu" in lines[1] and lines[1].startswith("standby")
    listed = run_cli("hub", "workers", "--json", *hub_args(hub))
    names = [(w["name"], w["labels"]) for w in json.loads(listed.stdout)["workers"]]
    assert names == [("gpu-box", {"gpu": "a100", "zone": "eu"}), ("cpu-box", {"zone": "eu"})]


def test_a_job_for_a_name_nobody_has_fails_after_its_wait_naming_it(
    client: HubClient, cpu_and_gpu: tuple[WorkerProcess, WorkerProcess], iris: tuple
) -> None:
    model, data = iris
    began = time.monotonic()
    with pytest.raises(NoWorkerError, match="no worker named 'tpu-box' is connected") as error:
        client.predict(model, data, worker="tpu-box", wait_for_worker_s=1.5)
    assert 1.5 <= time.monotonic() - began < 10
    assert "cpu-box" in str(error.value) and "gpu-box" in str(error.value)
    with pytest.raises(NoWorkerError, match="with labels gpu=h100"):
        client.call(pid, labels={"gpu": "h100"})


def test_a_job_waiting_for_a_name_runs_when_that_worker_connects(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    connected(start_worker(*hub_args(hub), "--name", "first"))
    handle = client.submit_call(pid, worker="late", wait_for_worker_s=60)
    late = connected(start_worker(*hub_args(hub), "--name", "late"))
    assert handle.result(timeout=60) == late.process.pid


def test_bad_names_and_labels_are_usage_errors_on_one_line(client: HubClient) -> None:
    for args in (
        ["--name", "has space"],
        ["--name", "x" * 64],
        ["--name", "semi;colon"],
        ["--label", "gpu"],
        ["--label", "gpu=a 100"],
        ["--label", "bad key=1"],
        ["--label", "a=1", "--label", "a=2"],
    ):
        result = run_cli("worker", "start", "-p", "1", *args)
        assert result.returncode == ExitCode.USAGE, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="invalid worker name"):
        client.call(pid, worker="no/slash")
    with pytest.raises(ValueError, match="invalid value 'a 100'"):
        client.call(pid, labels={"gpu": "a 100"})


@pytest.fixture(scope="session")
def other_environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of another virtual environment (another sys.prefix) that sees this one's
    packages: a worker started from it is another environment on this host."""
    root = tmp_path_factory.mktemp("other-env") / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    (site_packages,) = root.glob("lib/python*/site-packages")
    ours = [p for p in sys.path if p.endswith("site-packages")]
    lines = [f"import site; site.addsitedir({path!r})" for path in ours]
    (site_packages / "parent_env.pth").write_text("\n".join(lines) + "\n")
    return root / "bin" / "python"


def start_from(python: Path, home: Path, stderr_path: Path, *args: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    with stderr_path.open("wb") as stderr:
        return subprocess.Popen(
            [str(python), "-m", "giskard.cli", "worker", "start", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "GISKARD_HOME": str(home), "GISKARD_API_KEY": local_admin_key()},
        )


@pytest.fixture
def other_worker(
    other_environment: Path, tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        stderr_path = tmp_path / f"other-{len(started)}.stderr"
        process = start_from(other_environment, tmp_path / "other-home", stderr_path, *args)
        started.append(process)
        return process, stderr_path

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_taken_name_is_refused_to_another_environment_which_exits_78(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    other_worker: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    first = connected(start_worker(*hub_args(hub), "--name", "shared"))
    process, stderr_path = other_worker(*hub_args(hub), "--name", "shared")
    assert process.wait(30) == ExitCode.CONFIG
    output = stderr_path.read_text()
    assert "the name 'shared' is taken by another worker on this hub" in output
    assert "start this worker with another --name" in output and "Traceback" not in output
    assert [w["pid"] for w in client.workers()] == [first.process.pid]
    assert first.process.poll() is None


def test_default_names_are_stable_per_environment_and_differ_between_environments(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    other_worker: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    worker = connected(start_worker(*hub_args(hub)))
    other, _ = other_worker(*hub_args(hub))
    wait_until(lambda: len(client.workers()) == 2, 30, "both workers to connect")
    names = {w["pid"]: w["name"] for w in client.workers()}
    assert names[worker.process.pid] != names[other.pid]
    assert names[other.pid].split("-")[-2] == "env"  # host, environment's directory, hash
    # The same environment (and GISKARD_HOME) started again comes back under its name.
    assert worker.stop() == 0
    again = connected(start_worker(*hub_args(hub), home=worker.home))
    wait_until(
        lambda: (
            {w["pid"]: w["name"] for w in client.workers()}.get(again.process.pid)
            == names[worker.process.pid]
        ),
        30,
        "the restarted worker under its name",
    )


def test_the_same_worker_connecting_again_replaces_its_earlier_session(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Same name, host, environment and key: the hub takes the new session for the same worker
    # (as when it has not yet noticed that the old connection died) and ends the old one.
    old = connected(start_worker(*hub_args(hub), "--name", "same"))
    new = connected(start_worker(*hub_args(hub), "--name", "same"))
    assert old.process.wait(30) == ExitCode.CONFIG
    assert "replaced by a newer session of this worker" in old.output
    assert [(w["name"], w["pid"]) for w in client.workers()] == [("same", new.process.pid)]
    assert client.call(pid) == new.process.pid


@pytest.fixture
def spread_hub() -> Iterator[Hub]:
    with Hub(port=0, routing="spread") as running:
        yield running


def test_spread_runs_jobs_on_both_workers_at_once(
    spread_hub: Hub, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    first = connected(start_worker(*hub_args(spread_hub), "--name", "one"))
    second = connected(start_worker(*hub_args(spread_hub), "--name", "two"))
    with HubClient(spread_hub.address) as client:
        assert all(w["active"] for w in client.workers())
        # Each worker runs one job at a time: the two jobs meet only if both workers run.
        handles = [client.submit(meet, str(tmp_path), 1, timeout_s=60) for _ in range(2)]
        runs = [handle.result(timeout=60) for handle in handles]
    assert {run["pid"] for run in runs} == {first.process.pid, second.process.pid}
    assert all(run["met"] for run in runs), runs


def test_spread_sends_a_job_to_the_worker_that_holds_its_big_input(
    spread_hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    holder = connected(start_worker(*hub_args(spread_hub), "--name", "holder"))
    connected(start_worker(*hub_args(spread_hub), "--name", "latest"))
    frame = pd.DataFrame(np.random.default_rng(0).random((2_621_440, 1)))  # 20 MiB
    with HubClient(spread_hub.address) as client:
        stored = client.put(frame)
        assert stored.size > 20 * 1024**2
        first = client.call(pid_and_rows, stored, worker="holder")
        assert first == [holder.process.pid, len(frame)]
        # Both idle: without the cache the latest connected would get it.
        assert client.call(pid_and_rows, stored) == first
        assert client.call(pid) != holder.process.pid


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        giskard_command(*args), capture_output=True, text=True, timeout=60, check=False
    )


def test_hub_start_routing_spread_from_the_command_line(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    bad = run_cli("hub", "start", "-p", str(free_port()), "--routing", "random")
    assert bad.returncode == ExitCode.USAGE and len(bad.stderr.strip().splitlines()) == 1
    assert "latest or spread" in bad.stderr
    port = free_port()
    log = tmp_path / "hub.stderr"
    with log.open("wb") as stderr:
        hub = subprocess.Popen(
            giskard_command("hub", "start", "-p", str(port), "--routing", "spread"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until(lambda: "Hub listening on" in log.read_text(), 10, "the hub to listen")
        for name in ("one", "two"):
            connected(start_worker("-h", "127.0.0.1", "-p", str(port), "--name", name))
        with HubClient(f"127.0.0.1:{port}") as client:
            assert [(w["name"], w["active"]) for w in client.workers()] == [
                ("two", True),
                ("one", True),
            ]
    finally:
        hub.terminate()
        hub.wait(10)


def test_a_service_worker_keeps_its_name_and_labels(
    hub: Hub, client: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GISKARD_API_KEY", local_admin_key() or "")  # before the home changes
    monkeypatch.setenv("GISKARD_HOME", str(tmp_path / "service-home"))
    try:
        args = ["--name", "svc", "--label", "tier=gold", "--backend", "process"]
        started = run_cli("worker", "start", "-d", *hub_args(hub), *args)
        assert started.returncode == 0, started.stderr
        (worker,) = client.workers()
        assert (worker["name"], worker["labels"]) == ("svc", {"tier": "gold"})
        (status,) = json.loads(run_cli("worker", "status", "--json").stdout)
        assert (status["worker_name"], status["labels"]) == ("svc", {"tier": "gold"})
        assert "worker svc [tier=gold]" in run_cli("worker", "status").stdout
    finally:
        run_cli("worker", "stop", "-a")
