"""Vietnamese words and forms shown to users, in one place: status names, weekdays, dates, numbers.

Every front end (CLI, mail, web) takes its wording from here, so a secretary reads the same word
for the same thing everywhere (the categories of Vietnamese task-tracking systems).
"""

from __future__ import annotations

from datetime import date, datetime

WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")

# Report instances (engine/status.py computes them).
REPORT_STATUS = {
    "done_on_time": "Hoàn thành đúng hạn",
    "done_late": "Hoàn thành quá hạn",
    "in_progress": "Đang thực hiện trong hạn",
    "due_soon": "Sắp đến hạn",
    "overdue": "Chưa hoàn thành – quá hạn",
    "waived": "Miễn",
}

# KPI targets (engine/kpi/classify.py computes them).
KPI_STATUS = {
    "met": "Đạt",
    "on_track": "Đúng tiến độ",
    "behind": "Chậm tiến độ",
    "missed": "Không đạt",
    "no_data": "Thiếu số liệu",
    "not_due": "Chưa đến kỳ đánh giá",
}

# Digests in the outbox (notifications/ moves them through these states).
DELIVERY_STATUS = {
    "pending": "Chờ gửi",
    "retry": "Chờ gửi lại",
    "sent": "Đã gửi",
    "failed": "Gửi không thành công",
    "dropped": "Không gửi (không còn cần nhắc)",
}

# Kinds of notice (the reminder ladder of a policy).
NOTICE_KIND = {
    "reminder": "Nhắc trước hạn",
    "due_today": "Đến hạn hôm nay",
    "overdue": "Quá hạn",
    "escalation": "Báo cáo cấp trên",
    "kpi": "Chỉ tiêu chậm tiến độ",
    "kpi_summary": "Tổng hợp chỉ tiêu",
}


def weekday(d: date) -> str:
    return WEEKDAYS[d.weekday()]


def fmt_date(d: date | None) -> str:
    """dd/mm/yyyy ("–" for no date)."""
    return f"{d:%d/%m/%Y}" if d is not None else "–"


def fmt_day(d: date | None) -> str:
    """"Thứ Hai, 30/11/2026" ("–" for no date)."""
    return f"{WEEKDAYS[d.weekday()]}, {d:%d/%m/%Y}" if d is not None else "–"


def fmt_moment(t: datetime | None) -> str:
    """"30/11/2026 17:00" ("–" for none)."""
    return f"{t:%d/%m/%Y %H:%M}" if t is not None else "–"


def fmt_num(v: float | None, decimals: int = 2) -> str:
    """Vietnamese number form: 1.200; 0,75; 12,5 ("–" for none)."""
    if v is None:
        return "–"
    if float(v).is_integer():
        return f"{int(v):,}".replace(",", ".")
    text = f"{v:,.{decimals}f}".rstrip("0").rstrip(".")
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def fmt_percent(rate: float | None) -> str:
    """0.875 → "87,5 %" ("–" for none)."""
    return "–" if rate is None else f"{fmt_num(rate * 100, 1)} %"
