"""Recording reported KPI values: one at a time or from CSV, with the same all-or-nothing rule as
submissions (engine/submissions.py): every row is checked before any is written, and each bad row
is named by its line with the reason.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from sqlmodel import Session, select

from engine.clock import BadDate, parse_date
from engine.kpi.classify import Obs
from engine.kpi.loader import KpiPack
from engine.kpi.model import in_unit
from engine.kpi.state import KpiValueRow
from engine.state import AuditRow
from engine.submissions import ImportRejected, InputError, RowError, open_csv

_BOOL = {"có": 1.0, "co": 1.0, "đạt": 1.0, "dat": 1.0, "rồi": 1.0, "yes": 1.0, "true": 1.0,
         "không": 0.0, "khong": 0.0, "chưa": 0.0, "chua": 0.0, "no": 0.0, "false": 0.0}


class KpiValueIn(BaseModel):
    indicator: str = Field(min_length=1)
    value: float
    as_of: date
    source: str | None = None
    note: str | None = None


def parse_value(text: str, unit: str) -> float:
    """A number as people type it: 12.5, 12,5, 60%, or có/không for yes/no indicators.

    Thousands separators are refused (1.200 would silently become 1,2)."""
    raw = text.strip()
    if unit == "boolean" and raw.lower() in _BOOL:
        return _BOOL[raw.lower()]
    s = raw.replace(" ", "").replace("\u00a0", "")
    if s.endswith("%"):
        if unit not in ("percent", "percent_grdp"):
            raise InputError(f"“{raw}”: chỉ tiêu này không tính bằng %")
        s = s[:-1]
    if re.fullmatch(r"[-+]?\d+,\d+", s):
        s = s.replace(",", ".")
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", s):
        raise InputError(f"“{raw}” không phải một số (viết 12.5 hoặc 12,5; không dùng dấu phân cách hàng nghìn)")
    return float(s)


def check_value(kpi: KpiPack, item: KpiValueIn, today: date) -> None:
    """Raise InputError when the value cannot be right for its indicator's unit or date."""
    ind = kpi.indicators.get(item.indicator)
    if ind is None:
        known = ", ".join(sorted(kpi.indicators)[:6])
        raise InputError(f"không có chỉ tiêu “{item.indicator}” (ví dụ mã hợp lệ: {known}…; xem dondoc kpi report)")
    why = in_unit(ind.unit, item.value)
    if why:
        raise InputError(f"giá trị của “{ind.id}” không hợp lệ: {why}")
    if item.as_of > today:
        raise InputError(f"ngày số liệu {item.as_of:%d/%m/%Y} ở tương lai (hôm nay {today:%d/%m/%Y})")
    if item.as_of.year < 2000:
        raise InputError(f"ngày số liệu {item.as_of:%d/%m/%Y} không hợp lý")


def _record(session: Session, item: KpiValueIn, now: datetime, actor: str) -> KpiValueRow:
    previous = session.exec(select(KpiValueRow).where(KpiValueRow.indicator == item.indicator,
                                                      KpiValueRow.as_of == item.as_of,
                                                      KpiValueRow.active == True)).all()  # noqa: E712
    for old in previous:
        old.active = False
        session.add(old)
    session.flush()
    row = KpiValueRow(indicator=item.indicator, value=item.value, as_of=item.as_of, source=item.source, note=item.note,
                      replaces_id=previous[-1].id if previous else None, recorded_at=now, recorded_by=actor)
    session.add(row)
    detail: dict[str, object] = {"value": item.value, "as_of": item.as_of.isoformat(), "source": item.source}
    if previous:
        detail["replaces"] = [{"id": p.id, "value": p.value, "recorded_at": p.recorded_at.isoformat(),
                               "recorded_by": p.recorded_by} for p in previous]
    session.add(AuditRow(at=now, actor=actor, action="kpi_correct" if previous else "kpi_record", entity="kpi_value",
                         entity_id=f"{item.indicator}|{item.as_of.isoformat()}", detail=json.dumps(detail, ensure_ascii=False)))
    return row


def record_value(session: Session, kpi: KpiPack, item: KpiValueIn, now: datetime, actor: str = "cli") -> tuple[KpiValueRow, bool]:
    """Record one value; (row, True) when it corrected an earlier value for the same date."""
    check_value(kpi, item, now.date())
    row = _record(session, item, now, actor)
    session.commit()
    return row, row.replaces_id is not None


_COLUMNS = {
    "indicator": ("indicator", "chi_tieu", "chỉ tiêu", "ma_chi_tieu", "mã chỉ tiêu"),
    "value": ("value", "gia_tri", "giá trị"),
    "as_of": ("as_of", "date", "ngay_so_lieu", "ngày số liệu", "tinh_den_ngay", "tính đến ngày"),
    "source": ("source", "nguon", "nguồn"),
    "note": ("note", "ghi_chu", "ghi chú"),
}


def parse_values_csv(path: Path, kpi: KpiPack, today: date) -> list[tuple[int, KpiValueIn]]:
    """Validate every row; raise ImportRejected naming each bad row by its line number."""
    reader, cols = open_csv(path, _COLUMNS, ("indicator", "value", "as_of"), "indicator, value, as_of[, source, note]")
    errors: list[RowError] = []
    rows: list[tuple[int, KpiValueIn]] = []
    seen: dict[tuple[str, date], int] = {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue

        def get(name: str) -> str:
            i = cols.get(name)
            return values[i].strip() if i is not None and i < len(values) else ""

        try:
            ind, val, day_text = get("indicator"), get("value"), get("as_of")
            for label, v in (("indicator", ind), ("value", val), ("as_of", day_text)):
                if not v:
                    raise InputError(f"cột {label} để trống")
            if ind not in kpi.indicators:
                raise InputError(f"không có chỉ tiêu “{ind}”")
            item = KpiValueIn(indicator=ind, value=parse_value(val, kpi.indicators[ind].unit), as_of=parse_date(day_text),
                              source=get("source") or None, note=get("note") or None)
            check_value(kpi, item, today)
            key = (ind, item.as_of)
            if key in seen:
                raise InputError(f"trùng với dòng {seen[key]} (cùng chỉ tiêu, cùng ngày số liệu)")
            seen[key] = line
            rows.append((line, item))
        except (InputError, BadDate) as exc:
            errors.append(RowError(line, str(exc)))
    if errors:
        raise ImportRejected(str(path), errors)
    return rows


def import_values(session: Session, kpi: KpiPack, path: Path, now: datetime, actor: str = "import") -> int:
    """All rows or none: one transaction, committed only when every row is valid."""
    rows = parse_values_csv(path, kpi, now.date())
    try:
        for _, item in rows:
            _record(session, item, now, actor)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return len(rows)


def load_values(session: Session, indicators: list[str] | None = None) -> dict[str, list[Obs]]:
    """Active values per indicator, oldest first."""
    q = select(KpiValueRow).where(KpiValueRow.active == True)  # noqa: E712
    if indicators is not None:
        q = q.where(KpiValueRow.indicator.in_(indicators))
    out: dict[str, list[Obs]] = {}
    for r in session.exec(q.order_by(KpiValueRow.as_of, KpiValueRow.recorded_at)).all():
        out.setdefault(r.indicator, []).append(Obs(r.value, r.as_of, r.source, r.recorded_at))
    return out


def history(session: Session, indicator: str) -> list[KpiValueRow]:
    """Every row of one indicator, corrections included (for the audit view)."""
    return list(session.exec(select(KpiValueRow).where(KpiValueRow.indicator == indicator)
                             .order_by(KpiValueRow.as_of, KpiValueRow.recorded_at)).all())
