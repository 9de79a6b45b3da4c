"""Recording what units submitted (or were excused from), with an audit trail.

Imports (CSV, or an xlsx such as the tracking sheet of engine/tracking_xlsx.py) are all-or-nothing: every row
is validated before any is written, and the write is one short transaction (see
import_submissions), so a big file never holds the database for long. A row identical to the
submission already recorded (same date, number, note) changes nothing, so importing the same file
twice is harmless; a different date or number is a correction, audited.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.clock import BadDate, parse_date
from engine.instances import Instance, generate_instances
from engine.limits import YEARS_VI, year_ok
from engine.periods import BadPeriod, fold, normalise_period_text, period_for_key
from engine.rules_loader import RulePack
from engine.state import AttachmentRow, AuditRow, ConfirmationRow, InstanceRow, SubmissionRow, WaiverRow
from engine.sheet_rows import cell_date, cell_text, match_columns, read_rows


class InputError(ValueError):
    """A request a secretary can fix: the message says what and how."""


class SubmissionIn(BaseModel):
    obligation: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    period: str = Field(min_length=1)
    submitted_on: date
    ref: str | None = None
    note: str | None = None


# ─── "có phải … không?" ───────────────────────────────────────────────────────────────────────
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", fold(text)).strip("-")


def did_you_mean(text: str, choices: dict[str, str], limit: int = 3) -> list[str]:
    """The ids a mistyped id most likely meant: compared without accents, case or punctuation with
    each id AND its name ("so tai chinh", "Sở Tài chính", "so-tai-chin" → so-tai-chinh)."""
    want = _slug(text)
    if not want:
        return []
    scored: list[tuple[float, str]] = []
    for cid, name in choices.items():
        best = 0.0
        for form in {_slug(cid), _slug(name)}:
            if not form:
                continue
            if form == want:
                best = 2.0
                break
            ratio = difflib.SequenceMatcher(None, want, form).ratio()
            if len(want) >= 4 and want in form:          # "tai-chinh" inside "so-tai-chinh"
                ratio = max(ratio, 0.8)
            best = max(best, ratio)
        if best >= 0.6:
            scored.append((best, cid))
    scored.sort(key=lambda t: (-t[0], t[1]))
    best = scored[0][0] if scored else 0.0
    return [cid for score, cid in scored[:limit] if score >= best - 0.1]   # a clear winner stands alone


def unknown_message(what: str, text: str, choices: dict[str, str], where: str) -> str:
    """“không có đơn vị “so tai chinh” trong bộ quy tắc; có phải “so-tai-chinh” (Sở Tài chính) không?”"""
    msg = f"không có {what} “{text}” trong bộ quy tắc"
    hits = did_you_mean(text, choices)
    if hits:
        return msg + "; có phải " + " hay ".join(f"“{h}” ({choices[h]})" for h in hits) + " không?"
    return msg + f"; xem mã trong {where}"


def unknown_unit(pack: RulePack, unit: str) -> str:
    return unknown_message("đơn vị", unit, {u: x.name for u, x in pack.units.items()}, "rules/units.yaml")


def unknown_obligation(pack: RulePack, obligation: str) -> str:
    return unknown_message("nghĩa vụ báo cáo", obligation, {o: x.title for o, x in pack.obligations.items()},
                           "dondoc deadlines (cột “Mã báo cáo / kỳ”)")


def plan_instance(pack: RulePack, obligation: str, unit: str, period: str,
                  _cache: dict | None = None) -> Instance:
    """The instance the rules define for (obligation, unit, period), without touching the database;
    InputError says what is wrong (unknown obligation or unit, a period the obligation cannot have,
    a unit that does not owe that period). `_cache` (a dict) speeds up bulk validation."""
    if obligation not in pack.obligations:
        raise InputError(unknown_obligation(pack, obligation))
    if unit not in pack.units:
        raise InputError(unknown_unit(pack, unit))
    ob = pack.obligations[obligation]
    try:
        p = period_for_key(ob, period, pack.obligations.values())
    except BadPeriod as exc:
        raise InputError(str(exc)) from None
    period = p.key
    cache = _cache if _cache is not None else {}
    if "calc" not in cache:
        cache["calc"] = pack.due_calculator()
    calc = cache["calc"]
    d = calc.due(ob, p)
    if d is None:
        raise InputError(f"không tính được hạn nộp của “{obligation}” kỳ {p.label}")
    day_instances = cache.get(("day", d.day))
    if day_instances is None:
        day_instances = {i.key: i for i in generate_instances(pack, d.day, d.day)}
        cache[("day", d.day)] = day_instances
    inst = day_instances.get((obligation, unit, period))
    if inst is None:
        owners = sorted({i.unit for i in day_instances.values() if i.obligation == obligation and i.period == period})
        hint = f"; đơn vị phải nộp kỳ này: {', '.join(owners[:8])}{'…' if len(owners) > 8 else ''}" if owners else ""
        raise InputError(f"đơn vị “{unit}” không phải nộp “{obligation}” kỳ {p.label}{hint}")
    return inst


def _instance_values(inst: Instance, pack: RulePack, now: datetime) -> dict[str, object]:
    return dict(obligation=inst.obligation, unit=inst.unit, period=inst.period, period_label=inst.period_label,
                period_start=inst.period_start, period_end=inst.period_end, cutoff_start=inst.cutoff_start,
                cutoff_end=inst.cutoff_end, due=inst.due, due_at=inst.due_at, recipient=inst.recipient,
                inherited_from=",".join(inst.inherited_from), rules_version=pack.version,
                created_at=now, updated_at=now)


def resolve_instance(session: Session, pack: RulePack, obligation: str, unit: str, period: str,
                     now: datetime) -> InstanceRow:
    """The instance row, created from the rules (stamped ``now``, the command's simulated "now" too)
    if it predates sync (e.g. before tracking start)."""
    if obligation not in pack.obligations:
        raise InputError(unknown_obligation(pack, obligation))
    if unit not in pack.units:
        raise InputError(unknown_unit(pack, unit))
    period = normalise_period_text(period)
    row = session.exec(select(InstanceRow).where(InstanceRow.obligation == obligation, InstanceRow.unit == unit,
                                                 InstanceRow.period == period)).first()
    if row is not None:
        return row
    inst = plan_instance(pack, obligation, unit, period)
    row = InstanceRow(**_instance_values(inst, pack, now))
    session.add(row)
    session.flush()
    return row


def earliest_submission(period_start: date, period_end: date, due: date, cutoff_start: date | None) -> date:
    """The first day a submission for a period can be dated: the period's first day, since a report
    on a period cannot exist before the period begins. A document with no data window that is due
    INSIDE its own period looks ahead (the yearly inspection plan due 31/01 may be signed in
    December): it may come at most one period length before its due day."""
    if cutoff_start is None and due <= period_end:
        return min(period_start, due - (period_end - period_start))
    return period_start


def _check_day(day: date, earliest: date, period_label: str, now: datetime) -> None:
    """A submission cannot predate its period (nor the supported years), nor lie in the future."""
    if not year_ok(day.year):
        raise InputError(f"ngày nộp {day:%d/%m/%Y}: năm {day.year} ngoài phạm vi hỗ trợ ({YEARS_VI})")
    if day > now.date():
        raise InputError(f"ngày nộp {day:%d/%m/%Y} ở tương lai (hôm nay {now:%d/%m/%Y})")
    if day < earliest:
        raise InputError(f"ngày nộp {day:%d/%m/%Y} trước khi kỳ {period_label} bắt đầu "
                         f"(sớm nhất {earliest:%d/%m/%Y})")


def settle_confirmations(session: Session, row: InstanceRow, now: datetime, actor: str,
                         submission_id: int | None = None, accepted_id: int | None = None) -> None:
    """The secretariat recorded or waived this report: a unit's "đã gửi" no longer waits (its
    reminders were paused only until then). The confirmation being accepted (``accepted_id``)
    becomes "accepted", any other pending one "superseded"; both point at the submission, and so do
    the files the unit attached."""
    row.awaiting_since, row.chase_paused = None, False
    pending = session.exec(select(ConfirmationRow).where(ConfirmationRow.instance_id == row.id,
                                                         ConfirmationRow.state == "pending")).all()
    for c in pending:
        c.state = "accepted" if accepted_id is not None and c.id == accepted_id else "superseded"
        c.decided_at, c.decided_by, c.submission_id = now, actor[:80], submission_id
        session.add(c)
    if submission_id is not None and pending:
        for a in session.exec(select(AttachmentRow).where(
                col(AttachmentRow.confirmation_id).in_([c.id for c in pending]),
                col(AttachmentRow.submission_id).is_(None))).all():
            a.submission_id = submission_id
            session.add(a)


def _record(session: Session, row: InstanceRow, sub: SubmissionIn, now: datetime, actor: str,
            confirmation_id: int | None = None) -> SubmissionRow:
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
    session.flush()
    settle_confirmations(session, row, now, actor, new.id, confirmation_id)
    detail = {"submitted_on": sub.submitted_on.isoformat(), "ref": sub.ref, "note": sub.note}
    if previous:
        detail["replaces"] = [{"submitted_on": p.submitted_on.isoformat(), "ref": p.ref} for p in previous]
    session.add(AuditRow(at=now, actor=actor, action="correct" if previous else "submit", entity="instance",
                         entity_id=f"{row.obligation}|{row.unit}|{row.period}", detail=json.dumps(detail, ensure_ascii=False)))
    return new


def record_submission(session: Session, pack: RulePack, sub: SubmissionIn, now: datetime, actor: str = "cli",
                      confirmation_id: int | None = None) -> InstanceRow:
    """Record (or correct) a submission; ``confirmation_id``: the unit's "đã gửi" being accepted."""
    if not year_ok(sub.submitted_on.year) or sub.submitted_on > now.date():
        _check_day(sub.submitted_on, date.min, "", now)
    row = resolve_instance(session, pack, sub.obligation, sub.unit, sub.period, now)
    try:
        _check_day(sub.submitted_on, earliest_submission(row.period_start, row.period_end, row.due, row.cutoff_start),
                   row.period_label, now)
    except InputError:
        session.rollback()
        raise
    _record(session, row, sub, now, actor, confirmation_id)
    session.commit()
    return row


def record_waiver(session: Session, pack: RulePack, obligation: str, unit: str, period: str, reason: str,
                  now: datetime, actor: str = "cli", revoke: bool = False) -> InstanceRow:
    if not revoke and not reason.strip():
        raise InputError("cần ghi lý do miễn nộp (--reason)")
    row = resolve_instance(session, pack, obligation, unit, period, now)
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
        settle_confirmations(session, row, now, actor)
        action = "waive"
    row.updated_at = now
    session.add(row)
    session.add(AuditRow(at=now, actor=actor, action=action, entity="instance",
                         entity_id=f"{obligation}|{unit}|{period}", detail=json.dumps({"reason": reason}, ensure_ascii=False)))
    session.commit()
    return row


# --- CSV import -------------------------------------------------------------------------------

# Aliases in order of preference (compared without case or accents): in the tracking sheet "Mã kỳ"
# holds the code and "Kỳ" the label, "Mã đơn vị" the code and "Đơn vị" the name.
_COLUMNS = {
    "obligation": ("obligation", "ma_bao_cao", "mã báo cáo", "mã nghĩa vụ", "nghia_vu", "nghĩa vụ"),
    "unit": ("unit", "ma_don_vi", "mã đơn vị", "don_vi", "đơn vị"),
    "period": ("period", "ma_ky", "mã kỳ", "ky", "kỳ"),
    "date": ("date", "submitted_on", "ngay_nop", "ngày nộp"),
    "ref": ("ref", "so_ky_hieu", "số ký hiệu"),
    "note": ("note", "ghi_chu", "ghi chú"),
}


@dataclass(frozen=True)
class RowError:
    line: int
    message: str
    sheet: str | None = None        # the xlsx sheet the row is on

    def __str__(self) -> str:
        where = f"trang “{self.sheet}”, dòng {self.line}" if self.sheet else f"dòng {self.line}"
        return f"{where}: {self.message}"


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
    cols = match_columns(header, columns)
    missing = [n for n in required if n not in cols]
    if missing:
        raise ImportRejected(str(path), [RowError(1, "thiếu cột " + ", ".join(missing) +
                                                  f" (tiêu đề cần có: {header_hint})")])
    return reader, cols


def csv_rows(reader: "csv._reader", errors: list[RowError]) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each non-blank row. A row the csv module cannot read (a cell over
    csv.field_size_limit() characters, a NUL byte, an unclosed quote) becomes a RowError with its
    line, and reading stops there: what follows it cannot be split into rows reliably."""
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger" in str(exc):
                why = f"một ô dài quá {csv.field_size_limit():,} ký tự".replace(",", ".")
            elif "NUL" in str(exc):
                why = "dòng chứa ký tự NUL (tệp nhị phân?)"
            else:
                why = "dòng CSV hỏng (dấu ngoặc kép không đóng?)"
            errors.append(RowError(reader.line_num, f"{why}; không đọc tiếp các dòng sau"))
            return
        if any(v.strip() for v in values):
            yield reader.line_num, values


@dataclass
class _PlannedSubmission:
    """A validated CSV row, with what the final write needs (computed while reading, not writing)."""
    line: int
    sub: SubmissionIn
    instance_id: int | None          # None: the instance is created from `new_instance`
    new_instance: Instance | None
    action: str                      # submit | correct
    detail: str                      # audit_log.detail (JSON)


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: reports recorded for the first time, corrected, already recorded as
    written (nothing changed), and sheet rows passed over because "Ngày nộp" is empty."""
    submitted: int = 0
    corrected: int = 0
    unchanged: int = 0
    skipped: int = 0

    @property
    def written(self) -> int:
        return self.submitted + self.corrected

    def as_dict(self) -> dict[str, int]:
        return {"submitted": self.submitted, "corrected": self.corrected, "unchanged": self.unchanged,
                "skipped": self.skipped}


_HEADER_HINT = "obligation, unit, period, date[, ref, note] hoặc Mã báo cáo, Mã đơn vị, Mã kỳ, Ngày nộp[, Số ký hiệu]"


def is_xlsx(path: Path) -> bool:
    return path.suffix.lower() in (".xlsx", ".xlsm")


def _read_raw(path: Path, errors: list[RowError]) -> tuple[list[tuple[str | None, int, dict[str, object]]], list[str]]:
    """(sheet or None, row/line, cells by column name) of a CSV or an xlsx; structural problems
    (not a spreadsheet, no header) are rejected at once."""
    if not is_xlsx(path):
        reader, cols = open_csv(path, _COLUMNS, ("obligation", "unit", "period", "date"), _HEADER_HINT)
        return [(None, line, {n: (values[i] if i < len(values) else "") for n, i in cols.items()})
                for line, values in csv_rows(reader, errors)], []
    got = read_rows(path, _COLUMNS, ("obligation", "unit", "period", "date"), _HEADER_HINT)
    if got.problems:
        raise ImportRejected(str(path), [RowError(r, why, sh) for sh, r, why in got.problems])
    return got.rows, got.sheets


def _validate_submissions(path: Path, pack: RulePack, now: datetime, session: Session
                          ) -> tuple[list[_PlannedSubmission], int, ImportSummary]:
    """Every row checked with reads only (no write lock); ImportRejected lists each bad row.
    Returns the plan (rows that change something), the highest submission id seen (to detect a
    concurrent change) and what the rows amount to."""
    errors: list[RowError] = []
    cells, sheets = _read_raw(path, errors)
    sheet_order = {name: n for n, name in enumerate(sheets)}
    xlsx = is_xlsx(path)
    raw: list[tuple[str | None, int, dict[str, str], object]] = []
    skipped = 0
    for sheet, line, r in cells:
        text = {n: cell_text(v) for n, v in r.items() if n != "period"}
        text["period"] = normalise_period_text(r.get("period")) if r.get("period") is not None else ""
        day_cell = cell_date(r.get("date")) if xlsx else text.get("date", "")
        if xlsx and day_cell == "":
            if text.get("ref") or text.get("note"):   # a number written without its date is a slip, not "not yet"
                errors.append(RowError(line, "có Số ký hiệu/Ghi chú nhưng chưa ghi Ngày nộp", sheet))
            else:
                skipped += 1                            # not received yet: the row stays open
            continue
        raw.append((sheet, line, text, day_cell))
    obligations = sorted({r["obligation"] for _, _, r, _ in raw if r.get("obligation")})
    snapshot = session.scalar(sa_select(func.coalesce(func.max(SubmissionRow.id), 0)))
    existing: dict[tuple[str, str, str], tuple[int, date, str]] = {}
    for ob_chunk in chunks(obligations, 500):
        q = sa_select(InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period,
                      InstanceRow.period_start, InstanceRow.period_end, InstanceRow.due, InstanceRow.cutoff_start,
                      InstanceRow.period_label).where(InstanceRow.obligation.in_(ob_chunk))
        for iid, ob, unit, period, start, end, due, c_start, label in session.execute(q):
            existing[(ob, unit, period)] = (iid, earliest_submission(start, end, due, c_start), label)
    cache: dict = {}
    seen: dict[tuple[str, str, str], str] = {}
    good: list[tuple[int, SubmissionIn, int | None, Instance | None]] = []
    for sheet, line, r, day_cell in raw:
        try:
            for label in ("obligation", "unit", "period", "date"):
                if not r.get(label) and not (label == "date" and isinstance(day_cell, date)):
                    raise InputError(f"cột {label} để trống")
            ob, unit, period = r["obligation"], r["unit"], r["period"]
            day = day_cell if isinstance(day_cell, date) else parse_date(str(day_cell))
            key = (ob, unit, period)
            if key in seen:
                raise InputError(f"trùng với {seen[key]} (cùng báo cáo, đơn vị, kỳ)")
            if ob not in pack.obligations:
                raise InputError(unknown_obligation(pack, ob))
            if unit not in pack.units:
                raise InputError(unknown_unit(pack, unit))
            found = existing.get(key)
            if found is not None:
                iid, start, plabel, new = found[0], found[1], found[2], None
            else:
                new = plan_instance(pack, ob, unit, period, cache)
                iid, start, plabel = None, earliest_submission(new.period_start, new.period_end, new.due,
                                                          new.cutoff_start), new.period_label
            _check_day(day, start, plabel, now)
            sub = SubmissionIn(obligation=ob, unit=unit, period=period, submitted_on=day,
                               ref=r.get("ref") or None, note=r.get("note") or None)
            seen[key] = (f"trang “{sheet}” dòng {line}" if sheet is not None and len(sheets) > 1 else f"dòng {line}")
            good.append((line, sub, iid, new))
        except (InputError, BadDate) as exc:
            errors.append(RowError(line, str(exc), sheet))
    if errors:
        session.rollback()
        raise ImportRejected(str(path), sorted(errors, key=lambda e: (sheet_order.get(e.sheet or "", -1), e.line)))
    # Corrections: what each row replaces, for the audit trail (read now, checked again at write).
    previous: dict[int, list[tuple[date, str | None, str | None]]] = {}
    ids = [iid for _, _, iid, _ in good if iid is not None]
    for chunk in chunks(ids, 5000):
        q = (sa_select(SubmissionRow.instance_id, SubmissionRow.submitted_on, SubmissionRow.ref, SubmissionRow.note)
             .where(SubmissionRow.instance_id.in_(chunk), SubmissionRow.active == True)  # noqa: E712
             .order_by(SubmissionRow.id))
        for iid, on, ref, note in session.execute(q):
            previous.setdefault(iid, []).append((on, ref or None, note or None))
    session.rollback()   # end the read transaction
    plan: list[_PlannedSubmission] = []
    counts = {"submit": 0, "correct": 0, "same": 0}
    for line, sub, iid, new in good:
        prev = previous.get(iid, []) if iid is not None else []
        if prev == [(sub.submitted_on, sub.ref, sub.note)]:
            counts["same"] += 1          # already recorded exactly so: importing it again changes nothing
            continue
        detail: dict[str, object] = {"submitted_on": sub.submitted_on.isoformat(), "ref": sub.ref, "note": sub.note}
        if prev:
            detail["replaces"] = [{"submitted_on": on.isoformat(), "ref": ref} for on, ref, _ in prev]
        action = "correct" if prev else "submit"
        counts[action] += 1
        plan.append(_PlannedSubmission(line, sub, iid, new, action, json.dumps(detail, ensure_ascii=False)))
    return plan, snapshot, ImportSummary(counts["submit"], counts["correct"], counts["same"], skipped)


def parse_submissions_csv(path: Path, pack: RulePack, now: datetime, session: Session) -> list[tuple[int, SubmissionIn]]:
    """Validate every row; raise ImportRejected listing each bad row by its line number."""
    plan, _, _ = _validate_submissions(path, pack, now, session)
    return [(p.line, p.sub) for p in plan]


def chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


STAGE_BATCH = 5000


def import_submissions(session: Session, pack: RulePack, path: Path, now: datetime, actor: str = "import") -> int:
    """All rows or none (see import_submission_file); returns how many reports were recorded or corrected."""
    return import_submission_file(session, pack, path, now, actor).written


def import_submission_file(session: Session, pack: RulePack, path: Path, now: datetime,
                           actor: str = "import") -> ImportSummary:
    """A CSV or an xlsx tracking sheet, all rows or none, without holding the database's write lock for long (a 100k-row file must not
    stop the daemon, issue 10 item 3):

    1. validate every row with reads only (no write transaction);
    2. stage the rows in a TEMPORARY table of this connection, in batches: temporary tables take no
       lock on the shared database, so the daemon keeps writing meanwhile;
    3. one short transaction moves them in with set-based statements (INSERT … SELECT), together with
       the audit rows; it is the only write-lock hold, and it commits everything or nothing.
    If another writer recorded a submission for one of these reports between 1 and 3, step 3 is
    abandoned and the import is redone from step 1 (so corrections are audited against what they
    actually replace).
    """
    for _attempt in range(3):
        plan, snapshot, summary = _validate_submissions(path, pack, now, session)
        if not plan or _write_submissions(session, pack, plan, snapshot, now, actor):
            return summary
    raise InputError("cơ sở dữ liệu đang được ghi liên tục vào chính các báo cáo này; hãy nhập lại sau ít phút")


def _write_submissions(session: Session, pack: RulePack, plan: list[_PlannedSubmission], snapshot: int,
                       now: datetime, actor: str) -> bool:
    S, I, A = SubmissionRow.__table__, InstanceRow.__table__, AuditRow.__table__
    name = f"dd_import_sub_{uuid.uuid4().hex[:12]}"
    stage = sa.Table(
        name, sa.MetaData(),
        sa.Column("line", sa.Integer, primary_key=True), sa.Column("instance_id", sa.Integer),
        sa.Column("obligation", sa.String(80)), sa.Column("unit", sa.String(80)), sa.Column("period", sa.String(40)),
        sa.Column("submitted_on", S.c.submitted_on.type), sa.Column("ref", sa.Text), sa.Column("note", sa.Text),
        sa.Column("action", sa.String(40)), sa.Column("entity_id", sa.String(200)), sa.Column("detail", sa.Text),
        sa.Index(f"{name}_iid", "instance_id"), prefixes=["TEMPORARY"])
    with session.get_bind().connect() as conn:
        try:
            with conn.begin():
                stage.create(conn)
            for chunk in chunks(plan, STAGE_BATCH):
                with conn.begin():
                    conn.execute(stage.insert(), [
                        {"line": p.line, "instance_id": p.instance_id, "obligation": p.sub.obligation,
                         "unit": p.sub.unit, "period": p.sub.period, "submitted_on": p.sub.submitted_on,
                         "ref": p.sub.ref, "note": p.sub.note, "action": p.action,
                         "entity_id": f"{p.sub.obligation}|{p.sub.unit}|{p.sub.period}", "detail": p.detail}
                        for p in chunk])
            new = [p.new_instance for p in plan if p.new_instance is not None]
            with write_transaction(conn):
                # Someone recorded one of these reports since we read: redo (caller loops).
                changed = conn.execute(sa.select(S.c.id).where(S.c.id > snapshot,
                                                               S.c.instance_id.in_(sa.select(stage.c.instance_id)))
                                       .limit(1)).first()
                if changed is not None:
                    raise _Changed()
                for inst in new:
                    iid = conn.execute(sa.select(I.c.id).where(I.c.obligation == inst.obligation, I.c.unit == inst.unit,
                                                               I.c.period == inst.period)).scalar()
                    if iid is None:
                        iid = conn.execute(I.insert().values(**_instance_values(inst, pack, now))).inserted_primary_key[0]
                    elif conn.execute(sa.select(S.c.id).where(S.c.instance_id == iid, S.c.active == sa.true())).first():
                        raise _Changed()   # created and submitted meanwhile: the audit detail would be wrong
                    conn.execute(stage.update().where(stage.c.obligation == inst.obligation, stage.c.unit == inst.unit,
                                                      stage.c.period == inst.period).values(instance_id=iid))
                in_stage = S.c.instance_id.in_(sa.select(stage.c.instance_id))
                conn.execute(S.update().where(S.c.active == sa.true(), in_stage).values(active=sa.false()))
                conn.execute(S.insert().from_select(
                    ["instance_id", "submitted_on", "ref", "note", "active", "recorded_at", "recorded_by"],
                    sa.select(stage.c.instance_id, stage.c.submitted_on, stage.c.ref, stage.c.note, sa.true(),
                              sa.literal(now, S.c.recorded_at.type), sa.literal(actor, S.c.recorded_by.type))
                    .order_by(stage.c.line)))
                mine = stage.c.instance_id == I.c.id
                conn.execute(I.update().where(I.c.id.in_(sa.select(stage.c.instance_id))).values(
                    submitted_on=sa.select(stage.c.submitted_on).where(mine).scalar_subquery(),
                    submission_ref=sa.select(stage.c.ref).where(mine).scalar_subquery(),
                    closed=sa.true(), updated_at=sa.literal(now, I.c.updated_at.type),
                    awaiting_since=None, chase_paused=sa.false()))
                # A unit's pending "đã gửi" for these reports waits no more (see settle_confirmations).
                C = ConfirmationRow.__table__
                conn.execute(C.update().where(C.c.state == "pending", C.c.instance_id.in_(sa.select(stage.c.instance_id)))
                             .values(state="superseded", decided_at=sa.literal(now, C.c.decided_at.type),
                                     decided_by=sa.literal(actor[:80], C.c.decided_by.type),
                                     submission_id=sa.select(S.c.id).where(S.c.instance_id == C.c.instance_id,
                                                                           S.c.active == sa.true())
                                     .order_by(S.c.id.desc()).limit(1).scalar_subquery()))
                conn.execute(A.insert().from_select(
                    ["at", "actor", "action", "entity", "entity_id", "detail"],
                    sa.select(sa.literal(now, A.c.at.type), sa.literal(actor, A.c.actor.type), stage.c.action,
                              sa.literal("instance", A.c.entity.type), stage.c.entity_id, stage.c.detail)
                    .order_by(stage.c.line)))
            return True
        except _Changed:
            return False
        finally:
            with conn.begin():
                stage.drop(conn, checkfirst=True)


class _Changed(Exception):
    """Another writer touched the rows being imported between validation and the final write."""


@contextmanager
def write_transaction(conn: sa.Connection) -> Iterator[None]:
    """One transaction that takes SQLite's write lock at its start (BEGIN IMMEDIATE, waiting out the
    busy timeout), so it never fails half-way on a lock upgrade; PostgreSQL locks rows as it goes."""
    with conn.begin():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield
