"""Secrets never travel or print in clear (issue 10.5).

The SMTP password is refused on a connection without TLS unless the configuration says so (a
loopback relay): the digest is kept for retry with the reason, the admin alert is not sent, and
``dondoc doctor`` says why. The password never appears in a reason, a log line or doctor's output.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
from aiosmtpd.smtp import AuthResult
from sqlmodel import select

from engine.clock import TZ
from engine.db import session
from engine.errors import RuleError, RulePackInvalid
from engine.sync import sync_instances
from notifications.admin import send_rules_alert
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver
from notifications.models import DeliveryRow
from tests.support import EphemeralController, RecordingHandler, add_notice, instance

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)
SECRET = "mat-khau-Bi-Mat-42"


class Logins:
    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.seen.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)


@pytest.fixture
def auth_server():
    handler, logins = RecordingHandler(), Logins()
    ctl = EphemeralController(handler, authenticator=logins, auth_require_tls=False)
    ctl.start()
    yield handler, logins, ctl.port
    ctl.stop()


@pytest.fixture
def one_digest(sqlite_url, minipack):
    with session(sqlite_url) as s:
        sync_instances(s, minipack, NOW.replace(hour=7))
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        s.commit()
    return sqlite_url


def cfg(port: int, **kw) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security="none", username="dondoc", password=SECRET,
                      from_addr="dondoc@vptu.example.org", timeout=5, **kw)


def test_password_is_not_sent_without_tls(one_digest, minipack, auth_server, caplog) -> None:
    handler, logins, port = auth_server
    with caplog.at_level(logging.DEBUG):
        rep = deliver(one_digest, minipack, NOW, smtp=cfg(port), delivery=DeliveryConfig())
    assert rep.sent == 0 and rep.retry == 1 and logins.seen == [] and handler.messages == []
    with session(one_digest) as s:
        [d] = s.exec(select(DeliveryRow)).all()
    assert d.status == "retry" and "không gửi mật khẩu SMTP qua kết nối không mã hóa" in d.last_error
    assert SECRET not in caplog.text and SECRET not in d.last_error and SECRET not in repr(cfg(port))


def test_plaintext_login_only_when_allowed(one_digest, minipack, auth_server, caplog) -> None:
    handler, logins, port = auth_server
    with caplog.at_level(logging.DEBUG):
        rep = deliver(one_digest, minipack, NOW, smtp=cfg(port, allow_plaintext_auth=True), delivery=DeliveryConfig())
    assert rep.sent == 1 and logins.seen == [("dondoc", SECRET)]
    assert SECRET not in caplog.text


def test_admin_alert_refuses_too(minipack, auth_server, caplog) -> None:
    handler, logins, port = auth_server
    exc = RulePackInvalid([RuleError("rules/units.yaml", 3, "units", "lỗi thử")])
    assert send_rules_alert(minipack, exc, "abc", NOW, cfg(port)) is False
    assert logins.seen == [] and handler.messages == [] and SECRET not in caplog.text
    assert "không gửi mật khẩu SMTP" in caplog.text
    assert send_rules_alert(minipack, exc, "abc", NOW, cfg(port, allow_plaintext_auth=True)) is True
    assert logins.seen == [("dondoc", SECRET)] and len(handler.messages) == 1


def test_doctor_says_so(auth_server) -> None:
    from engine.app.doctor import _smtp_check

    _, logins, port = auth_server
    ok, name, detail = _smtp_check(cfg(port))
    assert ok is False and "DONDOC_SMTP_ALLOW_PLAINTEXT_AUTH" in detail and SECRET not in detail
    ok, name, detail = _smtp_check(cfg(port, allow_plaintext_auth=True))
    assert ok is True and "không mã hóa" in detail and logins.seen == [("dondoc", SECRET)]


def test_default_is_starttls() -> None:
    assert SmtpConfig(host="mail.example.org").security == "starttls"
    assert SmtpConfig(host="mail.example.org").effective_port == 587
