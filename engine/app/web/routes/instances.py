"""/ky/{id}: one report of one unit for one period — its due date, status and history — where the
secretariat records, corrects or waives it; /tep/{id}: a stored report file, for the secretariat.

Recording goes through engine.app.records, which calls the CLI's own services (same validation,
same audit, the author being the logged-in account) and checks an attached file before anything is
written.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from engine.app import attachments, records
from engine.app.accounts import LoginSession
from engine.app.records import FormErrors, FormRejected
from engine.app.web.security import ctx, read_form, require_editor, require_login

router = APIRouter()

DONE = {
    "ghi-nhan": "Đã ghi nhận báo cáo.",
    "sua": "Đã sửa ghi nhận; lần ghi trước vẫn được giữ trong lịch sử bên dưới.",
    "mien": "Đã miễn nộp kỳ báo cáo này; đơn vị không còn bị nhắc.",
    "huy-mien": "Đã hủy miễn nộp; kỳ báo cáo được theo dõi lại như trước.",
}
NOT_FOUND = "Không có kỳ báo cáo này. Có thể đường dẫn đã cũ; tìm lại từ trang Ma trận hoặc trang của đơn vị."


def _page(request: Request, instance_id: int, *, status: int = 200, flash: str | None = None,
          warning: str | None = None, errors: FormErrors | None = None, which: str = "",
          values: dict[str, str] | None = None) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    page = records.instance_page(c.settings, pack, instance_id, today)
    if page is None:
        raise HTTPException(404, NOT_FOUND)
    current = page.current
    defaults = {"date": f"{current.submitted_on:%d/%m/%Y}" if current else "", "ref": (current.ref or "") if current else "",
                "note": (current.note or "") if current else "", "reason": ""}
    return request.app.state.pages.render(
        request, "instance.html", status_code=status, title=f"{page.title} – {page.period_label}", nav="matrix",
        today=today, flash=flash, warning=warning, p=page, errors=errors or FormErrors(), which=which,
        values={**defaults, **(values or {})}, accept=attachments.ACCEPT_ATTR, accepted_vi=attachments.ACCEPTED_VI,
        max_mb=c.settings.web.max_upload_mb)


@router.get("/ky/{instance_id}")
def instance_view(request: Request, instance_id: int, ok: str | None = None, tep: str | None = None,
                  login: LoginSession = Depends(require_login)) -> Response:
    warning = ("Báo cáo đã được ghi nhận nhưng tệp đính kèm chưa lưu được (lỗi ghi đĩa, đã ghi vào nhật ký). "
               "Gửi lại tệp bằng biểu mẫu sửa ghi nhận." if tep == "loi" else None)
    return _page(request, instance_id, flash=DONE.get(ok or ""), warning=warning)


def _text(form: FormData, name: str) -> str:
    v = form.get(name)
    return v if isinstance(v, str) else ""


async def _upload(form: FormData, limit: int) -> tuple[bytes, str | None, int] | None:
    """The attached file (None when the field was left empty). At most limit + 1 bytes are read:
    enough for the size check to refuse a bigger one without holding it in memory."""
    up = form.get("tep")
    if not isinstance(up, UploadFile):
        return None
    if not up.filename and not up.size:
        return None                                   # the browser's empty part: no file chosen
    data = await up.read(limit + 1)
    return data, up.filename, up.size if up.size is not None else len(data)


@router.post("/ky/{instance_id}/ghi-nhan")
async def record_submission(request: Request, instance_id: int,
                            login: LoginSession = Depends(require_editor)) -> Response:
    c = ctx(request)
    form = await read_form(request, max_files=1, max_part_mb=c.settings.web.max_upload_mb + 1)
    values = {k: _text(form, k) for k in ("date", "ref", "note")}
    try:
        file = await _upload(form, c.settings.web.max_upload_mb * 1024 * 1024)
        res = records.record(c.settings, c.pack(), instance_id, values["date"], values["ref"], values["note"], file,
                             c.now(), login.user.actor)
    except LookupError:
        raise HTTPException(404, NOT_FOUND) from None
    except FormRejected as exc:
        return _page(request, instance_id, status=400, errors=exc.errors, which="record", values=values)
    finally:
        await form.close()
    target = f"/ky/{instance_id}?ok={'sua' if res.corrected else 'ghi-nhan'}"
    return RedirectResponse(target + ("&tep=loi" if res.file_error else ""), status_code=303)


@router.post("/ky/{instance_id}/mien")
async def waive(request: Request, instance_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    return await _waive(request, instance_id, login, revoke=False)


@router.post("/ky/{instance_id}/huy-mien")
async def revoke_waiver(request: Request, instance_id: int, login: LoginSession = Depends(require_editor)) -> Response:
    return await _waive(request, instance_id, login, revoke=True)


async def _waive(request: Request, instance_id: int, login: LoginSession, revoke: bool) -> Response:
    form = await read_form(request)
    c = ctx(request)
    reason = _text(form, "reason")
    try:
        records.waive(c.settings, c.pack(), instance_id, reason, c.now(), login.user.actor, revoke=revoke)
    except LookupError:
        raise HTTPException(404, NOT_FOUND) from None
    except FormRejected as exc:
        return _page(request, instance_id, status=400, errors=exc.errors, which="unwaive" if revoke else "waive",
                     values={"reason": reason})
    return RedirectResponse(f"/ky/{instance_id}?ok={'huy-mien' if revoke else 'mien'}", status_code=303)


# ─── report files ──────────────────────────────────────────────────────────────────────────────
def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the real (Vietnamese) name RFC 5987-encoded."""
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename.encode("ascii", "replace").decode("ascii")).strip() or "tep"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/tep/{attachment_id}")
def download(request: Request, attachment_id: int, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    found = records.attachment_file(c.settings, attachment_id)
    if found is None:
        raise HTTPException(404, "Không tìm thấy tệp này (hoặc tệp đã bị xóa khỏi thư mục lưu).")
    row, path = found
    headers: dict[str, Any] = {"Content-Disposition": content_disposition(attachments.clean_name(row.filename))}
    return FileResponse(path, media_type=row.content_type, headers=headers)
