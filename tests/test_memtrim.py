"""After a job the daemon gives the heap memory the job freed back to the system, so its resident
memory follows what it holds, not the largest job it ever ran (engine/app/memtrim.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from engine.app import daemon as daemon_mod
from engine.app.memtrim import _malloc_trim

pytestmark = pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim is not available")


def test_freed_heap_memory_goes_back_to_the_system() -> None:
    """In a fresh process: 180 MiB of large objects (glibc's heap, not Python's small-object arenas)
    allocated, something small allocated after them (so the freed space is not at the heap's top),
    freed: glibc keeps most of it; after the trim the resident memory is back near the start."""
    code = textwrap.dedent("""
        from engine.app.memtrim import release_free_memory
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        start = rss()
        big = [bytes(3000) for _ in range(60000)]
        keep = [bytes(100) for _ in range(100)]
        del big
        freed = rss()
        release_free_memory()
        print(start, freed, rss())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    start, freed, trimmed = map(float, out.split())
    assert freed - start > 20          # what glibc kept of the freed 180 MiB
    assert trimmed - start < 10


def _bare_daemon(engine) -> daemon_mod.Daemon:
    """A Daemon with only what ``run_job`` uses: no lease, a retrier that calls once."""
    import threading

    from engine.db import make_engine

    class Retrier:
        def call(self, name, fn):
            return fn()

    d = daemon_mod.Daemon.__new__(daemon_mod.Daemon)
    d.heartbeat, d.retrier, d._job, d._jobs_failing_since = None, Retrier(), None, None
    d.stop_event = threading.Event()
    d.engine = d.shared_engine = make_engine(engine) if isinstance(engine, str) else engine
    return d


def test_every_daemon_job_ends_with_a_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the job worked or failed."""
    trims: list[int] = []
    monkeypatch.setattr(daemon_mod, "release_free_memory", lambda: trims.append(1) or True)

    d = _bare_daemon("sqlite://")
    d.run_job("evaluate", lambda: None)

    def fails() -> None:
        raise RuntimeError("boom")

    d.run_job("deliver", fails)
    assert trims == [1, 1]


def _sqlite_memory_used() -> int:
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib.sqlite3_memory_used()


def test_a_jobs_prepared_statements_are_freed_after_it(tmp_path) -> None:
    """Python's sqlite3 keeps each pooled connection's last 128 statements, one per IN-list length:
    after a job the daemon has its SQLite connections replaced at their next use, so that memory
    does not stay (the two-year soak: 4 → 14 MiB). The data and the next job are unaffected; a
    connection another thread holds meanwhile keeps working, and every connection is closed
    properly (no "unclosed database" when it is collected)."""
    import gc
    import warnings

    from engine.db import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        c.exec_driver_sql("INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b')")

    def job() -> None:
        with eng.connect() as c:
            for n in range(200, 300):              # 100 statements of 200–299 placeholders
                sql = f"SELECT count(*) FROM t WHERE id IN ({','.join(['?'] * n)})"
                assert c.exec_driver_sql(sql, tuple(range(n))).scalar() == 2

    d = _bare_daemon(eng)
    gc.collect()                                   # what earlier tests left is not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        held = eng.connect()                       # another job's connection, in use throughout
        held.exec_driver_sql("SELECT v FROM t WHERE id = 1").scalar()
        before = _sqlite_memory_used()
        job()
        grown = _sqlite_memory_used() - before
        assert grown > 3 * 2**20                   # ≈45 KB a statement, all kept by the idle connection
        d.run_job("evaluate", job)
        with eng.connect() as c:                   # the next job: a fresh connection, the old one closed
            assert c.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
            assert _sqlite_memory_used() - before < grown / 4
        assert held.exec_driver_sql("SELECT v FROM t WHERE id = 2").scalar() == "b"
        held.close()
        d.run_job("deliver", job)
        eng.dispose()
        del held
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_job_ending_while_another_thread_reopens_its_connection_is_no_error(tmp_path) -> None:
    """A connection replaced at checkout (its generation is old) and a job ending on another
    thread just as the fresh one opens: the fresh connection is used. Before, the checkout found
    it "old" too, and SQLAlchemy, which retries once, failed with "This connection is closed" (the
    daemon's scheduler logged it and retried: seen in tests/test_daemon_run.py under load)."""
    from sqlalchemy import event

    from engine.db import make_engine, release_statements

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    with eng.connect() as c:
        c.exec_driver_sql("SELECT 1")
    assert release_statements(eng)                 # the pooled connection is now of an old generation
    event.listen(eng, "connect", lambda *_: release_statements(eng))    # a job ends as it reopens
    for _ in range(3):
        with eng.connect() as c:
            assert c.exec_driver_sql("SELECT 2").scalar() == 2
        release_statements(eng)


def test_an_in_memory_database_is_not_closed_after_a_job() -> None:
    """Closing its connections would lose it."""
    from engine.db import make_engine, release_statements

    eng = make_engine("sqlite://")
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (v TEXT)")
        c.exec_driver_sql("INSERT INTO t VALUES ('kept')")
    assert release_statements(eng) is False
    with eng.connect() as c:
        assert c.exec_driver_sql("SELECT v FROM t").scalar() == "kept"
