"""A clock that can run fast: the daemon lives through weeks of deadlines in seconds for tests and demos.

`Clock.now()` is the one source of "now" for a daemon process; with rate 1 and no start it is the
wall clock. APScheduler 3 reads `datetime.now` directly, so `install()` points its modules at us.
"""

from __future__ import annotations

import time as _time
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class Clock:
    def __init__(self, start: datetime | None = None, rate: float = 1.0):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._t0 = _time.monotonic()
        if start is None and rate != 1.0:
            # A fast clock without a start runs from the moment it was made (fixed once: re-reading
            # the wall clock on every call would add real time to scaled time, i.e. run at rate + 1).
            start = datetime.now(TZ)
        self._start = start.astimezone(TZ) if start else None

    @property
    def simulated(self) -> bool:
        return self._start is not None or self.rate != 1.0

    def now(self) -> datetime:
        if self._start is None:
            return datetime.now(TZ)
        return self._start + timedelta(seconds=(_time.monotonic() - self._t0) * self.rate)

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds / self.rate


class _ClockedDatetime(datetime):
    """`datetime` whose now() follows the installed Clock (only inside APScheduler)."""
    clock: Clock | None = None

    @classmethod
    def now(cls, tz: tzinfo | None = None):  # type: ignore[override]
        if cls.clock is None:
            return datetime.now(tz)
        n = cls.clock.now()
        return n.astimezone(tz) if tz else n.replace(tzinfo=None)


def install(clock: Clock) -> None:
    import apscheduler.executors.base as ex_base
    import apscheduler.schedulers.base as sch_base

    _ClockedDatetime.clock = clock
    sch_base.datetime = _ClockedDatetime  # type: ignore[attr-defined]
    ex_base.datetime = _ClockedDatetime   # type: ignore[attr-defined]
