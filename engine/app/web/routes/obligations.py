"""Báo cáo: the list of reports and one report's page (the rule in words, this year's due days,
who submitted per period, linking to the matrix)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.app import browse
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login

router = APIRouter()


@router.get("/bao-cao")
def obligations_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    return request.app.state.pages.render(request, "obligations.html", title="Báo cáo", nav="obligations", today=today,
                                          items=browse.obligations_overview(c.settings, pack, today))


@router.get("/bao-cao/{obligation_id}")
def obligation_page(obligation_id: str, request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    year = browse.parse_year(request.query_params.get("nam"), today)
    detail = browse.obligation_detail(c.settings, pack, obligation_id, year, today)
    if detail is None:
        raise HTTPException(404, "Không có báo cáo này")
    return request.app.state.pages.render(request, "obligation.html", title=detail.title, nav="obligations",
                                          today=today, o=detail, years=browse.years_available(c.settings, today, year),
                                          order=browse.STATUS_ORDER)
