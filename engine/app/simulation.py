"""Run the engine day by day on a throw-away copy of the state: `simulate` and `preview`.

Nothing here writes the real state: the source database is only read (copied row by row into a
temporary SQLite file), and the copies are deleted afterwards.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import MetaData, inspect, select
from sqlmodel import Session

from engine.clock import TZ
from engine.db import get_engine, make_engine
from engine.evaluation import DurableEvaluator, NoticeIntent
from engine.pipeline import effective_policies, evaluate
from engine.rules_loader import RulePack
from engine.state import InstanceRow
from engine.sync import HORIZON_DAYS, sync_instances

DayNotices = list[tuple[date, NoticeIntent]]


class Tracked(NamedTuple):
    """An active instance of the state after sync: what the engine tracks and chases."""
    obligation: str
    unit: str
    period: str
    period_label: str
    due: date
    recipient: str


@dataclass
class SideRun:
    """One side of a preview: what sync left tracked, and the notices of each day."""
    tracked: dict[tuple[str, str, str], Tracked]
    notices: DayNotices


def copy_state(source_url: str, target_url: str, cache: bool = True) -> None:
    """Copy every table (from SQLite or PostgreSQL into a fresh SQLite file).

    A SQLite source is copied page by page with SQLite's backup API (consistent, WAL included;
    before: reflected and copied row by row, then Alembic had built the empty copy's schema: ~1 s
    of a five-week simulation); another database row by row.
    ``cache=False``: the target's engine is disposed afterwards, not kept for the process."""
    from engine.db import migrate, secure_sqlite_files, sqlite_path

    path = sqlite_path(source_url)
    if path is not None and not path.exists():   # no state yet: start empty, and do not create the file
        if cache:
            get_engine(target_url)
        else:
            migrate(target_url)
        return
    target = sqlite_path(target_url)
    if path is not None and target is not None:
        get_engine(source_url)                   # the source at head first (as below), so is the copy
        secure_sqlite_files(target, create=True)   # 0600: the copy holds the same names and addresses
        _copy_file(path, target)
        if cache:
            get_engine(target_url)
        return
    src = make_engine(source_url)
    if cache:
        dst = get_engine(target_url)   # migrated to head
    else:
        migrate(target_url)
        dst = make_engine(target_url)
    if not inspect(src).has_table("instances"):
        src.dispose()
        if not cache:
            dst.dispose()
        return
    get_engine(source_url)         # make sure the source is migrated too
    meta = MetaData()
    meta.reflect(bind=dst)
    with src.connect() as s, dst.begin() as d:
        for table in meta.sorted_tables:
            if table.name == "alembic_version" or not inspect(src).has_table(table.name):
                continue
            rows = [dict(r._mapping) for r in s.execute(select(table))]
            if rows:
                d.execute(table.insert(), rows)
    src.dispose()
    if not cache:
        dst.dispose()


def simulate(source_url: str, pack: RulePack, start: date, end: date, hour: int = 7, minute: int = 0,
             tracking_start: date | None = None) -> list[tuple[date, NoticeIntent]]:
    """Notices that would be created each day from start to end; the real state is never written.

    The daemon syncs every day before it evaluates; here the copy is synced only on the days such a
    sync could change something, which gives the same notices (tests/test_simulation.py checks it
    against the day-by-day loop):

    - on the first day, with the horizon stretched to cover the whole window (each later day's sync
      would only add instances due more than :data:`HORIZON_DAYS` ahead, and no notice is owed that
      far ahead: a reminder comes at most 60 working days before the due day);
    - again on each day a unit starts or ends (:func:`_unit_boundaries`): what a sync does that depends
      on the day itself is to hand an overdue, open report of a unit that has ended to whoever
      answers for it that day (``RulePack.owner_on``), and that answer only changes on such days.

    The rules do not change during a simulation, so nothing else a sync does can differ from one day
    to the next. Before: 35 daily syncs were 2/3 of a five-week simulation."""
    at = time(hour, minute)
    out: list[tuple[date, NoticeIntent]] = []
    resync = _unit_boundaries(pack, start, end)
    with tempfile.TemporaryDirectory(prefix="dondoc-sim-") as tmp:
        path = Path(tmp) / "sim.db"
        copy_state(source_url, f"sqlite:///{path}", cache=False)
        engine = _sqlite_file_engine(path)
        try:
            day = start
            while day <= end:
                now = datetime.combine(day, at, tzinfo=TZ)
                with Session(engine, expire_on_commit=False) as ses:
                    if day == start or day in resync:
                        sync_instances(ses, pack, now, tracking_start=tracking_start,
                                       horizon_days=(end - day).days + HORIZON_DAYS)
                    rep = evaluate(ses, pack, now)
                out.extend((day, n) for n in rep.notices)
                day += timedelta(days=1)
        finally:
            engine.dispose()
    return out


def _unit_boundaries(pack: RulePack, start: date, end: date) -> set[date]:
    """Days in (start, end] on which some unit starts or stops existing (``valid_from``, the day after
    ``valid_until``): the only days on which ``owner_on(unit, day)`` can change for any unit."""
    days: set[date] = set()
    for u in pack.units.values():
        if u.valid_from is not None:
            days.add(u.valid_from)
        if u.valid_until is not None and u.valid_until < date.max:
            days.add(u.valid_until + timedelta(days=1))
    return {d for d in days if start < d <= end}


def _sqlite_file_engine(path: Path):
    """An engine on a temporary SQLite file, not kept in engine.db's per-URL cache (it is deleted soon)."""
    from engine.db import migrate

    url = f"sqlite:///{path}"
    migrate(url)
    return make_engine(url)


def _copy_file(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (the backup API: WAL contents included)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def _run_days(engine, pack: RulePack, start: date, end: date, at: time) -> DayNotices:
    """Evaluate each day on the (already synced) copy; each day's notices are written to the copy so
    the next day sees them as sent, exactly as the daemon's outbox would."""
    out: DayNotices = []
    # A private evaluator: the process-wide one (engine.pipeline.evaluator_for) may be in use by a
    # daemon in the same process and would be recompiled at every switch between the two packs.
    with DurableEvaluator(effective_policies(pack), batch=True) as ev:
        day = start
        while day <= end:
            with Session(engine, expire_on_commit=False) as ses:
                rep = evaluate(ses, pack, datetime.combine(day, at, tzinfo=TZ), evaluator=ev)
            out.extend((day, n) for n in rep.notices)
            day += timedelta(days=1)
    return out


def _sync(engine, pack: RulePack, now: datetime, tracking_start: date | None,
          horizon: int) -> dict[tuple[str, str, str], Tracked]:
    """Sync the copy with `pack` (as the daemon does when the rules change) and read what is tracked."""
    with Session(engine, expire_on_commit=False) as ses:
        sync_instances(ses, pack, now, tracking_start=tracking_start, horizon_days=horizon)
        rows = ses.execute(select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.period_label,
                                  InstanceRow.due, InstanceRow.recipient).where(InstanceRow.active == True)).all()  # noqa: E712
    return {(r[0], r[1], r[2]): Tracked(*r) for r in rows}


def simulate_pair(source_url: str, live: RulePack, staged: RulePack, start: date, end: date, at: time = time(7, 0),
                  tracking_start: date | None = None) -> tuple[SideRun, SideRun]:
    """What the live and the staged rules track, and the notices of each day from start to end.

    The state is copied once and synced once with the live rules (what the daemon has done); the
    staged side starts from a copy of that and is synced once with the staged rules, which is what
    happens when the files are moved into rules/: sync's own rules decide what is added, moved,
    retired (submitted and overdue items stay as they are; the tracking start and the installation
    day apply). The sync horizon covers the whole window, so no daily sync is needed: the rules do
    not change during a preview.
    """
    horizon = max(HORIZON_DAYS, (end - start).days + HORIZON_DAYS)
    first = datetime.combine(start, at, tzinfo=TZ)
    with tempfile.TemporaryDirectory(prefix="dondoc-preview-") as tmp:
        live_db, staged_db = Path(tmp) / "live.db", Path(tmp) / "staged.db"
        copy_state(source_url, f"sqlite:///{live_db}", cache=False)
        eng = _sqlite_file_engine(live_db)
        try:
            live_tracked = _sync(eng, live, first, tracking_start, horizon)
            eng.dispose()
            _copy_file(live_db, staged_db)
            live_run = SideRun(live_tracked, _run_days(eng, live, start, end, at))
        finally:
            eng.dispose()
        eng = _sqlite_file_engine(staged_db)
        try:
            staged_run = SideRun(_sync(eng, staged, first, tracking_start, horizon),
                                 _run_days(eng, staged, start, end, at))
        finally:
            eng.dispose()
    return live_run, staged_run
