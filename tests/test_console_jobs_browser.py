"""The console's job pages in a real browser: Debian's headless Chromium, driven by Selenium."""

from __future__ import annotations

import pytest
import remote_models
from conftest import WorkerProcess
from console_browser import WAIT_S, log_in, needs_chromium
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from giskard.client import HubClient
from giskard.errors import JobError
from giskard.hub import Hub

pytestmark = needs_chromium

CONSOLE = {"console_port": 0}


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_clicks_a_failed_job_and_reads_its_error_and_logs(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, browser: WebDriver
) -> None:
    handle = client.submit(remote_models.fail_loudly)
    with pytest.raises(JobError):
        handle.result(timeout=WAIT_S)
    wait = log_in(browser, hub, hub.admin_key)
    browser.get(f"http://127.0.0.1:{hub.console_port}/jobs")
    link = (By.CSS_SELECTOR, f'tr[data-job-id="{handle.job_id}"] a.job')
    wait.until(expected_conditions.element_to_be_clickable(link)).click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "logs")))
    error = browser.find_element(By.ID, "error").text
    assert error == "ValueError: cannot go on with 'these' weights"
    assert "in fail_loudly" in browser.find_element(By.ID, "traceback").text
    logs = browser.find_element(By.ID, "logs").text.splitlines()
    assert logs == ["loading the <model> & its weights", "the weights look odd"]
