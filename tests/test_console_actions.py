"""The console's admin actions over real HTTP, on a real hub with real workers: drain, pause,
resume a worker, cancel a running job; refused for a client session, a wrong CSRF token, a
foreign Origin (the 404 page of what does not exist: test_console_jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import remote_models
from conftest import WorkerProcess, wait_until
from console_http import act, csrf_token, job_path, log_in, request

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.errors import JobCancelledError
from giskard.hub import Hub
from giskard.hub.keys import KeyStore
from giskard.job_handle import JobHandle

CONSOLE = {"console_port": 0}
WAIT_S = 30


def admin(hub: Hub) -> tuple[str, str]:
    session = log_in(hub.console_port, hub.admin_key)
    return session, csrf_token(hub.console_port, session)


@pytest.fixture(autouse=True)
def _release_held_jobs(tmp_path: Path) -> Iterator[None]:
    """A held job a failed test left running ends with the test, not at its cap."""
    yield
    (tmp_path / "release").touch()


def held_job_running(client: HubClient, iris: tuple, tmp_path: Path) -> JobHandle:
    """A job running on the worker until it is cancelled (nothing releases it)."""
    _, data = iris
    marker = tmp_path / "started"
    handle = client.submit_predict(remote_models.HeldModel(marker, tmp_path / "release"), data)
    wait_until(marker.exists, WAIT_S, "the held job to start")
    return handle


def the_worker(client: HubClient) -> dict:
    (worker,) = client.workers()
    return worker


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_drains_a_worker_and_it_leaves(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    session, csrf = admin(hub)
    worker = the_worker(client)
    reply = act(hub.console_port, f"/workers/{worker['worker_id']}/drain", session, csrf)
    assert (reply.status, reply.headers["location"]) == (303, "/workers")
    wait_until(lambda: not client.workers(), WAIT_S, "the drained worker to leave")
    assert connected_worker.process.wait(WAIT_S) == 0


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_pauses_then_resumes_a_worker(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    session, csrf = admin(hub)
    worker_id = the_worker(client)["worker_id"]
    assert act(hub.console_port, f"/workers/{worker_id}/pause", session, csrf).status == 303
    assert the_worker(client)["paused"]
    assert act(hub.console_port, f"/workers/{worker_id}/resume", session, csrf).status == 303
    assert not the_worker(client)["paused"]


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_cancels_a_running_job_and_its_client_hears_so(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    handle = held_job_running(client, iris, tmp_path)
    session, csrf = admin(hub)
    path = job_path(hub.console_port, session, handle.job_id)
    reply = act(hub.console_port, f"{path}/cancel", session, csrf)
    assert (reply.status, reply.headers["location"]) == (303, "/jobs")
    with pytest.raises(JobCancelledError):
        handle.result(timeout=WAIT_S)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_force_stops_a_worker_and_its_running_job_is_cancelled(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, iris: tuple, tmp_path: Path
) -> None:
    handle = held_job_running(client, iris, tmp_path)
    session, csrf = admin(hub)
    path = f"/workers/{the_worker(client)['worker_id']}/stop"
    assert act(hub.console_port, path, session, csrf, form={"force": "yes"}).status == 303
    with pytest.raises(JobCancelledError):
        handle.result(timeout=WAIT_S)
    assert connected_worker.process.wait(WAIT_S) == 0


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_cancels_a_job_waiting_for_a_worker(
    hub: Hub, client: HubClient, iris: tuple
) -> None:
    model, data = iris
    handle = client.submit_predict(model, data, wait_for_worker_s=600)
    wait_until(lambda: client.status()["waiting_for_worker"] == 1, WAIT_S, "the job to wait")
    session, csrf = admin(hub)
    path = job_path(hub.console_port, session, handle.job_id)
    assert act(hub.console_port, f"{path}/cancel", session, csrf).status == 303
    with pytest.raises(JobCancelledError):
        handle.result(timeout=WAIT_S)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_client_session_sees_no_actions_and_its_post_is_refused(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    _, key = KeyStore(hub_dir() / "keys.json").create("client")
    session = log_in(hub.console_port, key)
    worker_id = the_worker(client)["worker_id"]
    forged = csrf_token(hub.console_port, session)  # the logout form's: it has one too
    reply = act(hub.console_port, f"/workers/{worker_id}/drain", session, forged)
    assert reply.status == 403 and len(reply.body.splitlines()) == 1
    assert "admin" in reply.body
    assert not the_worker(client)["draining"]
    page = request(hub.console_port, "/workers", headers={"Cookie": session}).body
    assert f"/workers/{worker_id}/" not in page


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
@pytest.mark.parametrize(
    ("csrf", "origin"),
    [("", None), ("wrong", None), (None, "http://evil.example"), (None, "null")],
    ids=["no-token", "wrong-token", "foreign-origin", "null-origin"],
)
def test_a_bad_csrf_token_or_a_foreign_origin_is_refused(
    hub: Hub,
    client: HubClient,
    connected_worker: WorkerProcess,
    csrf: str | None,
    origin: str | None,
) -> None:
    session, good = admin(hub)
    worker_id = the_worker(client)["worker_id"]
    headers = {} if origin is None else {"Origin": origin}
    path = f"/workers/{worker_id}/pause"
    reply = act(hub.console_port, path, session, good if csrf is None else csrf, headers)
    assert reply.status == 403
    assert not the_worker(client)["paused"]


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_logout_ends_the_session_only_from_the_console_s_own_page(hub: Hub) -> None:
    port = hub.console_port
    session, csrf = admin(hub)
    forged = act(port, "/logout", session, csrf, {"Origin": "http://evil.example"})
    assert forged.status == 403
    assert request(port, "/workers", headers={"Cookie": session}).status == 200
    assert act(port, "/logout", session, csrf).headers["location"] == "/login"
    assert request(port, "/workers", headers={"Cookie": session}).status == 303
