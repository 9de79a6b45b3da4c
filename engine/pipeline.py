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
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
    horizon = lookahead(pack, today)
    rows = session.execute(
        sa_select(InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.due)
        .where(InstanceRow.active == True, InstanceRow.closed == False, InstanceRow.due <= horizon)  # noqa: E712
    ).all()
    ids = {r[0] for r in rows}
    sent: dict[int, set[str]] = {}
    if ids:
        for iid, stage in session.execute(sa_select(NoticeRow.instance_id, NoticeRow.stage)
                                          .where(NoticeRow.instance_id.in_(list(ids)) if len(ids) < 30000
                                                 else NoticeRow.instance_id.is_not(None))).all():
            if iid in ids:
                sent.setdefault(iid, set()).add(stage)
    items: list[OpenItem] = []
    index: dict[tuple[str, str, str], int] = {}
    for iid, ob_id, unit, period, due in rows:
        ob = pack.obligations.get(ob_id)
        if ob is None or unit not in pack.units:
            continue
        policy = pack.policy_for(ob)
        items.append(OpenItem(ob_id, unit, period, due, policy.id, "open", frozenset(sent.get(iid, ())),
                              pack.units[unit].supervisor))
        index[(ob_id, unit, period)] = iid
    return items, index


def write_notices(session: Session, intents: list[NoticeIntent], index: dict[tuple[str, str, str], int],
                  as_of: date, now: datetime) -> int:
    """Insert-or-ignore by key: the database, not the process, guarantees "nothing twice"."""
    if not intents:
        return 0
    values = [{"key": n.key, "instance_id": index.get((n.obligation, n.unit, n.period)), "obligation": n.obligation,
               "unit": n.unit, "period": n.period, "stage": n.stage, "kind": n.kind, "recipient": n.recipient,
               "wd_before": n.wd_before, "wd_late": n.wd_late, "as_of": as_of, "created_at": now, "status": "pending",
               "attempts": 0} for n in intents]
    dialect = session.get_bind().dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    created = 0
    table = NoticeRow.__table__
    for start in range(0, len(values), 2000):
        chunk = values[start:start + 2000]
        # RETURNING counts what was really inserted (rowcount is unreliable for multi-row inserts).
        result = session.execute(ins(table).values(chunk).on_conflict_do_nothing(index_elements=["key"])
                                 .returning(table.c.key))
        created += len(result.all())
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
