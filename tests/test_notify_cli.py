"""`dondoc notify` / `dondoc outbox` end to end (pickup folder), the sender lock, migration 0002."""

from __future__ import annotations

import json
from datetime import datetime

from typer.testing import CliRunner

from engine.clock import TZ
from engine.db import get_engine, session
from engine.sync import sync_instances
from notifications.delivery import deliver
from notifications.lock import sender_lock
from notifications.config import DeliveryConfig, SmtpConfig
from tests.support import add_notice, instance
from tests.conftest import CALENDAR, MINIPACK

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)


def _seed(url: str, minipack) -> None:
    with session(url) as s:
        sync_instances(s, minipack, NOW)
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        add_notice(s, instance(s, "thang", "skhcn", "2026-10"), "escalation", recipient="vp")
        s.commit()


def test_notify_command_writes_eml_without_smtp_and_reports_json(tmp_path, sqlite_url, minipack, monkeypatch) -> None:
    from engine.app.cli import app

    _seed(sqlite_url, minipack)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DONDOC_SMTP_HOST", raising=False)
    monkeypatch.delenv("DONDOC_NOW", raising=False)
    args = ["notify", "--rules", str(MINIPACK), "--calendar", str(CALENDAR), "--db", sqlite_url, "--json"]
    sunday = CliRunner().invoke(app, args + ["--as-of", "2026-11-29"])
    assert sunday.exit_code == 0, sunday.output
    assert json.loads(sunday.output)["sending_allowed"] is False
    res = CliRunner().invoke(app, args + ["--as-of", "2026-11-25"])      # a date = that day's opening hour
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["mode"] == "pickup" and rep["sent"] == 2 and rep["now"].startswith("2026-11-25T07:30")
    assert len(list((tmp_path / "mail-out").glob("*.eml"))) == 2
    listing = CliRunner().invoke(app, ["outbox", "--all", "--json", "--db", sqlite_url])
    rows = json.loads(listing.output)
    assert sorted(r["status"] for r in rows) == ["sent", "sent"] and all(r["notices"] for r in rows)
    # issue 11.8: the default listing shows sent mail too (it used to print "0 thư" after sending);
    # only what is waiting or failed: --state chờ,lỗi
    assert len(json.loads(CliRunner().invoke(app, ["outbox", "--json", "--db", sqlite_url]).output)) == 2
    assert json.loads(CliRunner().invoke(app, ["outbox", "--json", "--state", "chờ,lỗi", "--db", sqlite_url]).output) == []
    bad = CliRunner().invoke(app, ["outbox", "retry", "99", "--db", sqlite_url])
    assert bad.exit_code == 1 and "không có thư số 99" in bad.output


def test_a_second_sender_waits_for_the_first(sqlite_url, minipack, tmp_path) -> None:
    _seed(sqlite_url, minipack)
    cfg = SmtpConfig(host=None, pickup_dir=tmp_path / "out")
    with sender_lock(get_engine(sqlite_url)) as mine:
        assert mine
        rep = deliver(sqlite_url, minipack, NOW, smtp=cfg, delivery=DeliveryConfig())
        assert not rep.sending_allowed and "tiến trình khác" in rep.reason and rep.sent == 0
    assert deliver(sqlite_url, minipack, NOW, smtp=cfg, delivery=DeliveryConfig()).sent == 2


def test_migration_0002_downgrades_and_upgrades(sqlite_url) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from engine.db import alembic_config

    get_engine(sqlite_url)
    cfg = alembic_config(sqlite_url)
    command.downgrade(cfg, "0001")
    assert "deliveries" not in inspect(get_engine(sqlite_url)).get_table_names()
    command.upgrade(cfg, "head")
    names = inspect(get_engine(sqlite_url)).get_table_names()
    assert {"deliveries", "delivery_items"} <= set(names)


def test_notify_exits_non_zero_when_every_digest_fails_permanently(sqlite_url, minipack, tmp_path, monkeypatch) -> None:
    """Issue 10.10: a run whose digests all failed for good used to exit 0 (a timer never noticed)."""
    from engine.app.cli import app
    from tests.support import EphemeralController, RecordingHandler

    _seed(sqlite_url, minipack)
    handler = RecordingHandler(always={"skhcn@example.org": "550 5.1.1 User unknown",
                                       "vp@example.org": "550 5.1.1 User unknown"})
    ctl = EphemeralController(handler)
    ctl.start()
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("DONDOC_NOW", raising=False)
        for k, v in {"DONDOC_SMTP_HOST": "127.0.0.1", "DONDOC_SMTP_PORT": str(ctl.port), "DONDOC_SMTP_SECURITY": "none",
                     "DONDOC_SMTP_FROM": "dondoc@vptu.example.org"}.items():
            monkeypatch.setenv(k, v)
        args = ["notify", "--rules", str(MINIPACK), "--calendar", str(CALENDAR), "--db", sqlite_url, "--as-of", "2026-11-25"]
        res = CliRunner().invoke(app, args)
    finally:
        ctl.stop()
    assert res.exit_code == 1, res.output
    assert "không thành công" in res.output and handler.messages == []
