"""/xn/{token}: a unit's page, opened from the "Báo đã gửi" link of its reminder (no account).

It lists exactly the link's reports (its unit's only) and takes a "đã gửi" per report: date
(dd/mm/yyyy), số ký hiệu, note, the report file. The form's CSRF token is derived from the link
(the unit has no session). A tampered, unknown, expired or revoked link gives a Vietnamese page
(403/410) and changes nothing; a report or file the link does not cover answers 404, whatever its
id (engine.app.confirmations checks scope and unit on every call).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from engine.app import attachments, confirmations
from engine.app.confirmations import LinkFailure, NotInLink
from engine.app.services import InvalidInput
from engine.app.web.security import ctx, read_form
from engine.clock import BadDate, parse_date

router = APIRouter()

# A form is a few fields and one file: a body larger than the file limit plus this is refused
# before it is read (Starlette spools file parts without a size limit of its own).
FORM_OVERHEAD = 256 * 1024


def _problem(request: Request, exc: LinkFailure) -> Response:
    return request.app.state.pages.render(request, "confirm_error.html", status_code=exc.status, title=exc.title,
                                          heading=exc.title, message=exc.message)


def _not_found(request: Request) -> Response:
    return request.app.state.pages.render(request, "confirm_error.html", status_code=404, title="Không tìm thấy",
                                          heading="Không tìm thấy",
                                          message="Đường dẫn của đơn vị không có báo cáo hoặc tệp này.")


def _page(request: Request, token: str, link: confirmations.Link, *, status: int = 200, flash: str | None = None,
          errors: dict[int, str] | None = None, values: dict[int, dict[str, str]] | None = None) -> Response:
    c = ctx(request)
    today = c.today()
    page = confirmations.unit_page(c.settings, c.pack(), link, today)
    return request.app.state.pages.render(
        request, "confirm.html", status_code=status, title=f"Báo đã gửi – {page.unit_name}", today=today,
        flash=flash, page=page, token=token, errors=errors or {}, values=values or {},
        default_day=f"{today:%d/%m/%Y}", stop_at=c.settings.web.stop_reminders_at)


@router.get("/xn/{token}")
def unit_page(request: Request, token: str, ok: int | None = None) -> Response:
    c = ctx(request)
    try:
        link = confirmations.resolve(c.settings, token, c.now())
    except LinkFailure as exc:
        return _problem(request, exc)
    flash = None
    if ok is not None and ok in link.instance_ids:
        flash = ("Đã ghi nhận đơn vị báo đã gửi. Văn phòng sẽ kiểm tra và xác nhận; nếu cần bổ sung, đơn vị sẽ "
                 "nhận thư kèm lý do.")
    return _page(request, token, link, flash=flash)


@router.post("/xn/{token}")
async def unit_confirm(request: Request, token: str) -> Response:
    c = ctx(request)
    now = c.now()
    try:
        link = confirmations.resolve(c.settings, token, now)
    except LinkFailure as exc:
        return _problem(request, exc)
    limit = c.settings.web.max_upload_mb * 1024 * 1024
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        return request.app.state.pages.render(
            request, "confirm_error.html", status_code=413, title="Tệp quá lớn", heading="Tệp quá lớn",
            message=f"Tệp gửi lên vượt quá {c.settings.web.max_upload_mb} MB nên chưa được ghi. Quay lại trang trước "
                    "và chọn tệp nhỏ hơn (hoặc nén tệp PDF).")
    form = await read_form(request, link.csrf, max_files=1, max_part_mb=1)
    try:
        raw_id = str(form.get("instance") or "")
        if not raw_id.isdigit():
            return _not_found(request)
        iid = int(raw_id)
        if iid not in link.instance_ids:
            return _not_found(request)
        values = {"ngay_gui": str(form.get("ngay_gui") or "").strip(), "so_ky_hieu": str(form.get("so_ky_hieu") or ""),
                  "ghi_chu": str(form.get("ghi_chu") or "")}
        upload = form.get("tep")
        file = None
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(limit + 1)
            file = (data, upload.filename)
        try:
            if not values["ngay_gui"]:
                raise InvalidInput("cần ghi ngày gửi (dd/mm/yyyy)")
            try:
                day = parse_date(values["ngay_gui"])
            except BadDate as exc:
                raise InvalidInput(f"ngày gửi: {exc}") from None
            if file is not None and not file[0]:
                raise InvalidInput(f"tệp “{attachments.clean_name(file[1])}” rỗng")
            confirmations.confirm(c.settings, token, iid, day, values["so_ky_hieu"], values["ghi_chu"], file, now)
        except LinkFailure as exc:
            return _problem(request, exc)
        except NotInLink:
            return _not_found(request)
        except InvalidInput as exc:
            msg = exc.message[:1].upper() + exc.message[1:]
            return _page(request, token, link, status=400, errors={iid: msg}, values={iid: values})
    finally:
        await form.close()
    return RedirectResponse(f"/xn/{quote(token, safe='')}?ok={iid}#m-{iid}", status_code=303)


@router.get("/xn/{token}/tep/{attachment_id}")
def unit_file(request: Request, token: str, attachment_id: int) -> Response:
    """A file the unit attached itself, to a report of this link; nothing else."""
    c = ctx(request)
    try:
        row = confirmations.attachment_for_link(c.settings, token, attachment_id, c.now())
    except LinkFailure as exc:
        return _problem(request, exc)
    except NotInLink:
        return _not_found(request)
    path = attachments.path_of(c.settings, row)
    if not path.is_file():
        return _not_found(request)
    return FileResponse(path, media_type=row.content_type, filename=row.filename, content_disposition_type="attachment")
