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

The writer uses the pass's own connection, inside the pass's transaction, so nothing changes for
"nothing twice": the unique key decides, and the caller commits (or not) as before. While the writer
runs, the thread that started it must not use the session (``evaluate`` only evaluates meanwhile).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from datetime import date, datetime
from functools import lru_cache
from itertools import chain
from typing import Any, Iterable, Sequence

from sqlmodel import Session

from engine.evaluation import NoticeIntent
from engine.state import NoticeRow

# Chunks in flight at once: bounds the memory of a 1,000,000-instance pass.
_QUEUE_DEPTH = 4
# A row: the instance's id (none for KPI items and the secretariat's summary), then NoticeIntent's
# fields in order. The database makes the key exactly as NoticeIntent.key does, in C, outside the GIL.
_FIELDS = ("obligation", "unit", "period", "stage", "recipient", "kind", "wd_before", "wd_late")
_COLUMNS = ("key", "instance_id", *_FIELDS)
_INSERT = f"INSERT INTO notices ({', '.join(_COLUMNS)}, as_of, created_at, status, attempts) "
_PER_ROW = 1 + len(_FIELDS)
# Rows per statement: a power of two from 16 to 4,096, so each size is prepared once per connection
# and then reused (a statement of a new size costs ~10 ms per 1,000 rows to prepare). A chunk is one
# statement when it fits, its last rows repeated up to the size: a repeated key is ignored by
# INSERT OR IGNORE and not counted. Few, large statements matter on a thread: each one takes the GIL
# back once, and that waits up to the switch interval (5 ms) behind the evaluating thread.
_MIN_ROWS, _MAX_ROWS = 16, 4096
_PG_TEMP = "dondoc_notices_in"


def _select(v: Sequence[str], as_of: str, created_at: str, source: str) -> str:
    """The rows to insert from ``source``, whose columns ``v`` are the instance id and the fields."""
    key = " || '|' || ".join(v[1:6])
    return f"SELECT {key}, {', '.join(v)}, {as_of}, {created_at}, 'pending', 0 FROM {source}"


@lru_cache(maxsize=16)
def _sqlite_insert(rows: int) -> str:
    """``INSERT OR IGNORE … SELECT … FROM (VALUES (…), …)`` for ``rows`` rows: one statement, one step.
    Parameters: as_of, created_at (first in the text), then each row's values."""
    values = ",".join(["(" + ",".join("?" * _PER_ROW) + ")"] * rows)
    v = [f"v.column{k + 1}" for k in range(_PER_ROW)]
    return "INSERT OR IGNORE" + _INSERT[6:] + _select(v, "?", "?", f"(VALUES {values}) AS v")


def _cut(n: int, limit: int) -> list[tuple[int, int]]:
    """``n`` rows as statements: (rows taken, statement size), sizes powers of two up to ``limit``."""
    top = max(1, min(_MAX_ROWS, 1 << (limit.bit_length() - 1)))
    out = []
    while n > 0:
        take = min(n, top)
        out.append((take, min(top, max(_MIN_ROWS, 1 << (take - 1).bit_length()))))
        n -= take
    return out


Ids = dict[tuple[str, str, str], int]


def _bind(column: Any, value: Any, dialect: Any) -> Any:
    """A constant converted by SQLAlchemy's own bind processor, so rows read back like ORM rows."""
    proc = column.type.dialect_impl(dialect).bind_processor(dialect)
    return proc(value) if proc else value


class NoticeWriter:
    """Insert-or-ignore notices by key, chunk by chunk, on a thread; ``created`` counts new rows.

    Use as a context manager: ``put`` each chunk, leave the block to wait for the last one. An error
    in the writer is raised in the caller at the next ``put`` or at the end; an error in the caller
    stops the writer (what it wrote stays uncommitted in the caller's transaction).
    """

    def __init__(self, session: Session, as_of: date, now: datetime, *, write: bool = True):
        self.created = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if not write:                   # a dry run: nothing is written, nothing is set up
            return
        dialect = session.get_bind().dialect
        self._sqlite = dialect.name == "sqlite"
        table = NoticeRow.__table__
        self._raw = session.connection().connection.driver_connection
        if self._sqlite:
            self._as_of = _bind(table.c.as_of, as_of, dialect)
            self._created_at = _bind(table.c.created_at, now, dialect)
            limit = (self._raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                     if hasattr(self._raw, "getlimit") else 999)   # Python 3.11+; 999 before SQLite 3.32
            self._per_statement = max(1, (limit - 2) // _PER_ROW)
        else:
            self._as_of, self._created_at = as_of, now
            with self._raw.cursor() as cur:
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_PG_TEMP} ON COMMIT DELETE ROWS AS "
                            f"SELECT {', '.join(_COLUMNS[1:])} FROM notices WITH NO DATA")
                cur.execute(f"TRUNCATE {_PG_TEMP}")
        self._queue: queue.Queue[tuple[Sequence[NoticeIntent], Ids] | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="dondoc-notice-writer", daemon=True)

    # -- the caller's side ----------------------------------------------------------------------
    def __enter__(self) -> "NoticeWriter":
        if self._thread is not None:
            self._thread.start()
        return self

    def put(self, intents: Sequence[NoticeIntent], ids: Ids | None = None) -> None:
        """Queue one chunk (best in key order: see engine/open_items.py); ``ids``: each instance's id
        by (obligation, unit, period)."""
        if self._error is not None:
            raise self._error
        if not intents or self._thread is None:   # nothing to write, or a dry run
            return
        job = (intents, ids or {})
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

    def _write(self, intents: Sequence[NoticeIntent], ids: Ids) -> None:
        get = ids.get
        rows = [(get((n.obligation, n.unit, n.period)), *n) for n in intents]
        self.created += self._write_sqlite(rows) if self._sqlite else self._write_pg(rows)

    def _write_sqlite(self, rows: list[tuple[Any, ...]]) -> int:
        raw, tail = self._raw, (self._as_of, self._created_at)
        before = raw.total_changes
        start = 0
        for take, size in _cut(len(rows), self._per_statement):
            part = rows[start:start + take]
            padding = [part[-1]] * (size - take)
            raw.execute(_sqlite_insert(size), [*tail, *chain.from_iterable(part), *chain.from_iterable(padding)])
            start += take
        return raw.total_changes - before

    def _write_pg(self, rows: Iterable[tuple[Any, ...]]) -> int:
        with self._raw.cursor() as cur:
            with cur.copy(f"COPY {_PG_TEMP} ({', '.join(_COLUMNS[1:])}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            cur.execute(_INSERT + _select([f"x.{c}" for c in _COLUMNS[1:]], "%s", "%s", f"{_PG_TEMP} AS x")
                        + " ORDER BY 1 ON CONFLICT (key) DO NOTHING", (self._as_of, self._created_at))
            created = cur.rowcount
            cur.execute(f"TRUNCATE {_PG_TEMP}")
        return created
