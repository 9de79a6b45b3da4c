"""The instance sync's working set does not grow with the installation's age (issue 15, item 2),
and what it writes is what the whole-history sync wrote.

The oracle below is ``sync_instances`` as it was before (commit 8be5d7d: every instance since the
tracking start generated, every row due since then read, in one plan), copied verbatim with the
``generate_instances`` it called. A simulated year and a quarter is synced day by day twice, once
by the oracle and once by engine.sync (per obligation; from the last sync when the rules that
generate are unchanged), through rule edits, a unit ending with a successor, a tracking start
moved forward and back, submissions, waivers and a revoked waiver; after every sync the two
databases must hold the same instances (every column, ids and timestamps included), the same
audit rows (ids included) and the sync reports must be equal.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic_core import PydanticUndefined
from sqlmodel import Session, select

import engine.sync as sync_mod
from engine.clock import TZ
from engine.db import get_engine
from engine.duedates import due_moment
from engine.instances import Instance
from engine.periods import periods_between
from engine.rules_loader import RulePack, load_pack
from engine.state import AuditRow, InstanceRow
from engine.submissions import InputError, SubmissionIn, record_submission, record_waiver
from engine.sync import (SyncReport, _untrack_before, effective_tracking_start, installation, record_installation,
                         sync_instances, sync_units)
from tests.conftest import CALENDAR


# ─── the oracle: engine/instances.py generate_instances and engine/sync.py sync_instances at 8be5d7d ──
def oracle_generate_instances(pack: RulePack, start: date, end: date, unit: str | None = None,
                              tracking_start: date | None = None) -> list[Instance]:
    tracking = tracking_start if tracking_start is not None else pack.info.tracking_start
    calc = pack.due_calculator()
    tz = pack.info.timezone
    lo, hi = start - timedelta(days=400), end + timedelta(days=370)
    out: dict[tuple[str, str, str], Instance] = {}
    timeless = {uid for uid, u in pack.units.items() if u.valid_from is None and u.valid_until is None}
    for ob in pack.obligations.values():
        reporters = pack.reporters(ob)
        direct = set(reporters)
        for period in periods_between(ob, lo, hi):
            d = calc.due(ob, period)
            if d is None or not (start <= d.day <= end) or not pack.in_force(ob, d.day):
                continue
            for uid in reporters:
                owner = uid if uid in timeless else pack.owner_on(uid, d.day)
                if owner is None or (unit is not None and owner != unit):
                    continue
                k = (ob.id, owner, period.key)
                inherited = () if owner == uid or owner in direct else (uid,)
                prev = out.get(k)
                if prev is not None:
                    if inherited and inherited[0] not in prev.inherited_from:
                        out[k] = replace(prev, inherited_from=prev.inherited_from + inherited)
                    continue
                out[k] = Instance(
                    ob.id, owner, period.key, period.label, period.start, period.end,
                    period.cutoff_start, period.cutoff_end, d.day, d.unrolled, due_moment(d.day, tz),
                    ob.recipient, tracking is None or d.day >= tracking, inherited,
                )
    return sorted(out.values(), key=lambda i: (i.due, i.obligation, i.unit, i.period))


_MUTABLE = ("period_label", "period_start", "period_end", "cutoff_start", "cutoff_end", "due", "due_at", "recipient")


def _values(inst: Instance) -> dict[str, object]:
    return {
        "period_label": inst.period_label, "period_start": inst.period_start, "period_end": inst.period_end,
        "cutoff_start": inst.cutoff_start, "cutoff_end": inst.cutoff_end, "due": inst.due, "due_at": inst.due_at,
        "recipient": inst.recipient,
    }


_READ = ("id", "obligation", "unit", "period", "inherited_from", "active", "closed") + _MUTABLE


class _Row:
    __slots__ = _READ + ("rules_version",)

    def __init__(self, values: tuple) -> None:
        (self.id, self.obligation, self.unit, self.period, self.inherited_from, self.active, self.closed,
         self.period_label, self.period_start, self.period_end, self.cutoff_start, self.cutoff_end, self.due,
         self.due_at, self.recipient) = values                  # the order of _READ
        self.rules_version: str | None = None       # set when the plan moves the row


def _new_row_defaults() -> dict[str, object]:
    return {name: f.default for name, f in InstanceRow.model_fields.items()
            if name != "id" and f.default is not PydanticUndefined and f.default_factory is None}


def oracle_sync_instances(session: Session, pack: RulePack, now: datetime, tracking_start: date | None = None,
                          horizon_days: int = sync_mod.HORIZON_DAYS) -> SyncReport:
    today = now.date()
    inst_row = installation(session)
    eff = effective_tracking_start(pack, tracking_start, inst_row.installed_on if inst_row is not None else None)
    start = eff.day if eff is not None else today
    end = today + timedelta(days=horizon_days)
    report = SyncReport()
    sync_units(session, pack, now)
    generated = [i for i in oracle_generate_instances(pack, start, end, tracking_start=start) if i.tracked]
    table = InstanceRow.__table__
    session.flush()
    # In id order, as the whole-history sync read them (a scan of the table; since 0016 SQLite
    # would read them through the index on due, in due order, and retire in another order).
    rows = {(r.obligation, r.unit, r.period): r for r in map(_Row, session.connection().execute(
        sa.select(*(table.c[name] for name in _READ)).where(table.c.due >= start).order_by(table.c.id)))}
    changed: dict[int, _Row] = {}

    wanted: dict[tuple[str, str, str], Instance] = {}
    owners: dict[str, str | None] = {}
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
        row.active = False
        changed[row.id] = row
        session.add(AuditRow(at=now, actor="sync", action="retire", entity="instance", entity_id="|".join(key),
                             detail=json.dumps({"rules_version": pack.version})))
        report.retired += 1

    _oracle_write_changes(session, changed, now)
    session.flush()
    if new_rows:
        session.execute(sa.insert(InstanceRow.__table__), new_rows)
    if eff is not None:
        report.untracked = _untrack_before(session, start, now)
        if inst_row is not None and (inst_row.tracking_start, inst_row.tracking_source) != (eff.day, eff.source):
            inst_row.tracking_start, inst_row.tracking_source, inst_row.updated_at = eff.day, eff.source, now
            session.add(inst_row)
    session.commit()
    return report


def _oracle_write_changes(session: Session, changed: dict[int, _Row], now: datetime, chunk: int = 1000) -> None:
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


# ─── the rules, as a secretariat edits them over the year ───────────────────────────────────────
@dataclass
class Rules:
    """The pack's content on a given day; each field is one kind of edit."""
    rename: int = 0                     # a unit's name (a version change that generates the same)
    policy_days: int = 3                # a reminder policy (idem)
    thang_due_day: int = 18             # the monthly report's due day (moves open future instances)
    with_thang_moi: bool = False        # an obligation added mid-year, in force from 01/01 (past periods)
    with_quy: bool = True               # an obligation removed (its open future instances retired)
    u08_ends: bool = False              # a unit ending (in the past) with a successor
    u01_reports: bool = True            # a reporter dropped from the group for a month, then back
    n_units: int = 10


def write_rules(folder: Path, r: Rules) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.yaml").write_text(f"""pack:
  id: bounded
  name: "Gói thử đồng bộ"
  tracking_start: 2026-01-01
  admin_contact: vp
reminder_policies:
  - id: mac-dinh
    before_due_working_days: [{r.policy_days}, 1]
""", encoding="utf-8")
    units = ["units:",
             "  - id: vp", '    name: "Văn phòng"', "    kind: van_phong", "    contacts: [vp@example.org]",
             "  - id: ubnd", '    name: "Ủy ban"', "    kind: ubnd", "    contacts: [ubnd@example.org]"]
    ends = {"u03": ("2026-05-15", "u04"), "u05": ("2026-08-20", "u11"), "u06": ("2026-10-10", "u03"),
            "u07": ("2026-09-30", "u10")}
    if r.u08_ends:
        ends["u08"] = ("2026-06-25", "u09")
    for i in range(1, r.n_units + 2):
        uid = f"u{i:02d}"
        name = f"Sở số {i}" + (f" (đổi tên lần {r.rename})" if i == 2 and r.rename else "")
        units += [f"  - id: {uid}", f'    name: "{name}"', "    kind: so", f"    contacts: [{uid}@example.org]"]
        if uid in ends:
            until, succ = ends[uid]
            units.append(f"    valid_until: {until}")
            if succ:
                units.append(f"    successor: {succ}")
        if uid == "u11":
            units.append("    valid_from: 2026-08-21")
    members = ", ".join(f"u{i:02d}" for i in range(1 if r.u01_reports else 2, r.n_units + 1))
    units += ["groups:", "  - id: cac-so", '    name: "Các sở"', f"    members: [{members}]"]
    (folder / "units.yaml").write_text("\n".join(units) + "\n", encoding="utf-8")
    obs = ["obligations:",
           "  - id: thang", '    title: "Báo cáo tháng"', '    basis: {document: "KH", section: "1"}',
           "    kind: dinh_ky", "    reporters: [cac-so]", "    recipient: vp", "    recurrence: {freq: monthly}",
           f"    due: {{rule: day_of_last_month, day: {r.thang_due_day}, roll: forward}}",
           "  - id: nam", '    title: "Báo cáo năm"', '    basis: {document: "KH", section: "2"}',
           "    kind: dinh_ky", "    reporters: [cac-so, ubnd]", "    recipient: vp", "    recurrence: {freq: yearly}",
           "    cutoff: {day: 14, month: 11}", "    due: {rule: before_date, day: 1, month: 12, roll: forward}"]
    if r.with_quy:
        obs += ["  - id: quy", '    title: "Báo cáo quý"', '    basis: {document: "KH", section: "3"}',
                "    kind: dinh_ky", "    reporters: [cac-so]", "    recipient: ubnd", "    recurrence: {freq: quarterly}",
                "    cutoff: none", "    due: {rule: day_of_last_month, day: last, roll: backward}"]
    if r.with_thang_moi:
        obs += ["  - id: thang-moi", '    title: "Báo cáo tháng mới"', '    basis: {document: "KH", section: "4"}',
                "    kind: dinh_ky", "    reporters: [cac-so]", "    recipient: vp", "    recurrence: {freq: monthly}",
                "    effective_from: 2026-01-01",
                "    due: {rule: day_of_last_month, day: 22, roll: forward}"]
    (folder / "obligations.yaml").write_text("\n".join(obs) + "\n", encoding="utf-8")


def rules_on(day: date) -> tuple[Rules, date | None]:
    """The rules and the configured tracking start on ``day``."""
    r = Rules(rename=sum(day >= date(2026, m, 2) for m in range(2, 13)),
              policy_days=2 if date(2026, 3, 5) <= day < date(2026, 8, 1) else 3,
              thang_due_day=25 if day >= date(2026, 7, 3) else 18,
              with_thang_moi=day >= date(2026, 6, 10),
              with_quy=day < date(2026, 9, 5),
              u08_ends=day >= date(2026, 7, 20),
              u01_reports=not date(2026, 10, 1) <= day < date(2026, 11, 1))
    configured = date(2026, 5, 1) if date(2026, 4, 10) <= day < date(2026, 4, 25) else None
    return r, configured


def fate(key: str) -> int:
    return zlib.crc32(key.encode()) % 100


# Waivers given and revoked around the month u01 does not report (rows reopened between two syncs
# with the same rules): one revoked while u01 does not owe it (the next sync retires it), one given
# on a retired row and revoked, past its due day, once u01 owes it again (the next sync reactivates it).
# And one beyond the horizon, revoked: a row the rules do not generate yet, open (retired next).
WAIVERS = {date(2026, 9, 20): ("2026-11", False), date(2026, 10, 6): ("2026-11", True),
           date(2026, 10, 10): ("2026-10", False), date(2026, 11, 5): ("2026-10", True),
           date(2026, 5, 6): ("2027-12", False), date(2026, 5, 20): ("2027-12", True)}


def secretariat(ses: Session, pack: RulePack, now: datetime) -> None:
    """Submissions (some early, some late, some never), waivers on future reports and their revocation."""
    today = now.date()
    if today in WAIVERS:
        period, revoke = WAIVERS[today]
        record_waiver(ses, pack, "thang", "u01", period, "" if revoke else "thử", now, actor="test", revoke=revoke)
    rows = ses.exec(select(InstanceRow).where(InstanceRow.closed == False, InstanceRow.active == True,  # noqa: E712
                                              InstanceRow.due >= today - timedelta(days=30),
                                              InstanceRow.due <= today + timedelta(days=5))
                    .order_by(InstanceRow.id)).all()
    keys = [(r.obligation, r.unit, r.period, r.due, r.period_start) for r in rows]
    for ob, unit, period, due, pstart in keys:
        f = fate(f"{ob}|{unit}|{period}")
        when = due - timedelta(days=f % 4) if f < 60 else due + timedelta(days=f % 20) if f < 85 else None
        if when is None or when != today or when < pstart:
            continue
        try:
            record_submission(ses, pack, SubmissionIn(obligation=ob, unit=unit, period=period, submitted_on=when),
                              now, actor="test")
        except InputError:
            ses.rollback()
    if today.day == 3:       # a future report waived, and the waiver revoked a fortnight later (reopened)
        month = (today.replace(day=1) + timedelta(days=62)).strftime("%Y-%m")
        unit = f"u{int(month[-2:]) % 8 + 1:02d}"
        try:
            record_waiver(ses, pack, "thang", unit, month, "thử", now, actor="test")
        except Exception:   # noqa: BLE001 - a unit that no longer reports: nothing to waive
            ses.rollback()
    if today.day == 17:
        month = (today.replace(day=1) + timedelta(days=45)).strftime("%Y-%m")
        unit = f"u{int(month[-2:]) % 8 + 1:02d}"
        row = ses.exec(select(InstanceRow).where(InstanceRow.obligation == "thang", InstanceRow.unit == unit,
                                                 InstanceRow.period == month)).first()
        if row is not None and row.waived:
            record_waiver(ses, pack, "thang", unit, month, "", now, actor="test", revoke=True)


def table(url: str, name: str) -> list[tuple]:
    with get_engine(url).connect() as c:
        return [tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {name} ORDER BY id"))]


class Counting:
    """How many syncs went the full way and how many started from the last one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = self.since = 0
        full, since = sync_mod._Sync.full, sync_mod._Sync.since

        def counted_full(run):
            self.full += 1
            return full(run)

        def counted_since(run, last):
            self.since += 1
            return since(run, last)

        monkeypatch.setattr(sync_mod._Sync, "full", counted_full)
        monkeypatch.setattr(sync_mod._Sync, "since", counted_since)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def two_dbs(request, tmp_path: Path) -> tuple[str, str]:
    """Two fresh databases of one kind: the oracle's and engine.sync's."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    server = request.getfixturevalue("pg_server")
    tag = abs(hash(request.node.nodeid)) % 10**8
    return server.create_db(f"bounded_old_{tag}"), server.create_db(f"bounded_new_{tag}")


def audit_of(url: str) -> list[tuple]:
    """Audit rows; on PostgreSQL without their ids and sorted: the oracle read rows in no stated
    order (no ORDER BY), so the order of its retire rows is PostgreSQL's scan order."""
    rows = table(url, "audit_log")
    return rows if url.startswith("sqlite") else sorted(r[1:] for r in rows)


def test_day_by_day_the_same_as_the_whole_history_sync(two_dbs: tuple[str, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    old_url, new_url = two_dbs
    count = Counting(monkeypatch)
    monkeypatch.setattr(sync_mod, "_CHUNK_INSTANCES", 12)     # a full sync takes one or two periods at a time
    packs: dict[str, RulePack] = {}
    day, last = date(2026, 1, 5), date(2027, 3, 31)
    reports = 0
    while day <= last:
        rules, configured = rules_on(day)
        folder = tmp_path / f"rules-{abs(hash(repr(rules)))}"
        if folder.name not in packs:
            write_rules(folder, rules)
            packs[folder.name] = load_pack(folder, CALENDAR)
        pack = packs[folder.name]
        now = datetime.combine(day, time(7, 0), tzinfo=TZ)
        got = {}
        for url, sync in ((old_url, oracle_sync_instances), (new_url, sync_instances)):
            with Session(get_engine(url), expire_on_commit=False) as ses:
                record_installation(ses, now)
                got[url] = sync(ses, pack, now, tracking_start=configured).as_dict()
                secretariat(ses, pack, now + timedelta(hours=2))
        assert got[new_url] == got[old_url], day
        reports += 1
        assert table(new_url, "instances") == table(old_url, "instances"), day
        assert audit_of(new_url) == audit_of(old_url), day
        # a day without sync now and then (the daemon stopped over a long weekend)
        day += timedelta(days=4 if day.day in (11, 27) else 1)
    rows = table(new_url, "instances")
    audit = {r[3] for r in table(new_url, "audit_log")}
    assert {"reassign", "move", "retire", "untrack", "submit", "waive", "unwaive"} <= audit, audit
    assert len(rows) > 400 and reports > 350
    # Most days start from the last sync (renames and policy edits included); a rules change that
    # generates differently, or a tracking start moved, goes the full way.
    assert count.since > 0.8 * reports and count.full >= 6, (count.full, count.since)


def test_a_sync_that_skips_what_changed_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above fails when the sync leaves out a kind of row it must look at: here the
    open rows of units whose duty passed to a successor (u05 ends on 20/08 with overdue reports,
    between two syncs with the same rules)."""
    old_url, new_url = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    monkeypatch.setattr(sync_mod._Sync, "since", _since_without_successors(sync_mod._Sync.since))
    diverged = False
    for k, day in enumerate([date(2026, 8, 15), date(2026, 8, 19), date(2026, 8, 26)]):
        rules, configured = rules_on(day)
        rules.rename = k       # a new version, same generation: the incremental path is taken
        folder = tmp_path / f"rules-{k}"
        write_rules(folder, rules)
        pack = load_pack(folder, CALENDAR)
        now = datetime.combine(day, time(7, 0), tzinfo=TZ)
        for url, sync in ((old_url, oracle_sync_instances), (new_url, sync_instances)):
            with Session(get_engine(url), expire_on_commit=False) as ses:
                record_installation(ses, now)
                sync(ses, pack, now, tracking_start=configured)
        diverged = diverged or table(new_url, "instances") != table(old_url, "instances")
    assert diverged


def _since_without_successors(since):
    """``_Sync.since`` as if no unit's owner had changed (the reassignment step forgotten)."""
    def broken(run, last):
        pack = run.pack
        orig = type(pack).owner_on
        try:
            type(pack).owner_on = lambda self, uid, day: uid if uid in self.units else None   # type: ignore[method-assign]
            run.gen.timeless = set(pack.units)
            return since(run, last)
        finally:
            type(pack).owner_on = orig      # type: ignore[method-assign]
    return broken


# ─── memory: the same units, one year of history against three ──────────────────────────────────
def _peak_of_daily_sync(tmp_path: Path, years: int) -> tuple[int, int]:
    """Sync every month from 01/01/2026 for ``years`` (the rows of that history in the table), then
    the daily sync of the next day: its tracemalloc peak, and the instance count."""
    rules = Rules(n_units=300)
    folder = tmp_path / f"rules-{years}"
    write_rules(folder, rules)
    pack = load_pack(folder, CALENDAR)
    url = f"sqlite:///{tmp_path / f'age-{years}.db'}"
    day = date(2026, 1, 2)
    end = date(2026 + years, 1, 2)
    with Session(get_engine(url), expire_on_commit=False) as ses:
        record_installation(ses, datetime.combine(day, time(7, 0), tzinfo=TZ))
        while day < end:
            sync_instances(ses, pack, datetime.combine(day, time(7, 0), tzinfo=TZ))
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=2)
        ses.execute(sa.update(InstanceRow).where(InstanceRow.due < end - timedelta(days=20)).values(closed=True))
        ses.commit()
        now = datetime.combine(end + timedelta(days=1), time(7, 0), tzinfo=TZ)
        ses.expire_all()
        tracemalloc.start()
        try:
            sync_instances(ses, pack, now)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        n = ses.execute(sa.select(sa.func.count()).select_from(InstanceRow)).scalar_one()
    return peak, n


def test_the_daily_sync_needs_no_more_memory_after_three_years_than_after_one(tmp_path: Path) -> None:
    one, n1 = _peak_of_daily_sync(tmp_path, 1)
    three, n3 = _peak_of_daily_sync(tmp_path, 3)
    assert n3 > 1.8 * n1                # the history (plus the same horizon ahead) in the table
    assert three <= 1.2 * one, (one, three, n1, n3)


def test_the_daily_sync_reads_a_reports_periods_not_its_every_year(tmp_path) -> None:
    """The morning's sync reads the periods due from today of each report through (obligation,
    period) (0016): without it each read took the report's rows of every year since the tracking
    start along (obligation, due) — 85–103 ms a read at 20 years of a province."""
    from engine.app import services
    from tests.support import Plans
    from tests.web_support import Console

    con = Console(tmp_path, now="2026-12-02T07:00", tracking_start="2023-01-01")
    db = Path(con.settings.database.url.removeprefix("sqlite:///"))
    with Plans(db) as p:
        services.sync(con.settings, con.pack, con.now + timedelta(days=1))
    by_period = [(sql[:120], plan) for sql, plan in p.plans() if "instances.period IN" in sql]
    assert by_period
    assert all("ix_instances_obligation_period" in plan for _sql, plan in by_period), by_period
