"""The console's worker pages over real HTTP, with a real hub and real worker processes: one
worker's identity, environment and packages (filtered by ?q=)."""

from __future__ import annotations

import html
import re

import pytest
from conftest import WorkerProcess, wait_until
from console_http import log_in, request

from giskard.client import HubClient
from giskard.hub import Hub

CONSOLE = {"console_port": 0}


def page(hub: Hub, path: str) -> str:
    reply = request(
        hub.console_port, path, headers={"Cookie": log_in(hub.console_port, hub.admin_key)}
    )
    assert reply.status == 200, reply.body
    return html.unescape(reply.body)


def listed_packages(body: str) -> list[str]:
    found = re.search(r'<ul id="packages">(.*?)</ul>', body, re.DOTALL)
    assert found is not None, body
    return re.findall(r'<li data-name="([^"]+)"', found.group(1))


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_workers_page_shows_its_identity_environment_and_packages(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    table = page(hub, "/workers")
    assert f'href="/workers/{worker["name"]}"' in table
    for ref in (worker["name"], worker["worker_id"]):
        body = page(hub, f"/workers/{ref}")
        cells = dict(re.findall(r"<th>([^<]+)</th>\s*<td[^>]*>(.*?)</td>", body, re.DOTALL))
        for label, key in [
            ("Interpreter", "interpreter"),
            ("Python", "python_version"),
            ("Platform", "platform"),
            ("Host", "hostname"),
            ("PID", "pid"),
            ("giskard", "giskard_version"),
        ]:
            assert re.sub(r"<[^>]+>", "", cells[label]).strip() == str(worker[key]), label
        assert "active" in cells["State"]
        assert cells["Jobs"].strip() == f"0/{worker['concurrency']}"
        assert sorted(listed_packages(body)) == sorted(p.lower() for p in worker["packages"])


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_q_filters_a_workers_packages_without_javascript(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    shown = listed_packages(page(hub, f"/workers/{worker['name']}?q=SciKit"))
    assert "scikit-learn" in shown
    assert "typer" not in shown
    assert all("scikit" in name for name in shown), shown


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_unknown_worker_is_a_404(hub: Hub) -> None:
    session = log_in(hub.console_port, hub.admin_key)
    reply = request(hub.console_port, "/workers/nobody", headers={"Cookie": session})
    assert reply.status == 404
    assert "no such worker" in reply.body


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_the_page_of_a_worker_that_left_says_when_and_why(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    assert connected_worker.stop() == 0
    wait_until(lambda: not client.workers(), 10.0, "the worker gone from the hub")
    body = page(hub, f"/workers/{worker['name']}")
    assert '<table id="worker" class="departed">' in body
    assert re.search(r"left \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: shut down", body), body
    assert "scikit-learn" in listed_packages(body)
