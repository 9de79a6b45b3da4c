"""The evaluation pass in chunks, with a reader and a writer thread, writes exactly what one plain
evaluation of every open instance would: the plain-Python evaluator is the judge, row by row, column
by column, whatever the chunk size; a failing writer or reader stops the pass with nothing committed
and no thread left behind."""

from __future__ import annotations

import random
import threading
from dataclasses import replace as dc_replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, text
from sqlmodel import Session, select

import engine.pipeline as pipeline
from engine.clock import TZ
from engine.db import get_engine, migrate, session
from engine.evaluation import PythonEvaluator
from engine.pipeline import effective_policies, evaluate, load_open_items
from engine.rules_loader import load_pack
from engine.rules_model import Unit
from engine.state import InstanceRow, NoticeRow
from tests.conftest import CALENDAR, RULES

AS_OF = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=TZ)
STAGES = ["remind-10", "remind-5", "remind-3", "remind-2", "due-today", "overdue", "escalation"]


@pytest.fixture(scope="module")
def pack():
    seedpack = load_pack(RULES, CALENDAR)
    units = dict(seedpack.units)
    for k in range(40):
        units[f"u{k:03d}"] = Unit(id=f"u{k:03d}", name=f"Đơn vị {k}", kind="so", contacts=[f"u{k}@example.org"],
                                  supervisor="ubnd-tinh")
    return dc_replace(seedpack, units=units)


def populate(url: str, pack, n: int = 1500, seed: int = 57) -> None:
    """Open, closed, paused, inactive instances due within ±40 days, a third with sent stages."""
    migrate(url)
    rnd = random.Random(seed)
    obligations = sorted(pack.obligations)
    units = sorted(u for u in pack.units if u.startswith("u"))
    rows, notes = [], []
    for i in range(n):
        due = AS_OF + timedelta(days=rnd.randint(-40, 40))
        ob, unit = rnd.choice(obligations), rnd.choice(units)
        rows.append(dict(id=i + 1, obligation=ob, unit=unit, period=f"p{i}", period_label=f"Kỳ {i}",
                         period_start=due - timedelta(days=30), period_end=due, due=due,
                         due_at=datetime.combine(due, datetime.max.time().replace(microsecond=0), tzinfo=TZ),
                         recipient="vp-tinh-uy", inherited_from="", active=rnd.random() > 0.05,
                         closed=rnd.random() < 0.1, waived=False, chase_paused=rnd.random() < 0.05,
                         rules_version="t", created_at=NOW, updated_at=NOW))
        if rnd.random() < 0.35:
            for st in rnd.sample(STAGES, rnd.randint(1, 3)):
                notes.append(dict(key=f"{ob}|{unit}|p{i}|{st}|{unit}", instance_id=i + 1, obligation=ob, unit=unit,
                                  period=f"p{i}", stage=st, kind="reminder", recipient=unit, wd_before=0, wd_late=0,
                                  as_of=AS_OF - timedelta(days=1), created_at=NOW, status="sent", attempts=1))
    eng = get_engine(url)
    with eng.begin() as c:
        c.execute(insert(InstanceRow.__table__), rows)
        c.execute(insert(NoticeRow.__table__), notes)


def expected(url: str, pack) -> list[tuple]:
    """What the oracle says, as notice rows: every column but the row id."""
    with session(url) as s:
        items, index = load_open_items(s, pack, AS_OF)
        before = set(s.exec(select(NoticeRow.key)).all())
    intents = PythonEvaluator(effective_policies(pack)).evaluate(items, AS_OF, pack.calendar)
    assert len(intents) > 300
    return sorted((n.key, index[(n.obligation, n.unit, n.period)], n.obligation, n.unit, n.period, n.stage, n.kind,
                   n.recipient, n.wd_before, n.wd_late, AS_OF, NOW.astimezone(timezone.utc).replace(tzinfo=None), "pending", 0)
                  for n in intents if n.key not in before)


def written(url: str) -> list[tuple]:
    with session(url) as s:
        return sorted((n.key, n.instance_id, n.obligation, n.unit, n.period, n.stage, n.kind, n.recipient,
                       n.wd_before, n.wd_late, n.as_of, n.created_at.replace(tzinfo=None), n.status, n.attempts)
                      for n in s.exec(select(NoticeRow).where(NoticeRow.as_of == AS_OF)).all())


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dondoc-")]


@pytest.mark.parametrize("chunk", [1, 7, 250, 100_000])
def test_the_pass_writes_what_the_oracle_says_at_any_chunk_size(db_url: str, pack, chunk: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    populate(db_url, pack)
    want = expected(db_url, pack)
    monkeypatch.setattr(pipeline, "PASS_CHUNK", chunk)
    with session(db_url) as s:
        rep = evaluate(s, pack, NOW)
    assert rep.created == len(want)
    assert written(db_url) == want
    assert our_threads() == []
    with session(db_url) as s:                       # nothing twice
        assert evaluate(s, pack, NOW).created == 0


def test_the_reader_thread_and_the_session_read_the_same_items(db_url: str, pack) -> None:
    """The reader thread reads on a connection of its own; with writes pending in the session the
    items are read on the session's own connection (another one could not see them): same items."""
    populate(db_url, pack)
    with session(db_url) as s:
        threaded = load_open_items(s, pack, AS_OF)
    paused = min(threaded[1].values())       # an open instance, paused by a write not yet committed
    with Session(get_engine(db_url)) as s:
        s.execute(text("UPDATE instances SET chase_paused = true WHERE id = :i"), {"i": paused})
        inline = load_open_items(s, pack, AS_OF)
        s.rollback()
    one = {k for k, iid in threaded[1].items() if iid == paused}
    assert len(one) == 1
    assert {k: v for k, v in threaded[1].items() if k not in one} == inline[1]
    assert [it for it in threaded[0] if (it.obligation, it.unit, it.period) not in one] == inline[0]
    assert len(inline[0]) > 500


def test_a_failing_write_stops_the_pass_with_nothing_committed(tmp_path, pack, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    populate(url, pack)
    with get_engine(url).begin() as c:   # the database refuses one notice half-way through the pass
        c.execute(text("CREATE TRIGGER full BEFORE INSERT ON notices WHEN "
                       "(SELECT count(*) FROM notices WHERE as_of = '2026-03-02') >= 200 "
                       "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    monkeypatch.setattr(pipeline, "PASS_CHUNK", 50)
    before = len(written(url))
    with session(url) as s, pytest.raises(Exception, match="refused"):
        evaluate(s, pack, NOW)
    assert len(written(url)) == before == 0
    assert our_threads() == []


def test_a_failing_evaluation_stops_both_threads(tmp_path, pack, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    populate(url, pack, n=3000)
    monkeypatch.setattr(pipeline, "PASS_CHUNK", 20)
    calls = {"n": 0}

    class Boom(RuntimeError):
        pass

    real = PythonEvaluator(effective_policies(pack))

    class Failing:
        policies = real.policies

        def evaluate(self, items, as_of, cal):
            calls["n"] += 1
            if calls["n"] == 5:
                raise Boom("evaluator failed")
            return real.evaluate(items, as_of, cal)

    with session(url) as s, pytest.raises(Boom):
        evaluate(s, pack, NOW, evaluator=Failing())
    assert our_threads() == []
    assert written(url) == []


def test_the_open_instances_index_migration_matches_the_model(db_url: str) -> None:
    """0010 adds the partial index the reader walks (engine/open_items.py) exactly as InstanceRow
    declares it; downgrading removes it."""
    from tests.support import check_migration

    for down in check_migration(db_url, ("instances",), {"instances": InstanceRow}, "0009"):
        assert "ix_instances_open_key" not in {i["name"] for i in down.get_indexes("instances")}
    with get_engine(db_url).connect() as c:      # partial: only the open, active instances
        sql = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_instances_open_key'") if "sqlite" in db_url
                        else text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_instances_open_key'")).scalar()
    assert "WHERE" in sql.upper() and "closed" in sql and "active" in sql
