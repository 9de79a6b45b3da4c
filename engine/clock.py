"""Time is an input: every command takes a simulated "now" (--now or DONDOC_NOW)."""

from __future__ import annotations

import os
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class BadDate(ValueError):
    pass


def parse_date(text: str) -> date:
    """yyyy-mm-dd (scripts) or dd/mm/yyyy (as Vietnamese offices write dates)."""
    text = text.strip()
    try:
        if "/" in text:
            return datetime.strptime(text, "%d/%m/%Y").date()
        return date.fromisoformat(text)
    except ValueError:
        raise BadDate(f"“{text}” không phải ngày hợp lệ; viết dạng yyyy-mm-dd hoặc dd/mm/yyyy") from None


def parse_moment(text: str) -> datetime:
    """A date means the start of that day; a naive time is Asia/Ho_Chi_Minh."""
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            dt = datetime.combine(parse_date(text), time(0, 0))
        except BadDate:
            raise BadDate(f"“{text}” không phải thời điểm hợp lệ; viết dạng yyyy-mm-dd hoặc yyyy-mm-ddTHH:MM") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt


def now(override: str | None = None) -> datetime:
    text = override or os.environ.get("DONDOC_NOW")
    if text:
        return parse_moment(text)
    return datetime.now(TZ)
