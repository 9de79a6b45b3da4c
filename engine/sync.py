"""Bring the instances table in line with the current rules, idempotently.

A rule change moves future, open instances; it never rewrites what was submitted or waived. Open
instances of a unit that has ended pass to its successor.

Go-live: only what is due on or after the *effective tracking start* is tracked (and so chased).
It is the configured tracking start (DONDOC_TRACKING_START / [rules] tracking_start) when one is
set: the secretariat may move it back deliberately. Otherwise it is the later of the pack's
``tracking_start`` and the installation day, the day dondoc first worked on this database
(:func:`record_installation`, written once by the application layer). A fresh install therefore
chases nothing that fell due before it started; what did is `dondoc backlog` (engine/backlog.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from pydantic_core import PydanticUndefined
from sqlmodel import Session, select

from engine.instances import Instance, generate_instances
from engine.rules_loader import RulePack
from engine.state import AuditRow, InstallationRow, InstanceRow, UnitRow

HORIZON_DAYS = 400

CONFIG, INSTALLATION, PACK = "config", "installation", "pack"


@dataclass(frozen=True)
class TrackingStart:
    """The first due day that is chased, and where it comes from (config | installation | pack)."""
    day: date
    source: str


def effective_tracking_start(pack: RulePack, configured: date | None, installed_on: date | None) -> TrackingStart | None:
    """Configured wins; else the later of the pack's tracking_start and the installation day; None
    when neither is known (then sync tracks from the day it runs, as before go-live existed)."""
    if configured is not None:
        return TrackingStart(configured, CONFIG)
    candidates = [t for t in ((installed_on, INSTALLATION), (pack.info.tracking_start, PACK)) if t[0] is not None]
    if not candidates:
        return None
    day, source = max(candidates, key=lambda t: (t[0], t[1] == INSTALLATION))   # a tie is the installation's
    return TrackingStart(day, source)  # type: ignore[arg-type]


def installation(session: Session) -> InstallationRow | None:
    """The go-live record, or None when no dondoc command has worked on this database yet."""
    return session.get(InstallationRow, 1)


def record_installation(session: Session, now: datetime) -> date:
    """Record ``now`` as the installation day unless a day is already recorded; return the recorded
    day. Insert-or-ignore: two first starts at once keep the earlier writer's day, never overwrite."""
    row = installation(session)
    if row is not None:
        return row.installed_on
    dialect = session.get_bind().dialect.name
    values = {"id": 1, "installed_on": now.date(), "installed_at": now}
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:  # pragma: no cover - dondoc supports SQLite and PostgreSQL
        session.add(InstallationRow(**values))
        session.commit()
        return now.date()
    session.execute(insert(InstallationRow.__table__).values(**values).on_conflict_do_nothing(index_elements=["id"]))
    session.commit()
    session.expire_all()
    row = installation(session)
    assert row is not None
    return row.installed_on


def tracking_start_of(session: Session, pack: RulePack, configured: date | None = None) -> TrackingStart | None:
    """The effective tracking start for this database (reads the installation record, writes nothing)."""
    row = installation(session)
    return effective_tracking_start(pack, configured, row.installed_on if row is not None else None)


def tracking_start_in_force(session: Session, pack: RulePack) -> date | None:
    """What the last sync tracked from (the configuration included); the pack's when never synced.
    The evaluation uses it for KPI items, which have no instance rows to carry it."""
    row = installation(session)
    if row is not None and row.tracking_start is not None:
        return row.tracking_start
    eff = effective_tracking_start(pack, None, row.installed_on if row is not None else None)
    return eff.day if eff is not None else None


@dataclass
class SyncReport:
    inserted: int = 0
    moved: int = 0
    retired: int = 0
    reassigned: int = 0
    unchanged: int = 0
    untracked: int = 0          # open instances due before the tracking start, no longer chased

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
    """The unit directory of the rules into the units table, every unit stamped ``now``. In bulk
    statements, not ORM objects: a national installation has ~8,500 units."""
    session.flush()
    conn = session.connection()
    table = UnitRow.__table__
    existing = set(conn.execute(sa.select(table.c.id)).scalars())
    values = [{"id": uid, "name": u.name, "kind": u.kind, "contacts": json.dumps(u.contacts),
               "supervisor": u.supervisor, "valid_from": u.valid_from, "valid_until": u.valid_until,
               "successor": u.successor, "updated_at": now}
              for uid, u in pack.units.items()]
    old = [{"b_" + k: v for k, v in row.items()} for row in values if row["id"] in existing]
    new = [row for row in values if row["id"] not in existing]
    if old:
        conn.execute(table.update().where(table.c.id == sa.bindparam("b_id"))
                     .values({k: sa.bindparam("b_" + k) for k in values[0] if k != "id"}), old)
    if new:
        conn.execute(sa.insert(table), new)
    for obj in list(session.identity_map.values()):     # unit rows this session holds: read again
        if isinstance(obj, UnitRow):
            session.expire(obj)


# The columns the sync reads of an existing instance. Why not ORM objects: a national installation
# keeps ~200,000 instances in the horizon, and building an ORM object per row costs seconds at
# every sync, while only the few rows the rules moved are written (benchmarks/bench_national.py).
_READ = ("id", "obligation", "unit", "period", "inherited_from", "active", "closed") + _MUTABLE


class _Row:
    """An existing instance as the sync plans with it: plain values of the columns it reads; what
    the plan changes is copied to the ORM row afterwards (``_write_changes``)."""

    __slots__ = _READ + ("rules_version",)

    def __init__(self, values: tuple) -> None:
        (self.id, self.obligation, self.unit, self.period, self.inherited_from, self.active, self.closed,
         self.period_label, self.period_start, self.period_end, self.cutoff_start, self.cutoff_end, self.due,
         self.due_at, self.recipient) = values                  # the order of _READ
        self.rules_version: str | None = None       # set when the plan moves the row


def _new_row_defaults() -> dict[str, object]:
    """What ``InstanceRow(...)`` fills in by itself (the model's field defaults), for rows
    inserted in bulk without building the ORM object."""
    return {name: f.default for name, f in InstanceRow.model_fields.items()
            if name != "id" and f.default is not PydanticUndefined and f.default_factory is None}


def sync_instances(session: Session, pack: RulePack, now: datetime, tracking_start: date | None = None,
                   horizon_days: int = HORIZON_DAYS) -> SyncReport:
    """One transaction: insert new instances, move open future ones, retire what the rules dropped.

    ``tracking_start`` is the configured one (None: not configured); the effective one also weighs
    the installation record (see the module's docstring). Open instances due before it stop being
    tracked (a tracking start moved forward); moving it back brings them back."""
    today = now.date()
    inst_row = installation(session)
    eff = effective_tracking_start(pack, tracking_start, inst_row.installed_on if inst_row is not None else None)
    start = eff.day if eff is not None else today
    end = today + timedelta(days=horizon_days)
    report = SyncReport()
    sync_units(session, pack, now)
    generated = [i for i in generate_instances(pack, start, end, tracking_start=start) if i.tracked]
    table = InstanceRow.__table__
    session.flush()
    rows = {(r.obligation, r.unit, r.period): r for r in map(_Row, session.connection().execute(
        sa.select(*(table.c[name] for name in _READ)).where(table.c.due >= start)))}
    changed: dict[int, _Row] = {}               # rows the plan changed, by id: written at the end

    # An overdue, still-open duty of a unit that has ended since passes to whoever answers for
    # that unit today; a closed one stays where it was (history).
    wanted: dict[tuple[str, str, str], Instance] = {}
    owners: dict[str, str | None] = {}              # who answers today for a unit
    for inst in generated:
        if inst.due < today:
            if inst.unit not in owners:
                owners[inst.unit] = pack.owner_on(inst.unit, today)
            owner = owners[inst.unit]
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
                    changed[row.id] = row
                inst = replace(inst, unit=owner, inherited_from=inst.inherited_from + (inst.unit,))
        wanted.setdefault(inst.key, inst)

    new_rows: list[dict[str, object]] = []
    defaults = _new_row_defaults()
    for key, inst in wanted.items():
        row = rows.get(key)
        values = _values(inst)
        if row is None:
            new_rows.append({**defaults, "obligation": inst.obligation, "unit": inst.unit, "period": inst.period,
                             "inherited_from": ",".join(inst.inherited_from), "rules_version": pack.version,
                             "created_at": now, "updated_at": now, **values})
            report.inserted += 1
            continue
        changed_values = {k: v for k, v in values.items() if getattr(row, k) != v}
        reactivate = not row.active and not row.closed
        if (changed_values and not row.closed and row.due >= today) or reactivate:
            before = {k: str(getattr(row, k)) for k in changed_values}
            for k, v in changed_values.items():
                setattr(row, k, v)
            row.active = True
            row.rules_version = pack.version
            changed[row.id] = row
            after = {k: str(v) for k, v in changed_values.items()}
            session.add(AuditRow(at=now, actor="sync", action="move", entity="instance", entity_id="|".join(key),
                                 detail=json.dumps({"before": before, "after": after}, ensure_ascii=False)))
            report.moved += 1
        else:
            report.unchanged += 1

    for key, row in rows.items():
        if key in wanted or row.closed or not row.active or row.due < today:
            continue
        # The rules no longer ask for it (obligation removed, reporter dropped, dates moved out).
        row.active = False
        changed[row.id] = row
        session.add(AuditRow(at=now, actor="sync", action="retire", entity="instance", entity_id="|".join(key),
                             detail=json.dumps({"rules_version": pack.version})))
        report.retired += 1

    _write_changes(session, changed, now)
    session.flush()     # changed rows before new ones, in the order the ORM's own flush writes them
    if new_rows:
        session.execute(sa.insert(InstanceRow.__table__), new_rows)
    if eff is not None:
        report.untracked = _untrack_before(session, start, now)
        if inst_row is not None and (inst_row.tracking_start, inst_row.tracking_source) != (eff.day, eff.source):
            inst_row.tracking_start, inst_row.tracking_source, inst_row.updated_at = eff.day, eff.source, now
            session.add(inst_row)
    session.commit()
    return report


def _write_changes(session: Session, changed: dict[int, _Row], now: datetime, chunk: int = 1000) -> None:
    """Copy the plan's changes to the ORM rows (read fresh from the database), stamped ``now``; the
    flush writes only the columns whose value differs."""
    ids = sorted(changed)
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        stmt = select(InstanceRow).where(InstanceRow.id.in_(part)).execution_options(populate_existing=True)
        for obj in session.exec(stmt).all():
            plan = changed[obj.id]
            for name in ("unit", "inherited_from", "active") + _MUTABLE:
                setattr(obj, name, getattr(plan, name))
            if plan.rules_version is not None:
                obj.rules_version = plan.rules_version
            obj.updated_at = now
            session.add(obj)


def _untrack_before(session: Session, start: date, now: datetime) -> int:
    """Open instances due before the tracking start are no longer chased (kept for history, listed
    by `dondoc backlog`); a later sync with an earlier tracking start reactivates them."""
    stale = session.exec(select(InstanceRow).where(InstanceRow.due < start, InstanceRow.active == True,  # noqa: E712
                                                   InstanceRow.closed == False)).all()  # noqa: E712
    for row in stale:
        row.active = False
        row.updated_at = now
        session.add(row)
        session.add(AuditRow(at=now, actor="sync", action="untrack", entity="instance",
                             entity_id=f"{row.obligation}|{row.unit}|{row.period}",
                             detail=json.dumps({"tracking_start": start.isoformat()})))
    return len(stale)
