"""Webhook channel through Apprise (json://) to a real HTTP receiver on loopback."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

from sqlmodel import select

from engine.clock import TZ
from engine.db import session
from engine.rules_loader import load_pack
from engine.sync import sync_instances
from notifications.delivery import deliver
from notifications.models import DeliveryRow
from notifications.config import DeliveryConfig, SmtpConfig
from tests.support import WebhookReceiver, add_notice, instance
from tests.conftest import CALENDAR, MINIPACK

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)


def _pack(tmp_path, port: int):
    d = tmp_path / "rules"
    shutil.copytree(MINIPACK, d)
    units = (d / "units.yaml").read_text(encoding="utf-8")
    units = units.replace("    contacts: [skhcn@example.org]\n",
                          f"    contacts: [skhcn@example.org]\n    webhooks: [\"json://127.0.0.1:{port}/hooks/skhcn\"]\n")
    units = units.replace("    contacts: [baogl@example.org]\n", f"    webhooks: [\"json://127.0.0.1:{port}/hooks/baogl\"]\n")
    (d / "units.yaml").write_text(units, encoding="utf-8")
    return load_pack(d, CALENDAR)


def _setup(url: str, pack) -> None:
    with session(url) as s:
        sync_instances(s, pack, NOW.replace(hour=7))
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        add_notice(s, instance(s, "nam-skhcn", "baogl", "2026"), "remind-3")
        s.commit()


def test_webhook_posts_the_vietnamese_digest_once(tmp_path, sqlite_url) -> None:
    with WebhookReceiver() as rx:
        pack = _pack(tmp_path, rx.port)
        _setup(sqlite_url, pack)
        cfg = SmtpConfig(host=None, pickup_dir=tmp_path / "mail-out", from_addr="dondoc@vptu.example.org")
        rep = deliver(sqlite_url, pack, NOW, smtp=cfg, delivery=DeliveryConfig())
        assert rep.sent == 3            # skhcn: e-mail + webhook; baogl: webhook only
        again = deliver(sqlite_url, pack, NOW + timedelta(minutes=5), smtp=cfg, delivery=DeliveryConfig())
        assert again.sent == 0
    assert sorted(rx.paths) == ["/hooks/baogl", "/hooks/skhcn"]
    body = rx.bodies[rx.paths.index("/hooks/skhcn")]
    assert body["title"] == "[Đôn đốc báo cáo] Sở Khoa học và Công nghệ: 1 sắp đến hạn"
    msg = body["message"]
    assert "Báo cáo năm về Sở KH&CN – Năm 2026" in msg and "Thứ Hai, 30/11/2026" in msg
    assert "còn 3 ngày làm việc" in msg and "Căn cứ: Hướng dẫn Sở KH&CN, mục III.1" in msg
    assert len(list((tmp_path / "mail-out").glob("*.eml"))) == 1      # only skhcn has an e-mail address
    with session(sqlite_url) as s:
        routes = sorted((d.recipient, d.channel) for d in s.exec(select(DeliveryRow)).all())
    assert routes == [("baogl", "webhook"), ("skhcn", "email"), ("skhcn", "webhook")]


def test_webhook_failure_is_retried_after_backoff(tmp_path, sqlite_url) -> None:
    with WebhookReceiver() as rx:
        rx.fail = [500, 503]
        pack = _pack(tmp_path, rx.port)
        _setup(sqlite_url, pack)
        cfg = SmtpConfig(host=None, pickup_dir=tmp_path / "mail-out")
        s1 = DeliveryConfig(webhook_concurrency=1)
        rep = deliver(sqlite_url, pack, NOW, smtp=cfg, delivery=s1)
        assert rep.retry == 2 and rx.bodies == []
        with session(sqlite_url) as s:
            d = s.exec(select(DeliveryRow).where(DeliveryRow.channel == "webhook")).first()
            assert d.status == "retry" and "json://127.0.0.1" in d.last_error and "/hooks" not in d.last_error
        assert deliver(sqlite_url, pack, NOW + timedelta(minutes=1), smtp=cfg, delivery=s1).sent == 0
        assert deliver(sqlite_url, pack, NOW + timedelta(minutes=3), smtp=cfg, delivery=s1).sent == 2
    assert sorted(rx.paths) == ["/hooks/baogl", "/hooks/skhcn"]
