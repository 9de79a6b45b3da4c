"""Recording reported KPI values: one at a time or from CSV, with the same all-or-nothing rule as
submissions (engine/submissions.py): every row is checked before any is written, each bad row is
named by its line with the reason, and the write is one short transaction (see import_values).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, select

from engine.clock import BadDate, parse_date
from engine.kpi.classify import Obs
from engine.kpi.loader import KpiPack
from engine.kpi.model import in_unit
from engine.kpi.state import KpiValueRow, KpiValuesVersionRow
from engine.limits import YEARS_VI, year_ok
from engine.state import AuditRow
from engine.submissions import ImportRejected, InputError, RowError, chunks, csv_rows, open_csv, write_transaction
from engine.vi import parse_num

_BOOL = {"có": 1.0, "co": 1.0, "đạt": 1.0, "dat": 1.0, "rồi": 1.0, "yes": 1.0, "true": 1.0,
         "không": 0.0, "khong": 0.0, "chưa": 0.0, "chua": 0.0, "no": 0.0, "false": 0.0}


class KpiValueIn(BaseModel):
    indicator: str = Field(min_length=1)
    value: float
    as_of: date
    source: str | None = None
    note: str | None = None


def parse_value(text: str, unit: str) -> float:
    """A number as people type it (engine.vi.parse_num: 1.200 is one thousand two hundred, 12,5 is
    twelve and a half, 62 %), or có/không for yes/no indicators. Ambiguous forms are refused."""
    raw = text.strip()
    if unit == "boolean" and raw.lower() in _BOOL:
        return _BOOL[raw.lower()]
    try:
        return parse_num(raw, percent=unit in ("percent", "percent_grdp"))
    except ValueError as exc:
        msg = str(exc)
        if "không tính bằng %" in msg:
            msg = f"“{raw}”: chỉ tiêu này không tính bằng %"
        raise InputError(msg) from None


def check_value(kpi: KpiPack, item: KpiValueIn, today: date) -> None:
    """Raise InputError when the value cannot be right for its indicator's unit or date."""
    ind = kpi.indicators.get(item.indicator)
    if ind is None:
        known = ", ".join(sorted(kpi.indicators)[:6])
        raise InputError(f"không có chỉ tiêu “{item.indicator}” (ví dụ mã hợp lệ: {known}…; xem dondoc kpi report)")
    why = in_unit(ind.unit, item.value)
    if why:
        raise InputError(f"giá trị của “{ind.id}” không hợp lệ: {why}")
    if not year_ok(item.as_of.year):
        raise InputError(f"ngày số liệu {item.as_of:%d/%m/%Y}: năm {item.as_of.year} ngoài phạm vi hỗ trợ ({YEARS_VI})")
    if item.as_of > today:
        raise InputError(f"ngày số liệu {item.as_of:%d/%m/%Y} ở tương lai (hôm nay {today:%d/%m/%Y})")


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
    for line, values in csv_rows(reader, errors):

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
        raise ImportRejected(str(path), sorted(errors, key=lambda e: e.line))
    return rows


STAGE_BATCH = 5000


def import_values(session: Session, kpi: KpiPack, path: Path, now: datetime, actor: str = "import") -> int:
    """All rows or none, holding the write lock only for one short final transaction (a 100k-row file
    must not stop the daemon): rows are validated with no transaction at all, the corrections they
    make are read, rows are staged in a TEMPORARY table (no lock on the shared database), then one
    transaction retires the values they correct and inserts them and their audit rows with
    INSERT … SELECT. If someone recorded a value for one of the same (indicator, date) in between,
    the import starts over so each correction points at the value it really replaces."""
    rows = parse_values_csv(path, kpi, now.date())
    for _attempt in range(3):
        if _write_values(session, rows, now, actor):
            return len(rows)
    raise InputError("cơ sở dữ liệu đang được ghi liên tục vào chính các chỉ tiêu này; hãy nhập lại sau ít phút")


def _write_values(session: Session, rows: list[tuple[int, KpiValueIn]], now: datetime, actor: str) -> bool:
    V, A = KpiValueRow.__table__, AuditRow.__table__
    snapshot = session.scalar(sa.select(func.coalesce(func.max(V.c.id), 0)))
    previous: dict[tuple[str, date], list[tuple[int, float, datetime, str]]] = {}
    for ind_chunk in chunks(sorted({item.indicator for _, item in rows}), 500):
        q = (sa.select(V.c.id, V.c.indicator, V.c.as_of, V.c.value, V.c.recorded_at, V.c.recorded_by)
             .where(V.c.indicator.in_(ind_chunk), V.c.active == sa.true()).order_by(V.c.id))
        for vid, ind, as_of, value, rec_at, rec_by in session.execute(q):
            previous.setdefault((ind, as_of), []).append((vid, value, rec_at, rec_by))
    session.rollback()   # end the read transaction: nothing was written
    staged = []
    for line, item in rows:
        prev = previous.get((item.indicator, item.as_of), [])
        detail: dict[str, object] = {"value": item.value, "as_of": item.as_of.isoformat(), "source": item.source}
        if prev:
            detail["replaces"] = [{"id": vid, "value": v, "recorded_at": at.isoformat(), "recorded_by": by}
                                  for vid, v, at, by in prev]
        staged.append({"line": line, "indicator": item.indicator, "value": item.value, "as_of": item.as_of,
                       "source": item.source, "note": item.note, "replaces_id": prev[-1][0] if prev else None,
                       "action": "kpi_correct" if prev else "kpi_record",
                       "entity_id": f"{item.indicator}|{item.as_of.isoformat()}",
                       "detail": json.dumps(detail, ensure_ascii=False)})
    name = f"dd_import_kpi_{uuid.uuid4().hex[:12]}"
    stage = sa.Table(
        name, sa.MetaData(),
        sa.Column("line", sa.Integer, primary_key=True), sa.Column("indicator", sa.String(80)),
        sa.Column("value", V.c.value.type), sa.Column("as_of", V.c.as_of.type), sa.Column("source", sa.Text),
        sa.Column("note", sa.Text), sa.Column("replaces_id", sa.Integer), sa.Column("action", sa.String(40)),
        sa.Column("entity_id", sa.String(200)), sa.Column("detail", sa.Text),
        sa.Index(f"{name}_key", "indicator", "as_of"), prefixes=["TEMPORARY"])
    with session.get_bind().connect() as conn:
        try:
            with conn.begin():
                stage.create(conn)
            for chunk in chunks(staged, STAGE_BATCH):
                with conn.begin():
                    conn.execute(stage.insert(), chunk)
            with write_transaction(conn):
                same_key = sa.exists().where(stage.c.indicator == V.c.indicator, stage.c.as_of == V.c.as_of)
                if conn.execute(sa.select(V.c.id).where(V.c.id > snapshot, same_key).limit(1)).first() is not None:
                    return False   # recorded meanwhile: start over (caller loops)
                conn.execute(V.update().where(V.c.active == sa.true(), same_key).values(active=sa.false()))
                conn.execute(V.insert().from_select(
                    ["indicator", "value", "as_of", "source", "note", "active", "replaces_id", "recorded_at", "recorded_by"],
                    sa.select(stage.c.indicator, stage.c.value, stage.c.as_of, stage.c.source, stage.c.note, sa.true(),
                              stage.c.replaces_id, sa.literal(now, V.c.recorded_at.type),
                              sa.literal(actor, V.c.recorded_by.type)).order_by(stage.c.line)))
                conn.execute(A.insert().from_select(
                    ["at", "actor", "action", "entity", "entity_id", "detail"],
                    sa.select(sa.literal(now, A.c.at.type), sa.literal(actor, A.c.actor.type), stage.c.action,
                              sa.literal("kpi_value", A.c.entity.type), stage.c.entity_id, stage.c.detail)
                    .order_by(stage.c.line)))
            return True
        finally:
            with conn.begin():
                stage.drop(conn, checkfirst=True)


def load_values(session: Session, indicators: list[str] | None = None) -> dict[str, list[Obs]]:
    """Active values per indicator, oldest first.

    Read as plain rows, not ORM objects: every evaluation pass reads them all (the KPI items are
    classified from them, and remembered until they change), and values only accumulate — years
    of yearly figures for 220 indicators are thousands of rows (benchmarks/README.md)."""
    V = KpiValueRow
    q = sa.select(V.indicator, V.value, V.as_of, V.source, V.recorded_at).where(V.active == True)  # noqa: E712
    if indicators is not None:
        q = q.where(V.indicator.in_(indicators))
    out: dict[str, list[Obs]] = {}
    # Through the session's connection, not session.execute: the ORM's row handling was a third of
    # the time (20 years of monthly figures, 18,600 rows: 135–153 → 115–130 ms).
    for indicator, value, as_of, source, recorded_at in session.connection().execute(q.order_by(V.as_of, V.recorded_at)):
        out.setdefault(indicator, []).append(Obs(value, as_of, source, recorded_at))
    return out


def values_version(session: Session) -> str | None:
    """The values' version token: a new random one with every write to kpi_values, in the writing
    transaction (a trigger, migration 0015), so equal tokens mean equal values. None when the row
    is missing (nothing can then be known to be unchanged)."""
    return session.execute(sa.select(KpiValuesVersionRow.token).where(KpiValuesVersionRow.id == 1)).scalar()


def history(session: Session, indicator: str) -> list[KpiValueRow]:
    """Every row of one indicator, corrections included (for the audit view)."""
    return list(session.exec(select(KpiValueRow).where(KpiValueRow.indicator == indicator)
                             .order_by(KpiValueRow.as_of, KpiValueRow.recorded_at)).all())
