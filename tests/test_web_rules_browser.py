"""Issue 13's scenario in Debian's Chromium: a secretary adds “báo cáo quý gửi Sở KH&CN, hạn ngày 20
tháng cuối quý” for all departments through the form, sees the check pass and the preview list
exactly the new deadlines, applies it with a reason; the history shows the version with author and
reason; restoring the previous version (through the same check and preview) removes the future
instances the new rule created and nothing else.

Why in a browser: the forms are long (checkboxes, selects) and must work as a person fills them,
under the Content-Security-Policy, and the draft page must not scroll sideways on a phone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from engine.app import ruleversions as rv
from engine.app import services
from engine.state import InstanceRow, SubmissionRow
from tests.browser import PHONE, Tab, browser, serve, tab_on  # noqa: F401  (fixtures used by name)
from tests.conftest import RULES
from tests.web_support import Console

pytestmark = pytest.mark.slow

TITLE = "Báo cáo quý gửi Sở KH&CN về thực hiện Kế hoạch số 12/KH-UBND"
REASON = "Theo Kế hoạch số 12/KH-UBND ngày 05/01/2026"


def _instances(con: Console, active: bool | None = True) -> list[tuple[str, str, str, str]]:
    """(obligation, unit, period, due) of the tracked instances (``active=None``: with the flag, all rows)."""
    with services.open_session(con.settings) as ses:
        rows = ses.exec(select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.due,
                               InstanceRow.active, InstanceRow.closed)).all()
    if active is None:
        return sorted((o, u, p, f"{d} {a} {c}") for o, u, p, d, a, c in rows)
    return sorted((o, u, p, str(d)) for o, u, p, d, a, _ in rows if a == active)


def _submissions(con: Console) -> int:
    with services.open_session(con.settings) as ses:
        return len(ses.exec(select(SubmissionRow.id)).all())


def _preview_rows(tab: Tab, change: str) -> list[str]:
    details = tab.page.locator("details.preview-details", has_text="Từng hạn nộp thay đổi")
    return [" ".join(t.split()) for t in details.locator(f"tr.change-{change}").all_text_contents()]


def test_secretary_adds_a_quarterly_report_applies_it_and_restores(browser: Any, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    con = Console(tmp_path, env={"DONDOC_RULES_DIR": str(rules)})
    before_instances, before_rows, before_submissions = _instances(con), _instances(con, None), _submissions(con)
    with serve(con) as served, tab_on(browser, served) as tab:
        tab.login("thu.ky", start="/quy-tac")
        tab.page.get_by_role("link", name="Sửa quy tắc (bản nháp)").click()
        tab.page.wait_for_load_state("load")
        tab.fill('form[action="/quy-tac/ban-nhap"]', {"ten": "ke-hoach-12"})
        tab.submit('form[action="/quy-tac/ban-nhap"]')
        assert tab.path() == "/quy-tac/ban-nhap/ke-hoach-12?ok=tao"

        with tab.page.expect_navigation(wait_until="load"):
            tab.page.get_by_role("link", name="Thêm báo cáo").click()
        form = "form.rule-form"
        tab.fill(form, {"title": TITLE, "document": "Kế hoạch số 12/KH-UBND ngày 05/01/2026 của UBND tỉnh",
                        "section": "Mục IV.2", "recipient": "so-khcn", "freq": "quarterly",
                        "due_rule": "day_of_last_month", "due_day": "20", "roll": "forward",
                        "reminder_policy": "hang-quy", "effective_from": "01/12/2026",
                        "assumptions": "Ngày 20 rơi vào ngày nghỉ thì hạn là ngày làm việc tiếp theo."})
        tab.page.locator('input[name="reporters"][value="so-ban-nganh-tru-khcn"]').check()
        tab.submit(form)
        assert tab.path().startswith("/quy-tac/ban-nhap/ke-hoach-12?ok=them"), tab.text("main")
        assert "Hợp lệ" in tab.text("#kiem-tra")
        assert f"Thêm báo cáo “{TITLE}”" in tab.text("#thay-doi")
        added = _preview_rows(tab, "added")
        pack = con.pack
        from engine.app.browse import expand

        units = [u for u in expand(pack, ["so-ban-nganh-tru-khcn"]) if pack.units[u].valid_until is None]
        assert len(added) == len(units) >= 10
        assert all(TITLE in r and "21/12/2026" in r for r in added), added[:2]
        assert not _preview_rows(tab, "moved") and not _preview_rows(tab, "removed")
        assert not tab.csp_violations() and not tab.errors

        tab.fill('form[action$="/ap-dung"]', {"ly_do": REASON})
        tab.submit('form[action$="/ap-dung"]')
        assert tab.path().startswith("/quy-tac/lich-su?ok="), tab.text("main")
        current = tab.text("tr.current")
        assert "Thu Ky" in current and REASON in current and TITLE in current
        number = rv.current_number(con.settings)

        # the rules in use now ask for the report: sync (what the daemon does on reload) creates it
        services.sync(con.settings, services.load_rules(con.settings), con.now)
        created = [i for i in _instances(con) if i not in before_instances]
        oid = {i[0] for i in created}
        assert len(oid) == 1 and {i[1] for i in created} == set(units)
        assert {i[1] for i in created if i[2] == "2026-Q4" and i[3].startswith("2026-12-21")} == set(units)
        assert all(i[3] > "2026-12-02" for i in created)        # only future deadlines (effective from 01/12/2026)

        # restore the version before: a draft, checked and previewed, then applied with a reason
        row = tab.page.locator("tr", has=tab.page.locator(f'a[href="/quy-tac/lich-su/{number - 1}"]'))
        with tab.page.expect_navigation(wait_until="load"):
            row.get_by_role("button", name="Khôi phục").click()
        assert tab.path() == f"/quy-tac/ban-nhap/khoi-phuc-{number - 1}?ok=khoi-phuc"
        assert "Hợp lệ" in tab.text("#kiem-tra")
        removed = _preview_rows(tab, "removed")
        assert len(removed) == len(units) and all(TITLE in r for r in removed)
        assert not _preview_rows(tab, "added") and not _preview_rows(tab, "moved")
        tab.fill('form[action$="/ap-dung"]', {"ly_do": "Kế hoạch số 12/KH-UBND bị thu hồi"})
        tab.submit('form[action$="/ap-dung"]')
        assert f"Khôi phục phiên bản số {number - 1}" in tab.text("tr.current")

        services.sync(con.settings, services.load_rules(con.settings), con.now)
        assert _instances(con) == before_instances          # the new report's instances no longer tracked …
        new_id = oid.pop()
        assert [i for i in _instances(con, None) if i[0] != new_id] == before_rows   # … and nothing else changed
        assert _instances(con, False) == sorted(created)    # kept for history, inactive (engine: sync retires)
        assert _submissions(con) == before_submissions
        assert not tab.csp_violations() and not tab.errors

    with serve(con) as served, tab_on(browser, served, PHONE) as phone:
        phone.login("thu.ky", start="/quy-tac/lich-su")
        assert phone.horizontal_overflow() <= 1, "the history scrolls sideways at 375 px"
        phone.goto("/quy-tac/ban-nhap")
        phone.fill('form[action="/quy-tac/ban-nhap"]', {"ten": "dien-thoai"})
        phone.submit('form[action="/quy-tac/ban-nhap"]')
        phone.goto("/quy-tac/ban-nhap/dien-thoai/bao-cao/moi")
        assert phone.horizontal_overflow() <= 1, "the obligation form scrolls sideways at 375 px"
