"""The Vietnamese working calendar used by every due-date rule.

Statutory holidays come from the `holidays` package (country VN, pinned); each year's announced
swaps for civil servants come from data files in calendar/ (days off, make-up working Saturdays).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import RuleError, RulePackInvalid, display_path
from engine.limits import YEARS_VI, year_ok

Roll = Literal["forward", "backward", "keep"]


class CalendarDay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date: date
    reason: str = Field(min_length=1)


class CalendarYear(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days_off: list[CalendarDay] = []
    working_days: list[CalendarDay] = []


class CalendarOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    country: str = "VN"
    years: dict[int, CalendarYear] = {}


def load_overrides(directory: Path | None) -> CalendarOverrides:
    """Read calendar/<COUNTRY>.yaml; a missing directory means no overrides."""
    if directory is None:
        return CalendarOverrides()
    path = directory / "VN.yaml"
    if not path.exists():
        return CalendarOverrides()
    from engine.yamlsource import load_yaml, validation_errors  # local: avoid import cycle

    data, lines, errors = load_yaml(path)
    if errors:
        raise RulePackInvalid(errors)
    try:
        overrides = CalendarOverrides.model_validate(data or {})
    except Exception as exc:  # pydantic.ValidationError
        raise RulePackInvalid(validation_errors(exc, display_path(path), lines, ())) from None
    problems: list[RuleError] = []
    for year, block in overrides.years.items():
        if not year_ok(year):
            problems.append(RuleError(display_path(path), lines.get(("years", year)), f"years.{year}",
                                      f"năm {year} ngoài phạm vi hỗ trợ ({YEARS_VI})"))
            continue
        for kind, days in (("days_off", block.days_off), ("working_days", block.working_days)):
            for i, day in enumerate(days):
                if day.date.year != year:
                    problems.append(RuleError(display_path(path), lines.get(("years", year, kind, i)),
                                              f"years.{year}.{kind}[{i}]",
                                              f"ngày {day.date:%d/%m/%Y} không thuộc năm {year}"))
        clash = {d.date for d in block.days_off} & {d.date for d in block.working_days}
        for d in sorted(clash):
            problems.append(RuleError(display_path(path), lines.get(("years", year)), f"years.{year}",
                                      f"ngày {d:%d/%m/%Y} vừa là ngày nghỉ vừa là ngày làm bù"))
    if problems:
        raise RulePackInvalid(problems)
    return overrides


class WorkingCalendar:
    """Answers "is this a working day?" and moves dates by working days."""

    def __init__(self, overrides: CalendarOverrides | None = None, country: str = "VN"):
        self.overrides = overrides or CalendarOverrides()
        # Names in Vietnamese whatever the server's locale (the package otherwise follows LANG/LANGUAGE);
        # its vi strings already write dates dd/mm/yyyy: "Ngày nghỉ (thay cho ngày 22/08/2026)".
        import holidays   # here, not at the top: ~60 ms that a cached pack never needs (engine/app/packcache.py)

        self._holidays = holidays.country_holidays(country, language="vi")
        self._extra_off: dict[date, str] = {}
        self._extra_work: dict[date, str] = {}
        for block in self.overrides.years.values():
            for d in block.days_off:
                self._extra_off[d.date] = d.reason
            for d in block.working_days:
                self._extra_work[d.date] = d.reason
        self._cache: dict[date, bool] = {}
        self._cum: dict[int, list[int]] = {}

    def holiday_name(self, day: date) -> str | None:
        if day in self._extra_off:
            return self._extra_off[day]
        return self._holidays.get(day)

    def is_working_day(self, day: date) -> bool:
        hit = self._cache.get(day)
        if hit is not None:
            return hit
        if day in self._extra_work:
            result = True
        elif day in self._extra_off:
            result = False
        else:
            # The package knows statutory holidays, observed days and the weekend days it
            # lists as make-up working days.
            result = self._holidays.is_working_day(day)
        self._cache[day] = result
        return result

    def roll(self, day: date, how: Roll) -> date:
        """Bộ luật Dân sự 2015 Điều 148: a limit ending on a day off ends on the next working day."""
        if how == "keep":
            return day
        step = timedelta(days=1 if how == "forward" else -1)
        while not self.is_working_day(day):
            day += step
        return day

    def add_working_days(self, day: date, n: int) -> date:
        """The n-th working day after `day` (n >= 1), or before it for n < 0; n == 0 returns day."""
        step = timedelta(days=1 if n >= 0 else -1)
        remaining = abs(n)
        while remaining:
            day += step
            if self.is_working_day(day):
                remaining -= 1
        return day

    def _year_counts(self, year: int) -> list[int]:
        """counts[i]: working days from 1 January through the i-th day of ``year`` (0-based),
        computed once per year: a status table or a page counts thousands of spans."""
        got = self._cum.get(year)
        if got is None:
            got, n, day = [], 0, date(year, 1, 1)
            while day.year == year:
                n += self.is_working_day(day)
                got.append(n)
                day += timedelta(days=1)
            self._cum[year] = got
        return got

    def _through(self, day: date) -> int:
        """Working days from 1 January of ``day``'s year through ``day``."""
        return self._year_counts(day.year)[day.timetuple().tm_yday - 1]

    def working_days_between(self, start: date, end: date) -> int:
        """Signed count of working days in (start, end]; negative when end < start."""
        if end == start:
            return 0
        sign = 1 if end > start else -1
        lo, hi = (start, end) if sign > 0 else (end, start)
        count = self._through(hi) - self._through(lo)
        for year in range(lo.year, hi.year):
            count += self._year_counts(year)[-1]
        return sign * count
