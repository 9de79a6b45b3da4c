"""Giving the heap memory a finished job freed back to the operating system.

glibc's allocator keeps what a process frees for later reuse and returns it to the system only at
the top of its heaps; the daemon's jobs (the instance sync, an evaluation pass, a delivery) peak
and then free tens of MiB, so without a trim the daemon's resident memory follows the largest job
it ever ran, not what it holds (benchmarks/bench_soak_years.py: "free but kept" grew 41 → 54 MiB
over two simulated years). ``malloc_trim(0)`` hands the free pages of every heap back (madvise),
in a few milliseconds. Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Callable


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap pages to the system; True when something was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
