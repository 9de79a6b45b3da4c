"""/xac-nhan: what units said they sent, waiting for the secretariat: accept (the submission is
recorded with the unit's date) or return with a reason (mailed to the unit with a fresh link).
The files it links to are served by /tep/{id} (routes/instances.py, secretariat only); a unit reads
its own through its link (routes/confirm.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.app import confirmations
from engine.app.accounts import LoginSession
from engine.app.services import InvalidInput
from engine.app.web.security import ctx, read_form, require_editor, require_login

router = APIRouter()

DONE = {"chap-nhan": "Đã chấp nhận: báo cáo được ghi nhận với ngày đơn vị đã gửi.",
        "tra-lai": "Đã trả lại: đơn vị sẽ nhận thư kèm lý do và đường dẫn mới trong lần gửi thư tới."}


def _queue_page(request: Request, *, status: int = 200, flash: str | None = None, error: str | None = None,
                error_id: int | None = None, reason: str = "") -> Response:
    c = ctx(request)
    items = confirmations.queue(c.settings, c.pack())
    return request.app.state.pages.render(
        request, "confirmations.html", status_code=status, title="Chờ xác nhận", nav="confirmations", today=c.today(),
        flash=flash, items=items, error=error, error_id=error_id, reason=reason,
        links_on=confirmations.enabled(c.settings), stop_at=c.settings.web.stop_reminders_at)


@router.get("/xac-nhan")
def queue_page(request: Request, ok: str | None = None, login: LoginSession = Depends(require_login)) -> Response:
    return _queue_page(request, flash=DONE.get(ok or ""))


@router.post("/xac-nhan/{confirmation_id}/chap-nhan")
async def accept(request: Request, confirmation_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    await read_form(request)
    c = ctx(request)
    try:
        confirmations.accept(c.settings, c.pack(), confirmation_id, c.now(), login.user.actor)
    except InvalidInput as exc:
        return _queue_page(request, status=400, error=_sentence(exc.message), error_id=confirmation_id)
    return RedirectResponse("/xac-nhan?ok=chap-nhan", status_code=303)


@router.post("/xac-nhan/{confirmation_id}/tra-lai")
async def send_back(request: Request, confirmation_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    form = await read_form(request)
    reason = str(form.get("ly_do") or "")
    c = ctx(request)
    try:
        confirmations.return_(c.settings, confirmation_id, reason, c.now(), login.user.actor)
    except InvalidInput as exc:
        return _queue_page(request, status=400, error=_sentence(exc.message), error_id=confirmation_id, reason=reason)
    return RedirectResponse("/xac-nhan?ok=tra-lai", status_code=303)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")
