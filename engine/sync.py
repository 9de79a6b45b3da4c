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

import hashlib
import json
from dataclasses import dataclass, replace
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from pydantic_core import PydanticUndefined
from sqlmodel import Session, select

from engine.db import unindexed
from engine.instances import Generator, Instance
from engine.rules_loader import RulePack
from engine.rules_model import Obligation
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


# ─── what instance generation depends on ────────────────────────────────────────────────────────
# Fields of the rules that no instance column and no step of generation reads: editing them (a
# unit renamed, a title, a reminder policy) changes pack.version but not the instances, so the next
# sync may still start from the last one. Everything else, including fields added later, counts.
_UNIT_UNUSED = {"name", "contacts", "webhooks", "supervisor", "notes"}
_GROUP_UNUSED = {"name"}
_OBLIGATION_UNUSED = {"title", "reminder_policy", "assumptions"}
_INFO_UNUSED = {"name", "admin_contact", "default_reminder_policy", "check_from", "check_until"}
# The code that turns rules into instances: an upgrade of dondoc makes the next sync a full one.
@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The code that turns rules into instances: an upgrade of dondoc makes the next sync a full one."""
    import importlib.metadata
    import sys

    import engine.duedates
    import engine.instances
    import engine.periods
    import engine.rules_loader
    import engine.rules_model
    import engine.workcalendar

    h = hashlib.sha256()
    for mod in (engine.instances, engine.periods, engine.duedates, engine.workcalendar, engine.rules_loader,
                engine.rules_model, sys.modules[__name__]):
        try:
            h.update(Path(mod.__file__ or "").read_bytes())
        except OSError:         # pragma: no cover - frozen builds: the versions below still change
            h.update(mod.__name__.encode())
    for dist in ("holidays", "python-dateutil"):
        try:
            h.update(importlib.metadata.version(dist).encode())
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            h.update(dist.encode())
    return h.hexdigest()


def generation_digest(pack: RulePack) -> str:
    """A digest of everything instance generation reads in ``pack`` (units' validity, successors
    and kinds, groups, obligations without their titles, the calendar, the time zone) and of the
    code that generates. Equal digests generate equal instances for the same window. Computed at
    each sync (~5 ms for 1,000 units), not cached on the pack: tests and benchmarks derive packs
    with ``dataclasses.replace``, which would share a cache."""
    cal = pack.calendar.overrides
    parts = {
        "info": pack.info.model_dump(mode="json", exclude=_INFO_UNUSED),
        "units": [u.model_dump(mode="json", exclude=_UNIT_UNUSED) for u in pack.units.values()],
        "groups": [g.model_dump(mode="json", exclude=_GROUP_UNUSED) for g in pack.groups.values()],
        "obligations": [o.model_dump(mode="json", exclude=_OBLIGATION_UNUSED) for o in pack.obligations.values()],
        "calendar": cal.model_dump(mode="json") if hasattr(cal, "model_dump") else repr(cal),
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class _Since:
    """The last sync, when the next one may start from it: its day, its horizon's end, and how many
    instances the rules asked for then (for the report's count of unchanged ones)."""
    day: date
    until: date
    count: int


def _since(row: InstallationRow | None, digest: str, start: date, today: date, end: date) -> _Since | None:
    """The last sync if this one generates a superset of what it generated: the same generation
    digest and tracking start, not an earlier day nor a shorter horizon. Else None: sync in full."""
    if row is None or row.synced_on is None or row.synced_until is None or row.synced_instances is None:
        return None
    if row.synced_rules != digest or row.tracking_start != start:
        return None
    if row.synced_on > today or row.synced_until > end:
        return None
    return _Since(row.synced_on, row.synced_until, row.synced_instances)


def sync_instances(session: Session, pack: RulePack, now: datetime, tracking_start: date | None = None,
                   horizon_days: int = HORIZON_DAYS, *, incremental: bool = True) -> SyncReport:
    """One transaction: insert new instances, move open future ones, retire what the rules dropped.

    ``tracking_start`` is the configured one (None: not configured); the effective one also weighs
    the installation record (see the module's docstring). Open instances due before it stop being
    tracked (a tracking start moved forward); moving it back brings them back.

    Worked through a few periods of one obligation at a time (their instances generated, their
    rows read, planned and written), so what is held at once does not grow with the history.
    When the last sync generated from the same rules (:func:`generation_digest`) and tracking
    start, only what can have changed since is generated and read (:meth:`_Sync.since`); the
    result is the same as a full sync (``incremental=False``; tests/test_sync_bounded.py)."""
    today = now.date()
    inst_row = installation(session)
    eff = effective_tracking_start(pack, tracking_start, inst_row.installed_on if inst_row is not None else None)
    start = eff.day if eff is not None else today
    end = today + timedelta(days=horizon_days)
    report = SyncReport()
    sync_units(session, pack, now)
    session.flush()
    digest = generation_digest(pack) if eff is not None and inst_row is not None else ""
    since = _since(inst_row, digest, start, today, end) if digest and incremental else None
    run = _Sync(session, pack, now, start, end, report)
    total = run.full() if since is None else run.since(since)
    run.finish()
    if eff is not None:
        report.untracked = _untrack_before(session, start, now)
        if inst_row is not None and (inst_row.tracking_start, inst_row.tracking_source) != (eff.day, eff.source):
            inst_row.tracking_start, inst_row.tracking_source, inst_row.updated_at = eff.day, eff.source, now
        if inst_row is not None:
            inst_row.synced_on, inst_row.synced_until = today, end
            inst_row.synced_rules, inst_row.synced_instances = digest, total
            session.add(inst_row)
    session.commit()
    return report


_Key = tuple[str, str, str]
_CHUNK_INSTANCES = 4000     # whole periods are planned about this many instances at a time (periods × reporters)
_RETIRE = 2       # audit phases, in the order a sync always wrote them: reassign, move, retire


class _Sync:
    """One sync's plan, a few periods of one obligation at a time.

    Why that is exact: every step of the plan relates an instance to rows of the same obligation
    and period (a duty passes to the successor's key of the same report), so (obligation, period)
    pairs are independent. What must keep the order of a whole-history sync (the ids of new rows and audit
    rows) is kept with sort keys and written at the end; those are only the rows that change."""

    def __init__(self, session: Session, pack: RulePack, now: datetime, start: date, end: date,
                 report: SyncReport) -> None:
        self.session, self.pack, self.now, self.start, self.end = session, pack, now, start, end
        self.today = now.date()
        self.report = report
        self.gen = Generator(pack, start, end, tracking_start=start)
        self.owners: dict[str, str | None] = {}              # who answers today for a unit
        self.defaults = _new_row_defaults()
        self.new_rows: list[tuple[tuple, dict[str, object]]] = []
        self.audits: list[tuple[int, tuple, dict[str, object]]] = []
        self.table = InstanceRow.__table__

    # ── reading ──
    def _select(self, *where: sa.ColumnElement[bool], by_period: bool = False) -> sa.CursorResult:
        """``by_period``: the rows of a few periods, found through (obligation, period) (0016); the
        tracking start is then compared unindexed — else SQLite reads the report's rows of every
        year since the start along (obligation, due)."""
        t = self.table
        since = (unindexed(t.c.due) if by_period else t.c.due) >= self.start
        return self.session.connection().execute(sa.select(*(t.c[name] for name in _READ)).where(since, *where))

    def _iter_rows(self, *where: sa.ColumnElement[bool]) -> Iterator[_Row]:
        """Rows read a batch at a time (not row by row: ~4 µs each through the cursor's fetchone)."""
        for part in self._select(*where).partitions(2000):
            yield from map(_Row, part)

    def _rows(self, *where: sa.ColumnElement[bool], by_period: bool = False) -> dict[_Key, _Row]:
        return {(r.obligation, r.unit, r.period): r
                for r in map(_Row, self._select(*where, by_period=by_period).fetchall())}

    def _periods(self, ob: Obligation, keys: list[str], newer_than: date | None = None) -> tuple[int, int]:
        """Plan whole periods of ``ob``, a few at a time: all their instances, all their rows (a
        duty passes to a successor within the same period, so periods are independent). What is
        held is a few periods' instances and rows, whatever the history's length. Returns how
        many instances it planned, and how many of them are due after ``newer_than``."""
        t, taken, newer = self.table, 0, 0
        per = max(1, _CHUNK_INSTANCES // max(1, len(self.pack.reporters(ob))))
        for i in range(0, len(keys), per):
            part = keys[i:i + per]
            generated = [i for i in self.gen.instances(ob, periods=set(part)) if i.tracked]
            taken += len(generated)
            if newer_than is not None:
                newer += sum(1 for i in generated if i.due > newer_than)
            self.plan(generated, self._rows(t.c.obligation == ob.id, t.c.period.in_(part), by_period=True))
        return taken, newer

    # ── the two ways through ──
    def full(self) -> int:
        """Every instance since the tracking start, one obligation and a few of its periods at a time."""
        total = 0
        t = self.table
        for ob in self.pack.obligations.values():
            keys = [k for k, _ in self.gen.periods(ob)]
            total += self._periods(ob, keys)[0]
            # Rows of periods the rules do not ask for (any more): only retiring can touch them.
            rest = self._rows(t.c.obligation == ob.id, t.c.period.not_in(keys), t.c.closed == sa.false(),
                              t.c.active == sa.true(), t.c.due >= self.today)
            if rest:
                self.plan([], rest)
        self._orphans()
        return total

    def since(self, last: _Since) -> int:
        """Only what can differ from a full sync's work on the state the last sync left.

        With the same generated instances up to the last horizon (same digest, tracking start),
        a full sync changes a row only if (a) its unit's duty passes or passed to a successor
        (reassign, retire, and the rows of the successor: units whose owner today is another unit
        or differs from the last sync's day, and those owners), (b) it is open and due today or
        later (move, retire: a waiver revoked since may reopen one), (c) it is open and inactive
        (reactivate), or (d) its instance entered the horizon since (insert). Rows outside these
        are closed, or open, active and due before today, which a full sync leaves alone, and
        every instance up to the last horizon has its row (the last sync wrote it; rows are never
        deleted). Taken: whole periods due from today (or from the last horizon's end, after a
        long pause), as a full sync takes them; elsewhere the rows of (a), (b), (c), each with its
        instance, and every instance of (a) units with its row."""
        pack, today, t = self.pack, self.today, self.table
        moved_units: set[str] = set()
        for uid in pack.units:
            if uid in self.gen.timeless:
                continue
            before, now_ = pack.owner_on(uid, last.day), pack.owner_on(uid, today)
            if (now_ is not None and now_ != uid) or before != now_:
                moved_units.add(uid)
                moved_units.update(u for u in (before, now_) if u is not None)
        fresh_from = min(today, last.until + timedelta(days=1))
        periods = {ob.id: self.gen.periods(ob) for ob in pack.obligations.values()}
        fresh = {ob_id: {k for k, due in ps if due >= fresh_from} for ob_id, ps in periods.items()}
        # Rows outside the periods taken whole: of (a) units, and open ones due from today or inactive.
        elsewhere: dict[str, dict[_Key, _Row]] = {}

        def keep(*where: sa.ColumnElement[bool]) -> None:       # streamed: only the few outside are kept
            for row in self._iter_rows(*where):
                if row.period not in fresh.get(row.obligation, ()):
                    elsewhere.setdefault(row.obligation, {})[(row.obligation, row.unit, row.period)] = row
        units = sorted(moved_units)
        for i in range(0, len(units), 500):
            keep(t.c.unit.in_(units[i:i + 500]))
        keep(t.c.closed == sa.false(), t.c.active == sa.false())
        keep(t.c.closed == sa.false(), t.c.due >= today)
        taken = 0
        total = last.count
        for ob in pack.obligations.values():
            ps = periods[ob.id]
            keys = [k for k, due in ps if due >= fresh_from]
            n, newer = self._periods(ob, keys, newer_than=last.until)
            taken += n
            total += newer
            rows = elsewhere.pop(ob.id, {})
            insts: list[Instance] = []
            if moved_units:
                insts = [i for i in self.gen.instances(ob, due_until=fresh_from - timedelta(days=1), owners=moved_units)
                         if i.tracked]
            have = {i.key for i in insts}
            need = {k for k, r in rows.items() if not r.closed and k not in have and r.unit not in moved_units}
            if need:
                insts += [i for i in self.gen.instances(ob, due_until=fresh_from - timedelta(days=1),
                                                        periods={k[2] for k in need}, owners={k[1] for k in need})
                          if i.key in need and i.tracked]
            if insts or rows:
                insts.sort(key=lambda i: (i.due, i.unit, i.period))
                taken += len(insts)
                self.plan(insts, rows)
        self._orphans()
        self.report.unchanged += total - taken        # the instances not taken: unchanged (see above)
        return total

    def _orphans(self) -> None:
        """Obligations the rules no longer have: their open rows due from today are retired."""
        t = self.table
        day = max(self.start, self.today)
        open_ = (t.c.closed == sa.false(), t.c.active == sa.true(), t.c.due >= day)
        for ob_id in self.session.connection().execute(sa.select(t.c.obligation).where(*open_).distinct()).scalars():
            if ob_id not in self.pack.obligations:
                self.plan([], self._rows(t.c.obligation == ob_id, *open_))

    # ── the plan of one obligation (what the whole-history sync did, key by key) ──
    def _audit(self, phase: int, order: tuple, action: str, key: _Key, detail: str) -> None:
        self.audits.append((phase, order, {"at": self.now, "actor": "sync", "action": action, "entity": "instance",
                                           "entity_id": "|".join(key), "detail": detail}))

    def plan(self, generated: list[Instance], rows: dict[_Key, _Row]) -> None:
        pack, today, now, report, owners = self.pack, self.today, self.now, self.report, self.owners
        changed: dict[int, _Row] = {}               # rows the plan changed, by id: written at the end

        # An overdue, still-open duty of a unit that has ended since passes to whoever answers for
        # that unit today; a closed one stays where it was (history).
        wanted: dict[_Key, tuple[Instance, tuple]] = {}
        for inst in generated:
            order = (inst.due, inst.obligation, inst.unit, inst.period)   # its place in a whole-history sync
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
                            self._audit(0, order, "reassign", inst.key, json.dumps({"to": owner}, ensure_ascii=False))
                        del rows[inst.key]
                        changed[row.id] = row
                    inst = replace(inst, unit=owner, inherited_from=inst.inherited_from + (inst.unit,))
            if inst.key not in wanted:
                wanted[inst.key] = (inst, order)

        for key, (inst, order) in wanted.items():
            row = rows.get(key)
            values = _values(inst)
            if row is None:
                self.new_rows.append((order, {
                    **self.defaults, "obligation": inst.obligation, "unit": inst.unit, "period": inst.period,
                    "inherited_from": ",".join(inst.inherited_from), "rules_version": pack.version,
                    "created_at": now, "updated_at": now, **values}))
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
                self._audit(1, order, "move", key, json.dumps({"before": before, "after": after}, ensure_ascii=False))
                report.moved += 1
            else:
                report.unchanged += 1

        for key, row in rows.items():
            if key in wanted or row.closed or not row.active or row.due < today:
                continue
            # The rules no longer ask for it (obligation removed, reporter dropped, dates moved out).
            row.active = False
            changed[row.id] = row
            self._audit(_RETIRE, (row.id,), "retire", key, json.dumps({"rules_version": pack.version}))
            report.retired += 1

        _write_changes(self.session, changed, now)

    def finish(self) -> None:
        """Audit rows, then the new instances, in the order a whole-history sync wrote them."""
        self.session.flush()
        if self.audits:
            self.audits.sort(key=lambda a: (a[0], a[1]))
            self.session.execute(sa.insert(AuditRow.__table__), [a[2] for a in self.audits])
        if self.new_rows:
            self.new_rows.sort(key=lambda r: r[0])
            self.session.execute(sa.insert(InstanceRow.__table__), [r[1] for r in self.new_rows])
        self.audits, self.new_rows = [], []


def _write_changes(session: Session, changed: dict[int, _Row], now: datetime, chunk: int = 1000) -> None:
    """Copy the plan's changes to the ORM rows (read fresh from the database), stamped ``now``; the
    flush writes only the columns whose value differs. Flushed per chunk: no more ORM objects
    alive at once than a chunk's."""
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
        session.flush()


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
