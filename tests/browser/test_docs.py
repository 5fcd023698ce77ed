"""/docs in a real browser with every request off this machine refused: Swagger UI comes from
the vendored files, starts under the page's Content-Security-Policy (the `page` fixture fails
the test on any console error, a CSP violation included) and lists the API's operations."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)  # a page: the backend is moot
def test_swagger_ui_renders_without_a_network(stack: Stack, page: Any) -> None:
    elsewhere: list[str] = []

    def this_server_only(route: Any) -> None:
        if route.request.url.startswith(stack.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", this_server_only)
    page.goto(f"{stack.url}/docs")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for()
    assert "Glidepath" in title.inner_text()
    page.locator(".opblock-tag-section").first.wait_for()
    assert page.locator(".opblock-summary-path", has_text="/v1/experiments").count() > 0
    assert elsewhere == []
