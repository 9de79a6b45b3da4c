"""The console in a real browser (Debian's Chromium via Playwright): log in, read the overview on a
phone, open the menu (the page's script running under the CSP), log out, and a tampered form refused.

Why here and not with the TestClient: only a browser lays the page out at 375 px, runs
static/dondoc.js and enforces the Content-Security-Policy. Fixtures: tests/browser.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from engine.vi import REPORT_STATUS
from tests.browser import Tab, browser, desktop, live, phone  # noqa: F401  (fixtures used by name)

# About 7 s in one process (seeding the installation about 2 s, starting Chromium under 1 s): slow.
pytestmark = pytest.mark.slow

SCREENSHOT = Path(os.environ.get("DONDOC_SCREENSHOT_DIR", tempfile.gettempdir())) / "dondoc-overview-375.png"


def test_phone_login_overview_menu_and_logout(phone: Tab) -> None:
    phone.goto("/")
    assert phone.path() == "/dang-nhap?next=%2F"
    assert "Đăng nhập" in phone.text("h1")
    assert phone.horizontal_overflow() <= 1, "the login page scrolls sideways at 375 px"

    phone.login("thu.ky")
    assert phone.path() == "/"
    counts = phone.text("section.counts")
    for word in REPORT_STATUS.values():
        assert word in counts
    # The late units table names a late unit (the seed installation on 02/12/2026 has many).
    assert "Đơn vị chậm nộp" in phone.text()
    from engine.app import dashboard

    con = phone.served.console
    most_late = dashboard.overview(con.settings, con.pack, con.now.date()).late_units[0]
    assert most_late.name in phone.text("main")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375 + 1, \
        "the overview scrolls sideways at 375 px"
    phone.page.screenshot(path=str(SCREENSHOT), full_page=True)

    # The menu is folded on a phone; the script (external, allowed by the CSP) unfolds it.
    nav, toggle = phone.page.locator("#nav"), phone.page.get_by_role("button", name="Danh mục")
    assert toggle.is_visible() and not nav.is_visible()
    toggle.click()
    assert nav.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    assert nav.get_by_role("link", name="Ma trận").is_visible()
    assert phone.horizontal_overflow() <= 1, "the open menu scrolls sideways at 375 px"
    assert phone.csp_violations() == [] and phone.errors == [], (phone.messages, phone.errors)

    phone.logout()
    assert phone.path() == "/dang-nhap"
    phone.goto("/")
    assert phone.path().startswith("/dang-nhap"), "the session survived the logout"


def test_desktop_shows_the_menu_without_the_button(desktop: Tab) -> None:
    desktop.login("lanh.dao")
    assert desktop.page.locator("#nav").is_visible()
    assert not desktop.page.get_by_role("button", name="Danh mục").is_visible()
    assert "Lãnh đạo" in desktop.text("header")
    assert desktop.horizontal_overflow() <= 1
    assert desktop.csp_violations() == [] and desktop.errors == [], (desktop.messages, desktop.errors)


def test_csp_blocks_inline_script_and_the_check_sees_it(phone: Tab) -> None:
    """The CSP check above can fail: an inline script injected into the page is refused and reported."""
    phone.goto("/dang-nhap")
    assert phone.csp_violations() == []
    with phone.page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        phone.page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__ran = true'; document.body.appendChild(s); }""")
    assert phone.page.evaluate("window.__ran === undefined"), "an inline script ran despite the CSP"
    assert phone.csp_violations(), phone.messages


def test_tampered_logout_form_is_refused_in_vietnamese(desktop: Tab) -> None:
    desktop.login("thu.ky")
    for tamper in ("gia-mao", ""):
        desktop.page.evaluate("v => { document.querySelector('form.logout input[name=csrf]').value = v; }", tamper)
        response = desktop.submit("form.logout")
        assert response is not None and response.status == 403, tamper
        assert desktop.text("h1") == "Biểu mẫu không hợp lệ"
        assert "không có gì được ghi" in desktop.text("main")
        assert "Traceback" not in desktop.page.content()
        desktop.goto("/")
        assert desktop.path() == "/", "a refused logout must not end the session"
        assert desktop.text("h1").startswith("Tổng quan")
