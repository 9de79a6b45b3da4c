"""Ma trận: units × periods of one report (or a group of reports), each cell coloured by status
and linked to the instance; ``?tinh-trang=`` (the overview's count links) lists the instances
behind one count instead.

Query (all optional): ``bao-cao`` one report (absent: the report with the most units; empty: all),
``noi-nhan`` the reports sent to one unit, ``loai`` units of one kind, ``nam`` the year,
``tinh-trang`` a status key, ``trang`` the page of units (browse.PAGE_UNITS a page). ``obligation``
is accepted for ``bao-cao`` (benchmarks/bench_web.py).

Served from engine.app.pagecache: computed once per version of the data (the query is in the key).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from starlette.requests import Request
from starlette.responses import Response

from engine.app import browse, pagecache
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login

router = APIRouter()


def _param(request: Request, *names: str) -> str | None:
    """The first of ``names`` present in the query (stripped; "" means "all"); None when absent."""
    for name in names:
        if name in request.query_params:
            return request.query_params[name].strip()
    return None


@router.get("/ma-tran")
def matrix_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    year = browse.parse_year(_param(request, "nam"), today)
    obligation = _param(request, "bao-cao", "obligation")
    recipient = _param(request, "noi-nhan") or None
    kind = _param(request, "loai") or None
    status = _param(request, "tinh-trang") or None
    if obligation is None and recipient is None and kind is None and status is None:
        obligation = browse.default_obligation(pack, year)
    page = _param(request, "trang") or "1"
    q = browse.MatrixQuery(year, obligation or None, recipient, kind, status, int(page) if page.isdigit() and len(page) < 7 else 1)
    problem = browse.check_query(pack, q)
    if problem:
        raise HTTPException(*problem)

    def data() -> dict[str, Any]:
        common = dict(q=q, options=browse.filter_options(c.settings, pack, today, year), short=browse.STATUS_SHORT,
                      order=browse.STATUS_ORDER)
        if status is not None:
            return dict(common, listing=browse.status_list(c.settings, pack, today, q), m=None)
        m = browse.matrix(c.settings, pack, today, q)
        pages = [(n, _with_page(request, n)) for n in range(1, m.pages + 1)] if m.pages > 1 else []
        return dict(common, listing=None, m=m, page_links=pages)

    return pagecache.render(request, "matrix.html", pack=pack, today=today, title="Ma trận báo cáo", nav="matrix",
                            data=data, key=(browse.LIST_LIMIT, browse.PAGE_UNITS))


def _with_page(request: Request, n: int) -> str:
    """This matrix's address on page ``n`` (the other choices kept)."""
    url = request.url.include_query_params(trang=n)
    return f"{url.path}?{url.query}"
