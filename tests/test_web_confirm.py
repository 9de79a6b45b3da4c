"""Units confirm from their reminder (issue 12 items 4 and 5): the signed link in a real digest
received by aiosmtpd, the unit's page, its reminders stopping (or not, by configuration), the
secretariat accepting or returning, and a link that never reaches another unit's report.

Time is an input: the later passes are simply run with a later ``now``."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from html import escape

import pytest
from sqlmodel import select

from engine.app import confirmations, services
from engine.app.config import Settings
from engine.clock import TZ
from engine.db import session
from engine.state import (AttachmentRow, AuditRow, ConfirmationRow, InstanceRow, NoticeRow, SubmissionRow,
                          UnitLinkRow)
from notifications.config import SmtpConfig
from notifications.models import DeliveryItemRow, DeliveryRow
from tests.web_support import Client, Console, csrf_of, text_of

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
YEARLY = ("khhd57-skhcn-nam", "2026")          # due Mon 30/11/2026; overdue-repeat-1 on Tue 08/12/2026
X, Y, Z = "so-tai-chinh", "so-cong-thuong", "so-gddt"
LINK = re.compile(r"Báo đã gửi: http://testserver(/xn/[A-Za-z0-9._-]+)")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def with_smtp(settings: Settings, port: int) -> Settings:
    smtp = SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=2, timeout=5,
                      from_addr="dondoc@vptu.example.org", helo="test.local")
    return settings.model_copy(update={"smtp": smtp})


def with_stop(settings: Settings, stop: str) -> Settings:
    return settings.model_copy(update={"web": settings.web.model_copy(update={"stop_reminders_at": stop})})


def a_pass(con: Console, settings: Settings, when: datetime, evaluate: bool = True):
    """One evaluation (optional) and one delivery pass, through the application layer's wiring."""
    url = settings.database.url
    if evaluate:
        services.evaluate(url, con.pack, when, settings)
    return services.deliver(url, con.pack, when, settings, links=confirmations.link_maker(settings))


def mails_to(handler, con: Console, unit: str, since: int = 0) -> list[EmailMessage]:
    addrs = set(con.pack.units[unit].contacts)
    return [m.message for m in handler.messages[since:] if addrs & set(m.rcpt_tos)]


def plain(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def html(msg: EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def link_of(msg: EmailMessage) -> str:
    found = LINK.findall(plain(msg))
    assert len(found) == 1, plain(msg)             # once per digest
    return found[0]


def inst(con: Console, obligation: str, unit: str, period: str) -> InstanceRow:
    with session(con.settings.database.url) as s:
        return s.exec(select(InstanceRow).where(InstanceRow.obligation == obligation, InstanceRow.unit == unit,
                                                InstanceRow.period == period)).one()


def ids_on(page_html: str) -> set[int]:
    return {int(i) for i in re.findall(r'name="instance" value="(\d+)"', page_html)}


def counts(con: Console) -> tuple[int, int, int, int]:
    """Rows a refused request must not write: confirmations, attachments, audit, submissions."""
    with session(con.settings.database.url) as s:
        return (len(s.exec(select(ConfirmationRow)).all()), len(s.exec(select(AttachmentRow)).all()),
                len(s.exec(select(AuditRow)).all()), len(s.exec(select(SubmissionRow)).all()))


def confirm_via(client: Client, path: str, instance_id: int, day: str, ref: str = "45/BC-STC", note: str = "",
                file: tuple[str, bytes, str] | None = ("bao-cao.pdf", PDF, "application/pdf"), csrf: str | None = None):
    page = client.get(path)
    token = csrf_of(page.text) if csrf is None else csrf
    data = {"csrf": token, "instance": str(instance_id), "ngay_gui": day, "so_ky_hieu": ref, "ghi_chu": note}
    return client.post(path, data=data, files={"tep": file} if file else None)


@pytest.fixture
def installed(tmp_path, smtp):
    """A seeded installation on 02/12/2026 09:00 whose first reminders went out over real SMTP."""
    handler, port = smtp
    con = Console(tmp_path)
    con.settings = with_smtp(con.settings, port)
    con.ctx.settings = con.settings
    rep = a_pass(con, con.settings, con.now)
    assert rep.sent > 10 and rep.failed == 0
    return con, handler


# ─── the link in the mail, the unit's page ──────────────────────────────────────────────────────
def test_a_real_digest_carries_one_link_to_exactly_its_units_own_reports(installed) -> None:
    con, handler = installed
    [mail] = mails_to(handler, con, X)
    path = link_of(mail)
    assert f"http://testserver{path}" in html(mail)                  # the HTML part carries the same link
    assert "Báo đã gửi:" in plain(mail) and "bỏ qua thư này" not in plain(mail)
    with session(con.settings.database.url) as s:
        [d] = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == X)).all()
        [row] = s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).all()
        own = {n.instance_id for _, n in s.exec(select(DeliveryItemRow, NoticeRow)
                                                .join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                                                .where(DeliveryItemRow.delivery_id == d.id)).all()
               if n.kind != "escalation"}
        units_of = {i.id: i.unit for i in s.exec(select(InstanceRow)).all()}
    assert row.unit == X and set(json.loads(row.instance_ids)) == own and len(own) >= 5
    assert row.expires_at > con.now + timedelta(days=59)
    page = con.client().get(path)                                     # no account needed
    assert page.status_code == 200
    assert ids_on(page.text) == own and {units_of[i] for i in ids_on(page.text)} == {X}
    words = text_of(page.text)
    assert "Sở Tài chính" in words and "Sở Công Thương" not in words and "Chưa hoàn thành – quá hạn" in words
    # A supervisor's digest (escalations about other units) carries no link: nothing of its own to confirm
    with session(con.settings.database.url) as s:
        d = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == "vp-tinh-uy")).first()
        own_items = [n for _, n in s.exec(select(DeliveryItemRow, NoticeRow)
                                          .join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                                          .where(DeliveryItemRow.delivery_id == d.id)).all()
                     if n.unit == "vp-tinh-uy" and n.kind != "escalation" and n.instance_id]
        has_link = s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).first() is not None
    assert has_link == bool(own_items)


def test_a_retried_digest_carries_the_same_link(installed) -> None:
    con, _ = installed
    with session(con.settings.database.url) as s:
        d = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == X)).one()
        row = s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).one()
        ids = json.loads(row.instance_ids)
        first = confirmations.url_for(con.settings, row.id, row.nonce)
        again = confirmations.link_for_digest(s, con.settings, d.id, X, ids[:2], con.now + timedelta(hours=3))
        s.commit()
        assert again == first
        assert len(s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).all()) == 1


def test_confirming_makes_it_awaiting_and_stops_its_reminders_only_when_configured(installed) -> None:
    """X confirms with stop_reminders_at=confirmation, Y (same report, same due day) with
    acceptance: the next evaluation + delivery (08/12, overdue-repeat-1) reminds Y, not X."""
    con, handler = installed
    x, y = inst(con, *YEARLY[:1], X, YEARLY[1]), inst(con, YEARLY[0], Y, YEARLY[1])
    client = con.client()
    path_x = link_of(mails_to(handler, con, X)[0])
    r = confirm_via(client, path_x, x.id, "30/11/2026", note="Gửi qua hệ thống văn bản")
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    section = re.search(rf'id="m-{x.id}".*?</section>', page.text, re.S).group(0)
    assert "Đã gửi – chờ xác nhận" in text_of(section) and "đã gửi ngày 30/11/2026" in text_of(section)
    assert "Đã ghi nhận đơn vị báo đã gửi" in text_of(page.text)
    # Y's unit answers through a console whose setting is "acceptance"
    from engine.app.rulesholder import RulesHolder
    from engine.app.web.app import create_app
    from engine.app.web.context import WebContext
    from engine.simclock import Clock

    acc = with_stop(con.settings, "acceptance")
    app_acc = create_app(WebContext(acc, RulesHolder.following(acc, lambda: con.pack), Clock(con.now)))
    assert confirm_via(Client(app_acc), link_of(mails_to(handler, con, Y)[0]), y.id, "30/11/2026").status_code == 303
    x, y = inst(con, YEARLY[0], X, YEARLY[1]), inst(con, YEARLY[0], Y, YEARLY[1])
    assert (x.awaiting_since, x.chase_paused) == (date(2026, 11, 30), True)
    assert (y.awaiting_since, y.chase_paused) == (date(2026, 11, 30), False)
    before = len(handler.messages)
    rep = a_pass(con, con.settings, at("2026-12-08T09:00"))
    assert rep.sent > 0
    with session(con.settings.database.url) as s:
        later = s.exec(select(NoticeRow).where(NoticeRow.created_at > con.now)).all()
    assert any(n.instance_id == y.id and n.stage == "overdue-repeat-1" for n in later)
    assert not any(n.instance_id == x.id for n in later)               # no reminder, no escalation
    title = con.pack.obligations[YEARLY[0]].title
    assert any(f"{title} – Năm 2026" in plain(m) for m in mails_to(handler, con, Y, before))
    assert not any(f"{title} – Năm 2026" in plain(m) for m in mails_to(handler, con, X, before))


def test_accept_records_the_date_the_unit_gave_on_time_or_late(installed) -> None:
    con, handler = installed
    client, sec = con.client(), con.client("thu.ky")
    x = inst(con, YEARLY[0], X, YEARLY[1])
    late = inst(con, "khhd57-thang", X, "2026-10")               # due 19/10/2026
    path = link_of(mails_to(handler, con, X)[0])
    assert confirm_via(client, path, x.id, "27/11/2026", ref="12/BC-STC").status_code == 303
    assert confirm_via(client, path, late.id, "21/10/2026", ref="9/BC-STC", file=None).status_code == 303
    queue = sec.get("/xac-nhan")
    words = text_of(queue.text)
    assert queue.status_code == 200 and "Sở Tài chính" in words and "12/BC-STC" in words and "bao-cao.pdf" in words
    with session(con.settings.database.url) as s:
        by_inst = {c.instance_id: c for c in s.exec(select(ConfirmationRow)).all()}
        [att] = s.exec(select(AttachmentRow)).all()
    assert f'href="/tep/{att.id}"' in queue.text
    assert sec.get(f"/tep/{att.id}").content == PDF
    for iid in (x.id, late.id):
        assert sec.form(f"/xac-nhan/{by_inst[iid].id}/chap-nhan").status_code == 303
    lines = {(l.obligation, l.period): l for l in services.status(con.settings, con.pack, con.now, unit=X).lines}
    assert lines[YEARLY].status_vi == "Hoàn thành đúng hạn" and lines[YEARLY].submitted_on == date(2026, 11, 27)
    assert lines[("khhd57-thang", "2026-10")].status_vi == "Hoàn thành quá hạn"
    with session(con.settings.database.url) as s:
        sub = s.exec(select(SubmissionRow).where(SubmissionRow.instance_id == x.id)).one()
        conf = s.get(ConfirmationRow, by_inst[x.id].id)
        row = s.get(InstanceRow, x.id)
        att = s.get(AttachmentRow, att.id)
    assert (sub.ref, sub.recorded_by) == ("12/BC-STC", "web:thu.ky")
    assert (conf.state, conf.submission_id, att.submission_id) == ("accepted", sub.id, sub.id)
    assert row.closed and row.awaiting_since is None and not row.chase_paused
    page = client.get(path)
    assert "Hoàn thành đúng hạn" in text_of(page.text) and x.id not in ids_on(page.text)   # no form any more
    assert "Không có báo cáo nào đang chờ xác nhận" in text_of(sec.get("/xac-nhan").text)


def test_return_mails_the_reason_with_a_fresh_working_link(installed) -> None:
    con, handler = installed
    client, sec = con.client(), con.client("thu.ky")
    x = inst(con, YEARLY[0], X, YEARLY[1])
    first = link_of(mails_to(handler, con, X)[0])
    assert confirm_via(client, first, x.id, "30/11/2026").status_code == 303
    with session(con.settings.database.url) as s:
        cid = s.exec(select(ConfirmationRow)).one().id
    assert sec.form(f"/xac-nhan/{cid}/tra-lai", {"ly_do": "  "}).status_code == 400        # a reason is required
    assert inst(con, YEARLY[0], X, YEARLY[1]).awaiting_since == date(2026, 11, 30)
    reason = "Thiếu phụ lục số liệu <bảng 2>; đề nghị gửi bản có chữ ký"
    assert sec.form(f"/xac-nhan/{cid}/tra-lai", {"ly_do": reason}).status_code == 303
    row = inst(con, YEARLY[0], X, YEARLY[1])
    assert row.awaiting_since is None and not row.chase_paused and not row.closed
    before = len(handler.messages)
    rep = a_pass(con, con.settings, at("2026-12-02T10:00"), evaluate=False)    # the normal delivery pass
    assert rep.sent == 1
    [mail] = mails_to(handler, con, X, before)
    assert mail["Subject"] == "[Đôn đốc báo cáo] Sở Tài chính: 1 báo cáo bị trả lại"
    body = plain(mail)
    assert "BÁO CÁO BỊ TRẢ LẠI (1)" in body and reason in body and "30/11/2026" in body
    assert "&lt;bảng 2&gt;" in html(mail)                                  # escaped in HTML
    fresh = link_of(mail)
    assert fresh != first
    page = client.get(fresh)
    assert page.status_code == 200 and ids_on(page.text) == {x.id}
    assert "Văn phòng đã trả lại lần báo trước. Lý do: " + escape(reason, quote=False) in text_of(page.text)
    assert confirm_via(client, fresh, x.id, "01/12/2026", ref="13/BC-STC").status_code == 303
    assert inst(con, YEARLY[0], X, YEARLY[1]).awaiting_since == date(2026, 12, 1)
    # told once: a later pass sends no second "returned" mail
    before = len(handler.messages)
    a_pass(con, con.settings, at("2026-12-02T11:00"), evaluate=False)
    assert mails_to(handler, con, X, before) == []


# ─── links that must not work ───────────────────────────────────────────────────────────────────
def _expired_and_revoked(con: Console, ids: list[int]) -> tuple[str, str]:
    with session(con.settings.database.url) as s:
        old = confirmations.link_for_digest(s, con.settings, _some_delivery(s), X, ids, con.now - timedelta(days=61))
        s.commit()
        fresh = confirmations.link_for_digest(s, con.settings, _some_delivery(s, skip=1), X, ids, con.now)
        s.commit()
        link_id = s.exec(select(UnitLinkRow).order_by(UnitLinkRow.id.desc())).first().id
    confirmations.revoke(con.settings, link_id, con.now, "web:thu.ky")
    return old.removeprefix("http://testserver"), fresh.removeprefix("http://testserver")


def _some_delivery(s, skip: int = 0) -> int:
    return [d.id for d in s.exec(select(DeliveryRow).where(DeliveryRow.recipient != X).order_by(DeliveryRow.id))][skip]


def test_tampered_expired_revoked_and_unknown_links_change_nothing(installed) -> None:
    con, handler = installed
    client = con.client()
    x = inst(con, YEARLY[0], X, YEARLY[1])
    good = link_of(mails_to(handler, con, X)[0])
    csrf = csrf_of(client.get(good).text)
    token = good.removeprefix("/xn/")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    expired, revoked = _expired_and_revoked(con, [x.id])
    forged = "/xn/" + confirmations.URLSafeSerializer("khong-phai-khoa-that", salt=confirmations.SALT).dumps([1, "x"])
    unknown = "/xn/" + confirmations.token_for(con.settings, 99999, "abc")
    before = counts(con)
    cases = {f"/xn/{flipped}": (403, "Đường dẫn không hợp lệ"), forged: (403, "Đường dẫn không hợp lệ"),
             unknown: (403, "Đường dẫn không hợp lệ"), expired: (410, "Đường dẫn đã hết hạn"),
             revoked: (410, "Đường dẫn đã bị thu hồi"), "/xn/abc": (403, "Đường dẫn không hợp lệ")}
    for path, (code, heading) in cases.items():
        page = client.get(path)
        assert (page.status_code, heading in text_of(page.text)) == (code, True), path
        assert "Traceback" not in page.text and 'name="instance"' not in page.text
        r = client.post(path, data={"csrf": csrf, "instance": str(x.id), "ngay_gui": "30/11/2026"})
        assert r.status_code == code, path
        assert client.get(path + "/tep/1").status_code == code
    assert "hết hạn ngày" in text_of(client.get(expired).text)
    assert counts(con) == before
    row = inst(con, YEARLY[0], X, YEARLY[1])
    assert row.awaiting_since is None and not row.chase_paused
    assert client.get(good).status_code == 200                          # the real link still works


def test_a_link_never_shows_or_changes_another_units_report_on_any_route(installed) -> None:
    con, handler = installed
    client = con.client()
    path_x, path_y = link_of(mails_to(handler, con, X)[0]), link_of(mails_to(handler, con, Y)[0])
    x, y = inst(con, YEARLY[0], X, YEARLY[1]), inst(con, YEARLY[0], Y, YEARLY[1])
    # Y attaches a file to its own report; X's link must not reach it
    assert confirm_via(client, path_y, y.id, "30/11/2026").status_code == 303
    with session(con.settings.database.url) as s:
        y_file = s.exec(select(AttachmentRow)).one().id
        not_in_digest = s.exec(select(InstanceRow).where(InstanceRow.unit == X, InstanceRow.due > date(2026, 12, 31))).first()
    before = counts(con)
    assert y.id not in ids_on(client.get(path_x).text)
    for target in (y.id, not_in_digest.id, 999999):
        r = confirm_via(client, path_x, target, "30/11/2026")
        assert r.status_code == 404 and "Không tìm thấy" in text_of(r.text), target
    assert client.get(f"{path_x}/tep/{y_file}").status_code == 404
    assert client.get(f"{path_y}/tep/{y_file}").content == PDF          # Y reads its own file
    assert client.get(f"{path_x}/tep/999999").status_code == 404
    # even a link row whose scope wrongly listed Y's report (a bug elsewhere) cannot touch it
    with session(con.settings.database.url) as s:
        d = s.exec(select(DeliveryRow).where(DeliveryRow.recipient == X)).one()
        row = s.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).one()
        row.instance_ids = json.dumps(sorted(json.loads(row.instance_ids) + [y.id]))
        s.add(row)
        s.commit()
    assert y.id not in ids_on(client.get(path_x).text) and "Sở Công Thương" not in text_of(client.get(path_x).text)
    assert confirm_via(client, path_x, y.id, "30/11/2026").status_code == 404
    assert counts(con) == before
    assert inst(con, YEARLY[0], Y, YEARLY[1]).awaiting_since == date(2026, 11, 30)   # Y's own, unchanged
    assert inst(con, YEARLY[0], X, YEARLY[1]).awaiting_since is None
    # the secretariat's file route needs a login
    r = con.client().get(f"/tep/{y_file}")
    assert r.status_code == 303 and r.headers["location"].startswith("/dang-nhap")


def test_forms_without_the_right_token_or_role_are_refused(installed) -> None:
    con, handler = installed
    client = con.client()
    path_x, path_y = link_of(mails_to(handler, con, X)[0]), link_of(mails_to(handler, con, Y)[0])
    x = inst(con, YEARLY[0], X, YEARLY[1])
    before = counts(con)
    for token in ("", "sai", csrf_of(client.get(path_y).text)):            # none, wrong, another link's
        r = confirm_via(client, path_x, x.id, "30/11/2026", csrf=token)
        assert r.status_code == 403, token
    assert counts(con) == before
    assert confirm_via(client, path_x, x.id, "30/11/2026").status_code == 303
    with session(con.settings.database.url) as s:
        cid = s.exec(select(ConfirmationRow)).one().id
    sec, boss = con.client("thu.ky"), con.client("lanh.dao")
    before = counts(con)
    for url, data in ((f"/xac-nhan/{cid}/chap-nhan", {}), (f"/xac-nhan/{cid}/tra-lai", {"ly_do": "Thiếu chữ ký"})):
        assert sec.form(url, data, csrf="").status_code == 403
        assert sec.form(url, data, csrf="gia-mao").status_code == 403
        assert boss.form(url, data).status_code == 403                         # lãnh đạo reads only
        assert con.client().post(url, data=data).status_code == 303             # not logged in: to the login page
    assert boss.get("/xac-nhan").status_code == 200 and "Chỉ thư ký xử lý" in text_of(boss.get("/xac-nhan").text)
    assert counts(con) == before
    with session(con.settings.database.url) as s:
        assert s.get(ConfirmationRow, cid).state == "pending"


def test_bad_input_is_refused_in_words_and_writes_nothing(installed) -> None:
    con, handler = installed
    client = con.client()
    path = link_of(mails_to(handler, con, X)[0])
    x = inst(con, YEARLY[0], X, YEARLY[1])
    before = counts(con)
    cases = [("03/12/2026", None, "ở tương lai"), ("31/12/2025", None, "trước khi kỳ Năm 2026 bắt đầu"),
             ("32/13/2026", None, "Ngày gửi:"), ("", None, "ghi ngày gửi"),
             ("30/11/2026", ("bao-cao.pdf", b"<html><script>x</script></html>", "application/pdf"), "không phải PDF"),
             ("30/11/2026", ("bao-cao.pdf", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "application/pdf"),
              "không phải PDF"),                                          # an OLE2 (DOC/XLS) named .pdf
             ("30/11/2026", ("../../etc/passwd.pdf", b"", "application/pdf"), "“passwd.pdf” rỗng")]
    for day, file, words in cases:
        r = confirm_via(client, path, x.id, day, file=file)
        assert r.status_code == 400 and words in text_of(r.text), (day, file, text_of(r.text)[:400])
        assert "Traceback" not in r.text
    big = b"%PDF-" + b"0" * (con.settings.web.max_upload_mb * 1024 * 1024 + 300 * 1024)
    r = confirm_via(client, path, x.id, "30/11/2026", file=("lon.pdf", big, "application/pdf"))
    assert r.status_code == 413 and "Tệp quá lớn" in text_of(r.text)
    assert counts(con) == before
    assert not (con.tmp / "attachments").exists() or list((con.tmp / "attachments").iterdir()) == []
    # markup in what a unit writes is shown as text, never as markup
    assert confirm_via(client, path, x.id, "30/11/2026", ref="<b>1</b>", note="<script>alert(1)</script>").status_code == 303
    queue = con.client("thu.ky").get("/xac-nhan").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in queue and "<script>alert" not in queue
    with session(con.settings.database.url) as s:
        stored = s.exec(select(AttachmentRow)).one()
    assert re.fullmatch(r"\d{8}-[0-9a-f]{24}\.pdf", stored.stored_name) and stored.filename == "bao-cao.pdf"


def test_the_secretariat_recording_directly_ends_the_wait(installed) -> None:
    con, handler = installed
    client = con.client()
    path = link_of(mails_to(handler, con, X)[0])
    x = inst(con, YEARLY[0], X, YEARLY[1])
    october = inst(con, "khhd57-thang", X, "2026-10")
    assert confirm_via(client, path, x.id, "30/11/2026").status_code == 303
    assert confirm_via(client, path, october.id, "20/10/2026", file=None).status_code == 303
    services.submit(con.settings, con.pack, YEARLY[0], X, YEARLY[1], date(2026, 11, 28), con.now, actor="cli",
                    ref="10/BC-STC")
    services.waive(con.settings, con.pack, "khhd57-thang", X, "2026-10", "Sáp nhập đơn vị", con.now)
    with session(con.settings.database.url) as s:
        states = {c.instance_id: (c.state, c.submission_id is not None) for c in s.exec(select(ConfirmationRow)).all()}
        sub = s.exec(select(SubmissionRow).where(SubmissionRow.instance_id == x.id)).one()
        att = s.exec(select(AttachmentRow)).one()
    assert states == {x.id: ("superseded", True), october.id: ("superseded", False)}
    assert att.submission_id == sub.id and sub.submitted_on == date(2026, 11, 28)
    for row in (inst(con, YEARLY[0], X, YEARLY[1]), inst(con, "khhd57-thang", X, "2026-10")):
        assert row.awaiting_since is None and not row.chase_paused and row.closed
    assert "Không có báo cáo nào đang chờ xác nhận" in text_of(con.client("thu.ky").get("/xac-nhan").text)


def test_without_a_secret_digests_carry_no_link_and_pages_say_so(tmp_path) -> None:
    con = Console(tmp_path, secret=None)
    assert confirmations.link_maker(con.settings) is None
    a_pass(con, con.settings, con.now)
    import email
    from email import policy

    eml = next((con.tmp / "mail-out").glob("*so-tai-chinh*.eml")).read_bytes()
    body = plain(email.message_from_bytes(eml, policy=policy.default))   # type: ignore[arg-type]
    assert "Hạn nộp" in body and "/xn/" not in body and "Báo đã gửi" not in body
    assert "bỏ qua thư này và báo lại" in body                           # the wording without a link
    r = con.client().get("/xn/abc.def")
    assert r.status_code == 404 and "Chức năng chưa bật" in text_of(r.text)
    with session(con.settings.database.url) as s:
        assert s.exec(select(UnitLinkRow)).all() == []
    assert "DONDOC_WEB_SECRET" in text_of(con.client("thu.ky").get("/xac-nhan").text)


def test_a_link_row_is_durable_before_its_mail_can_leave(tmp_path, smtp, monkeypatch) -> None:
    """The link row is committed with the in-flight mark, also for a digest already marked "may
    have been sent" (a retry after an ambiguous try, when no new mark is written): whenever a
    message is accepted by the server, another connection already sees the row of its URL."""
    from notifications import delivery, outbox

    handler, port = smtp
    con = Console(tmp_path)
    settings = with_smtp(con.settings, port)
    services.evaluate(settings.database.url, con.pack, con.now, settings)
    with session(settings.database.url) as s:
        outbox.assign(s, con.pack, con.now, "vptu.example.org")
        for d in s.exec(select(DeliveryRow)).all():
            d.maybe_sent, d.status = True, "retry"
            s.add(d)
        s.commit()
    seen: dict[int, bool] = {}
    real_record = delivery.Pass.record

    def record(self, d, outcome, subject=None, prev_maybe=None):
        if outcome.kind == "sent":
            with session(settings.database.url) as other:
                seen[d.id] = other.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == d.id)).first() is not None
        return real_record(self, d, outcome, subject, prev_maybe)

    monkeypatch.setattr(delivery.Pass, "record", record)
    rep = services.deliver(settings.database.url, con.pack, con.now, settings, links=confirmations.link_maker(settings))
    assert rep.sent > 10
    [mail] = mails_to(handler, con, X)
    assert LINK.search(plain(mail))
    own = [d for d in seen if _has_own(settings, d)]
    assert len(own) > 10 and all(seen[d] for d in own), seen


def _has_own(settings: Settings, delivery_id: int) -> bool:
    with session(settings.database.url) as s:
        d = s.get(DeliveryRow, delivery_id)
        return any(n.unit == d.recipient and n.kind != "escalation" and n.instance_id is not None
                   for _, n in s.exec(select(DeliveryItemRow, NoticeRow)
                                      .join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                                      .where(DeliveryItemRow.delivery_id == delivery_id)).all())


def test_dondoc_notify_puts_the_link_in_the_mail(seed_env, monkeypatch) -> None:
    """The command line's delivery pass is wired too (the .eml written to the pickup folder)."""
    import email
    from email import policy

    from typer.testing import CliRunner

    from engine.app.cli import app
    from tests.web_support import SECRET

    monkeypatch.setenv("DONDOC_WEB_SECRET", SECRET)
    monkeypatch.setenv("DONDOC_WEB_PUBLIC_URL", "https://dondoc.example.org/")
    monkeypatch.setenv("DONDOC_TRACKING_START", "2026-11-01")
    for args in (["sync"], ["evaluate"], ["notify", "--as-of", "2026-12-02T09:00"]):
        res = CliRunner().invoke(app, ["--now", "2026-12-02T09:00", *args])
        assert res.exit_code == 0, res.output
    eml = next((seed_env / "mail-out").glob("*so-tai-chinh*.eml")).read_bytes()
    body = plain(email.message_from_bytes(eml, policy=policy.default))   # type: ignore[arg-type]
    assert re.search(r"Báo đã gửi: https://dondoc\.example\.org/xn/[A-Za-z0-9._-]+\s", body), body[-800:]
