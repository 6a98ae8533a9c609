"""The console's keys page over real HTTP, on a real hub: an admin lists, creates (the key shown
once) and revokes keys, and HubClient feels it; a client session, a missing CSRF token or a
foreign Origin is refused; bad input is one message and nothing made; the local admin key
stays."""

from __future__ import annotations

import html
import logging
import re
import subprocess
import uuid
from collections.abc import Callable

import pytest
from conftest import CONNECTED, WorkerProcess, giskard_command
from console_http import Reply, act, csrf_token, log_in, request

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.errors import AuthenticationError, ExitCode
from giskard.hub import Hub
from giskard.hub.keys import NAME_MAX_CHARS, KeyStore

CONSOLE = {"console_port": 0}
WAIT_S = 30
KEY = re.compile(r"gsk_[0-9a-f]{8}_[\w-]+")

pytestmark = pytest.mark.parametrize("hub", [CONSOLE], indirect=True)


def unique(prefix: str) -> str:
    """A key name no other test of the session's shared key file uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(hub: Hub) -> tuple[str, str]:
    session = log_in(hub.console_port, hub.admin_key)
    return session, csrf_token(hub.console_port, session)


def create(hub: Hub, session: str, csrf: str, name: str, role: str = "client") -> Reply:
    return act(hub.console_port, "/keys", session, csrf, form={"name": name, "role": role})


def created_key(reply: Reply) -> str:
    assert reply.status == 200, reply.body
    found = KEY.findall(reply.body)
    assert len(found) == 1, reply.body
    return found[0]


def keys_page(hub: Hub, session: str, partial: bool = False) -> Reply:
    return request(
        hub.console_port, "/keys?partial=1" if partial else "/keys", headers={"Cookie": session}
    )


def row(page: str, name: str) -> str:
    """The list's row of key `name`."""
    found = re.search(rf'<tr class="key (\w+)" data-name="{re.escape(name)}">.*?</tr>', page, re.S)
    assert found is not None, page
    return found.group(0)


def test_an_admin_creates_a_key_shown_once_that_works_and_is_listed(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session, csrf = admin(hub)
    name = unique("ci")
    reply = create(hub, session, csrf, name)
    key = created_key(reply)
    assert reply.headers["cache-control"] == "no-store"
    # The reply stays as it is: no refresh, no script fetching the page again.
    assert "http-equiv" not in reply.body and "partial" not in reply.body
    with HubClient(hub.address, api_key=key) as platform:
        assert platform.workers() == []
    page = keys_page(hub, session)
    assert page.status == 200
    listed = row(page.body, name)
    assert '<td class="role">client</td>' in listed and '"state">active<' in listed
    (record,) = [r for r in KeyStore(hub_dir() / "keys.json").records() if r.name == name]
    for path in ("/keys", "/keys?partial=1", "/keys/new", "/workers", "/jobs"):
        later = request(hub.console_port, path, headers={"Cookie": session}).body
        assert key not in later and record.sha256 not in later, path
    assert key not in caplog.text and f"Created the client key '{name}'" in caplog.text


def test_an_admin_revokes_a_key_and_hub_client_is_refused_with_it(hub: Hub) -> None:
    session, csrf = admin(hub)
    name = unique("doomed")
    key = created_key(create(hub, session, csrf, name, role="admin"))
    reply = act(hub.console_port, "/keys/revoke", session, csrf, form={"name": name})
    assert (reply.status, reply.headers["location"]) == (303, "/keys")
    assert '"state">revoked<' in row(keys_page(hub, session).body, name)
    assert 'class="revoke"' not in row(keys_page(hub, session).body, name)
    with (
        HubClient(hub.address, api_key=key) as platform,
        pytest.raises(AuthenticationError, match="the API key was revoked"),
    ):
        platform.workers()


def test_a_worker_key_revoked_in_the_console_closes_its_worker_session_at_once(
    hub: Hub, start_worker: Callable[..., WorkerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    session, csrf = admin(hub)
    name = unique("worker")
    key = created_key(create(hub, session, csrf, name, role="worker"))
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), api_key=key)
    worker.wait_for_output(CONNECTED)
    assert act(hub.console_port, "/keys/revoke", session, csrf, form={"name": name}).status == 303
    # Closed by the revocation itself, not seconds later by the hub's check of the key file.
    assert f"Revoked the key '{name}', by console login" in caplog.text
    assert "closed 1 live call(s)" in caplog.text
    assert worker.process.wait(WAIT_S) == ExitCode.CONFIG
    assert "the API key of this worker was revoked" in worker.output


def test_revoking_a_key_ends_the_console_sessions_opened_with_it(hub: Hub) -> None:
    session, csrf = admin(hub)
    name = unique("other-admin")
    key = created_key(create(hub, session, csrf, name, role="admin"))
    theirs = log_in(hub.console_port, key)
    assert keys_page(hub, theirs).status == 200
    assert act(hub.console_port, "/keys/revoke", session, csrf, form={"name": name}).status == 303
    ended = keys_page(hub, theirs, partial=True)
    assert (ended.status, ended.headers["location"]) == (303, "/login")


def test_revoking_the_key_of_ones_own_session_logs_one_out(hub: Hub) -> None:
    session, csrf = admin(hub)
    name = unique("mine")
    key = created_key(create(hub, session, csrf, name, role="admin"))
    mine = log_in(hub.console_port, key)
    my_csrf = csrf_token(hub.console_port, mine)
    reply = act(hub.console_port, "/keys/revoke", mine, my_csrf, form={"name": name})
    assert (reply.status, reply.headers["location"]) == (303, "/login")
    assert 'giskard_console=""' in reply.headers["set-cookie"]  # the cookie is dropped
    assert keys_page(hub, mine).headers["location"] == "/login"
    assert keys_page(hub, session).status == 200  # the other admin's session lives on


def test_the_local_admin_key_is_not_revoked_by_the_console_nor_the_cli(hub: Hub) -> None:
    session, csrf = admin(hub)
    local = KeyStore(hub_dir() / "keys.json").verify(hub.admin_key)
    assert local is not None
    assert 'class="revoke"' not in row(keys_page(hub, session).body, local.name)
    reply = act(hub.console_port, "/keys/revoke", session, csrf, form={"name": local.name})
    assert reply.status == 409 and len(reply.body.splitlines()) == 1
    assert "local admin key" in reply.body and "remove" in reply.body
    revoked = subprocess.run(
        giskard_command(
            "hub", "keys", "revoke", local.name, "-h", "127.0.0.1", "-p", str(hub.port)
        ),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert revoked.returncode == 1 and "is the local admin key" in revoked.stderr
    assert len(revoked.stderr.strip().splitlines()) == 1, revoked.stderr
    with HubClient(hub.address) as local_admin:  # the local admin key still works
        assert local_admin.workers() == []


@pytest.mark.parametrize(
    ("name", "role", "why"),
    [
        ("", "client", "a key needs a name"),
        ("   ", "client", "a key needs a name"),
        ("x" * (NAME_MAX_CHARS + 1), "client", f"1 to {NAME_MAX_CHARS} printable characters"),
        ("tab\there", "client", "printable characters"),
        ("fine-name", "root", "a key's role is one of worker, client, admin"),
    ],
)
def test_bad_input_is_one_message_status_400_and_makes_no_key(
    hub: Hub, name: str, role: str, why: str
) -> None:
    session, csrf = admin(hub)
    before = KeyStore(hub_dir() / "keys.json").records()
    reply = create(hub, session, csrf, name, role)
    assert reply.status == 400
    errors = re.findall(r'<p class="error" id="error">(.*?)</p>', reply.body)
    assert len(errors) == 1 and why in html.unescape(errors[0]), reply.body
    assert KeyStore(hub_dir() / "keys.json").records() == before
    assert not KEY.search(reply.body)


def test_a_duplicate_name_is_refused_and_the_first_key_stays(hub: Hub) -> None:
    session, csrf = admin(hub)
    name = unique("twice")
    key = created_key(create(hub, session, csrf, name))
    again = create(hub, session, csrf, name, role="admin")
    assert again.status == 400
    assert f"a key named '{name}' exists already" in html.unescape(again.body)
    assert not KEY.search(again.body)
    (record,) = [r for r in KeyStore(hub_dir() / "keys.json").records() if r.name == name]
    assert record.role == "client" and KeyStore(hub_dir() / "keys.json").verify(key) == record


def test_revoking_an_unknown_key_is_404(hub: Hub) -> None:
    session, csrf = admin(hub)
    reply = act(hub.console_port, "/keys/revoke", session, csrf, form={"name": unique("nobody")})
    assert reply.status == 404 and "no such key" in reply.body


def test_a_client_session_may_not_see_create_or_revoke_keys(hub: Hub) -> None:
    store = KeyStore(hub_dir() / "keys.json")
    target = unique("target")
    store.create("client", target)
    _, client_key = store.create("client", unique("reader"))
    session = log_in(hub.console_port, client_key)
    forged = csrf_token(hub.console_port, session)  # the logout form's: it has one too
    workers = request(hub.console_port, "/workers", headers={"Cookie": session}).body
    assert 'href="/keys"' not in workers
    for path in ("/keys", "/keys?partial=1", "/keys/new"):
        page = request(hub.console_port, path, headers={"Cookie": session})
        assert page.status == 403 and "admin" in page.body and target not in page.body
    named = unique("forged")
    refused = create(hub, session, forged, named, role="admin")
    assert refused.status == 403 and "admin" in refused.body
    revoke = act(hub.console_port, "/keys/revoke", session, forged, form={"name": target})
    assert revoke.status == 403
    names = {r.name: r.revoked for r in store.records()}
    assert named not in names and names[target] is False


def test_a_post_without_the_csrf_token_or_from_a_foreign_origin_is_refused(hub: Hub) -> None:
    session, csrf = admin(hub)
    target = unique("target")
    KeyStore(hub_dir() / "keys.json").create("client", target)
    foreign = {"Origin": "http://evil.example"}
    attempts = [
        ("/keys", {"name": unique("no-csrf"), "role": "admin"}, "", {}),
        ("/keys", {"name": unique("foreign"), "role": "admin"}, csrf, foreign),
        ("/keys/revoke", {"name": target}, "", {}),
        ("/keys/revoke", {"name": target}, csrf, foreign),
    ]
    for path, form, token, headers in attempts:
        reply = act(hub.console_port, path, session, token, headers=headers, form=form)
        assert reply.status == 403, (path, headers)
    records = {r.name: r.revoked for r in KeyStore(hub_dir() / "keys.json").records()}
    assert records[target] is False
    assert not any(form["name"] in records for path, form, _, _ in attempts if path == "/keys")


def test_logged_out_the_keys_pages_send_to_login(hub: Hub) -> None:
    for path in ("/keys", "/keys/new"):
        reply = request(hub.console_port, path)
        assert (reply.status, reply.headers["location"]) == (303, "/login")
