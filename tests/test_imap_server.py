"""The throw-away IMAP server of the tests (tests/imapserver.py) behaves as the reporting mailbox must
for the product's client library, imap-tools: TLS and STARTTLS with the certificate validated, no
password in plain text, reading without \\Seen, keywords, one mailbox per account."""

from __future__ import annotations

import imaplib
import ssl
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from imap_tools import AND, MailBox, MailBoxStartTls
from imap_tools.errors import MailboxLoginError

KEYWORD = "dondoc-xong"


def mail(n: int) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "van-thu@stc.vn", "baocao@vptu.example.org", f"Báo cáo số {n}"
    m["Message-ID"] = f"<m{n}@stc.vn>"
    m.set_content(f"Nội dung {n}.")
    return m.as_bytes()


def context(server) -> ssl.SSLContext:
    """What the product does: the system's defaults (hostname and chain checked) plus the CA file."""
    return ssl.create_default_context(cafile=str(server.cafile))


def test_implicit_tls_with_the_certificate_validated(imap_server, imap_account) -> None:
    with MailBox(imap_server.host, imap_server.tls_port, ssl_context=context(imap_server)).login(
            imap_account.user, imap_account.password) as box:
        assert box.folder.get() == "INBOX"
    with pytest.raises(ssl.SSLCertVerificationError):   # without the CA file the certificate is not trusted
        MailBox(imap_server.host, imap_server.tls_port, ssl_context=ssl.create_default_context())


def test_starttls_logs_in_and_plain_login_is_refused(imap_server, imap_account) -> None:
    with MailBoxStartTls(imap_server.host, imap_server.starttls_port, ssl_context=context(imap_server)).login(
            imap_account.user, imap_account.password) as box:
        assert box.folder.get() == "INBOX"
    plain = imaplib.IMAP4(imap_server.host, imap_server.starttls_port, timeout=10)
    try:
        assert "LOGINDISABLED" in plain.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="(?i)plaintext"):
            plain.login(imap_account.user, imap_account.password)
    finally:
        plain.shutdown()


def test_a_wrong_password_is_refused_at_once(imap_server, imap_account) -> None:
    box = MailBox(imap_server.host, imap_server.tls_port, ssl_context=context(imap_server), timeout=5)
    with pytest.raises(MailboxLoginError):
        box.login(imap_account.user, imap_account.password + "x")


def test_appended_mail_is_read_without_seen_and_a_keyword_marks_one(imap_server, imap_account) -> None:
    when = datetime(2026, 11, 30, 8, 15, tzinfo=timezone.utc)
    uids = [imap_account.append(mail(n), internal_date=when) for n in (1, 2, 3)]
    assert uids == sorted(uids) and len(set(uids)) == 3
    with MailBox(imap_server.host, imap_server.tls_port, ssl_context=context(imap_server)).login(
            imap_account.user, imap_account.password) as box:
        got = list(box.fetch(mark_seen=False))
        assert [m.subject for m in got] == ["Báo cáo số 1", "Báo cáo số 2", "Báo cáo số 3"]
        assert [int(m.uid) for m in got] == uids
        assert not any("\\Seen" in m.flags for m in got)
        assert box.uids(AND(date=when.date())) == [m.uid for m in got]   # ON: the internal date given
        assert box.uids(AND(date=(when + timedelta(days=1)).date())) == []
        box.flag(str(uids[1]), KEYWORD, True)
        assert box.uids("NOT KEYWORD " + KEYWORD) == [str(uids[0]), str(uids[2])]
        assert box.uids(AND(keyword=KEYWORD)) == [str(uids[1])]
    msgs = imap_account.messages()
    assert [m.message_id for m in msgs] == ["<m1@stc.vn>", "<m2@stc.vn>", "<m3@stc.vn>"]
    assert [KEYWORD in m.flags for m in msgs] == [False, True, False]
    assert not any("\\Seen" in m.flags for m in msgs)


def test_folders_flags_and_accounts_are_separate(imap_server) -> None:
    a, b = imap_server.new_account(), imap_server.new_account()
    assert a.user != b.user and a.password != b.password
    uid = a.append(mail(7), folder="Da-xu-ly", flags=("\\Seen", KEYWORD))
    b.create_folder("Luu")
    assert a.messages() == [] and [(m.uid, m.flags >= {"\\Seen", KEYWORD}) for m in a.messages("Da-xu-ly")] == [(uid, True)]
    assert b.messages() == [] and b.messages("Da-xu-ly") == [] and b.messages("Luu") == []
    with pytest.raises(MailboxLoginError):   # one account's password does not open another's mailbox
        MailBox(imap_server.host, imap_server.tls_port, ssl_context=context(imap_server)).login(b.user, a.password)
