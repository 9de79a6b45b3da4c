"""Where the due date is computed: each due rule names its day (rules_model: `unrolled`), then the
roll rule moves it off weekends and holidays.

The due moment is the end of the due day in the pack's time zone (Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from engine.periods import Period, periods_between
from engine.rules_model import Obligation
from engine.workcalendar import WorkingCalendar

END_OF_DAY = time(23, 59, 59)


@dataclass(frozen=True)
class Due:
    day: date           # the deadline (after rolling)
    unrolled: date      # the day the rule names, before the working-day roll


class DueCalculator:
    """Computes due days for obligations of one pack; memoises per (obligation, period).

    It is the `DueContext` the due rules see: the calendar, and other obligations' due days."""

    def __init__(self, obligations: dict[str, Obligation], calendar: WorkingCalendar):
        self.obligations = obligations
        self.calendar = calendar
        self._memo: dict[tuple[str, str], Due | None] = {}
        self._periods: dict[str, dict[str, Period]] = {}

    def _period_index(self, obligation_id: str, around: date) -> dict[str, Period]:
        idx = self._periods.setdefault(obligation_id, {})
        if not idx or around.year not in {p.end.year for p in idx.values()}:
            ob = self.obligations[obligation_id]
            for p in periods_between(ob, date(around.year - 1, 1, 1), date(around.year + 1, 12, 31)):
                idx[p.key] = p
        return idx

    def source_due(self, obligation_id: str, period: Period) -> date | None:
        source = self.obligations[obligation_id]
        src_period = self._period_index(source.id, period.end).get(period.key)
        src_due = self.due(source, src_period) if src_period else None
        return src_due.day if src_due else None

    def due(self, obligation: Obligation, period: Period) -> Due | None:
        """None when the rule cannot place this period (a compiled report with no source period)."""
        memo_key = (obligation.id, period.key)
        if memo_key in self._memo:
            return self._memo[memo_key]
        rule = obligation.due
        raw = rule.unrolled(period, self)
        result = None if raw is None else Due(self.calendar.roll(raw, rule.roll), raw)
        self._memo[memo_key] = result
        return result


def due_moment(day: date, tz: str) -> datetime:
    """End of the due day, local time: a report sent at 23:00 on the due day is on time."""
    return datetime.combine(day, END_OF_DAY, tzinfo=ZoneInfo(tz))
