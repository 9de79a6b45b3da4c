"""Issue 13 end to end, with a REAL running daemon: a secretary adds the quarterly report "gửi Sở
KH&CN, hạn ngày 20 tháng cuối quý" for all departments through the console's forms, applies it;
`dondoc run` (a subprocess on a simulated clock, mailing a real aiosmtpd server) reloads it and its
next reminders carry it; `dondoc rules history` shows who and why; restoring the previous version
makes the daemon reload again, the future deadlines the report created stop being chased (no later
reminder for it) and everything else (other reports' deadlines, a recorded submission) is as it was.

Also: the daemon records a HAND edit of rules/ as a version (author unknown) when it reloads, but
never records a second version for an apply or a restore (they recorded themselves).

Timeline (simulated, Asia/Ho_Chi_Minh): the daemon starts Friday 11/12/2026 17:30 at ×20000 (one
real second ≈ 5.6 simulated hours). Q4's deadline is 20/12/2026, a Sunday → Monday 21/12/2026;
policy hang-quy reminds 5 and 2 working days before: Monday 14/12 and Thursday 17/12 (mails from
07:30). Nothing waits for a deadline by sleeping: the test polls the daemon's JSON log, the SMTP
recorder and the database with bounded timeouts. Assertions are about what arrived and when in
simulated time, never about how fast: on a loaded machine the first reminder may land later than
14/12, which the assertions allow (any reminder stage before the deadline).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.app import ruleversions as rv
from engine.app import services
from engine.app.browse import expand
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, RULES, ROOT
from tests.test_daemon_run import (D, DaemonProc, base_env, body, dondoc_cmd, dump_mails, sent_date,
                                   wait_until, write_atomic)
from tests.web_support import Console, text_of

pytestmark = pytest.mark.slow          # a real daemon over six simulated days: ~40 s

SIM_START = "2026-12-11T17:30"
RATE = 20000
TITLE = "Báo cáo quý gửi Sở KH&CN về thực hiện Nghị quyết 57-NQ/TW"
REASON = "Theo Kế hoạch số 12/KH-UBND ngày 05/12/2026"
RESTORE_REASON = "Khôi phục: Kế hoạch số 12/KH-UBND bị thu hồi"
GROUP = "so-ban-nganh-tru-khcn"          # every department except Sở KH&CN, the recipient
NEW_OBLIGATION = {
    "title": TITLE, "document": "Kế hoạch số 12/KH-UBND ngày 05/12/2026 của UBND tỉnh", "section": "Mục IV.2",
    "kind": "dinh_ky", "reporters": [GROUP], "recipient": "so-khcn", "freq": "quarterly",
    "cutoff": "default", "due_rule": "day_of_last_month", "due_day": "20", "roll": "forward",
    "reminder_policy": "hang-quy", "effective_from": "01/12/2026",
    "assumptions": "“Hạn ngày 20 tháng cuối quý”: ngày nghỉ thì chuyển sang ngày làm việc tiếp theo.",
    "file": "obligations-001-khhd-57.yaml",
}
DUE = date(2026, 12, 21)                  # 20/12/2026 is a Sunday


SUBMISSIONS = ("SELECT i.obligation, i.unit, i.period, s.submitted_on, s.ref, s.active, i.submitted_on, "
               "i.submission_ref FROM submissions s JOIN instances i ON i.id = s.instance_id")


def _sql(db: str, query: str, **params) -> list[tuple]:
    from engine.db import make_engine

    eng = make_engine(db)
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(text(query), params).all()]
    finally:
        eng.dispose()


def _versions(db: str) -> list[tuple[int, str, str, str]]:
    """(number, kind, author, reason) straight from the table: rv.history() would itself record a
    hand edit and so hide whether the daemon did."""
    return _sql(db, "SELECT number, kind, author, reason FROM rule_versions ORDER BY number")


def _instances(db: str) -> dict[tuple[str, str, str], tuple]:
    rows = _sql(db, "SELECT obligation, unit, period, due, active, closed FROM instances")
    return {(o, u, p): (str(d), bool(a), bool(c)) for o, u, p, d, a, c in rows}


def _dondoc(*args: str, db: str, rules: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONDOC_")}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "250"})
    return subprocess.run(dondoc_cmd() + list(args) + ["--rules", str(rules), "--calendar", str(CALENDAR), "--db", db],
                          cwd=rules.parent, env=env, capture_output=True, text=True, timeout=60)


def test_add_apply_remind_history_restore_with_a_running_daemon(tmp_path: Path, smtp) -> None:
    handler, port = smtp
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    con = Console(tmp_path, now=SIM_START, tracking_start=None, sync=False,
                  env={"DONDOC_RULES_DIR": str(rules), "DONDOC_DATABASE_URL": db})
    web = con.client("thu.ky")
    old_pack = load_pack(rules, CALENDAR)
    departments = [u for u in expand(old_pack, [GROUP])          # the units the group names on the deadline
                   if (old_pack.units[u].valid_until is None or old_pack.units[u].valid_until >= DUE)
                   and (old_pack.units[u].valid_from is None or old_pack.units[u].valid_from <= DUE)]
    assert len(departments) >= 10
    addresses = {a for u in departments for a in old_pack.units[u].contacts}

    # ── 1. the secretary drafts the new report through the forms (nothing live changes) ─────────
    r = web.form("/quy-tac/ban-nhap", {"ten": "ke-hoach-12"})
    assert r.status_code == 303, text_of(r.text)
    draft = "/quy-tac/ban-nhap/ke-hoach-12"
    r = web.form(draft + "/bao-cao/moi", NEW_OBLIGATION)
    assert r.status_code == 303, text_of(r.text)
    page = web.get(draft)
    shown = text_of(page.text)
    assert "Hợp lệ" in shown and "Chưa hợp lệ" not in shown
    assert 'class="change-moved"' not in page.text and 'class="change-removed"' not in page.text
    assert rv.folder_hash(rules) == rv.content_hash(rv.snapshot(RULES))     # the live folder is untouched

    # ── 2. the daemon runs on the old rules; starting records nothing new (version 1 = as found) ─
    d = DaemonProc(tmp_path, "daemon", rules=rules, db=db, sim_start=SIM_START, rate=RATE, env=base_env(port))
    try:
        d.wait_event("active", timeout=60)
        first = d.wait_event("rules_loaded", timeout=10)
        d.wait_event("evaluated", timeout=30)             # synced and chasing on the old rules
        assert first["version"] == old_pack.version
        assert [(n, k) for n, k, _, _ in _versions(db)] == [(1, "initial")]

        # ── 3. apply with a reason: the running daemon picks the new version up ───────────────────
        r = web.form(draft + "/ap-dung", {"ly_do": REASON})
        assert r.status_code == 303 and r.headers["location"] == "/quy-tac/lich-su?ok=2", text_of(r.text)
        applied_at = d.sim_now()
        new_pack = load_pack(rules, CALENDAR)
        oid = next(o for o, ob in new_pack.obligations.items() if ob.title == TITLE)
        assert new_pack.version != old_pack.version
        loaded = d.wait_event("rules_loaded", count=2, timeout=30)
        assert loaded["version"] == new_pack.version

        # ── 4. the next reminders carry it: every department gets a digest naming the new report ──
        def titled() -> list:
            return [m for m in list(handler.messages) if TITLE in body(m)]

        wait_until(lambda: addresses <= {a for m in titled() for a in m.rcpt_tos}, 60,
                   "a reminder of the new report for every department", d)
        reminders = titled()
        for m in reminders:
            assert set(m.rcpt_tos) <= addresses, m.rcpt_tos            # departments only (not Sở KH&CN)
            assert D("2026-12-14T07:30") <= sent_date(m) < D("2026-12-21T00:00"), sent_date(m)
            assert "Thứ Hai, 21/12/2026" in body(m) and "Sắp đến hạn" in body(m)
        assert applied_at is not None and applied_at < D("2026-12-17T00:00"), f"applied at {applied_at}: machine too slow"
        created = {k: v for k, v in _instances(db).items() if k[0] == oid}
        new_keys = set(created)                  # Q4/2026 and the quarters of 2027 within the sync horizon
        q4 = {k for k, v in created.items() if v[0] == DUE.isoformat()}
        assert {k[1] for k in q4} == set(departments) and len({k[2] for k in q4}) == 1
        assert all(v[0] > DUE.isoformat() and v[1] and not v[2] for k, v in created.items() if k not in q4)
        period = next(iter(q4))[2]

        # ── 5. one department has already submitted it (history that a restore must keep) ────────
        submitted_at = d.sim_now() or D("2026-12-14T10:00")
        sub = services.submit(con.settings, new_pack, oid, departments[0], period, submitted_at.date(), submitted_at,
                              "thu.ky", "123/BC-STC", None)
        assert sub.on_time
        kept = (oid, departments[0], period)
        before = _instances(db)
        submissions_before = _sql(db, SUBMISSIONS)
        assert len(submissions_before) == 1

        # ── 6. restore version 1 through the console: the daemon reloads the old rules ────────────
        r = web.form("/quy-tac/lich-su/1/khoi-phuc")
        assert r.status_code == 303 and r.headers["location"] == "/quy-tac/ban-nhap/khoi-phuc-1?ok=khoi-phuc"
        r = web.form("/quy-tac/ban-nhap/khoi-phuc-1/ap-dung", {"ly_do": RESTORE_REASON})
        assert r.status_code == 303 and r.headers["location"] == "/quy-tac/lich-su?ok=3", text_of(r.text)
        restored = d.wait_event("rules_loaded", count=3, timeout=30)
        assert restored["version"] == old_pack.version

        def retired() -> bool:
            now_rows = _instances(db)
            return all(not now_rows[k][1] for k in new_keys if k != kept)

        wait_until(retired, 60, "the daemon's sync retiring the new report's open deadlines", d)
        restore_done = d.sim_now()
        assert restore_done is not None and restore_done < D("2026-12-17T00:00"), \
            f"restored at {restore_done}: too late to see the 17/12 reminder left out (machine too slow?)"
        print(f"applied at {applied_at:%d/%m %H:%M}, first reminder of it {min(sent_date(m) for m in reminders):%d/%m %H:%M}, "
              f"submitted {submitted_at:%d/%m %H:%M}, restore synced by {restore_done:%d/%m %H:%M} (simulated)")
        # the daemon goes on past the next reminder day of the removed report (Thursday 17/12)
        d.wait_sim(D("2026-12-17T12:00"), timeout=90)
        wait_until(lambda: any(sent_date(m) >= D("2026-12-17T07:30") for m in list(handler.messages)), 30,
                   "the 17/12 reminders of the other reports", d)

        # ── 7. a hand edit of rules/ IS recorded by the daemon (author unknown) ──────────────────
        units = rules / "units.yaml"
        write_atomic(units, units.read_text(encoding="utf-8") + "# sửa trực tiếp: ghi chú của văn thư\n")
        d.wait_event("rules_loaded", count=4, timeout=30)
        wait_until(lambda: len(_versions(db)) >= 4, 30, "the daemon recording the hand edit", d)
        rc, took = d.stop(signal.SIGTERM)
        assert rc == 0 and took < 10, (rc, took, d.tail())
        assert not d.errors(), d.errors()
    finally:
        d.close()
        dump_mails(handler, tmp_path / "mails.txt")

    # ── what the restore did: the new report's future deadlines are no longer chased ─────────────
    after = _instances(db)
    for key in new_keys:
        due, active, closed = after[key]
        if key == kept:
            assert (active, closed) == (True, True), after[key]          # the submitted one stays as history
        else:
            assert (active, closed) == (False, False), (key, after[key])
    # … and nothing else changed: every other deadline, the submission
    others = {k: v for k, v in before.items() if k[0] != oid}
    assert {k: after[k] for k in others} == others
    horizon = max(v[0] for v in before.values())      # new days move the 400-day sync horizon: only beyond it
    assert all(v[0] > horizon for k, v in after.items() if k not in before), \
        sorted((k, v) for k, v in after.items() if k not in before and v[0] <= horizon)
    assert _sql(db, SUBMISSIONS) == submissions_before
    # no reminder of it was created or mailed after the restore (the 17/12 one never existed)
    late = _sql(db, "SELECT unit, stage, created_at FROM notices WHERE obligation = :o", o=oid)
    stages = {s for _, s, _ in late}
    assert stages and all(s.startswith("remind") for s in stages), stages
    assert not [m for m in list(handler.messages) if TITLE in body(m) and sent_date(m) > restore_done]
    assert not any(sent_date(m) >= D("2026-12-17T00:00") for m in titled())
    assert any(sent_date(m) >= D("2026-12-17T07:30") for m in list(handler.messages))   # others still chased

    # ── the history: no version recorded twice; the daemon's own record only for the hand edit ───
    versions = _versions(db)
    assert [(n, k) for n, k, _, _ in versions] == [(1, "initial"), (2, "apply"), (3, "restore"), (4, "hand_edit")]
    assert versions[1][3] == REASON and versions[2][3] == RESTORE_REASON
    assert versions[3][2] == rv.UNKNOWN_AUTHOR

    # ── `dondoc rules history` (the real command) shows author and reason ────────────────────────
    out = _dondoc("rules", "history", db=db, rules=rules)
    assert out.returncode == 0, out.stderr + out.stdout
    listing = out.stdout
    assert REASON in listing and RESTORE_REASON in listing and "web:thu.ky" in listing, listing
    assert "Áp dụng bản nháp" in listing and "Khôi phục phiên bản số 1" in listing and "Sửa trực tiếp tệp" in listing
    assert listing.count("Sửa trực tiếp tệp") == 1
    js = _dondoc("rules", "history", "--json", db=db, rules=rules)
    assert js.returncode == 0, js.stderr
    two = next(v for v in json.loads(js.stdout) if v["number"] == 2)
    assert two["reason"] == REASON and "thu.ky" in two["author"] and "obligations-001-khhd-57.yaml" in two["files_changed"]
    one = _dondoc("rules", "history", "2", db=db, rules=rules)
    assert one.returncode == 0 and f'+    title: "{TITLE}"' in one.stdout, one.stdout[-2000:]
