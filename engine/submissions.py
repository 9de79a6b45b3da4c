"""Recording what units submitted (or were excused from), with an audit trail.

CSV imports are all-or-nothing: every row is validated before any is written.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from sqlmodel import Session, select

from engine.clock import BadDate, parse_date
from engine.instances import generate_instances
from engine.periods import period_for_key
from engine.rules_loader import RulePack
from engine.state import AuditRow, InstanceRow, SubmissionRow, WaiverRow


class InputError(ValueError):
    """A request a secretary can fix: the message says what and how."""


class SubmissionIn(BaseModel):
    obligation: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    period: str = Field(min_length=1)
    submitted_on: date
    ref: str | None = None
    note: str | None = None


def resolve_instance(session: Session, pack: RulePack, obligation: str, unit: str, period: str) -> InstanceRow:
    """The instance row, created from the rules if it predates sync (e.g. before tracking start)."""
    if obligation not in pack.obligations:
        raise InputError(f"không có nghĩa vụ báo cáo “{obligation}” trong bộ quy tắc")
    if unit not in pack.units:
        raise InputError(f"không có đơn vị “{unit}” trong bộ quy tắc")
    row = session.exec(select(InstanceRow).where(InstanceRow.obligation == obligation, InstanceRow.unit == unit,
                                                 InstanceRow.period == period)).first()
    if row is not None:
        return row
    ob = pack.obligations[obligation]
    p = period_for_key(ob, period)
    if p is None:
        raise InputError(f"kỳ “{period}” không hợp lệ cho “{obligation}” ({_period_hint(ob.recurrence.freq)})")
    calc = pack.due_calculator()
    d = calc.due(ob, p)
    if d is None:
        raise InputError(f"không tính được hạn nộp của “{obligation}” kỳ {p.label}")
    match = [i for i in generate_instances(pack, d.day, d.day) if i.key == (obligation, unit, period)]
    if not match:
        owners = sorted({i.unit for i in generate_instances(pack, d.day, d.day) if i.obligation == obligation and i.period == period})
        hint = f"; đơn vị phải nộp kỳ này: {', '.join(owners[:8])}{'…' if len(owners) > 8 else ''}" if owners else ""
        raise InputError(f"đơn vị “{unit}” không phải nộp “{obligation}” kỳ {p.label}{hint}")
    inst = match[0]
    now = datetime.now(inst.due_at.tzinfo)
    row = InstanceRow(obligation=obligation, unit=unit, period=period, period_label=inst.period_label,
                      period_start=inst.period_start, period_end=inst.period_end, cutoff_start=inst.cutoff_start,
                      cutoff_end=inst.cutoff_end, due=inst.due, due_at=inst.due_at, recipient=inst.recipient,
                      inherited_from=",".join(inst.inherited_from), rules_version=pack.version,
                      created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def _period_hint(freq: str) -> str:
    return {"monthly": "dạng 2026-01", "quarterly": "dạng 2026-Q1", "half_yearly": "dạng 2026-H1",
            "yearly": "dạng 2026", "once": "dùng once"}.get(freq, "xem dondoc deadlines --json")


def _record(session: Session, row: InstanceRow, sub: SubmissionIn, now: datetime, actor: str) -> SubmissionRow:
    previous = session.exec(select(SubmissionRow).where(SubmissionRow.instance_id == row.id,
                                                        SubmissionRow.active == True)).all()  # noqa: E712
    for old in previous:
        old.active = False
        session.add(old)
    new = SubmissionRow(instance_id=row.id, submitted_on=sub.submitted_on, ref=sub.ref, note=sub.note,
                        recorded_at=now, recorded_by=actor)
    session.add(new)
    row.submitted_on, row.submission_ref = sub.submitted_on, sub.ref
    row.closed = True
    row.updated_at = now
    session.add(row)
    detail = {"submitted_on": sub.submitted_on.isoformat(), "ref": sub.ref, "note": sub.note}
    if previous:
        detail["replaces"] = [{"submitted_on": p.submitted_on.isoformat(), "ref": p.ref} for p in previous]
    session.add(AuditRow(at=now, actor=actor, action="correct" if previous else "submit", entity="instance",
                         entity_id=f"{row.obligation}|{row.unit}|{row.period}", detail=json.dumps(detail, ensure_ascii=False)))
    return new


def record_submission(session: Session, pack: RulePack, sub: SubmissionIn, now: datetime, actor: str = "cli") -> InstanceRow:
    if sub.submitted_on > now.date():
        raise InputError(f"ngày nộp {sub.submitted_on:%d/%m/%Y} ở tương lai (hôm nay {now:%d/%m/%Y})")
    row = resolve_instance(session, pack, sub.obligation, sub.unit, sub.period)
    _record(session, row, sub, now, actor)
    session.commit()
    return row


def record_waiver(session: Session, pack: RulePack, obligation: str, unit: str, period: str, reason: str,
                  now: datetime, actor: str = "cli", revoke: bool = False) -> InstanceRow:
    if not revoke and not reason.strip():
        raise InputError("cần ghi lý do miễn nộp (--reason)")
    row = resolve_instance(session, pack, obligation, unit, period)
    active = session.exec(select(WaiverRow).where(WaiverRow.instance_id == row.id, WaiverRow.active == True)).all()  # noqa: E712
    for w in active:
        w.active = False
        session.add(w)
    if revoke:
        row.waived = False
        row.closed = row.submitted_on is not None
        action = "unwaive"
    else:
        session.add(WaiverRow(instance_id=row.id, reason=reason.strip(), recorded_at=now, recorded_by=actor))
        row.waived, row.closed = True, True
        action = "waive"
    row.updated_at = now
    session.add(row)
    session.add(AuditRow(at=now, actor=actor, action=action, entity="instance",
                         entity_id=f"{obligation}|{unit}|{period}", detail=json.dumps({"reason": reason}, ensure_ascii=False)))
    session.commit()
    return row


# --- CSV import -------------------------------------------------------------------------------

_COLUMNS = {
    "obligation": ("obligation", "nghia_vu", "nghĩa vụ", "ma_bao_cao", "mã báo cáo"),
    "unit": ("unit", "don_vi", "đơn vị", "ma_don_vi", "mã đơn vị"),
    "period": ("period", "ky", "kỳ"),
    "date": ("date", "submitted_on", "ngay_nop", "ngày nộp"),
    "ref": ("ref", "so_ky_hieu", "số ký hiệu"),
    "note": ("note", "ghi_chu", "ghi chú"),
}


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"dòng {self.line}: {self.message}"


class ImportRejected(Exception):
    def __init__(self, file: str, errors: list[RowError]):
        self.file, self.errors = file, errors
        super().__init__("\n".join(f"{file}: {e}" for e in errors))


def open_csv(path: Path, columns: dict[str, tuple[str, ...]], required: tuple[str, ...],
             header_hint: str) -> tuple["csv._reader", dict[str, int]]:
    """A CSV as Excel saves it (UTF-8 with or without BOM, comma or semicolon) and its column map.

    Shared by every all-or-nothing import; a missing column is rejected naming line 1.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")   # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError:
        raise ImportRejected(str(path), [RowError(1, "tệp không phải UTF-8; trong Excel chọn Lưu thành “CSV UTF-8”")]) from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRejected(str(path), [RowError(1, "tệp rỗng")]) from None
    norm = [h.strip().lower() for h in header]
    cols: dict[str, int] = {}
    for name, aliases in columns.items():
        for i, h in enumerate(norm):
            if h in aliases:
                cols[name] = i
                break
    missing = [n for n in required if n not in cols]
    if missing:
        raise ImportRejected(str(path), [RowError(1, "thiếu cột " + ", ".join(missing) +
                                                  f" (tiêu đề cần có: {header_hint})")])
    return reader, cols


def parse_submissions_csv(path: Path, pack: RulePack, now: datetime, session: Session) -> list[tuple[int, SubmissionIn]]:
    """Validate every row; raise ImportRejected listing each bad row by its line number."""
    reader, cols = open_csv(path, _COLUMNS, ("obligation", "unit", "period", "date"),
                            "obligation, unit, period, date[, ref, note]")
    errors: list[RowError] = []
    rows: list[tuple[int, SubmissionIn]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue

        def get(name: str) -> str:
            i = cols.get(name)
            return values[i].strip() if i is not None and i < len(values) else ""

        try:
            ob, unit, period, day_text = get("obligation"), get("unit"), get("period"), get("date")
            for label, v in (("obligation", ob), ("unit", unit), ("period", period), ("date", day_text)):
                if not v:
                    raise InputError(f"cột {label} để trống")
            day = parse_date(day_text)
            if day > now.date():
                raise InputError(f"ngày nộp {day:%d/%m/%Y} ở tương lai")
            sub = SubmissionIn(obligation=ob, unit=unit, period=period, submitted_on=day,
                               ref=get("ref") or None, note=get("note") or None)
            key = (ob, unit, period)
            if key in seen:
                raise InputError(f"trùng với dòng {seen[key]} (cùng báo cáo, đơn vị, kỳ)")
            with session.no_autoflush:
                resolve_instance(session, pack, ob, unit, period)
            seen[key] = line
            rows.append((line, sub))
        except (InputError, BadDate) as exc:
            errors.append(RowError(line, str(exc)))
    if errors:
        session.rollback()
        raise ImportRejected(str(path), errors)
    return rows


def import_submissions(session: Session, pack: RulePack, path: Path, now: datetime, actor: str = "import") -> int:
    """All rows or none: one transaction, committed only when every row is valid."""
    try:
        rows = parse_submissions_csv(path, pack, now, session)
        for _, sub in rows:
            row = resolve_instance(session, pack, sub.obligation, sub.unit, sub.period)
            _record(session, row, sub, now, actor)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return len(rows)
