"""Database connection and migrations: the schema is always brought to Alembic head first.

A SQLite state database holds names, addresses and the audit trail: the file, its -wal/-shm/-journal
companions (SQLite gives them the database file's mode) and our lock files are created 0600 and an
existing one readable by others is tightened to at most 0640 when it is opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Executable, event, func, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0          # how long a statement waits for another writer (CLI commands)
FILE_MODE = 0o600
COMPANIONS = ("-wal", "-shm", "-journal", ".migrate-lock", ".notify.lock", ".rules-lock", ".inbox-lock")


def is_transient_db_error(exc: BaseException) -> bool:
    """A database error worth retrying: busy/locked, connection lost or refused, pool timeout."""
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError, sqlite3.OperationalError))


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases, :memory: and URI forms)."""
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: not ours to touch
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    return Path(u.database)


def file_for_another_connection(raw: Any) -> str | None:
    """The database file a second SQLite connection may open to see exactly what ``raw`` (a
    sqlite3 connection) sees; None when ``raw`` has writes not yet committed (another connection
    would not see them, and would wait for their lock) or the database is not a file."""
    if raw.in_transaction:
        return None
    files = [file for _, name, file in raw.execute("PRAGMA database_list").fetchall() if name == "main"]
    return files[0] if files and files[0] else None


def sqlite_uri(path: str, mode: str) -> str:
    """A ``file:`` URI for ``sqlite3.connect(..., uri=True)`` that opens ``path`` as it is (a '?',
    '#' or '%' in a directory name is escaped) with ``mode`` ("ro", "rw": never creates a file)."""
    return f"{Path(path).absolute().as_uri()}?mode={mode}"


def checkpoint(session: Session) -> None:
    """Copy SQLite's write-ahead log back into the database file (PASSIVE: waits for no one).

    An evaluation pass's writer commits without doing so (engine/notice_writer.py): SQLite then does
    it at the next commit of another connection. The benchmark calls this to time that work beside
    the pass. No-op on PostgreSQL."""
    if session.get_bind().dialect.name != "sqlite":
        return
    session.connection().exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    session.commit()


def secure_sqlite_files(path: Path, create: bool = False) -> None:
    """Create the database file 0600 if missing (``create``); tighten it and its companions if others
    can read them."""
    try:
        if create and not path.exists() and path.parent.is_dir():
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))   # SQLite takes an empty file as a new database
        for p in [path] + [path.with_name(path.name + s) for s in COMPANIONS]:
            try:
                mode = p.stat().st_mode & 0o777
            except FileNotFoundError:
                continue
            if mode & 0o037:                      # group write/exec or anything for others
                os.chmod(p, mode & 0o640)
    except PermissionError:
        pass                                      # not the owner (read-only use): the owner's files stay as they are


# What SQLite may hold in page caches across all the process's connections before it reuses the
# least recently used pages instead of allocating more. Without it every pooled connection (and the
# pass's reader and writer) grows its own cache to 2 MiB as the database grows: 4 → 17 MiB over the
# two-year soak, memory the daemon keeps for ever (benchmarks/bench_soak_years.py). The pages come
# back from the operating system's file cache when needed again.
SQLITE_HEAP_LIMIT = 8 * 1024 * 1024


# What a large evaluation pass's writer (engine/notice_writer.py) may cache once it has written
# _BIG_PASS_ROWS notices, the soft limit above raised by as much until it closes: at 1,000,000 open
# instances its inserts into the notices' indexes missed a 2 MiB cache all the time (writer CPU
# 10.3 → 7.4 s, benchmarks/bench_evaluation_pass.py). Only past that size: a daemon's daily passes
# (a province: a few thousand notices) never lift it, so their memory stays as the soak measured.
PASS_CACHE_KIB = 64 * 1024
_heap_lock = threading.Lock()
_heap_lifts = 0


def lift_heap_limit(con: sqlite3.Connection) -> None:
    """Give ``con`` (a pass's own connection) a cache of PASS_CACHE_KIB and raise the process's soft
    heap limit by as much until ``restore_heap_limit(con)``."""
    global _heap_lifts
    con.execute(f"PRAGMA cache_size=-{PASS_CACHE_KIB}")
    with _heap_lock:
        _heap_lifts += 1
        con.execute(f"PRAGMA soft_heap_limit={_heap_limit_now()}")


def restore_heap_limit(con: sqlite3.Connection) -> None:
    """Undo ``lift_heap_limit(con)`` (before ``con`` is closed, which frees its cache)."""
    global _heap_lifts
    with _heap_lock:
        _heap_lifts -= 1
        con.execute(f"PRAGMA soft_heap_limit={_heap_limit_now()}")


def _heap_limit_now() -> int:
    """The soft heap limit in force: the daemon's, raised by the large passes running now."""
    if SQLITE_HEAP_LIMIT <= 0:    # 0: no limit at all, nothing to raise
        return 0
    return SQLITE_HEAP_LIMIT + _heap_lifts * PASS_CACHE_KIB * 1024


def _sqlite_pragmas(busy_ms: int):
    def on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        with _heap_lock:            # the whole process's: idempotent (with a large pass's lift, if one runs)
            cur.execute(f"PRAGMA soft_heap_limit={_heap_limit_now()}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()
    return on_connect


# How long ``refresh_statistics`` waits for a table's lock (an autovacuum or another ANALYZE
# holding it) before it leaves the statistics to PostgreSQL's own autovacuum.
STATISTICS_LOCK_TIMEOUT_MS = 2000


def refresh_statistics(session: Session, tables: Sequence[str], added: int) -> bool:
    """PostgreSQL: ``ANALYZE`` ``tables`` now, in a transaction of its own, when ``added`` rows just
    committed to the first of them are more than its autovacuum would let pass unnoticed (50 rows +
    10 % of the rows the planner counts). Returns whether it did.

    Why: autovacuum refreshes a table's statistics only at its next round (every minute), so a pass
    that reads thousands of rows it has just written is planned for the table as it was: an outbox
    the planner believes nearly empty is scanned whole for each small batch of digests read (the
    delivery pass; benchmarks/README.md, stop 29). A lock held by an autovacuum or another ANALYZE
    is waited for at most ``STATISTICS_LOCK_TIMEOUT_MS``; a table the user does not own is skipped by
    PostgreSQL with a warning. No-op on SQLite (no statistics unless asked for; its planner
    assumes indexes help)."""
    if session.get_bind().dialect.name != "postgresql" or added <= 0 or not tables:
        return False
    conn = session.connection()
    known = conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                         {"t": tables[0]}).scalar()
    if added <= 50 + 0.1 * max(float(known or 0), 0.0):
        session.commit()
        return False
    quote = session.get_bind().dialect.identifier_preparer.quote
    try:
        conn.execute(text(f"SET LOCAL lock_timeout = {int(STATISTICS_LOCK_TIMEOUT_MS)}"))
        conn.execute(text("ANALYZE " + ", ".join(quote(t) for t in tables)))
        session.commit()
    except sa_exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":     # only lock_not_available is expected
            raise
        session.rollback()                     # the lock stayed taken: autovacuum will do it
        return False
    return True


def unindexed(column: ColumnElement) -> ColumnElement:
    """``column``'s value (NULL included) inside an expression no index serves: the same hint on
    SQLite and PostgreSQL, for a query where a planner without statistics would otherwise pick an
    index that reads far more than another one the query can use (each caller says which)."""
    return func.coalesce(column, column)


def execute_and_commit(ses: Session, statements: Sequence[tuple[Executable, dict[str, Any]]]) -> None:
    """Execute ``statements`` (write statements: no rows are read back) and commit, all or nothing.

    On PostgreSQL, when the session's transaction has not begun on the server yet, in one round
    trip: ``BEGIN``, the statements and ``COMMIT`` as one pipeline (psycopg's ``pipeline()`` with
    its autocommit on for the while; psycopg would otherwise wait for its own ``BEGIN`` and for
    each statement: four round trips for two ``UPDATE``s); if any fails, the block is rolled back.
    Why: the delivery pass does this twice per message, and each round trip blocks the event loop
    that drives the SMTP connections. Elsewhere (SQLite, or a transaction already open on the
    server), the statements then the session's commit."""
    ses.flush()                                  # anything the unit of work holds goes first
    conn = ses.connection()
    raw = conn.connection.driver_connection
    if statements and hasattr(raw, "pipeline") and raw.info.transaction_status.name == "IDLE":
        dialect = conn.dialect
        raw.autocommit = True                    # so psycopg sends no BEGIN of its own and waits for it
        try:
            with raw.pipeline():
                raw.execute("BEGIN")
                for stmt, params in statements:
                    conn.execute(stmt, params)
                raw.execute("COMMIT")
        except BaseException as exc:
            # A statement refused by the server (the rest, COMMIT included, skipped up to the Sync)
            # or one that failed here before COMMIT was queued: the block is still open; undo it.
            if not raw.closed and raw.info.transaction_status.name != "IDLE":
                with suppress(dialect.loaded_dbapi.Error):   # a lost connection: the error below says so
                    raw.rollback()
            if not isinstance(exc, dialect.loaded_dbapi.Error):
                raise
            # Raised at the Sync, outside SQLAlchemy's execute: wrapped as SQLAlchemy would have
            # (IntegrityError, OperationalError …, a lost connection invalidated) for the callers.
            wrapped = as_sqlalchemy_error(dialect, exc, raw)
            if wrapped.connection_invalidated:
                conn.invalidate(exc)
            raise wrapped from exc
        finally:
            if not raw.closed:
                raw.autocommit = False
        ses.commit()                             # the session's bookkeeping: nothing left to send
        return
    for stmt, params in statements:
        conn.execute(stmt, params)
    ses.commit()


def as_sqlalchemy_error(dialect: Any, exc: BaseException, raw: Any) -> sa_exc.DBAPIError:
    """A driver's error raised outside SQLAlchemy's own execute, as SQLAlchemy would have raised it
    (IntegrityError, OperationalError …; ``connection_invalidated`` when ``raw`` is lost), so the
    callers handle one family of errors."""
    lost = dialect.is_disconnect(exc, raw, None)
    return sa_exc.DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
                                      dialect=dialect)


def make_engine(url: str, busy_timeout: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine; on SQLite a statement waits up to ``busy_timeout`` seconds for another writer."""
    kwargs: dict = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": busy_timeout}
        path = sqlite_path(url)
        if path is not None:
            secure_sqlite_files(path)
    else:
        kwargs["pool_pre_ping"] = True            # a server restart must not poison the pool
    eng = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(eng, "connect", _sqlite_pragmas(int(busy_timeout * 1000)))
        if sqlite_path(url) is not None:
            _recycled_on_release(eng)
    return eng


# Per SQLite file engine: the generation its connections must be of. ``release_statements`` moves
# it on; a connection of an older generation is closed and replaced when it is next checked out.
_generations: weakref.WeakKeyDictionary[Engine, list[int]] = weakref.WeakKeyDictionary()


def _recycled_on_release(eng: Engine) -> None:
    generation = _generations.setdefault(eng, [0])

    def on_connect(_dbapi_conn, record) -> None:
        # Of the generation of its first checkout: just opened, it holds no statement, whatever the
        # generation is by then. (Given the generation here, a job ending on another thread between
        # the reopening below and SQLAlchemy's one re-check made the fresh connection look old
        # too, and SQLAlchemy gave up: "This connection is closed".)
        record.info["generation"] = None

    def on_checkout(_dbapi_conn, record, _proxy) -> None:
        if record.info.get("generation") is None:
            record.info["generation"] = generation[0]
        elif record.info["generation"] != generation[0]:
            # SQLAlchemy closes this connection and opens a fresh one (PoolEvents.checkout)
            raise sa_exc.DisconnectionError("its prepared statements are released")

    event.listen(eng, "connect", on_connect)
    event.listen(eng, "checkout", on_checkout)


def release_statements(eng: Engine) -> bool:
    """Have the pooled connections of a SQLite file database closed and reopened at their next use,
    and with them their prepared statements freed; True when it did. Python's sqlite3 keeps the last
    128 statements of each connection, and an ``IN`` list is a statement per length (500 ids:
    ≈100 KB): over the two-year soak the daemon's four connections came to hold 4 → 14 MiB of them,
    which no job needed again (benchmarks/bench_soak_years.py). The daemon calls this after each
    job, so they hold what one job prepared at most; a fresh connection costs ≈1 ms. Not by
    disposing of the pool: a connection another thread holds meanwhile would come back to a
    discarded pool and be left unclosed. Never on an in-memory database, which would be lost."""
    generation = _generations.get(eng)
    if generation is None:
        return False
    generation[0] += 1
    return True


def alembic_config(url: str):
    """Alembic's configuration for this database (imported here: Alembic costs ~0.1 s to import and
    a database already at head never needs it)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


MIGRATION_LOCK_KEY = 0x646F6E6D6967  # "donmig"


# The newest migration in engine/migrations/versions (tests/test_state.py checks it is Alembic's head).
SCHEMA_HEAD = "0016"


def _current_revision(url: str) -> str | None:
    """The database's revision, read with one query: a database already at head (every command
    after the first) skips Alembic, whose import and environment cost ~0.15 s each time. None when
    it cannot be read (no table yet, locked, unreachable: the upgrade then does its work or says why)."""
    try:
        eng = create_engine(url)
        try:
            with eng.connect() as conn:
                rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
                return rows[0] if len(rows) == 1 else None
        finally:
            eng.dispose()
    except Exception:  # noqa: BLE001 - see above
        return None


def migrate(url: str) -> None:
    """Upgrade to head; serialised (engine/dblock.py), so two processes starting on a fresh database don't race."""
    from engine.dblock import database_lock

    path = sqlite_path(url)
    if path is not None:
        secure_sqlite_files(path, create=True)
    with database_lock(url, suffix=".migrate-lock", key=MIGRATION_LOCK_KEY, wait=True):
        if _current_revision(url) != SCHEMA_HEAD:
            from alembic import command

            command.upgrade(alembic_config(url), "head")
    if path is not None:
        secure_sqlite_files(path)                 # -wal/-shm made by the migration


@lru_cache(maxsize=16)
def _engine_for(url: str) -> Engine:
    migrate(url)
    return make_engine(url)


def get_engine(url: str) -> Engine:
    """A migrated engine, one per URL per process."""
    return _engine_for(url)


def session(url: str) -> Session:
    return Session(get_engine(url), expire_on_commit=False)
