"""The issue's flows in a real browser (issue 12 item 6), Debian's Chromium via Playwright.

1. The secretariat logs in, finds a late unit on the overview, clicks through to one of its overdue
   reports and records the submission (with a file) on the instance page: the status changes.
2. A unit opens the "Báo đã gửi" link taken from a real digest received by aiosmtpd (delivered with
   the console's own link settings), confirms with a PDF attachment on a phone; the secretariat
   accepts it in /xac-nhan; the next evaluation + delivery, at a later simulated time, sends that
   unit no reminder about that report (while other units still get theirs); a tampered link is
   refused with a Vietnamese page and changes nothing.

Every test that changes data serves its own installation (``serve``). Time is an input: the later
pass runs with a later ``now``, never by waiting. Fixtures: tests/browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlmodel import select

from engine.app import confirmations, dashboard, services
from engine.app.config import Settings
from engine.clock import TZ
from engine.db import session
from engine.state import AttachmentRow, AuditRow, ConfirmationRow, InstanceRow, NoticeRow, SubmissionRow
from engine.vi import REPORT_STATUS
from notifications.config import SmtpConfig
from tests.browser import PHONE, Served, Tab, browser, serve, tab_on  # noqa: F401  (browser: fixture)
from tests.support import one_page_pdf
from tests.web_support import Console

# Each test seeds its own installation (about 2 s) and drives Chromium: slow.
pytestmark = pytest.mark.slow

YEARLY = ("khhd57-skhcn-nam", "2026")      # due Mon 30/11/2026; overdue-repeat-1 on Tue 08/12/2026
X, Y = "so-tai-chinh", "so-cong-thuong"
T = TypeVar("T")


# ─── helpers ─────────────────────────────────────────────────────────────────────────────────────
def small_pdf(path: Path, text: str = "Bao cao nam 2026 - So Tai chinh") -> bytes:
    """A real one-page PDF written to ``path``; returns its bytes."""
    data = one_page_pdf(text)
    path.write_bytes(data)
    return data


def off_the_browser_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a fresh thread: Playwright's sync API keeps an asyncio loop marked running in
    this one, and the delivery pass calls asyncio.run()."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def a_pass(con: Console, settings: Settings, when: datetime, evaluate: bool = True):
    """One evaluation and one delivery pass at ``when``, wired as the daemon does (links included)."""
    def run():
        if evaluate:
            services.evaluate(settings.database.url, con.pack, when, settings)
        return services.deliver(settings.database.url, con.pack, when, settings,
                                links=confirmations.link_maker(settings))
    return off_the_browser_thread(run)


def inst(con: Console, obligation: str, unit: str, period: str) -> InstanceRow:
    with session(con.settings.database.url) as s:
        return s.exec(select(InstanceRow).where(InstanceRow.obligation == obligation, InstanceRow.unit == unit,
                                                InstanceRow.period == period)).one()


def plain(msg: Any) -> str:
    return msg.get_body(("plain",)).get_content()


def mails_to(handler: Any, con: Console, unit: str, since: int = 0) -> list[Any]:
    addrs = set(con.pack.units[unit].contacts)
    return [m.message for m in handler.messages[since:] if addrs & set(m.rcpt_tos)]


def counts(con: Console) -> tuple[int, ...]:
    """Rows a refused request must not write."""
    with session(con.settings.database.url) as s:
        return tuple(len(s.exec(select(row)).all())
                     for row in (ConfirmationRow, AttachmentRow, AuditRow, SubmissionRow))


def problems(*tabs: Tab) -> list[str]:
    """CSP violations and script errors seen by the tabs (none expected)."""
    return [p for t in tabs for p in t.csp_violations() + t.errors]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A fresh seeded installation (02/12/2026 09:00) of this test's own, served on loopback."""
    home = tmp_path / "install"
    home.mkdir()
    with serve(Console(home)) as s:
        yield s


# ─── 1. the secretariat records what arrived ─────────────────────────────────────────────────────
def test_late_unit_on_the_overview_to_a_recorded_submission(browser: Any, served: Served, tmp_path: Path) -> None:
    con = served.console
    pdf = small_pdf(tmp_path / "bao-cao-thang.pdf")
    with tab_on(browser, served) as tab:
        tab.login("thu.ky")
        assert tab.path() == "/"
        late = tab.page.locator("section.card", has=tab.page.get_by_role("heading", name="Đơn vị chậm nộp"))
        first_row = late.locator("tbody tr").first
        unit_name = first_row.locator("td").nth(0).inner_text().strip()
        late_before = int(first_row.locator("td").nth(1).inner_text().strip())
        expected = dashboard.overview(con.settings, con.pack, con.now.date()).late_units[0]
        assert (unit_name, late_before) == (expected.name, expected.items)

        with tab.page.expect_navigation(wait_until="load"):
            first_row.get_by_role("link", name=unit_name).click()
        assert tab.path() == f"/don-vi/{expected.unit}"
        assert tab.text("h1").startswith(unit_name)
        overdue = tab.page.locator("#ky-bao-cao a.badge", has_text=REPORT_STATUS["overdue"])
        assert overdue.count() >= 1
        with tab.page.expect_navigation(wait_until="load"):
            overdue.first.click()
        m = re.fullmatch(r"/ky/(\d+)", tab.path())
        assert m, tab.path()
        iid = int(m.group(1))
        with session(con.settings.database.url) as s:
            row = s.get(InstanceRow, iid)
        assert row.unit == expected.unit and not row.closed and row.due < con.now.date()
        assert tab.text(".instance-status").startswith(REPORT_STATUS["overdue"])
        assert unit_name in tab.text("h1")

        # the form refuses a date in the future and writes nothing
        before = counts(con)
        tab.fill('form[action$="/ghi-nhan"]', {"date": "03/12/2026", "ref": "77/BC-TEST"})
        response = tab.submit('form[action$="/ghi-nhan"]')
        assert response.status == 400 and "tương lai" in tab.text("#ghi-nhan")
        assert counts(con) == before and tab.text(".instance-status").startswith(REPORT_STATUS["overdue"])

        tab.fill('form[action$="/ghi-nhan"]', {"date": "01/12/2026", "ref": "77/BC-TEST",
                                               "note": "Nhận qua hệ thống văn bản", "tep": str(tmp_path / "bao-cao-thang.pdf")})
        response = tab.submit('form[action$="/ghi-nhan"]')
        assert response.status == 200 and tab.path() == f"/ky/{iid}?ok=ghi-nhan"
        assert tab.text(".instance-status").startswith(REPORT_STATUS["done_late"])
        assert "01/12/2026 – số 77/BC-TEST" in tab.text(".instance-head")
        assert "bao-cao-thang.pdf" in tab.text("main")
        assert "Sửa ghi nhận" in tab.text("#ghi-nhan")           # the form now corrects the record

        # the file kept is the one sent (read through the secretariat's session)
        href = tab.page.get_by_role("link", name="bao-cao-thang.pdf").get_attribute("href")
        got = tab.page.request.get(served.url(href))
        assert got.status == 200 and got.body() == pdf

        # the overview counts one late report fewer for that unit
        tab.goto("/")
        late = tab.page.locator("section.card", has=tab.page.get_by_role("heading", name="Đơn vị chậm nộp"))
        row_now = late.locator("tbody tr", has=tab.page.get_by_role("link", name=unit_name, exact=True))
        if late_before == 1:
            assert row_now.count() == 0
        else:
            assert int(row_now.locator("td").nth(1).inner_text().strip()) == late_before - 1
        assert problems(tab) == [], (tab.messages, tab.errors)

    with session(con.settings.database.url) as s:
        sub = s.exec(select(SubmissionRow).where(SubmissionRow.instance_id == iid)).one()
        att = s.exec(select(AttachmentRow)).one()
        closed = s.get(InstanceRow, iid).closed
    assert (sub.submitted_on, sub.ref, sub.recorded_by) == (date(2026, 12, 1), "77/BC-TEST", "web:thu.ky")
    assert closed and att.submission_id == sub.id and att.filename == "bao-cao-thang.pdf"


# ─── 2. a unit confirms from its reminder; the secretariat accepts; the reminders stop ───────────
def test_unit_confirms_from_a_real_mail_secretariat_accepts_and_reminders_stop(
        browser: Any, served: Served, smtp: Any, tmp_path: Path) -> None:
    handler, port = smtp
    con = served.console
    # The console's own link settings (its real address), and delivery to aiosmtpd on loopback.
    con.settings = con.settings.model_copy(update={
        "web": con.settings.web.model_copy(update={"public_url": served.base_url}),
        "smtp": SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=2, timeout=5,
                           from_addr="dondoc@vptu.example.org", helo="test.local")})
    con.ctx.settings = con.settings
    assert con.settings.web.stop_reminders_at == "confirmation"
    rep = a_pass(con, con.settings, con.now)
    assert rep.sent > 10 and rep.failed == 0

    [mail] = mails_to(handler, con, X)
    found = re.findall(r"Báo đã gửi: (\S+)", plain(mail))
    assert len(found) == 1, plain(mail)
    link = found[0]
    assert link.startswith(served.base_url + "/xn/"), link
    title = con.pack.obligations[YEARLY[0]].title
    assert f"{title} – Năm 2026" in plain(mail)
    x = inst(con, YEARLY[0], X, YEARLY[1])
    pdf = small_pdf(tmp_path / "bao-cao-nam-2026.pdf")

    # The unit, on a phone, opens the link exactly as written in the mail (no account).
    with tab_on(browser, served, PHONE) as unit:
        response = unit.page.goto(link, wait_until="load")
        assert response.status == 200
        assert "Sở Tài chính" in unit.text("h1") and "Sở Công Thương" not in unit.text("main")
        item = unit.page.locator(f"#m-{x.id}")
        assert title in item.locator("h2").inner_text()
        assert REPORT_STATUS["overdue"] in unit.text(f"#m-{x.id} .facts")
        if item.locator("details").get_attribute("open") is None:
            item.locator("summary").click()
        unit.fill(f"#m-{x.id} form", {"ngay_gui": "30/11/2026", "so_ky_hieu": "45/BC-STC",
                                      "ghi_chu": "Đã gửi qua hệ thống văn bản", "tep": str(tmp_path / "bao-cao-nam-2026.pdf")})
        unit.submit(f"#m-{x.id} form")
        assert unit.path().startswith(link.removeprefix(served.base_url) + f"?ok={x.id}"), unit.path()
        assert "Đã ghi nhận đơn vị báo đã gửi" in unit.text("main")
        facts = unit.text(f"#m-{x.id} .facts")
        assert REPORT_STATUS["awaiting"] in facts and "đã gửi ngày 30/11/2026, số ký hiệu 45/BC-STC" in facts
        assert "bao-cao-nam-2026.pdf" in unit.text(f"#m-{x.id}")
        assert unit.horizontal_overflow() <= 1, "the unit's page scrolls sideways at 375 px"

        # A tampered link: refused in Vietnamese, no form; a form posted to it changes nothing.
        token = link.rsplit("/xn/", 1)[1]
        tampered = served.base_url + "/xn/" + token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        response = unit.page.goto(tampered, wait_until="load")
        assert response.status == 403 and unit.text("h1") == "Đường dẫn không hợp lệ"
        assert "Không có thông tin nào được ghi hay thay đổi" in unit.text("main")
        assert unit.page.locator('input[name="instance"]').count() == 0 and "Traceback" not in unit.page.content()
        unit.page.goto(link, wait_until="load")
        before = counts(con)
        unit.page.evaluate("a => { for (const f of document.querySelectorAll('form')) f.action = a; }",
                           tampered.removeprefix(served.base_url))
        form = f"#m-{x.id} form"
        if unit.page.locator(f"#m-{x.id} details").get_attribute("open") is None:
            unit.page.locator(f"#m-{x.id} summary").click()
        unit.fill(form, {"ngay_gui": "01/12/2026", "so_ky_hieu": "99/GIA-MAO"})
        response = unit.submit(form)
        assert response.status == 403 and unit.text("h1") == "Đường dẫn không hợp lệ"
        assert counts(con) == before
        assert problems(unit) == [], (unit.messages, unit.errors)

    row = inst(con, YEARLY[0], X, YEARLY[1])
    assert (row.awaiting_since, row.chase_paused, row.closed) == (date(2026, 11, 30), True, False)

    # The secretariat sees it in the queue, reads the file, accepts.
    with tab_on(browser, served) as sec:
        sec.login("thu.ky", start="/xac-nhan")
        assert sec.path() == "/xac-nhan"
        with session(con.settings.database.url) as s:
            conf = s.exec(select(ConfirmationRow)).one()
        queued = sec.page.locator(f"#xn-{conf.id}")
        words = " ".join(queued.inner_text().split())
        assert "Sở Tài chính" in words and title in words and "45/BC-STC" in words and "30/11/2026" in words
        assert REPORT_STATUS["done_on_time"] in words                         # what accepting will record
        href = queued.get_by_role("link", name="bao-cao-nam-2026.pdf").get_attribute("href")
        got = sec.page.request.get(served.url(href))
        assert got.status == 200 and got.body() == pdf
        with sec.page.expect_navigation(wait_until="load"):
            queued.get_by_role("button", name="Chấp nhận").click()
        assert sec.path() == "/xac-nhan?ok=chap-nhan"
        assert "Không có báo cáo nào đang chờ xác nhận" in sec.text("main")
        sec.goto(f"/ky/{x.id}")
        assert sec.text(".instance-status").startswith(REPORT_STATUS["done_on_time"])
        assert "30/11/2026 – số 45/BC-STC" in sec.text(".instance-head")
        assert problems(sec) == [], (sec.messages, sec.errors)

    row = inst(con, YEARLY[0], X, YEARLY[1])
    assert row.closed and row.awaiting_since is None
    with session(con.settings.database.url) as s:
        sub = s.exec(select(SubmissionRow).where(SubmissionRow.instance_id == x.id)).one()
    assert (sub.submitted_on, sub.ref, sub.recorded_by) == (date(2026, 11, 30), "45/BC-STC", "web:thu.ky")

    # A week later (simulated): the overdue-repeat-1 pass reminds the other units of the same
    # report, never Sở Tài chính, whose report was accepted.
    before = len(handler.messages)
    later = datetime(2026, 12, 8, 9, 0, tzinfo=TZ)
    rep = a_pass(con, con.settings, later)
    assert rep.sent > 0 and rep.failed == 0
    with session(con.settings.database.url) as s:
        new = s.exec(select(NoticeRow).where(NoticeRow.created_at > con.now)).all()
        y = s.exec(select(InstanceRow).where(InstanceRow.obligation == YEARLY[0], InstanceRow.unit == Y,
                                             InstanceRow.period == YEARLY[1])).one()
    assert any(n.instance_id == y.id and n.stage == "overdue-repeat-1" for n in new)   # the pass did remind
    assert not any(n.instance_id == x.id for n in new)                                   # not about X's
    assert any(f"{title} – Năm 2026" in plain(m) for m in mails_to(handler, con, Y, before))
    assert not any(f"{title} – Năm 2026" in plain(m) for m in mails_to(handler, con, X, before))
