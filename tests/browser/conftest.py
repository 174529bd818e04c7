"""A real ``siyu demo`` server (hash embeddings, a temporary data dir, a free port) and Debian's
Chromium driven by Playwright, shared by the tests of a module.

Module scope, not session: Playwright's sync API keeps an event loop running in this thread while
it is open, and pytest-asyncio's tests that follow cannot start theirs until it is closed.

Chromium is ``/usr/bin/chromium`` (apt packages ``chromium`` and ``fonts-noto-cjk``; never
``playwright install``: nothing is downloaded). Without it the tests skip, except under
``CI=true``, where they fail: CI must run them. Each test saves screenshots under
``$SIYU_SCREENSHOTS`` (default ``build/screenshots/``) to be looked at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SIYU_SCREENSHOTS") or REPO / "build" / "screenshots")
START_TIMEOUT_S = 180
VIEWPORTS = {"desktop": (1280, 800), "mobile": (390, 844)}


def _require_chromium() -> None:
    missing = [] if CHROMIUM.exists() else [f"{CHROMIUM} is missing (apt-get install chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is missing")
    if not missing:
        return
    reason = "browser tests need Chromium: " + "; ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: they must run; .ci/run installs it)")
    pytest.skip(reason)


class DemoServer:
    """``siyu demo`` in a subprocess; ``url`` is its page, ``output`` what it printed."""

    def __init__(self, workdir: Path) -> None:
        env = {
            **os.environ,
            "SIYU_DATA_DIR": str(workdir / "data"),
            "SIYU_EMBEDDING": "hash",
            "SIYU_WEB_PORT": "0",
            "SIYU_WEB_HOST": "127.0.0.1",
            "SIYU_LLM_MODEL": "",
            "COLUMNS": "200",  # one line for the URL in rich's output
        }
        for key in ("SIYU_BRAND_NAME", "SIYU_WEB_SUGGESTIONS", "SIYU_BOT_NAME"):
            env.pop(key, None)  # the demo's own brand and questions
        siyu = Path(sys.executable).with_name("siyu")
        self.proc = subprocess.Popen(
            [str(siyu), "demo"], cwd=workdir, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.output = ""
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ctrl-C stops." not in self.output:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"siyu demo did not start:\n{self.output}")
            self.output += line
        match = re.search(r"web chat: (http://127\.0\.0\.1:\d+/)", self.output)
        assert match, self.output
        return match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    _require_chromium()
    server = DemoServer(tmp_path_factory.mktemp("browser-demo"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(demo_server: DemoServer) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Pages:
    """Opens pages of the demo at one viewport, each in its own browser context (own storage)."""

    def __init__(self, browser: Browser, url: str, viewport: str, test: str) -> None:
        self._browser, self.url, self.viewport, self._test = browser, url, viewport, test
        self._contexts: list[object] = []
        self.errors: list[str] = []
        """Uncaught script errors and console errors of every page opened."""

    def open(self, query: str = "") -> Page:
        width, height = VIEWPORTS[self.viewport]
        context = self._browser.new_context(
            viewport={"width": width, "height": height}, locale="zh-CN"
        )
        context.set_default_timeout(15_000)
        self._contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{exc}"))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.goto(self.url + query)
        return page

    def shot(self, page: Page, name: str = "") -> Path:
        """Save a screenshot as ``<test>[-name]-<viewport>.png``; return its path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self._test}{'-' + name if name else ''}-{self.viewport}.png"
        page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        for context in self._contexts:
            context.close()  # type: ignore[attr-defined]


@pytest.fixture(params=list(VIEWPORTS))
def pages(
    request: pytest.FixtureRequest, browser: Browser, demo_server: DemoServer
) -> Iterator[Pages]:
    test = request.node.originalname.removeprefix("test_")
    opened = Pages(browser, demo_server.url, request.param, test)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.errors, f"the page reported errors: {opened.errors}"
