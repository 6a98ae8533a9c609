"""The console in a real browser: Debian's headless Chromium, driven by Selenium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import WorkerProcess
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from giskard.client import HubClient
from giskard.hub import Hub

CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30

pytestmark = pytest.mark.skipif(
    not CHROMEDRIVER.exists(),
    reason=f"no {CHROMEDRIVER}: apt-get install chromium chromium-driver",
)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


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
