"""Đơn vị: the list (grouped by kind, with overdue, awaiting and on-time rate) and one unit's page
(its reports and periods with status, submissions, waivers, confirmations, files, mails, contacts)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.app import browse
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login

router = APIRouter()


@router.get("/don-vi")
def units_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    return request.app.state.pages.render(request, "units.html", title="Đơn vị", nav="units", today=today,
                                          groups=browse.units_overview(c.settings, pack, today))


@router.get("/don-vi/{unit_id}")
def unit_page(unit_id: str, request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    year = browse.parse_year(request.query_params.get("nam"), today)
    detail = browse.unit_detail(c.settings, pack, unit_id, year, today)
    if detail is None:
        raise HTTPException(404, "Không có đơn vị này")
    return request.app.state.pages.render(request, "unit.html", title=detail.name, nav="units", today=today, u=detail,
                                          years=browse.years_available(c.settings, today, year),
                                          short=browse.STATUS_SHORT, order=browse.STATUS_ORDER)
