"""One sender at a time per state database.

A daemon's delivery job and a manual ``dondoc notify`` must not send the same digest at the same
moment. The lock is the core's one database lock (engine/dblock.py): ``flock`` on
``<database>.notify.lock`` for SQLite, a session advisory lock for PostgreSQL; released by the
system when its holder dies, so a crash never leaves the outbox locked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.engine import Engine

from engine.dblock import database_lock

ADVISORY_KEY = 0x646F6E6E6F74  # "donnot": differs from the scheduler's leadership key


@contextlib.contextmanager
def sender_lock(engine: Engine) -> Iterator[bool]:
    """Yields True when this process may send, False when another sender holds the lock."""
    with database_lock(engine.url, suffix=".notify.lock", key=ADVISORY_KEY, wait=False) as mine:
        yield mine
