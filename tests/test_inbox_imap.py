"""The mailbox reader against a real IMAP server (Debian's dovecot on loopback, tests/imapserver.py):
a reply to a real digest (sent through aiosmtpd) becomes "chờ xác nhận" for exactly that unit and
those items; a report sent without a reply is matched by sender and subject; an ambiguous one waits
in the queue; an auto-reply and a bounce are ignored. Every message is marked done on the server
only after its row is committed, read without \\Seen, and never recorded twice.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
import sqlalchemy as sa
from sqlmodel import select
from typer.testing import CliRunner

from engine.app import confirmations, services
from engine.app.inbox import reader, store
from engine.app.inbox.mailbox import InboxUnavailable
from engine.app.services import open_session
from engine.clock import TZ
from engine.state import ConfirmationRow, InboundMailRow, InstanceRow
from notifications.config import SmtpConfig
from tests.web_support import Console

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
KEYWORD = "dondoc-xong"
X, Y, Z = "so-tai-chinh", "so-cong-thuong", "so-gddt"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def inbox_env(server, account, **extra: str) -> dict[str, str]:
    env = {"DONDOC_INBOX_HOST": server.host, "DONDOC_INBOX_PORT": str(server.tls_port),
           "DONDOC_INBOX_SECURITY": "tls", "DONDOC_INBOX_CAFILE": str(server.cafile),
           "DONDOC_INBOX_USERNAME": account.user, "DONDOC_INBOX_PASSWORD": account.password}
    env.update(extra)
    return env


def with_inbox(con: Console, server, account, **extra: str):
    from engine.app.config import load_settings

    base = {"DONDOC_DATABASE_URL": con.settings.database.url, "DONDOC_WEB_UPLOAD_DIR": str(con.settings.web.upload_dir),
            "DONDOC_MAIL_DIR": str(con.settings.smtp.pickup_dir)}
    return con.settings.model_copy(update={"inbox": load_settings({**base, **inbox_env(server, account, **extra)},
                                                                  file=None).inbox})


def message(sender: str, subject: str, *, msgid: str | None = None, reply_to: str | None = None,
            body: str = "Kính gửi Văn phòng.", files: list[tuple[str, bytes, str]] = (),
            headers: dict[str, str] | None = None, when: datetime | None = None) -> bytes:
    """A mail as a unit's mail client writes it (what the tests put in the mailbox)."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "baocao@vptu.example.org", subject
    m["Message-ID"] = msgid or f"<{abs(hash((sender, subject, reply_to)))}@donvi.example.vn>"
    m["Date"] = format_datetime(when or at("2026-12-03T10:00"))
    if reply_to:
        m["In-Reply-To"] = m["References"] = reply_to
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body)
    for name, data, ctype in files:
        main, sub = ctype.split("/")
        m.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return m.as_bytes()


def bounce(of_msgid: str, rcpt: str) -> bytes:
    """A delivery-status report (RFC 3464) quoting the digest, as Postfix writes it."""
    return (f"From: MAILER-DAEMON@mx.vptu.example.org (Mail Delivery System)\r\n"
            f"To: dondoc@vptu.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <bounce-{abs(hash(of_msgid))}@mx.vptu.example.org>\r\n"
            f"Date: Thu, 03 Dec 2026 10:00:00 +0700\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
            f"--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
            f"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.vptu.example.org\r\n\r\n"
            f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {of_msgid}\r\nSubject: Nhac nop bao cao\r\n"
            f"--B--\r\n").encode()


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """An installation whose digests of 02/12/2026 09:00 went out over SMTP to a real aiosmtpd."""
    from tests.support import EphemeralController, RecordingHandler

    con = Console(tmp_path_factory.mktemp("inbox-imap"))
    handler = RecordingHandler()
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        smtp = SmtpConfig(host="127.0.0.1", port=ctl.port, security="none", concurrency=2, timeout=5,
                          from_addr="dondoc@vptu.example.org", helo="test.local")
        s = con.settings.model_copy(update={"smtp": smtp})
        services.evaluate(s.database.url, con.pack, con.now, s)
        rep = services.deliver(s.database.url, con.pack, con.now, s, links=confirmations.link_maker(s))
        assert rep.sent >= 40
    finally:
        ctl.stop()
    return con, handler


def digest_for(con: Console, handler, unit: str) -> EmailMessage:
    addrs = set(con.pack.units[unit].contacts)
    got = [m.message for m in handler.messages if addrs & set(m.rcpt_tos)]
    assert len(got) == 1
    return got[0]


def items_of(con: Console, unit: str, state: str = "awaiting") -> set[tuple[str, str]]:
    with open_session(con.settings) as ses:
        rows = ses.exec(select(InstanceRow).where(InstanceRow.unit == unit)).all()
        return {(r.obligation, r.period) for r in rows if (r.awaiting_since is not None) == (state == "awaiting")}


def test_the_mailbox_read_over_tls_records_replies_and_reports_and_ignores_the_rest(delivered, imap_server,
                                                                                     imap_account) -> None:
    con, handler = delivered
    s = with_inbox(con, imap_server, imap_account)
    digest_x = digest_for(con, handler, X)
    digest_z = digest_for(con, handler, Z)
    x_contact, y_contact = con.pack.units[X].contacts[0], con.pack.units[Y].contacts[0]
    before_x = items_of(con, X)
    assert before_x == set()
    # 1. a reply to X's real digest, with the signed report
    imap_account.append(message(f"Văn thư <{x_contact}>", "RE: " + str(digest_x["Subject"]), msgid="<r1@stc.vn>",
                                reply_to=str(digest_x["Message-ID"]), body="Gửi kèm báo cáo số 45/BC-STC.",
                                files=[("BC 45.pdf", PDF, "application/pdf")]),
                        internal_date=at("2026-12-03T10:05"))
    # 2. a report sent without a reply, matched by sender and subject
    imap_account.append(message(y_contact, "Báo cáo tháng 11/2026 kết quả thực hiện Kế hoạch hành động thực hiện Nghị quyết 57-NQ/TW",
                                msgid="<r2@sct.vn>"), internal_date=at("2026-12-03T11:00"))
    # 3. ambiguous: a unit's contact, no period, no title
    imap_account.append(message(y_contact, "Gửi Văn phòng", msgid="<r3@sct.vn>", body="Xin gửi."),
                        internal_date=at("2026-12-03T11:30"))
    # 4. an out-of-office answer to Z's digest; 5. a bounce of Z's digest
    imap_account.append(message(con.pack.units[Z].contacts[0], "Trả lời tự động: Tôi đang nghỉ phép", msgid="<r4@gd.vn>",
                                reply_to=str(digest_z["Message-ID"]), headers={"Auto-Submitted": "auto-replied"}),
                        internal_date=at("2026-12-03T12:00"))
    imap_account.append(bounce(str(digest_z["Message-ID"]), con.pack.units[Z].contacts[0]),
                        internal_date=at("2026-12-03T12:01"))
    now = at("2026-12-03T14:00")
    rep = reader.fetch(s, con.pack, now)
    assert (rep.read, rep.recorded, rep.queued, rep.ignored, rep.already) == (5, 2, 1, 2, 0), rep.messages
    # X: exactly the items of X's digest, dated the day the server received the mail
    with open_session(s) as ses:
        confs = ses.exec(select(ConfirmationRow).where(col_in(ConfirmationRow.inbound_id, ses, "<r1@stc.vn>"))).all()
        assert confs and {c.unit for c in confs} == {X}
        assert {c.submitted_on.isoformat() for c in confs} == {"2026-12-03"} and {c.ref for c in confs} == {"45/BC-STC"}
        z_confs = ses.exec(select(ConfirmationRow).where(ConfirmationRow.unit == Z)).all()
        assert z_confs == []                                  # the auto-reply and the bounce changed nothing
        states = dict(ses.execute(sa.select(InboundMailRow.message_id, InboundMailRow.state)).all())
    assert states["<r1@stc.vn>"] == "recorded" and states["<r2@sct.vn>"] == "recorded"
    assert states["<r3@sct.vn>"] == "queued" and states["<r4@gd.vn>"] == "ignored"
    assert items_of(con, Y) and len(items_of(con, Y)) == 1
    # every message marked done on the server, none marked \Seen (people read this mailbox too)
    msgs = imap_account.messages()
    assert len(msgs) == 5 and all(KEYWORD in m.flags and "\\Seen" not in m.flags for m in msgs)
    # a second reading finds nothing new and records nothing twice
    again = reader.fetch(s, con.pack, now + timedelta(minutes=5))
    assert (again.pending, again.read) == (0, 0)
    with open_session(s) as ses:
        assert ses.execute(sa.select(sa.func.count()).select_from(InboundMailRow)).scalar_one() == 5
    # the queue offers the ambiguous one; accepting X's report stops its reminders like a submission
    queued = store.listing(s, con.pack)
    assert [m.subject for m in queued] == ["Gửi Văn phòng"] and len(queued[0].candidates) >= 2
    q = [i for i in confirmations.queue(s, con.pack) if i.unit == X]
    for item in q:
        confirmations.accept(s, con.pack, item.id, now, "web:thu.ky")
    assert items_of(con, X) == set()
    with open_session(s) as ses:
        closed = ses.exec(select(InstanceRow).where(InstanceRow.unit == X, InstanceRow.closed == True)).all()  # noqa: E712
        assert {r.submission_ref for r in closed if r.submitted_on and r.submitted_on.isoformat() == "2026-12-03"} == {"45/BC-STC"}


def col_in(column, ses, message_id: str):
    mid = ses.execute(sa.select(InboundMailRow.id).where(InboundMailRow.message_id == message_id)).scalar_one()
    return column == mid


def test_dry_run_reads_and_tells_but_writes_and_marks_nothing(delivered, imap_server, imap_account) -> None:
    con, _ = delivered
    s = with_inbox(con, imap_server, imap_account)
    imap_account.append(message("ai-do@gmail.com", "Báo cáo tháng 11/2026", msgid="<dry@gmail.com>"))
    rep = reader.fetch(s, con.pack, at("2026-12-03T14:00"), dry_run=True)
    assert rep.read == 1 and rep.queued == 1 and rep.dry_run
    assert [KEYWORD in m.flags for m in imap_account.messages()] == [False]
    with open_session(s) as ses:
        assert ses.exec(select(InboundMailRow).where(InboundMailRow.message_id == "<dry@gmail.com>")).first() is None


def test_starttls_and_move_to_a_folder(delivered, imap_server, imap_account) -> None:
    con, _ = delivered
    s = with_inbox(con, imap_server, imap_account, DONDOC_INBOX_SECURITY="starttls",
                   DONDOC_INBOX_PORT=str(imap_server.starttls_port), DONDOC_INBOX_MOVE_TO="Da-xu-ly")
    imap_account.append(message("ai-do@gmail.com", "Hỏi thăm", msgid="<move@gmail.com>"))
    rep = reader.fetch(s, con.pack, at("2026-12-03T14:00"))
    assert rep.read == 1
    assert imap_account.messages() == [] and len(imap_account.messages("Da-xu-ly")) == 1


def test_a_wrong_password_or_an_untrusted_certificate_is_said_in_words(delivered, imap_server, imap_account) -> None:
    con, _ = delivered
    bad = with_inbox(con, imap_server, imap_account, DONDOC_INBOX_PASSWORD="sai-mat-khau")
    with pytest.raises(InboxUnavailable, match="từ chối đăng nhập"):
        reader.fetch(bad, con.pack, at("2026-12-03T14:00"))
    s = with_inbox(con, imap_server, imap_account)
    untrusted = s.model_copy(update={"inbox": s.inbox.model_copy(update={"cafile": None})})
    with pytest.raises(InboxUnavailable, match="chứng chỉ"):
        reader.fetch(untrusted, con.pack, at("2026-12-03T14:00"))


def test_the_cli_fetches_and_lists_in_vietnamese(delivered, imap_server, imap_account, monkeypatch) -> None:
    from engine.cli import app

    con, _ = delivered
    for k, v in inbox_env(imap_server, imap_account).items():
        monkeypatch.setenv(k, v)
    for k in ("DONDOC_DATABASE_URL", "DONDOC_RULES_DIR", "DONDOC_CALENDAR_DIR", "DONDOC_WEB_UPLOAD_DIR",
              "DONDOC_TRACKING_START"):
        monkeypatch.setenv(k, str(con.settings.database.url if k == "DONDOC_DATABASE_URL" else {
            "DONDOC_RULES_DIR": con.settings.rules.dir, "DONDOC_CALENDAR_DIR": con.settings.calendar.dir,
            "DONDOC_WEB_UPLOAD_DIR": con.settings.web.upload_dir, "DONDOC_TRACKING_START": "2026-01-01"}[k]))
    imap_account.append(message("nguoi-la@gmail.com", "<b>Báo cáo</b> [red]x[/red]", msgid="<cli@gmail.com>"))
    r = CliRunner().invoke(app, ["--now", "2026-12-03T14:00", "inbox", "fetch"])
    assert r.exit_code == 0, r.output
    assert "1 thư mới" in r.output and "1 cần phân loại" in r.output and "[red]x[/red]" in r.output
    r = CliRunner().invoke(app, ["inbox", "list", "--json"])
    assert r.exit_code == 0 and any(m["subject"] == "<b>Báo cáo</b> [red]x[/red]" for m in json.loads(r.output))
    monkeypatch.setenv("DONDOC_INBOX_PASSWORD", "sai")
    r = CliRunner().invoke(app, ["--now", "2026-12-03T14:00", "inbox", "fetch"])
    assert r.exit_code == 1 and "từ chối đăng nhập" in r.output and "Traceback" not in r.output


def test_doctor_logs_in_to_the_mailbox_and_counts_what_waits(delivered, imap_server, imap_account) -> None:
    from engine.app.doctor import inbox_check

    con, _ = delivered
    imap_account.append(message("ai@gmail.com", "x", msgid="<doc@gmail.com>"))
    ok, what, text = inbox_check(with_inbox(con, imap_server, imap_account))
    assert ok is True and "1 thư chưa đọc" in text
    ok, _, text = inbox_check(with_inbox(con, imap_server, imap_account, DONDOC_INBOX_PASSWORD="sai"))
    assert ok is False and "từ chối đăng nhập" in text and "sai" not in text.replace("sai tên", "")
    assert inbox_check(con.settings)[0] is None                 # not configured: said, not an error
