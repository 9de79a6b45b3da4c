"""The outbox state machine over ``notices`` (written by evaluation) and ``deliveries`` (ours).

notice pending ──assign──► item in a delivery per route ──send──► delivery sent | retry | failed
       └─ moot (instance submitted, waived or no longer asked for) ──► dropped, never sent

KPI notices (kind "kpi", about a ``KpiSubject`` of engine/kpi/subject.py; kind "kpi_summary" for the
secretariat) have no instance: what they are about is computed from the KPI values as of the
sending day, once per delivery pass (``KpiFacts``),
and a KPI item that no longer slips the same way (a value was recorded, the target is met or back on
track) is moot like a submitted report.

The notices' own status/attempts/sent_at/message_id columns are kept as a summary of their
deliveries, so ``status``-style reports need not join.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Union

from functools import lru_cache

from sqlalchemy import Executable, bindparam, insert, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from engine.db import execute_and_commit
from engine.errors import RulePackInvalid
from engine.kpi.report import KpiItem, KpiSummary, ReportRow
from engine.kpi.subject import KpiSubject, decode, is_kpi_obligation
from engine.rules_loader import RulePack
from engine.state import InstanceRow, NoticeRow, UnitRow
from notifications.mime import digest_hash, message_id_for
from notifications.models import (DROPPED, FAILED, OPEN_STATUSES, PENDING, RETRY, SENT, STATUS_VI,
                                  DeliveryItemRow, DeliveryRow)
from notifications.retry import backoff
from notifications.transport import Outcome, mask_url

FRESH = {"populate_existing": True}   # re-read rows another process may have changed
KPI_SUMMARY_KIND = "kpi_summary"
NOTHING_LEFT = ("Mọi nội dung trong thư đã được giải quyết (báo cáo đã nộp hoặc được miễn, chỉ tiêu đã có số liệu "
                "hoặc không còn chậm): không gửi")

log = logging.getLogger("dondoc.notify")


@dataclass(frozen=True)
class Route:
    route: str          # "email" or "webhook:<hash of URL>"
    channel: str        # email | webhook
    target: str | None  # webhook URL


SUMMARY_ROUTE_PREFIX = "kpi-summary:"
SELF_ESCALATION = "Đơn vị nhận thư chính là đơn vị chậm nộp: không tự đôn đốc chính mình (thư nhắc của đơn vị đã ghi)"


def routes_for_notice(pack: RulePack, n: NoticeRow) -> list[Route]:
    """The routes of one notice: the secretariat's weekly KPI summary travels on routes of its own
    (``kpi-summary:email`` …), so it is a message of its own, never inside a unit's reminder."""
    routes = routes_for(pack, n.recipient)
    if is_kpi_summary(n):
        return [Route(SUMMARY_ROUTE_PREFIX + r.route, r.channel, r.target) for r in routes]
    return routes


def routes_for(pack: RulePack, recipient: str) -> list[Route]:
    """E-mail (always, unless the unit lists only webhooks) plus one route per webhook URL.

    A unit without any address still gets an e-mail route: its digest fails visibly ("no
    address") and can be re-queued with ``dondoc outbox retry`` once the rules are fixed.
    """
    unit = pack.units.get(recipient)
    hooks = list(unit.webhooks) if unit else []
    out = [Route("email", "email", None)] if (unit is None or unit.contacts or not hooks) else []
    out += [Route(f"webhook:{digest_hash(u, 16)}", "webhook", u) for u in dict.fromkeys(hooks)]
    return out


# ---------------------------------------------------------------------------------------------
# KPI notices


def is_kpi_item(n: NoticeRow) -> bool:
    return n.instance_id is None and is_kpi_obligation(n.obligation)


def is_kpi_summary(n: NoticeRow) -> bool:
    return n.instance_id is None and n.kind == KPI_SUMMARY_KIND


def is_kpi(n: NoticeRow) -> bool:
    return is_kpi_item(n) or is_kpi_summary(n)


class KpiFacts:
    """The KPI status as of the sending day: what each KPI notice is about.

    ``resolve`` evaluates every target once per delivery pass (``engine.kpi.report.kpi_status``),
    the first time KPI notices are checked for mootness, so a value recorded before the pass counts
    and the thousands of digests of one pass (read in chunks of 16) share one computation. When the
    KPI files cannot be read, ``error`` says why and nothing is moot (the notices are sent with what
    they carry; the secretariat's summary shows the error).
    """

    def __init__(self, pack: RulePack, today: date):
        self.pack, self.today = pack, today
        self.items: dict[KpiSubject, KpiItem] = {}
        self.rows: dict[str, ReportRow] = {}
        self.summary: KpiSummary | None = None
        self.error: str | None = None
        self.resolved = 0                  # how many times kpi_status ran (once per pass)

    def resolve(self, ses: Session) -> "KpiFacts":
        """Compute the KPI status once; later calls in the same pass reuse it."""
        if self.resolved:
            return self
        from engine.kpi.report import kpi_status

        self.resolved += 1
        try:
            rows, items, summary = kpi_status(ses, self.pack, self.today)
        except RulePackInvalid as exc:   # a KPI typo (no query ran): never stop the reports' digests
            self._failed(f"tệp chỉ tiêu không hợp lệ: {exc}")
        except Exception as exc:         # nor a KPI bug; PostgreSQL: end the aborted transaction
            ses.rollback()
            self._failed(f"{type(exc).__name__}: {exc}")
            log.exception("KPI status failed")
        else:
            self.items = {KpiSubject.of(i.target, i.status, i.period, i.milestone): i for i in items}
            self.rows = {r.target: r for r in rows}
            self.summary, self.error = summary, None
        return self

    def _failed(self, error: str) -> None:
        self.items, self.rows, self.summary, self.error = {}, {}, None, error
        log.warning("KPI status unavailable at send time: %s", error)

    def subject(self, n: NoticeRow) -> KpiItem | KpiSummary | None:
        if is_kpi_summary(n):
            return self.summary
        subj = decode(n.obligation, n.period)
        return self.items.get(subj) if subj else None

    def moot_reason(self, n: NoticeRow) -> str | None:
        """Why a KPI notice must not be sent any more (None: still worth sending, or unknown)."""
        if self.error is not None:
            return None
        if is_kpi_summary(n):
            if self.summary is None or not self.summary.slipping:
                return "Không còn chỉ tiêu nào chậm tiến độ, không đạt hoặc thiếu số liệu"
            return None
        subj = decode(n.obligation, n.period)
        if subj is None or subj in self.items:
            return None
        row = self.rows.get(subj.target)
        if row is None:
            return f"Không còn chỉ tiêu “{subj.target}” trong tệp chỉ tiêu"
        when = f" (kỳ {row.period})" if row.status == "no_data" and row.period else ""
        return f"Chỉ tiêu “{row.indicator_name}” nay có tình trạng “{row.status_vi}”{when}"


Subject = Union[InstanceRow, KpiItem, KpiSummary, None]


def _subjects_for(ses: Session, notices: list[NoticeRow], kpi: KpiFacts | None,
                  instances: dict[int, InstanceRow | None]) -> dict[int, Subject]:
    """notice id → what it is about: its instance, or for KPI notices the current KPI item/summary.
    ``instances``: instance id → its row (None: gone), read fresh with the notices; older notices
    without an instance id find theirs here."""
    kpi_notices = [n for n in notices if is_kpi(n)]
    out: dict[int, Subject] = {n.id: instances[n.instance_id] for n in notices
                               if not is_kpi(n) and n.instance_id is not None}
    out.update(_instances_for(ses, [n for n in notices if not is_kpi(n) and n.instance_id is None]))
    if kpi_notices and kpi is not None:
        kpi.resolve(ses)
    for n in kpi_notices:
        out[n.id] = kpi.subject(n) if kpi is not None else None
    return out


def notice_moot_reason(n: NoticeRow, subject: Subject, kpi: KpiFacts | None) -> str | None:
    """``moot_reason`` for any notice: instances as before, KPI notices through ``KpiFacts``
    (without one — a caller that cannot compute KPI status — a KPI notice is never moot)."""
    if is_kpi(n):
        return kpi.moot_reason(n) if kpi is not None else None
    if n.kind == "escalation" and n.unit == n.recipient:
        return SELF_ESCALATION
    if n.kind == RETURNED_KIND and getattr(subject, "awaiting_since", None) is not None:   # an instance
        return "Đơn vị đã báo gửi lại báo cáo sau khi bị trả lại"
    return moot_reason(subject)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# "returned": the secretariat returned a report a unit said it had sent; the unit is told why, in
# a digest of its own carrying a fresh link. One notice per confirmation (its id is in the key).

RETURNED_KIND = "returned"
_RETURNED_KEY = re.compile(r"\|returned:(\d+)\|")


def returned_notice(inst: InstanceRow, confirmation_id: int, as_of: date, now: datetime) -> NoticeRow:
    """The notice that mails a returned report's reason to its unit (the caller adds and commits it)."""
    return NoticeRow(key=f"{inst.obligation}|{inst.unit}|{inst.period}|returned:{confirmation_id}|{inst.unit}",
                     instance_id=inst.id, obligation=inst.obligation, unit=inst.unit, period=inst.period,
                     stage=RETURNED_KIND, kind=RETURNED_KIND, recipient=inst.unit, as_of=as_of, created_at=now)


def returned_confirmation_id(n: NoticeRow) -> int | None:
    """The confirmation a "returned" notice is about (None for any other notice)."""
    if n.kind != RETURNED_KIND:
        return None
    m = _RETURNED_KEY.search(n.key)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------
# moot notices


def _instances_for(ses: Session, notices: list[NoticeRow]) -> dict[int, InstanceRow | None]:
    """notice id → its instance, freshly read (a submission may have just closed it)."""
    ids = {n.instance_id for n in notices if n.instance_id is not None}
    by_id = {}
    if ids:
        by_id = {i.id: i for i in ses.exec(select(InstanceRow).where(col(InstanceRow.id).in_(ids))
                                            .execution_options(**FRESH)).all()}
    out: dict[int, InstanceRow | None] = {}
    for n in notices:
        if n.instance_id is not None:
            out[n.id] = by_id.get(n.instance_id)
        else:
            out[n.id] = ses.exec(select(InstanceRow).where(InstanceRow.obligation == n.obligation,
                                                           InstanceRow.unit == n.unit, InstanceRow.period == n.period)
                                 .execution_options(**FRESH)).first()
    return out


def moot_reason(inst: InstanceRow | None) -> str | None:
    """Why a notice about this instance must not be sent any more (None: still worth sending)."""
    if inst is None:
        return "Không còn kỳ báo cáo tương ứng"
    if inst.waived:
        return "Đơn vị được miễn nộp kỳ báo cáo này"
    if inst.closed:
        on = f" ngày {inst.submitted_on:%d/%m/%Y}" if inst.submitted_on else ""
        return f"Đơn vị đã nộp báo cáo{on}"
    if not inst.active:
        return "Quy tắc hiện hành không còn yêu cầu kỳ báo cáo này"
    if inst.chase_paused:
        on = f" ngày {inst.awaiting_since:%d/%m/%Y}" if inst.awaiting_since else ""
        return f"Đơn vị đã báo đã gửi báo cáo{on}, chờ Văn phòng xác nhận"
    return None


@dataclass(frozen=True)
class _InstanceState:
    """What ``moot_reason`` reads of an instance, read as a plain row by ``drop_moot``."""
    active: bool
    closed: bool
    waived: bool
    submitted_on: date | None
    awaiting_since: date | None
    chase_paused: bool


_INSTANCE_STATE = (InstanceRow.id.label("inst_id"), InstanceRow.active, InstanceRow.closed, InstanceRow.waived,
                   InstanceRow.submitted_on, InstanceRow.awaiting_since, InstanceRow.chase_paused)


def _chunked(ids: list[int], n: int = 500):
    """IN lists of a bounded size (SQLite and PostgreSQL limit the parameters of one statement)."""
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def drop_moot(ses: Session, now: datetime, kpi: KpiFacts | None = None) -> int:
    """Pending notices whose instance became moot: never sent. Returns how many were dropped.

    Items already in a digest that has not gone out are dropped from it; a digest left with no
    item is dropped as a whole. KPI notices are checked against ``kpi`` (recomputed here).
    Every open notice is checked from plain rows (one query joining its instance's state); only
    the moot ones are then loaded as objects and changed.
    """
    rows = ses.exec(select(*_NOTICE_BRIEF, *_INSTANCE_STATE)
                    .outerjoin(InstanceRow, InstanceRow.id == NoticeRow.instance_id)
                    .where(col(NoticeRow.status).in_((PENDING, RETRY)))).all()
    if not rows:
        return 0
    subj: dict[int, Subject | _InstanceState] = {}
    legacy = []                     # no instance id (older notices): found by obligation, unit, period
    kpi_rows = []
    for r in rows:
        if is_kpi(r):               # type: ignore[arg-type]
            kpi_rows.append(r)
        elif r.instance_id is None:
            legacy.append(r)
        else:
            subj[r.id] = (None if r.inst_id is None else
                          _InstanceState(r.active, r.closed, r.waived, r.submitted_on, r.awaiting_since,
                                         r.chase_paused))
    if legacy:
        subj.update(_instances_for(ses, legacy))            # type: ignore[arg-type]
    if kpi_rows and kpi is not None:
        kpi.resolve(ses)
    for r in kpi_rows:
        subj[r.id] = kpi.subject(r) if kpi is not None else None   # type: ignore[arg-type]
    moot = {r.id: reason for r in rows
            if (reason := notice_moot_reason(r, subj[r.id], kpi)) is not None}   # type: ignore[arg-type]
    if not moot:
        return 0
    moot_ids = list(moot)
    notices: list[NoticeRow] = []
    items = []
    for ids in _chunked(moot_ids):
        notices += ses.exec(select(NoticeRow).where(col(NoticeRow.id).in_(ids)).execution_options(**FRESH)).all()
        items += ses.exec(select(DeliveryItemRow, DeliveryRow)
                          .join(DeliveryRow, DeliveryRow.id == DeliveryItemRow.delivery_id)
                          .where(col(DeliveryItemRow.notice_id).in_(ids))).all()
    touched: set[int] = set()
    for item, d in items:
        if d.status in OPEN_STATUSES and not item.dropped:
            item.dropped = True
            ses.add(item)
            touched.add(d.id)
    ses.flush()
    _drop_empty(ses, touched, now)
    for n in notices:
        n.last_error = moot[n.id]
        ses.add(n)
    settle_notices(ses, moot_ids, now)
    in_digest = {i.notice_id for i, _ in items}
    dropped = 0
    for n in notices:
        if n.id not in in_digest:
            n.status, n.next_attempt_at = DROPPED, None
            ses.add(n)
        dropped += n.status == DROPPED
    return dropped


def _drop_empty(ses: Session, delivery_ids: set[int], now: datetime) -> None:
    for did in delivery_ids:
        left = ses.exec(select(DeliveryItemRow).where(DeliveryItemRow.delivery_id == did,
                                                      DeliveryItemRow.dropped == False)).first()  # noqa: E712
        if left is None:
            d = ses.get(DeliveryRow, did)
            if d is not None and d.status in OPEN_STATUSES:
                d.status, d.updated_at, d.next_attempt_at = DROPPED, now, None
                d.last_error = NOTHING_LEFT
                ses.add(d)


# ---------------------------------------------------------------------------------------------
# assignment


# The columns of a notice that assignment and the moot check read (routes_for_notice, is_kpi …).
_NOTICE_BRIEF = (NoticeRow.id, NoticeRow.key, NoticeRow.recipient, NoticeRow.kind, NoticeRow.instance_id,
                 NoticeRow.obligation, NoticeRow.unit, NoticeRow.period)


def assign(ses: Session, pack: RulePack, now: datetime, domain: str) -> int:
    """Put every pending notice not yet in a digest for each of its routes into one digest per
    (recipient, route); returns how many digests were created. The caller commits before anything
    is sent."""
    # Plain rows, not ORM objects: a busy day has thousands of open notices, and assignment only
    # reads these columns (what a route and a digest key need).
    notices = ses.exec(select(*_NOTICE_BRIEF).where(col(NoticeRow.status).in_((PENDING, RETRY)))
                       .order_by(NoticeRow.id)).all()
    if not notices:
        return 0
    have = set(ses.exec(select(DeliveryItemRow.notice_id, DeliveryItemRow.route)
                        .join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                        .where(col(NoticeRow.status).in_((PENDING, RETRY)))).all())
    groups: dict[tuple[str, str], tuple[Route, list]] = {}
    for n in notices:
        for r in routes_for_notice(pack, n):
            if (n.id, r.route) not in have:
                groups.setdefault((n.recipient, r.route), (r, []))[1].append(n)
    # Still one message per recipient and route: new notices join a digest that waits for a retry
    # and that no server can have kept so far (its Message-ID then changes with its content).
    waiting = {(d.recipient, d.route): d for d in ses.exec(
        select(DeliveryRow).where(DeliveryRow.status == RETRY, DeliveryRow.maybe_sent == False)  # noqa: E712
        .order_by(DeliveryRow.id)).all()}
    created: list[dict[str, object]] = []
    merged: list[int] = []
    members_of: list[tuple[str, Route, list]] = []
    items: list[dict[str, object]] = []
    for (recipient, route), (r, members) in sorted(groups.items()):
        d = waiting.get((recipient, route))
        keys = [n.key for _, n in delivery_notices(ses, d.id)] if d is not None else []
        keys += [m.key for m in members]
        key = f"{r.route}|{recipient}|{digest_hash(chr(10).join(sorted(keys)), 24)}"
        if d is None:
            created.append(dict(key=key, recipient=recipient, channel=r.channel, route=r.route, target=r.target,
                                message_id=message_id_for(key, domain), status=PENDING, attempts=0,
                                created_at=now, updated_at=now, maybe_sent=False))
            members_of.append((key, r, members))
        else:
            _write(ses, d, {"key": key, "message_id": message_id_for(key, domain), "updated_at": now})
            merged += [m.id for m in members]
            items += [dict(delivery_id=d.id, notice_id=m.id, route=r.route, dropped=False) for m in members]
    if created:                                  # thousands of digests on a busy day
        table = DeliveryRow.__table__
        conn = ses.connection()
        # The driver's executemany (psycopg: pipelined; one statement text), then each id read back
        # by its unique key. An INSERT … RETURNING of many rows is sent as statements of 1,000 rows,
        # whose 11,000 placeholders psycopg parses again for each one: that was half of assigning.
        conn.execute(insert(table), created)
        ids: dict[str, int] = {}
        for keys in _chunked([c["key"] for c in created]):
            ids.update(conn.execute(select(table.c.key, table.c.id).where(table.c.key.in_(keys))).all())
        for key, r, members in members_of:
            items += [dict(delivery_id=ids[key], notice_id=m.id, route=r.route, dropped=False) for m in members]
    if items:
        ses.connection().execute(insert(DeliveryItemRow.__table__), items)
    settle_notices(ses, merged, now)     # a notice in a new digest stays "pending": nothing to update
    return len(created)


# ---------------------------------------------------------------------------------------------
# sending state


# What a delivery pass reads together (load_chunk): the digests first (engine.db.refresh_statistics
# counts the new ones against it).
OUTBOX_TABLES = (DeliveryRow.__tablename__, DeliveryItemRow.__tablename__, NoticeRow.__tablename__)


def due_deliveries(ses: Session, now: datetime) -> list[DeliveryRow]:
    q = (select(DeliveryRow).where(col(DeliveryRow.status).in_(OPEN_STATUSES))
         .where((col(DeliveryRow.next_attempt_at).is_(None)) | (col(DeliveryRow.next_attempt_at) <= now))
         .order_by(DeliveryRow.id).execution_options(**FRESH))
    return list(ses.exec(q).all())


def delivery_notices(ses: Session, delivery_id: int) -> list[tuple[DeliveryItemRow, NoticeRow]]:
    return list(ses.exec(select(DeliveryItemRow, NoticeRow).join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                         .where(DeliveryItemRow.delivery_id == delivery_id, DeliveryItemRow.dropped == False)  # noqa: E712
                         .order_by(NoticeRow.id).execution_options(**FRESH)).all())


def load_chunk(ses: Session, deliveries: list[DeliveryRow], now: datetime,
               kpi: KpiFacts | None = None) -> tuple[dict[int, list[tuple[NoticeRow, Subject]]], Pairs]:
    """Read a batch of digests just before sending them: their notices with freshly read instances
    (for KPI notices: the KPI item or summary recomputed now, None when it cannot be computed).

    Notices that became moot are marked dropped (a digest left empty is dropped too) and that is
    committed at once. Returns the live (notice, subject) pairs per delivery and, per notice, all
    its (item, delivery) pairs so outcomes can be summarised without further queries.
    """
    ses.commit()                                 # end any read snapshot: see the latest submissions
    ids = [d.id for d in deliveries]
    # One query: the chunk's notices with every (item, digest) pair each of them is in (this route's
    # digest and, e.g., a webhook's), the chunk's own live items among them.
    in_chunk = (select(DeliveryItemRow.notice_id)
                .where(col(DeliveryItemRow.delivery_id).in_(ids), DeliveryItemRow.dropped == False))  # noqa: E712
    # Each notice's instance comes with it (outer join: KPI notices have none), in the same
    # statement: a second query per chunk was about a quarter of reading it (benchmarks/README.md).
    every = ses.exec(select(DeliveryItemRow, NoticeRow, DeliveryRow, InstanceRow)
                     .join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                     .join(DeliveryRow, DeliveryRow.id == DeliveryItemRow.delivery_id)
                     .outerjoin(InstanceRow, InstanceRow.id == NoticeRow.instance_id)
                     .where(col(DeliveryItemRow.notice_id).in_(in_chunk))
                     .order_by(NoticeRow.id, DeliveryItemRow.delivery_id).execution_options(**FRESH)).all()
    chunk_ids = set(ids)
    pairs: Pairs = defaultdict(list)
    rows: list[tuple[DeliveryItemRow, NoticeRow]] = []
    instances: dict[int, InstanceRow | None] = {}
    for item, n, d, i in every:
        pairs[n.id].append((item, d))
        if n.instance_id is not None:
            instances[n.instance_id] = i
        if item.delivery_id in chunk_ids and not item.dropped:
            rows.append((item, n))
    inst = _subjects_for(ses, [n for _, n in rows], kpi, instances)
    live: dict[int, list[tuple[NoticeRow, Subject]]] = {i: [] for i in ids}
    moot, touched = [], set()
    for item, n in rows:
        reason = notice_moot_reason(n, inst[n.id], kpi)
        if reason is None:
            live[item.delivery_id].append((n, inst[n.id]))
        else:
            item.dropped, n.last_error = True, reason
            ses.add_all([item, n])
            moot.append(n.id)
            touched.add(item.delivery_id)
    if moot:
        ses.flush()
        _drop_empty(ses, touched, now)
        settle_notices(ses, moot, now, pairs)
        ses.commit()
    return live, pairs


Pairs = dict[int, list[tuple[DeliveryItemRow, DeliveryRow]]]


def _pairs(ses: Session, notice_ids: list[int]) -> Pairs:
    per: Pairs = defaultdict(list)
    if notice_ids:
        for item, d in ses.exec(select(DeliveryItemRow, DeliveryRow)
                                .join(DeliveryRow, DeliveryRow.id == DeliveryItemRow.delivery_id)
                                .where(col(DeliveryItemRow.notice_id).in_(notice_ids))).all():
            per[item.notice_id].append((item, d))
    return per


class Writes:
    """``UPDATE``s of the columns that change, collected and then sent together with their commit
    (no unit-of-work flush: the delivery pass writes for every message): as Core statements through
    the session (``send``: one round trip on PostgreSQL, ``engine.db.execute_and_commit``), or as
    psycopg SQL for a commit awaited on the event loop (``pg``, engine/async_commits.py). The
    session objects are kept in step at once without being marked dirty, so what is computed next
    sees the new values (a query in between still finds the old ones in the database: the identity
    map keeps the objects' new values, which is all ``settle_notices`` reads)."""

    def __init__(self) -> None:
        # (table, changed columns, the row's id or a list of ids, their new values in column order)
        self.updates: list[tuple[Any, tuple[str, ...], int | list[int], tuple[object, ...]]] = []

    def update(self, obj: SQLModel, values: dict[str, object]) -> None:
        changed = {k: v for k, v in values.items() if getattr(obj, k) != v}
        if not changed:
            return
        columns = tuple(sorted(changed))
        self.updates.append((type(obj).__table__, columns, obj.id, tuple(changed[c] for c in columns)))
        for k, v in changed.items():
            set_committed_value(obj, k, v)

    def update_all(self, writes: list[tuple[SQLModel, dict[str, object]]]) -> None:
        """Rows of one table given the same new values (the notices of a digest just sent, the
        in-flight marks of one turn) share one ``UPDATE … WHERE id IN (…)``."""
        if len(writes) == 1:
            self.update(*writes[0])
            return
        groups: dict[tuple, list[SQLModel]] = defaultdict(list)
        for obj, values in writes:
            changed = tuple(sorted((k, v) for k, v in values.items() if getattr(obj, k) != v))
            if changed:
                groups[changed].append(obj)
        for changed, objs in groups.items():
            if len(objs) == 1:
                self.update(objs[0], dict(changed))
                continue
            self.updates.append((type(objs[0]).__table__, tuple(k for k, _ in changed), [o.id for o in objs],
                                 tuple(v for _, v in changed)))
            for o in objs:
                for k, v in changed:
                    set_committed_value(o, k, v)

    @property
    def statements(self) -> list[tuple[Executable, dict[str, object]]]:
        """As Core statements with their parameters (for the session's connection)."""
        out: list[tuple[Executable, dict[str, object]]] = []
        for table, columns, ids, values in self.updates:
            if isinstance(ids, list):
                out.append((_update_many_stmt(table, columns), {"_ids": ids, **dict(zip(columns, values))}))
            else:
                out.append((_update_stmt(table, columns), {"_id": ids, **dict(zip(columns, values))}))
        return out

    def pg(self, dialect: Dialect) -> list[tuple[str, tuple[object, ...]]]:
        """As psycopg SQL (``%s`` placeholders) with their parameters, for engine/async_commits.py."""
        out = []
        for table, columns, ids, values in self.updates:
            sql, procs = _pg_update(dialect, table, columns, isinstance(ids, list))
            out.append((sql, (*(p(v) if p else v for p, v in zip(procs, values)), ids)))
        self.updates = []
        return out

    def send(self, ses: Session, commit: bool) -> None:
        """Execute what was collected, then commit when asked (all in one round trip on PostgreSQL
        when nothing else is pending: ``engine.db.execute_and_commit``)."""
        statements, self.updates = self.statements, []
        if commit:
            execute_and_commit(ses, statements)
            return
        conn = ses.connection()
        for stmt, params in statements:
            conn.execute(stmt, params)


def _write(ses: Session, obj: SQLModel, values: dict[str, object]) -> None:
    """One row's changed columns, written now (not committed)."""
    w = Writes()
    w.update(obj, values)
    w.send(ses, commit=False)


@lru_cache(maxsize=256)
def _update_stmt(table, columns: tuple[str, ...]):
    """One statement object per (table, columns): SQLAlchemy then reuses its compiled form."""
    return update(table).where(table.c.id == bindparam("_id")).values({c: bindparam(c) for c in columns})


@lru_cache(maxsize=256)
def _update_many_stmt(table, columns: tuple[str, ...]):
    return (update(table).where(table.c.id.in_(bindparam("_ids", expanding=True)))
            .values({c: bindparam(c) for c in columns}))


@lru_cache(maxsize=256)
def _pg_update(dialect: Dialect, table, columns: tuple[str, ...], many: bool) -> tuple[str, tuple]:
    """``UPDATE t SET a = %s, … WHERE id = %s`` (or ``= ANY(%s)``: a list of ids) and each column
    type's bind processor for this dialect (None: the value as it is), as SQLAlchemy would bind them."""
    q = dialect.identifier_preparer
    sets = ", ".join(f"{q.quote(c)} = %s" for c in columns)
    where = "= ANY(%s)" if many else "= %s"
    procs = tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)
    return f"UPDATE {q.format_table(table)} SET {sets} WHERE {q.quote('id')} {where}", procs


def record(ses: Session, delivery: DeliveryRow, outcome: Outcome, now: datetime, *, max_attempts: int,
           backoff_first_s: float, backoff_max_s: float, notice_ids: list[int] | None = None,
           pairs: Pairs | None = None, extra: dict[str, object] | None = None, commit: bool = True,
           writes: Writes | None = None) -> None:
    """Apply one outcome to a delivery and its notices, and commit at once (``commit=False``: the
    caller commits, before anything else is sent on that connection; see delivery.Feed).
    ``writes``: statements already collected (the in-flight marks of other connections) that go first,
    in the same commit."""
    outcome_writes(ses, delivery, outcome, now, max_attempts=max_attempts, backoff_first_s=backoff_first_s,
                   backoff_max_s=backoff_max_s, notice_ids=notice_ids, pairs=pairs, extra=extra,
                   writes=writes).send(ses, commit=commit)


def outcome_writes(ses: Session, delivery: DeliveryRow, outcome: Outcome, now: datetime, *, max_attempts: int,
                   backoff_first_s: float, backoff_max_s: float, notice_ids: list[int] | None = None,
                   pairs: Pairs | None = None, extra: dict[str, object] | None = None,
                   writes: Writes | None = None) -> Writes:
    """One outcome's writes (the delivery and its notices' summaries), applied to the session's
    objects and collected in ``writes`` (or a new Writes) for the caller to send and commit."""
    d = delivery
    v: dict[str, object] = {"updated_at": now, **(extra or {})}
    if outcome.kind == SENT:
        v.update(attempts=d.attempts + 1, status=SENT, sent_at=now, next_attempt_at=None, last_error=outcome.reason)
    elif outcome.kind == DROPPED:
        v.update(status=DROPPED, next_attempt_at=None, last_error=outcome.reason)
    elif outcome.kind == RETRY:
        attempts = d.attempts + 1
        if attempts >= max_attempts:
            v.update(attempts=attempts, status=FAILED, next_attempt_at=None,
                     last_error=f"Đã thử {attempts} lần, không gửi được. Lần cuối: {outcome.reason}")
        else:
            v.update(attempts=attempts, status=RETRY, last_error=outcome.reason,
                     next_attempt_at=now + backoff(attempts, backoff_first_s, backoff_max_s))
    else:  # failed: permanent for this recipient
        v.update(attempts=d.attempts + 1, status=FAILED, next_attempt_at=None, last_error=outcome.reason)
    ses.flush()                                  # anything pending from earlier steps first
    ids = notice_ids if notice_ids is not None else [n.id for _, n in delivery_notices(ses, d.id)]
    w = writes if writes is not None else Writes()
    w.update(d, v)
    settle_notices(ses, ids, now, pairs if notice_ids is not None else None, writes=w)
    return w


def settle_notices(ses: Session, notice_ids: list[int], now: datetime, pairs: Pairs | None = None,
                   writes: Writes | None = None) -> None:
    """Summarise each notice's deliveries into its own status columns (written now, or added to
    ``writes`` for its caller to send).

    ``pairs`` (from load_chunk) holds the same session objects the pass updates, so it is current
    and saves a query per message."""
    if not notice_ids:
        return
    if writes is None:
        ses.flush()
    per = pairs if pairs is not None and all(i in pairs for i in notice_ids) else _pairs(ses, notice_ids)
    changes: list[tuple[SQLModel, dict[str, object]]] = []
    for nid in notice_ids:
        n = ses.get(NoticeRow, nid)             # usually already in the session: no query
        found = per.get(nid) if n is not None else None
        if not found:
            continue
        live = [d for item, d in found if not item.dropped and d.status != DROPPED]
        sent = [d for d in live if d.status == SENT]
        open_ = [d for d in live if d.status in OPEN_STATUSES]
        failed = [d for d in live if d.status == FAILED]
        v: dict[str, object] = {"attempts": max((d.attempts for d in live), default=n.attempts)}
        if sent:
            first = min(sent, key=lambda d: (d.channel != "email", d.sent_at or now))
            v.update(status=SENT, sent_at=first.sent_at, message_id=first.message_id, next_attempt_at=None)
        elif open_:
            v.update(status=RETRY if any(d.status == RETRY for d in open_) else PENDING,
                     next_attempt_at=min((d.next_attempt_at for d in open_ if d.next_attempt_at), default=None),
                     last_error=next((d.last_error for d in open_ if d.last_error), n.last_error))
        elif failed:
            v.update(status=FAILED, next_attempt_at=None, last_error=failed[-1].last_error)
        else:
            v.update(status=DROPPED, next_attempt_at=None)
        changes.append((n, v))
    if changes:
        w = writes if writes is not None else Writes()
        w.update_all(changes)
        if writes is None:
            w.send(ses, commit=False)


# ---------------------------------------------------------------------------------------------
# `dondoc outbox`


def requeue(ses: Session, ids: list[int], now: datetime, all_failed: bool = False,
            commit: bool = True) -> tuple[list[int], list[str]]:
    """Failed deliveries back to pending (attempts reset, same Message-ID). Returns (ids, problems).
    ``commit=False`` leaves the commit to the caller (who adds its audit rows to the same transaction)."""
    problems: list[str] = []
    if all_failed:
        rows = list(ses.exec(select(DeliveryRow).where(DeliveryRow.status == FAILED)).all())
    else:
        rows = []
        for i in ids:
            d = ses.get(DeliveryRow, i)
            if d is None:
                problems.append(f"không có thư số {i}")
            elif d.status != FAILED:
                problems.append(f"thư số {i} đang ở trạng thái “{STATUS_VI.get(d.status, d.status)}”, chỉ gửi lại được thư không thành công")
            else:
                rows.append(d)
    for d in rows:
        d.status, d.attempts, d.next_attempt_at, d.updated_at = PENDING, 0, None, now
        d.last_error = f"Gửi lại theo yêu cầu ({now:%d/%m/%Y %H:%M}); lỗi trước: {d.last_error}"
        ses.add(d)
        settle_notices(ses, [n.id for _, n in delivery_notices(ses, d.id)], now)
    if commit:
        ses.commit()
    else:
        ses.flush()
    return [d.id for d in rows], problems


# The states a secretary types after ``--state``: Vietnamese words (with or without diacritics) or codes.
STATE_WORDS: dict[str, tuple[str, ...]] = {
    "gửi": (SENT,), "đã gửi": (SENT,), "sent": (SENT,),
    "chờ": (PENDING, RETRY), "chờ gửi": (PENDING,), "pending": (PENDING,),
    "chờ gửi lại": (RETRY,), "gửi lại": (RETRY,), "retry": (RETRY,),
    "lỗi": (FAILED,), "không thành công": (FAILED,), "gửi không thành công": (FAILED,), "failed": (FAILED,),
    "bỏ": (DROPPED,), "không gửi": (DROPPED,), "dropped": (DROPPED,),
}
DEFAULT_STATES = (PENDING, RETRY, FAILED, SENT)     # `dondoc outbox`: everything but what was dropped


def _plain(text: str) -> str:
    import unicodedata

    text = " ".join(text.casefold().split()).replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def parse_states(words: list[str]) -> list[str]:
    """["gửi", "lỗi"] (or "gửi,lỗi", or codes) → delivery statuses; ValueError naming the word."""
    table = {_plain(k): v for k, v in STATE_WORDS.items()}
    out: list[str] = []
    for word in (w.strip() for chunk in words for w in chunk.split(",")):
        if not word:
            continue
        found = table.get(_plain(word))
        if found is None:
            raise ValueError(f"trạng thái “{word}” không có; dùng: gửi (đã gửi), chờ (chờ gửi, chờ gửi lại), "
                             "lỗi (gửi không thành công), bỏ (không gửi), hoặc mã sent, pending, retry, failed, dropped")
        out += [s for s in found if s not in out]
    return out


def resolve_unit(ses: Session, text: str) -> str:
    """A unit's id from its id or its name (any case); ValueError with suggestions otherwise."""
    import difflib

    units = {u.id: u.name for u in ses.exec(select(UnitRow)).all()}
    t = text.strip()
    if t in units:
        return t
    by_name = {_plain(n): i for i, n in units.items()}
    if _plain(t) in by_name:
        return by_name[_plain(t)]
    near = difflib.get_close_matches(_plain(t), list(by_name) + [_plain(i) for i in units], n=3, cutoff=0.6)
    names = [units.get(by_name.get(n, n), n) for n in near]
    hint = f" Có phải: {', '.join(dict.fromkeys(names))}?" if names else ""
    raise ValueError(f"không có đơn vị “{t}” trong danh bạ.{hint}")


def list_outbox(ses: Session, *, failed_only: bool = False, include_sent: bool = False, limit: int = 500,
                states: list[str] | None = None, unit: str | None = None, day: date | None = None,
                tz: str = "Asia/Ho_Chi_Minh") -> list[dict[str, object]]:
    """Digests newest first. By default every state but "dropped" (sent mail included);
    ``include_sent`` (``--all``) adds the dropped ones, ``failed_only`` keeps the failed ones,
    ``states`` picks states explicitly. ``unit`` (an id) keeps one recipient; ``day`` keeps digests
    sent that day (local time), or, not sent, last handled that day."""
    from datetime import time as _time, timedelta
    from zoneinfo import ZoneInfo

    q = select(DeliveryRow)
    if states:
        q = q.where(col(DeliveryRow.status).in_(states))
    elif failed_only:
        q = q.where(DeliveryRow.status == FAILED)
    elif not include_sent:
        q = q.where(col(DeliveryRow.status).in_(DEFAULT_STATES))
    if unit is not None:
        q = q.where(DeliveryRow.recipient == unit)
    if day is not None:
        lo = datetime.combine(day, _time(0, 0), tzinfo=ZoneInfo(tz))
        hi = lo + timedelta(days=1)
        sent_that_day = (col(DeliveryRow.sent_at) >= lo) & (col(DeliveryRow.sent_at) < hi)
        handled_that_day = (col(DeliveryRow.sent_at).is_(None) & (col(DeliveryRow.updated_at) >= lo)
                            & (col(DeliveryRow.updated_at) < hi))
        q = q.where(sent_that_day | handled_that_day)
    rows = ses.exec(q.order_by(col(DeliveryRow.id).desc()).limit(limit)).all()
    names = {u.id: u.name for u in ses.exec(select(UnitRow)).all()}
    counts: dict[int, list[str]] = defaultdict(list)
    if rows:
        for item, n in ses.exec(select(DeliveryItemRow, NoticeRow).join(NoticeRow, NoticeRow.id == DeliveryItemRow.notice_id)
                                .where(col(DeliveryItemRow.delivery_id).in_([d.id for d in rows]),
                                       DeliveryItemRow.dropped == False)).all():  # noqa: E712
            counts[item.delivery_id].append(n.key)
    zone = ZoneInfo(tz)
    out = []
    for d in rows:
        at = d.sent_at or d.updated_at
        out.append({
            "id": d.id, "recipient": d.recipient, "recipient_name": names.get(d.recipient, d.recipient),
            "channel": d.channel, "target": mask_url(d.target) if d.target else None,
            "status": d.status, "status_vi": STATUS_VI.get(d.status, d.status), "attempts": d.attempts,
            "maybe_sent": d.maybe_sent,
            "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
            "reason": d.last_error, "message_id": d.message_id, "subject": d.subject,
            "created_at": d.created_at.isoformat(), "sent_at": d.sent_at.isoformat() if d.sent_at else None,
            "notices": sorted(counts.get(d.id, [])),
            # added for `dondoc outbox` (item 8): what happened when, and where the .eml is
            "kpi_summary": d.route.startswith(SUMMARY_ROUTE_PREFIX),
            "updated_at": d.updated_at.isoformat(), "at": at.isoformat(),
            "at_vi": at.astimezone(zone).strftime("%d/%m/%Y %H:%M"),
            "next_attempt_vi": d.next_attempt_at.astimezone(zone).strftime("%d/%m/%Y %H:%M") if d.next_attempt_at else None,
            "file_name": d.file_name,
        })
    return out
