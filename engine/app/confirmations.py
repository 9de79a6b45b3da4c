"""Units answer from their reminder: signed links, a unit's "đã gửi", accepted or returned.

Why this shape:
* A link is a row (``unit_links``: one unit, the instances of one digest, an expiry, a revocation)
  named by a token signed with ``DONDOC_WEB_SECRET`` (itsdangerous, salt ``dondoc-unit-link``,
  payload ``[link id, nonce]``). The signature stops guessing and tampering; the row decides scope,
  expiry and revocation, so the token itself carries no rights that cannot be taken back. One row
  per (digest, unit): a retried digest carries the same URL.
* Every action through a link checks that the instance is one of the link's AND belongs to the
  link's unit: a link for one unit never shows or changes another unit's report.
* The unit's date is what counts: accepting records the submission with that date through the same
  path as ``dondoc submit`` (engine.submissions.record_submission), so it is on time or late by it.
* A return is mailed by the normal delivery pass: a "returned" notice (one per confirmation) that
  the unit's next digest carries, with the reason and that digest's fresh link.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.app import attachments
from engine.app.config import Settings
from engine.app.services import InvalidInput, ServiceError, open_session
from engine.clock import TZ, aware, local
from engine.limits import YEARS_VI, year_ok
from engine.rules_loader import RulePack
from engine.state import AttachmentRow, AuditRow, ConfirmationRow, InstanceRow, UnitLinkRow, UnitRow
from engine.status import classify
from engine.submissions import InputError, SubmissionIn, earliest_submission, record_submission
from engine.vi import REPORT_STATUS
from notifications import outbox
from notifications.delivery import LinkMaker
from notifications.models import DeliveryRow

SALT = "dondoc-unit-link"
LINK_PATH = "/xn/"
MAX_REF, MAX_NOTE, MAX_REASON = 80, 2000, 2000
PENDING, ACCEPTED, RETURNED, SUPERSEDED = "pending", "accepted", "returned", "superseded"

Problem = Literal["tampered", "expired", "revoked", "unknown", "disabled"]

# What a unit reads when its link cannot be used (title, text, HTTP status). Nothing is changed.
PROBLEMS: dict[str, tuple[str, str, int]] = {
    "tampered": ("Đường dẫn không hợp lệ",
                 "Đường dẫn này không đúng hoặc đã bị sửa, nên không dùng được. Hãy mở lại đường dẫn “Báo đã gửi” "
                 "trong thư nhắc (chép đủ cả dòng), hoặc liên hệ Văn phòng.", 403),
    "unknown": ("Đường dẫn không hợp lệ",
                "Hệ thống không có đường dẫn này. Hãy dùng đường dẫn “Báo đã gửi” trong thư nhắc gần nhất, hoặc "
                "liên hệ Văn phòng.", 403),
    "expired": ("Đường dẫn đã hết hạn",
                "Đường dẫn này đã hết hạn sử dụng. Thư nhắc gần nhất có đường dẫn mới; nếu không có, xin liên hệ "
                "Văn phòng.", 410),
    "revoked": ("Đường dẫn đã bị thu hồi",
                "Văn phòng đã thu hồi đường dẫn này. Hãy dùng đường dẫn trong thư nhắc gần nhất, hoặc liên hệ "
                "Văn phòng.", 410),
    "disabled": ("Chức năng chưa bật",
                 "Hệ thống chưa bật chức năng báo đã gửi qua đường dẫn. Xin gửi báo cáo và báo lại cho Văn phòng "
                 "như thường lệ.", 404),
}


# ─── errors ─────────────────────────────────────────────────────────────────────────────────────
class LinkFailure(ServiceError):
    """The link cannot be used (typed: ``problem``); the page says so and changes nothing."""

    def __init__(self, problem: Problem, expired_at: datetime | None = None):
        self.problem = problem
        self.title, text, self.status = PROBLEMS[problem]
        if problem == "expired" and expired_at is not None:
            text = f"Đường dẫn này đã hết hạn ngày {expired_at.astimezone(TZ):%d/%m/%Y}. " + text.split(". ", 1)[1]
        self.expired_at = expired_at
        super().__init__(text)


class NotInLink(ServiceError):
    """An instance (or file) the link does not cover, or another unit's: as if it did not exist."""

    def __init__(self) -> None:
        super().__init__("Không có báo cáo này trong đường dẫn của đơn vị.")


# ─── signing ────────────────────────────────────────────────────────────────────────────────────
def enabled(settings: Settings) -> bool:
    return bool(settings.web.secret_value())


def _secret(settings: Settings) -> str:
    secret = settings.web.secret_value()
    if not secret:
        raise LinkFailure("disabled")
    return secret


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(_secret(settings), salt=SALT)


def token_for(settings: Settings, link_id: int, nonce: str) -> str:
    return str(_serializer(settings).dumps([link_id, nonce]))


def url_for(settings: Settings, link_id: int, nonce: str) -> str:
    return settings.web.base_url + LINK_PATH + token_for(settings, link_id, nonce)


def csrf_for(settings: Settings, link_id: int, nonce: str) -> str:
    """The unit page's form token: derived from the link (the unit has no session)."""
    msg = f"csrf|{link_id}|{nonce}".encode()
    return hmac.new(_secret(settings).encode(), msg, hashlib.sha256).hexdigest()


# ─── links in digests ───────────────────────────────────────────────────────────────────────────
def link_for_digest(ses: Session, settings: Settings, delivery_id: int, unit: str, instance_ids: list[int],
                    now: datetime) -> str:
    """The URL of the link of one digest to one unit (created on first use; a retry reuses it, and
    a digest that gained items — notices merged while it waited — widens its scope). Adds the row to
    ``ses`` and flushes; the caller commits (the delivery pass: with the in-flight mark)."""
    ids = sorted({int(i) for i in instance_ids})
    row = ses.exec(select(UnitLinkRow).where(UnitLinkRow.delivery_id == delivery_id, UnitLinkRow.unit == unit)).first()
    if row is None:
        row = UnitLinkRow(unit=unit, delivery_id=delivery_id, instance_ids=json.dumps(ids), nonce=secrets.token_hex(12),
                          purpose="digest", created_at=now, expires_at=now + timedelta(days=settings.web.link_days))
        ses.add(row)
        ses.flush()
    else:
        have = set(json.loads(row.instance_ids or "[]"))
        if not set(ids) <= have:
            row.instance_ids = json.dumps(sorted(have | set(ids)))
            ses.add(row)
            ses.flush()
    assert row.id is not None
    return url_for(settings, row.id, row.nonce)


def links_for_digests(ses: Session, settings: Settings, wanted: list[tuple[int, str, list[int]]],
                      now: datetime) -> dict[tuple[int, str], str]:
    """``link_for_digest`` for a batch of digests (delivery id, unit, instance ids): one SELECT for
    the rows they already have, the missing and widened ones written in one flush. Same rows, same
    URLs as one call per digest; the caller commits (the delivery pass: with the next in-flight
    mark, before any of these URLs leaves)."""
    want: dict[tuple[int, str], list[int]] = {}
    for did, unit, ids in wanted:
        if did is not None and ids:
            want[(int(did), unit)] = sorted({int(i) for i in ids} | set(want.get((int(did), unit), [])))
    if not want:
        return {}
    rows: dict[tuple[int, str], UnitLinkRow] = {}
    dids = sorted({d for d, _ in want})
    for i in range(0, len(dids), 500):        # bounded IN lists
        for row in ses.exec(select(UnitLinkRow).where(col(UnitLinkRow.delivery_id).in_(dids[i:i + 500]))).all():
            key = (row.delivery_id, row.unit)
            if key in want and key not in rows:   # the oldest row per (digest, unit), as .first() would
                rows[key] = row
    changed = False
    for key, ids in want.items():
        row = rows.get(key)
        if row is None:
            row = rows[key] = UnitLinkRow(unit=key[1], delivery_id=key[0], instance_ids=json.dumps(ids),
                                          nonce=secrets.token_hex(12), purpose="digest", created_at=now,
                                          expires_at=now + timedelta(days=settings.web.link_days))
            ses.add(row)
            changed = True
        else:
            have = set(json.loads(row.instance_ids or "[]"))
            if not set(ids) <= have:
                row.instance_ids = json.dumps(sorted(have | set(ids)))
                ses.add(row)
                changed = True
    if changed:
        ses.flush()
    return {key: url_for(settings, row.id, row.nonce) for key, row in rows.items() if row.id is not None}


class DigestLinks:
    """The delivery pass's LinkMaker: ``prepare`` makes the links of a chunk of digests at once
    (``links_for_digests``, before any of them is sent); a call for a digest it covers then costs no
    query. A digest it does not cover (or whose instances grew since) goes through
    ``link_for_digest`` as before."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._ready: dict[tuple[int, str], tuple[frozenset[int], str]] = {}

    def prepare(self, ses: Session, wanted: list[tuple[int, str, list[int]]], now: datetime) -> None:
        urls = links_for_digests(ses, self.settings, wanted, now)
        for did, unit, ids in wanted:
            url = urls.get((did, unit))
            if url is not None:
                self._ready[(did, unit)] = (frozenset(int(i) for i in ids), url)

    def __call__(self, ses: Session, d: DeliveryRow, unit: str, instance_ids: list[int], now: datetime) -> str | None:
        if d.id is None or not instance_ids:
            return None
        ready = self._ready.pop((d.id, unit), None)
        if ready is not None and {int(i) for i in instance_ids} <= ready[0]:
            return ready[1]
        return link_for_digest(ses, self.settings, d.id, unit, instance_ids, now)


def link_maker(settings: Settings) -> LinkMaker | None:
    """What the delivery pass calls for each digest with reports of the recipient's own; None
    when no secret is configured (digests then carry no link). It also offers ``prepare`` (a
    chunk's links in one go: ``DigestLinks``)."""
    if not enabled(settings):
        return None
    return DigestLinks(settings)


# ─── resolving a token ──────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class Link:
    id: int
    unit: str
    instance_ids: frozenset[int]
    nonce: str
    expires_at: datetime
    csrf: str


def resolve_in(ses: Session, settings: Settings, token: str, now: datetime) -> Link:
    """The link a token names, or LinkFailure (tampered, unknown, revoked, expired)."""
    if not token or len(token) > 400:
        raise LinkFailure("tampered")
    try:
        payload = _serializer(settings).loads(token)
    except BadSignature:
        raise LinkFailure("tampered") from None
    if (not isinstance(payload, list) or len(payload) != 2 or not isinstance(payload[0], int)
            or isinstance(payload[0], bool) or not isinstance(payload[1], str)):
        raise LinkFailure("tampered")
    row = ses.get(UnitLinkRow, payload[0])
    if row is None or not hmac.compare_digest(row.nonce, payload[1]):
        raise LinkFailure("unknown")
    if row.revoked_at is not None:
        raise LinkFailure("revoked")
    if aware(row.expires_at) <= aware(now):
        raise LinkFailure("expired", row.expires_at)
    return Link(row.id or 0, row.unit, frozenset(int(i) for i in json.loads(row.instance_ids or "[]")), row.nonce,
                row.expires_at, csrf_for(settings, row.id or 0, row.nonce))


def resolve(settings: Settings, token: str, now: datetime) -> Link:
    with open_session(settings) as ses:
        return resolve_in(ses, settings, token, now)


def revoke(settings: Settings, link_id: int, now: datetime, actor: str) -> None:
    """End a link at once (a mail sent to the wrong address): it then gives the "thu hồi" page."""
    with open_session(settings) as ses:
        row = ses.get(UnitLinkRow, link_id)
        if row is None:
            raise InvalidInput("không có đường dẫn này")
        if row.revoked_at is None:
            row.revoked_at = now
            ses.add(row)
            ses.add(AuditRow(at=now, actor=actor, action="revoke_link", entity="unit_link", entity_id=str(link_id),
                             detail=json.dumps({"unit": row.unit}, ensure_ascii=False)))
            ses.commit()


def _owned(ses: Session, link: Link, instance_id: int) -> InstanceRow:
    """The instance, if this link covers it AND it is the link's unit's; NotInLink otherwise."""
    if instance_id not in link.instance_ids:
        raise NotInLink()
    inst = ses.get(InstanceRow, instance_id)
    if inst is None or inst.unit != link.unit:
        raise NotInLink()
    return inst


# ─── the unit's page ────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class FileInfo:
    id: int
    filename: str
    size: int
    created_at: datetime

    @property
    def size_text(self) -> str:
        """"35 KB", "1,2 MB"."""
        if self.size < 1024 * 1024:
            return f"{max(1, round(self.size / 1024))} KB"
        return f"{self.size / 1048576:.1f} MB".replace(".", ",")


@dataclass
class UnitItem:
    instance_id: int
    title: str
    period_label: str
    due: date
    status: str
    status_vi: str
    can_confirm: bool            # open: the unit may say "đã gửi" (again, to correct what it said)
    pending_on: date | None = None      # its "đã gửi" waiting for the secretariat: the date it gave
    pending_ref: str | None = None
    returned_reason: str | None = None  # the last answer was a return: why
    submitted_on: date | None = None    # recorded by the secretariat
    files: list[FileInfo] = field(default_factory=list)


@dataclass
class UnitPage:
    unit: str
    unit_name: str
    expires_at: datetime
    items: list[UnitItem]
    csrf: str
    max_upload_mb: int
    accept: str = attachments.ACCEPT_ATTR
    accepted_vi: str = attachments.ACCEPTED_VI


def unit_page(settings: Settings, pack: RulePack, link: Link, today: date) -> UnitPage:
    """Exactly the link's items (its unit's only), each with its status as of today."""
    with open_session(settings) as ses:
        rows = ses.exec(select(InstanceRow).where(col(InstanceRow.id).in_(sorted(link.instance_ids)),
                                                  InstanceRow.unit == link.unit)
                        .order_by(InstanceRow.due, InstanceRow.obligation)).all() if link.instance_ids else []
        ids = [r.id for r in rows]
        last: dict[int, ConfirmationRow] = {}
        files: dict[int, list[FileInfo]] = {}
        if ids:
            for c in ses.exec(select(ConfirmationRow).where(col(ConfirmationRow.instance_id).in_(ids),
                                                            ConfirmationRow.unit == link.unit)
                              .order_by(ConfirmationRow.id)).all():
                last[c.instance_id] = c
            for a in ses.exec(select(AttachmentRow).where(col(AttachmentRow.instance_id).in_(ids),
                                                          AttachmentRow.unit == link.unit)
                              .order_by(AttachmentRow.id)).all():
                files.setdefault(a.instance_id, []).append(FileInfo(a.id or 0, a.filename, a.size, local(a.created_at)))
        unit_row = ses.get(UnitRow, link.unit)
    unit = pack.units.get(link.unit)
    name = unit.name if unit else (unit_row.name if unit_row else link.unit)
    items = []
    for r in rows:
        ob = pack.obligations.get(r.obligation)
        status = classify(pack, r.due, today, r.submitted_on, r.waived, r.obligation, r.awaiting_since)[0]
        c = last.get(r.id or 0)
        items.append(UnitItem(
            r.id or 0, ob.title if ob else r.obligation, r.period_label, r.due, status, REPORT_STATUS.get(status, status),
            can_confirm=r.active and not r.closed and not r.waived,
            pending_on=c.submitted_on if c is not None and c.state == PENDING else None,
            pending_ref=c.ref if c is not None and c.state == PENDING else None,
            returned_reason=c.reason if c is not None and c.state == RETURNED else None,
            submitted_on=r.submitted_on if r.closed else None, files=files.get(r.id or 0, [])))
    return UnitPage(link.unit, name, local(link.expires_at), items, link.csrf, settings.web.max_upload_mb)


def _clean(text: str | None, limit: int, what: str) -> str | None:
    t = " ".join((text or "").split()) if what != "ghi chú" else (text or "").strip()
    if not t:
        return None
    if len(t) > limit:
        raise InvalidInput(f"{what} dài quá {limit} ký tự")
    return t


def check_unit_date(inst: InstanceRow, submitted_on: date, now: datetime) -> None:
    """The date a unit gives: not in the future, not before its period could be reported."""
    today = now.astimezone(TZ).date()
    if not year_ok(submitted_on.year):
        raise InvalidInput(f"ngày gửi {submitted_on:%d/%m/%Y}: năm ngoài phạm vi hỗ trợ ({YEARS_VI})")
    if submitted_on > today:
        raise InvalidInput(f"ngày gửi {submitted_on:%d/%m/%Y} ở tương lai (hôm nay {today:%d/%m/%Y})")
    earliest = earliest_submission(inst.period_start, inst.period_end, inst.due, inst.cutoff_start)
    if submitted_on < earliest:
        raise InvalidInput(f"ngày gửi {submitted_on:%d/%m/%Y} trước khi kỳ {inst.period_label} bắt đầu "
                           f"(sớm nhất {earliest:%d/%m/%Y})")


def mark_awaiting(ses: Session, settings: Settings, inst: InstanceRow, day: date, now: datetime) -> None:
    """The report is "Đã gửi – chờ xác nhận" from ``day``; its reminders pause unless the
    configuration waits for the secretariat's acceptance."""
    inst.awaiting_since = day
    inst.chase_paused = settings.web.stop_reminders_at == "confirmation"
    inst.updated_at = now
    ses.add(inst)


def supersede_pending(ses: Session, instance_id: int, now: datetime, actor: str) -> None:
    """A newer "đã gửi" for the same report (from the link or by mail) replaces a pending one."""
    for old in ses.exec(select(ConfirmationRow).where(ConfirmationRow.instance_id == instance_id,
                                                      ConfirmationRow.state == PENDING)).all():
        old.state, old.decided_at, old.decided_by = SUPERSEDED, now, actor[:80]
        ses.add(old)


def confirm(settings: Settings, token: str, instance_id: int, submitted_on: date, ref: str | None, note: str | None,
            file: tuple[bytes, str | None] | None, now: datetime) -> ConfirmationRow:
    """The unit says "đã gửi" for one report of its link: a pending confirmation (an earlier pending
    one is superseded), the report "Đã gửi – chờ xác nhận", its reminders paused when
    ``web.stop_reminders_at`` is "confirmation"; the file, if any, checked and stored."""
    ref = _clean(ref, MAX_REF, "số ký hiệu")
    note = _clean(note, MAX_NOTE, "ghi chú")
    with open_session(settings) as ses:
        link = resolve_in(ses, settings, token, now)
        inst = _owned(ses, link, instance_id)
        if inst.closed or inst.waived or not inst.active:
            raise InvalidInput("báo cáo này đã được Văn phòng ghi nhận hoặc không còn phải nộp; không cần báo lại")
        check_unit_date(inst, submitted_on, now)
        actor = f"unit:{link.unit}"
        supersede_pending(ses, inst.id or 0, now, actor)
        conf = ConfirmationRow(instance_id=inst.id or 0, unit=link.unit, link_id=link.id, submitted_on=submitted_on,
                               ref=ref, note=note, state=PENDING, created_at=now)
        ses.add(conf)
        ses.flush()
        stored = None
        if file is not None and file[0]:
            stored = attachments.store(ses, settings, file[0], file[1], instance_id=inst.id or 0, unit=link.unit,
                                       now=now, actor=actor, confirmation_id=conf.id)
        mark_awaiting(ses, settings, inst, submitted_on, now)
        ses.add(AuditRow(at=now, actor=actor, action="confirm", entity="instance",
                         entity_id=f"{inst.obligation}|{inst.unit}|{inst.period}",
                         detail=json.dumps({"confirmation": conf.id, "submitted_on": submitted_on.isoformat(), "ref": ref,
                                            "note": note, "link": link.id,
                                            "file": ({"name": stored.filename, "sha256": stored.sha256, "size": stored.size}
                                                     if stored is not None else None)}, ensure_ascii=False)))
        ses.commit()
        return conf


def attachment_for_link(settings: Settings, token: str, attachment_id: int, now: datetime) -> AttachmentRow:
    """A file the unit itself attached to one of its link's reports; NotInLink for anything else."""
    with open_session(settings) as ses:
        link = resolve_in(ses, settings, token, now)
        row = ses.get(AttachmentRow, attachment_id)
        if row is None or row.unit != link.unit or row.instance_id not in link.instance_ids:
            raise NotInLink()
        _owned(ses, link, row.instance_id)
        return row


# ─── the secretariat's queue ────────────────────────────────────────────────────────────────────
@dataclass
class QueueItem:
    id: int
    unit: str
    unit_name: str
    title: str
    period_label: str
    due: date
    submitted_on: date
    ref: str | None
    note: str | None
    created_at: datetime
    would_be: str                # the status accepting it would give (by the date the unit gave)
    files: list[FileInfo] = field(default_factory=list)


def queue(settings: Settings, pack: RulePack) -> list[QueueItem]:
    """Pending confirmations, oldest first (what the secretariat must decide)."""
    with open_session(settings) as ses:
        rows = ses.execute(
            sa_select(ConfirmationRow.id, ConfirmationRow.unit, ConfirmationRow.submitted_on, ConfirmationRow.ref,
                      ConfirmationRow.note, ConfirmationRow.created_at, InstanceRow.obligation, InstanceRow.period_label,
                      InstanceRow.due)
            .join(InstanceRow, InstanceRow.id == ConfirmationRow.instance_id)
            .where(ConfirmationRow.state == PENDING).order_by(ConfirmationRow.created_at, ConfirmationRow.id)).all()
        files: dict[int, list[FileInfo]] = {}
        ids = [r[0] for r in rows]
        if ids:
            for a in ses.exec(select(AttachmentRow).where(col(AttachmentRow.confirmation_id).in_(ids))
                              .order_by(AttachmentRow.id)).all():
                files.setdefault(a.confirmation_id or 0, []).append(FileInfo(a.id or 0, a.filename, a.size,
                                                                          local(a.created_at)))
        names = {u: n for u, n in ses.execute(sa_select(UnitRow.id, UnitRow.name)).all()}
    out = []
    for cid, unit, on, ref, note, created, ob_id, label, due in rows:
        ob = pack.obligations.get(ob_id)
        u = pack.units.get(unit)
        out.append(QueueItem(cid, unit, u.name if u else names.get(unit, unit), ob.title if ob else ob_id, label, due,
                             on, ref, note, local(created), "done_on_time" if on <= due else "done_late",
                             files.get(cid, [])))
    return out


def _pending(ses: Session, confirmation_id: int) -> ConfirmationRow:
    c = ses.get(ConfirmationRow, confirmation_id)
    if c is None:
        raise InvalidInput("không có xác nhận này")
    if c.state != PENDING:
        raise InvalidInput("xác nhận này đã được xử lý (chấp nhận, trả lại, hoặc đơn vị đã báo lại)")
    return c


def accept(settings: Settings, pack: RulePack, confirmation_id: int, now: datetime, actor: str) -> InstanceRow:
    """Record the submission with the date and số ký hiệu the unit gave (the path of `dondoc
    submit`: on time or late by that date); the confirmation becomes "accepted" and its files
    belong to the submission (engine.submissions.settle_confirmations)."""
    with open_session(settings) as ses:
        c = _pending(ses, confirmation_id)
        inst = ses.get(InstanceRow, c.instance_id)
        if inst is None:
            raise InvalidInput("không còn kỳ báo cáo tương ứng")
        sub = SubmissionIn(obligation=inst.obligation, unit=inst.unit, period=inst.period, submitted_on=c.submitted_on,
                           ref=c.ref, note=c.note)
        try:
            return record_submission(ses, pack, sub, now, actor, confirmation_id=c.id)
        except InputError as exc:
            raise InvalidInput(str(exc)) from None


def return_(settings: Settings, confirmation_id: int, reason: str, now: datetime, actor: str) -> ConfirmationRow:
    """Return a unit's "đã gửi" with a reason: the report is open again (reminders resume), and the
    unit is mailed the reason with a fresh link by the next delivery pass ("returned" notice)."""
    why = (reason or "").strip()
    if not why:
        raise InvalidInput("cần ghi lý do trả lại để đơn vị biết cần sửa gì")
    if len(why) > MAX_REASON:
        raise InvalidInput(f"lý do trả lại dài quá {MAX_REASON} ký tự")
    with open_session(settings) as ses:
        c = _pending(ses, confirmation_id)
        inst = ses.get(InstanceRow, c.instance_id)
        if inst is None:
            raise InvalidInput("không còn kỳ báo cáo tương ứng")
        c.state, c.reason, c.decided_at, c.decided_by = RETURNED, why, now, actor[:80]
        ses.add(c)
        inst.awaiting_since, inst.chase_paused, inst.updated_at = None, False, now
        ses.add(inst)
        ses.add(outbox.returned_notice(inst, c.id or 0, now.astimezone(TZ).date(), now))
        ses.add(AuditRow(at=now, actor=actor, action="return", entity="instance",
                         entity_id=f"{inst.obligation}|{inst.unit}|{inst.period}",
                         detail=json.dumps({"confirmation": c.id, "reason": why}, ensure_ascii=False)))
        ses.commit()
        return c
