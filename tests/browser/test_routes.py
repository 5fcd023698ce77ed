"""The dashboard's routes beside the API (no browser needed): every page path serves the same
shell, static files are served from the package, and tokens guard /v1 but not the pages."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.config import settings

PAGES = ["/", "/new", "/experiments/12", "/compare?ids=1,2", "/sweeps", "/sweeps/3", "/range-tests",
         "/range-tests/4", "/workers"]  # fmt: skip


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_pages_static_and_api_side_by_side(client: TestClient) -> None:
    shell = client.get("/").text
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text == shell and '<main id="app">' in r.text
    for asset in ("js/main.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/v1/experiments").json()["items"] == []
    assert client.get("/healthz").status_code == 200
    schema = client.get("/openapi.json").json()
    assert not any(p in schema["paths"] for p in ("/", "/new", "/compare"))
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_link_to_no_page_gets_the_dashboard_s_not_found_and_scripts_the_api_s(
    client: TestClient,
) -> None:
    """A browser following a mistyped or stale link gets the shell (which says "Not found" and
    links back) with a 404, not the API's JSON; a script asking the same keeps the JSON."""
    shell = client.get("/").text
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/nope", "/experiment/3", "/experiments/abc", "/sweeps/x", "/range-tests/-1"):
        r = client.get(path, headers=browser)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert r.text == shell
    for path, headers in (("/nope", {}), ("/v1/nope", browser), ("/static/nope.js", browser)):
        r = client.get(path, headers=headers)
        assert r.status_code == 404 and r.json()["detail"][0]["type"] == "http_error", path
    assert client.post("/nope", headers=browser).json()["detail"][0]["type"] == "http_error"


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_pages_stay_open_when_tokens_guard_the_api(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "api_tokens", "secret")
    assert client.get("/new").status_code == 200
    assert client.get("/static/js/api.js").status_code == 200
    assert client.get("/v1/catalog").status_code == 401
    assert client.get("/v1/catalog", headers={"Authorization": "Bearer secret"}).status_code == 200
