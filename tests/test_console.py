"""The hub's console: served in the hub's process beside gRPC, /healthz, /metrics with a key,
login sessions and the read-only pages, over real HTTP to a real hub and real workers."""

from __future__ import annotations

import contextlib
import http.client
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import remote_models
from conftest import PipeLines, WorkerProcess, free_port, giskard_command, wait_until
from console_http import log_in, request
from prometheus_client.parser import text_string_to_metric_families

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.errors import JobError
from giskard.hub import Hub
from giskard.hub.keys import KeyStore
from giskard.tls import self_signed

CONSOLE = {"console_port": 0}


@pytest.fixture
def console_hub() -> Iterator[Hub]:
    with Hub(port=0, console_port=0) as running:
        yield running


def test_healthz_answers_ok_without_a_key(console_hub: Hub) -> None:
    reply = request(console_hub.console_port, "/healthz")
    assert (reply.status, reply.body) == (200, "ok")


def test_a_hub_without_a_console_port_serves_no_console() -> None:
    with Hub(port=0) as hub:
        assert hub.console_port is None


@contextlib.contextmanager
def hub_process(argv: list[str]) -> Iterator[PipeLines]:
    """A hub run by `argv`, its stderr lines for the block to read; after the block it is
    stopped with SIGTERM, and must exit 0."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            yield PipeLines(process.stderr)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_the_cli_serves_the_console_on_its_port_and_stops_it_with_the_hub() -> None:
    console_port = free_port()
    command = ["hub", "start", "-p", str(free_port()), "--console-port", str(console_port)]
    with hub_process(giskard_command(*command)) as lines:
        lines.wait_for(f"Console on http://127.0.0.1:{console_port}", timeout_s=30)
        assert request(console_port, "/healthz").body == "ok"
    lines.rest(timeout_s=10)
    with pytest.raises(OSError):
        request(console_port, "/healthz")


def test_a_busy_console_port_is_one_line_and_the_grpc_exit_code() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            giskard_command("hub", "start", "-p", str(free_port()), "--console-port", str(port)),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert f"cannot listen on 127.0.0.1:{port} for the console" in line


def test_no_console_and_a_console_port_together_are_a_usage_error() -> None:
    refused = subprocess.run(
        giskard_command("hub", "start", "--no-console", "--console-port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert len(refused.stderr.splitlines()) == 1 and "--no-console" in refused.stderr


def test_a_hub_without_the_console_packages_warns_once_and_serves() -> None:
    # What a hub installed without the [hub] extra sees: uvicorn cannot be found.
    hide_uvicorn = (
        "import sys; sys.modules['uvicorn'] = None; from giskard.cli import main;"
        f" main(['hub', 'start', '-p', '{free_port()}'])"
    )
    with hub_process([sys.executable, "-c", hide_uvicorn]) as lines:
        said = [lines.next(timeout_s=30)]
        while "Hub listening on" not in said[-1]:
            said.append(lines.next(timeout_s=30))
    said += lines.rest(timeout_s=10)
    warnings = [line for line in said if "console" in line.lower()]
    assert len(warnings) == 1 and "giskard-worker[hub]" in warnings[0], said


def metrics(hub: Hub, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = request(hub.console_port, "/metrics", headers={"Authorization": f"Bearer {key}"})
    assert reply.status == 200, reply.body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.body)
        for sample in family.samples
    }


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_metrics_count_the_jobs_that_ran_and_the_workers_by_state(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
    with pytest.raises(JobError):
        client.predict(remote_models.FailingModel(), data)
    scraped = metrics(hub, hub.admin_key)
    ended = {
        dict(labels)["reason"]: value
        for (name, labels), value in scraped.items()
        if name == "giskard_hub_jobs_ended_total"
    }
    assert ended["succeeded"] == ended["model_error"] == 1
    assert sum(ended.values()) == 2
    assert scraped[("giskard_hub_workers", (("state", "active"),))] == 1
    assert scraped[("giskard_hub_workers", (("state", "standby"),))] == 0
    assert scraped[("giskard_hub_queued_jobs", ())] == 0
    store = client.status()["store"]
    assert scraped[("giskard_hub_artifact_store_bytes", ())] == store["size_bytes"]
    assert scraped[("giskard_hub_artifact_store_artifacts", ())] == store["artifacts"]


def test_metrics_take_a_client_key_and_refuse_others(console_hub: Hub, tmp_path: Path) -> None:
    keys = KeyStore(hub_dir() / "keys.json")
    _, client_key = keys.create("client")
    _, worker_key = keys.create("worker")
    assert metrics(console_hub, client_key)[("giskard_hub_queued_jobs", ())] == 0
    for headers in (
        {},
        {"Authorization": "Bearer gsk_00000000_wrong"},
        {"Authorization": f"Bearer {worker_key}"},
        {"Authorization": f"Basic {client_key}"},
    ):
        reply = request(console_hub.console_port, "/metrics", headers=headers)
        assert reply.status == 401, headers
        assert "giskard_hub" not in reply.body


def test_a_wrong_or_revoked_key_is_refused_at_login_and_says_nothing_more(
    console_hub: Hub,
) -> None:
    keys = KeyStore(hub_dir() / "keys.json")
    record, revoked_key = keys.create("client")
    keys.revoke(record.name)
    _, worker_key = keys.create("worker")
    for key in ("gsk_00000000_wrong", revoked_key, worker_key, ""):
        reply = request(console_hub.console_port, "/login", method="POST", form={"key": key})
        assert reply.status == 401
        assert "invalid or revoked key" in reply.body
        assert "set-cookie" not in reply.headers
        assert not key or key not in reply.body


def test_a_login_sets_a_strict_http_only_cookie_that_holds_no_key(console_hub: Hub) -> None:
    port = console_hub.console_port
    assert request(port, "/workers").headers["location"] == "/login"
    reply = request(port, "/login", method="POST", form={"key": console_hub.admin_key})
    assert (reply.status, reply.headers["location"]) == (303, "/workers")
    cookie = reply.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP on loopback: a browser would drop it
    assert console_hub.admin_key not in cookie
    session = cookie.split(";", 1)[0]
    page = request(port, "/workers", headers={"Cookie": session})
    assert page.status == 200 and console_hub.admin_key not in page.body
    assert request(port, "/workers", headers={"Cookie": "giskard_console=forged"}).status == 303


def test_a_session_ends_when_its_key_is_revoked(console_hub: Hub) -> None:
    keys = KeyStore(hub_dir() / "keys.json")
    record, key = keys.create("client")
    session = log_in(console_hub.console_port, key)
    assert request(console_hub.console_port, "/jobs", headers={"Cookie": session}).status == 200
    keys.revoke(record.name)
    refused = request(console_hub.console_port, "/jobs", headers={"Cookie": session})
    assert (refused.status, refused.headers["location"]) == (303, "/login")


def run_a_job_that_succeeds_and_one_that_fails(client: HubClient, iris: tuple) -> None:
    model, data = iris
    client.predict(model, data)
    with pytest.raises(JobError):
        client.predict(remote_models.FailingModel(), data)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_the_pages_show_the_workers_and_the_jobs_that_ended(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    run_a_job_that_succeeds_and_one_that_fails(client, iris)
    (worker,) = client.workers()
    session = log_in(hub.console_port, hub.admin_key)
    workers = request(hub.console_port, "/workers", headers={"Cookie": session}).body
    assert '<meta http-equiv="refresh" content="2">' in workers
    assert f'data-name="{worker["name"]}"' in workers
    for shown in ("python_version", "interpreter", "hostname", "pid", "giskard_version"):
        assert f">{worker[shown]}<" in workers.replace("<code>", "").replace("</code>", "")
    assert f"{len(worker['packages'])} packages" in workers
    jobs = request(hub.console_port, "/jobs", headers={"Cookie": session}).body
    ended = client.status()["recent"]
    for job in ended:
        assert job["job_id"] in jobs
    assert jobs.count('class="ended succeeded"') == 1
    assert jobs.count('class="ended model_error"') == 1
    assert "ValueError" in jobs


def test_under_tls_the_console_is_https_with_the_hub_certificate_and_a_secure_cookie(
    tmp_path: Path,
) -> None:
    certificate = self_signed(tmp_path / "tls", "127.0.0.1")
    with Hub(port=0, tls=certificate, console_port=0) as hub:
        port, ca_file = hub.console_port, certificate.cert_file
        assert request(port, "/healthz", ca_file=ca_file).body == "ok"
        reply = request(port, "/login", method="POST", form={"key": hub.admin_key}, ca_file=ca_file)
        assert reply.status == 303
        assert "secure" in [part.strip().lower() for part in reply.headers["set-cookie"].split(";")]
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            request(port, "/healthz")  # plaintext is not served


def test_a_login_body_far_bigger_than_a_key_is_refused(console_hub: Hub) -> None:
    too_big = {"key": console_hub.admin_key, "padding": "x" * 100_000}
    reply = request(console_hub.console_port, "/login", method="POST", form=too_big)
    assert reply.status == 413
    assert "set-cookie" not in reply.headers


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_worker_that_left_stays_listed_greyed_with_when_and_why(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    assert connected_worker.stop() == 0
    session = log_in(hub.console_port, hub.admin_key)

    def left_row() -> str:
        page = request(hub.console_port, "/workers", headers={"Cookie": session}).body
        found = re.search(r'<tr class="departed"[^>]*>.*?</tr>', page, re.DOTALL)
        return found.group(0) if found else ""

    wait_until(left_row, 10.0, "the worker listed as left")
    row = left_row()
    assert f'data-name="{worker["name"]}"' in row
    assert "shut down" in row
    assert re.search(r"left \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row), row


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_metrics_hold_a_latency_histogram_of_the_jobs_that_ran(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    run_a_job_that_succeeds_and_one_that_fails(client, iris)
    kinds = {job["kind"] for job in client.status()["recent"]}
    scraped = metrics(hub, hub.admin_key)
    for histogram in ("giskard_hub_job_queue_wait_seconds", "giskard_hub_job_run_seconds"):
        counts = {
            dict(labels)["kind"]: value
            for (name, labels), value in scraped.items()
            if name == f"{histogram}_count"
        }
        assert set(counts) == kinds and sum(counts.values()) == 2, histogram
        total = sum(v for (name, _), v in scraped.items() if name == f"{histogram}_sum")
        assert total > 0, histogram


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_the_jobs_page_charts_the_jobs_that_ended_their_latency_and_the_queue(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple
) -> None:
    model, data = iris
    for _ in range(2):
        client.predict(model, data)
    session = log_in(hub.console_port, hub.admin_key)
    page = request(hub.console_port, "/jobs", headers={"Cookie": session}).body

    def points(series: str) -> list[str]:
        group = re.search(rf'<g class="series {series}".*?</g>', page, re.DOTALL)
        assert group is not None, series
        return re.findall(r"<circle [^>]*><title>([^<]*)</title>", group.group(0))

    ended = points("ended")
    assert sum(int(re.search(r": (\d+) jobs$", p).group(1)) for p in ended) == 2, ended
    assert points("p50") and points("p95")
    assert re.fullmatch(r"queued \d\d:\d\d:\d\d: 0 jobs", points("queued")[0])
