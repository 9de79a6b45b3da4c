"""Database connection and migrations: the schema is always brought to Alembic head first."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    kwargs: dict = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    eng = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(eng, "connect", _sqlite_pragmas)
    return eng


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


MIGRATION_LOCK_KEY = 0x646F6E6D6967  # "donmig"


def migrate(url: str) -> None:
    """Upgrade to head; serialised, so two processes starting on a fresh database don't race."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        import fcntl

        lock_path = Path(u.database).with_name(Path(u.database).name + ".migrate-lock")
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            command.upgrade(alembic_config(url), "head")
        return
    if u.get_backend_name() == "postgresql":
        eng = create_engine(url)
        try:
            with eng.connect() as c:
                c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                try:
                    command.upgrade(alembic_config(url), "head")
                finally:
                    c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        finally:
            eng.dispose()
        return
    command.upgrade(alembic_config(url), "head")


@lru_cache(maxsize=16)
def _engine_for(url: str) -> Engine:
    migrate(url)
    return make_engine(url)


def get_engine(url: str) -> Engine:
    """A migrated engine, one per URL per process."""
    return _engine_for(url)


def session(url: str) -> Session:
    return Session(get_engine(url), expire_on_commit=False)
