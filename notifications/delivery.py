"""The delivery pass, as stages: sending window → one sender → drop what became moot → assign
routes → per digest: render → send on its channel → record.

``deliver(db, pack, now, smtp=…, delivery=…)`` is the whole pass; ``now`` is an input (simulated
time), so tests and replays never sleep. Each stage is a small ``async def stage(p: Pass)``; their
order is written once, in ``STAGES``. Channels (e-mail over SMTP, the .eml pickup folder, webhooks)
share one interface (notifications/transport.py). Durable steps, each a commit:
1. moot notices → dropped (KPI notices: against the KPI status computed once for this pass);
2. new digests with their notices (one per recipient and route), before anything is sent;
3. per digest: mark "may reach the receiver from now on" (committed before the message's first
   command: with the connection's previous outcome, the digest having been rendered while the
   server answered, or, for a connection's first digest, in one commit shared by the connections
   that prepared one in the same turn of the event loop) → send → record the outcome and commit it
   as soon as the reply is in, before that connection sends anything else. On PostgreSQL these
   commits are awaited on the event loop (engine/async_commits.py), so a connection waiting for
   its commit does not stop the others.

Links: the caller may pass ``links`` (a ``LinkMaker``, built by the application layer, which alone
knows the secret): for a digest with reports of the recipient's own, it returns the signed "Báo đã
gửi" URL, writing its row in this pass's session; the row is committed before the in-flight mark
of step 3 (or with it), so no message can carry a URL whose row was lost in a crash.
See notifications/README.md for why this makes a crash duplicate at most ``concurrency`` e-mails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from email.headerregistry import Address
from itertools import chain, islice
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.async_commits import AsyncCommits
from engine.db import refresh_statistics
from engine.kpi.classify import STATUS_ORDER, STATUS_VI
from engine.kpi.report import KpiItem, KpiSummary
from engine.rules_loader import RulePack
from engine.state import ConfirmationRow, InstanceRow, NoticeRow
from notifications import outbox
from notifications.lock import sender_lock
from notifications.mime import BadAddress, address, build_email, envelope_address, to_bytes
from notifications.models import DROPPED, FAILED, RETRY, SENT, DeliveryRow
from notifications.render import (KPI_STATUS_VI, NO_VALUE, Digest, DigestItem, Escalation, KpiLine, KpiOverview,
                                  KpiStatusGroup, LateUnit, Party, Renderer, ReturnedItem, moved_due_text, period_label)
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.transport import (Channel, EmailJob, Outcome, PickupChannel, SmtpChannel, WebhookChannel, WebhookJob,
                                     pickup_name, run_channel)

log = logging.getLogger("dondoc.notify")

# Digests read (and checked for moot notices) together, just before they are sent: a submission
# recorded while this many messages go out may still see its reminder sent (a fraction of a
# second). Each batch stops every connection for its round trips (the commits drained, the read,
# the links' rows), and a longer read stops them longer: on PostgreSQL 32 sent faster than 16 and
# 64 (benchmarks/README.md, stop 29).
CHUNK = 32

# On PostgreSQL, commit marks and outcomes on a connection of their own awaited on the event loop
# (engine/async_commits.py); False: on the pass's session, blocking (SQLite always does; the
# benchmark alternates both).
AWAIT_COMMITS = True

# The secretariat's weekly KPI summary lists a target whose only problem is missing data (no value
# for a period yet) when its milestone falls within this many years; targets decades away are
# listed only when they are really slipping (behind, missed). They are counted, never hidden.
SUMMARY_HORIZON_YEARS = 5

GONE = "Báo cáo không còn trong quy tắc hiện hành"   # the title of a report the rules dropped

# (session of the pass, the digest, the unit it goes to, ids of that unit's own instances in it,
# the pass's now) → the signed "Báo đã gửi" URL, or None. Supplied by the application layer
# (engine/app/confirmations.link_maker); it adds its row to the session and does not commit.
LinkMaker = Callable[[Session, DeliveryRow, str, list[int], datetime], str | None]
_QUOTED_ID = re.compile(r"“([a-z0-9][a-z0-9._-]*)”")


@dataclass
class PassReport:
    now: str
    sending_allowed: bool = True
    reason: str | None = None           # why nothing was sent (outside hours, day off, locked)
    mode: str = "smtp"                  # smtp | pickup (.eml files)
    dropped_notices: int = 0
    new_deliveries: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    dropped_deliveries: int = 0
    sent_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sending_block_reason(pack: RulePack, now: datetime, settings: DeliveryConfig) -> str | None:
    """None when ``now`` is inside the sending window; otherwise a Vietnamese reason."""
    local = now.astimezone(ZoneInfo(pack.info.timezone))
    day = local.date()
    if not pack.calendar.is_working_day(day):
        what = pack.calendar.holiday_name(day) or ("Chủ nhật" if day.weekday() == 6 else "ngày nghỉ cuối tuần")
        return f"{day:%d/%m/%Y} không phải ngày làm việc ({what}): không gửi"
    start, end = settings.window()
    if not (start <= local.time() < end):
        return f"{local:%H:%M} ngoài giờ gửi {start:%H:%M}–{end:%H:%M}: không gửi"
    return None


@dataclass
class Context:
    """What every digest of one pass shares (settings, sender, the memoised calendar arithmetic)."""
    pack: RulePack
    now: datetime
    today: date
    smtp: SmtpConfig
    settings: DeliveryConfig
    renderer: Renderer
    secretariat: Party
    sender_name: str
    sender_addr: str
    reply_to: str | None
    kpi: outbox.KpiFacts | None = None    # KPI status on the sending day, recomputed before each use
    links: LinkMaker | None = None        # the "Báo đã gửi" link of a digest (None: no links)
    _wd: dict[tuple[date, date], int] = field(default_factory=dict)
    _addresses: tuple[Address, Address | None, str] | None = None
    _moved: dict[tuple[str, str, date], str] = field(default_factory=dict)
    _calc: object | None = None

    def moved(self, inst: InstanceRow) -> str:
        """"hạn dời từ Chủ nhật 30/11/2025 sang Thứ Hai 01/12/2025" when a day off moved the due day
        (recomputed from the rules: the day the due rule names, before the working-day roll)."""
        key = (inst.obligation, inst.period, inst.due)
        if key not in self._moved:
            self._moved[key] = ""
            ob = self.pack.obligations.get(inst.obligation)
            if ob is not None:
                from engine.periods import Period

                try:
                    if self._calc is None:
                        self._calc = self.pack.due_calculator()
                    due = self._calc.due(ob, Period(inst.period, inst.period_label, inst.period_start,  # type: ignore[attr-defined]
                                                    inst.period_end, inst.cutoff_start, inst.cutoff_end))
                except Exception:       # the rules changed shape: say nothing rather than something wrong
                    due = None
                if due is not None and due.day == inst.due and due.unrolled != inst.due:
                    why = self.pack.calendar.holiday_name(due.unrolled)
                    self._moved[key] = moved_due_text(due.unrolled, inst.due, why)
        return self._moved[key]

    def readable(self, text: str) -> str:
        """An obligation id quoted in a KPI sentence (“khhd57-nam”) becomes its title: no internal
        id reaches a mail."""
        def title(m: re.Match[str]) -> str:
            ob = self.pack.obligations.get(m.group(1))
            return f"“{ob.title}”" if ob is not None else m.group(0)
        return _QUOTED_ID.sub(title, text)

    def working_days(self, a: date, b: date) -> int:
        """Memoised: thousands of digests of one run share a handful of due dates."""
        key = (a, b)
        if key not in self._wd:
            self._wd[key] = self.pack.calendar.working_days_between(a, b)
        return self._wd[key]

    def sender(self) -> tuple[Address, Address | None, str]:
        """(From, Reply-To, envelope sender), validated once per pass; BadAddress if unusable."""
        if self._addresses is None:
            self._addresses = (address(self.sender_name, self.sender_addr),
                               address(self.secretariat.name, self.reply_to) if self.reply_to else None,
                               envelope_address(self.sender_addr))
        return self._addresses

    @property
    def domain(self) -> str:
        return self.sender_addr.rpartition("@")[2] or "dondoc.invalid"


def _context(pack: RulePack, now: datetime, smtp: SmtpConfig, settings: DeliveryConfig,
             renderer: Renderer | None, links: LinkMaker | None = None) -> Context:
    admin = pack.units.get(pack.info.admin_contact or "")
    sec_email = admin.contacts[0] if admin and admin.contacts else None
    secretariat = Party(admin.id if admin else "", admin.name if admin else "Văn phòng", sec_email)
    sender = smtp.from_addr or sec_email or "dondoc@localhost"
    today = now.astimezone(ZoneInfo(pack.info.timezone)).date()
    return Context(pack, now, today, smtp, settings, renderer or Renderer(settings.templates_dir), secretariat,
                   smtp.from_name, sender, smtp.reply_to or sec_email, outbox.KpiFacts(pack, today), links)


def _kpi_line(item: KpiItem, party, recipient: str, readable=lambda t: t) -> KpiLine:
    return KpiLine(item.target, item.indicator, item.indicator_name, item.requirement, item.milestone, item.status,
                   party(item.unit), item.latest_value_text if item.latest_value is not None else NO_VALUE,
                   item.latest_as_of if item.latest_value is not None else None,
                   item.expected_text if item.expected is not None else None,
                   item.expected_at if item.expected is not None else None, item.period, item.basis,
                   readable(item.detail), own=item.unit == recipient)


def _kpi_fallback(n: NoticeRow, party, recipient: str, error: str | None) -> KpiLine:
    """A KPI notice whose item cannot be recomputed (the KPI files are broken): what the notice says."""
    target = n.obligation.split(":", 1)[1]
    status, _, rest = n.period.partition(":")
    try:
        milestone: date | None = date.fromisoformat(rest)
    except ValueError:
        milestone = None                  # a period ("2026"), not a milestone
    # The KPI files cannot be read, so the target's name is unknown: its code (as written in the KPI
    # file the secretariat must fix) is the only way to say which target this is.
    name = f"Chỉ tiêu mã “{target}”"
    return KpiLine(target, target, name, "", milestone, status, party(n.unit),
                   period=rest if status == "no_data" else None,
                   detail=f"Tình trạng ghi nhận ngày {n.as_of:%d/%m/%Y}: {KPI_STATUS_VI.get(status, status)}. "
                          f"Không đọc được tệp chỉ tiêu để cập nhật ({error or 'không rõ lý do'}).",
                   own=n.unit == recipient)


def _kpi_overview(summary: KpiSummary | None, party, today: date, error: str | None,
                  readable=lambda t: t) -> KpiOverview:
    """The secretariat's summary: slipping targets by status; a target that only lacks data and whose
    milestone is more than SUMMARY_HORIZON_YEARS away is counted, not listed."""
    if summary is None:
        return KpiOverview(today, error=error or "không tính được tình trạng chỉ tiêu")
    horizon = today.year + SUMMARY_HORIZON_YEARS
    listed = [i for i in summary.slipping if i.status != "no_data" or i.milestone.year <= horizon]
    groups = []
    for status in sorted(KPI_STATUS_VI, key=lambda k: STATUS_ORDER[k]):
        lines = [_kpi_line(i, party, "", readable) for i in listed if i.status == status]
        if lines:
            lines.sort(key=lambda k: (k.milestone or date.max, k.indicator_name))
            groups.append(KpiStatusGroup(status, KPI_STATUS_VI[status], lines))
    counts = [(STATUS_VI[k], summary.by_status[k]) for k in sorted(summary.by_status, key=lambda k: STATUS_ORDER[k])
              if summary.by_status[k]]
    return KpiOverview(summary.as_of, summary.total, counts, groups, distant=len(summary.slipping) - len(listed),
                       horizon=horizon)


def build_digest(ctx: Context, recipient: str, live: list[tuple[NoticeRow, object]],
                 returned: dict[int, ConfirmationRow] | None = None) -> Digest:
    """Items as of the sending day: status and day counts are recomputed from the due date; KPI
    items and the secretariat's summary come from the KPI status recomputed on the sending day.
    Escalations become one short table per report (a row per late unit, its missing periods and
    how late it is); a unit is never asked to chase itself. At most ``digest_max_items`` entries
    are listed in full (render.Digest.listing). A "returned" notice becomes an entry of its own
    section with the secretariat's reason (``returned``: confirmation id → row, see returned_for)."""
    pack, today = ctx.pack, ctx.today

    def party(uid: str) -> Party:
        u = pack.units.get(uid)
        return Party(uid, u.name if u else uid, u.contacts[0] if u and u.contacts else None)

    items: dict[tuple[str, str, str], DigestItem] = {}
    late: dict[str, dict[str, dict[str, InstanceRow]]] = {}     # obligation → unit → period → instance
    kpi: dict[tuple[str, str, str | None, str], KpiLine] = {}
    sent_back: dict[int, ReturnedItem] = {}
    overview: KpiOverview | None = None
    error = ctx.kpi.error if ctx.kpi is not None else None
    for n, inst in live:
        if outbox.is_kpi_summary(n):
            if overview is None:          # several weeks' summaries waiting (an outage): shown once
                overview = _kpi_overview(inst if isinstance(inst, KpiSummary) else None, party, today, error,
                                         ctx.readable)
            continue
        if outbox.is_kpi_item(n):
            line = (_kpi_line(inst, party, recipient, ctx.readable) if isinstance(inst, KpiItem)
                    else _kpi_fallback(n, party, recipient, error))
            kpi.setdefault((line.target, line.status, line.period, line.unit.id), line)
            continue
        assert isinstance(inst, InstanceRow)
        if n.kind == outbox.RETURNED_KIND:
            cid = outbox.returned_confirmation_id(n)
            conf = (returned or {}).get(cid) if cid is not None else None
            ob = pack.obligations.get(inst.obligation)
            if cid is not None and cid not in sent_back:
                sent_back[cid] = ReturnedItem(
                    inst.obligation, ob.title if ob else GONE, inst.period, inst.period_label, inst.due,
                    conf.submitted_on if conf else n.as_of, conf.ref if conf else None,
                    (conf.reason or "") if conf else "", n.as_of)
            continue
        if n.kind == "escalation":
            if inst.unit != recipient:    # never ask a unit to chase itself (its own reminder says it)
                late.setdefault(inst.obligation, {}).setdefault(inst.unit, {})[inst.period] = inst
            continue
        key = (inst.obligation, inst.unit, inst.period)
        if key in items:
            continue
        ob = pack.obligations.get(inst.obligation)
        if today > inst.due:
            status, wd_left, wd_late = "overdue", 0, ctx.working_days(inst.due, today)
        elif today == inst.due:
            status, wd_left, wd_late = "due_today", 0, 0
        else:
            status, wd_left, wd_late = "due_soon", ctx.working_days(today, inst.due), 0
        items[key] = DigestItem(inst.obligation, ob.title if ob else GONE, ob.basis.text() if ob else "",
                                party(inst.unit), inst.period, inst.period_label, inst.due, status, wd_left=wd_left,
                                days_left=max(0, (inst.due - today).days), wd_late=wd_late,
                                own=inst.unit == recipient, moved=ctx.moved(inst))
    escalations = [_escalation(ctx, obligation, units, party) for obligation, units in late.items()]
    return Digest(party(recipient), today, ctx.secretariat, list(items.values()), escalations,
                  list(kpi.values()), overview, max_items=ctx.settings.digest_max_items,
                  returned=list(sent_back.values()))


def own_instance_ids(recipient: str, live: list[tuple[NoticeRow, object]]) -> list[int]:
    """The recipient's own reports in a digest (what its "Báo đã gửi" link may cover): not the units
    it is asked to chase (escalations), not KPI targets."""
    ids = {inst.id for n, inst in live if isinstance(inst, InstanceRow) and inst.id is not None
           and inst.unit == recipient and n.kind != "escalation" and not outbox.is_kpi(n)}
    return sorted(ids)


def returned_for(ses: Session, live: list[tuple[NoticeRow, object]]) -> dict[int, ConfirmationRow]:
    """The confirmations the "returned" notices of a digest are about (their reasons)."""
    ids = {cid for n, _ in live if (cid := outbox.returned_confirmation_id(n)) is not None}
    if not ids:
        return {}
    return {c.id: c for c in ses.exec(select(ConfirmationRow).where(col(ConfirmationRow.id).in_(ids))).all()}


def _escalation(ctx: Context, obligation: str, units: dict[str, dict[str, InstanceRow]], party) -> Escalation:
    """One report's table: a row per late unit (its missing periods, oldest first, and the working
    days since the oldest one's due day), the latest first."""
    ob = ctx.pack.obligations.get(obligation)
    rows: list[LateUnit] = []
    every: dict[str, InstanceRow] = {}
    for uid, periods in units.items():
        insts = sorted(periods.values(), key=lambda i: i.due)
        every.update({i.period: i for i in insts})
        rows.append(LateUnit(party(uid), max(0, ctx.working_days(insts[0].due, ctx.today)),
                             [i.period_label for i in insts]))
    rows.sort(key=lambda u: (-u.wd_late, u.unit.name))
    ordered = sorted(every.values(), key=lambda i: i.due)
    first = ordered[0]
    label = (first.period_label if len(ordered) == 1
             else f"{len(ordered)} kỳ, từ {first.period_label} đến {ordered[-1].period_label}")
    return Escalation(obligation, ob.title if ob else GONE, ob.basis.text() if ob else "",
                      first.period, label, first.due, rows, len(ordered))


# ---------------------------------------------------------------------------------------------
# The pass as stages (after Alertmanager's notify pipeline). Every stage has one signature,
# ``async def stage(p: Pass) -> None``; a stage ends the pass with ``p.stop(reason)``. The order is
# composed in one place, STAGES at the end of this module. The last stage sends each due digest
# through the per-digest steps render → send on its channel → record (``Feed`` and run_channel).


class Pass:
    """What the stages of one pass share: inputs, the open session, and the report."""

    def __init__(self, db: Engine | str, ctx: Context, report: PassReport, should_stop: Callable[[], bool],
                 reuse_connections: bool):
        self.db, self.ctx, self.report, self.should_stop = db, ctx, report, should_stop
        self.reuse_connections = reuse_connections
        self.stack = contextlib.AsyncExitStack()   # the lock and the session, released after the last stage
        self.ses: Session | None = None
        self.due: list[DeliveryRow] = []
        self.live: dict[int, list[tuple[NoticeRow, outbox.Subject]]] = {}
        self.pairs: outbox.Pairs = {}
        self.stopped = False
        # Not yet committed: in-flight marks (``begin``), kept in ``marks`` until a commit writes
        # them, and the link rows rendered with them, flushed into the pass's transaction. Both are
        # committed by ``flush`` (which run_channel awaits before a connection's first command) or
        # by the next outcome's commit (``record``: usually the same connection's previous outcome,
        # its next digest having been taken while the server answered); the marks staged by then go
        # as one ``UPDATE``. Every other write (outcomes, moot notices, dropped digests) commits at
        # once.
        self.unsaved = False
        self.marks: list[tuple[DeliveryRow, dict[str, object]]] = []
        # PostgreSQL: marks and outcomes are committed on a connection of their own, awaited on the
        # event loop (engine/async_commits.py), so one connection's commit does not stop the others;
        # ``unsaved`` then means link rows only (the session's own commit, before any mark).
        self.commits: AsyncCommits | None = None
        self.flushed = False             # with ``commits``: the session flushed writes since its commit

    def stop(self, reason: str) -> None:
        self.report.sending_allowed, self.report.reason, self.stopped = False, reason, True

    # -- per digest: render, mark in flight, record ----------------------------------------------
    def load(self, chunk: list[DeliveryRow]) -> None:
        """Read a chunk of digests just before sending: moot notices dropped, live ones kept; their
        "Báo đã gửi" links made together when the link maker can (``prepare``)."""
        live, pairs = outbox.load_chunk(self.ses, chunk, self.ctx.now, self.ctx.kpi)
        self.live.update(live)
        self.pairs.update(pairs)
        prepare = getattr(self.ctx.links, "prepare", None)
        if prepare is None:
            return
        wanted = [(d.id, d.recipient, ids) for d in chunk if (ids := own_instance_ids(d.recipient, live.get(d.id, [])))]
        if not wanted:
            return
        if self.unsaved:            # as in ``link``: a rollback below must never undo a mark
            self.commit()
        try:
            prepare(self.ses, wanted, self.ctx.now)
        except Exception:           # noqa: BLE001 - each digest then makes its own link (``link``)
            log.exception("links for a chunk of %d digests", len(wanted))
            self.ses.rollback()
            return
        self.unsaved = self.unsaved or self._wrote()   # the rows go before any URL leaves

    def render(self, d: DeliveryRow) -> EmailJob | WebhookJob | Outcome:
        """The digest as of the sending day, through the templates, packed for its channel."""
        live = self.live.get(d.id)
        if not live:
            return Outcome("dropped", outbox.NOTHING_LEFT)
        digest = build_digest(self.ctx, d.recipient, live, returned_for(self.ses, live))
        digest.link = self.link(d, live)
        try:
            rendered = self.ctx.renderer.render(digest, d.channel)
        except Exception as exc:  # a broken template edit: keep the digest, retry after the fix
            return Outcome.retry(f"Lỗi mẫu thư: {type(exc).__name__}: {exc}")
        if d.channel == "webhook":
            return WebhookJob(d.id, d.target or "", rendered.subject, rendered.chat, {"subject": rendered.subject})
        unit = self.ctx.pack.units.get(d.recipient)
        if unit is None:
            return Outcome.failed(f"Đơn vị “{d.recipient}” không còn trong danh bạ (rules/units.yaml)")
        if not unit.contacts:
            return Outcome.failed(f"Đơn vị “{unit.name}” chưa có địa chỉ e-mail (contacts) trong rules/units.yaml")
        try:
            to = [address(unit.name, c) for c in unit.contacts]
            rcpts = [envelope_address(c) for c in unit.contacts]
            sender, reply, env_from = self.ctx.sender()
            msg = build_email(rendered, delivery_key=d.key, message_id=d.message_id, sender=sender, to=to,
                              reply_to=reply, date=self.ctx.now.astimezone(ZoneInfo(self.ctx.pack.info.timezone)))
            data = to_bytes(msg)
        except BadAddress as exc:
            return Outcome.failed(str(exc))
        name = None
        if not self.ctx.smtp.host:        # the pickup folder: a file named by date and recipient
            name = d.file_name or pickup_name(self.ctx.now.astimezone(ZoneInfo(self.ctx.pack.info.timezone)),
                                              d.recipient, d.message_id)
        return EmailJob(d.id, d.message_id, env_from, rcpts, data, {"subject": rendered.subject}, file_name=name)

    def link(self, d: DeliveryRow, live: list[tuple[NoticeRow, outbox.Subject]]) -> str | None:
        """The digest's "Báo đã gửi" URL (its row is committed by ``in_flight``, before the send).
        A failure to make one never holds the reminder back: it goes without a link."""
        maker = self.ctx.links
        ids = own_instance_ids(d.recipient, live) if maker is not None else []
        if not ids:
            return None
        if self.unsaved:            # other connections' marks (and their link rows) first: the
            self.commit()           # rollback below must undo this row only, never a mark
        try:
            url = maker(self.ses, d, d.recipient, ids, self.ctx.now)
        except Exception:           # noqa: BLE001 - the reminder matters more than its link
            log.exception("delivery %s: no link for %s", d.id, d.recipient)
            self.ses.rollback()
            return None
        self.unsaved = self.unsaved or (url is not None and self._wrote())
        return url

    def commit(self) -> None:
        """What the session holds (link rows), and the staged marks with it unless they are committed
        on the loop (``commits``: they go with the next ``flush`` or outcome)."""
        if self.commits is None:
            self._marks().send(self.ses, commit=True)
        else:
            self.ses.commit()
        self.unsaved = False

    def _wrote(self) -> bool:
        """Whether the session holds writes of its own not yet committed (link rows). Without
        ``commits`` assumed (their commit goes with the marks'); with them known exactly, so a
        digest whose link was made with its chunk costs no commit of the session."""
        ses = self.ses
        return self.commits is None or self.flushed or bool(ses.new or ses.dirty or ses.deleted)

    def flush(self) -> Awaitable[None] | None:
        """Make the staged marks durable (run_channel awaits this before a connection's first command
        for its digest): committed here, or the future of a commit awaited on the loop, which also
        covers marks that went in an earlier commit (commits happen in order)."""
        if self.unsaved:
            self.commit()                # link rows first, in the session: before any URL can leave
        if self.commits is None:
            return None
        if self.marks:
            self.commits.submit(self._marks().pg(self.commits.dialect))
        return self.commits.last

    async def settled(self) -> None:
        """Every write submitted so far committed: before a chunk is read fresh from the database
        (its rows would otherwise overwrite the session objects' newer values)."""
        if self.commits is not None:
            await self.commits.drain()

    def _marks(self) -> outbox.Writes:
        """The staged in-flight marks as statements to send (and forgets them: sent or failed, they
        are not sent twice)."""
        w = outbox.Writes()
        marks, self.marks = self.marks, []
        if marks:
            w.update_all(marks)
        return w

    def in_flight(self, d: DeliveryRow, file_name: str | None = None) -> bool:
        """Note that this digest may reach the receiver from now on (see README), and the file it is
        written to (pickup folder), so a retry or a re-send after a crash rewrites it. Staged only,
        not yet written: ``commit`` (run_channel awaits it through ``Feed.flush`` before the
        connection's first command, shared by the connections that prepared a digest in the same
        turn of the event loop) writes and commits it, with the digest's link row (``link``)."""
        prev = d.maybe_sent
        values: dict[str, object] = {}
        if not prev:
            values["maybe_sent"] = True
        if file_name and d.file_name != file_name:
            values["file_name"] = file_name
        if values:
            self.marks.append((d, values))
            self.unsaved = self.unsaved or self.commits is None
        return prev

    def record(self, d: DeliveryRow, outcome: Outcome, subject: str | None = None,
               prev_maybe: bool | None = None) -> Awaitable[None] | None:
        """The outcome, committed at once: as soon as the reply is in, before the connection sends
        anything else (any staged mark goes with it: usually the connection's next digest, rendered
        while the server answered). With commits on the loop: submitted now, and the returned
        future is done once it is committed (the connection awaits it before its next command)."""
        extra: dict[str, object] = {}
        if subject:
            extra["subject"] = subject
        if prev_maybe is not None:   # sticky: an earlier ambiguous try may have left a copy
            extra["maybe_sent"] = prev_maybe or (outcome.maybe_sent and outcome.kind != SENT)
        s = self.ctx.settings
        ses = self.ses
        if self.commits is not None and (self.unsaved or self._wrote()):
            self.commit()                # the session's own writes before a commit on another connection
        w = outbox.outcome_writes(ses, d, outcome, self.ctx.now, max_attempts=s.max_attempts,
                                  backoff_first_s=s.backoff_first_s, backoff_max_s=s.backoff_max_s,
                                  notice_ids=[n.id for n, _ in self.live[d.id]] if d.id in self.live else None,
                                  pairs=self.pairs, extra=extra, writes=self._marks())  # staged marks go first
        done: Awaitable[None] | None = None
        if self.commits is None:
            w.send(ses, commit=True)
        else:
            done = self.commits.submit(w.pg(self.commits.dialect))
        self.unsaved = False
        r = self.report
        if d.status == SENT:
            r.sent += 1
            r.sent_ids.append(d.id)
        elif d.status == RETRY:
            r.retry += 1
        elif d.status == FAILED:
            r.failed += 1
        elif d.status == DROPPED:
            r.dropped_deliveries += 1
        if d.status in (RETRY, FAILED):
            log.warning("delivery %s to %s: %s", d.id, d.recipient, d.last_error)
        return done


class Feed:
    """The JobSource of one channel: digests in chunks of CHUNK, each rendered just before it is
    sent (``next_job``), marked in flight (``begin``, made durable by ``flush`` before the first
    command), its outcome recorded and committed as soon as the channel reports it (``done``)."""

    def __init__(self, p: Pass, deliveries: list[DeliveryRow]):
        self.p = p
        self.by_id = {d.id: d for d in deliveries}
        self._it = iter(deliveries)
        self._buf: deque[DeliveryRow] = deque()

    async def next_job(self) -> EmailJob | WebhookJob | None:
        p = self.p
        while not p.should_stop():
            if not self._buf:
                chunk = list(islice(self._it, CHUNK))
                if not chunk:
                    return None
                await p.settled()
                p.load(chunk)
                self._buf.extend(chunk)
            d = self._buf.popleft()
            job = p.render(d)
            if isinstance(job, Outcome):
                p.record(d, job)         # nothing was sent: its commit need not be awaited here
                continue
            return job
        return None

    def begin(self, job: EmailJob | WebhookJob) -> None:
        """In flight from now on (staged; durable after the ``flush`` run_channel awaits next)."""
        job.extra["prev_maybe"] = self.p.in_flight(self.by_id[job.delivery_id], getattr(job, "file_name", None))

    def flush(self) -> Awaitable[None] | None:
        return self.p.flush()

    def done(self, job: EmailJob | WebhookJob, outcome: Outcome) -> Awaitable[None] | None:
        return self.p.record(self.by_id[job.delivery_id], outcome, job.extra.get("subject"),
                             job.extra.get("prev_maybe"))

    def unget(self, job: EmailJob | WebhookJob) -> None:
        """A job taken but not sent (the server went down, a stop was asked for): first again."""
        self._buf.appendleft(self.by_id[job.delivery_id])

    def defer_rest(self, reason: str) -> None:
        for d in chain(self._buf, self._it):
            self.p.record(d, Outcome.retry(reason))
        self._buf.clear()


def channels_for(smtp: SmtpConfig, settings: DeliveryConfig, reuse: bool) -> list[Channel]:
    """E-mail (SMTP, or the pickup folder without a host) and webhooks."""
    mail: Channel = SmtpChannel(smtp, reuse=reuse) if smtp.host else PickupChannel(smtp.pickup_dir)
    return [mail, WebhookChannel(settings.webhook_concurrency, settings.webhook_timeout)]


# -- the stages ---------------------------------------------------------------------------------
async def sending_window(p: Pass) -> None:
    """Working days, within the sending hours: outside them the pass writes nothing at all."""
    blocked = sending_block_reason(p.ctx.pack, p.ctx.now, p.ctx.settings)
    if blocked:
        p.stop(blocked)


async def one_sender(p: Pass) -> None:
    """One sender per database (the daemon's job and a manual ``dondoc notify``)."""
    eng = _engine(p.db)
    if not p.stack.enter_context(sender_lock(eng)):
        p.stop("Một tiến trình khác đang gửi thư từ cùng cơ sở dữ liệu")
        return
    # One connection for the whole pass (the session commits on it instead of handing it back to
    # the pool at every commit): a pass commits about twice per message, and each check-out costs a
    # pool round (on PostgreSQL a pre-ping query too).
    conn = p.stack.enter_context(eng.connect())
    p.ses = p.stack.enter_context(Session(bind=conn, expire_on_commit=False))
    if AWAIT_COMMITS and eng.dialect.name == "postgresql":
        p.commits = await AsyncCommits.connect(eng)
        p.stack.push_async_callback(p.commits.aclose)
        event.listen(p.ses, "after_flush", lambda *_: setattr(p, "flushed", True))
        for ended in ("after_commit", "after_rollback"):
            event.listen(p.ses, ended, lambda *_: setattr(p, "flushed", False))


async def drop_moot(p: Pass) -> None:
    """Notices whose report was submitted or waived, or whose KPI fact changed: never sent."""
    p.report.dropped_notices = outbox.drop_moot(p.ses, p.ctx.now, p.ctx.kpi)
    p.ses.commit()


async def assign_routes(p: Pass) -> None:
    """One digest per recipient and route, committed before anything is sent."""
    p.report.new_deliveries = outbox.assign(p.ses, p.ctx.pack, p.ctx.now, p.ctx.domain)
    p.ses.commit()
    # The chunks read next join today's digests, their items and notices: planned for the tables
    # as they are now, not as autovacuum last saw them (PostgreSQL; engine.db.refresh_statistics).
    refresh_statistics(p.ses, outbox.OUTBOX_TABLES, p.report.new_deliveries)
    p.due = outbox.due_deliveries(p.ses, p.ctx.now)


async def send_due(p: Pass) -> None:
    """Each channel sends its due digests: render → send → record, per digest (Feed, run_channel)."""
    jobs = [run_channel(ch, Feed(p, [d for d in p.due if d.channel == ch.kind]), p.should_stop)
            for ch in channels_for(p.ctx.smtp, p.ctx.settings, p.reuse_connections)]
    await asyncio.gather(*jobs)
    await p.settled()                    # outcomes nobody awaited (digests not sent) committed too


Stage = Callable[[Pass], Awaitable[None]]
STAGES: tuple[Stage, ...] = (sending_window, one_sender, drop_moot, assign_routes, send_due)


def _engine(db: Engine | str) -> Engine:
    if isinstance(db, Engine):
        return db
    from engine.db import get_engine

    return get_engine(db)


async def adeliver(db: Engine | str, pack: RulePack, now: datetime, *, smtp: SmtpConfig, delivery: DeliveryConfig,
                   renderer: Renderer | None = None,
                   should_stop: Callable[[], bool] | None = None, reuse_connections: bool = True,
                   links: LinkMaker | None = None) -> PassReport:
    """The delivery pass (async form, for callers that already run an event loop): STAGES in order.
    ``links``: makes each digest's "Báo đã gửi" link (None: digests carry no link)."""
    report = PassReport(now=now.isoformat(), mode="smtp" if smtp.host else "pickup")
    p = Pass(db, _context(pack, now, smtp, delivery, renderer, links), report, should_stop or (lambda: False),
             reuse_connections)
    async with p.stack:
        for stage in STAGES:
            await stage(p)
            if p.stopped:
                break
    return report


def deliver(db: Engine | str, pack: RulePack, now: datetime, **kwargs) -> PassReport:
    """The delivery pass (blocking). Keyword arguments as for ``adeliver``."""
    return asyncio.run(adeliver(db, pack, now, **kwargs))
