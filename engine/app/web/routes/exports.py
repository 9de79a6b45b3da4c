"""Xuất dữ liệu (/xuat): the tracking workbook, the status CSV and a unit's calendar (.ics), downloaded.

Why these three: the secretariat's own tool is Excel (the tracking workbook is filled in and
imported back; the CSV feeds their own sheets), and units want the deadlines in their calendar.
Each download is built by the same service as the CLI (`export tracking`, `status`, `calendar ics`);
nothing is recorded. The CSV is UTF-8 with a BOM (Excel shows Vietnamese only then) and every cell
that a spreadsheet would take for a formula is written as text (formula injection through a note
or a số ký hiệu typed by someone else).
"""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import date, timedelta
from pathlib import Path

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from engine import vi
from engine.app import services
from engine.app.accounts import LoginSession
from engine.app.web.security import ctx, require_login
from engine.rules_loader import RulePack
from engine.xlsx_safe import FORMULA_START

router = APIRouter()

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_HEADER = ["Báo cáo", "Kỳ", "Đơn vị", "Nơi nhận", "Hạn nộp", "Tình trạng", "Ngày nộp", "Số ký hiệu",
              "Số ngày làm việc quá hạn", "Số ngày làm việc còn lại"]


class ExportProblem(Exception):
    """A value in the form that cannot be used: the page is shown again with the reason."""

    def __init__(self, message: str):
        self.message = message


def csv_cell(value: object) -> str:
    """Text a spreadsheet shows as written: a leading = + - @ (or tab, CR) gets Excel's quote prefix."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _units(pack: RulePack) -> list[tuple[str, str]]:
    return sorted(((u.id, u.name) for u in pack.units.values()), key=lambda x: x[1].lower())


def _day(request: Request, name: str, what: str) -> date | None:
    text = (request.query_params.get(name) or "").strip()[:20]
    if not text:
        return None
    try:
        return services.parse_date(text, what)
    except services.ServiceError as exc:
        raise ExportProblem(exc.message) from None


def _window(request: Request) -> tuple[date | None, date | None]:
    start, end = _day(request, "tu", "Từ ngày"), _day(request, "den", "Đến ngày")
    if start and end and end < start:
        raise ExportProblem("“Đến ngày” phải sau “Từ ngày”.")
    return start, end


def _unit(request: Request, pack: RulePack, required: bool = False) -> str | None:
    uid = (request.query_params.get("don-vi") or "").strip() or None
    if uid is None and required:
        raise ExportProblem("Chọn một đơn vị để xuất lịch hạn nộp.")
    if uid is not None and uid not in pack.units:
        raise ExportProblem("Không có đơn vị này trong bộ quy tắc đang dùng; chọn lại trong danh sách.")
    return uid


def _download(body: bytes, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'})


def _page(request: Request, error: str | None = None, status: int = 200) -> Response:
    c = ctx(request)
    pack = c.pack()
    today = c.today()
    return request.app.state.pages.render(request, "exports.html", status_code=status, title="Xuất dữ liệu",
                                          nav="exports", today=today, units=_units(pack), error=error,
                                          today_text=vi.fmt_date(today))


@router.get("/xuat")
def exports_page(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    return _page(request)


@router.get("/xuat/theo-doi.xlsx")
def export_tracking(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    try:
        start, end = _window(request)
        unit = _unit(request, pack)
        with tempfile.TemporaryDirectory(prefix="dondoc-xuat-") as tmp:
            target = Path(tmp) / "theo-doi.xlsx"
            services.export_tracking(c.settings, pack, c.now(), target, start, end, unit)
            body = target.read_bytes()
    except (ExportProblem, services.InvalidInput) as exc:
        return _page(request, exc.message, 400)
    return _download(body, XLSX, f"dondoc-theo-doi-{c.today():%d-%m-%Y}.xlsx")


def status_csv(pack: RulePack, result: services.StatusResult) -> bytes:
    """The status lines with names (not ids), dd/mm/yyyy dates and the status words; UTF-8 with BOM."""
    def name(uid: str) -> str:
        u = pack.units.get(uid)
        return u.name if u is not None else uid

    def title(oid: str) -> str:
        ob = pack.obligations.get(oid)
        return ob.title if ob is not None else oid

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_HEADER)
    for line in result.lines:
        w.writerow([csv_cell(v) for v in (
            title(line.obligation), line.period_label, name(line.unit), name(line.recipient), vi.fmt_date(line.due),
            line.status_vi, vi.fmt_date(line.submitted_on) if line.submitted_on else "", line.ref or "",
            line.wd_late or "", line.wd_left or "")])
    return buf.getvalue().encode("utf-8-sig")


@router.get("/xuat/tinh-trang.csv")
def export_status(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    try:
        as_of = _day(request, "ngay", "Tính đến ngày") or c.today()
        unit = _unit(request, pack)
        result = services.status(c.settings, pack, c.now(), as_of=as_of, unit=unit)
    except (ExportProblem, services.InvalidInput) as exc:
        return _page(request, exc.message, 400)
    return _download(status_csv(pack, result), "text/csv; charset=utf-8", f"dondoc-tinh-trang-{as_of:%d-%m-%Y}.csv")


@router.get("/xuat/lich.ics")
def export_ics(request: Request, login: LoginSession = Depends(require_login)) -> Response:
    c = ctx(request)
    pack = c.pack()
    try:
        unit = _unit(request, pack, required=True)
        assert unit is not None
        start, end = _window(request)
        first = start or c.today()
        last = end or first + timedelta(days=366)
        if last < first:
            raise ExportProblem("“Đến ngày” phải sau “Từ ngày”.")
        with tempfile.TemporaryDirectory(prefix="dondoc-xuat-") as tmp:
            target = Path(tmp) / "lich.ics"
            services.export_ics(c.settings, pack, unit, first, last, c.now(), target)
            body = target.read_bytes()
    except (ExportProblem, services.InvalidInput) as exc:
        return _page(request, exc.message, 400)
    return _download(body, "text/calendar; charset=utf-8", f"dondoc-lich-{unit}.ics")
