"""Browser fixtures: Debian's headless Chromium driven by Playwright (never a downloaded browser),
against the real `glidepath api` + worker of the top-level `stack` fixture (one per session and
backend: starting them is most of a short browser test's time; tests make their own experiments
and never assume an empty database).

Without Chromium or Playwright these tests skip with the reason, unless CI=true, where they
fail: `.ci/run` installs Chromium first. Screenshots go to `$GLIDEPATH_ARTIFACTS/browser/`
(default `test-artifacts/browser/`, ignored by git) and are listed at the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GLIDEPATH_ARTIFACTS") or ROOT / "test-artifacts") / "browser"
CHROMIUM = os.environ.get("GLIDEPATH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container: no sandbox, no GPU; and no background calls to Google's hosts, which
# this machine's closed network refuses (each one an error in the browser's log).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS: list[Path] = []


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


# Package scope, not session: Playwright's sync API keeps its asyncio loop running in the main
# thread while it is started, so under xdist every later test in the same worker that calls
# `asyncio.run` would fail ("cannot be called from a running event loop"). The browser stops when
# the worker leaves tests/browser.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    why = _missing()
    if why:
        if CI:
            pytest.fail(f"{why}; browser tests must run under CI=true (see .ci/run)")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Console:
    """Errors the page logged or threw. Chromium logs every 4xx/5xx response as a console error
    ("Failed to load resource"), so a test that provokes a 422 on purpose allows that one."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


def _call_not_eval(pg: Any) -> None:
    """`wait_for_function("expr")` as a function: Playwright runs a bare expression through
    `eval` inside the page, which the pages' Content-Security-Policy refuses (no 'unsafe-eval');
    a function it calls. Until the expression can be read (its element not there yet) it is
    false, and the wait goes on."""
    wait = pg.wait_for_function

    def wait_for_function(expression: str, *args: Any, **kwargs: Any) -> Any:
        if "=>" not in expression and not expression.lstrip().startswith(("function", "async")):
            expression = f"() => {{ try {{ return ({expression}); }} catch {{ return false; }} }}"
        return wait(expression, *args, **kwargs)

    pg.wait_for_function = wait_for_function


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A fresh context (empty localStorage) and page; fails the test on any console error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    pg = context.new_page()

    def on_console(message: Any) -> None:
        if message.type == "error":
            console.errors.append(f"console: {message.text} @ {message.location.get('url', '')}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    _call_not_eval(pg)
    yield pg
    context.close()
    assert not console.unexpected(), "errors in the browser console:\n" + "\n".join(
        console.unexpected()
    )


# True once the scroll position has not moved for 10 animation frames (polled each frame).
SETTLED = """() => {
  const at = `${scrollX},${scrollY},${document.documentElement.scrollHeight}`;
  window.__settled = window.__settled && window.__settled.at === at
    ? { at, frames: window.__settled.frames + 1 } : { at, frames: 0 };
  return window.__settled.frames >= 10;
}"""


@pytest.fixture
def shot(request: pytest.FixtureRequest, page: Any) -> Any:
    """shot(name): a full-page screenshot named after the test (and its backend)."""
    test = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")

    def take(name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{test}-{name}.png"
        scrolled = page.evaluate("() => [scrollX, scrollY]")
        page.screenshot(path=str(path), full_page=True)
        # A full-page capture lays the page out at another size for a moment (narrow enough for
        # the <=900 px layout here), and the browser moves the scroll position back some frames
        # later: wait for it to settle and put it back, or the test's next click lands where
        # the button was (a submit that never fired).
        page.wait_for_function(SETTLED, polling="raf")
        page.evaluate("([x, y]) => scrollTo(x, y)", scrolled)
        SHOTS.append(path)
        return path

    return take


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SHOTS:
        terminalreporter.section("browser screenshots")
        for path in SHOTS:
            terminalreporter.write_line(str(path))
