"""The console's "Thư đến" page (/hop-thu-den, issue 14): the mails the reader could not place are
listed with names (never ids), a secretary records one as a report in one step (a candidate, or any
unit/report/period) or says it is not a report; a bad period writes nothing; lanh-dao only reads;
the original message is only ever a download, for logged-in people.

The mails are recorded as the reader would record them, without IMAP: parse, match against what
the database holds, ``store.record``, commit (the same path as tests/test_inbox_store.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
import sqlalchemy as sa
from sqlmodel import select

from engine.app.inbox import store
from engine.app.inbox.match import match
from engine.app.inbox.parse import parse
from engine.app.services import open_session
from engine.clock import TZ
from engine.vi import fmt_num
from engine.state import AttachmentRow, AuditRow, InboundMailRow, InstanceRow, SubmissionRow
from tests.test_web_csrf import diff_of, state_of
from tests.browser import PHONE, Tab, browser, serve, tab_on  # noqa: F401  (browser: a fixture)
from tests.web_support import Client, Console, text_of

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n" + b"x" * 3500
EVIL_NAME = "<img src=x onerror=alert(1)>"
EVIL_SUBJECT = '<script>alert("x")</script> Báo cáo'


def raw_mail(sender: str, subject: str, msgid: str, body: str = "Kính gửi Văn phòng.",
             files: tuple[tuple[str, bytes, str], ...] = ()) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "baocao@vptu.example.org"
    m["Subject"] = subject
    m["Message-ID"] = msgid
    m["Date"] = format_datetime(datetime(2026, 12, 1, 16, 0, tzinfo=TZ))
    m.set_content(body)
    for name, data, ctype in files:
        main, sub = ctype.split("/")
        m.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return m.as_bytes()


def take(con: Console, raw: bytes, received: datetime) -> int:
    """What the reader does with one message, minus IMAP."""
    mail = parse(raw, store.limits(con.settings))
    with open_session(con.settings) as ses:
        m = match(mail, con.pack, store.context_for(ses, con.pack, mail))
        row = store.record(ses, con.settings, con.pack, mail, m, raw, received_at=received, now=con.now)
        ses.commit()
        return row.id or 0


@dataclass
class Box:
    con: Console
    sec: Client
    boss: Client
    by_unit: int          # from Sở GD&ĐT's address, "Báo cáo": several candidates, số ký hiệu, a PDF
    unknown: int          # from an unknown sender: no candidate
    unknown_bad: int      # another, for the bad period
    to_dismiss: int
    markup: int           # markup in the sender's name and the subject
    kept: int             # never changed by any test (role and CSRF refusals)
    raw_by_unit: bytes


def mail_state(con: Console, mail_id: int) -> str:
    with open_session(con.settings) as ses:
        return ses.get(InboundMailRow, mail_id).state


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Box:
    con = Console(tmp_path_factory.mktemp("web-inbox"))
    arrived = datetime(2026, 12, 1, 16, 0, tzinfo=TZ)
    gd = con.pack.units["so-gddt"].contacts[0]
    raw1 = raw_mail(f"Văn thư Sở GD <{gd}>", "Báo cáo", "<web-1@donvi.example.vn>",
                    body="Gửi kèm báo cáo số 45/BC-SGDDT.", files=(("bao-cao.pdf", PDF, "application/pdf"),))
    ids = [take(con, raw1, arrived),
           take(con, raw_mail("Người lạ <nguoi-la@gmail.com>", "Gửi báo cáo", "<web-2@gmail.com>"), arrived),
           take(con, raw_mail("nguoi-la-2@gmail.com", "Gửi báo cáo", "<web-3@gmail.com>"), arrived),
           take(con, raw_mail("hoi@gmail.com", "Hỏi về mẫu báo cáo", "<web-4@gmail.com>"), arrived),
           take(con, raw_mail(f'"{EVIL_NAME}" <{con.pack.units["so-y-te"].contacts[0]}>', EVIL_SUBJECT,
                              "<web-5@donvi.example.vn>"), arrived),
           take(con, raw_mail(con.pack.units["so-noi-vu"].contacts[0], "Báo cáo", "<web-6@donvi.example.vn>"), arrived)]
    with open_session(con.settings) as ses:
        rows = [ses.get(InboundMailRow, i) for i in ids]
        assert [r.state for r in rows] == ["queued"] * 6, [(r.state, r.reason) for r in rows]
        assert rows[0].ref == "45/BC-SGDDT" and rows[0].via == "sender"
    return Box(con, con.client("thu.ky"), con.client("lanh.dao"), *ids, raw_by_unit=raw1)


# ─── reading ─────────────────────────────────────────────────────────────────────────────────────
def test_a_logged_out_visitor_is_sent_to_log_in(box: Box) -> None:
    anon = Client(box.con.app)
    r = anon.get("/hop-thu-den")
    assert r.status_code == 303 and r.headers["location"].startswith("/dang-nhap?next=")
    r = anon.get(f"/hop-thu-den/{box.kept}/thu-goc")
    assert r.status_code == 303 and r.headers["location"].startswith("/dang-nhap")
    assert b"Message-ID" not in r.content


def test_the_queue_lists_the_mails_with_names_not_ids(box: Box) -> None:
    r = box.sec.get("/hop-thu-den")
    assert r.status_code == 200
    words = text_of(r.text)
    assert "Thư đến" in words and "Cần phân loại" in words
    article = _article(r.text, box.kept)
    assert article, "the mail is in the queue"
    seen = text_of(article)
    noi_vu = box.con.pack.units["so-noi-vu"].name
    assert "01/12/2026 16:00" in seen and box.con.pack.units["so-noi-vu"].contacts[0] in seen
    assert noi_vu in seen and "Ghi nhận đã nộp" in seen and "Không phải báo cáo" in seen
    assert "Tải thư gốc (.eml)" in seen
    # the candidates are named by unit, report title and period
    view = store.one(box.con.settings, box.con.pack, box.kept)
    assert len(view.candidates) >= 2
    for c in view.candidates:
        assert c.text in seen
    # the unit's facts: its số ký hiệu and file (size in KB, Vietnamese decimal comma)
    first = text_of(_article(r.text, box.by_unit))
    assert "45/BC-SGDDT" in first and "bao-cao.pdf" in first and f"({fmt_num(len(PDF) / 1024, 1)} KB)" in first and "," in fmt_num(len(PDF) / 1024, 1)
    # an unknown sender's mail is there too, with the "other report" choice only
    assert "nguoi-la@gmail.com" in text_of(_article(r.text, box.unknown))
    # no internal id as text: no report id, no unit id (outside the e-mail addresses)
    no_mail = re.sub(r"\S+@\S+", " ", words)
    leaked = [oid for oid in box.con.pack.obligations if oid in no_mail]
    leaked += [uid for uid in box.con.pack.units if re.search(rf"(?<![\w-]){re.escape(uid)}(?![\w-])", no_mail)]
    assert leaked == []
    # the tabs with their counts; the nav link
    assert re.search(r"Cần phân loại\s*\d+", words)
    assert 'href="/hop-thu-den" aria-current="page"' in r.text


def test_markup_in_the_sender_and_subject_is_shown_as_text(box: Box) -> None:
    html = box.sec.get("/hop-thu-den").text
    article = _article(html, box.markup)
    assert "&lt;img src=x onerror=alert(1)&gt;" in article and "&lt;script&gt;alert(" in article
    assert "<img src=x" not in html and '<script>alert("x")' not in html


def test_the_other_tabs(box: Box) -> None:
    for key in ("da-ghi-nhan", "bo-qua", "da-phan-loai", "khong-phai-bao-cao", "tat-ca", "khong-co-muc-nay"):
        r = box.sec.get(f"/hop-thu-den?xem={key}")
        assert r.status_code == 200, key
    everything = box.sec.get("/hop-thu-den?xem=tat-ca").text
    assert _article(everything, box.kept)
    assert "Không có thư nào trong mục “Bỏ qua”" in text_of(box.sec.get("/hop-thu-den?xem=bo-qua").text)


# ─── the original message ────────────────────────────────────────────────────────────────────────
def test_the_original_is_a_download_for_anyone_logged_in(box: Box) -> None:
    for client in (box.sec, box.boss):
        r = client.get(f"/hop-thu-den/{box.by_unit}/thu-goc")
        assert r.status_code == 200
        assert r.headers["content-disposition"].startswith("attachment;")
        assert f'filename="thu-{box.by_unit}.eml"' in r.headers["content-disposition"]
        assert r.headers["content-type"].startswith("message/rfc822")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.content == box.raw_by_unit
    r = box.sec.get("/hop-thu-den/999999/thu-goc")
    assert r.status_code == 404 and "không có thư số 999999" in text_of(r.text).lower()


# ─── who may change what ─────────────────────────────────────────────────────────────────────────
def test_lanh_dao_reads_but_cannot_post(box: Box) -> None:
    r = box.boss.get("/hop-thu-den")
    assert r.status_code == 200
    article = _article(r.text, box.kept)
    assert article and "/phan-loai" not in r.text and "/bo-qua" not in r.text
    assert "Chỉ thư ký phân loại thư" in text_of(article)
    cand = store.one(box.con.settings, box.con.pack, box.kept).candidates[0].instance_id
    for url, data in ((f"/hop-thu-den/{box.kept}/phan-loai", {"chon": str(cand)}),
                      (f"/hop-thu-den/{box.kept}/bo-qua", {"ly_do": "thử"})):
        before = state_of(box.con)
        r = box.boss.form(url, data)
        assert r.status_code == 403 and "Không được phép" in text_of(r.text)
        assert state_of(box.con) == before
    assert mail_state(box.con, box.kept) == "queued"


def test_a_form_without_its_csrf_token_is_refused(box: Box) -> None:
    cand = store.one(box.con.settings, box.con.pack, box.kept).candidates[0].instance_id
    for url, data in ((f"/hop-thu-den/{box.kept}/phan-loai", {"chon": str(cand)}),
                      (f"/hop-thu-den/{box.kept}/bo-qua", {"ly_do": "thử"})):
        before = state_of(box.con)
        r = box.sec.post(url, data=data)                                     # no csrf field
        assert r.status_code == 403 and "Biểu mẫu không hợp lệ" in text_of(r.text)
        r = box.sec.form(url, data, csrf="gia-mao-" + "x" * 30)
        assert r.status_code == 403
        after = state_of(box.con)
        assert after == before, diff_of(before, after)
    assert mail_state(box.con, box.kept) == "queued"


# ─── the secretary's steps ───────────────────────────────────────────────────────────────────────
def test_assigning_a_candidate_records_the_report_on_the_day_the_mail_arrived(box: Box) -> None:
    con = box.con
    view = store.one(con.settings, con.pack, box.by_unit)
    pick = next(c for c in view.candidates if c.open)
    r = box.sec.form(f"/hop-thu-den/{box.by_unit}/phan-loai", {"chon": str(pick.instance_id)})
    assert r.status_code == 303, text_of(r.text)[:300]
    assert r.headers["location"] == f"/hop-thu-den?ok=phan-loai&thu={box.by_unit}"
    page = box.sec.get(r.headers["location"])
    flash = text_of(re.search(r'<p class="flash".*?</p>', page.text, re.S).group(0))
    assert f"{pick.unit_name} – {pick.title} – {pick.period_label}" in flash and "01/12/2026" in flash
    assert not _article(page.text, box.by_unit)                              # left the queue
    assert _article(box.sec.get("/hop-thu-den?xem=da-phan-loai").text, box.by_unit)
    with open_session(con.settings) as ses:
        inst = ses.get(InstanceRow, pick.instance_id)
        assert inst.closed and inst.submitted_on.isoformat() == "2026-12-01" and inst.submission_ref == "45/BC-SGDDT"
        subs = ses.exec(select(SubmissionRow).where(SubmissionRow.instance_id == inst.id)).all()
        assert [(s.submitted_on.isoformat(), s.ref, s.recorded_by) for s in subs] == [
            ("2026-12-01", "45/BC-SGDDT", "web:thu.ky")]
        files = ses.exec(select(AttachmentRow).where(AttachmentRow.instance_id == inst.id)).all()
        assert [f.filename for f in files] == ["bao-cao.pdf"]
        row = ses.get(InboundMailRow, box.by_unit)
        assert (row.state, row.decided_by) == ("assigned", "web:thu.ky")
        acts = ses.execute(sa.select(AuditRow.actor).where(AuditRow.action == "assign_mail",
                                                           AuditRow.entity_id.contains(inst.unit))).all()
        assert [a for (a,) in acts] == ["web:thu.ky"]
    # a second post (a double click) says it was already done and writes nothing
    before = state_of(con)
    r = box.sec.form(f"/hop-thu-den/{box.by_unit}/phan-loai", {"chon": str(pick.instance_id)})
    assert r.status_code == 400 and "đã được xử lý" in text_of(r.text) and "Traceback" not in r.text
    assert state_of(con) == before


def test_a_bad_period_is_explained_and_writes_nothing_then_unit_report_period_works(box: Box) -> None:
    con = box.con
    ob, unit = "khhd57-skhcn-nam", "so-xay-dung"
    title, name = con.pack.obligations[ob].title, con.pack.units[unit].name
    url = f"/hop-thu-den/{box.unknown_bad}/phan-loai"
    for data, expected in (({"chon": "khac", "don_vi": unit, "bao_cao": ob, "ky": "tháng 13/2026"}, None),
                           ({"chon": "khac", "don_vi": "", "bao_cao": ob, "ky": "năm 2026"}, "Chọn đơn vị"),
                           ({"chon": "khac", "don_vi": unit, "bao_cao": ob, "ky": ""}, "Nhập kỳ báo cáo"),
                           ({}, "Cần chọn một báo cáo")):
        before = state_of(con)
        r = box.sec.form(url, data)
        assert r.status_code == 400, data
        article = _article(r.text, box.unknown_bad)
        err = re.search(r'<p class="field-error" role="alert">(.*?)</p>', article, re.S)
        assert err, data
        message = text_of(err.group(1))
        assert "Chưa có gì được ghi" in message and "Traceback" not in r.text
        if expected:
            assert message.startswith(expected), message
        else:
            assert "13" in message and ob not in message
        assert f'value="{unit}" selected' in article if data.get("don_vi") else True     # what was entered is kept
        after = state_of(con)
        assert after == before, diff_of(before, after)
    assert mail_state(con, box.unknown_bad) == "queued"
    # the same mail, named right: recorded for that unit, report and period
    r = box.sec.form(url, {"chon": "khac", "don_vi": unit, "bao_cao": ob, "ky": "năm 2026"})
    assert r.status_code == 303, text_of(r.text)[:300]
    flash = text_of(box.sec.get(r.headers["location"]).text)
    assert f"{name} – {title} – " in flash
    with open_session(con.settings) as ses:
        inst = ses.exec(select(InstanceRow).where(InstanceRow.obligation == ob, InstanceRow.unit == unit,
                                                  InstanceRow.period == "2026")).one()
        assert inst.closed and inst.submitted_on.isoformat() == "2026-12-01"
    assert mail_state(con, box.unknown_bad) == "assigned"


def test_a_candidate_not_offered_for_this_mail_is_refused(box: Box) -> None:
    """A forged or stale radio value (another mail's report) records nothing."""
    other = store.one(box.con.settings, box.con.pack, box.kept).candidates[0].instance_id
    before = state_of(box.con)
    r = box.sec.form(f"/hop-thu-den/{box.unknown}/phan-loai", {"chon": str(other)})
    assert r.status_code == 400 and "không còn nằm trong các gợi ý" in text_of(r.text)
    assert state_of(box.con) == before


def test_not_a_report_is_kept_and_marked(box: Box) -> None:
    r = box.sec.form(f"/hop-thu-den/{box.to_dismiss}/bo-qua", {"ly_do": "Thư hỏi về mẫu"})
    assert r.status_code == 303
    page = box.sec.get(r.headers["location"])
    assert "Đã đánh dấu thư số" in text_of(page.text) and not _article(page.text, box.to_dismiss)
    done = _article(box.sec.get("/hop-thu-den?xem=khong-phai-bao-cao").text, box.to_dismiss)
    assert "Thư hỏi về mẫu" in text_of(done) and "Thu Ky" in text_of(done)     # who, by name
    with open_session(box.con.settings) as ses:
        row = ses.get(InboundMailRow, box.to_dismiss)
        assert (row.state, row.decided_by) == ("dismissed", "web:thu.ky")
        assert ses.execute(sa.select(AuditRow.actor).where(AuditRow.action == "dismiss_mail",
                                                           AuditRow.entity_id == str(row.id))).scalar_one() == "web:thu.ky"


def test_a_forged_flash_shows_nothing(box: Box) -> None:
    """The flash is read back from the database: an address cannot make the page say something."""
    page = box.sec.get(f"/hop-thu-den?ok=phan-loai&thu={box.kept}")          # not assigned
    assert 'class="flash"' not in page.text
    assert box.sec.get("/hop-thu-den?ok=phan-loai&thu=abc").status_code == 400


def test_on_a_phone_the_queue_fits_and_a_mail_is_recorded(box: Box, browser) -> None:  # noqa: F811
    """At 375 px: no sideways scrolling, no CSP violation; the "other report" choice works by hand."""
    con = box.con
    with open_session(con.settings) as ses:
        inst = ses.exec(select(InstanceRow).where(InstanceRow.period == "2026", InstanceRow.closed == False,  # noqa: E712
                                                  InstanceRow.active == True).order_by(InstanceRow.id)).first()  # noqa: E712
    with serve(con) as served, tab_on(browser, served, PHONE) as phone:
        phone.login("thu.ky", start="/hop-thu-den")
        assert phone.path() == "/hop-thu-den"
        assert phone.horizontal_overflow() <= 1, "the inbox scrolls sideways at 375 px"
        form = f'form[action="/hop-thu-den/{box.unknown}/phan-loai"]'
        phone.fill(form, {"chon": "khac", "don_vi": inst.unit, "bao_cao": inst.obligation, "ky": inst.period_label})
        phone.submit(form)
        assert phone.path() == f"/hop-thu-den?ok=phan-loai&thu={box.unknown}", phone.text("main")[:300]
        assert con.pack.units[inst.unit].name in phone.text("p.flash")
        assert phone.horizontal_overflow() <= 1
        assert phone.csp_violations() == [] and phone.errors == [], (phone.messages, phone.errors)
    assert mail_state(con, box.unknown) == "assigned"


def test_pages_of_the_queue() -> None:
    """25 mails a page (each queued mail carries its own form), no further than the newest 200."""
    from engine.app.web.routes.inbox import LIMIT, PAGE, _pages

    assert _pages("can-phan-loai", PAGE) == []
    assert _pages("can-phan-loai", PAGE + 1) == [(1, "/hop-thu-den"), (2, "/hop-thu-den?trang=2")]
    assert _pages("tat-ca", 10 * LIMIT)[-1] == (LIMIT // PAGE, f"/hop-thu-den?xem=tat-ca&trang={LIMIT // PAGE}")


def _article(html: str, mail_id: int) -> str:
    m = re.search(rf'<article class="card mail" id="thu-{mail_id}">.*?</article>', html, re.S)
    return m.group(0) if m else ""
