"""`dondoc run` reads the reporting mailbox on its schedule (a real dovecot): a reply to one of its
own digests becomes "chờ xác nhận"; a mailbox that refuses the login is said in the log, at each
reading, and the daemon goes on chasing deadlines (it does not count itself unhealthy)."""

from __future__ import annotations

import email
import time
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import free_port, written_emls
from tests.test_inbox_imap import KEYWORD, inbox_env, message
from tests.test_web_daemon import _start, _stop, _wait_for

pytestmark = pytest.mark.slow


def _rows(tmp_path: Path) -> list[tuple[str, str]]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with eng.connect() as c:
            if not sa.inspect(c).has_table("inbound_mails"):
                return []
            return [tuple(r) for r in c.execute(sa.text("SELECT message_id, state FROM inbound_mails")).all()]
    finally:
        eng.dispose()


def test_the_daemon_reads_the_mailbox_and_records_a_reply_to_its_digest(tmp_path: Path, imap_server,
                                                                         imap_account) -> None:
    env = {**inbox_env(imap_server, imap_account), "DONDOC_INBOX_EVERY_MINUTES": "1", "DONDOC_WEB_SERVE": "false",
           "DONDOC_WEB_UPLOAD_DIR": str(tmp_path / "attachments")}
    # Monday 07/12/2026 09:00, 30× real time: digests go out, then the mailbox is read every simulated minute
    proc, log = _start(tmp_path, free_port(), "2026-12-07T09:00", 30.0, **env)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not written_emls(tmp_path / "mail"):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        digest = email.message_from_bytes(written_emls(tmp_path / "mail")[0].read_bytes(), policy=policy.default)
        sender = str(digest["To"]).split("<")[-1].strip(">").split(",")[0].strip()
        imap_account.append(message(sender, "RE: " + str(digest["Subject"]), msgid="<daemon-reply@donvi.vn>",
                                    reply_to=str(digest["Message-ID"]), body="Đã gửi, số 9/BC."))
        end = time.monotonic() + 60
        while time.monotonic() < end and not _rows(tmp_path):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert _rows(tmp_path) == [("<daemon-reply@donvi.vn>", "recorded")], log.read_text()
        end = time.monotonic() + 10
        while time.monotonic() < end and not all(KEYWORD in m.flags for m in imap_account.messages()):
            time.sleep(0.1)
        assert [KEYWORD in m.flags for m in imap_account.messages()] == [True]
    finally:
        assert _stop(proc) == 0


def test_a_refused_login_is_logged_and_the_daemon_keeps_working(tmp_path: Path, imap_server, imap_account) -> None:
    env = {**inbox_env(imap_server, imap_account), "DONDOC_INBOX_PASSWORD": "sai-mat-khau",
           "DONDOC_INBOX_EVERY_MINUTES": "1", "DONDOC_WEB_SERVE": "false"}
    proc, log = _start(tmp_path, free_port(), "2026-12-07T09:00", 60.0, **env)
    try:
        out = _wait_for(log, "từ chối đăng nhập", proc)
        assert "sai-mat-khau" not in out                        # the password is never printed
        _wait_for(log, "evaluated at", proc)
        end = time.monotonic() + 60
        while time.monotonic() < end and out.count("từ chối đăng nhập") < 2:
            out = log.read_text(encoding="utf-8", errors="replace")
            assert proc.poll() is None, out
            time.sleep(0.2)
        assert out.count("từ chối đăng nhập") >= 2 and "Traceback" not in out     # tried again, still alive
    finally:
        assert _stop(proc) == 0
