"""Browser tests' fixtures: the console on a real server, driven by Debian's Chromium through Playwright.

Why a real server and a real browser: the TestClient never runs the page's script, never applies
the Content-Security-Policy and never lays a page out at 375 px; a secretary's phone does all three.

* ``live``: a module-scoped seeded installation (tests.web_support.Console) served by uvicorn in a
  thread (engine.app.web.server: bind() + BackgroundConsole) on 127.0.0.1 and a free port.
  ``serve(console)`` does the same for a test that needs its own installation (one that changes data).
* ``browser``: one headless Chromium per test module (``/usr/bin/chromium``; never a downloaded
  browser), with the flags this closed network needs.
* ``phone`` / ``desktop``: a fresh browser context (no cookies) at 375×740 or 1280×800, wrapped in a
  ``Tab`` with the helpers every page's test needs: ``goto``, ``login``, ``fill`` (a form by its
  fields' names), ``text``, ``horizontal_overflow`` and the console's CSP violations and script errors.

Use in a test module (pytest finds fixtures imported into the module)::

    from tests.browser import browser, desktop, live, phone  # noqa: F401  (fixtures)

A machine without Chromium skips these tests with the reason, except where DONDOC_REQUIRE_BROWSER=1
(.ci/run exports it): there a missing browser fails, so CI never passes without running them.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.web_support import PASSWORD, Console

CHROMIUM = os.environ.get("DONDOC_CHROMIUM", "/usr/bin/chromium")
# --headless and a fresh --user-data-dir come from Playwright itself (it refuses a --user-data-dir
# in args); the rest keep Chromium from calling out on a network that reaches only package registries.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
TIMEOUT_MS = 15_000


def required() -> bool:
    """True where a missing browser must fail rather than skip (CI)."""
    return os.environ.get("DONDOC_REQUIRE_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    if required():
        pytest.fail(f"{reason} (DONDOC_REQUIRE_BROWSER=1: browser tests must run here)", pytrace=False)
    pytest.skip(reason)


# --- the server -----------------------------------------------------------------------------------

@dataclass
class Served:
    """A console being served: its installation and the address a browser opens."""
    console: Console
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path


@contextmanager
def serve(console: Console, timeout: float = 10.0) -> Iterator[Served]:
    """Serve ``console.app`` on 127.0.0.1 and a free port (the OS picks it) until the block ends."""
    from engine.app.web.server import BackgroundConsole, bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    bg = BackgroundConsole(console.app, sock)
    bg.start()
    try:
        _wait_until_listening(bg, port, timeout)
        yield Served(console, f"http://127.0.0.1:{port}")
    finally:
        bg.stop()


def _wait_until_listening(bg: Any, port: int, timeout: float) -> None:
    """Readiness, not a deadline: poll uvicorn's own flag, fail with a reason if it never starts."""
    end = time.monotonic() + timeout
    while not bg.srv.started:
        if not bg.thread.is_alive() or time.monotonic() > end:
            raise RuntimeError(f"the console did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout):
        pass


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One seeded installation per test module, served for real (tests that change data use ``serve``)."""
    with serve(Console(tmp_path_factory.mktemp("live"))) as served:
        yield served


# --- the browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium for one test module.

    Not for the whole session: Playwright's sync API keeps an asyncio loop marked as running in this
    thread while it is started, and every later test on the worker that calls asyncio.run() (delivery,
    the SMTP tests) would fail with "cannot be called from a running event loop".
    """
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"Chromium not found at {CHROMIUM} (Debian packages chromium and chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package playwright is not installed (pip install -e '.[test]')")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
    except Exception as exc:  # noqa: BLE001 - reported as a skip (or failure in CI) with the reason
        pw.stop()
        _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
    yield b
    b.close()
    pw.stop()


@dataclass
class Tab:
    """One page of a fresh browser context, with what it printed to its console."""
    page: Any
    served: Served
    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.served.url(path), wait_until="load")

    def path(self) -> str:
        """The current address without the server part (e.g. "/dang-nhap?next=%2F")."""
        return self.page.url.removeprefix(self.served.base_url)

    def fill(self, form: str, values: dict[str, str]) -> None:
        """Fill the fields of ``form`` (a CSS selector) by their ``name``: text, select, checkbox, file."""
        f = self.page.locator(form)
        for name, value in values.items():
            field_ = f.locator(f'[name="{name}"]')
            kind = (field_.first.get_attribute("type") or "").lower()
            tag = field_.first.evaluate("e => e.tagName.toLowerCase()")
            if tag == "select":
                field_.select_option(value)
            elif kind == "file":
                field_.set_input_files(value)
            elif kind == "checkbox":
                field_.set_checked(value not in ("", "0", "false"))
            elif kind == "radio":
                f.locator(f'[name="{name}"][value="{value}"]').check()
            else:
                field_.fill(value)

    def submit(self, form: str, button: str | None = None) -> Any:
        """Click the form's submit button (or ``button``, a label) and wait for the page that answers."""
        f = self.page.locator(form)
        target = f.get_by_role("button", name=button) if button else f.locator('[type="submit"]').first
        with self.page.expect_navigation(wait_until="load") as nav:
            target.click()
        return nav.value

    def login(self, user: str, password: str = PASSWORD, start: str = "/") -> None:
        """Log in through the form, as a person does (from ``start``, which sends to the login page)."""
        self.goto(start)
        assert self.path().startswith("/dang-nhap"), self.path()
        self.fill('form[action="/dang-nhap"]', {"username": user, "password": password})
        self.submit('form[action="/dang-nhap"]')
        assert not self.path().startswith("/dang-nhap"), self.text()

    def logout(self) -> None:
        self.submit("form.logout")

    def text(self, selector: str = "body") -> str:
        """What a person reads (rendered text, whitespace collapsed)."""
        return " ".join(self.page.locator(selector).inner_text().split())

    def horizontal_overflow(self) -> int:
        """Pixels by which the page is wider than the window (0 or less: no sideways scrolling)."""
        return self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m or "Content-Security-Policy" in m]


def _open(browser: Any, served: Served, viewport: dict[str, int]) -> Iterator[Tab]:
    context = browser.new_context(viewport=viewport, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    tab = Tab(page, served)
    page.on("console", lambda m: tab.messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: tab.errors.append(str(e)))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def phone(browser: Any, live: Served) -> Iterator[Tab]:
    """A 375×740 window (a phone) on the module's console, no one logged in."""
    yield from _open(browser, live, PHONE)


@pytest.fixture
def desktop(browser: Any, live: Served) -> Iterator[Tab]:
    """A 1280×800 window on the module's console, no one logged in."""
    yield from _open(browser, live, DESKTOP)


@contextmanager
def tab_on(browser: Any, served: Served, viewport: dict[str, int] = DESKTOP) -> Iterator[Tab]:
    """A tab on another server (``serve``), for tests that need their own installation."""
    yield from _open(browser, served, viewport)
