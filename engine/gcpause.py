"""Pausing Python's cyclic garbage collector around bulk work that creates no reference cycles.

An evaluation pass creates hundreds of thousands of small tuples and dicts (items, events, notice
intents) that are freed by reference counting as soon as they are done with; none of them form a
cycle. The cyclic collector, though, is triggered by their number and each time walks every object
that survived so far: at 100,000 open instances that was 0.1–0.2 s of a 0.8 s evaluation, for
nothing (benchmarks/bench_evaluation_pass.py). Paused meanwhile, it runs when re-enabled.

Re-entrant and thread-safe: the collector is re-enabled only when the outermost pause ends, and
only if it was enabled when the first one began (someone else's ``gc.disable()`` is respected).
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
