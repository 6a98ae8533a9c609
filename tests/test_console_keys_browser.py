"""The console's keys page in a real browser (Debian's headless Chromium, through Selenium):
an admin creates a key, reads it once, sees it listed, revokes it; a browser logged in with
a revoked key is sent to the login page."""

from __future__ import annotations

import uuid

import pytest
from console_browser import log_in, needs_chromium
from console_http import act, csrf_token
from console_http import log_in as log_in_over_http
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.hub import Hub
from giskard.hub.keys import KeyStore

pytestmark = [needs_chromium, pytest.mark.parametrize("hub", [{"console_port": 0}], indirect=True)]


def key_row(name: str) -> tuple[str, str]:
    return By.CSS_SELECTOR, f'tr.key[data-name="{name}"]'


def test_an_admin_creates_a_key_reads_it_once_then_revokes_it(hub: Hub, browser: WebDriver) -> None:
    name = f"browser-{uuid.uuid4().hex[:8]}"
    wait = log_in(browser, hub, hub.admin_key)
    browser.find_element(By.LINK_TEXT, "Keys").click()
    wait.until(expected_conditions.element_to_be_clickable((By.ID, "new-key-link"))).click()
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "name"))).send_keys(name)
    browser.find_element(By.ID, "create").click()
    key = wait.until(expected_conditions.visibility_of_element_located((By.ID, "new-key"))).text
    with HubClient(hub.address, api_key=key) as platform:
        assert platform.workers() == []
    # This page neither updates nor reloads itself: past the live pages' 2 s, the key is
    # still there to copy.
    assert browser.find_elements(By.TAG_NAME, "script") == []
    with pytest.raises(TimeoutException):
        WebDriverWait(browser, 3).until(
            lambda driver: driver.find_element(By.ID, "new-key").text != key
        )
    browser.find_element(By.ID, "back-to-keys").click()
    row = wait.until(expected_conditions.visibility_of_element_located(key_row(name)))
    assert row.find_element(By.CSS_SELECTOR, "td.state").text == "active"
    assert key not in browser.page_source
    row.find_element(By.CSS_SELECTOR, "button.revoke").click()
    wait.until(expected_conditions.alert_is_present()).accept()  # the confirmation
    wait.until(
        expected_conditions.text_to_be_present_in_element(
            (By.CSS_SELECTOR, f'tr.key[data-name="{name}"] td.state'), "revoked"
        )
    )
    assert KeyStore(hub_dir() / "keys.json").verify(key) is None


def test_a_browser_logged_in_with_a_key_another_admin_revokes_is_sent_to_login(
    hub: Hub, browser: WebDriver
) -> None:
    record, key = KeyStore(hub_dir() / "keys.json").create(
        "client", f"revoked-{uuid.uuid4().hex[:8]}"
    )
    wait = log_in(browser, hub, key)
    session = log_in_over_http(hub.console_port, hub.admin_key)
    csrf = csrf_token(hub.console_port, session)
    revoked = act(hub.console_port, "/keys/revoke", session, csrf, form={"name": record.name})
    assert revoked.status == 303
    # The page's next update finds the session gone, and the browser goes to log in again.
    wait.until(expected_conditions.url_contains("/login"))
    assert browser.find_elements(By.ID, "key")
