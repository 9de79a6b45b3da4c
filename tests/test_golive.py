"""Go-live without a flood: the first start records the installation day, nothing due before the
tracking start is chased (KPI reminders included), the rest is `dondoc backlog` for the secretariat;
a configured tracking start brings older items back; `dondoc doctor` warns before the first morning.

Before this, a fresh install on the seed pack wrote 1,417 notices (869 escalations) and mailed 50
digests on its first morning; KPI reminders ignored DONDOC_TRACKING_START.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from engine.app.cli import app
from engine.clock import TZ
from engine.db import session
from engine.pipeline import load_open_items
from engine.state import InstallationRow, InstanceRow
from engine.sync import effective_tracking_start, record_installation, sync_instances
from tests.conftest import ROOT

INSTALL = "2026-12-01T09:00"      # a Tuesday, inside the sending window


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh install of the seed pack: new database, pickup folder, no SMTP, no tracking start."""
    monkeypatch.chdir(tmp_path)
    for var in ("DONDOC_SMTP_HOST", "DONDOC_CONFIG", "DONDOC_TEMPLATES_DIR", "DONDOC_TRACKING_START", "DONDOC_NOW",
                "DONDOC_SMTP_FROM", "DONDOC_MAIL_FROM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DONDOC_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("DONDOC_MAIL_DIR", str(tmp_path / "mail-out"))
    monkeypatch.setenv("DONDOC_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("DONDOC_CALENDAR_DIR", str(ROOT / "calendar"))
    return tmp_path


def dondoc(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    return res.output


def notices(db: Path) -> list[tuple]:
    """(kind, obligation, unit, period, due of its instance or None, recipient) of every notice."""
    with sqlite3.connect(db) as c:
        return c.execute("SELECT n.kind, n.obligation, n.unit, n.period, i.due, n.recipient FROM notices n "
                         "LEFT JOIN instances i ON i.id = n.instance_id").fetchall()


def run_once(home: Path, now: str) -> None:
    """`dondoc run --once` in its own process, as cron or systemd would start it (its logging setup
    stays out of this process)."""
    env = {k: v for k, v in os.environ.items() if k != "DONDOC_CONFIG"}
    res = subprocess.run([sys.executable, "-m", "engine.cli", "--now", now, "run", "--once"], cwd=home, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_first_morning_chases_nothing_due_before_the_installation_and_backlog_lists_it(fresh: Path) -> None:
    run_once(fresh, INSTALL)

    with sqlite3.connect(fresh / "state.db") as c:
        assert c.execute("SELECT installed_on, tracking_start, tracking_source FROM installation").fetchall() == [
            ("2026-12-01", "2026-12-01", "installation")]
        assert c.execute("SELECT count(*) FROM instances WHERE due < '2026-12-01' AND active = 1").fetchone() == (0,)
    sent = notices(fresh / "state.db")
    old = [n for n in sent if n[4] is not None and n[4] < "2026-12-01"]
    assert old == []
    # KPI reminders follow the same rule: the seed pack's 75 "Thiếu số liệu kỳ 2025" are not chased.
    assert [n for n in sent if n[1].startswith("kpi:")] == []
    eml = sorted((fresh / "mail-out").glob("*.eml")) if (fresh / "mail-out").exists() else []
    # Measured with the seed pack: 0 notices and 0 digests on the first morning (before: 1,417 / 50).
    assert len(sent) == 0 and len(eml) == 0

    # A second start later never moves the installation day.
    dondoc("--now", "2026-12-07T09:00", "sync")
    with sqlite3.connect(fresh / "state.db") as c:
        assert c.execute("SELECT installed_on FROM installation").fetchall() == [("2026-12-01",)]

    # What fell due before is a report for the secretariat, with the codes submit needs …
    dondoc("--now", "2026-12-07T09:00", "submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang",
           "--period", "2026-10", "--date", "2026-10-16", "--ref", "123/BC-STC")
    b = json.loads(dondoc("--now", "2026-12-07T10:00", "backlog", "--json"))
    assert (b["tracking_start"], b["since"], b["installation"]["installed_on"]) == ("2026-12-01", "2026-01-01", "2026-12-01")
    keys = {(i["obligation"], i["unit"], i["period"]): i for i in b["items"]}
    jan = keys[("khhd57-thang", "so-tai-chinh", "2026-01")]
    assert jan["period_label"] == "Tháng 01/2026" and jan["obligation_title"].startswith("Báo cáo tháng")
    assert jan["due_vi"] == f"{date.fromisoformat(jan['due']):%d/%m/%Y}" and jan["due"] < "2026-12-01"
    assert ("khhd57-thang", "so-tai-chinh", "2026-10") not in keys           # recorded as submitted
    assert b["recorded"] == 1 and b["count"] == len(b["items"]) > 400
    assert all(i["due"] < "2026-12-01" for i in b["items"])
    by_unit = {u["unit"]: u["count"] for u in b["by_unit"]}
    assert by_unit["so-tai-chinh"] == sum(1 for k in keys if k[1] == "so-tai-chinh")
    # … and the screen says what it is and how to act on it, in Vietnamese.
    text = dondoc("--now", "2026-12-07T10:00", "backlog")
    assert "Bắt đầu theo dõi: 01/12/2026 (ngày cài đặt)" in text and "khhd57-thang" in text
    assert "DONDOC_TRACKING_START" in text and "dondoc submit" in text


def test_backlog_xlsx_has_codes_and_neutralised_text(fresh: Path, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from engine.backlog import Backlog, BacklogItem, write_backlog_xlsx

    dondoc("--now", INSTALL, "backlog", "--xlsx", str(tmp_path / "tồn.xlsx"))
    wb = load_workbook(tmp_path / "tồn.xlsx")
    assert wb.sheetnames == ["Tổng hợp", "Danh sách"]
    ws = wb["Danh sách"]
    header = [c.value for c in ws[1]]
    assert header[:7] == ["Đơn vị", "Mã đơn vị", "Báo cáo", "Mã nghĩa vụ", "Kỳ", "Mã kỳ", "Hạn nộp"]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert len(rows) > 400 and all(r[6].date() < date(2026, 12, 1) for r in rows)
    assert any(r[1] == "so-tai-chinh" and r[3] == "khhd57-thang" and r[5] == "2026-01" for r in rows)
    assert ws.cell(row=2, column=7).number_format == "DD/MM/YYYY"

    # A name that a spreadsheet would run as a formula is stored as text.
    evil = BacklogItem("ob", "=HYPERLINK(\"http://x\",\"bấm\")", "u", "+cmd|' /C calc'!A0", "2026-01", "Tháng 01/2026",
                       date(2026, 1, 19), "r", "@SUM(1)")
    write_backlog_xlsx(Backlog(date(2026, 12, 1), date(2026, 1, 1), [evil]), tmp_path / "evil.xlsx", "-tiêu đề")
    ws = load_workbook(tmp_path / "evil.xlsx")["Danh sách"]
    for col in (1, 3, 8):
        cell = ws.cell(row=2, column=col)
        assert cell.data_type == "s" and cell.quotePrefix, cell.value


def test_a_configured_tracking_start_brings_older_items_back(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secretariat moves the tracking start back: older reports are chased again (the catch-up
    digest's size is notifications' business; here: the items are there), KPI items included."""
    dondoc("--now", INSTALL, "sync")                          # installed on 01/12/2026
    monkeypatch.setenv("DONDOC_TRACKING_START", "2026-01-01")
    rep = json.loads(dondoc("--now", INSTALL, "evaluate", "--dry-run", "--json"))
    got = {(n["obligation"], n["unit"], n["period"]) for n in rep["notices"]}
    assert ("khhd57-thang", "so-tai-chinh", "2026-01") in got
    assert len(rep["notices"]) > 1000                           # the flood the installation day prevents
    with sqlite3.connect(fresh / "state.db") as c:
        assert c.execute("SELECT installed_on, tracking_start, tracking_source FROM installation").fetchall() == [
            ("2026-12-01", "2026-01-01", "config")]
    # KPI figures for 2025 were due in December 2025: chased only when the start goes back that far.
    assert not [n for n in rep["notices"] if n["obligation"].startswith("kpi:")]
    monkeypatch.setenv("DONDOC_TRACKING_START", "2025-06-01")
    rep = json.loads(dondoc("--now", INSTALL, "evaluate", "--dry-run", "--json"))
    kpi = [n for n in rep["notices"] if n["obligation"].startswith("kpi:")]
    assert kpi and all("2025" in n["period"] for n in kpi)
    # Back to the installation day: the older instances stop being chased (kept, not deleted).
    monkeypatch.delenv("DONDOC_TRACKING_START")
    rep = json.loads(dondoc("--now", INSTALL, "evaluate", "--dry-run", "--json"))
    assert rep["notices"] == []


def test_doctor_shows_the_installation_placeholders_and_the_next_window(fresh: Path, monkeypatch) -> None:
    # During setup, before the first run: doctor records nothing and forecasts the real first morning.
    text = dondoc("--now", INSTALL, "doctor")
    assert "chưa ghi nhận ngày cài đặt" in text
    assert "địa chỉ giữ chỗ" in text and "example.org" in text and "From" in text
    assert "sẽ gửi 0 thư tổng hợp" in text
    dondoc("--now", INSTALL, "sync")
    text = dondoc("--now", "2026-12-02T08:00", "doctor")
    assert "cài đặt ngày 01/12/2026; đôn đốc các báo cáo có hạn từ 01/12/2026 (ngày cài đặt)" in text
    monkeypatch.setenv("DONDOC_TRACKING_START", "2026-01-01")
    monkeypatch.setenv("DONDOC_SMTP_FROM", "dondoc@gialai.gov.vn")
    text = dondoc("--now", INSTALL, "doctor")
    assert "sẽ gửi 50 thư tổng hợp tới 50 người nhận" in text        # the old first morning, announced
    assert "From (" not in text                                      # a real From is not flagged
    with sqlite3.connect(fresh / "state.db") as c:                   # a dry computation: nothing written
        assert c.execute("SELECT count(*) FROM notices").fetchone() == (0,)
        assert c.execute("SELECT tracking_source FROM installation").fetchall() == [("installation",)]


def test_placeholder_addresses() -> None:
    from engine.app.services import is_placeholder_address

    for a in ("vanthu@example.org", "x@mail.example.com", "a@localhost", "b@so.test", "c@host.invalid", "d@EXAMPLE.NET"):
        assert is_placeholder_address(a), a
    for a in ("vanthu@gialai.gov.vn", "a@examples.org", "b@localhost.vn"):
        assert not is_placeholder_address(a), a


def test_effective_tracking_start_rule(minipack) -> None:
    pack_start = minipack.info.tracking_start
    assert pack_start == date(2026, 1, 1)
    # Configured wins, even before the pack's and the installation day (moved back on purpose).
    assert effective_tracking_start(minipack, date(2025, 3, 1), date(2026, 12, 1)).day == date(2025, 3, 1)
    # Otherwise the later of the pack's and the installation day.
    eff = effective_tracking_start(minipack, None, date(2026, 12, 1))
    assert (eff.day, eff.source) == (date(2026, 12, 1), "installation")
    early = effective_tracking_start(minipack, None, date(2025, 6, 1))
    assert (early.day, early.source) == (pack_start, "pack")


def test_tracking_start_moved_forward_and_back_on_the_core(sqlite_url: str, minipack) -> None:
    """Installed 02/03/2026: January and February are not tracked; moving the start back tracks
    them; moving it forward again stops chasing them without deleting them."""
    now = at("2026-03-02T07:00")
    with session(sqlite_url) as s:
        assert record_installation(s, now) == date(2026, 3, 2)
        assert record_installation(s, at("2026-04-01T07:00")) == date(2026, 3, 2)   # never overwritten
        sync_instances(s, minipack, now)
        assert min(r.due for r in s.exec(select(InstanceRow)).all()) >= date(2026, 3, 2)
        sync_instances(s, minipack, now, tracking_start=date(2026, 1, 1))
        items = load_open_items(s, minipack, now.date())
        assert any(i.due < date(2026, 3, 2) for i in items)
        rep = sync_instances(s, minipack, now)
        assert rep.untracked > 0
        items = load_open_items(s, minipack, now.date())
        assert not [i for i in items if i.due < date(2026, 3, 2)]
        assert s.exec(select(InstanceRow).where(InstanceRow.due < date(2026, 3, 2))).all()   # kept for history
        row = s.get(InstallationRow, 1)
        assert (row.installed_on, row.tracking_start, row.tracking_source) == (date(2026, 3, 2), date(2026, 3, 2), "installation")


def test_without_an_installation_record_the_core_keeps_the_packs_tracking_start(sqlite_url: str, minipack) -> None:
    """Library use (and the core's own tests) on a bare database: the pack's tracking_start, as before."""
    with session(sqlite_url) as s:
        sync_instances(s, minipack, at("2026-03-01T07:00"))
        assert min(r.due for r in s.exec(select(InstanceRow)).all()) < date(2026, 3, 1)
        assert s.get(InstallationRow, 1) is None
