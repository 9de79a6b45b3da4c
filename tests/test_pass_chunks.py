"""The evaluation pass in chunks, with a reader and a writer thread, writes exactly what one plain
evaluation of every open instance would: the plain-Python evaluator is the judge, row by row, column
by column, whatever the chunk size; a failing writer or reader stops the pass with nothing committed
and no thread left behind."""

from __future__ import annotations

import random
import sqlite3
import threading
from dataclasses import replace as dc_replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, inspect, text
from sqlmodel import Session, select

import engine.pipeline as pipeline
from engine.clock import TZ
from engine.db import checkpoint, get_engine, migrate, session
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
        items = load_open_items(s, pack, AS_OF)
        before = set(s.exec(select(NoticeRow.key)).all())
        index = {(r.obligation, r.unit, r.period): r.id for r in s.exec(select(InstanceRow)).all()}
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
    paused = threaded[len(threaded) // 2]    # an open instance, paused by a write not yet committed
    with Session(get_engine(db_url)) as s:
        s.execute(text("UPDATE instances SET chase_paused = true WHERE obligation = :o AND unit = :u AND period = :p"),
                  {"o": paused.obligation, "u": paused.unit, "p": paused.period})
        inline = load_open_items(s, pack, AS_OF)
        s.rollback()
    assert [it for it in threaded if it != paused] == inline
    assert len(inline) > 500


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

        def evaluate(self, items, as_of, cal, exhausted=None):
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


def test_the_reader_walks_the_open_instances_index_alone(db_url: str) -> None:
    """0013: the partial index holds every column the reader reads of an open instance, so SQLite
    answers a page from the index without a lookup in the table (the plan says COVERING); the
    migration matches the model and its downgrade restores the index of 0010."""
    from engine.open_items import _CHUNK_SQL
    from tests.support import check_migration

    def columns(inspector) -> list[str]:
        (ix,) = [i for i in inspector.get_indexes("instances") if i["name"] == "ix_instances_open_key"]
        return ix["column_names"]

    for down in check_migration(db_url, ("instances",), {"instances": InstanceRow}, "0012"):
        assert columns(down) == ["obligation", "unit", "period"]
    assert columns(inspect(get_engine(db_url)))[:4] == ["obligation", "unit", "period", "due"]
    if db_url.startswith("sqlite"):
        with get_engine(db_url).connect() as c:
            plan = " ".join(r[-1] for r in c.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + _CHUNK_SQL, ("2026-03-20", "-", "2026-03-02", "", "", "", 10)).fetchall())
        assert "USING COVERING INDEX ix_instances_open_key" in plan


def test_marking_exhausted_instances_looks_each_one_up(tmp_path) -> None:
    """The writer's exhaustion mark finds each instance through the unique index, not by reading
    every instance of every year (SQLite uses no index for a row-value IN over VALUES)."""
    from engine.notice_writer import _sqlite_mark

    path = tmp_path / "state.db"
    migrate(f"sqlite:///{path}")
    con = sqlite3.connect(path)
    try:
        plan = [r[-1] for r in con.execute("EXPLAIN QUERY PLAN " + _sqlite_mark(3), ["m", "2026-03-02"] + ["o", "u", "p"] * 3)]
    finally:
        con.close()
    assert not any(step.startswith("SCAN i") for step in plan), plan      # "SCAN instances" or "SCAN i"
    assert any("INDEX sqlite_autoindex_instances_1 (obligation=? AND unit=? AND period=?)" in step for step in plan), plan


def test_a_kpi_failure_keeps_what_the_session_has_not_committed(db_url: str, pack, monkeypatch) -> None:
    """A KPI bug whose statement fails (on PostgreSQL that aborts the transaction) is reported and
    the reminders go on: the caller's uncommitted write stays, and the pass sees it."""
    populate(db_url, pack)
    with session(db_url) as s:
        items = load_open_items(s, pack, AS_OF)
    paused = items[len(items) // 2]

    def broken(session, *args, **kwargs):
        session.execute(text("SELECT no_such_column FROM instances"))

    monkeypatch.setattr(pipeline, "kpi_open_items", broken)
    before = _keys(db_url)
    with Session(get_engine(db_url)) as s:
        s.execute(text("UPDATE instances SET chase_paused = true WHERE obligation = :o AND unit = :u AND period = :p"),
                  {"o": paused.obligation, "u": paused.unit, "p": paused.period})
        rep = evaluate(s, pack, NOW)
        assert rep.kpi_error and "no_such_column" in rep.kpi_error
    with session(db_url) as s:
        assert s.execute(text("SELECT count(*) FROM instances WHERE chase_paused = true AND obligation = :o "
                              "AND unit = :u AND period = :p"),
                         {"o": paused.obligation, "u": paused.unit, "p": paused.period}).scalar() == 1
    keys = _keys(db_url) - before
    owed = PythonEvaluator(effective_policies(pack)).evaluate(items, AS_OF, pack.calendar)
    assert keys == {n.key for n in owed if (n.obligation, n.unit, n.period) != paused[:3]} - before
    assert len(keys) > 300


# -- exhausted instances (nothing left to send) are marked and not read again ----------------------

def _keys(url: str) -> set[str]:
    with session(url) as s:
        return set(s.exec(select(NoticeRow.key)).all())


def _pass_matches_the_oracle_over_every_open_instance(url: str, pack, day: date) -> int:
    """One pass on ``day`` adds exactly what the oracle owes over *every* open instance, the
    exhausted ones included (read without a marker); returns how many instances the pass read."""
    with session(url) as s:
        every = load_open_items(s, pack, day)                       # no marker: all of them
    before = _keys(url)
    owed = {n.key for n in PythonEvaluator(effective_policies(pack)).evaluate(every, day, pack.calendar)} - before
    with session(url) as s:
        rep = evaluate(s, pack, datetime.combine(day, NOW.timetz()))
    assert _keys(url) - before == owed, day
    return rep.considered


def test_exhausted_instances_are_skipped_without_losing_a_notice_over_weeks(db_url: str, pack) -> None:
    """Day after day for seven weeks, then with new rules: every pass adds exactly what the oracle
    owes over every open instance, while instances whose last stage and escalation are sent stop
    being read (marked with the rules' marker and the day); new rules read them again."""
    populate(db_url, pack, n=800)
    day, read = AS_OF, []
    for _ in range(50):
        read.append(_pass_matches_the_oracle_over_every_open_instance(db_url, pack, day))
        day += timedelta(days=1)
    with session(db_url) as s:
        marked = s.exec(select(InstanceRow).where(InstanceRow.exhausted_rules.is_not(None))).all()
        every = load_open_items(s, pack, day)
        kept = load_open_items(s, pack, day, pipeline.exhaustion_marker(pack))
    assert len(marked) > 100 and {r.exhausted_rules for r in marked} == {pipeline.exhaustion_marker(pack)}
    assert len(kept) == len(every) - len(marked) and read[-1] == len(kept) < read[0]
    # New rules: one more repeat of the overdue reminder, and the escalation only after the last
    # repeat. The marked instances are read again, get what they are owed under the new rules (the
    # oracle says what), and are marked again only once the escalation is out too.
    def later(p):
        repeat = p.repeat_every_working_days or 5
        last = p.overdue_after_working_days + (p.max_repeats + 1) * repeat
        return p.model_copy(update={"max_repeats": p.max_repeats + 1, "repeat_every_working_days": repeat,
                                    "escalate_after_working_days": last + 3})
    changed = dc_replace(pack, policies={pid: later(p) for pid, p in pack.policies.items()})
    assert pipeline.exhaustion_marker(changed) != pipeline.exhaustion_marker(pack)
    assert _pass_matches_the_oracle_over_every_open_instance(db_url, changed, day) > read[-1]
    for _ in range(30):
        day += timedelta(days=1)
        _pass_matches_the_oracle_over_every_open_instance(db_url, changed, day)
    with session(db_url) as s:
        assert s.exec(select(InstanceRow).where(InstanceRow.exhausted_rules == pipeline.exhaustion_marker(changed))).all()


def test_an_earlier_day_reads_exhausted_instances_again(db_url: str, pack) -> None:
    """A mark holds from its day on: a pass dated earlier (a simulation, a clock set back) reads the
    instance again, as the evaluator could owe it something on that day."""
    populate(db_url, pack, n=400)
    later = AS_OF + timedelta(days=40)
    marker = pipeline.exhaustion_marker(pack)
    with session(db_url) as s:
        evaluate(s, pack, datetime.combine(later, NOW.timetz()))
        evaluate(s, pack, datetime.combine(later, NOW.timetz()))     # marks what the first one completed
        marked = {(r.obligation, r.unit, r.period) for r in s.exec(
            select(InstanceRow).where(InstanceRow.exhausted_rules == marker, InstanceRow.exhausted_on == later)).all()}
        assert marked
        at_later = {(i.obligation, i.unit, i.period) for i in load_open_items(s, pack, later, marker)}
        earlier = {(i.obligation, i.unit, i.period) for i in load_open_items(s, pack, later - timedelta(days=1), marker)}
    assert not marked & at_later and marked <= earlier


def test_the_exhaustion_marks_migration_matches_the_model(db_url: str) -> None:
    """0011 adds the marks exactly as InstanceRow declares them and drops the recipient index of
    notices (nothing queries by it); downgrading restores the index and removes the columns."""
    from tests.support import check_migration

    for down in check_migration(db_url, ("instances", "notices"), {"instances": InstanceRow, "notices": NoticeRow}, "0010"):
        assert "exhausted_rules" not in {c["name"] for c in down.get_columns("instances")}
        assert "ix_notices_recipient" in {i["name"] for i in down.get_indexes("notices")}
    with get_engine(db_url).connect() as c:
        assert "ix_notices_recipient" not in {i["name"] for i in __import__("sqlalchemy").inspect(c).get_indexes("notices")}


def test_a_pass_after_uncommitted_writes_of_the_session_commits_both(tmp_path, pack) -> None:
    """The writer writes on a connection of its own only when the session has nothing pending: with
    a write of the session not yet committed (which would hold another connection off for ever), the
    pass writes on the session's connection and one commit keeps both. The session's connection still
    checks foreign keys afterwards (only the writer's own connection leaves them unchecked)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    populate(url, pack)
    want = expected(url, pack)
    with Session(get_engine(url)) as s:
        s.execute(text("UPDATE instances SET period_label = 'sửa' WHERE id = 1"))
        rep = evaluate(s, pack, NOW)
    assert rep.created == len(want) and written(url) == want
    with session(url) as s:
        assert s.get(InstanceRow, 1).period_label == "sửa"
        with pytest.raises(Exception, match="FOREIGN KEY"):
            s.execute(text("INSERT INTO notices (key, instance_id, obligation, unit, period, stage, kind, recipient, "
                           "wd_before, wd_late, as_of, created_at, status, attempts) VALUES "
                           "('x', 999999, 'o', 'u', 'p', 's', 'reminder', 'u', 0, 0, '2026-03-02', '2026-03-02', 'pending', 0)"))
            s.commit()


def test_a_database_in_a_folder_named_with_uri_characters(tmp_path, pack) -> None:
    """The reader opens the file by a ``file:`` URI: a '#', '?' or '%' in the folder's name is
    escaped, so the pass reads on its own connection (not a file cut at the '#')."""
    from engine.open_items import _pages

    folder = tmp_path / "bao cao #1 ?50%"
    folder.mkdir()
    url = f"sqlite:///{folder / 'state.db'}"
    populate(url, pack)
    want = expected(url, pack)
    with session(url) as s:
        assert _pages(s) is not None                 # its own connection, not the session's
        rep = evaluate(s, pack, NOW)
    assert rep.created == len(want) and written(url) == want
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("state.db")) == []


def test_the_daemons_pass_counts_its_notices_without_listing_them(db_url: str, pack) -> None:
    """``keep_notices=False`` (the daemon's call): the same notices written and counted, none kept."""
    populate(db_url, pack)
    want = expected(db_url, pack)
    with session(db_url) as s:
        rep = evaluate(s, pack, NOW, keep_notices=False)
    assert (rep.created, rep.intents, rep.notices) == (len(want), len(want), [])
    assert written(db_url) == want


def test_the_pass_writer_leaves_the_checkpoint_for_later(tmp_path) -> None:
    """The pass's writer commits without copying the write-ahead log back into the database file
    (SQLite would at this size: more than 1,000 pages); ``checkpoint`` (or the next commit of another
    connection) does it afterwards."""
    from engine.evaluation import NoticeIntent
    from engine.notice_writer import NoticeWriter

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    main = tmp_path / "state.db"
    intents = [NoticeIntent(f"kpi:muc-tieu-{k}", f"u{k % 40:03d}", f"cham:{k}", "overdue", f"u{k % 40:03d}", "kpi", 0, 3)
               for k in range(20_000)]
    with session(url) as s:
        checkpoint(s)
        before = main.stat().st_size
        with NoticeWriter(s, AS_OF, NOW) as writer:
            writer.put(intents, link=False)
        s.commit()
        assert writer.created == 20_000
        assert (tmp_path / "state.db-wal").stat().st_size > 1000 * 4096
        assert main.stat().st_size == before        # committed in the log, not copied back yet
        checkpoint(s)
        assert main.stat().st_size > before
        assert len(s.exec(select(NoticeRow.id)).all()) == 20_000


def test_the_next_commit_of_another_connection_copies_the_pass_back(tmp_path, pack) -> None:
    """The pass's writer leaves its log to SQLite's automatic checkpoint: the next commit of an
    ordinary connection of ours (in the daemon: the lease's renewal, the delivery pass) copies it
    back into the database file, so no long log is left behind."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    populate(url, pack, n=20_000)                   # ≈1,400 pages of log: past SQLite's 1,000-page mark
    want = expected(url, pack)
    main = tmp_path / "state.db"
    with session(url) as s:
        checkpoint(s)
    before = main.stat().st_size
    with session(url) as s:
        evaluate(s, pack, NOW, keep_notices=False)
    assert main.stat().st_size == before and written(url) == want
    with session(url) as s:                          # any small write and its commit
        s.execute(text("UPDATE instances SET period_label = 'sửa' WHERE id = 1"))
        s.commit()
    grown = main.stat().st_size
    assert grown > before
    con = sqlite3.connect(main)
    try:                                              # nothing was left in the log to copy back
        assert con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        con.close()
    assert main.stat().st_size == grown


def test_only_a_large_pass_lifts_the_writers_cache_and_it_gives_the_limit_back(tmp_path, pack, monkeypatch) -> None:
    """Past _BIG_PASS_ROWS notices the writer's own connection gets PASS_CACHE_KIB of cache and the
    process's SQLite soft heap limit rises by as much; after the pass it is the daemon's again. A
    smaller pass (the daemon's daily one) changes nothing."""
    import engine.db as db
    import engine.notice_writer as notice_writer

    seen: list[tuple[int, int]] = []
    real = notice_writer.lift_heap_limit

    def spy(con: sqlite3.Connection) -> None:
        real(con)
        seen.append((con.execute("PRAGMA cache_size").fetchone()[0], con.execute("PRAGMA soft_heap_limit").fetchone()[0]))

    monkeypatch.setattr(notice_writer, "lift_heap_limit", spy)
    monkeypatch.setattr(pipeline, "PASS_CHUNK", 100)

    def heap_limit(url: str) -> int:
        with session(url) as s:
            return s.connection().exec_driver_sql("PRAGMA soft_heap_limit").scalar_one()

    small = f"sqlite:///{tmp_path / 'small.db'}"
    populate(small, pack)
    with session(small) as s:
        evaluate(s, pack, NOW)
    assert seen == []

    monkeypatch.setattr(notice_writer, "_BIG_PASS_ROWS", 200)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    populate(url, pack)
    want = expected(url, pack)
    with session(url) as s:
        assert evaluate(s, pack, NOW).created == len(want)
    assert written(url) == want
    assert seen == [(-db.PASS_CACHE_KIB, db.SQLITE_HEAP_LIMIT + db.PASS_CACHE_KIB * 1024)]
    assert heap_limit(url) == db.SQLITE_HEAP_LIMIT
