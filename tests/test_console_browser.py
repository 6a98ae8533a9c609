"""The console in a real browser: Debian's headless Chromium, driven by Selenium."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess
from console_browser import WAIT_S, log_in, needs_chromium
from console_http import one_time_login_path
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.errors import JobError
from giskard.hub import Hub
from giskard.hub.keys import KeyStore

# Where test_screenshots_of_the_workers_jobs_and_worker_pages saves them; docs/ for the README's.
SCREENSHOTS = os.environ.get("GISKARD_CONSOLE_SCREENSHOTS")

pytestmark = needs_chromium


@pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)
def test_an_admin_logs_in_and_sees_a_worker_with_its_python(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, browser: WebDriver
) -> None:
    (worker,) = client.workers()
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"http://127.0.0.1:{hub.console_port}/workers")
    wait.until(expected_conditions.url_contains("/login"))  # no session yet
    browser.find_element(By.ID, "key").send_keys(hub.admin_key)
    browser.find_element(By.ID, "login").click()
    wait.until(expected_conditions.url_contains("/workers"))
    row = f'tr.worker[data-name="{worker["name"]}"]'
    python = wait.until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, f"{row} td.python"))
    )
    assert python.text == worker["python_version"]
    assert "active" in browser.find_element(By.CSS_SELECTOR, f"{row} td.state").text
    assert hub.admin_key not in browser.page_source
    assert hub.admin_key not in browser.current_url


@pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)
def test_an_admin_drains_a_worker_from_the_page_and_sees_it_leave(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, browser: WebDriver
) -> None:
    (worker,) = client.workers()
    wait = log_in(browser, hub, hub.admin_key)
    row = (By.CSS_SELECTOR, f'tr.worker[data-name="{worker["name"]}"]')
    drain = (By.CSS_SELECTOR, f'tr.worker[data-name="{worker["name"]}"] button.drain')
    wait.until(expected_conditions.element_to_be_clickable(drain)).click()
    wait.until(expected_conditions.invisibility_of_element_located(row))
    assert connected_worker.process.wait(WAIT_S) == 0


@pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)
def test_a_client_key_sees_the_workers_but_no_action_button(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, browser: WebDriver
) -> None:
    (worker,) = client.workers()
    _, key = KeyStore(hub_dir() / "keys.json").create("client")
    wait = log_in(browser, hub, key)
    row = (By.CSS_SELECTOR, f'tr.worker[data-name="{worker["name"]}"]')
    wait.until(expected_conditions.visibility_of_element_located(row))
    assert browser.find_elements(By.CSS_SELECTOR, "td.actions button") == []
    assert "drain" not in browser.page_source


@pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)
def test_the_one_time_login_url_logs_the_browser_in_and_leaves_the_address_bar(
    hub: Hub, browser: WebDriver
) -> None:
    path = one_time_login_path(hub.console_port)
    browser.get(f"http://127.0.0.1:{hub.console_port}{path}")
    WebDriverWait(browser, WAIT_S).until(expected_conditions.url_contains("/workers"))
    assert "token" not in browser.current_url
    assert "(admin)" in browser.page_source


@pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)
def test_a_worker_that_connects_appears_on_the_open_page_without_a_reload(
    hub: Hub, start_worker: Callable[..., WorkerProcess], browser: WebDriver
) -> None:
    wait = log_in(browser, hub, hub.admin_key)
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "no-workers")))
    browser.execute_script("window.__not_reloaded = 1")
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--name", "newcomer")
    worker.wait_for_output(CONNECTED)
    row = (By.CSS_SELECTOR, 'tr.worker[data-name="newcomer"]')
    wait.until(expected_conditions.visibility_of_element_located(row))
    assert browser.execute_script("return window.__not_reloaded") == 1


@pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)
def test_screenshots_of_the_workers_jobs_and_worker_pages(
    hub: Hub,
    client: HubClient,
    connected_worker: WorkerProcess,
    iris: tuple,
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    model, data = iris
    for _ in range(3):
        client.predict(model, data)
    with pytest.raises(JobError):
        client.submit(remote_models.fail_loudly).result(timeout=WAIT_S)
    (worker,) = client.workers()
    browser.set_window_size(1600, 1700)  # the pages whole, their tables below the charts
    wait = log_in(browser, hub, hub.admin_key)
    saved = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    row = (By.CSS_SELECTOR, f'tr.worker[data-name="{worker["name"]}"]')
    wait.until(expected_conditions.visibility_of_element_located(row))
    assert browser.save_screenshot(str(saved / "console-workers.png"))
    browser.get(f"http://127.0.0.1:{hub.console_port}/jobs")
    ended = (By.CSS_SELECTOR, 'g.series[data-series="ended"] circle')
    wait.until(expected_conditions.presence_of_element_located(ended))
    assert browser.save_screenshot(str(saved / "console-jobs.png"))
    browser.find_element(By.CSS_SELECTOR, "tr.ended.model_error a").click()  # fail_loudly
    traceback = (By.ID, "traceback")
    wait.until(expected_conditions.visibility_of_element_located(traceback))
    assert browser.save_screenshot(str(saved / "console-job.png"))
    browser.get(f"http://127.0.0.1:{hub.console_port}/workers/{worker['name']}")
    packages = (By.CSS_SELECTOR, "#packages li")
    wait.until(expected_conditions.visibility_of_element_located(packages))
    assert browser.save_screenshot(str(saved / "console-worker.png"))
    for page in ("workers", "jobs", "job", "worker"):
        assert (saved / f"console-{page}.png").read_bytes().startswith(b"\x89PNG"), page
