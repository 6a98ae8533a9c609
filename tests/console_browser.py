"""Driving the console in Debian's headless Chromium through Selenium, for the browser tests
(their `browser` fixture is in conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from giskard.hub import Hub

CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30

# For a browser test module: `pytestmark = needs_chromium`.
needs_chromium = pytest.mark.skipif(
    not CHROMEDRIVER.exists(),
    reason=f"no {CHROMEDRIVER}: apt-get install chromium chromium-driver",
)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(browser: WebDriver, hub: Hub, key: str) -> WebDriverWait:
    """Log `browser` in to the hub's console with `key`; a wait with the tests' deadline."""
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"http://127.0.0.1:{hub.console_port}/login")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "login").click()
    wait.until(expected_conditions.url_contains("/workers"))
    return wait
