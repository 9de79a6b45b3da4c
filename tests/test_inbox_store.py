"""What a received mail leaves in the database (engine/app/inbox/store.py), without IMAP: a reply
to a real digest marks exactly that unit's items "chờ xác nhận" with the files; the secretariat's
accept and return work on it as on a unit's link; an auto-reply changes nothing; a queued mail is
assigned (the submission recorded with the day the mail arrived) or dismissed; the migration.

The installation is the console's test harness: the seed rules, 2026 synced, one evaluation and
one delivery pass to the pickup folder on 02/12/2026 09:00 (real digests with real Message-IDs).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from engine.app import confirmations, services
from engine.app.inbox import store
from engine.app.inbox.match import match
from engine.app.inbox.parse import parse
from engine.app.services import InvalidInput, open_session
from engine.clock import TZ
from engine.state import (AttachmentRow, AuditRow, ConfirmationRow, DeliveryItemRow, DeliveryRow, InboundMailRow,
                          InstanceRow, NoticeRow)
from tests.test_inbox_imap import message as mail
from tests.web_support import Console

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def con(tmp_path_factory) -> Console:
    c = Console(tmp_path_factory.mktemp("inbox-store"))
    services.evaluate(c.settings.database.url, c.pack, c.now, c.settings)
    rep = services.deliver(c.settings.database.url, c.pack, c.now, c.settings)
    assert rep.sent >= 40
    return c


def digest_to(con: Console, unit: str) -> tuple[str, list[tuple[str, str, str]]]:
    """A sent digest's Message-ID and the unit's own open items in it."""
    with open_session(con.settings) as ses:
        did, mid = ses.execute(sa.select(DeliveryRow.id, DeliveryRow.message_id)
                               .where(DeliveryRow.recipient == unit, DeliveryRow.status == "sent")).first()
        keys = ses.execute(sa.select(NoticeRow.obligation, NoticeRow.unit, NoticeRow.period)
                           .join(DeliveryItemRow, DeliveryItemRow.notice_id == NoticeRow.id)
                           .where(DeliveryItemRow.delivery_id == did, NoticeRow.unit == unit)).all()
    return mid, sorted(set(map(tuple, keys)))


def take(con: Console, raw: bytes, received: datetime, now: datetime | None = None) -> InboundMailRow:
    """What the reader does for one message, minus IMAP: parse, match, record, commit."""
    parsed = parse(raw, store.limits(con.settings))
    with open_session(con.settings) as ses:
        m = match(parsed, con.pack, store.context_for(ses, con.pack, parsed, store.received_on(received, now or received)))
        row = store.record(ses, con.settings, con.pack, parsed, m, raw, received_at=received, now=now or received)
        ses.commit()
        return row


def instances(con: Console, keys) -> dict[tuple[str, str, str], InstanceRow]:
    with open_session(con.settings) as ses:
        out = {}
        for o, u, p in keys:
            out[(o, u, p)] = ses.exec(select(InstanceRow).where(InstanceRow.obligation == o, InstanceRow.unit == u,
                                                                InstanceRow.period == p)).one()
        return out


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def test_a_reply_to_a_digest_marks_exactly_that_units_items_with_the_file(con: Console) -> None:
    unit = "so-tai-chinh"
    mid, keys = digest_to(con, unit)
    assert keys, "the digest has items of the unit"
    contact = con.pack.units[unit].contacts[0]
    other_before = {(r.obligation, r.unit, r.period): r.awaiting_since for r in _all_open(con) if r.unit != unit}
    raw = mail(f"Văn thư Sở Tài chính <{contact}>", "RE: Nhắc nộp báo cáo", reply_to=mid,
               files=[("Bao cao 123-BC-STC.pdf", PDF, "application/pdf")], body="Số 123/BC-STC, gửi kèm.")
    row = take(con, raw, at("2026-12-03T10:15"))
    assert row.state == "recorded" and row.via == "reply" and row.ref == "123/BC-STC"
    got = instances(con, keys)
    with open_session(con.settings) as ses:
        confs = ses.exec(select(ConfirmationRow).where(ConfirmationRow.inbound_id == row.id)).all()
        files = ses.exec(select(AttachmentRow).where(sa.column("confirmation_id").in_([c.id for c in confs]))).all()
    open_keys = [k for k, i in got.items() if i.awaiting_since is not None]
    assert sorted(open_keys) == sorted(k for k in keys if not got[k].closed)
    assert {c.unit for c in confs} == {unit} and len(confs) == len(open_keys)
    assert all(c.submitted_on.isoformat() == "2026-12-03" and c.state == "pending" and c.link_id is None for c in confs)
    assert all(i.chase_paused for k, i in got.items() if k in open_keys)
    assert len(files) == len(confs) and {f.filename for f in files} == {"Bao cao 123-BC-STC.pdf"}
    import hashlib
    assert {f.sha256 for f in files} == {hashlib.sha256(PDF).hexdigest()}
    after = {(r.obligation, r.unit, r.period): r.awaiting_since for r in _all_open(con) if r.unit != unit}
    assert after == other_before                              # no other unit touched
    # the secretariat's queue (the same as for a unit's link) shows them; accepting records the submission
    q = [i for i in confirmations.queue(con.settings, con.pack) if i.unit == unit]
    assert len(q) == len(confs) and all("Nhận qua thư điện tử" in (i.note or "") for i in q)
    accepted = confirmations.accept(con.settings, con.pack, q[0].id, con.now + timedelta(days=1), "web:thu.ky")
    assert accepted.closed and accepted.submitted_on.isoformat() == "2026-12-03" and accepted.submission_ref == "123/BC-STC"


def _all_open(con: Console) -> list[InstanceRow]:
    with open_session(con.settings) as ses:
        return list(ses.exec(select(InstanceRow).where(InstanceRow.closed == False)).all())  # noqa: E712


def test_an_auto_reply_to_a_digest_changes_nothing(con: Console) -> None:
    unit = "so-cong-thuong"
    mid, keys = digest_to(con, unit)
    before = {k: (i.awaiting_since, i.chase_paused) for k, i in instances(con, keys).items()}
    raw = mail(con.pack.units[unit].contacts[0], "Trả lời tự động: Vắng mặt", reply_to=mid,
               headers={"Auto-Submitted": "auto-replied"})
    row = take(con, raw, at("2026-12-03T08:00"))
    assert row.state == "ignored"
    assert {k: (i.awaiting_since, i.chase_paused) for k, i in instances(con, keys).items()} == before
    with open_session(con.settings) as ses:
        assert ses.exec(select(ConfirmationRow).where(ConfirmationRow.inbound_id == row.id)).all() == []


def test_a_queued_mail_is_assigned_in_one_step_with_the_day_it_arrived(con: Console) -> None:
    unit = "so-gddt"
    contact = con.pack.units[unit].contacts[0]
    row = take(con, mail(contact, "Báo cáo", msgid="<assign-1@donvi.example.vn>",
                         files=[("bc.pdf", PDF, "application/pdf")]), at("2026-12-01T16:00"), now=con.now)
    assert row.state == "queued" and row.via == "sender"
    view = store.one(con.settings, con.pack, row.id)
    assert len(view.candidates) >= 2 and all(c.open for c in view.candidates)
    pick = view.candidates[0]
    with pytest.raises(InvalidInput, match="cần chọn"):
        store.assign(con.settings, con.pack, row.id, [], con.now, "web:thu.ky")
    res = store.assign(con.settings, con.pack, row.id, [pick.instance_id], con.now, "web:thu.ky")
    assert len(res.items) == 1 and pick.title in res.items[0]
    with open_session(con.settings) as ses:
        inst = ses.get(InstanceRow, pick.instance_id)
        assert inst.closed and inst.submitted_on.isoformat() == "2026-12-01"
        files = ses.exec(select(AttachmentRow).where(AttachmentRow.instance_id == inst.id)).all()
        assert [f.filename for f in files] == ["bc.pdf"] and files[0].submission_id is not None
        assert ses.get(InboundMailRow, row.id).state == "assigned"
        acts = ses.execute(sa.select(AuditRow.actor, AuditRow.action).where(AuditRow.action == "assign_mail")).all()
        assert ("web:thu.ky", "assign_mail") in [tuple(a) for a in acts]
    with pytest.raises(InvalidInput, match="đã được xử lý"):
        store.assign(con.settings, con.pack, row.id, [pick.instance_id], con.now, "web:thu.ky")


def test_assign_by_unit_obligation_and_period_and_a_bad_period_writes_nothing(con: Console) -> None:
    row = take(con, mail("nguoi-la@gmail.com", "Gửi báo cáo", msgid="<assign-2@gmail.com>"), at("2026-12-02T08:00"),
               now=con.now)
    assert row.state == "queued" and row.via == "none"
    with pytest.raises(InvalidInput):
        store.instance_for(con.settings, con.pack, "khhd57-skhcn-nam", "so-xay-dung", "tháng 13/2026", con.now)
    with open_session(con.settings) as ses:
        assert ses.get(InboundMailRow, row.id).state == "queued"
    iid = store.instance_for(con.settings, con.pack, "khhd57-skhcn-nam", "so-xay-dung", "năm 2026", con.now)
    store.assign(con.settings, con.pack, row.id, [iid], con.now, "cli")
    with open_session(con.settings) as ses:
        assert ses.get(InstanceRow, iid).closed


def test_dismiss_keeps_the_mail_and_names_who(con: Console) -> None:
    row = take(con, mail("hoi-dap@donvi.example.vn", "Hỏi về mẫu báo cáo", msgid="<dismiss-1@x.vn>"),
               at("2026-12-02T08:30"), now=con.now)
    store.dismiss(con.settings, row.id, "  thư hỏi,  không phải báo cáo ", con.now, "web:thu.ky")
    with open_session(con.settings) as ses:
        r = ses.get(InboundMailRow, row.id)
        assert (r.state, r.decided_by) == ("dismissed", "web:thu.ky") and r.reason.endswith("thư hỏi, không phải báo cáo")
    name, data = store.raw_of(con.settings, row.id)
    assert name == f"thu-{row.id}.eml" and b"Message-ID: <dismiss-1@x.vn>" in data
    assert store.counts(con.settings)["dismissed"] >= 1


def test_a_mail_before_its_period_can_be_reported_waits_instead(con: Console) -> None:
    """A reply dated before the period of its items begins (a clock gone wrong, a resent old mail) is
    not recorded as a submission on a day that cannot be one: it waits in the queue with the reason."""
    unit = "so-noi-vu"
    mid, keys = digest_to(con, unit)
    row = take(con, mail(con.pack.units[unit].contacts[0], "RE: nhắc", reply_to=mid, msgid="<early@x.vn>"),
               at("2025-06-01T09:00"), now=con.now)
    assert row.state == "queued" and "trước khi kỳ" in row.reason
    assert all(i.awaiting_since is None for i in instances(con, keys).values())


def test_the_migration_matches_the_model(db_url: str) -> None:
    """0009 creates exactly what InboundMailRow and ConfirmationRow.inbound_id declare, on SQLite and
    PostgreSQL, and downgrades cleanly."""
    from tests.support import check_migration

    for down in check_migration(db_url, ("inbound_mails", "confirmations"),
                                {"inbound_mails": InboundMailRow, "confirmations": ConfirmationRow}, "0008"):
        assert not down.has_table("inbound_mails")
        assert "inbound_id" not in {c["name"] for c in down.get_columns("confirmations")}
