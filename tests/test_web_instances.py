"""/ky/{id} and /tep/{id}: recording, correcting and waiving one report from the console, with the
CLI's validation and audit, files checked before anything is written, and read-only leaders.

One seeded installation for the module (now = 02/12/2026 09:00); each test that writes takes its own
instance (``Pick``), so tests do not depend on each other's order.
"""

from __future__ import annotations

import hashlib
from datetime import date
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from engine.app.services import open_session
from engine.state import AttachmentRow, AuditRow, InstanceRow, SubmissionRow, WaiverRow
from tests.web_support import Console, text_of

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Console:
    return Console(tmp_path_factory.mktemp("instances"))


class Pick:
    """Open instances already overdue on 02/12/2026 (due in November), one per call, never twice."""

    def __init__(self, con: Console):
        with open_session(con.settings) as ses:
            rows = ses.execute(sa.select(InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period,
                                         InstanceRow.due)
                               .where(InstanceRow.closed == sa.false(), InstanceRow.active == sa.true(),
                                      InstanceRow.due >= date(2026, 11, 1), InstanceRow.due < date(2026, 12, 1),
                                      InstanceRow.period_start <= date(2026, 11, 1))
                               .order_by(InstanceRow.id)).all()
        assert len(rows) >= 30, len(rows)
        self._rows = iter(rows)

    def __call__(self):
        return next(self._rows)


@pytest.fixture(scope="module")
def pick(console: Console) -> Pick:
    return Pick(console)


def state(con: Console, iid: int) -> dict[str, object]:
    """What the database says about one instance: the row, its submissions, waivers, files, audit."""
    with open_session(con.settings) as ses:
        inst = ses.get(InstanceRow, iid)
        key = f"{inst.obligation}|{inst.unit}|{inst.period}"
        return {
            "closed": inst.closed, "waived": inst.waived, "submitted_on": inst.submitted_on, "ref": inst.submission_ref,
            "subs": [(s.submitted_on, s.ref, s.active, s.recorded_by) for s in ses.execute(
                sa.select(SubmissionRow).where(SubmissionRow.instance_id == iid).order_by(SubmissionRow.id)).scalars()],
            "waivers": [(w.reason, w.active, w.recorded_by) for w in ses.execute(
                sa.select(WaiverRow).where(WaiverRow.instance_id == iid).order_by(WaiverRow.id)).scalars()],
            "files": [(a.filename, a.sha256, a.submission_id, a.stored_name) for a in ses.execute(
                sa.select(AttachmentRow).where(AttachmentRow.instance_id == iid)).scalars()],
            "audit": [(a.actor, a.action) for a in ses.execute(
                sa.select(AuditRow).where(AuditRow.entity_id == key).order_by(AuditRow.id)).scalars()],
        }


def active_submission_id(con: Console, iid: int) -> int:
    with open_session(con.settings) as ses:
        return ses.execute(sa.select(SubmissionRow.id).where(SubmissionRow.instance_id == iid,
                                                             SubmissionRow.active == sa.true())).scalar_one()


def upload_dir_files(con: Console) -> set[str]:
    d = con.settings.web.upload_dir
    return {p.name for p in d.iterdir()} if d.exists() else set()


# ─── the page ───────────────────────────────────────────────────────────────────────────────────
def test_page_shows_the_report_unit_period_due_day_and_status(console: Console, pick: Pick) -> None:
    iid, ob, unit, period, due = pick()
    r = console.client("thu.ky").get(f"/ky/{iid}")
    assert r.status_code == 200
    body = text_of(r.text)
    assert console.pack.obligations[ob].title in body and console.pack.units[unit].name in body
    weekday = ["Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"][due.weekday()]
    assert f"Hạn nộp {weekday}, {due:%d/%m/%Y}" in body
    assert "Chưa hoàn thành – quá hạn" in body and "Ghi nhận báo cáo đã nộp" in body and "Miễn nộp kỳ này" in body
    assert f'action="/ky/{iid}/ghi-nhan"' in r.text and 'enctype="multipart/form-data"' in r.text


def test_unknown_instance_is_a_vietnamese_404(console: Console) -> None:
    r = console.client("thu.ky").get("/ky/999999")
    assert r.status_code == 404 and "Không có kỳ báo cáo này" in text_of(r.text)
    r = console.client("thu.ky").form("/ky/999999/ghi-nhan", {"date": "01/12/2026"})
    assert r.status_code == 404


def test_page_needs_a_login(console: Console, pick: Pick) -> None:
    iid = pick()[0]
    r = console.client().get(f"/ky/{iid}")
    assert r.status_code == 303 and r.headers["location"].startswith("/dang-nhap")


# ─── recording ──────────────────────────────────────────────────────────────────────────────────
def test_recording_on_the_due_day_closes_it_on_time_with_the_author_in_the_audit(console: Console, pick: Pick) -> None:
    iid, ob, unit, period, due = pick()
    c = console.client("thu.ky")
    r = c.form(f"/ky/{iid}/ghi-nhan", {"date": f"{due:%d/%m/%Y}", "ref": "123/BC-STC", "note": "nhận qua e-mail"})
    assert r.status_code == 303 and r.headers["location"] == f"/ky/{iid}?ok=ghi-nhan"
    s = state(console, iid)
    assert s["closed"] and s["submitted_on"] == due and s["ref"] == "123/BC-STC"
    assert s["subs"] == [(due, "123/BC-STC", True, "web:thu.ky")]
    assert s["audit"][-1] == ("web:thu.ky", "submit")
    body = text_of(c.get(r.headers["location"]).text)
    assert "Đã ghi nhận báo cáo." in body and "Hoàn thành đúng hạn" in body and "Sửa ghi nhận" in body


def test_recording_after_the_due_day_is_late_and_iso_dates_are_accepted(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    c = console.client("thu.ky")
    r = c.form(f"/ky/{iid}/ghi-nhan", {"date": "2026-12-01"})
    assert r.status_code == 303
    assert state(console, iid)["submitted_on"] == date(2026, 12, 1)
    assert "Hoàn thành quá hạn" in text_of(c.get(f"/ky/{iid}").text)


def test_correcting_keeps_the_history(console: Console, pick: Pick) -> None:
    iid, ob, unit, period, due = pick()
    c = console.client("thu.ky")
    assert c.form(f"/ky/{iid}/ghi-nhan", {"date": "01/12/2026", "ref": "1/BC"}).status_code == 303
    page = c.get(f"/ky/{iid}").text
    assert 'value="01/12/2026"' in page and 'value="1/BC"' in page and "Lưu bản sửa" in page   # prefilled
    r = c.form(f"/ky/{iid}/ghi-nhan", {"date": f"{due:%d/%m/%Y}", "ref": "2/BC"})
    assert r.status_code == 303 and r.headers["location"] == f"/ky/{iid}?ok=sua"
    s = state(console, iid)
    assert s["subs"] == [(date(2026, 12, 1), "1/BC", False, "web:thu.ky"), (due, "2/BC", True, "web:thu.ky")]
    assert [a for a in s["audit"] if a[1] in ("submit", "correct")] == [("web:thu.ky", "submit"), ("web:thu.ky", "correct")]
    body = text_of(c.get(r.headers["location"]).text)
    assert "Đã sửa ghi nhận" in body and "Hoàn thành đúng hạn" in body
    assert "1/BC" in body and "Đã được sửa bằng lần ghi sau" in body and "2/BC" in body


@pytest.mark.parametrize("text, words", [
    ("31/02/2026", "không phải ngày hợp lệ"),
    ("hôm qua", "không phải ngày hợp lệ"),
    ("03/12/2026", "ở tương lai"),
    ("", "Cần nhập ngày nộp"),
    ("01/01/2020", "trước khi kỳ"),
])
def test_a_bad_date_is_shown_next_to_the_field_and_nothing_is_written(console: Console, pick: Pick, text: str,
                                                                       words: str) -> None:
    iid, *_ = pick()
    before = state(console, iid)
    r = console.client("thu.ky").form(f"/ky/{iid}/ghi-nhan", {"date": text, "ref": "9/BC", "note": "x"})
    assert r.status_code == 400
    assert 'id="e-date"' in r.text and words in text_of(r.text) and "Chưa có gì được ghi" in text_of(r.text)
    assert 'value="9/BC"' in r.text                    # what was typed is kept
    assert "Traceback" not in r.text and "--date" not in r.text
    assert state(console, iid) == before


def test_markup_in_a_note_is_escaped(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    c = console.client("thu.ky")
    assert c.form(f"/ky/{iid}/ghi-nhan", {"date": "01/12/2026", "note": "<script>alert(1)</script>"}).status_code == 303
    page = c.get(f"/ky/{iid}").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ─── files ──────────────────────────────────────────────────────────────────────────────────────
def test_a_png_named_pdf_is_refused_and_nothing_is_recorded(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    before, files_before = state(console, iid), upload_dir_files(console)
    r = console.client("thu.ky").form(f"/ky/{iid}/ghi-nhan", {"date": "01/12/2026", "ref": "5/BC"},
                                      files={"tep": ("bao-cao.pdf", PNG, "application/pdf")})
    assert r.status_code == 400
    assert 'id="e-file"' in r.text and "không phải PDF" in text_of(r.text)
    assert state(console, iid) == before and upload_dir_files(console) == files_before


def test_a_file_over_the_limit_is_refused_and_nothing_is_recorded(tmp_path) -> None:
    con = Console(tmp_path, env={"DONDOC_WEB_MAX_UPLOAD_MB": "1"})
    iid, *_ = Pick(con)()
    before = state(con, iid)
    big = PDF + b"0" * (1024 * 1024)
    r = con.client("thu.ky").form(f"/ky/{iid}/ghi-nhan", {"date": "01/12/2026"},
                                  files={"tep": ("lon.pdf", big, "application/pdf")})
    assert r.status_code == 400 and "quá lớn" in text_of(r.text) and 'id="e-file"' in r.text
    assert state(con, iid) == before and upload_dir_files(con) == set()


def test_a_pdf_is_stored_with_its_hash_and_downloadable_by_the_secretariat(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    c = console.client("thu.ky")
    name = "Báo cáo tháng 11; bản 'cuối'.pdf"
    r = c.form(f"/ky/{iid}/ghi-nhan", {"date": "01/12/2026", "ref": "7/BC"},
               files={"tep": (name, PDF, "application/octet-stream")})
    assert r.status_code == 303 and "tep=loi" not in r.headers["location"]
    s = state(console, iid)
    assert len(s["files"]) == 1
    filename, sha, sub_id, stored = s["files"][0]
    assert filename == name and sha == hashlib.sha256(PDF).hexdigest()
    assert sub_id == active_submission_id(console, iid)
    assert name not in stored and (console.settings.web.upload_dir / stored).read_bytes() == PDF
    assert ("web:thu.ky", "attach") in s["audit"]
    page = c.get(f"/ky/{iid}").text
    with open_session(console.settings) as ses:
        aid = ses.execute(sa.select(AttachmentRow.id).where(AttachmentRow.instance_id == iid)).scalar_one()
    assert f'href="/tep/{aid}"' in page and sha in page
    for user in ("thu.ky", "lanh.dao"):
        r = console.client(user).get(f"/tep/{aid}")
        assert r.status_code == 200 and r.content == PDF
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["x-content-type-options"] == "nosniff"
        cd = r.headers["content-disposition"]
        assert cd.startswith("attachment;") and f"filename*=UTF-8''{quote(name, safe='')}" in cd
        assert cd.count('"') == 2 and cd.count(";") == 2          # the ASCII fallback cannot break the header
    assert console.client().get(f"/tep/{aid}").status_code == 303       # no login: to the login page
    r = console.client("thu.ky").get("/tep/987654")
    assert r.status_code == 404 and "Không tìm thấy tệp" in text_of(r.text)


def test_a_correction_with_a_file_attaches_it_to_the_new_submission(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    c = console.client("thu.ky")
    assert c.form(f"/ky/{iid}/ghi-nhan", {"date": "30/11/2026"}).status_code == 303
    first = active_submission_id(console, iid)
    r = c.form(f"/ky/{iid}/ghi-nhan", {"date": "01/12/2026"}, files={"tep": ("ban-sua.pdf", PDF, "application/pdf")})
    assert r.status_code == 303 and r.headers["location"].endswith("ok=sua")
    (_, _, sub_id, _), = state(console, iid)["files"]
    assert sub_id == active_submission_id(console, iid) != first


# ─── waivers ────────────────────────────────────────────────────────────────────────────────────
def test_a_waiver_needs_a_reason_and_can_be_revoked(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    c = console.client("thu.ky")
    before = state(console, iid)
    r = c.form(f"/ky/{iid}/mien", {"reason": "   "})
    assert r.status_code == 400 and 'id="e-reason"' in r.text and "Cần ghi lý do miễn nộp" in text_of(r.text)
    assert state(console, iid) == before
    r = c.form(f"/ky/{iid}/mien", {"reason": "Đơn vị đã sáp nhập, có văn bản 12/VP"})
    assert r.status_code == 303 and r.headers["location"] == f"/ky/{iid}?ok=mien"
    s = state(console, iid)
    assert s["waived"] and s["closed"] and s["waivers"] == [("Đơn vị đã sáp nhập, có văn bản 12/VP", True, "web:thu.ky")]
    assert s["audit"][-1] == ("web:thu.ky", "waive")
    body = text_of(c.get(r.headers["location"]).text)
    assert "Miễn" in body and "Đơn vị đã sáp nhập" in body and "Hủy miễn nộp" in body
    assert f'action="/ky/{iid}/ghi-nhan"' not in c.get(f"/ky/{iid}").text     # waived: no record form
    assert c.form(f"/ky/{iid}/mien", {"reason": "lần nữa"}).status_code == 400      # already waived
    r = c.form(f"/ky/{iid}/huy-mien", {"reason": ""})
    assert r.status_code == 303 and r.headers["location"] == f"/ky/{iid}?ok=huy-mien"
    s = state(console, iid)
    assert not s["waived"] and not s["closed"] and s["waivers"][0][1] is False
    assert s["audit"][-1] == ("web:thu.ky", "unwaive")
    assert "Chưa hoàn thành – quá hạn" in text_of(c.get(f"/ky/{iid}").text)
    assert c.form(f"/ky/{iid}/huy-mien").status_code == 400                  # nothing left to revoke


# ─── who may change what ────────────────────────────────────────────────────────────────────────
def test_a_leader_sees_no_forms_and_cannot_post(console: Console, pick: Pick) -> None:
    iid, *_ = pick()
    c = console.client("lanh.dao")
    page = c.get(f"/ky/{iid}")
    assert page.status_code == 200 and "<form" in page.text                    # the logout form only
    assert f"/ky/{iid}/ghi-nhan" not in page.text and f"/ky/{iid}/mien" not in page.text
    before, files_before = state(console, iid), upload_dir_files(console)
    for path, data in (("ghi-nhan", {"date": "01/12/2026"}), ("mien", {"reason": "thử"}), ("huy-mien", {})):
        r = c.form(f"/ky/{iid}/{path}", data, files={"tep": ("a.pdf", PDF, "application/pdf")} if path == "ghi-nhan" else None)
        assert r.status_code == 403 and "Không được phép" in text_of(r.text)
    assert state(console, iid) == before and upload_dir_files(console) == files_before


@pytest.mark.parametrize("path, data", [("ghi-nhan", {"date": "01/12/2026"}), ("mien", {"reason": "lý do"}),
                                        ("huy-mien", {})])
@pytest.mark.parametrize("token", ["", "gia-mao"])
def test_every_form_without_the_csrf_token_is_refused(console: Console, pick: Pick, path: str, data: dict,
                                                      token: str) -> None:
    iid, *_ = pick()
    c = console.client("thu.ky")
    if path == "huy-mien":
        assert c.form(f"/ky/{iid}/mien", {"reason": "để thử hủy"}).status_code == 303
    before = state(console, iid)
    r = c.form(f"/ky/{iid}/{path}", data, csrf=token)
    assert r.status_code == 403 and "Biểu mẫu không hợp lệ" in text_of(r.text)
    assert state(console, iid) == before
