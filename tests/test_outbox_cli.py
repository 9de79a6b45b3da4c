"""`dondoc outbox` shows what happened (issue 11.8): sent mail too, filters by state, recipient and
day, Vietnamese states and dd/mm/yyyy hh:mm, and the .eml file of each digest in mail-out/, named by
date and recipient and kept across retries. Before: "0 thư" right after 50 digests were sent, and
files named by a bare hash."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.clock import TZ
from engine.db import session
from engine.sync import sync_instances
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver
from tests.support import add_notice, instance

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=TZ)
OLD_KEYS = {"id", "recipient", "recipient_name", "channel", "target", "status", "status_vi", "attempts", "maybe_sent",
            "next_attempt_at", "reason", "message_id", "subject", "created_at", "sent_at", "notices"}


def outbox(url: str, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(app, ["outbox", "--db", url, *args])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res.output


@pytest.fixture
def sent(sqlite_url, minipack, tmp_path):
    """skhcn (a reminder) and vp (an escalation) mailed to the pickup folder at 09:30."""
    with session(sqlite_url) as s:
        sync_instances(s, minipack, NOW)
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        add_notice(s, instance(s, "thang", "skhcn", "2026-10"), "escalation", recipient="vp")
        s.commit()
    out = tmp_path / "mail-out"
    rep = deliver(sqlite_url, minipack, NOW, smtp=SmtpConfig(pickup_dir=out), delivery=DeliveryConfig())
    assert rep.sent == 2
    return sqlite_url, out


def test_outbox_lists_sent_mail_with_time_state_and_file(sent, monkeypatch) -> None:
    url, out = sent
    import engine.app.cli

    monkeypatch.setattr(engine.app.cli.out, "width", 300)
    table = outbox(url)
    assert "2 thư: đã gửi 2." in table and "Đã gửi" in table and "25/11/2026 09:30" in table
    files = sorted(p.name for p in out.glob("*.eml"))
    assert len(files) == 2 and all(re.fullmatch(r"2026-11-25_0930_(skhcn|vp)_[0-9a-f]{10}\.eml", f) for f in files)
    for f in files:
        assert f in table
    rows = json.loads(outbox(url, "--json"))
    assert {r["status"] for r in rows} == {"sent"} and sorted(r["file_name"] for r in rows) == files
    assert all(OLD_KEYS <= set(r) for r in rows)                    # --json: keys added, none renamed
    assert {r["at_vi"] for r in rows} == {"25/11/2026 09:30"}


def test_filters_by_state_unit_and_day(sent) -> None:
    url, _ = sent
    ids = lambda *a: sorted(r["recipient"] for r in json.loads(outbox(url, "--json", *a)))  # noqa: E731
    assert ids("--state", "gửi") == ids("--state", "sent") == ids("--state", "Đã gửi") == ["skhcn", "vp"]
    assert ids("--state", "chờ") == ids("--state", "lỗi") == ids("--state", "bỏ") == []
    assert ids("--state", "chờ,gửi") == ids("--state", "cho", "--state", "gui") == ["skhcn", "vp"]
    assert ids("--unit", "skhcn") == ids("--unit", "Sở Khoa học và Công nghệ") == ["skhcn"]
    assert ids("--day", "25/11/2026") == ["skhcn", "vp"] and ids("--day", "26/11/2026") == []
    bad = outbox(url, "--state", "xong", code=2)
    assert "trạng thái “xong” không có" in bad and "gửi" in bad and "lỗi" in bad
    bad = outbox(url, "--unit", "skhc", code=2)
    assert "không có đơn vị “skhc”" in bad and "Có phải" in bad
    bad = outbox(url, "--day", "31/02/2026", code=2)
    assert "--day" in bad


def test_file_name_is_kept_across_retries(sqlite_url, minipack, tmp_path) -> None:
    """The first try could not write (the folder was a file): the retry writes the same name."""
    with session(sqlite_url) as s:
        sync_instances(s, minipack, NOW)
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        s.commit()
    out = tmp_path / "mail-out"
    out.write_text("không phải thư mục", encoding="utf-8")
    cfg = SmtpConfig(pickup_dir=out)
    first = deliver(sqlite_url, minipack, NOW, smtp=cfg, delivery=DeliveryConfig())
    assert first.retry == 1
    [row] = json.loads(outbox(sqlite_url, "--json", "--state", "chờ"))
    assert row["status_vi"] == "Chờ gửi lại" and row["file_name"].startswith("2026-11-25_0930_skhcn_")
    out.unlink()
    later = deliver(sqlite_url, minipack, NOW + timedelta(minutes=10), smtp=cfg, delivery=DeliveryConfig())
    assert later.sent == 1
    assert [p.name for p in out.glob("*.eml")] == [row["file_name"]]
    [done] = json.loads(outbox(sqlite_url, "--json"))
    assert done["file_name"] == row["file_name"] and done["at_vi"] == "25/11/2026 09:40"


def test_migration_0006_adds_and_removes_the_file_column(sqlite_url) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from engine.db import alembic_config, get_engine

    get_engine(sqlite_url)
    cols = lambda: {c["name"] for c in inspect(get_engine(sqlite_url)).get_columns("deliveries")}  # noqa: E731
    assert "file_name" in cols()
    command.downgrade(alembic_config(sqlite_url), "0005")
    assert "file_name" not in cols()
    command.upgrade(alembic_config(sqlite_url), "head")
    assert "file_name" in cols()
