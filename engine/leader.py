"""One active daemon per state database; others wait as standbys.

APScheduler 3 must never run two schedulers on one job store (duplicate or lost runs), so a daemon
starts its scheduler only while it holds leadership:
- PostgreSQL: a session-level advisory lock on a dedicated connection. The server releases it the
  moment the holder's connection dies, so a standby takes over within its polling interval.
- SQLite (no advisory locks): a lease row renewed by a heartbeat. A holder that dies stops renewing;
  the lease expires after `ttl` seconds of wall-clock time and a standby takes it.
Leases use real time, never the simulated clock: they are about processes being alive.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

ADVISORY_KEY = 0x646F6E646F63  # "dondoc"


class Leadership(Protocol):
    holder: str

    def try_acquire(self) -> bool: ...
    def renew(self) -> bool: ...
    def release(self) -> None: ...


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SqliteLease:
    def __init__(self, engine: Engine, name: str = "scheduler", ttl: float = 20.0):
        self.engine, self.name, self.ttl = engine, name, ttl
        self.holder = holder_id()

    def try_acquire(self) -> bool:
        now = time.time()
        with self.engine.begin() as c:
            c.execute(text("INSERT OR IGNORE INTO leases (name, holder, expires_at) VALUES (:n, '', 0)"), {"n": self.name})
            res = c.execute(text("UPDATE leases SET holder = :h, expires_at = :e WHERE name = :n AND "
                                 "(holder = :h OR expires_at < :now)"),
                            {"h": self.holder, "e": now + self.ttl, "n": self.name, "now": now})
            return res.rowcount == 1

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
    def __init__(self, engine: Engine):
        self.engine = engine
        self.holder = holder_id()
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
        got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        self._conn.commit()
        return bool(got)

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
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def leadership_for(engine: Engine, ttl: float = 20.0) -> Leadership:
    if engine.dialect.name == "postgresql":
        return PgAdvisoryLock(engine)
    return SqliteLease(engine, ttl=ttl)


class Heartbeat(threading.Thread):
    """Renews leadership; calls on_lost if it slips away (then the daemon must stop scheduling)."""

    def __init__(self, lead: Leadership, interval: float, on_lost):
        super().__init__(name="dondoc-heartbeat", daemon=True)
        self.lead, self.interval, self.on_lost = lead, interval, on_lost
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                ok = self.lead.renew()
            except Exception:
                ok = False
            if not ok:
                self.on_lost()
                return
