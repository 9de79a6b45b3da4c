"""Every delivery setting reaches the sender, from the environment AND from dondoc.toml (issue 9.1).

Each case builds the settings the way a command does (``engine.app.config.load_settings`` with an
environment or a file, nothing else), runs a delivery pass with exactly ``settings.smtp`` and
``settings.delivery``, and looks where a user would: at a real aiosmtpd server on loopback (From,
HELO, TLS), in the outbox (reasons, attempts, next try), at a loopback webhook receiver, or in the
.eml file ``dondoc notify`` writes.
"""

from __future__ import annotations

import email
from datetime import datetime
from email import policy
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from engine.app.config import ENV, load_settings
from engine.clock import TZ
from engine.db import session
from engine.sync import sync_instances
from notifications.delivery import deliver
from notifications.models import DeliveryRow
from tests.support import (EphemeralController, RecordingHandler, WebhookReceiver, add_notice, free_port,
                                   instance, self_signed_cert, starttls_controller)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)         # Wednesday, a working day, 09:00
REPO = Path(__file__).resolve().parent.parent
MINIPACK = REPO / "tests" / "fixtures" / "minipack"
SOURCES = ["env", "file"]


def env_name(section: str, key: str) -> str:
    """The current (not the legacy) variable for a field: DONDOC_SMTP_* / DONDOC_NOTIFY_* first."""
    names = [n for n, target in ENV.items() if target == (section, key)]
    return sorted(names, key=lambda n: (not n.startswith(("DONDOC_SMTP_", "DONDOC_NOTIFY_")), n))[0]


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def configure(source: str, values: dict[tuple[str, str], object], tmp_path: Path):
    """The Settings from only an environment, or only a dondoc.toml, holding ``values``."""
    if source == "env":
        env = {env_name(*k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()}
        return load_settings(environ=env, file=None), env, None
    by_section: dict[str, list[str]] = {}
    for (section, key), v in values.items():
        by_section.setdefault(section, []).append(f"{key} = {toml_value(v)}")
    path = tmp_path / "dondoc.toml"
    path.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n\n" for s, lines in by_section.items()), encoding="utf-8")
    return load_settings(environ={}, file=path), {}, path


@pytest.fixture
def notices(sqlite_url, minipack):
    """skhcn: a reminder and an overdue notice; vp: an escalation; baogl: a reminder (3 digests)."""
    with session(sqlite_url) as s:
        sync_instances(s, minipack, NOW.replace(hour=7))
        year = instance(s, "nam-skhcn", "skhcn", "2026")
        octo = instance(s, "thang", "skhcn", "2026-10")
        add_notice(s, year, "remind-3")
        add_notice(s, octo, "overdue-repeat-1")
        add_notice(s, octo, "escalation", recipient="vp")
        add_notice(s, instance(s, "nam-skhcn", "baogl", "2026"), "remind-3")
        s.commit()
    return sqlite_url


def deliveries(url: str) -> list[DeliveryRow]:
    with session(url) as s:
        return list(s.exec(select(DeliveryRow).order_by(DeliveryRow.id)).all())


# ─── From ───────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("source", SOURCES)
def test_from_address_is_on_every_mail(source, tmp_path, notices, minipack, smtp) -> None:
    handler, port = smtp
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): port, ("smtp", "security"): "none",
                                 ("smtp", "from_addr"): "nhac-han@vptu.bacninh.gov.vn"}, tmp_path)
    rep = deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    assert rep.sent == 3 and len(handler.messages) == 3
    for m in handler.messages:
        assert m.mail_from == "nhac-han@vptu.bacninh.gov.vn"
        assert m.message["From"].addresses[0].addr_spec == "nhac-han@vptu.bacninh.gov.vn"
        assert m.message["Message-ID"].endswith("@vptu.bacninh.gov.vn>")


@pytest.mark.parametrize("source", SOURCES)
def test_from_in_display_name_form_is_accepted(source, tmp_path, notices, minipack, smtp) -> None:
    """``Dondoc <dondoc@…>`` (issue 10.10): used to mark every digest failed while notify exited 0."""
    handler, port = smtp
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): port, ("smtp", "security"): "none",
                                 ("smtp", "from_addr"): "Dondoc Bắc Ninh <dondoc@bacninh.gov.vn>"}, tmp_path)
    rep = deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    assert rep.sent == 3 and rep.failed == 0
    frm = handler.messages[0].message["From"].addresses[0]
    assert (frm.display_name, frm.addr_spec) == ("Dondoc Bắc Ninh", "dondoc@bacninh.gov.vn")
    assert handler.messages[0].mail_from == "dondoc@bacninh.gov.vn"


@pytest.mark.parametrize("source", SOURCES)
def test_dondoc_notify_writes_eml_from_the_configured_address(source, tmp_path, notices, monkeypatch) -> None:
    from engine.app.cli import app

    out = tmp_path / "thu-di"
    _, env, path = configure(source, {("smtp", "from_addr"): "van-thu@stttt.example.gov.vn",
                                      ("smtp", "pickup_dir"): str(out)}, tmp_path)
    for k in [k for k in list(__import__("os").environ) if k.startswith("DONDOC_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if path is not None:
        monkeypatch.setenv("DONDOC_CONFIG", str(path))
    monkeypatch.setenv("DONDOC_DATABASE_URL", notices)
    monkeypatch.setenv("DONDOC_RULES_DIR", str(MINIPACK))
    monkeypatch.setenv("DONDOC_CALENDAR_DIR", str(REPO / "calendar"))
    res = CliRunner().invoke(app, ["notify", "--as-of", "2026-11-25T09:00"])
    assert res.exit_code == 0, res.output
    files = sorted(out.glob("*.eml"))
    assert len(files) == 3
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        assert msg["From"].addresses[0].addr_spec == "van-thu@stttt.example.gov.vn"


# ─── ports ──────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465)])
def test_security_without_port_uses_its_standard_port(source, security, port, tmp_path, notices, minipack) -> None:
    """Seen in the outbox's reason (the user reads it with ``dondoc outbox``): nothing listens on
    127.0.0.2, so the connection fails and names the port that was used."""
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.2", ("smtp", "security"): security,
                                 ("smtp", "timeout"): 2}, tmp_path)
    assert s.smtp.port is None
    deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    reasons = {d.last_error for d in deliveries(notices)}
    assert reasons and all(f"127.0.0.2:{port}" in r for r in reasons), reasons


# ─── hours and attempts ─────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("source", SOURCES)
def test_notify_hours_that_exclude_the_moment_send_nothing(source, tmp_path, notices, minipack, smtp) -> None:
    handler, port = smtp
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): port, ("smtp", "security"): "none",
                                 ("delivery", "hours"): "13:00-17:00"}, tmp_path)
    rep = deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    assert not rep.sending_allowed and "13:00–17:00" in rep.reason and handler.messages == []
    assert deliveries(notices) == []
    rep = deliver(notices, minipack, NOW.replace(hour=13, minute=30), smtp=s.smtp, delivery=s.delivery)
    assert rep.sent == 3


@pytest.mark.parametrize("source", SOURCES)
def test_max_attempts_one_fails_after_one_try(source, tmp_path, notices, minipack) -> None:
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): free_port(),
                                 ("smtp", "security"): "none", ("delivery", "max_attempts"): 1}, tmp_path)
    rep = deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    assert rep.failed == 3 and rep.retry == 0
    assert all(d.status == "failed" and d.attempts == 1 for d in deliveries(notices))


# ─── certificates, HELO, backoff cap ──────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("validate", [True, False])
def test_validate_certs(source, validate, cert, tmp_path, notices, minipack) -> None:
    """A self-signed certificate: checked (the default) → refused, digests kept for retry; not
    checked → delivered over STARTTLS."""
    handler = RecordingHandler()
    ctl = starttls_controller(handler, *cert)
    ctl.start()
    try:
        s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): ctl.port,
                                     ("smtp", "security"): "starttls", ("smtp", "validate_certs"): validate}, tmp_path)
        rep = deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    finally:
        ctl.stop()
    if validate:
        assert rep.sent == 0 and rep.retry == 3 and handler.messages == []
        assert all("CERTIFICATE_VERIFY_FAILED" in (d.last_error or "") for d in deliveries(notices))
    else:
        assert rep.sent == 3 and all(m.tls for m in handler.messages)


@pytest.mark.parametrize("source", SOURCES)
def test_helo_name_is_what_the_server_sees(source, tmp_path, notices, minipack, smtp) -> None:
    handler, port = smtp
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): port, ("smtp", "security"): "none",
                                 ("smtp", "helo"): "may-gui.vptu.bacninh.gov.vn"}, tmp_path)
    deliver(notices, minipack, NOW, smtp=s.smtp, delivery=s.delivery)
    assert {m.helo for m in handler.messages} == {"may-gui.vptu.bacninh.gov.vn"}


@pytest.mark.parametrize("source", SOURCES)
def test_backoff_cap(source, tmp_path, notices, minipack) -> None:
    """first 30 s, then 60 s, then capped at 45 s: seen as the next try's time in the outbox."""
    s, _, _ = configure(source, {("smtp", "host"): "127.0.0.1", ("smtp", "port"): free_port(),
                                 ("smtp", "security"): "none", ("delivery", "backoff_first_s"): 30,
                                 ("delivery", "backoff_max_s"): 45}, tmp_path)
    now, gaps = NOW, []
    for _ in range(3):
        deliver(notices, minipack, now, smtp=s.smtp, delivery=s.delivery)
        d = deliveries(notices)[0]
        nxt = d.next_attempt_at if d.next_attempt_at.tzinfo else d.next_attempt_at.replace(tzinfo=now.tzinfo)
        gaps.append((nxt - now).total_seconds())
        now = nxt
    assert gaps == [30, 45, 45]


# ─── webhooks ───────────────────────────────────────────────────────────────────────────────────
def with_webhooks(minipack, port: int, units=("skhcn", "vp", "baogl")):
    for uid in units:
        minipack.units[uid] = minipack.units[uid].model_copy(update={"webhooks": [f"json://127.0.0.1:{port}/{uid}"]})
    return minipack


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("timeout", "sent"), [(1, False), pytest.param(7, True, marks=pytest.mark.slow)])  # waits 4.5 s
def test_webhook_timeout(source, timeout, sent, tmp_path, notices, minipack) -> None:
    """The receiver answers after 4.5 s: a 1 s timeout gives up (retry), 7 s waits (sent).
    Before, Apprise's own 4 s read timeout applied whatever the setting said."""
    with WebhookReceiver(delay=4.5) as rx:
        pack = with_webhooks(minipack, rx.port, units=("skhcn",))
        s, _, _ = configure(source, {("smtp", "pickup_dir"): str(tmp_path / "out"),
                                     ("delivery", "webhook_timeout"): timeout}, tmp_path)
        deliver(notices, pack, NOW, smtp=s.smtp, delivery=s.delivery)
    [hook] = [d for d in deliveries(notices) if d.channel == "webhook"]
    assert (hook.status == "sent") is sent, hook.last_error


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("concurrency", [1, 3])
def test_webhook_concurrency(source, concurrency, tmp_path, notices, minipack) -> None:
    with WebhookReceiver(delay=0.4) as rx:
        pack = with_webhooks(minipack, rx.port)
        s, _, _ = configure(source, {("smtp", "pickup_dir"): str(tmp_path / "out"),
                                     ("delivery", "webhook_concurrency"): concurrency}, tmp_path)
        rep = deliver(notices, pack, NOW, smtp=s.smtp, delivery=s.delivery)
    assert len(rx.bodies) == 3 and rep.sent == 6
    assert rx.max_active == concurrency
