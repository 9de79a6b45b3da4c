"""One lock per database and purpose, released by the system when its holder dies (even by SIGKILL).

Why one helper: the sender ("one sender per database") and the migrations ("one upgrader at a
time") need the same thing, and a crash must never leave either locked:
- SQLite file: ``flock`` on ``<database><suffix>`` beside the database file (created 0600);
- PostgreSQL: a session-level advisory lock on a dedicated connection;
- anything else (in-memory SQLite, other servers): no lock (the caller is alone by construction).
The daemon's leadership (engine/leader.py) is a held lease, not a critical section, and keeps its
own mechanism (a lease row on SQLite, so a standby sees who holds it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

LOCK_FILE_MODE = 0o600


def _sqlite_file(url: URL) -> Path | None:
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


@contextlib.contextmanager
def database_lock(url: str | URL, *, suffix: str, key: int, wait: bool) -> Iterator[bool]:
    """Yields True while this process holds the lock; with ``wait=False``, False when another does."""
    u = make_url(url) if isinstance(url, str) else url
    path = _sqlite_file(u)
    if path is not None:
        import fcntl

        fd = os.open(path.with_name(path.name + suffix), os.O_RDWR | os.O_CREAT, LOCK_FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    elif u.get_backend_name() == "postgresql":
        eng = create_engine(u)
        try:
            with eng.connect() as conn:
                if wait:
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                    got = True
                else:
                    got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
                conn.commit()
                try:
                    yield got
                finally:
                    if got:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
        finally:
            eng.dispose()
    else:
        yield True
