"""Delivery over real SMTP (aiosmtpd on 127.0.0.1, ephemeral port): content, outages, 4xx/5xx,
moot notices, sending window, header injection. Time is simulated: nothing here sleeps for a
backoff, the pass is simply run again with a later `now`."""

from __future__ import annotations

import email
import json
from datetime import datetime, timedelta
from email import policy
from email.header import decode_header, make_header

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from engine.clock import TZ
from engine.db import session
from engine.state import NoticeRow
from engine.submissions import SubmissionIn, record_submission
from engine.sync import sync_instances
from notifications.delivery import deliver
from notifications.models import DeliveryRow
from notifications.config import DeliveryConfig, SmtpConfig
from tests.support import EphemeralController, RecordingHandler, add_notice, free_port, instance

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)        # Wednesday, a working day, within 07:30–17:00
FAST = DeliveryConfig(backoff_first_s=120, backoff_max_s=3600, max_attempts=5)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def smtp_cfg(port: int, **kw) -> SmtpConfig:
    base = dict(host="127.0.0.1", port=port, security="none", concurrency=2, timeout=5,
                from_addr="dondoc@vptu.example.org", helo="test.local")
    return SmtpConfig(**{**base, **kw})


@pytest.fixture
def scenario(db_url, minipack):
    """skhcn: yearly report due Mon 30/11/2026 (reminder) and the October monthly (overdue);
    baogl: the yearly report; vp (supervising): an escalation about skhcn's October report."""
    with session(db_url) as s:
        sync_instances(s, minipack, at("2026-11-25T07:00"))
        year = instance(s, "nam-skhcn", "skhcn", "2026")
        octo = instance(s, "thang", "skhcn", "2026-10")
        add_notice(s, year, "remind-3")
        add_notice(s, octo, "overdue-repeat-1")
        add_notice(s, octo, "escalation", recipient="vp")
        add_notice(s, instance(s, "nam-skhcn", "baogl", "2026"), "remind-3")
        s.commit()
    return db_url


def by_rcpt(handler: RecordingHandler) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in handler.messages:
        for r in m.rcpt_tos:
            out.setdefault(r, []).append(m)
    return out


def deliveries(url: str) -> dict[str, DeliveryRow]:
    with session(url) as s:
        return {d.recipient: d for d in s.exec(select(DeliveryRow)).all()}


def test_digest_arrives_once_in_vietnamese_with_both_alternatives(smtp, scenario, minipack) -> None:
    handler, port = smtp
    rep = deliver(scenario, minipack, NOW, smtp=smtp_cfg(port), delivery=FAST)
    assert (rep.sent, rep.retry, rep.failed, rep.new_deliveries) == (3, 0, 0, 3)
    got = by_rcpt(handler)
    assert sorted(got) == ["bao@example.org", "baogl@example.org", "skhcn@example.org", "vp@example.org"][1:]
    [m] = got["skhcn@example.org"]                  # ONE digest with both of skhcn's reports
    msg = m.message
    assert msg["Subject"] == ("[Đôn đốc báo cáo] Sở Khoa học và Công nghệ: 1 báo cáo quá hạn, 1 sắp đến hạn")
    assert b"=?utf-8?" in m.data.split(b"\r\n\r\n")[0]      # RFC 2047 on the wire
    assert m.data.isascii()
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert "Báo cáo năm về Sở KH&amp;CN" in body or "Báo cáo năm về Sở KH&CN" in body
        assert "Thứ Hai, 30/11/2026" in body
        assert "Căn cứ: Hướng dẫn Sở KH&amp;CN, mục III.1" in body or "Căn cứ: Hướng dẫn Sở KH&CN, mục III.1" in body
        assert "Chưa hoàn thành – quá hạn" in body and "Sắp đến hạn" in body
    assert "còn 3 ngày làm việc" in text
    assert "Tháng 10/2026" in text and "Thứ Hai, 19/10/2026" in text     # 18/10 was a Sunday
    assert msg["Reply-To"].addresses[0].addr_spec == "vp@example.org"
    assert msg["From"].addresses[0].addr_spec == "dondoc@vptu.example.org"
    assert msg["Message-ID"].endswith("@vptu.example.org>") and msg["Date"]
    assert msg["Auto-Submitted"] == "auto-generated"
    # the supervising body's digest lists the late unit
    esc = got["vp@example.org"][0].message.get_body(("plain",)).get_content()
    assert "CÁC ĐƠN VỊ CHƯA NỘP BÁO CÁO QUÁ HẠN" in esc and "Sở Khoa học và Công nghệ: quá hạn" in esc
    # a second pass sends nothing; the notices carry the Message-ID
    again = deliver(scenario, minipack, NOW + timedelta(minutes=5), smtp=smtp_cfg(port), delivery=FAST)
    assert (again.sent, again.new_deliveries) == (0, 0)
    assert len(handler.messages) == 3
    with session(scenario) as s:
        notices = s.exec(select(NoticeRow)).all()
        assert {n.status for n in notices} == {"sent"}
        assert {n.message_id for n in notices if n.recipient == "skhcn"} == {msg["Message-ID"]}


def test_server_down_then_up_sends_after_backoff_once(scenario, minipack) -> None:
    port = free_port()
    cfg = smtp_cfg(port)
    rep = deliver(scenario, minipack, NOW, smtp=cfg, delivery=FAST)
    assert (rep.sent, rep.retry) == (0, 3)
    d = deliveries(scenario)["skhcn"]
    assert d.status == "retry" and "Không kết nối được máy chủ SMTP" in d.last_error
    assert d.next_attempt_at == NOW + timedelta(seconds=120)
    handler = RecordingHandler()
    ctl = EphemeralController(handler, port=port)
    ctl.start()
    try:
        early = deliver(scenario, minipack, NOW + timedelta(seconds=60), smtp=cfg, delivery=FAST)
        assert early.sent == 0 and handler.messages == []          # backoff not over yet
        late = deliver(scenario, minipack, NOW + timedelta(seconds=121), smtp=cfg, delivery=FAST)
        assert late.sent == 3
        deliver(scenario, minipack, NOW + timedelta(hours=1), smtp=cfg, delivery=FAST)
    finally:
        ctl.stop()
    ids = handler.message_ids()
    assert len(ids) == 3 and len(set(ids)) == 3


def test_4xx_then_success_and_421_reconnects(smtp, scenario, minipack) -> None:
    handler, port = smtp
    handler.script["skhcn@example.org"] = ["451 4.3.0 Mailbox temporarily unavailable"]
    handler.script["baogl@example.org"] = ["421 4.3.2 Service shutting down"]
    rep = deliver(scenario, minipack, NOW, smtp=smtp_cfg(port, concurrency=1), delivery=FAST)
    assert (rep.sent, rep.retry) == (1, 2)                         # vp got its digest on a new connection
    ds = deliveries(scenario)
    assert ds["skhcn"].status == "retry" and "451" in ds["skhcn"].last_error
    assert ds["baogl"].status == "retry" and "421" in ds["baogl"].last_error
    assert not ds["skhcn"].maybe_sent                              # refused before DATA: certainly not kept
    rep2 = deliver(scenario, minipack, NOW + timedelta(minutes=3), smtp=smtp_cfg(port), delivery=FAST)
    assert rep2.sent == 2
    assert sorted(r for m in handler.messages for r in m.rcpt_tos) == ["baogl@example.org", "skhcn@example.org", "vp@example.org"]


def test_permanent_5xx_fails_one_recipient_only_and_shows_in_outbox(smtp, scenario, minipack, monkeypatch) -> None:
    handler, port = smtp
    handler.always["skhcn@example.org"] = "550 5.1.1 User unknown"
    rep = deliver(scenario, minipack, NOW, smtp=smtp_cfg(port), delivery=FAST)
    assert (rep.sent, rep.failed) == (2, 1)
    assert sorted(r for m in handler.messages for r in m.rcpt_tos) == ["baogl@example.org", "vp@example.org"]
    monkeypatch.setenv("DONDOC_DATABASE_URL", scenario)
    from engine.app.cli import app

    res = CliRunner().invoke(app, ["outbox", "--failed", "--json"])
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert row["recipient"] == "skhcn" and row["status"] == "failed" and "550 5.1.1 User unknown" in row["reason"]
    import engine.cli

    monkeypatch.setattr(engine.app.cli.out, "width", 250)
    table = CliRunner().invoke(app, ["outbox", "--failed"])
    assert "Sở Khoa học và Công nghệ" in table.output and "550" in table.output
    # the unit's address is fixed; the secretariat re-queues the digest, same Message-ID
    handler.always.clear()
    res = CliRunner().invoke(app, ["outbox", "retry", str(row["id"]), "--by", "Nguyễn Văn An"])
    assert res.exit_code == 0, res.output
    from engine.state import AuditRow

    with session(scenario) as s:                 # the retry names its author in the audit trail
        trail = s.exec(select(AuditRow).where(AuditRow.action == "outbox_retry")).all()
    assert [(a.actor, a.entity_id) for a in trail] == [("Nguyễn Văn An", str(row["id"]))]
    deliver(scenario, minipack, NOW + timedelta(minutes=1), smtp=smtp_cfg(port), delivery=FAST)
    [m] = by_rcpt(handler)["skhcn@example.org"]
    assert m.message_id == row["message_id"]
    assert json.loads(CliRunner().invoke(app, ["outbox", "--failed", "--json"]).output) == []


def test_moot_notice_is_dropped_not_sent(smtp, scenario, minipack) -> None:
    handler, port = smtp
    with session(scenario) as s:   # skhcn submits its October report before anything is sent
        record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-10",
                                                    submitted_on=NOW.date()), NOW)
    rep = deliver(scenario, minipack, NOW, smtp=smtp_cfg(port), delivery=FAST)
    assert rep.dropped_notices == 2          # skhcn's overdue notice and vp's escalation about it
    got = by_rcpt(handler)
    assert "vp@example.org" not in got       # vp's digest had nothing else in it
    text = got["skhcn@example.org"][0].message.get_body(("plain",)).get_content()
    assert "Tháng 10/2026" not in text and "Thứ Hai, 30/11/2026" in text
    with session(scenario) as s:
        st = {n.key.split("|")[3] + "|" + n.recipient: n.status for n in s.exec(select(NoticeRow)).all()}
    assert st["overdue-repeat-1|skhcn"] == "dropped" and st["escalation|vp"] == "dropped"


def test_moot_after_digest_assigned_but_before_retry(smtp, scenario, minipack) -> None:
    handler, port = smtp
    handler.script["skhcn@example.org"] = ["451 try later"]
    deliver(scenario, minipack, NOW, smtp=smtp_cfg(port), delivery=FAST)
    with session(scenario) as s:
        for ob, per in (("thang", "2026-10"), ("nam-skhcn", "2026")):
            record_submission(s, minipack, SubmissionIn(obligation=ob, unit="skhcn", period=per,
                                                        submitted_on=NOW.date()), NOW)
    rep = deliver(scenario, minipack, NOW + timedelta(minutes=5), smtp=smtp_cfg(port), delivery=FAST)
    assert rep.sent == 0 and deliveries(scenario)["skhcn"].status == "dropped"
    assert "skhcn@example.org" not in by_rcpt(handler)


@pytest.mark.parametrize("moment,why", [
    ("2026-11-25T07:29", "ngoài giờ"), ("2026-11-25T17:00", "ngoài giờ"), ("2026-11-25T22:00", "ngoài giờ"),
    ("2026-11-29T09:00", "Chủ nhật"),                # Sunday
    ("2026-11-28T09:00", "không phải ngày làm việc"),  # Saturday
    ("2026-09-02T09:00", "không phải ngày làm việc"),  # Quốc khánh
    ("2026-11-24T09:00", "không phải ngày làm việc"),  # Ngày Văn hóa Việt Nam (from 2026)
])
def test_nothing_is_sent_outside_working_hours(smtp, scenario, minipack, moment, why) -> None:
    handler, port = smtp
    rep = deliver(scenario, minipack, at(moment), smtp=smtp_cfg(port), delivery=FAST)
    assert not rep.sending_allowed and why in rep.reason
    assert handler.messages == [] and deliveries(scenario) == {}


def test_sending_hours_are_configurable(smtp, scenario, minipack) -> None:
    handler, port = smtp
    rep = deliver(scenario, minipack, at("2026-11-25T18:30"), smtp=smtp_cfg(port),
                  delivery=DeliveryConfig(send_start="07:00", send_end="19:00"))
    assert rep.sent == 3


def test_unit_name_with_crlf_cannot_inject_headers(smtp, scenario, minipack) -> None:
    handler, port = smtp
    evil = "Sở Khoa học\r\nBcc: attacker@evil.example\r\nX-Injected: yes"
    minipack.units["skhcn"] = minipack.units["skhcn"].model_copy(update={"name": evil})
    rep = deliver(scenario, minipack, NOW, smtp=smtp_cfg(port), delivery=FAST)
    assert rep.sent == 3
    [m] = by_rcpt(handler)["skhcn@example.org"]
    assert m.rcpt_tos == ["skhcn@example.org"]
    head = m.data.split(b"\r\n\r\n")[0].decode("ascii")
    names = [line.split(":")[0] for line in head.split("\r\n") if line and not line[0].isspace()]
    assert "Bcc" not in names and "X-Injected" not in names
    assert len(names) == len(set(names))
    assert all(r != "attacker@evil.example" for msg in handler.messages for r in msg.rcpt_tos)
    [to] = m.message["To"].addresses
    assert to.addr_spec == "skhcn@example.org"
    raw_to = email.message_from_bytes(m.data, policy=policy.compat32)["To"]
    assert str(make_header(decode_header(raw_to))) == "Sở Khoa học Bcc: attacker@evil.example X-Injected: yes <skhcn@example.org>"
    assert "Bcc: attacker@evil.example" in m.message["Subject"]      # harmless text on one line


def test_raw_header_values_with_crlf_are_folded() -> None:
    from notifications.mime import BadAddress, address, one_line

    assert one_line("a\r\nBcc: x@y\n\tz") == "a Bcc: x@y z"
    assert address("Tên\r\nBcc: x@y.z", "a@b.vn").display_name == "Tên Bcc: x@y.z"
    for bad in ("a@b.vn\r\nBcc: x@y.z", "a@b.vn, x@y.z", "<x@y.z>"):
        with pytest.raises(BadAddress):
            address("x", bad)


def test_no_smtp_host_writes_eml_files(scenario, minipack, tmp_path) -> None:
    out = tmp_path / "mail-out"
    cfg = SmtpConfig(host=None, pickup_dir=out, from_addr="dondoc@vptu.example.org")
    rep = deliver(scenario, minipack, NOW, smtp=cfg, delivery=FAST)
    assert rep.mode == "pickup" and rep.sent == 3
    files = sorted(out.glob("*.eml"))
    assert len(files) == 3 and not list(out.glob(".tmp-*"))
    subjects = {email.message_from_bytes(f.read_bytes(), policy=policy.default)["Subject"] for f in files}
    assert "[Đôn đốc báo cáo] Văn phòng Tỉnh ủy: 1 lượt đơn vị chưa nộp báo cáo quá hạn" in subjects


def test_new_notices_join_a_digest_waiting_for_retry(smtp, scenario, minipack) -> None:
    """After a refused try, tomorrow's notice for the same unit goes in the same (one) message."""
    handler, port = smtp
    handler.script["skhcn@example.org"] = ["451 try later"]
    deliver(scenario, minipack, NOW, smtp=smtp_cfg(port), delivery=FAST)
    first = deliveries(scenario)["skhcn"]
    with session(scenario) as s:
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-1")
        s.commit()
    rep = deliver(scenario, minipack, NOW + timedelta(minutes=3), smtp=smtp_cfg(port), delivery=FAST)
    assert rep.new_deliveries == 0 and rep.sent == 1
    after = deliveries(scenario)["skhcn"]
    assert after.id == first.id and after.message_id != first.message_id
    assert len(by_rcpt(handler)["skhcn@example.org"]) == 1
