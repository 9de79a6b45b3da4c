"""Tổng quan: counts per status today, this week's deadlines, who is late, on-time ranking."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from engine.app import dashboard
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login

router = APIRouter()


@router.get("/")
def overview_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    data = dashboard.overview(c.settings, pack, today)
    return request.app.state.pages.render(request, "overview.html", title="Tổng quan", nav="overview", today=today,
                                          data=data, secret_missing=c.settings.web.secret is None)
