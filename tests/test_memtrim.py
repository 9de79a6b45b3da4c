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


def test_every_daemon_job_ends_with_a_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the job worked or failed."""
    trims: list[int] = []
    monkeypatch.setattr(daemon_mod, "release_free_memory", lambda: trims.append(1) or True)

    class Retrier:
        def call(self, name, fn):
            return fn()

    d = daemon_mod.Daemon.__new__(daemon_mod.Daemon)
    d.heartbeat, d.retrier, d._job, d._jobs_failing_since = None, Retrier(), None, None
    d.stop_event = __import__("threading").Event()
    d.run_job("evaluate", lambda: None)

    def fails() -> None:
        raise RuntimeError("boom")

    d.run_job("deliver", fails)
    assert trims == [1, 1]
