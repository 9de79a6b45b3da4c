"""Bring the instances table in line with the current rules, idempotently.

A rule change moves future, open instances; it never rewrites what was submitted or waived. Open
instances of a unit that has ended pass to its successor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlmodel import Session, select

from engine.instances import Instance, generate_instances
from engine.rules_loader import RulePack
from engine.state import AuditRow, InstanceRow, UnitRow

HORIZON_DAYS = 400


@dataclass
class SyncReport:
    inserted: int = 0
    moved: int = 0
    retired: int = 0
    reassigned: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_MUTABLE = ("period_label", "period_start", "period_end", "cutoff_start", "cutoff_end", "due", "due_at", "recipient")


def _values(inst: Instance) -> dict[str, object]:
    return {
        "period_label": inst.period_label, "period_start": inst.period_start, "period_end": inst.period_end,
        "cutoff_start": inst.cutoff_start, "cutoff_end": inst.cutoff_end, "due": inst.due, "due_at": inst.due_at,
        "recipient": inst.recipient,
    }


def sync_units(session: Session, pack: RulePack, now: datetime) -> None:
    existing = {u.id: u for u in session.exec(select(UnitRow)).all()}
    for uid, u in pack.units.items():
        row = existing.get(uid) or UnitRow(id=uid, name=u.name, kind=u.kind, updated_at=now)
        row.name, row.kind, row.contacts = u.name, u.kind, json.dumps(u.contacts)
        row.supervisor, row.valid_from, row.valid_until, row.successor = u.supervisor, u.valid_from, u.valid_until, u.successor
        row.updated_at = now
        session.add(row)


def sync_instances(session: Session, pack: RulePack, now: datetime, tracking_start: date | None = None,
                   horizon_days: int = HORIZON_DAYS) -> SyncReport:
    """One transaction: insert new instances, move open future ones, retire what the rules dropped."""
    today = now.date()
    start = tracking_start or pack.info.tracking_start or today
    end = today + timedelta(days=horizon_days)
    report = SyncReport()
    sync_units(session, pack, now)
    generated = [i for i in generate_instances(pack, start, end, tracking_start=start) if i.tracked]
    rows = {(r.obligation, r.unit, r.period): r for r in session.exec(
        select(InstanceRow).where(InstanceRow.due >= start)).all()}

    # An overdue, still-open duty of a unit that has ended since passes to whoever answers for
    # that unit today; a closed one stays where it was (history).
    wanted: dict[tuple[str, str, str], Instance] = {}
    for inst in generated:
        if inst.due < today:
            owner = pack.owner_on(inst.unit, today)
            row = rows.get(inst.key)
            if owner and owner != inst.unit and not (row is not None and row.closed):
                if row is not None:
                    target = (inst.obligation, owner, inst.period)
                    if target in rows:
                        row.active = False
                        report.retired += 1
                    else:
                        row.inherited_from = ",".join(filter(None, [row.inherited_from, row.unit]))
                        row.unit = owner
                        rows[target] = row
                        report.reassigned += 1
                        session.add(AuditRow(at=now, actor="sync", action="reassign", entity="instance",
                                             entity_id="|".join(inst.key), detail=json.dumps({"to": owner}, ensure_ascii=False)))
                    del rows[inst.key]
                    row.updated_at = now
                    session.add(row)
                inst = replace(inst, unit=owner, inherited_from=inst.inherited_from + (inst.unit,))
        wanted.setdefault(inst.key, inst)

    for key, inst in wanted.items():
        row = rows.get(key)
        values = _values(inst)
        if row is None:
            session.add(InstanceRow(obligation=inst.obligation, unit=inst.unit, period=inst.period,
                                    inherited_from=",".join(inst.inherited_from), rules_version=pack.version,
                                    created_at=now, updated_at=now, **values))
            report.inserted += 1
            continue
        changed = {k: v for k, v in values.items() if getattr(row, k) != v}
        reactivate = not row.active and not row.closed
        if (changed and not row.closed and row.due >= today) or reactivate:
            before = {k: str(getattr(row, k)) for k in changed}
            for k, v in changed.items():
                setattr(row, k, v)
            row.active = True
            row.rules_version, row.updated_at = pack.version, now
            session.add(row)
            session.add(AuditRow(at=now, actor="sync", action="move", entity="instance", entity_id="|".join(key),
                                 detail=json.dumps({"before": before, "after": {k: str(v) for k, v in changed.items()}}, ensure_ascii=False)))
            report.moved += 1
        else:
            report.unchanged += 1

    for key, row in rows.items():
        if key in wanted or row.closed or not row.active or row.due < today:
            continue
        # The rules no longer ask for it (obligation removed, reporter dropped, dates moved out).
        row.active = False
        row.updated_at = now
        session.add(row)
        session.add(AuditRow(at=now, actor="sync", action="retire", entity="instance", entity_id="|".join(key),
                             detail=json.dumps({"rules_version": pack.version})))
        report.retired += 1
    session.commit()
    return report
