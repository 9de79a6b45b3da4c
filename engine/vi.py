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
    "awaiting": "Đã gửi – chờ xác nhận",     # the unit confirmed from its link; the secretariat has not yet
    "waived": "Miễn",
}

# A unit's "đã gửi" from the web console (engine/app/confirmations.py).
CONFIRMATION_STATE = {
    "pending": "Chờ xác nhận",
    "accepted": "Đã chấp nhận",
    "returned": "Đã trả lại",
    "superseded": "Đã được thay (đơn vị báo lại hoặc Văn phòng ghi nhận trực tiếp)",
}

# Secretariat accounts of the web console.
ROLES = {
    "thu-ky": "Thư ký (ghi nhận, miễn, gửi lại, sửa quy tắc)",
    "lanh-dao": "Lãnh đạo (chỉ xem)",
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
    """"30/11/2026 17:00" in Vietnam's time ("–" for none). The database gives UTC back (naive on
    SQLite): a moment is always shown as the clock on the office wall read it."""
    if t is None:
        return "–"
    from zoneinfo import ZoneInfo
    from datetime import timezone

    aware = t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)
    return f"{aware.astimezone(ZoneInfo('Asia/Ho_Chi_Minh')):%d/%m/%Y %H:%M}"


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


_NUM_SPACES = (" ", "\u00a0", "\u202f", "\u2009")
_NUM_FORMS: tuple[tuple[str, str], ...] = (
    # (pattern, how to read it) — tried in order, first match wins; see parse_num.
    (r"\d+", "int"),                                          # 1200
    (r"[1-9]\d{0,2}(?:\.\d{3})+", "vi_groups"),               # 1.200, 1.200.000 (Vietnamese thousands)
    (r"[1-9]\d{0,2},\d{3}", "ambiguous"),                     # 1,200: 1,2 (vi) or 1200 (en)
    (r"[1-9]\d{0,2}(?:\.\d{3})+,\d+", "vi_groups_decimal"),   # 1.200,5
    (r"\d*,\d+", "vi_decimal"),                               # 1,5  0,125  ,5  1234,567
    (r"[1-9]\d{0,2}(?:,\d{3}){2,}", "en_groups"),             # 1,200,000
    (r"[1-9]\d{0,2}(?:,\d{3})+\.\d+", "en_groups_decimal"),   # 1,200.5
    (r"\d*\.\d+", "en_decimal"),                              # 1.5  12.50  0.200  1.2345
)


def parse_num(text: str, *, percent: bool = True) -> float:
    """A number as a Vietnamese user types it; ValueError with a Vietnamese message otherwise.

    Why one parser: "1.200" means one thousand two hundred to a Vietnamese secretary, and a
    figure read as 1,2 is wrong silently. The rule, in order:

    * "." followed by groups of exactly three digits is the Vietnamese thousands separator:
      "1.200" = 1200, "1.200.000" = 1200000 (a Vietnamese tool reads "1.200" the Vietnamese way);
    * "," is the Vietnamese decimal mark: "1,5" = 1.5, "1.200,5" = 1200.5, "0,125" = 0.125;
    * international forms are accepted where no Vietnamese reading exists: "1.5", "12.50", "0.200"
      (a dot not followed by a three-digit group, or after a leading 0), "1,200,000", "1,200.5";
    * AMBIGUOUS, refused: one comma followed by exactly three digits after 1–3 digits ("1,200",
      "12,345"): a decimal to a Vietnamese reader, thousands in an English-format spreadsheet.
      The message asks for "1200"/"1.200" or "1,2"/"1,2000".
    * spaces may separate thousands ("1 200 000"); a leading "+", "-" or "−" gives the sign;
      a trailing "%" ("12,5 %") is dropped (value stays in percent) unless percent=False.
    Anything else (letters, "1.2.3", "1e3", "12 5") is refused.
    """
    import math
    import re

    raw = text.strip()
    s = raw
    if s.endswith("%"):
        if not percent:
            raise ValueError(f"“{raw}”: giá trị này không tính bằng %")
        s = s[:-1].rstrip()
    sign = 1.0
    if s[:1] in ("+", "-", "−"):
        sign = -1.0 if s[0] in ("-", "−") else 1.0
        s = s[1:].lstrip()
    if any(sp in s for sp in _NUM_SPACES):
        grouped = s
        for sp in _NUM_SPACES:
            grouped = grouped.replace(sp, " ")
        if not re.fullmatch(r"[1-9]\d{0,2}(?: \d{3})+(?:,\d+)?", grouped):
            raise ValueError(f"“{raw}” không phải một số (viết ví dụ 1200, 1.200 hoặc 1,5)")
        s = grouped.replace(" ", "")
    for pattern, form in _NUM_FORMS:
        if re.fullmatch(pattern, s):
            break
    else:
        raise ValueError(f"“{raw}” không phải một số (viết ví dụ 1200, 1.200 hoặc 1,5)")
    if form == "ambiguous":
        whole, frac = s.split(",")
        short = frac.rstrip("0")
        dec = whole if not short else f"{whole},{short}" if short != frac else f"{whole},{frac}0"
        raise ValueError(f"“{raw}” không rõ nghĩa (số thập phân hay hàng nghìn?): nếu là {whole}{frac} thì viết "
                         f"{whole}{frac} hoặc {whole}.{frac}; nếu là số thập phân thì viết {dec}")
    if form in ("vi_groups", "vi_groups_decimal", "vi_decimal"):
        s = s.replace(".", "").replace(",", ".")
    elif form in ("en_groups", "en_groups_decimal"):
        s = s.replace(",", "")
    value = sign * float(s)
    if not math.isfinite(value):
        raise ValueError(f"“{raw}” quá lớn")
    return value
