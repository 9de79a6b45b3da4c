"""One sender at a time per state database.

A daemon's delivery job and a manual ``dondoc notify`` must not send the same digest at the same
moment. The lock is released by the operating system / database when its holder dies, even by
SIGKILL, so a crash never leaves the outbox locked:
- SQLite file: ``flock`` on ``<database>.notify.lock`` beside the database file;
- PostgreSQL: a session-level advisory lock on a dedicated connection;
- anything else (in-memory SQLite, other servers): no lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

ADVISORY_KEY = 0x646F6E6E6F74  # "donnot": differs from the scheduler's leadership key


@contextlib.contextmanager
def sender_lock(engine: Engine) -> Iterator[bool]:
    """Yields True when this process may send, False when another sender holds the lock."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        import fcntl

        path = Path(url.database).with_name(Path(url.database).name + ".notify.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    elif backend == "postgresql":
        with engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                    conn.commit()
    else:
        yield True
