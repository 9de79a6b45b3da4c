"""Lịch (/lich): the days off and the make-up (worked) days of a year, as the deadlines count them.

Why a page: every due day rolls over holidays and swapped days (engine/workcalendar.py with the
overrides in calendar/), so the secretariat needs to see, and check against the government's
announcement, which days the installation treats as off and which weekend days as working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fastapi import APIRouter, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine import vi
from engine.app import services
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login
from engine.limits import MAX_YEAR, MIN_YEAR

router = APIRouter()


@dataclass(frozen=True)
class CalendarDay:
    day: date
    weekday: str
    working: bool          # a weekend day worked in exchange (làm bù)
    name: str


def _year(text: str | None, today: date) -> int:
    text = (text or "").strip()
    if not text:
        return today.year
    if not text.isdigit() or not (MIN_YEAR <= int(text) <= MAX_YEAR):
        raise HTTPException(400, f"Năm không hợp lệ: chọn một năm từ {MIN_YEAR} đến {MAX_YEAR}.")
    return int(text)


def _name(d: services.DayOff, rows: list[services.DayOff]) -> str:
    """The day's name; a bare "Làm bù" names the day off it makes up for, when the overrides say so."""
    if not d.working:
        return d.reason or "Ngày nghỉ"
    if d.reason and d.reason != "Làm bù":
        return d.reason
    shown = vi.fmt_date(d.day)
    for other in rows:
        if not other.working and shown in other.reason:
            return f"Làm bù cho ngày nghỉ {vi.fmt_date(other.day)}"
    return "Làm bù"


@router.get("/lich")
def calendar_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    today = c.today()
    year = _year(request.query_params.get("nam"), today)
    rows = services.days_off(c.settings, year)
    days = [CalendarDay(d.day, vi.weekday(d.day), d.working, _name(d, rows)) for d in rows]
    years = sorted({y for y in range(today.year - 2, today.year + 3) if MIN_YEAR <= y <= MAX_YEAR} | {year})
    return request.app.state.pages.render(
        request, "calendar.html", title=f"Lịch năm {year}", nav="calendar", today=today, year=year, days=days,
        years=years, off=sum(1 for d in days if not d.working), worked=sum(1 for d in days if d.working),
        prev=year - 1 if year > MIN_YEAR else None, next=year + 1 if year < MAX_YEAR else None)
