"""What the secretariat sees and does on one report's page (/ky/{id}) and in the outbox (/hop-thu-di).

Why its own module: the console records, corrects and waives through exactly the services the CLI
uses (engine.app.services.submit / waive / outbox_retry: same validation, same audit), but a web
form carries more than one service call can take — a report file. The file is checked *before*
anything is written (a refused file leaves the report unrecorded) and stored right after the
submission, pointing at it. Reads name only the columns a page needs and turn UTC moments from the
database into the province's local time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from engine.app import attachments, services
from engine.app.config import Settings
from engine.app.services import InvalidInput, open_session
from engine.db import unindexed
from engine.rules_loader import RulePack
from engine.state import (FAILED, AttachmentRow, AuditRow, ConfirmationRow, DeliveryItemRow, DeliveryRow, InstanceRow,
                          NoticeRow, SubmissionRow, UnitRow, UserRow, WaiverRow)
from engine.status import classify
from engine.vi import CONFIRMATION_STATE, DELIVERY_STATUS, NOTICE_KIND

MAX_REF, MAX_NOTE, MAX_REASON = 80, 2000, 2000       # the same limits as a unit's confirmation
OUTBOX_PAGE = 50
# engine.vi.CONFIRMATION_STATE has no word (yet) for a "đã gửi" made moot by the secretariat's own record.
CONFIRMATION_VI = {**CONFIRMATION_STATE, "superseded": "Không cần xác nhận nữa (Văn phòng đã ghi nhận hoặc miễn)"}
# The outbox filter: what a secretary picks → delivery states ("" = the CLI's default: all but "not sent").
OUTBOX_FILTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "": ("Mọi thư (trừ thư không gửi)", ("pending", "retry", "sent", "failed")),
    "failed": (DELIVERY_STATUS["failed"], ("failed",)),
    "waiting": ("Chờ gửi hoặc chờ gửi lại", ("pending", "retry")),
    "sent": (DELIVERY_STATUS["sent"], ("sent",)),
    "dropped": (DELIVERY_STATUS["dropped"], ("dropped",)),
    "all": ("Tất cả, kể cả thư không gửi", ("pending", "retry", "sent", "failed", "dropped")),
}


def _local(dt: datetime | None, tz: ZoneInfo) -> datetime | None:
    """The database hands back UTC (or naive UTC on some drivers): shown in the province's time."""
    if dt is None:
        return None
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)).astimezone(tz)


def _actor_vi(actor: str | None, users: dict[str, str]) -> str:
    """Who did it, in words: a console account by its name, a unit by its name, the CLI as such."""
    if not actor:
        return "–"
    if actor.startswith("web:"):
        return users.get(actor[4:]) or actor[4:]
    if actor.startswith("unit:"):
        return "Đơn vị (qua đường dẫn trong thư)"
    return {"cli": "Dòng lệnh", "import": "Nhập từ tệp", "sync": "Đồng bộ quy tắc"}.get(actor, actor)


def fmt_size(n: int) -> str:
    """1234567 → “1,2 MB”."""
    if n < 1024:
        return f"{n} byte"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB".replace(".", ",")
    return f"{n / 1048576:.1f} MB".replace(".", ",")


# ─── one report's page ──────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class SubmissionEntry:
    submitted_on: date
    ref: str | None
    note: str | None
    active: bool
    recorded_at: datetime
    recorded_by: str
    correction: bool                 # recorded over an earlier one


@dataclass(frozen=True)
class WaiverEntry:
    reason: str
    active: bool
    recorded_at: datetime
    recorded_by: str


@dataclass(frozen=True)
class ConfirmationEntry:
    submitted_on: date
    ref: str | None
    note: str | None
    state: str
    state_vi: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class AttachmentEntry:
    id: int
    filename: str
    size: str
    sha256: str
    created_at: datetime
    created_by: str
    source: str                      # "Kèm lần ghi nhận ngày …" / "Đơn vị gửi kèm xác nhận"


@dataclass(frozen=True)
class NoticeEntry:
    kind: str
    recipient: str
    recipient_id: str
    as_of: date
    status: str
    attempts: int
    sent_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    channels: str                    # "E-mail", "E-mail, Webhook"


@dataclass
class InstancePage:
    id: int
    obligation: str
    title: str
    unit: str
    unit_name: str
    period: str
    period_label: str
    period_start: date
    period_end: date
    cutoff_start: date | None
    cutoff_end: date | None
    due: date
    recipient: str
    recipient_name: str
    status: str
    wd_late: int
    wd_left: int
    submitted_on: date | None
    ref: str | None
    waived: bool
    active: bool
    in_rules: bool
    awaiting_since: date | None
    inherited_from: list[str] = field(default_factory=list)
    current: SubmissionEntry | None = None
    waiver: WaiverEntry | None = None
    submissions: list[SubmissionEntry] = field(default_factory=list)
    waivers: list[WaiverEntry] = field(default_factory=list)
    confirmations: list[ConfirmationEntry] = field(default_factory=list)
    attachments: list[AttachmentEntry] = field(default_factory=list)
    notices: list[NoticeEntry] = field(default_factory=list)

    @property
    def pending_confirmations(self) -> int:
        return sum(1 for c in self.confirmations if c.state == "pending")


def _names(ses: Session, pack: RulePack) -> dict[str, str]:
    """Unit names: the rules' directory first, units kept in the database (no longer in the rules) after."""
    names = {uid: name for uid, name in ses.execute(sa.select(UnitRow.id, UnitRow.name)).all()}
    names.update({uid: u.name for uid, u in pack.units.items()})
    return names


def _users(ses: Session) -> dict[str, str]:
    return {u: (n or u) for u, n in ses.execute(sa.select(UserRow.username, UserRow.full_name)).all()}


def instance_page(settings: Settings, pack: RulePack, instance_id: int, today: date) -> InstancePage | None:
    """Everything about one (report, unit, period); None when there is no such instance."""
    tz = ZoneInfo(pack.info.timezone)
    I = InstanceRow
    with open_session(settings) as ses:
        row = ses.execute(sa.select(I.id, I.obligation, I.unit, I.period, I.period_label, I.period_start, I.period_end,
                                    I.cutoff_start, I.cutoff_end, I.due, I.recipient, I.submitted_on,
                                    I.submission_ref, I.waived, I.active, I.awaiting_since, I.inherited_from)
                          .where(I.id == instance_id)).first()
        if row is None:
            return None
        (iid, ob, unit, period, label, p_start, p_end, c_start, c_end, due, recipient, submitted_on, ref, waived,
         active, awaiting, inherited) = row
        names = _names(ses, pack)
        users = _users(ses)
        o = pack.obligations.get(ob)
        status, late, left = classify(pack, due, today, submitted_on, bool(waived), ob, awaiting)
        page = InstancePage(iid, ob, o.title if o is not None else "(báo cáo không còn trong bộ quy tắc)", unit,
                            names.get(unit, "(đơn vị không còn trong danh bạ)"), period, label, p_start, p_end,
                            c_start, c_end, due, recipient, names.get(recipient, "(không rõ)"), status, late, left,
                            submitted_on, ref, bool(waived), bool(active), o is not None and unit in pack.units,
                            awaiting, [names.get(x, x) for x in inherited.split(",") if x])
        subs = ses.execute(sa.select(SubmissionRow.id, SubmissionRow.submitted_on, SubmissionRow.ref, SubmissionRow.note,
                                     SubmissionRow.active, SubmissionRow.recorded_at, SubmissionRow.recorded_by)
                           .where(SubmissionRow.instance_id == iid).order_by(SubmissionRow.id)).all()
        sub_day: dict[int, date] = {}
        for n, (sid, on, sref, note, s_active, at, by) in enumerate(subs):
            sub_day[sid] = on
            e = SubmissionEntry(on, sref, note, bool(s_active), _local(at, tz), _actor_vi(by, users), n > 0)
            page.submissions.append(e)
            if s_active:
                page.current = e
        page.submissions.reverse()                         # newest first
        for reason, w_active, at, by in ses.execute(
                sa.select(WaiverRow.reason, WaiverRow.active, WaiverRow.recorded_at, WaiverRow.recorded_by)
                .where(WaiverRow.instance_id == iid).order_by(WaiverRow.id.desc())).all():
            e = WaiverEntry(reason, bool(w_active), _local(at, tz), _actor_vi(by, users))
            page.waivers.append(e)
            if w_active and page.waiver is None:
                page.waiver = e
        for on, cref, note, state, at, dec_at, dec_by, reason in ses.execute(
                sa.select(ConfirmationRow.submitted_on, ConfirmationRow.ref, ConfirmationRow.note, ConfirmationRow.state,
                          ConfirmationRow.created_at, ConfirmationRow.decided_at, ConfirmationRow.decided_by,
                          ConfirmationRow.reason)
                .where(ConfirmationRow.instance_id == iid, ConfirmationRow.unit == unit)
                .order_by(ConfirmationRow.id.desc())).all():
            page.confirmations.append(ConfirmationEntry(on, cref, note, state, CONFIRMATION_VI.get(state, state),
                                                        _local(at, tz), _local(dec_at, tz),
                                                        _actor_vi(dec_by, users) if dec_by else None, reason))
        for aid, name, size, sha, at, by, conf_id, sub_id in ses.execute(
                sa.select(AttachmentRow.id, AttachmentRow.filename, AttachmentRow.size, AttachmentRow.sha256,
                          AttachmentRow.created_at, AttachmentRow.created_by, AttachmentRow.confirmation_id,
                          AttachmentRow.submission_id)
                .where(AttachmentRow.instance_id == iid).order_by(AttachmentRow.id.desc())).all():
            if conf_id is not None:
                source = "Đơn vị gửi kèm khi báo đã gửi"
            elif sub_id is not None and sub_id in sub_day:
                source = f"Kèm lần ghi nhận ngày nộp {sub_day[sub_id]:%d/%m/%Y}"
            else:
                source = "Văn phòng tải lên"
            page.attachments.append(AttachmentEntry(aid, name, fmt_size(size), sha, _local(at, tz),
                                                    _actor_vi(by, users), source))
        notices = ses.execute(sa.select(NoticeRow.id, NoticeRow.kind, NoticeRow.recipient, NoticeRow.as_of,
                                        NoticeRow.status, NoticeRow.attempts, NoticeRow.sent_at,
                                        NoticeRow.next_attempt_at, NoticeRow.last_error)
                              .where(NoticeRow.instance_id == iid).order_by(NoticeRow.as_of.desc(), NoticeRow.id.desc())
                              ).all()
        channels: dict[int, set[str]] = {}
        if notices:
            for nid, channel in ses.execute(
                    sa.select(DeliveryItemRow.notice_id, DeliveryRow.channel)
                    .join(DeliveryRow, DeliveryRow.id == DeliveryItemRow.delivery_id)
                    .where(DeliveryItemRow.notice_id.in_([n[0] for n in notices]))).all():
                channels.setdefault(nid, set()).add("E-mail" if channel == "email" else "Webhook")
        for nid, kind, rcpt, as_of, n_status, attempts, sent, nxt, error in notices:
            page.notices.append(NoticeEntry(NOTICE_KIND.get(kind, "Thư báo trả lại" if kind == "returned" else kind),
                                            names.get(rcpt, rcpt), rcpt, as_of, n_status, attempts, _local(sent, tz),
                                            _local(nxt, tz), error, ", ".join(sorted(channels.get(nid, ()))) or "–"))
    return page


# ─── recording from the page ────────────────────────────────────────────────────────────────────
@dataclass
class FormErrors:
    """Vietnamese messages by field ("date", "ref", "note", "file", "reason"; "form": the whole form)."""
    fields: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass(frozen=True)
class RecordResult:
    corrected: bool
    on_time: bool
    submitted_on: date
    file_stored: bool
    file_error: str | None = None


class FormRejected(Exception):
    """The form cannot be used; nothing was written. ``errors`` say what to fix, next to each field."""

    def __init__(self, errors: FormErrors):
        self.errors = errors
        super().__init__("; ".join(errors.fields.values()))


def sentence(text: str) -> str:
    """A service message ("ngày nộp … ở tương lai") as a sentence under a field."""
    t = text.strip()
    return t[:1].upper() + t[1:] + ("" if t.endswith((".", "?", "!")) else ".")


def _clean(text: str | None, limit: int, what: str, errors: FormErrors, key: str, *, one_line: bool) -> str | None:
    t = (text or "").strip()
    if one_line:
        t = " ".join(t.split())
    if len(t) > limit:
        errors.fields[key] = f"{what} dài quá {limit} ký tự (đang có {len(t)})."
    return t or None


def _instance_key(settings: Settings, instance_id: int) -> tuple[str, str, str, bool] | None:
    with open_session(settings) as ses:
        row = ses.execute(sa.select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.waived)
                          .where(InstanceRow.id == instance_id)).first()
    return None if row is None else (row[0], row[1], row[2], bool(row[3]))


def record(settings: Settings, pack: RulePack, instance_id: int, date_text: str, ref: str | None, note: str | None,
           file: tuple[bytes, str | None, int] | None, now: datetime, actor: str) -> RecordResult:
    """Record (or correct) the submission of one instance through services.submit, then store its file.

    ``file``: (bytes, client name, declared size) or None. Every check that can refuse the form —
    the date's form, the lengths, the file's type and size — runs before the service writes; the
    service's own checks (a date in the future or before the period) refuse inside its transaction.
    Raises FormRejected (nothing written) or LookupError (no such instance)."""
    key = _instance_key(settings, instance_id)
    if key is None:
        raise LookupError(instance_id)
    obligation, unit, period, _ = key
    errors = FormErrors()
    day: date | None = None
    if not (date_text or "").strip():
        errors.fields["date"] = "Cần nhập ngày nộp, dạng dd/mm/yyyy (ví dụ 30/11/2026)."
    else:
        try:
            day = services.parse_date(date_text, "ngày nộp")
        except InvalidInput as exc:
            errors.fields["date"] = sentence(exc.message)
    ref = _clean(ref, MAX_REF, "Số ký hiệu", errors, "ref", one_line=True)
    note = _clean(note, MAX_NOTE, "Ghi chú", errors, "note", one_line=False)
    if file is not None:
        data, name, _size = file
        try:
            attachments.check(settings, data, name)
            attachments.directory(settings)            # an unwritable folder shows now, before the record
        except InvalidInput as exc:
            errors.fields["file"] = sentence(exc.message)
        except OSError:
            errors.fields["file"] = ("Không lưu được tệp: thư mục lưu tệp không ghi được. Báo quản trị viên "
                                     "(web.upload_dir); báo cáo chưa được ghi nhận.")
    if errors or day is None:
        raise FormRejected(errors)
    with open_session(settings) as ses:
        had = ses.execute(sa.select(sa.func.count()).select_from(SubmissionRow)
                          .where(SubmissionRow.instance_id == instance_id, SubmissionRow.active == sa.true())).scalar_one() > 0
    try:
        res = services.submit(settings, pack, obligation, unit, period, day, now, actor=actor, ref=ref, note=note)
    except InvalidInput as exc:
        where = "date" if "ngày" in exc.message.lower() else "form"
        raise FormRejected(FormErrors({where: sentence(exc.message)})) from None
    stored, problem = False, None
    if file is not None:
        stored, problem = _store_for_submission(settings, instance_id, unit, file, now, actor)
    return RecordResult(had, res.on_time, day, stored, problem)


def _store_for_submission(settings: Settings, instance_id: int, unit: str, file: tuple[bytes, str | None, int],
                          now: datetime, actor: str) -> tuple[bool, str | None]:
    """The file of the submission just recorded (the newest active one of this instance by this actor)."""
    data, name, _ = file
    try:
        with open_session(settings) as ses:
            sid = ses.execute(sa.select(SubmissionRow.id).where(
                SubmissionRow.instance_id == instance_id, SubmissionRow.active == sa.true(),
                SubmissionRow.recorded_by == actor).order_by(SubmissionRow.id.desc()).limit(1)).scalar_one_or_none()
            row = attachments.store(ses, settings, data, name, instance_id=instance_id, unit=unit, now=now,
                                    actor=actor, submission_id=sid)
            ses.flush()
            inst = ses.get(InstanceRow, instance_id)
            ses.add(AuditRow(at=now, actor=actor, action="attach", entity="instance",
                             entity_id=f"{inst.obligation}|{inst.unit}|{inst.period}" if inst else str(instance_id),
                             detail=json.dumps({"file": row.filename, "sha256": row.sha256, "size": row.size,
                                                "submission": sid}, ensure_ascii=False)))
            ses.commit()
        return True, None
    except (OSError, InvalidInput) as exc:             # checked a moment ago: only a disk failure lands here
        msg = exc.message if isinstance(exc, InvalidInput) else "không ghi được tệp vào thư mục lưu"
        return False, f"Báo cáo đã được ghi nhận nhưng tệp chưa được lưu ({msg}). Gửi lại tệp bằng cách sửa ghi nhận."


def waive(settings: Settings, pack: RulePack, instance_id: int, reason: str | None, now: datetime, actor: str,
          revoke: bool = False) -> None:
    """Waive (a reason is required) or revoke the waiver of one instance, through services.waive."""
    key = _instance_key(settings, instance_id)
    if key is None:
        raise LookupError(instance_id)
    obligation, unit, period, waived = key
    errors = FormErrors()
    text = _clean(reason, MAX_REASON, "Lý do", errors, "reason", one_line=False)
    if revoke and not waived:
        errors.fields["form"] = "Kỳ báo cáo này không được miễn nên không có gì để hủy."
    if not revoke and not text and not errors.get("reason"):
        errors.fields["reason"] = "Cần ghi lý do miễn nộp (ví dụ: văn bản cho phép, đơn vị đã giải thể)."
    if not revoke and waived:
        errors.fields["form"] = "Kỳ báo cáo này đã được miễn."
    if errors:
        raise FormRejected(errors)
    try:
        services.waive(settings, pack, obligation, unit, period, text or "", now, actor=actor, revoke=revoke)
    except InvalidInput as exc:
        raise FormRejected(FormErrors({"form": sentence(exc.message)})) from None


def attachment_file(settings: Settings, attachment_id: int) -> tuple[AttachmentRow, object] | None:
    """The row and path of a stored report file (None when the row or the file is missing)."""
    with open_session(settings) as ses:
        row = ses.get(AttachmentRow, attachment_id)
        if row is None:
            return None
        ses.expunge(row)
    path = attachments.path_of(settings, row)
    return (row, path) if path.is_file() else None


# ─── the outbox ─────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class OutboxEntry:
    id: int
    recipient: str
    recipient_name: str
    subject: str | None
    channel: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    maybe_sent: bool
    items: int

    @property
    def can_retry(self) -> bool:
        return self.status == FAILED


@dataclass
class OutboxPage:
    state: str
    unit: str | None
    unit_name: str | None
    page: int
    pages: int
    total: int
    entries: list[OutboxEntry]
    counts: dict[str, int]                   # every digest by status (the whole outbox, unfiltered)
    recipients: list[tuple[str, str]]        # (id, name) of everyone who has mail, by name


def outbox_page(settings: Settings, pack: RulePack, state: str, unit: str | None, page: int) -> OutboxPage:
    """Digests newest first, ``OUTBOX_PAGE`` a page, filtered by a state of OUTBOX_FILTERS and a recipient.

    A paged query of its own (services.outbox_list lists up to a limit, for the CLI): a count, one
    page of rows with the columns shown, and how many live items each digest carries."""
    tz = ZoneInfo(pack.info.timezone)
    states = OUTBOX_FILTERS.get(state, OUTBOX_FILTERS[""])[1]
    D = DeliveryRow
    with open_session(settings) as ses:
        names = _names(ses, pack)
        counts = dict(ses.execute(sa.select(D.status, sa.func.count()).group_by(D.status)).all())
        everything = sum(counts.values())
        if unit:
            where = [D.status.in_(states), D.recipient == unit]
            total = ses.execute(sa.select(sa.func.count()).select_from(D).where(*where)).scalar_one()
        else:
            total = sum(counts.get(s, 0) for s in states)
        pages = max(1, -(-total // OUTBOX_PAGE))
        page = min(max(1, page), pages)
        if not unit:
            where = _newest_first(states, total, everything, page * OUTBOX_PAGE)
        rows = ses.execute(sa.select(D.id, D.recipient, D.subject, D.channel, D.route, D.status, D.attempts,
                                     D.created_at, D.sent_at, D.next_attempt_at, D.last_error, D.maybe_sent)
                           .where(*where).order_by(D.id.desc())
                           .limit(OUTBOX_PAGE).offset((page - 1) * OUTBOX_PAGE)).all()
        items: dict[int, int] = {}
        if rows:
            items = dict(ses.execute(sa.select(DeliveryItemRow.delivery_id, sa.func.count())
                                     .where(DeliveryItemRow.delivery_id.in_([r[0] for r in rows]),
                                            DeliveryItemRow.dropped == sa.false())
                                     .group_by(DeliveryItemRow.delivery_id)).all())
        recipients = sorted(_recipients(ses), key=lambda r: names.get(r, r).casefold())
    entries = []
    for did, rcpt, subject, channel, route, st, attempts, created, sent, nxt, error, maybe in rows:
        chan = "E-mail" if channel == "email" else ("Webhook" if channel == "webhook" else "Không có kênh")
        if route.startswith("kpi-summary:"):
            chan += " (tổng hợp chỉ tiêu)"
        entries.append(OutboxEntry(did, rcpt, names.get(rcpt, rcpt), subject, chan, st, attempts, _local(created, tz),
                                   _local(sent, tz), _local(nxt, tz), error, bool(maybe), items.get(did, 0)))
    return OutboxPage(state if state in OUTBOX_FILTERS else "", unit or None,
                      names.get(unit, "(đơn vị không có trong danh bạ)") if unit else None, page, pages, total, entries, counts,
                      [(r, names.get(r, r)) for r in recipients])


def _newest_first(states: tuple[str, ...], selected: int, everything: int, upto: int) -> list[sa.ColumnElement[bool]]:
    """The outbox page's filter, written so the database takes the cheaper way to the newest
    ``upto`` digests in ``states``: through the status index and a sort of the ``selected`` ones
    (few: failed, waiting), or backwards along the ids, skipping the others (most of the outbox is
    sent: about ``upto × everything / selected`` rows read). The status is then compared unindexed:
    SQLite would otherwise sort every digest ever sent to show fifty (20 years of a province:
    404 ms; stop 25's audit)."""
    D = DeliveryRow
    if set(states) >= set(DELIVERY_STATUS):
        return []                                           # every digest: no filter at all
    if selected * selected <= upto * everything:
        return [D.status.in_(states)]
    return [unindexed(D.status).in_(states)]


def _recipients(ses: Session) -> set[str]:
    """Everyone who has a digest: one index search per recipient (a loose scan of
    ix_deliveries_recipient, as a recursive query), not a read of every digest ever made."""
    D = DeliveryRow
    r = sa.select(sa.func.min(D.recipient).label("x")).cte("r", recursive=True)
    nxt = sa.select(D.recipient).where(D.recipient > r.c.x).order_by(D.recipient).limit(1).scalar_subquery()
    r = r.union_all(sa.select(nxt).where(r.c.x.is_not(None)))
    return {x for (x,) in ses.execute(sa.select(r.c.x).where(r.c.x.is_not(None))).all()}


def retry(settings: Settings, delivery_id: int, now: datetime, actor: str) -> str | None:
    """A failed digest back to the queue through services.outbox_retry (which writes the audit
    trail with its author); None, or why it could not be, in words for the page."""
    res = services.outbox_retry(settings, [delivery_id], now, actor=actor)
    if res.errors or not res.requeued:
        text = (res.errors or ["thư này không gửi lại được"])[0]
        text = text.replace(f"thư số {delivery_id} ", "thư này ").replace(f"không có thư số {delivery_id}",
                                                                          "không có thư này")
        return sentence(text)
    return None
