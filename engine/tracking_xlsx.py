"""The tracking sheet: the open reports written to Excel for the secretary to fill in, and read back.

Why a spreadsheet: a secretariat receives reports on paper and by mail and keeps its list in Excel.
`dondoc export tracking --xlsx` writes what is still open with the codes `dondoc submit` needs
(locked, so a filter or a slip of the keyboard cannot change them) and empty "Ngày nộp" and "Số ký
hiệu" columns (unlocked, the date column validated); `dondoc import submissions FILE.xlsx` reads
the filled sheet back (engine/sheet_rows.py) through the same all-or-nothing validation as a CSV
(engine/submissions.py).

This module only writes cells: it neither validates reports nor touches the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from engine.instances import ReportItem
from engine.limits import MAX_YEAR, MIN_YEAR, YEARS_VI

SHEET = "Theo dõi"
GUIDE = "Hướng dẫn"
DATE_FORMAT = "DD/MM/YYYY"

# (header, width); the last three are filled in by the secretary.
HEADERS: list[tuple[str, int]] = [("Đơn vị", 38), ("Mã đơn vị", 20), ("Báo cáo", 50), ("Mã báo cáo", 22),
                                  ("Kỳ", 22), ("Mã kỳ", 12), ("Hạn nộp", 12), ("Nơi nhận", 30),
                                  ("Ngày nộp", 13), ("Số ký hiệu", 20), ("Ghi chú", 30)]
FILL_IN = ("Ngày nộp", "Số ký hiệu", "Ghi chú")
TEXT_COLUMNS = ("Mã đơn vị", "Mã báo cáo", "Mã kỳ", "Số ký hiệu", "Ghi chú")   # "2026" stays text, "01/2026" no date


TrackingItem = ReportItem   # one open report: a row of the sheet


def write_tracking_xlsx(items: Sequence[TrackingItem], path: Path, title: str, window: tuple[date, date]) -> None:
    """One filterable sheet of open reports (codes locked, fill-in columns unlocked, no password),
    dates as dd/mm/yyyy, "Ngày nộp" validated to the supported years, and a guide sheet."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill, Protection
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    from engine.xlsx_safe import neutralise_formulas

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET
    col = {h: i for i, (h, _) in enumerate(HEADERS, start=1)}
    head_font, head_fill = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor="1F4E78")
    fill_fill = PatternFill("solid", fgColor="FFF2CC")      # the columns to fill in, pale yellow
    for c, (h, width) in enumerate(HEADERS, start=1):
        cell = ws.cell(row=1, column=c, value=h)
        cell.font, cell.fill = head_font, head_fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        ws.column_dimensions[get_column_letter(c)].width = width
    top = Alignment(wrap_text=True, vertical="top")
    unlocked = Protection(locked=False)
    for r, i in enumerate(items, start=2):
        values = [i.unit_name, i.unit, i.obligation_title, i.obligation, i.period_label, i.period, i.due,
                  i.recipient_name, None, None, None]
        for c, v in enumerate(values, start=1):
            cell = ws.cell(row=r, column=c, value=v)
            cell.alignment = top
        for h in TEXT_COLUMNS:
            ws.cell(row=r, column=col[h]).number_format = "@"
        for h in ("Hạn nộp", "Ngày nộp"):
            ws.cell(row=r, column=col[h]).number_format = DATE_FORMAT
        for h in FILL_IN:
            cell = ws.cell(row=r, column=col[h])
            cell.protection, cell.fill = unlocked, fill_fill
    last = max(len(items) + 1, 2)
    day_col = get_column_letter(col["Ngày nộp"])
    dv = DataValidation(type="date", operator="between", formula1=f"DATE({MIN_YEAR},1,1)",
                        formula2=f"DATE({MAX_YEAR},12,31)", allow_blank=True, showErrorMessage=True,
                        showInputMessage=True, errorTitle="Ngày nộp không hợp lệ",
                        error=f"Nhập ngày dạng dd/mm/yyyy, trong các năm {YEARS_VI}.",
                        promptTitle="Ngày nộp", prompt="Ngày đơn vị nộp báo cáo, dạng dd/mm/yyyy.")
    dv.add(f"{day_col}2:{day_col}{last}")
    ws.add_data_validation(dv)
    ws.freeze_panes = "C2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(HEADERS))}{last}"
    # Codes locked, fill-in columns open; no password: "Review › Unprotect Sheet" lifts it if needed.
    prot = ws.protection
    prot.sheet = True
    prot.autoFilter = prot.sort = prot.formatColumns = prot.formatRows = False

    g = wb.create_sheet(GUIDE)
    g.column_dimensions["A"].width = 110
    lines = [title,
             f"Báo cáo có hạn nộp từ {window[0]:%d/%m/%Y} đến {window[1]:%d/%m/%Y} chưa ghi nhận đã nộp hay được "
             f"miễn: {len(items)}.",
             f"Cách dùng: ở trang “{SHEET}”, ghi “Ngày nộp” (dd/mm/yyyy) và “Số ký hiệu” của báo cáo đã nhận; "
             "để trống dòng chưa nhận.",
             "Rồi nhập lại: dondoc import submissions TỆP.xlsx (sai một dòng thì không ghi dòng nào; lỗi ghi rõ trang "
             "và số dòng; nhập lại cùng tệp không ghi thêm gì).",
             "Các cột mã bị khóa để không sửa nhầm; lọc và sắp xếp vẫn dùng được. Không cần mật khẩu để bỏ khóa."]
    for n, text in enumerate(lines, start=1):
        g.cell(row=n, column=1, value=text).alignment = Alignment(wrap_text=True)
    g["A1"].font = Font(bold=True, size=13)
    neutralise_formulas(wb)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
