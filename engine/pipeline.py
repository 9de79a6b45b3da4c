"""One evaluation pass: open instances from the state database → evaluator → notices in the outbox.

The evaluator (durable-rules, engine/evaluation.py) decides; this module only loads the facts it
needs and writes its decisions idempotently (a notice's key is unique, so a second pass at the same
moment adds nothing).

KPI targets (engine/kpi) join the same pass: every slipping item of ``kpi_items`` (Chậm tiến độ,
Không đạt, Thiếu số liệu) is posted to the same durable-rules ruleset as an ``OpenItem``
(obligation ``kpi:<target>``, unit = the responsible unit, period ``<status>:<period or milestone>``,
policy ``chi-tieu``), so its notices go through the same outbox into the unit's digest. The
secretariat (``pack.admin_contact``) gets one ``kpi_summary`` notice per ISO week while any target
slips; its content is computed when it is sent (notifications/delivery.py).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select as sa_select
from sqlmodel import Session

from engine.errors import RulePackInvalid
from engine.gcpause import gc_paused
from engine.kpi.subject import KpiSubject, encode
from engine.notice_writer import NoticeWriter
from engine.open_items import OpenItemChunks, load_open_items, lookahead  # noqa: F401  (re-exported)
from engine.evaluation import DurableEvaluator, NoticeIntent, OpenItem, PythonEvaluator
from engine.rules_loader import RulePack
from engine.rules_model import ReminderPolicy
from engine.state import NoticeRow

log = logging.getLogger("dondoc.pipeline")

_lock = threading.Lock()
_current: dict[str, object] = {}

# The reminder policy of KPI items. A pack overrides it by declaring a reminder policy with this id
# in its pack.yaml (e.g. to escalate to the supervisor or to repeat more often).
KPI_POLICY_ID = "chi-tieu"
KPI_POLICY = ReminderPolicy(
    id=KPI_POLICY_ID,
    before_due_working_days=[],          # nothing to announce: the item exists only once it slips
    on_due_day=False,                    # the day it became known is a grace day (see kpi_open_items)
    overdue_after_working_days=0,        # from the next day on
    repeat_every_working_days=20,        # about once a month while it still slips …
    max_repeats=2,                       # … twice at most
    escalate_after_working_days=None,    # the secretariat sees every slipping target in its summary
    escalate_to=[],
)
KPI_SUMMARY_OBLIGATION = "kpi-summary"
# Items evaluated per call while the previous call's notices are being written (measured: 2,000 to
# 10,000 are alike; smaller overlaps the first and last chunks better).
PASS_CHUNK = 2_000
# KPI subjects asked per query of their sent stages (three parameters each; SQLite's oldest limit
# is 999). A province's pass has tens of slipping KPI items, so it is one query.
_SUBJECTS_PER_QUERY = 300
KPI_SUMMARY_STAGE = "summary"


def effective_policies(pack: RulePack) -> dict[str, ReminderPolicy]:
    """The pack's reminder policies plus the built-in KPI policy (unless the pack declares its own)."""
    if KPI_POLICY_ID in pack.policies:
        return pack.policies
    return {**pack.policies, KPI_POLICY_ID: KPI_POLICY}


def policies_version(pack: RulePack) -> str:
    h = hashlib.sha256()
    policies = effective_policies(pack)
    for pid in sorted(policies):
        h.update(policies[pid].model_dump_json().encode())
    return h.hexdigest()[:16]


def exhaustion_marker(pack: RulePack) -> str | None:
    """What an exhausted instance is marked with: changes with the policies (the built-in KPI one
    included), the pack and calendar files, and the calendar's overrides as loaded, so any change
    that could give an exhausted instance something to send again makes the pass read it again.
    None for a pack without a content version (built in code): then nothing is marked."""
    if not pack.version:
        return None
    h = hashlib.sha256(f"{pack.version}|{policies_version(pack)}|".encode())
    h.update(pack.calendar.overrides.model_dump_json().encode())
    return h.hexdigest()[:32]


def evaluator_for(pack: RulePack) -> DurableEvaluator:
    """One compiled ruleset per rules version; the previous one is freed when the rules change."""
    version = policies_version(pack)
    with _lock:
        ev = _current.get("evaluator")
        if ev is not None and _current.get("version") == version:
            return ev  # type: ignore[return-value]
        if ev is not None:
            ev.close()  # type: ignore[attr-defined]
        ev = DurableEvaluator(effective_policies(pack), batch=True)  # verified equal to single posting (tests)
        _current.update(evaluator=ev, version=version)
        return ev


@dataclass
class EvalReport:
    as_of: date
    open_items: int = 0
    considered: int = 0
    intents: int = 0
    created: int = 0
    notices: list[NoticeIntent] = field(default_factory=list)
    kpi_items: int = 0                  # slipping KPI items posted to the evaluator
    kpi_error: str | None = None        # why KPI items could not be evaluated (reminders went on)

    def as_dict(self) -> dict[str, object]:
        return {"as_of": self.as_of.isoformat(), "open_items": self.open_items, "considered": self.considered,
                "intents": self.intents, "created": self.created, "kpi_items": self.kpi_items,
                "kpi_error": self.kpi_error,
                "notices": [{"key": n.key, "obligation": n.obligation, "unit": n.unit, "period": n.period,
                             "stage": n.stage, "kind": n.kind, "recipient": n.recipient,
                             "working_days_before": n.wd_before, "working_days_late": n.wd_late} for n in self.notices]}


def _kpi_sent_stages(session: Session, subjects: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], set[str]]:
    """Stages already in the outbox (any status: a dropped stage is not redone) for each of these
    KPI subjects (obligation, unit, period).

    Only today's subjects are read, one index lookup each (the partial index of KPI notices, 0014),
    not every KPI notice ever written: those grow every month for as long as dondoc runs
    (benchmarks/README.md, the two-year soak). SQLite is told the index: by its estimate the
    notices' instance_id index finds ``instance_id IS NULL`` faster, and it would then read every
    KPI notice for each subject."""
    sent: dict[tuple[str, str, str], set[str]] = {}
    connection = session.connection()
    dialect = connection.dialect
    hint = " INDEXED BY ix_notices_kpi_subject" if dialect.name == "sqlite" else ""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row = f"({mark}, {mark}, {mark})"
    for start in range(0, len(subjects), _SUBJECTS_PER_QUERY):
        part = subjects[start:start + _SUBJECTS_PER_QUERY]
        rows = connection.exec_driver_sql(
            f"WITH v(o, u, p) AS (VALUES {', '.join([row] * len(part))}) "
            f"SELECT n.obligation, n.unit, n.period, n.stage FROM v JOIN notices n{hint} "
            "ON n.obligation = v.o AND n.unit = v.u AND n.period = v.p WHERE n.instance_id IS NULL",
            tuple(value for subject in part for value in subject))
        for ob, unit, period, stage in rows:
            sent.setdefault((ob, unit, period), set()).add(stage)
    return sent


def kpi_open_items(session: Session, pack: RulePack, today: date,
                   tracking_start: date | None = None) -> list[OpenItem]:
    """The slipping KPI items of ``today`` as OpenItems for the evaluator.

    ``due`` is the day the item became known (``KpiItem.since``: the source report's due day for
    Thiếu số liệu, the day the value was entered for Chậm tiến độ / Không đạt), so the policy's
    stages count working days from it and chasing starts the day after. An item that became known
    before ``tracking_start`` is not chased (go-live: a fresh install does not chase 2025's missing
    figures; the secretariat's summary still lists it). Raises RulePackInvalid when the pack's KPI
    files are broken.
    """
    from engine.kpi.report import kpi_items

    items = kpi_items(session, pack, today)
    if tracking_start is not None:
        items = [it for it in items if (it.since or it.expected_at or today) >= tracking_start]
    if not items:
        return []
    chased = []
    for it in items:
        unit = pack.units.get(it.unit)
        if unit is not None:
            ob, period = encode(KpiSubject.of(it.target, it.status, it.period, it.milestone))
            chased.append((it, unit, ob, period))
    sent = _kpi_sent_stages(session, sorted({(ob, it.unit, period) for it, _, ob, period in chased}))
    return [OpenItem(ob, it.unit, period, it.since or it.expected_at or today, KPI_POLICY_ID, "open",
                     frozenset(sent.get((ob, it.unit, period), ())), unit.supervisor)
            for it, unit, ob, period in chased]


def kpi_summary_intent(pack: RulePack, today: date) -> NoticeIntent | None:
    """One summary for the secretariat per ISO week (the first working day the pass runs), keyed
    ``kpi-summary|<admin>|<yyyy-Www>|summary|<admin>``; the caller asks only when a target slips."""
    admin = pack.info.admin_contact
    if not admin or admin not in pack.units or not pack.calendar.is_working_day(today):
        return None
    year, week, _ = today.isocalendar()
    return NoticeIntent(KPI_SUMMARY_OBLIGATION, admin, f"{year}-W{week:02d}", KPI_SUMMARY_STAGE, admin,
                        "kpi_summary", 0, 0)


def _kpi_part(session: Session, pack: RulePack, today: date, tracking_start: date | None,
              ev: DurableEvaluator | PythonEvaluator) -> tuple[list[OpenItem], str | None, NoticeIntent | None]:
    """The slipping KPI items a pass evaluates, why they were skipped (or None), and this week's
    summary for the secretariat if it is not in the outbox yet."""
    from engine.sync import tracking_start_in_force

    kpi_start = tracking_start if tracking_start is not None else tracking_start_in_force(session, pack)
    kpi: list[OpenItem] = []
    kpi_error = None
    # PostgreSQL: a failed statement aborts the transaction; a savepoint keeps what the caller has
    # not committed yet, and what the pass's reader may already have read of it.
    savepoint = session.begin_nested() if session.get_bind().dialect.name == "postgresql" else nullcontext()
    try:
        with savepoint:
            kpi = kpi_open_items(session, pack, today, kpi_start)
    except RulePackInvalid as exc:       # a typo in rules/kpi must not stop the reminders
        kpi_error = f"tệp chỉ tiêu không hợp lệ: {exc}"
        log.warning("KPI items skipped: %s", kpi_error, extra={"event": "kpi_invalid"})
    except Exception as exc:             # nor must a KPI bug: logged loudly, reminders go on
        kpi_error = f"{type(exc).__name__}: {exc}"
        log.exception("KPI items skipped", extra={"event": "kpi_failed"})
    if kpi and KPI_POLICY_ID not in ev.policies:
        kpi_error = f"bộ đánh giá không có chính sách “{KPI_POLICY_ID}”: {len(kpi)} chỉ tiêu không được xét"
        log.warning("KPI items skipped: %s", kpi_error, extra={"event": "kpi_no_policy"})
        kpi = []
    summary = None
    if kpi:
        summary = kpi_summary_intent(pack, today)
        if summary is not None and session.execute(
                sa_select(NoticeRow.id).where(NoticeRow.key == summary.key)).first() is not None:
            summary = None
    return kpi, kpi_error, summary


def evaluate(session: Session, pack: RulePack, now: datetime, dry_run: bool = False,
             evaluator: DurableEvaluator | PythonEvaluator | None = None,
             tracking_start: date | None = None, keep_notices: bool = True) -> EvalReport:
    """One pass at ``now``: open instances and slipping KPI items through the evaluator, notices
    written idempotently (plus this ISO week's KPI summary for the secretariat, once). A broken KPI
    folder is reported in ``kpi_error`` and logged; the reports are evaluated all the same.
    KPI items honour ``tracking_start``, by default the one the last sync tracked from
    (engine.sync.tracking_start_in_force), so they follow the same go-live rule as the reports.
    ``keep_notices=False`` (the daemon): the report counts the notices but does not list them, so
    each chunk's are freed once written (at 100,000 items, keeping them cost the garbage collector's
    first walk after the pass ≈17 ms and their release ≈8 ms)."""
    today = now.date()
    ev = evaluator or evaluator_for(pack)
    intents: list[NoticeIntent] = []
    created = considered = owed = 0
    # Chunk by chunk: the reader thread fetches the next chunk and the writer thread inserts the
    # previous chunk's notices while this one is evaluated (engine/open_items.py,
    # engine/notice_writer.py). The evaluator keeps nothing between calls, so the notices are the
    # same as one call over everything (tests/test_pipeline.py). KPI items are evaluated last; they
    # are found (≈7 ms of queries at 221 targets) while the writer writes the last chunk when it
    # writes on a connection of its own, else while the reader fetches its first page.
    # Instances with nothing left to send are marked and not read again under the same rules
    # (engine/open_items.py): the backlog of reports never submitted does not slow every pass.
    # The cyclic garbage collector waits meanwhile: items and intents form no cycles, and its walks
    # over them would cost a fifth of the pass (engine/gcpause.py).
    marker = exhaustion_marker(pack)
    with gc_paused(), OpenItemChunks(session, pack, today, PASS_CHUNK, marker) as chunks:
        with NoticeWriter(session, today, now, write=not dry_run, marker=marker) as writer:
            kpi_late = writer.session_free
            if not kpi_late:            # before the first put: the writer has not touched the connection
                kpi, kpi_error, summary = _kpi_part(session, pack, today, tracking_start, ev)
            for items in chunks:
                considered += len(items)
                exhausted: list[OpenItem] = []
                found = ev.evaluate(items, today, pack.calendar, exhausted)
                writer.put(found, exhausted=exhausted)
                owed += len(found)
                if keep_notices:
                    intents.extend(found)
            if kpi_late:
                kpi, kpi_error, summary = _kpi_part(session, pack, today, tracking_start, ev)
            if kpi:
                found = ev.evaluate(kpi, today, pack.calendar)
                if summary is not None:
                    found.append(summary)
                writer.put(found, link=False)
                owed += len(found)
                if keep_notices:
                    intents.extend(found)
    if not dry_run:
        created = writer.created
    report = EvalReport(as_of=today, open_items=considered, considered=considered, intents=owed,
                        notices=intents, kpi_items=len(kpi), kpi_error=kpi_error, created=created)
    if dry_run:
        session.rollback()
        return report
    session.commit()
    return report
