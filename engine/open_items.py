"""Reading the open instances an evaluation pass considers, chunk by chunk.

A reader thread with a connection of its own reads one page per chunk, in (obligation, unit,
period) order — keyset pagination over the partial index of open instances —, all pages in one read
transaction (one snapshot), and hands each chunk over while the pass evaluates the previous one.
On SQLite a page is one statement that returns the rows and their sent stages as one JSON text: it
runs inside SQLite without Python's GIL, where fetching row by row would take and give back the GIL
for every row and wait behind the evaluating thread each time (engine/notice_writer.py explains the
same "convoy" for writing). On PostgreSQL a page is one query on a pooled connection (the wait for
the server releases the GIL).

An open instance whose policy has nothing left to send (the late track's last stage and the
escalation are in the outbox: a report never submitted, after its last reminder) is marked by the
pass with the rules' exhaustion marker and the day (engine/notice_writer.py writes the mark). Later
passes under the same rules, on or after that day, do not read it, so the open backlog of reports
that will never come does not slow every pass for ever; new rules or calendar (a new marker) or an
earlier day read it again.

When another connection could not see what the session sees — an in-memory SQLite, or writes of
this session not yet committed — everything is read at once on the session's own connection before
the pass begins, and cut into the same chunks.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from contextlib import contextmanager
from datetime import date
from functools import partial
from typing import Any, Callable, ContextManager, Iterable, Iterator

from sqlalchemy import or_ as sa_or
from sqlalchemy import select as sa_select
from sqlmodel import Session

from engine.db import file_for_another_connection, sqlite_uri
from engine.evaluation import OpenItem
from engine.rules_loader import RulePack
from engine.state import InstanceRow, NoticeRow

_OPEN = "i.closed = 0 AND i.active = 1 AND i.chase_paused = 0 AND i.due <= ?"
# Instances marked exhausted under these rules, on or before today, are not read (see the module's
# docstring and engine/evaluation.py, DurableEvaluator.events).
_LIVE = "(i.exhausted_rules IS NULL OR i.exhausted_rules <> ? OR i.exhausted_on > ?)"
# One chunk as one JSON text, flat: [obligation, unit, period, due, "stage,stage" or null, obligation,
# …], five values per instance, in (obligation, unit, period) order — the partial index
# ix_instances_open_key holds exactly the open, active instances in that order —, continued after
# the last triple read (a seek, no sort). Flat, because decoding a list per row costs five times
# as much Python time as decoding their values (and Python time is what the evaluating thread
# waits for: the GIL). In key order the pass's notices come out in nearly the order of their
# keys, and inserting them in key order costs half the CPU of inserting them at random places.
_CHUNK_SQL = (
    "SELECT '[' || group_concat(substr(j, 2, length(j) - 2), ',') || ']' FROM ("
    "SELECT json_array(i.obligation, i.unit, i.period, i.due, "
    "(SELECT group_concat(n.stage, ',') FROM notices n WHERE n.instance_id = i.id)) AS j "
    f"FROM instances i INDEXED BY ix_instances_open_key WHERE {_OPEN} AND {_LIVE} "
    "AND (i.obligation, i.unit, i.period) > (?, ?, ?) ORDER BY i.obligation, i.unit, i.period LIMIT ?)")
_WIDTH = 5
Row = tuple[str, str, str, Any, Any]   # obligation, unit, period, due, sent stages
# What the reader hands over per chunk: a flat list (SQLite) or rows (PostgreSQL, the session).
Chunk = tuple[bool, list[Any]]
NEVER = "-"         # an exhaustion marker no instance carries (markers are hex digests)
# The first page is one chunk, so the pass starts at once; later pages grow to this many chunks:
# each page takes the GIL back from the evaluating thread (a wait of up to its switch interval),
# and fewer, larger pages keep the reader ahead of the pass (benchmarks/bench_evaluation_pass.py).
_PAGE_GROWTH = 4


def lookahead(pack: RulePack, today: date) -> date:
    """Instances due after this day cannot trigger any stage yet."""
    longest = max((max(p.before_due_working_days, default=0) for p in pack.policies.values()), default=0)
    return pack.calendar.add_working_days(today, longest + 1)


class OpenItemChunks:
    """Iterate over lists of OpenItems; ``close()`` stops the reader early.

    ``marker``: the exhaustion marker of the rules in force (engine/pipeline.exhaustion_marker);
    instances marked with it on or before ``today`` cannot produce a notice and are not read.
    """

    def __init__(self, session: Session, pack: RulePack, today: date, size: int, marker: str | None = None):
        self._size = size
        self._policy_of = {oid: pack.policy_for(ob).id for oid, ob in pack.obligations.items()}
        self._supervisor_of = {uid: u.supervisor for uid, u in pack.units.items()}
        self._days: dict[str, date] = {}
        self._empty: frozenset[str] = frozenset()
        horizon = lookahead(pack, today)
        live = (marker or NEVER, today)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        pages = _pages(session)
        if pages is not None:
            self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._read, args=(pages, horizon, live),
                                            name="dondoc-open-items", daemon=True)
            self._thread.start()
            self._rows: list[Row] | None = None
        else:
            self._rows = _read_all(session, horizon, live)

    # -- the pass's side ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[OpenItem]]:
        if self._rows is not None:
            for start in range(0, len(self._rows), self._size):
                yield self._items((False, self._rows[start:start + self._size]))
            return
        while True:
            kind, value = self._queue.get()
            if kind == "rows":        # a page may hold several chunks (see _read)
                flat, values = value
                step = self._size * (_WIDTH if flat else 1)
                for start in range(0, len(values), step):
                    yield self._items((flat, values[start:start + step]))
            elif kind == "error":
                raise value
            else:
                return

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "OpenItemChunks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _items(self, chunk: Chunk) -> list[OpenItem]:
        flat, values = chunk
        policy_of, supervisor_of, days, empty = self._policy_of, self._supervisor_of, self._days, self._empty
        new = tuple.__new__       # OpenItem's own __new__ is a Python call: this is half the cost
        out: list[OpenItem] = []
        append = out.append
        if flat:
            it = iter(values)
            rows: Iterable[Any] = zip(it, it, it, it, it)
        else:
            rows = values
        for ob_id, unit, period, due, sent in rows:
            policy = policy_of.get(ob_id)
            if policy is None or unit not in supervisor_of:
                continue
            if isinstance(due, str):          # SQLite: ISO text, a few distinct days
                day = days.get(due)
                if day is None:
                    day = days[due] = date.fromisoformat(due)
                due = day
            if sent:                          # SQLite: "stage,stage" (stage ids have no comma)
                sent = frozenset(sent.split(",") if isinstance(sent, str) else sent)
            append(new(OpenItem, (ob_id, unit, period, due, policy, "open", sent or empty, supervisor_of[unit])))
        return out

    # -- the reader thread ----------------------------------------------------------------------
    def _read(self, pages: "Pages", horizon: date, live: tuple[str, date]) -> None:
        try:
            with pages() as page:             # one snapshot for every chunk
                last: tuple[str, str, str] = ("", "", "")
                size = self._size
                while not self._stop.is_set():
                    chunk = page(horizon, live, last, size)
                    size = min(size * 2, self._size * _PAGE_GROWTH)
                    flat, values = chunk
                    if not values:
                        break
                    if not self._put(("rows", chunk)):
                        return
                    last = tuple(values[-_WIDTH:-2]) if flat else tuple(values[-1][:3])  # type: ignore[assignment]
            self._put(("end", None))
        except BaseException as exc:          # handed to the pass and raised there
            self._put(("error", exc))

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


Page = Callable[[date, tuple[str, date], tuple[str, str, str], int], Chunk]
Pages = Callable[[], ContextManager[Page]]


def _pages(session: Session) -> Pages | None:
    """How the reader thread reads pages on a connection of its own, or None when it cannot see
    what the session sees (an in-memory SQLite, or writes of this session not yet committed)."""
    dialect = session.get_bind().dialect.name
    raw = session.connection().connection.driver_connection
    if dialect == "sqlite":
        path = file_for_another_connection(raw)   # none: uncommitted writes or in memory, read here
        if path is None:
            return None
        try:
            raw.execute("SELECT json_array(1)").fetchone()
        except sqlite3.Error:                 # built without JSON functions
            return None
        return partial(_sqlite_pages, path)
    if dialect == "postgresql":
        with raw.cursor() as cur:             # an xid is assigned at this transaction's first write
            if cur.execute("SELECT txid_current_if_assigned()").fetchone()[0] is not None:
                return None
        return partial(_pg_pages, session.get_bind())
    return None


@contextmanager
def _sqlite_pages(path: str) -> Iterator[Page]:
    con = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, isolation_level=None, check_same_thread=False)
    try:
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("BEGIN")

        def page(horizon: date, live: tuple[str, date], after: tuple[str, str, str], size: int) -> Chunk:
            (text,) = con.execute(_CHUNK_SQL, (horizon.isoformat(), live[0], live[1].isoformat(),
                                               *after, size)).fetchone()
            return True, json.loads(text) if text else []

        yield page
        con.execute("COMMIT")
    finally:
        con.close()


_PG_OPEN = "i.closed = false AND i.active = true AND i.chase_paused = false AND i.due <= %s"
_PG_LIVE = "(i.exhausted_rules IS NULL OR i.exhausted_rules <> %s OR i.exhausted_on > %s)"
_PG_PAGE = (
    "SELECT i.obligation, i.unit, i.period, i.due, "
    "(SELECT array_agg(n.stage) FROM notices n WHERE n.instance_id = i.id) FROM instances i "
    f"WHERE {_PG_OPEN} AND {_PG_LIVE} "
    "AND (i.obligation, i.unit, i.period) > (%s, %s, %s) ORDER BY i.obligation, i.unit, i.period LIMIT %s")


@contextmanager
def _pg_pages(engine: Any) -> Iterator[Page]:
    """A pooled connection of the same engine, in one read-only repeatable-read transaction."""
    pooled = engine.raw_connection()
    try:
        con = pooled.driver_connection
        con.rollback()
        with con.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

            def page(horizon: date, live: tuple[str, date], after: tuple[str, str, str], size: int) -> Chunk:
                return False, cur.execute(_PG_PAGE, (horizon, *live, *after, size)).fetchall()

            yield page
        con.rollback()
    finally:
        pooled.close()


_PG_ROWS = (f"SELECT i.id, i.obligation, i.unit, i.period, i.due FROM instances i WHERE {_PG_OPEN} AND {_PG_LIVE} "
            "ORDER BY i.obligation, i.unit, i.period")
_PG_SENT = (f"SELECT n.instance_id, n.stage FROM notices n JOIN instances i ON i.id = n.instance_id "
            f"WHERE {_PG_OPEN} AND {_PG_LIVE}")


def _read_all(session: Session, horizon: date, live: tuple[str, date]) -> list[Row]:
    """Everything at once on the session's connection (PostgreSQL, in-memory SQLite, pending writes)."""
    if session.get_bind().dialect.name == "postgresql":   # the driver's rows: a third of the ORM's cost
        with session.connection().connection.driver_connection.cursor() as cur:
            pg_sent: dict[int, list[str]] = {}
            for iid, stage in cur.execute(_PG_SENT, (horizon, *live)).fetchall():
                pg_sent.setdefault(iid, []).append(stage)
            return [(ob, unit, period, due, pg_sent.get(iid))
                    for iid, ob, unit, period, due in cur.execute(_PG_ROWS, (horizon, *live)).fetchall()]
    I = InstanceRow
    where = (I.active == True, I.closed == False, I.chase_paused == False, I.due <= horizon,  # noqa: E712
             sa_or(I.exhausted_rules.is_(None), I.exhausted_rules != live[0], I.exhausted_on > live[1]))
    rows = session.execute(sa_select(I.id, I.obligation, I.unit, I.period, I.due).where(*where)
                           .order_by(I.obligation, I.unit, I.period)).all()
    sent: dict[int, list[str]] = {}
    for iid, stage in session.execute(sa_select(NoticeRow.instance_id, NoticeRow.stage)
                                      .join(I, I.id == NoticeRow.instance_id).where(*where)).all():
        sent.setdefault(iid, []).append(stage)
    return [(ob, unit, period, due, sent.get(iid)) for iid, ob, unit, period, due in rows]


def load_open_items(session: Session, pack: RulePack, today: date, marker: str | None = None) -> list[OpenItem]:
    """Open, active instances that could trigger a stage today, with the stages already in the
    outbox, all at once (``marker``: as for OpenItemChunks)."""
    items: list[OpenItem] = []
    with OpenItemChunks(session, pack, today, 10_000, marker) as chunks:
        for chunk in chunks:
            items.extend(chunk)
    return items
