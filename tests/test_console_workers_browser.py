"""A worker's console page in a real browser (Debian's headless Chromium, through Selenium)."""

from __future__ import annotations

import pytest
from conftest import WorkerProcess
from console_browser import log_in, needs_chromium
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from giskard.client import HubClient
from giskard.hub import Hub

pytestmark = needs_chromium

CONSOLE = {"console_port": 0}


def shown_packages(browser: WebDriver) -> list[str]:
    items = browser.find_elements(By.CSS_SELECTOR, "#packages li")
    return [item.get_attribute("data-name") for item in items if item.is_displayed()]


def refreshed(browser: WebDriver) -> bool:
    """Whether the page's <main> was replaced since it was marked (see mark_main)."""
    return browser.execute_script("return !document.querySelector('main > [data-old]')")


def mark_main(browser: WebDriver) -> None:
    browser.execute_script("document.querySelector('main > h1').dataset.old = '1'")


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_workers_page_lists_its_packages_and_the_box_filters_them_across_refreshes(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, browser: WebDriver
) -> None:
    (worker,) = client.workers()
    wait = log_in(browser, hub, hub.admin_key)
    browser.find_element(By.LINK_TEXT, worker["name"]).click()
    python = (By.CSS_SELECTOR, "#worker td.python")
    shown_python = wait.until(expected_conditions.visibility_of_element_located(python))
    assert shown_python.text == worker["python_version"]
    assert {"scikit-learn", "typer"} <= set(shown_packages(browser))
    browser.execute_script("window.__not_reloaded = 1")

    box = browser.find_element(By.ID, "package-search")
    box.send_keys("sci")
    mark_main(browser)
    wait.until(refreshed)
    # Typed into whatever has the focus: the box still has it, with its text and caret.
    ActionChains(browser).send_keys("kit").perform()
    mark_main(browser)
    wait.until(refreshed)
    shown = shown_packages(browser)
    assert "scikit-learn" in shown and "typer" not in shown
    assert all("scikit" in name for name in shown), shown
    assert browser.find_element(By.ID, "package-search").get_attribute("value") == "scikit"
    assert browser.find_element(By.ID, "package-count").text == str(len(shown))
    assert browser.execute_script("return window.__not_reloaded") == 1
