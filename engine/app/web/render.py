"""Jinja2 for the console's pages: autoescaped, Vietnamese filters, one environment per app.

Why not FastAPI's Jinja2Templates alone: the filters (dd/mm/yyyy, Vietnamese numbers, status words
and colours) are the same ones the CLI and the mails use (engine.vi), registered once here.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from engine import vi

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Status → CSS class (colour); the same key as engine.vi.REPORT_STATUS.
STATUS_CLASS = {"done_on_time": "s-ok", "done_late": "s-late-done", "in_progress": "s-open", "due_soon": "s-soon",
                "overdue": "s-overdue", "awaiting": "s-awaiting", "waived": "s-waived", "not_due": "s-none"}


def _date(d: date | datetime | None) -> str:
    if isinstance(d, datetime):
        return vi.fmt_moment(d)
    return vi.fmt_date(d)


def make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update({
        "d": _date, "day": vi.fmt_day, "moment": vi.fmt_moment, "num": vi.fmt_num, "percent": vi.fmt_percent,
        "status_vi": lambda s: vi.REPORT_STATUS.get(s, s), "status_class": lambda s: STATUS_CLASS.get(s, ""),
        "delivery_vi": lambda s: vi.DELIVERY_STATUS.get(s, s), "kpi_vi": lambda s: vi.KPI_STATUS.get(s, s),
        "confirmation_vi": lambda s: vi.CONFIRMATION_STATE.get(s, s), "weekday": vi.weekday,
    })
    env.globals.update({"REPORT_STATUS": vi.REPORT_STATUS})
    return env


class Pages:
    """Renders a template with what every page needs (the user, the CSRF token, the navigation)."""

    def __init__(self) -> None:
        self.env = make_env()

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        login = getattr(request.state, "login", None)
        base = {"request": request, "login": login, "user": login.user if login else None,
                "csrf": login.csrf if login else "", "nav": context.pop("nav", ""),
                "title": context.pop("title", "dondoc"), "flash": context.pop("flash", None),
                "today": context.pop("today", None)}
        html = self.env.get_template(name).render(**base, **context)
        return HTMLResponse(html, status_code=status_code)
