"""Reading the open instances an evaluation pass considers, chunk by chunk.

A reader thread with a connection of its own reads one page per chunk, in (obligation, unit,
period) order — keyset pagination over the partial index of open instances —, all pages in one read
transaction (one snapshot), and hands each chunk over while the pass evaluates the previous one.
On SQLite a page is one statement that returns the rows and their sent stages as one JSON text: it
runs inside SQLite without Python's GIL, where fetching row by row would take and give back the GIL
for every row and wait behind the evaluating thread each time (engine/notice_writer.py explains the
same "convoy" for writing). On PostgreSQL a page is one query on a pooled connection (the wait for
the server releases the GIL).

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
from typing import Any, Callable, ContextManager, Iterator

from sqlalchemy import select as sa_select
from sqlmodel import Session

from engine.evaluation import OpenItem
from engine.rules_loader import RulePack
from engine.state import InstanceRow, NoticeRow

_OPEN = "i.closed = 0 AND i.active = 1 AND i.chase_paused = 0 AND i.due <= ?"
# One chunk: [[id, obligation, unit, period, due, "stage,stage" or null], …] as JSON text, in
# (obligation, unit, period) order — the partial index ix_instances_open_key holds exactly the open,
# active instances in that order —, continued after the last triple read (a seek, no sort). In that
# order the pass's notices come out in nearly the order of their keys, and inserting them in key
# order costs half the CPU of inserting them at random places of the key's index.
_CHUNK_SQL = (
    "SELECT json_group_array(json_array(id, obligation, unit, period, due, sent)) FROM ("
    "SELECT i.id, i.obligation, i.unit, i.period, i.due, "
    "(SELECT group_concat(n.stage, ',') FROM notices n WHERE n.instance_id = i.id) AS sent "
    f"FROM instances i INDEXED BY ix_instances_open_key WHERE {_OPEN} AND (i.obligation, i.unit, i.period) > (?, ?, ?) "
    "ORDER BY i.obligation, i.unit, i.period LIMIT ?)")
Row = tuple[int, str, str, str, Any, Any]   # id, obligation, unit, period, due, sent stages


def lookahead(pack: RulePack, today: date) -> date:
    """Instances due after this day cannot trigger any stage yet."""
    longest = max((max(p.before_due_working_days, default=0) for p in pack.policies.values()), default=0)
    return pack.calendar.add_working_days(today, longest + 1)


class OpenItemChunks:
    """Iterate over lists of OpenItems; ``close()`` stops the reader early. ``ids`` of the last
    chunk: each instance's id by (obligation, unit, period), for the notice writer."""

    def __init__(self, session: Session, pack: RulePack, today: date, size: int):
        self._size = size
        self.ids: dict[tuple[str, str, str], int] = {}
        self._policy_of = {oid: pack.policy_for(ob).id for oid, ob in pack.obligations.items()}
        self._supervisor_of = {uid: u.supervisor for uid, u in pack.units.items()}
        self._days: dict[str, date] = {}
        self._empty: frozenset[str] = frozenset()
        horizon = lookahead(pack, today)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        pages = _pages(session)
        if pages is not None:
            self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._read, args=(pages, horizon),
                                            name="dondoc-open-items", daemon=True)
            self._thread.start()
            self._rows: list[Row] | None = None
        else:
            self._rows = _read_all(session, horizon)

    # -- the pass's side ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[OpenItem]]:
        if self._rows is not None:
            for start in range(0, len(self._rows), self._size):
                yield self._items(self._rows[start:start + self._size])
            return
        while True:
            kind, value = self._queue.get()
            if kind == "rows":
                yield self._items(value)
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

    def _items(self, rows: list[Any]) -> list[OpenItem]:
        policy_of, supervisor_of, days, empty = self._policy_of, self._supervisor_of, self._days, self._empty
        out: list[OpenItem] = []
        append = out.append
        self.ids = chunk_ids = {}
        for iid, ob_id, unit, period, due, sent in rows:
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
            append(OpenItem(ob_id, unit, period, due, policy, "open", sent or empty, supervisor_of[unit]))
            chunk_ids[(ob_id, unit, period)] = iid
        return out

    # -- the reader thread ----------------------------------------------------------------------
    def _read(self, pages: "Pages", horizon: date) -> None:
        try:
            with pages() as page:             # one snapshot for every chunk
                last: tuple[str, str, str] = ("", "", "")
                while not self._stop.is_set():
                    rows = page(horizon, last, self._size)
                    if not rows:
                        break
                    if not self._put(("rows", rows)):
                        return
                    last = (rows[-1][1], rows[-1][2], rows[-1][3])
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


Page = Callable[[date, tuple[str, str, str], int], list[Any]]
Pages = Callable[[], ContextManager[Page]]


def _pages(session: Session) -> Pages | None:
    """How the reader thread reads pages on a connection of its own, or None when it cannot see
    what the session sees (an in-memory SQLite, or writes of this session not yet committed)."""
    dialect = session.get_bind().dialect.name
    raw = session.connection().connection.driver_connection
    if dialect == "sqlite":
        if raw.in_transaction:                # uncommitted writes of this session: read them here
            return None
        try:
            raw.execute("SELECT json_array(1)").fetchone()
        except sqlite3.Error:                 # built without JSON functions
            return None
        files = [file for _, name, file in raw.execute("PRAGMA database_list").fetchall() if name == "main"]
        return partial(_sqlite_pages, files[0]) if files and files[0] else None
    if dialect == "postgresql":
        with raw.cursor() as cur:             # an xid is assigned at this transaction's first write
            if cur.execute("SELECT txid_current_if_assigned()").fetchone()[0] is not None:
                return None
        return partial(_pg_pages, session.get_bind())
    return None


@contextmanager
def _sqlite_pages(path: str) -> Iterator[Page]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    try:
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("BEGIN")

        def page(horizon: date, after: tuple[str, str, str], size: int) -> list[Any]:
            (text,) = con.execute(_CHUNK_SQL, (horizon.isoformat(), *after, size)).fetchone()
            return json.loads(text)

        yield page
        con.execute("COMMIT")
    finally:
        con.close()


_PG_PAGE = (
    "SELECT i.id, i.obligation, i.unit, i.period, i.due, "
    "(SELECT array_agg(n.stage) FROM notices n WHERE n.instance_id = i.id) FROM instances i "
    "WHERE i.closed = false AND i.active = true AND i.chase_paused = false AND i.due <= %s "
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

            def page(horizon: date, after: tuple[str, str, str], size: int) -> list[Any]:
                return cur.execute(_PG_PAGE, (horizon, *after, size)).fetchall()

            yield page
        con.rollback()
    finally:
        pooled.close()


_PG_OPEN = "i.closed = false AND i.active = true AND i.chase_paused = false AND i.due <= %s"
_PG_ROWS = (f"SELECT i.id, i.obligation, i.unit, i.period, i.due FROM instances i WHERE {_PG_OPEN} "
            "ORDER BY i.obligation, i.unit, i.period")
_PG_SENT = f"SELECT n.instance_id, n.stage FROM notices n JOIN instances i ON i.id = n.instance_id WHERE {_PG_OPEN}"


def _read_all(session: Session, horizon: date) -> list[Row]:
    """Everything at once on the session's connection (PostgreSQL, in-memory SQLite, pending writes)."""
    if session.get_bind().dialect.name == "postgresql":   # the driver's rows: a third of the ORM's cost
        with session.connection().connection.driver_connection.cursor() as cur:
            pg_sent: dict[int, list[str]] = {}
            for iid, stage in cur.execute(_PG_SENT, (horizon,)).fetchall():
                pg_sent.setdefault(iid, []).append(stage)
            return [(*r, pg_sent.get(r[0])) for r in cur.execute(_PG_ROWS, (horizon,)).fetchall()]
    rows = session.execute(
        sa_select(InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period, InstanceRow.due)
        .where(InstanceRow.active == True, InstanceRow.closed == False, InstanceRow.chase_paused == False,  # noqa: E712
               InstanceRow.due <= horizon).order_by(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period)
    ).all()
    sent: dict[int, list[str]] = {}
    for iid, stage in session.execute(
            sa_select(NoticeRow.instance_id, NoticeRow.stage).join(InstanceRow, InstanceRow.id == NoticeRow.instance_id)
            .where(InstanceRow.active == True, InstanceRow.closed == False, InstanceRow.chase_paused == False,  # noqa: E712
                   InstanceRow.due <= horizon)).all():
        sent.setdefault(iid, []).append(stage)
    return [(iid, ob, unit, period, due, sent.get(iid)) for iid, ob, unit, period, due in rows]


def load_open_items(session: Session, pack: RulePack, today: date,
                    ) -> tuple[list[OpenItem], dict[tuple[str, str, str], int]]:
    """Open, active instances that could trigger a stage today, with the stages already in the
    outbox, all at once; and each one's instance id by (obligation, unit, period)."""
    items: list[OpenItem] = []
    index: dict[tuple[str, str, str], int] = {}
    with OpenItemChunks(session, pack, today, 10_000) as chunks:
        for chunk in chunks:
            items.extend(chunk)
            index.update(chunks.ids)
    return items, index
