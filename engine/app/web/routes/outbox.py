"""/hop-thu-di: what was sent to whom and when, its delivery state and why it failed; a secretary
puts a failed one back in the queue (services.outbox_retry, the same as `dondoc outbox retry`)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.app import records
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, read_form, require_editor, require_login

router = APIRouter()

DONE = {"gui-lai": "Đã đưa thư trở lại hàng chờ gửi; thư sẽ được gửi trong lần gửi tới (trong khung giờ gửi thư)."}


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else 1


def _query(state: str, unit: str | None, page: int, **extra: str) -> str:
    q = {k: v for k, v in (("trang-thai", state), ("don-vi", unit or ""), ("trang", str(page) if page > 1 else ""))
         if v}
    q.update(extra)
    return ("?" + urlencode(q)) if q else ""


def _render(request: Request, state: str, unit: str | None, page: int, *, status: int = 200,
            flash: str | None = None, error: str | None = None) -> Response:
    c = ctx(request)
    pack = c.pack()
    data = records.outbox_page(c.settings, pack, state, unit or None, page)
    pager = {"prev": _query(data.state, data.unit, data.page - 1) if data.page > 1 else None,
             "next": _query(data.state, data.unit, data.page + 1) if data.page < data.pages else None}
    return request.app.state.pages.render(
        request, "outbox.html", status_code=status, title="Thư đã gửi", nav="outbox", today=c.today(), flash=flash,
        error=error, o=data, filters=records.OUTBOX_FILTERS, pager=pager, per_page=records.OUTBOX_PAGE)


@router.get("/hop-thu-di")
def outbox_view(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    qp = request.query_params
    return _render(request, qp.get("trang-thai", ""), qp.get("don-vi") or None, _page_number(qp.get("trang")),
                   flash=DONE.get(qp.get("ok", "")))


@router.post("/hop-thu-di/{delivery_id}/gui-lai")
async def retry(request: Request, delivery_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    c = ctx(request)
    state = str(form.get("trang-thai") or "")
    state = state if state in records.OUTBOX_FILTERS else ""
    unit = str(form.get("don-vi") or "")[:80] or None
    page = _page_number(str(form.get("trang") or ""))
    problem = records.retry(c.settings, delivery_id, c.now(), login.user.actor)
    if problem is not None:
        return _render(request, state, unit, page, status=400, error=problem)
    return RedirectResponse("/hop-thu-di" + _query(state, unit, page, ok="gui-lai"), status_code=303)
