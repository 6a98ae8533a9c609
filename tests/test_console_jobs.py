"""The console's job pages over real HTTP, on a real hub with a real worker: a job's own page
with its error, traceback and logs."""

from __future__ import annotations

import html
import re

import pytest
import remote_models
from conftest import WorkerProcess
from console_http import job_path, log_in, request

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.errors import JobError
from giskard.hub import Hub
from giskard.hub.keys import KeyStore

CONSOLE = {"console_port": 0}
WAIT_S = 30


def failed_job(client: HubClient) -> str:
    """The client's id of a job that printed, logged, then raised."""
    handle = client.submit(remote_models.fail_loudly)
    with pytest.raises(JobError):
        handle.result(timeout=WAIT_S)
    return handle.job_id


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_failed_job_s_page_shows_its_error_traceback_and_logs(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    job_id = failed_job(client)
    session = log_in(hub.console_port, hub.admin_key)
    path = job_path(hub.console_port, session, job_id)
    assert job_id not in path  # the console's own id: a client's is unique per key only
    page = request(hub.console_port, path, headers={"Cookie": session})
    assert page.status == 200
    shown = html.unescape(page.body)
    assert "ValueError: cannot go on with 'these' weights" in shown
    assert "model_error" in shown
    assert re.search(r'File ".*", line \d+, in fail_loudly\n', shown)  # its traceback
    assert "loading the <model> & its weights" in shown
    assert "<model>" not in page.body  # escaped
    assert "the weights look odd" in shown
    assert hub.admin_key not in page.body


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_client_key_reads_a_job_s_page(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    job_id = failed_job(client)
    _, key = KeyStore(hub_dir() / "keys.json").create("client")
    session = log_in(hub.console_port, key)
    page = request(
        hub.console_port, job_path(hub.console_port, session, job_id), headers={"Cookie": session}
    )
    assert page.status == 200 and "the weights look odd" in page.body
    assert key not in page.body
