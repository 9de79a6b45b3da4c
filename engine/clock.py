"""Time is an input: every command takes a simulated "now" (--now or DONDOC_NOW).

Every date a user types goes through parse_date / parse_moment, so the supported years
(engine/limits.py) are checked once, here: 0001-01-01 or 9999-12-31 is a typo, and past the
range the period arithmetic would overflow (year 10000) instead of answering.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

from engine.limits import YEARS_VI, year_ok

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def aware(t: datetime) -> datetime:
    """A moment read back from the database: SQLite gives UTC without a zone, so a naive moment is
    UTC, never the server's local time."""
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def local(t: datetime) -> datetime:
    """A moment in Vietnam's time, as people read it."""
    return aware(t).astimezone(TZ)


class BadDate(ValueError):
    """A date, moment or year a user typed that dondoc cannot use; str() is the Vietnamese message."""


class YearOutOfRange(BadDate):
    """A real date, but outside the supported years (limits.MIN_YEAR..MAX_YEAR)."""


def check_year(year: int, text: str | None = None) -> int:
    """The year itself, or BadDate naming the supported range (e.g. `calendar days-off --year 0`)."""
    if not year_ok(year):
        shown = f"“{text}”: năm {year}" if text is not None else f"năm {year}"
        raise YearOutOfRange(f"{shown} ngoài phạm vi hỗ trợ; dondoc chỉ tính các năm {YEARS_VI}")
    return year


def parse_date(text: str) -> date:
    """yyyy-mm-dd (scripts) or dd/mm/yyyy (as Vietnamese offices write dates), in the supported years."""
    text = text.strip()
    try:
        if "/" in text:
            d = datetime.strptime(text, "%d/%m/%Y").date()
        else:
            d = date.fromisoformat(text)
    except ValueError:
        raise BadDate(f"“{text}” không phải ngày hợp lệ; viết dạng yyyy-mm-dd hoặc dd/mm/yyyy") from None
    check_year(d.year, text)
    return d


def parse_moment(text: str) -> datetime:
    """A date means the start of that day; a naive time is Asia/Ho_Chi_Minh."""
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            dt = datetime.combine(parse_date(text), time(0, 0))
        except YearOutOfRange:
            raise
        except BadDate:
            raise BadDate(f"“{text}” không phải thời điểm hợp lệ; viết dạng yyyy-mm-dd hoặc yyyy-mm-ddTHH:MM") from None
    check_year(dt.year, text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt


def now(override: str | None = None) -> datetime:
    text = override or os.environ.get("DONDOC_NOW")
    if text:
        return parse_moment(text)
    return datetime.now(TZ)
