"""Rows of an Excel workbook for the all-or-nothing imports, read as a CSV is read.

Why apart from engine/tracking_xlsx.py (which writes the sheet): the imports (engine/submissions.py,
and through it engine/kpi/values.py) read workbooks, while the writer reuses engine.kpi.report's
formula guard; one module for both would make the core's imports go round in a circle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from engine.periods import fold


def _norm_header(text: object) -> str:
    return " ".join(fold(str(text)).replace("_", " ").split()) if text is not None else ""


def match_columns(header: Iterable[object], columns: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """{name: column index}: for each name its aliases in order of preference, compared without
    case, accents or underscores ("Mã kỳ" before "Kỳ", which holds the label)."""
    norm = [_norm_header(h) for h in header]
    out: dict[str, int] = {}
    for name, aliases in columns.items():
        for alias in aliases:
            a = _norm_header(alias)
            if a in norm:
                out[name] = norm.index(a)
                break
    return out


@dataclass
class SheetRows:
    """Rows of every sheet that has the required columns, as (sheet, row number, cells by name)."""
    rows: list[tuple[str, int, dict[str, object]]] = field(default_factory=list)
    problems: list[tuple[str | None, int, str]] = field(default_factory=list)   # (sheet, row, why)
    sheets: list[str] = field(default_factory=list)


HEADER_SEARCH = 10    # a header may sit under a few title rows


def read_rows(path: Path, columns: dict[str, tuple[str, ...]], required: tuple[str, ...],
              header_hint: str) -> SheetRows:
    """Every non-empty row under a header with the required columns, on every sheet that has one
    (the guide sheet and summaries are passed over). Row numbers are Excel's."""
    from zipfile import BadZipFile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    out = SheetRows()
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (BadZipFile, InvalidFileException, KeyError, ValueError, OSError):
        out.problems.append((None, 1, "tệp không phải bảng tính Excel .xlsx hợp lệ (tệp .xls cũ: mở bằng Excel rồi "
                                      "Lưu thành “Excel Workbook (.xlsx)”)"))
        return out
    try:
        for ws in wb.worksheets:
            cols: dict[str, int] | None = None
            for n, values in enumerate(ws.iter_rows(values_only=True), start=1):
                if cols is None:
                    found = match_columns(values, columns)
                    if all(r in found for r in required):
                        cols = found
                        out.sheets.append(ws.title)
                    elif n >= HEADER_SEARCH:
                        break
                    continue
                cells = {name: (values[i] if i < len(values) else None) for name, i in cols.items()}
                if any(_filled(v) for v in cells.values()):
                    out.rows.append((ws.title, n, cells))
    finally:
        wb.close()
    if not out.sheets:
        out.problems.append((None, 1, f"không trang nào có dòng tiêu đề đủ cột ({header_hint})"))
    return out


def _filled(v: object) -> bool:
    return v is not None and (not isinstance(v, str) or bool(v.strip()))


def cell_text(v: object) -> str:
    """A code or text cell as written: a number typed in a text column (123) without ".0"."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, datetime):
        return f"{v:%d/%m/%Y}" if v.time() == datetime.min.time() else f"{v:%d/%m/%Y %H:%M}"
    if isinstance(v, date):
        return f"{v:%d/%m/%Y}"
    return str(v).strip()


def cell_date(v: object) -> date | str:
    """A date cell as a date; anything else as text for engine.clock.parse_date (a typed
    "02/12/2026" that Excel kept as text). A bare number is Excel's day serial."""
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        from openpyxl.utils.datetime import from_excel

        try:
            d = from_excel(v)
        except (ValueError, OverflowError, TypeError):
            return str(v)
        return d.date() if isinstance(d, datetime) else d if isinstance(d, date) else str(v)
    return cell_text(v)
