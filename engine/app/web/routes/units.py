"""Đơn vị: the list (grouped by kind, with overdue, awaiting and on-time rate) and one unit's page
(its reports and periods with status, submissions, waivers, confirmations, files, mails, contacts).

Both are served from engine.app.pagecache (computed once per version of the data)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.app import browse, pagecache
from engine.app.accounts import LoginSession
from engine.app.config import Settings
from engine.app.web.security import ctx, require_login

router = APIRouter()


@router.get("/don-vi")
def units_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    return pagecache.render(request, "units.html", pack=pack, today=today, title="Đơn vị", nav="units",
                            data=lambda: {"groups": browse.units_overview(c.settings, pack, today)})


@router.get("/don-vi/{unit_id}")
def unit_page(unit_id: str, request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    year = browse.parse_year(request.query_params.get("nam"), today)
    unit = pack.units.get(unit_id)
    if unit is None:                    # a unit the rules no longer name (its name is in the database): rare
        detail = browse.unit_detail(c.settings, pack, unit_id, year, today)
        if detail is None:
            raise HTTPException(404, "Không có đơn vị này")
        return request.app.state.pages.render(request, "unit.html", title=detail.name, nav="units", today=today,
                                              **_unit_context(c.settings, detail, today, year))

    def data() -> dict[str, Any]:
        detail = browse.unit_detail(c.settings, pack, unit_id, year, today)
        assert detail is not None       # the rules name it
        return _unit_context(c.settings, detail, today, year)

    return pagecache.render(request, "unit.html", pack=pack, today=today, title=unit.name, nav="units", data=data,
                            key=browse.MAIL_LIMIT)


def _unit_context(settings: Settings, detail: browse.UnitDetail, today: date, year: int) -> dict[str, Any]:
    return {"u": detail, "years": browse.years_available(settings, today, year), "short": browse.STATUS_SHORT,
            "order": browse.STATUS_ORDER}
