"""One evaluation pass: open instances from the state database → evaluator → notices in the outbox.

The evaluator (durable-rules, engine/evaluation.py) decides; this module only loads the facts it
needs and writes its decisions idempotently (a notice's key is unique, so a second pass at the same
moment adds nothing).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session

from engine.evaluation import DurableEvaluator, NoticeIntent, OpenItem, PythonEvaluator
from engine.rules_loader import RulePack
from engine.state import InstanceRow, NoticeRow

_lock = threading.Lock()
_current: dict[str, object] = {}


def policies_version(pack: RulePack) -> str:
    h = hashlib.sha256()
    for pid in sorted(pack.policies):
        h.update(pack.policies[pid].model_dump_json().encode())
    return h.hexdigest()[:16]


def evaluator_for(pack: RulePack) -> DurableEvaluator:
    """One compiled ruleset per rules version; the previous one is freed when the rules change."""
    version = policies_version(pack)
    with _lock:
        ev = _current.get("evaluator")
        if ev is not None and _current.get("version") == version:
            return ev  # type: ignore[return-value]
        if ev is not None:
            ev.close()  # type: ignore[attr-defined]
        ev = DurableEvaluator(pack.policies, batch=True)  # verified equal to single posting (tests)
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

    def as_dict(self) -> dict[str, object]:
        return {"as_of": self.as_of.isoformat(), "open_items": self.open_items, "considered": self.considered,
                "intents": self.intents, "created": self.created,
                "notices": [{"key": n.key, "obligation": n.obligation, "unit": n.unit, "period": n.period,
                             "stage": n.stage, "kind": n.kind, "recipient": n.recipient,
                             "working_days_before": n.wd_before, "working_days_late": n.wd_late} for n in self.notices]}


def lookahead(pack: RulePack, today: date) -> date:
    """Instances due after this day cannot trigger any stage yet."""
    longest = max((max(p.before_due_working_days, default=0) for p in pack.policies.values()), default=0)
    return pack.calendar.add_working_days(today, longest + 1)


def load_open_items(session: Session, pack: RulePack, today: date) -> tuple[list[OpenItem], dict[tuple[str, str, str], int]]:
    """Open, active instances that could trigger a stage today, with the stages already in the outbox."""
    horizon = lookahead(pack, today)
    if session.get_bind().dialect.name == "sqlite":
        # Fast path (measured: the ORM row machinery cost more than the evaluation itself).
        raw = session.connection().connection.driver_connection
        rows = [(i, o, u, p, date.fromisoformat(d)) for i, o, u, p, d in raw.execute(
            "SELECT id, obligation, unit, period, due FROM instances WHERE active = 1 AND closed = 0 AND due <= ?",
            (horizon.isoformat(),))]
        sent_rows = raw.execute("SELECT n.instance_id, n.stage FROM notices n JOIN instances i ON i.id = n.instance_id "
                                "WHERE i.active = 1 AND i.closed = 0 AND i.due <= ?", (horizon.isoformat(),)).fetchall()
    else:
        rows = session.execute(
            sa_select(InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.due)
            .where(InstanceRow.active == True, InstanceRow.closed == False, InstanceRow.due <= horizon)  # noqa: E712
        ).all()
        sent_rows = session.execute(
            sa_select(NoticeRow.instance_id, NoticeRow.stage).join(InstanceRow, InstanceRow.id == NoticeRow.instance_id)
            .where(InstanceRow.active == True, InstanceRow.closed == False, InstanceRow.due <= horizon)  # noqa: E712
        ).all()
    sent: dict[int, set[str]] = {}
    for iid, stage in sent_rows:
        sent.setdefault(iid, set()).add(stage)
    policy_of = {oid: pack.policy_for(ob).id for oid, ob in pack.obligations.items()}
    supervisor_of = {uid: u.supervisor for uid, u in pack.units.items()}
    empty: frozenset[str] = frozenset()
    items: list[OpenItem] = []
    index: dict[tuple[str, str, str], int] = {}
    for iid, ob_id, unit, period, due in rows:
        policy = policy_of.get(ob_id)
        if policy is None or unit not in supervisor_of:
            continue
        st = sent.get(iid)
        items.append(OpenItem(ob_id, unit, period, due, policy, "open", frozenset(st) if st else empty,
                              supervisor_of[unit]))
        index[(ob_id, unit, period)] = iid
    return items, index


def _bind(column, value, dialect):
    proc = column.type.dialect_impl(dialect).bind_processor(dialect)
    return proc(value) if proc else value


def write_notices(session: Session, intents: list[NoticeIntent], index: dict[tuple[str, str, str], int],
                  as_of: date, now: datetime) -> int:
    """Insert-or-ignore by key: the database, not the process, guarantees "nothing twice"."""
    if not intents:
        return 0
    dialect = session.get_bind().dialect
    table = NoticeRow.__table__
    if dialect.name == "sqlite":
        # Fast path: one prepared INSERT OR IGNORE via executemany, rows in key order (B-tree
        # appends instead of random inserts); the constant date columns are converted once with
        # SQLAlchemy's own bind processors so rows read back exactly as ORM-written ones.
        as_of_v = _bind(table.c.as_of, as_of, dialect)
        created_v = _bind(table.c.created_at, now, dialect)
        get = index.get
        rows = sorted(((n.key, get((n.obligation, n.unit, n.period)), n.obligation, n.unit, n.period, n.stage, n.kind,
                        n.recipient, n.wd_before, n.wd_late, as_of_v, created_v) for n in intents))
        raw = session.connection().connection.driver_connection
        before = raw.total_changes
        raw.executemany(
            "INSERT OR IGNORE INTO notices (key, instance_id, obligation, unit, period, stage, kind, recipient, "
            "wd_before, wd_late, as_of, created_at, status, attempts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'pending',0)", rows)
        return raw.total_changes - before
    values = [{"key": n.key, "instance_id": index.get((n.obligation, n.unit, n.period)), "obligation": n.obligation,
               "unit": n.unit, "period": n.period, "stage": n.stage, "kind": n.kind, "recipient": n.recipient,
               "wd_before": n.wd_before, "wd_late": n.wd_late, "as_of": as_of, "created_at": now, "status": "pending",
               "attempts": 0} for n in intents]
    # One compiled statement run as executemany ("insertmanyvalues" batches it); RETURNING counts
    # the rows really inserted, since rowcount is unreliable for batched inserts.
    stmt = pg_insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.key)
    created = 0
    for start in range(0, len(values), 5000):
        created += len(session.execute(stmt, values[start:start + 5000]).all())
    return created


def evaluate(session: Session, pack: RulePack, now: datetime, dry_run: bool = False,
             evaluator: DurableEvaluator | PythonEvaluator | None = None) -> EvalReport:
    today = now.date()
    items, index = load_open_items(session, pack, today)
    ev = evaluator or evaluator_for(pack)
    intents = ev.evaluate(items, today, pack.calendar)
    report = EvalReport(as_of=today, open_items=len(index), considered=len(items), intents=len(intents), notices=intents)
    if dry_run:
        session.rollback()
        return report
    report.created = write_notices(session, intents, index, today, now)
    session.commit()
    return report
