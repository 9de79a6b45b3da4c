"""Preview: run the engine day by day on a throw-away copy of the state."""

from __future__ import annotations

import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import MetaData, inspect, select
from sqlmodel import Session

from engine.clock import TZ
from engine.db import get_engine, make_engine
from engine.evaluation import NoticeIntent
from engine.pipeline import evaluate
from engine.rules_loader import RulePack
from engine.sync import sync_instances


def copy_state(source_url: str, target_url: str) -> None:
    """Copy every table row by row (works from SQLite or PostgreSQL into a fresh SQLite file)."""
    src = make_engine(source_url)
    dst = get_engine(target_url)   # migrated to head
    if not inspect(src).has_table("instances"):
        src.dispose()
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


def simulate(source_url: str, pack: RulePack, start: date, end: date, hour: int = 7, minute: int = 0,
             tracking_start: date | None = None) -> list[tuple[date, NoticeIntent]]:
    """Notices that would be created each day from start to end; the real state is never written."""
    out: list[tuple[date, NoticeIntent]] = []
    with tempfile.TemporaryDirectory(prefix="dondoc-sim-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'sim.db'}"
        copy_state(source_url, url)
        engine = get_engine(url)
        day = start
        while day <= end:
            now = datetime.combine(day, time(hour, minute), tzinfo=TZ)
            with Session(engine, expire_on_commit=False) as ses:
                sync_instances(ses, pack, now, tracking_start=tracking_start)
                rep = evaluate(ses, pack, now)
            out.extend((day, n) for n in rep.notices)
            day += timedelta(days=1)
        engine.dispose()
    return out
