"""The database side of a received mail: what it is matched against, what it leaves behind.

Why here and not in the reader: the CLI's ``inbox list/assign/dismiss``, the console's "Cần phân
loại" page and the reader all use these functions, so the rules (what "recorded" writes, what an
assignment records, who is named in the audit) are in one place.

* ``context_for``: the digests a reply names (deliveries by Message-ID → the unit's items in it)
  and the open items of the units concerned (the digest's unit, the units whose contacts list the
  sender), read for one mail at a time: a thousand-message batch never loads the whole year.
* ``record``: one row in ``inbound_mails`` (its Message-ID unique: the dedup key) and, for a
  confident match, a pending confirmation per item with the date received, the số ký hiệu and the
  files (checked by type and size, stored with their SHA-256) — the same "Đã gửi – chờ xác nhận"
  as a unit's link gives, accepted or returned in the same queue. The caller commits, then marks
  the message done on the server: a crash in between leaves a row whose Message-ID the next run
  finds, so the message is marked done and nothing is recorded twice.
* ``assign``: a secretary's choice for a queued mail records the submission at once (the
  secretary has looked at it: that is the validation), with the mail's files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.app import attachments
from engine.app.confirmations import mark_awaiting, supersede_pending
from engine.app.config import Settings
from engine.app.inbox.match import DigestRef, Match, MatchContext, OpenItem, units_for_address
from engine.app.inbox.model import InboundMail
from engine.app.inbox.parse import Limits, parse
from engine.app.services import InvalidInput, ServiceError, open_session
from engine.clock import aware, local
from engine.db import unindexed
from engine.rules_loader import RulePack
from engine.state import (AuditRow, ConfirmationRow, DeliveryItemRow, DeliveryRow, InboundMailRow, InstanceRow,
                          NoticeRow)
from engine.submissions import InputError, SubmissionIn, earliest_submission, record_submission

RECORDED, QUEUED, IGNORED, ASSIGNED, DISMISSED = "recorded", "queued", "ignored", "assigned", "dismissed"
STATE_VI = {RECORDED: "Đã ghi nhận (chờ xác nhận)", QUEUED: "Cần phân loại", IGNORED: "Bỏ qua (không phải báo cáo)",
            ASSIGNED: "Đã phân loại", DISMISSED: "Không phải báo cáo"}
# The views of the mailbox, by state, shared by `dondoc inbox list --state` and the console's tabs:
# (name in the command and the address, label, states shown); the first is the default.
VIEWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("can-phan-loai", "Cần phân loại", (QUEUED,)),
    ("da-ghi-nhan", "Đã ghi nhận", (RECORDED,)),
    ("bo-qua", "Bỏ qua", (IGNORED,)),
    ("da-phan-loai", "Đã phân loại", (ASSIGNED,)),
    ("khong-phai-bao-cao", "Không phải báo cáo", (DISMISSED,)),
    ("tat-ca", "Tất cả", (QUEUED, RECORDED, IGNORED, ASSIGNED, DISMISSED)),
]
RAW_DIR = "thu-den"           # under web.upload_dir: the messages as received (.eml), named by SHA-256
MAX_REASON = 2000


def limits(settings: Settings) -> Limits:
    return Limits(max_raw_bytes=settings.inbox.max_message_mb * 1024 * 1024)


# ─── what a mail is matched against ─────────────────────────────────────────────────────────────
def _digest_refs(ses: Session, mail: InboundMail) -> dict[str, DigestRef]:
    ids = list(mail.thread_ids)[:50]
    if not ids:
        return {}
    out: dict[str, DigestRef] = {}
    rows = ses.execute(sa.select(DeliveryRow.id, DeliveryRow.message_id, DeliveryRow.recipient, DeliveryRow.sent_at)
                       .where(col(DeliveryRow.message_id).in_(ids))).all()
    for did, mid, unit, sent_at in rows:
        keys = ses.execute(sa.select(NoticeRow.obligation, NoticeRow.unit, NoticeRow.period)
                           .join(DeliveryItemRow, DeliveryItemRow.notice_id == NoticeRow.id)
                           .where(DeliveryItemRow.delivery_id == did, NoticeRow.unit == unit,
                                  col(NoticeRow.instance_id).is_not(None))).all()
        sent_on = local(sent_at).date() if sent_at is not None else None
        out[mid] = DigestRef(unit, tuple(dict.fromkeys((o, u, p) for o, u, p in keys)), sent_on)
    return out


def open_items(ses: Session, units: list[str]) -> list[OpenItem]:
    """What the units still owe (not closed, not waived, still asked for by the rules), each with
    the first day it can be reported (a mail is not matched by sender to next year's periods)."""
    if not units:
        return []
    rows = ses.execute(sa.select(InstanceRow.unit, InstanceRow.obligation, InstanceRow.period, InstanceRow.due,
                                 InstanceRow.id, InstanceRow.period_start, InstanceRow.period_end,
                                 InstanceRow.cutoff_start)
                       .where(col(InstanceRow.unit).in_(units), InstanceRow.active == True,  # noqa: E712
                              unindexed(InstanceRow.closed) == False,                            # noqa: E712
                              InstanceRow.waived == False)).all()                                # noqa: E712
    # Through these units' rows (unit, due), sorted here: asked for in due order, or with ``closed``
    # where an index can use it, SQLite walked every open instance of every unit along (closed,
    # active, due) — the whole backlog.
    rows = sorted(rows, key=lambda r: (r[3], r[4]))
    return [OpenItem(u, o, p, d, i, earliest_submission(ps, pe, d, cs)) for u, o, p, d, i, ps, pe, cs in rows]


def context_for(ses: Session, pack: RulePack, mail: InboundMail, on: date | None = None) -> MatchContext:
    """``on``: the day the mail arrived (Vietnam's time)."""
    digests = _digest_refs(ses, mail)
    units = list(dict.fromkeys([r.unit for r in digests.values()] + units_for_address(pack, mail.from_addr)))
    return MatchContext(open_items(ses, units), digests, on)


def seen(ses: Session, message_id: str) -> InboundMailRow | None:
    return ses.exec(select(InboundMailRow).where(InboundMailRow.message_id == message_id)).first()


# ─── recording ──────────────────────────────────────────────────────────────────────────────────
def raw_dir(settings: Settings) -> Path:
    d = settings.web.upload_dir / RAW_DIR
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def keep_raw(settings: Settings, raw: bytes, sha256: str) -> str:
    """The message as received, written once (0600, fsync, atomic rename) under its hash: a rerun
    after a crash finds it there; a file without its row is harmless."""
    name = f"{sha256}.eml"
    path = raw_dir(settings) / name
    if not path.exists():
        attachments.write_private(path, raw)
    return name


def read_raw(settings: Settings, row: InboundMailRow) -> bytes | None:
    if not row.stored_name:
        return None
    path = settings.web.upload_dir / RAW_DIR / Path(row.stored_name).name
    try:
        return path.read_bytes()
    except OSError:
        return None


def _files_summary(mail: InboundMail) -> list[dict]:
    out = [{"name": a.filename, "size": a.size, "sha256": a.sha256, "type": a.content_type, "archive": a.archive}
           for a in mail.attachments if not a.inline]
    out += [{"name": s.filename, "size": s.size, "skipped": s.reason} for s in mail.skipped]
    return out


def received_on(received_at: datetime, now: datetime) -> date:
    """The day the report arrived, in Vietnam's time; never after "now" (a simulated clock)."""
    return min(local(received_at), local(now)).date()


def _note(mail: InboundMail) -> str:
    who = f"{mail.from_name} <{mail.from_addr}>" if mail.from_name else (mail.from_addr or "không rõ người gửi")
    subject = mail.subject or "(không có tiêu đề)"
    return f"Nhận qua thư điện tử từ {who}: “{subject[:300]}”"


def _store_files(ses: Session, settings: Settings, mail: InboundMail, inst: InstanceRow, now: datetime, actor: str,
                 *, confirmation_id: int | None = None, submission_id: int | None = None) -> list[str]:
    """The mail's files stored for one report; what cannot be accepted (type, size) is named."""
    problems: list[str] = []
    for a in mail.attachments:
        if a.inline:
            continue
        if a.archive:
            problems.append(f"tệp nén “{a.filename}” không được giải nén hay lưu làm báo cáo; xem thư gốc")
            continue
        try:
            attachments.store(ses, settings, a.data, a.filename, instance_id=inst.id or 0, unit=inst.unit, now=now,
                              actor=actor, confirmation_id=confirmation_id, submission_id=submission_id)
        except InvalidInput as exc:
            problems.append(str(exc))
    return problems


def _actor(mail: InboundMail) -> str:
    return f"mail:{mail.from_addr or 'khong-ro'}"[:80]


def _row(settings: Settings, mail: InboundMail, raw: bytes, received_at: datetime, now: datetime, folder: str,
         uid: int | None, **outcome: object) -> InboundMailRow:
    """The row of one received message (its bytes kept on disk under their hash) with ``outcome``
    (state, via, reason …) as the caller decided it."""
    return InboundMailRow(message_id=mail.message_id, raw_sha256=mail.raw_sha256, raw_size=mail.raw_size,
                          stored_name=keep_raw(settings, raw, mail.raw_sha256), folder=folder[:200], uid=uid,
                          received_at=aware(received_at), sender=mail.from_addr[:320],
                          sender_name=mail.from_name[:200], subject=mail.subject,
                          files=json.dumps(_files_summary(mail), ensure_ascii=False), created_at=now, **outcome)


def record(ses: Session, settings: Settings, pack: RulePack, mail: InboundMail, m: Match, raw: bytes, *,
           received_at: datetime, now: datetime, folder: str = "INBOX", uid: int | None = None) -> InboundMailRow:
    """The row for one mail and, when confident, its items "chờ xác nhận" (the caller commits)."""
    state = {"confident": RECORDED, "ignored": IGNORED}.get(m.status, QUEUED)
    problems = list(mail.problems)
    reason = m.reason
    today = received_on(received_at, now)
    items: list[InstanceRow] = []
    if state == RECORDED:
        for c in m.candidates:
            inst = ses.get(InstanceRow, c.item.instance_id) if c.item.instance_id else None
            if inst is None or inst.closed or inst.waived or not inst.active:
                continue
            earliest = earliest_submission(inst.period_start, inst.period_end, inst.due, inst.cutoff_start)
            if today < earliest:
                state, reason = QUEUED, (f"{reason}; nhưng thư đến ngày {today:%d/%m/%Y}, trước khi kỳ "
                                         f"{inst.period_label} có thể báo cáo (từ {earliest:%d/%m/%Y}): cần xem lại")
                items = []
                break
            items.append(inst)
        if state == RECORDED and not items:
            state, reason = QUEUED, f"{reason}; các báo cáo này đã được ghi nhận trong lúc chờ: cần xem lại"
    row = _row(settings, mail, raw, received_at, now, folder, uid, state=state, via=m.via, reason=reason,
               ref=(m.so_ky_hieu or None) and m.so_ky_hieu[:80], units=json.dumps(list(m.units)),
               candidates=json.dumps([[c.item.instance_id, c.score] for c in m.candidates if c.item.instance_id]))
    ses.add(row)
    ses.flush()
    actor = _actor(mail)
    for inst in items:
        supersede_pending(ses, inst.id or 0, now, actor)
        conf = ConfirmationRow(instance_id=inst.id or 0, unit=inst.unit, link_id=None, submitted_on=today,
                               ref=row.ref, note=_note(mail), state="pending", created_at=now, inbound_id=row.id)
        ses.add(conf)
        ses.flush()
        problems += _store_files(ses, settings, mail, inst, now, actor, confirmation_id=conf.id)
        mark_awaiting(ses, settings, inst, today, now)
        ses.add(AuditRow(at=now, actor=actor, action="confirm_mail", entity="instance",
                         entity_id=f"{inst.obligation}|{inst.unit}|{inst.period}",
                         detail=json.dumps({"confirmation": conf.id, "mail": row.id, "submitted_on": today.isoformat(),
                                            "ref": row.ref}, ensure_ascii=False)))
    row.problems = json.dumps(list(dict.fromkeys(problems)), ensure_ascii=False)
    ses.add(row)
    return row


def record_failure(ses: Session, settings: Settings, mail: InboundMail, raw: bytes, why: str, *,
                   received_at: datetime, now: datetime, folder: str, uid: int | None) -> InboundMailRow:
    """A message the reader could not handle (a fault of ours): kept in the queue, never lost."""
    row = _row(settings, mail, raw, received_at, now, folder, uid, state=QUEUED, via="none",
               reason=f"Không xử lý tự động được ({why[:300]}): cần xem và phân loại",
               problems=json.dumps(list(mail.problems), ensure_ascii=False))
    ses.add(row)
    return row


# ─── the queue ──────────────────────────────────────────────────────────────────────────────────
@dataclass
class CandidateView:
    instance_id: int
    unit_name: str
    title: str
    period_label: str
    due: date
    open: bool

    @property
    def text(self) -> str:
        return f"{self.unit_name} – {self.title} – {self.period_label} (hạn {self.due:%d/%m/%Y})"


@dataclass
class MailView:
    id: int
    number: int                  # shown to people: the row's id is the mail's number ("thư số 12")
    state: str
    state_vi: str
    received_at: datetime        # Vietnam's time
    sender: str
    sender_name: str
    subject: str
    reason: str
    ref: str | None
    units: list[str]             # names
    candidates: list[CandidateView]
    files: list[dict]
    problems: list[str]
    decided_by: str | None = None
    decided_at: datetime | None = None
    items: list[str] = field(default_factory=list)     # what it was recorded for (names)


def _view(ses: Session, pack: RulePack, r: InboundMailRow) -> MailView:
    def unit_name(uid: str) -> str:
        u = pack.units.get(uid)
        return u.name if u else uid

    cands: list[CandidateView] = []
    ids = [int(c[0]) for c in json.loads(r.candidates or "[]") if c and c[0]]
    if ids:
        insts = {i.id: i for i in ses.exec(select(InstanceRow).where(col(InstanceRow.id).in_(ids))).all()}
        for i in ids:
            inst = insts.get(i)
            if inst is None:
                continue
            ob = pack.obligations.get(inst.obligation)
            cands.append(CandidateView(i, unit_name(inst.unit), ob.title if ob else inst.obligation, inst.period_label,
                                       inst.due, inst.active and not inst.closed and not inst.waived))
    items = []
    for c in ses.exec(select(ConfirmationRow).where(ConfirmationRow.inbound_id == r.id)).all():
        inst = ses.get(InstanceRow, c.instance_id)
        if inst is not None:
            ob = pack.obligations.get(inst.obligation)
            items.append(f"{unit_name(inst.unit)} – {ob.title if ob else inst.obligation} – {inst.period_label}")
    return MailView(r.id or 0, r.id or 0, r.state, STATE_VI.get(r.state, r.state), local(r.received_at), r.sender,
                    r.sender_name, r.subject, r.reason, r.ref, [unit_name(u) for u in json.loads(r.units or "[]")],
                    cands, json.loads(r.files or "[]"), json.loads(r.problems or "[]"), r.decided_by,
                    local(r.decided_at) if r.decided_at else None, items)


def listing(settings: Settings, pack: RulePack, states: tuple[str, ...] = (QUEUED,), limit: int = 200) -> list[MailView]:
    """Mails in these states, newest first."""
    with open_session(settings) as ses:
        rows = ses.exec(select(InboundMailRow).where(col(InboundMailRow.state).in_(states))
                        .order_by(col(InboundMailRow.received_at).desc(), col(InboundMailRow.id).desc())
                        .limit(limit)).all()
        return [_view(ses, pack, r) for r in rows]


def one(settings: Settings, pack: RulePack, mail_id: int) -> MailView:
    with open_session(settings) as ses:
        r = ses.get(InboundMailRow, mail_id)
        if r is None:
            raise InvalidInput(f"không có thư số {mail_id} trong hộp thư đến")
        return _view(ses, pack, r)


def counts(settings: Settings) -> dict[str, int]:
    with open_session(settings) as ses:
        return {s: n for s, n in ses.execute(sa.select(InboundMailRow.state, sa.func.count())
                                             .group_by(InboundMailRow.state)).all()}


def _queued(ses: Session, mail_id: int) -> InboundMailRow:
    r = ses.get(InboundMailRow, mail_id)
    if r is None:
        raise InvalidInput(f"không có thư số {mail_id} trong hộp thư đến")
    if r.state != QUEUED:
        raise InvalidInput(f"thư số {mail_id} đã được xử lý ({STATE_VI.get(r.state, r.state).lower()})")
    return r


def instance_for(settings: Settings, pack: RulePack, obligation: str, unit: str, period: str, now: datetime) -> int:
    """The report a secretary names by unit, obligation and period (any period form), for ``assign``;
    a report dondoc did not track yet is created, stamped ``now``."""
    from engine.app.services import check_period
    from engine.submissions import resolve_instance

    key = check_period(pack, obligation, period)
    with open_session(settings) as ses:
        try:
            row = resolve_instance(ses, pack, obligation, unit, key, now)
        except InputError as exc:
            raise InvalidInput(str(exc)) from None
        ses.commit()
        return row.id or 0


@dataclass
class Assigned:
    mail_id: int
    items: list[str]             # "unit – title – period", what was recorded


def assign(settings: Settings, pack: RulePack, mail_id: int, instance_ids: list[int], now: datetime,
           actor: str) -> Assigned:
    """A secretary's choice for a queued mail: the submission of each chosen report is recorded with
    the day the mail arrived and its số ký hiệu (on time or late by that day), with the mail's files."""
    if not instance_ids:
        raise InvalidInput("cần chọn ít nhất một báo cáo cho thư này")
    with open_session(settings) as ses:
        r = _queued(ses, mail_id)
        raw = read_raw(settings, r)
        mail = parse(raw, limits(settings)) if raw is not None else None
        day = received_on(r.received_at, now)
        insts: list[InstanceRow] = []
        for iid in dict.fromkeys(instance_ids):
            inst = ses.get(InstanceRow, iid)
            if inst is None or not inst.active:
                raise InvalidInput("không có kỳ báo cáo đã chọn (hoặc quy tắc không còn yêu cầu)")
            if inst.waived:
                raise InvalidInput(f"{inst.period_label}: báo cáo này đã được miễn")
            earliest = earliest_submission(inst.period_start, inst.period_end, inst.due, inst.cutoff_start)
            if day < earliest:
                raise InvalidInput(f"thư đến ngày {day:%d/%m/%Y}, trước khi kỳ {inst.period_label} có thể báo cáo "
                                   f"(từ {earliest:%d/%m/%Y}): hãy chọn kỳ khác")
            insts.append(inst)
        r.state, r.decided_at, r.decided_by = ASSIGNED, now, actor[:80]
        ses.add(r)
        done: list[str] = []
        for inst in insts:
            conf = ConfirmationRow(instance_id=inst.id or 0, unit=inst.unit, submitted_on=day, ref=r.ref,
                                   note=_note(mail) if mail else f"Nhận qua thư điện tử: “{r.subject[:300]}”",
                                   state="pending", created_at=now, inbound_id=r.id)
            ses.add(conf)
            ses.flush()
            if mail is not None:
                _store_files(ses, settings, mail, inst, now, actor, confirmation_id=conf.id)
            ses.add(AuditRow(at=now, actor=actor[:80], action="assign_mail", entity="instance",
                             entity_id=f"{inst.obligation}|{inst.unit}|{inst.period}",
                             detail=json.dumps({"mail": r.id, "submitted_on": day.isoformat(), "ref": r.ref},
                                               ensure_ascii=False)))
            sub = SubmissionIn(obligation=inst.obligation, unit=inst.unit, period=inst.period, submitted_on=day,
                               ref=r.ref, note=conf.note)
            try:
                record_submission(ses, pack, sub, now, actor, confirmation_id=conf.id)   # commits
            except InputError as exc:
                raise InvalidInput(str(exc)) from None
            ob = pack.obligations.get(inst.obligation)
            u = pack.units.get(inst.unit)
            done.append(f"{u.name if u else inst.unit} – {ob.title if ob else inst.obligation} – {inst.period_label}")
        ses.commit()
        return Assigned(mail_id, done)


def dismiss(settings: Settings, mail_id: int, reason: str, now: datetime, actor: str) -> None:
    """A queued mail that is not a report (a question, a duplicate …): kept, marked, audited."""
    why = " ".join((reason or "").split())
    if len(why) > MAX_REASON:
        raise InvalidInput(f"lý do dài quá {MAX_REASON} ký tự")
    with open_session(settings) as ses:
        r = _queued(ses, mail_id)
        r.state, r.decided_at, r.decided_by = DISMISSED, now, actor[:80]
        if why:
            r.reason = f"{r.reason} — {why}"
        ses.add(r)
        ses.add(AuditRow(at=now, actor=actor[:80], action="dismiss_mail", entity="inbound_mail", entity_id=str(r.id),
                         detail=json.dumps({"reason": why}, ensure_ascii=False)))
        ses.commit()


def raw_of(settings: Settings, mail_id: int) -> tuple[str, bytes]:
    """The message as received, for the secretariat to open (download name, bytes)."""
    with open_session(settings) as ses:
        r = ses.get(InboundMailRow, mail_id)
        if r is None:
            raise InvalidInput(f"không có thư số {mail_id} trong hộp thư đến")
        raw = read_raw(settings, r)
    if raw is None or hashlib.sha256(raw).hexdigest() != r.raw_sha256:
        raise ServiceError("không còn tệp thư gốc trên máy chủ (hoặc tệp đã bị thay đổi)")
    return f"thu-{r.id}.eml", raw
