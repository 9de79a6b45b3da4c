"""One active daemon per state database; others wait as standbys.

APScheduler 3 must never run two schedulers on one job store (duplicate or lost runs), so a daemon
starts its scheduler only while it holds leadership:
- PostgreSQL: a session-level advisory lock on a dedicated connection. The server releases it the
  moment the holder's connection dies, so a standby takes over within its polling interval.
- SQLite (no advisory locks): a lease row renewed by a heartbeat. A holder that dies stops renewing;
  a standby takes the lease once it has expired and nobody renewed it for `ttl` seconds.
Leases use real time, never the simulated clock: they are about processes being alive.

A busy database is not a dead holder. While another connection holds a write lock (a long import,
a backup, the sqlite3 shell) nobody can renew or take the lease: the holder keeps retrying, and a
standby that found the database busy waits a further `ttl` after it became writable again before
taking over, which gives the holder (renewing every ttl/4) the first chance. A standby's take-over
is a compare-and-set on the row it observed, so a renewal in between always wins.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from engine.db import is_transient_db_error

ADVISORY_KEY = 0x646F6E646F63  # "dondoc"

log = logging.getLogger("dondoc.leader")


class Leadership(Protocol):
    holder: str
    ttl: float

    def try_acquire(self) -> bool: ...
    def renew(self) -> bool: ...
    def release(self) -> None: ...


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SqliteLease:
    """The lease row. `renew` raises on a database error (the caller decides whether it is
    transient); only a row taken by someone else means the lease is lost."""

    def __init__(self, engine: Engine, name: str = "scheduler", ttl: float = 20.0):
        self.engine, self.name, self.ttl = engine, name, ttl
        self.holder = holder_id()
        self._seen: tuple[str, float] | None = None     # the row as last read by this standby
        self._changed_at = 0.0                          # monotonic: when it last changed (as seen here)
        self._busy_at: float | None = None              # monotonic: last time the database was found busy

    def _read(self) -> tuple[str, float] | None:
        with self.engine.connect() as c:
            row = c.execute(text("SELECT holder, expires_at FROM leases WHERE name = :n"), {"n": self.name}).first()
        return (row[0] or "", float(row[1] or 0)) if row else None

    def _writable(self) -> bool:
        """Can this process take the write lock now (short busy wait)? False when another writer holds it."""
        try:
            with self.engine.begin() as c:
                c.exec_driver_sql("UPDATE leases SET holder = holder WHERE 0")
            return True
        except Exception as exc:
            if is_transient_db_error(exc):
                return False
            raise

    def _cas(self, seen: tuple[str, float] | None) -> bool:
        now = time.time()
        with self.engine.begin() as c:
            c.execute(text("INSERT OR IGNORE INTO leases (name, holder, expires_at) VALUES (:n, '', 0)"), {"n": self.name})
            if seen is None:
                res = c.execute(text("UPDATE leases SET holder = :h, expires_at = :e WHERE name = :n AND "
                                     "(holder = :h OR holder = '' OR expires_at < :now)"),
                                {"h": self.holder, "e": now + self.ttl, "n": self.name, "now": now})
            else:
                res = c.execute(text("UPDATE leases SET holder = :h, expires_at = :e WHERE name = :n AND "
                                     "holder = :old AND expires_at = :old_e AND (holder = :h OR expires_at < :now)"),
                                {"h": self.holder, "e": now + self.ttl, "n": self.name, "now": now,
                                 "old": seen[0], "old_e": seen[1]})
            return res.rowcount == 1

    def try_acquire(self) -> bool:
        """One standby step. Raises on a database error other than "busy" (callers log and retry)."""
        mono, wall = time.monotonic(), time.time()
        row = self._read()
        if row is None or not row[0] or row[1] == 0 or row[0] == self.holder:   # free, released, or ours
            return self._try_cas(row)
        first_sight = self._seen is None
        if row != self._seen:
            self._seen, self._changed_at = row, mono
            if not (first_sight and row[1] < wall - self.ttl):    # a lease long expired when we start
                return False
        if row[1] >= wall:
            return False                                          # still valid
        if not first_sight and mono - self._changed_at < self.ttl / 2:
            return False
        if not self._writable():
            self._busy_at = mono                                  # everybody is waiting, the holder too
            return False
        if self._busy_at is not None and mono - self._busy_at < self.ttl:
            return False                                          # give the holder the first chance
        return self._try_cas(row)

    def _try_cas(self, row: tuple[str, float] | None) -> bool:
        try:
            return self._cas(row)
        except Exception as exc:
            if is_transient_db_error(exc):
                self._busy_at = time.monotonic()
                return False
            raise

    def renew(self) -> bool:
        with self.engine.begin() as c:
            res = c.execute(text("UPDATE leases SET expires_at = :e WHERE name = :n AND holder = :h"),
                            {"h": self.holder, "e": time.time() + self.ttl, "n": self.name})
            return res.rowcount == 1

    def release(self) -> None:
        with self.engine.begin() as c:
            c.execute(text("UPDATE leases SET expires_at = 0 WHERE name = :n AND holder = :h"),
                      {"h": self.holder, "n": self.name})


class PgAdvisoryLock:
    def __init__(self, engine: Engine, ttl: float = 20.0):
        self.engine = engine
        self.ttl = ttl
        self.holder = holder_id()
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
            self._conn.commit()
            return bool(got)
        except Exception:
            self._drop()           # a broken connection: a fresh one next time
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def renew(self) -> bool:
        """Still ours while our connection is alive: check it answers."""
        try:
            assert self._conn is not None
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except Exception:
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                self._conn.commit()
            except Exception:
                pass
            self._drop()


def leadership_for(engine: Engine, ttl: float = 20.0) -> Leadership:
    if engine.dialect.name == "postgresql":
        return PgAdvisoryLock(engine, ttl=ttl)
    return SqliteLease(engine, ttl=ttl)


class Heartbeat(threading.Thread):
    """Renews leadership while the daemon is healthy; calls on_lost if it was taken by another.

    `healthy()` returns None or why the daemon is not working: then the lease is not renewed (a
    daemon whose scheduler died must not keep the standby out). A transient database error (busy,
    connection reset) is retried at the next beat; the lease counts as held meanwhile only until
    `ttl` after the last successful renewal (`valid()`)."""

    def __init__(self, lead: Leadership, interval: float, on_lost: Callable[[], None],
                 healthy: Callable[[], str | None] | None = None):
        super().__init__(name="dondoc-heartbeat", daemon=True)
        self.lead, self.interval, self.on_lost, self.healthy = lead, interval, on_lost, healthy
        self.stop_event = threading.Event()
        self.last_renewed = time.monotonic()
        self.failing_since: float | None = None

    def valid(self) -> bool:
        return time.monotonic() - self.last_renewed < self.lead.ttl

    def beat(self) -> bool:
        """One renewal; False when the lease is lost."""
        reason = self.healthy() if self.healthy is not None else None
        if reason:
            log.warning("not renewing the lease: %s", reason, extra={"event": "lease_not_renewed"})
            return True
        try:
            ok = self.lead.renew()
        except Exception as exc:
            if not is_transient_db_error(exc):
                log.exception("lease renewal failed", extra={"event": "lease_error"})
                return False
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
                log.warning("database busy: lease not renewed, retrying (%s)", str(exc).splitlines()[0],
                            extra={"event": "lease_retry"})
            return True
        if ok:
            if self.failing_since is not None:
                log.info("lease renewed again after %.1f s", time.monotonic() - self.failing_since,
                         extra={"event": "lease_recovered"})
                self.failing_since = None
            self.last_renewed = time.monotonic()
        return ok

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            if not self.beat():
                self.on_lost()
                return
