"""Tổng quan: counts per status today, this week's deadlines, who is late, on-time ranking.

Served from engine.app.pagecache: computed once per version of the data and shared by every
secretary who opens it until something is recorded, the rules change or the day turns."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from engine.app import dashboard, pagecache
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login

router = APIRouter()


@router.get("/")
def overview_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    secret_missing = c.settings.web.secret is None

    def data() -> dict[str, object]:
        return {"data": dashboard.overview(c.settings, pack, today, late_shown=dashboard.LATE_SHOWN,
                                           ranked_shown=dashboard.RANKED_SHOWN),
                "secret_missing": secret_missing}

    return pagecache.render(request, "overview.html", pack=pack, today=today, title="Tổng quan", nav="overview",
                            data=data, key=secret_missing)
