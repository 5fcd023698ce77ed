"""The dashboard with tokens, in a real browser: asked for a token when the API answers 401, it
shows the token's name and role, hides what a read token may not do, and shows who created each
run. The API is served in this process (uvicorn on a thread, embedded backend): the session's
real stack must stay open to the other tests, and a token in its database would close it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from service.kit.db import session_scope
from service.tokens import service as tokens
from service.tokens.schemas import TokenIn
from tests.browser.conftest import Console
from tests.support.backends import in_process
from tests.support.stack import Backend, free_port

SPEC = {"name": "made-by-alice", "dataset": "iris", "model": {"type": "linear"}, "epochs": 1}


@pytest.fixture
def served(backend: Backend) -> Iterator[str]:
    from service.app import create_app

    with in_process(backend):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                               log_config=None, log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "the in-process API did not start"
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_read_token_sees_who_made_runs_and_no_actions(
    served: str, page: Any, console: Console, shot: Any
) -> None:
    with session_scope() as session:
        alice = tokens.create(session, TokenIn(name="alice", role="submit")).token
        viewer = tokens.create(session, TokenIn(name="viewer", role="read")).token
    # The first create of the process imports torch for the checks: seconds on a busy machine.
    r = httpx.post(f"{served}/v1/experiments", json=SPEC, timeout=120,
                   headers={"Authorization": f"Bearer {alice}"})  # fmt: skip
    assert r.status_code == 201, r.text
    run = r.json()["id"]

    console.allow(r"status of 401")  # the first calls, before a token is given
    page.goto(served)
    page.locator("#token-panel").wait_for(state="visible")  # asked for a token
    page.fill("#token-input", viewer)
    page.click("#token-form button[type=submit]")
    # 60 s: in the full integration run on 2 cores this in-process server has taken over 20 s.
    page.wait_for_function(
        "document.getElementById('whoami').textContent === 'viewer · read'", timeout=60_000
    )
    row = page.locator(f'#experiments tr[data-id="{run}"]')
    assert row.locator(".created-by").inner_text() == "alice"
    assert page.locator('a[href="/new"]').count() >= 2  # the nav link and the list's button
    assert page.locator('a[href="/new"]:visible').count() == 0
    assert page.locator('a[href="/tokens"]:visible').count() == 0
    shot("list")

    page.goto(f"{served}/experiments/{run}")
    page.locator("#created-by").wait_for()
    assert page.locator("#created-by").inner_text() == "alice"
    assert not page.locator("#cancel").is_visible() and not page.locator("#clone").is_visible()
    page.goto(f"{served}/new")
    assert "needs a token with the submit role" in page.locator("#needs-role").inner_text()


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_token_being_typed_is_kept_while_the_page_is_refused(
    served: str, page: Any, console: Console
) -> None:
    """The list polls while it is refused (every 2 s, its event stream refused too), and every
    401 asks for a token: the panel already open keeps what is typed, so a token pasted just
    before a refused poll is the one submitted."""
    with session_scope() as session:
        viewer = tokens.create(session, TokenIn(name="viewer", role="read")).token
    console.allow(r"status of 401")
    page.goto(served)
    page.locator("#token-panel").wait_for(state="visible")
    page.fill("#token-input", viewer)
    refused = lambda r: "/v1/experiments" in r.url and r.status == 401  # noqa: E731
    with page.expect_response(refused, timeout=20_000):
        pass  # the list's next poll, after the paste
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # its 401 handled
    assert page.locator("#token-input").input_value() == viewer
    page.click("#token-form button[type=submit]")
    page.wait_for_function("document.getElementById('whoami').textContent === 'viewer · read'")


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_refused_create_hides_the_token_shown_before(
    served: str, page: Any, console: Console
) -> None:
    """The token shown once after a create goes when the next create is refused (409: the name
    is taken): it is not the answer to that one."""
    with session_scope() as session:
        admin = tokens.create(session, TokenIn(name="boss", role="admin")).token
    console.allow(r"status of 401")  # the page's first call, before the token is stored
    console.allow(r"status of 409")  # the duplicate, on purpose
    page.goto(served)
    page.evaluate("t => localStorage.setItem('glidepath.token', t)", admin)
    page.goto(f"{served}/tokens")
    page.locator('#tokens tr[data-name="boss"]').wait_for()
    page.fill('#token-create input[name="name"]', "ci")
    page.click("#token-create button[type=submit]")
    page.locator("#token-value").wait_for()
    page.fill('#token-create input[name="name"]', "ci")
    with page.expect_response(lambda r: r.url.endswith("/v1/tokens") and r.status == 409):
        page.click("#token-create button[type=submit]")
    page.locator(".error-box").wait_for()
    assert page.locator("#token-value").count() == 0
    assert page.locator("#token-made").inner_text() == ""


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_the_first_token_made_on_an_open_api_stays_shown_and_is_used(
    served: str, page: Any, console: Console
) -> None:
    """The first token closes the open API: the page keeps it shown (it is shown this once),
    sends it from then on, and the top bar names it, rather than being refused and wiping it."""
    page.goto(f"{served}/tokens")
    page.wait_for_function("document.getElementById('whoami').textContent === 'open API'")
    page.locator("#tokens td").first.wait_for()  # the empty list: "No tokens: …"
    page.fill('#token-create input[name="name"]', "first")
    page.select_option('#token-create select[name="role"]', "admin")
    with page.expect_response(lambda r: r.url.endswith("/v1/tokens") and r.status == 201) as made:
        page.click("#token-create button[type=submit]")
    secret = made.value.json()["token"]
    page.locator('#tokens tr[data-name="first"]').wait_for()
    assert page.locator("#token-value").inner_text() == secret
    assert page.evaluate("() => localStorage.getItem('glidepath.token')") == secret
    page.wait_for_function("document.getElementById('whoami').textContent === 'first · admin'")
    assert page.locator(".error-box").count() == 0


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_the_first_token_is_an_admin_unless_the_person_confirms(
    served: str, page: Any, console: Console
) -> None:
    """On an open API the first token, which this browser then keeps, is offered as admin; a
    read one asks first, since it would close the tokens page to the person making it."""
    page.goto(f"{served}/tokens")
    page.locator("#tokens td").first.wait_for()  # the empty list: "No tokens: …"
    assert page.input_value('#token-create select[name="role"]') == "admin"
    page.fill('#token-create input[name="name"]', "viewer")
    page.select_option('#token-create select[name="role"]', "read")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("#token-create button[type=submit]")
    assert asked and "closes the API" in asked[0] and "read token cannot make tokens" in asked[0]
    assert httpx.get(f"{served}/v1/tokens").json()["items"] == []  # nothing made: still open
    assert page.evaluate("() => localStorage.getItem('glidepath.token')") is None


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_forget_redraws_the_page_without_the_token(
    served: str, page: Any, console: Console
) -> None:
    """*Forget* in the token panel draws the page again as *Save* does: the admin's token list,
    read with the forgotten token, goes, and the page says it needs a token."""
    with session_scope() as session:
        admin = tokens.create(session, TokenIn(name="boss", role="admin")).token
    console.allow(r"status of 401")  # the page's first call, then the calls after Forget
    page.goto(served)
    page.evaluate("t => localStorage.setItem('glidepath.token', t)", admin)
    page.goto(f"{served}/tokens")
    page.locator('#tokens tr[data-name="boss"] button').wait_for()  # its Revoke
    page.click("#token-button")
    page.click("#token-clear")
    page.locator("#needs-role").wait_for()
    assert "needs a token with the admin role" in page.locator("#needs-role").inner_text()
    assert page.locator("#tokens").count() == 0
    assert page.locator("#whoami").inner_text() == "no token"
