"""Writing an evaluation pass's notices into the outbox table, on a thread of its own.

Why a thread: on a large pass, inserting the notices (a unique key and three more indexes to
maintain) costs about as much as the evaluation itself, and it is work done inside the database
library, which runs without Python's GIL. So the pass hands each chunk's notices to a writer thread
and evaluates the next chunk meanwhile: on two cores the insertion is almost hidden
(benchmarks/bench_evaluation_pass.py).

How, so that the inserting really runs outside the GIL:

* **SQLite**: one ``INSERT OR IGNORE … VALUES (…), (…), …`` of up to 1,000 rows per statement.
  ``executemany`` releases and retakes the GIL around every single row, and a thread that must
  retake the GIL for every row waits for the evaluating thread's switch interval each time (the
  "convoy"): measured, it fell behind by most of the write. One statement of many rows is one GIL
  release for all of them (a JSON array through ``json_each`` did the same at 1.5× the CPU).
* **PostgreSQL**: ``COPY`` of the chunk into a temporary table, then one ``INSERT … SELECT … ON
  CONFLICT (key) DO NOTHING``; the server does the work in its own process.

On SQLite the writer has a connection of its own, in one transaction it commits when the pass
ends without error and rolls back otherwise: "nothing twice" is still the unique key's, and a
failed pass still leaves nothing. Its own, because that connection can leave foreign keys
unchecked: each notice's instance id is looked up by the same statement that inserts it, so it
exists by construction, and checking it again cost 30 % of the writing. When the session has
writes of its own not yet committed (another connection would wait for its lock for ever), or the
database is in memory, the writer uses the session's connection and the caller commits, as on
PostgreSQL. Its COMMIT does not copy the write-ahead log back into the database file (SQLite's
automatic checkpoint: ≈60 ms at 100,000 notices, ≈0.6 s at 1,000,000, upkeep of the file rather than
the pass's work): SQLite does it at the next commit of another connection (in the daemon, the
lease's renewal a few seconds later or the delivery pass), or when the last connection closes.
The benchmark times it beside the pass (``engine.db.checkpoint``).

From its first ``put`` on, the thread that started the writer must not use the session's
connection (``evaluate`` only evaluates meanwhile) unless ``session_free`` says the writer has its
own.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from datetime import date, datetime
from functools import lru_cache, partial
from itertools import chain
from typing import Any, Callable, Iterable, Sequence

from sqlmodel import Session

from engine.db import file_for_another_connection, lift_heap_limit, restore_heap_limit
from engine.evaluation import NoticeIntent, OpenItem
from engine.state import InstanceRow, NoticeRow

# Chunks in flight at once: bounds the memory of a 1,000,000-instance pass.
_QUEUE_DEPTH = 4
# A row is a NoticeIntent as it is (its fields in order). The database makes the key exactly as
# NoticeIntent.key does and finds the instance's id by (obligation, unit, period) through the
# unique index, in C, outside the GIL: the evaluating thread waits for every bit of Python work done
# here, and looking the id up in SQL costs less than building a row tuple per notice in Python.
_FIELDS = ("obligation", "unit", "period", "stage", "recipient", "kind", "wd_before", "wd_late")
_COLUMNS = ("key", "instance_id", *_FIELDS)
_INSERT = f"INSERT INTO notices ({', '.join(_COLUMNS)}, as_of, created_at, status, attempts) "
_PER_ROW = len(_FIELDS)
# Rows per statement: a power of two from 16 to 4,096, so each size is prepared once per connection
# and then reused (a statement of a new size costs ~10 ms per 1,000 rows to prepare). A chunk is one
# statement when it fits, its last rows repeated up to the size: a repeated key is ignored by
# INSERT OR IGNORE and not counted. Few, large statements matter on a thread: each one takes the GIL
# back once, and that waits up to the switch interval (5 ms) behind the evaluating thread.
_MIN_ROWS, _MAX_ROWS = 16, 4096
_PG_TEMP = "dondoc_notices_in"
# Notices inserted after which the writer's own connection gets a larger cache (engine/db.py,
# PASS_CACHE_KIB): a pass this large is a national or benchmark one, not a daemon's daily pass.
_BIG_PASS_ROWS = 100_000


def _select(v: Sequence[str], as_of: str, created_at: str, source: str, instance: str) -> str:
    """The rows to insert from ``source``, whose columns ``v`` are NoticeIntent's fields;
    ``instance``: the SQL for the instance's id."""
    key = " || '|' || ".join(v[:5])
    return f"SELECT {key}, {instance}, {', '.join(v)}, {as_of}, {created_at}, 'pending', 0 FROM {source}"


def _instance_of(v: Sequence[str]) -> str:
    return (f"(SELECT i.id FROM instances i WHERE i.obligation = {v[0]} AND i.unit = {v[1]} "
            f"AND i.period = {v[2]})")


@lru_cache(maxsize=32)
def _sqlite_insert(rows: int, link: bool) -> str:
    """``INSERT OR IGNORE … SELECT … FROM (VALUES (…), …)`` for ``rows`` rows: one statement, one step.
    Parameters: as_of, created_at (first in the text), then each row's values. ``link``: look the instance up (not
    for KPI items and the secretariat's summary, which have none)."""
    values = ",".join(["(" + ",".join("?" * _PER_ROW) + ")"] * rows)
    v = [f"v.column{k + 1}" for k in range(_PER_ROW)]
    return ("INSERT OR IGNORE" + _INSERT[6:]
            + _select(v, "?", "?", f"(VALUES {values}) AS v", _instance_of(v) if link else "NULL"))


@lru_cache(maxsize=32)
def _sqlite_mark(rows: int) -> str:
    """Mark ``rows`` instances exhausted by (obligation, unit, period); parameters: the marker, the
    day, then each instance's triple. Each triple is looked up through the unique index (a join):
    SQLite does not use an index for ``(obligation, unit, period) IN (VALUES …)`` and read every
    instance of every year for each statement (20 years of a province: ≈50 ms a statement)."""
    values = ",".join(["(?,?,?)"] * rows)
    return ("UPDATE instances SET exhausted_rules = ?, exhausted_on = ? WHERE id IN ("
            f"SELECT i.id FROM (VALUES {values}) AS v JOIN instances i "
            "ON i.obligation = v.column1 AND i.unit = v.column2 AND i.period = v.column3)")


def _cut(n: int, limit: int) -> list[tuple[int, int]]:
    """``n`` rows as statements: (rows taken, statement size), sizes powers of two up to ``limit``."""
    top = max(1, min(_MAX_ROWS, 1 << (limit.bit_length() - 1)))
    out = []
    while n > 0:
        take = min(n, top)
        out.append((take, min(top, max(_MIN_ROWS, 1 << (take - 1).bit_length()))))
        n -= take
    return out


def _own_connection(session_raw: sqlite3.Connection) -> sqlite3.Connection | None:
    """A connection of the writer's own to the session's database file, in a transaction, with the
    session's lock timeout and durability; foreign keys unchecked (see the module's docstring).
    None when the session has uncommitted writes or the database is not a file."""
    path = file_for_another_connection(session_raw)
    if path is None:
        return None
    (busy,) = session_raw.execute("PRAGMA busy_timeout").fetchone()
    (synchronous,) = session_raw.execute("PRAGMA synchronous").fetchone()
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        con.execute(f"PRAGMA busy_timeout={int(busy)}")
        con.execute(f"PRAGMA synchronous={int(synchronous)}")
        con.execute("PRAGMA foreign_keys=OFF")
        con.execute("PRAGMA wal_autocheckpoint=0")   # see the module's docstring
        con.execute("BEGIN")
    except BaseException:
        con.close()
        raise
    return con


def _bind(column: Any, value: Any, dialect: Any) -> Any:
    """A constant converted by SQLAlchemy's own bind processor, so rows read back like ORM rows."""
    proc = column.type.dialect_impl(dialect).bind_processor(dialect)
    return proc(value) if proc else value


Job = tuple[Sequence[NoticeIntent], bool, Sequence[OpenItem]]


class NoticeWriter:
    """Insert-or-ignore notices by key, chunk by chunk, on a thread; ``created`` counts new rows.

    Use as a context manager: ``put`` each chunk, leave the block to wait for the last one. An error
    in the writer is raised in the caller at the next ``put`` or at the end; an error in the caller
    stops the writer (what it wrote stays uncommitted in the caller's transaction). ``marker``: the
    exhaustion marker written on the instances ``put`` reports exhausted (none: nothing marked).
    """

    def __init__(self, session: Session, as_of: date, now: datetime, *, write: bool = True,
                 marker: str | None = None):
        self.created = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._own: sqlite3.Connection | None = None
        self._lifted = False
        # Whether the caller may go on using the session's connection while the writer runs: the
        # writer writes on a connection of its own, or nothing at all.
        self.session_free = not write
        if not write:                   # a dry run: nothing is written, nothing is set up
            return
        dialect = session.get_bind().dialect
        self._sqlite = dialect.name == "sqlite"
        table = NoticeRow.__table__
        self._raw = session.connection().connection.driver_connection
        self._marker = marker
        if self._sqlite:
            self._own = _own_connection(self._raw)
            self._raw = self._own or self._raw
            self.session_free = self._own is not None
            self._as_of = _bind(table.c.as_of, as_of, dialect)
            self._created_at = _bind(table.c.created_at, now, dialect)
            self._day = _bind(InstanceRow.__table__.c.exhausted_on, as_of, dialect)
            limit = (self._raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                     if hasattr(self._raw, "getlimit") else 999)   # Python 3.11+; 999 before SQLite 3.32
            self._per_statement = max(1, (limit - 2) // _PER_ROW)
            self._marks_per_statement = max(1, (limit - 2) // 3)
        else:
            self._as_of, self._created_at, self._day = as_of, now, as_of
            with self._raw.cursor() as cur:
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_PG_TEMP} ON COMMIT DELETE ROWS AS "
                            f"SELECT {', '.join(_FIELDS)} FROM notices WITH NO DATA")
                cur.execute(f"TRUNCATE {_PG_TEMP}")
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="dondoc-notice-writer", daemon=True)

    # -- the caller's side ----------------------------------------------------------------------
    def __enter__(self) -> "NoticeWriter":
        if self._thread is not None:
            self._thread.start()
        return self

    def put(self, intents: Sequence[NoticeIntent], *, link: bool = True,
            exhausted: Sequence[OpenItem] = ()) -> None:
        """Queue one chunk (best in key order: see engine/open_items.py). ``link``: the notices are
        of instances (found by (obligation, unit, period)); ``exhausted``: instances to mark."""
        if self._error is not None:
            raise self._error
        if self._thread is None or not (intents or (exhausted and self._marker)):
            return                      # a dry run, or nothing to write
        job = (intents, link, exhausted if self._marker else ())
        while True:   # never block forever on a writer that died
            try:
                self._queue.put(job, timeout=0.5)
                return
            except queue.Full:
                if self._error is not None or not self._thread.is_alive():
                    raise self._error or RuntimeError("notice writer stopped")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._thread is not None and self._thread.is_alive():
            if exc is not None:
                self._drain()           # stop early: the caller failed, the transaction is abandoned
            self._queue.put(None)
            self._thread.join()
        own, self._own = self._own, None
        if own is not None:             # the writer's own transaction: all of it, or nothing
            try:
                if exc is None and self._error is None:
                    own.execute("COMMIT")
                else:
                    own.execute("ROLLBACK")
            finally:
                try:
                    if self._lifted:
                        restore_heap_limit(own)
                finally:
                    own.close()
        if exc is None and self._error is not None:
            raise self._error

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    # -- the writer's side ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is not None:
                continue                # keep draining so the caller never blocks
            try:
                self._write(*job)
            except BaseException as exc:   # handed to the caller, raised there
                self._error = exc

    def _write(self, intents: Sequence[NoticeIntent], link: bool, exhausted: Sequence[OpenItem]) -> None:
        if self._sqlite:
            if intents:     # as_of and created_at come first in the statement's text
                self.created += self._in_statements(intents, self._per_statement, partial(_sqlite_insert, link=link),
                                                    (self._as_of, self._created_at))
                if self.created >= _BIG_PASS_ROWS and self._own is not None and not self._lifted:
                    lift_heap_limit(self._own)
                    self._lifted = True
            if exhausted:
                self._in_statements([it[:3] for it in exhausted], self._marks_per_statement, _sqlite_mark,
                                    (self._marker, self._day))
        else:
            if intents:
                self.created += self._write_pg(intents, link)
            if exhausted:
                self._mark_pg(exhausted)

    def _in_statements(self, rows: Sequence[tuple[Any, ...]], limit: int, statement: Callable[[int], str],
                       head: tuple[Any, ...]) -> int:
        """``rows`` through ``statement(size)`` in statements of power-of-two sizes (the last rows
        repeated up to the size; a repeat changes nothing), after the parameters ``head``; how many
        rows changed."""
        raw = self._raw
        before = raw.total_changes
        start = 0
        for take, size in _cut(len(rows), limit):
            part = rows[start:start + take]
            padding = [part[-1]] * (size - take)
            raw.execute(statement(size), [*head, *chain.from_iterable(part), *chain.from_iterable(padding)])
            start += take
        return raw.total_changes - before

    def _write_pg(self, rows: Iterable[NoticeIntent], link: bool) -> int:
        x = [f"x.{c}" for c in _FIELDS]
        instance = _instance_of(x) if link else "NULL"
        with self._raw.cursor() as cur:
            with cur.copy(f"COPY {_PG_TEMP} ({', '.join(_FIELDS)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            cur.execute(_INSERT + _select(x, "%s", "%s", f"{_PG_TEMP} AS x", instance)
                        + " ORDER BY 1 ON CONFLICT (key) DO NOTHING", (self._as_of, self._created_at))
            created = cur.rowcount
            cur.execute(f"TRUNCATE {_PG_TEMP}")
        return created

    def _mark_pg(self, items: Sequence[OpenItem]) -> None:
        with self._raw.cursor() as cur:
            cur.execute("UPDATE instances i SET exhausted_rules = %s, exhausted_on = %s "
                        "FROM unnest(%s::text[], %s::text[], %s::text[]) AS v(o, u, p) "
                        "WHERE (i.obligation, i.unit, i.period) = (v.o, v.u, v.p)",
                        (self._marker, self._day, [it.obligation for it in items], [it.unit for it in items],
                         [it.period for it in items]))
