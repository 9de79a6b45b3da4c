"""What people and the pipeline see of the KPI status: report rows, the items the notification
digest includes ("chỉ tiêu chậm tiến độ"), the secretariat's summary, and the XLSX export.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session

from engine.kpi.classify import SLIPPING, STATUS_ORDER, STATUS_VI, Obs, Schedule, TargetResult, evaluate, val_text
from engine.kpi.loader import KpiPack, load_kpi_for_pack
from engine.kpi.model import UNITS, kind_label
from engine.kpi.values import load_values, values_version
from engine.rules_loader import RulePack
from engine.xlsx_safe import FORMULA_START, neutralise_formulas  # noqa: F401  (re-exported: older imports)


@dataclass(frozen=True)
class ReportRow:
    """One target as of a date, flattened for tables, JSON and spreadsheets."""
    group: str
    group_name: str
    indicator: str
    indicator_name: str
    target: str
    milestone: date
    requirement: str
    unit: str
    kind: str
    status: str
    latest_value: float | None       # the newest value up to the date (the digest's "số liệu mới nhất")
    latest_as_of: date | None
    judged_value: float | None       # the value that decided the status (TargetResult.judged): what the
    judged_as_of: date | None        # report shows and the chart rings; None for Thiếu số liệu / Chưa đến kỳ
    expected: float | None
    expected_at: date | None
    period: str | None
    responsible: str                 # the unit answering on the date (successors followed)
    responsible_name: str
    responsible_assumed: bool
    source_obligation: str
    basis: str
    text: str
    detail: str
    since: date | None = None        # slipping only: the first day this status was known (see known_since)

    @property
    def status_vi(self) -> str:
        return STATUS_VI[self.status]

    def as_dict(self) -> dict[str, object]:
        return {"group": self.group, "group_name": self.group_name, "indicator": self.indicator,
                "indicator_name": self.indicator_name, "target": self.target, "milestone": self.milestone.isoformat(),
                "requirement": self.requirement, "unit": self.unit, "kind": self.kind, "status": self.status,
                "status_vi": self.status_vi, "latest_value": self.latest_value,
                "latest_as_of": self.latest_as_of.isoformat() if self.latest_as_of else None,
                "judged_value": self.judged_value, "judged_value_text": val_text(self.judged_value, self.unit),
                "judged_as_of": self.judged_as_of.isoformat() if self.judged_as_of else None,
                "expected": None if self.expected is None else round(self.expected, 4),
                "expected_at": self.expected_at.isoformat() if self.expected_at else None, "period": self.period,
                "responsible": self.responsible, "responsible_name": self.responsible_name,
                "responsible_assumed": self.responsible_assumed, "source_obligation": self.source_obligation,
                "basis": self.basis, "text": self.text, "detail": self.detail}


def _responsible(pack: RulePack, unit_id: str, day: date) -> str:
    owner = pack.owner_on(unit_id, day) if unit_id in pack.units else None
    return owner or unit_id


def _recorded_on(o: Obs | None, tz: ZoneInfo) -> date | None:
    """The local day a value was entered (its own date for the baseline, which has no record)."""
    if o is None:
        return None
    if o.recorded_at is None:
        return o.as_of
    rec = o.recorded_at
    return (rec.astimezone(tz) if rec.tzinfo is not None else rec).date()


def _report_due(sched: Schedule, ind, period: str | None) -> date | None:
    """The due day of the source report for `period` (a period key of the source obligation, or a
    year for flow targets)."""
    if period is None or not period[:4].isdigit():
        return None
    year = int(period[:4])
    if ind.kind == "flow" and period.isdigit():
        return sched.year_due(ind.source, year)
    for p, due in sched.periods(ind.source, year - 1, year + 1):
        if p.key == period:
            return due
    return sched.year_due(ind.source, year) if period.isdigit() else None


def known_since(r: TargetResult, ind, sched: Schedule, tz: ZoneInfo) -> date | None:
    """The first day `kpi_items` reports this slipping fact, i.e. when it became something to chase:

    * Thiếu số liệu: the due day of the report that should have carried the value;
    * Không đạt: that due day too, or the day the deciding value was entered if that is later;
    * Chậm tiến độ: the day the latest (behind) value was entered.
    None for statuses that are not slipping. The pipeline starts chasing on the following day.
    """
    if r.status not in SLIPPING:
        return None
    if r.status == "behind":
        return _recorded_on(r.judged, tz) or r.expected_at
    due = _report_due(sched, ind, r.period)
    if r.status == "no_data":
        return due or r.expected_at
    days = [d for d in (due, _recorded_on(r.judged, tz)) if d is not None]
    return max(days) if days else r.expected_at


def rows_for(kpi: KpiPack, pack: RulePack, results: list[TargetResult], as_of: date,
             sched: Schedule | None = None) -> list[ReportRow]:
    sched = sched or Schedule.of(pack)
    tz = ZoneInfo(pack.info.timezone)
    out: list[ReportRow] = []
    for r in results:
        t = r.target
        ind = kpi.indicators[t.indicator]
        g = kpi.groups[t.group]
        resp = _responsible(pack, ind.responsible, as_of)
        doc = kpi.documents.get(t.document)
        out.append(ReportRow(
            group=t.group, group_name=(f"{g.code}) " if g.code else "") + g.name, indicator=ind.id,
            indicator_name=ind.name, target=t.id, milestone=t.milestone, requirement=t.requirement(ind.unit),
            unit=ind.unit, kind=ind.kind, status=r.status,
            latest_value=r.latest.value if r.latest else None, latest_as_of=r.latest.as_of if r.latest else None,
            judged_value=r.judged.value if r.judged else None, judged_as_of=r.judged.as_of if r.judged else None,
            expected=r.expected, expected_at=r.expected_at, period=r.period, responsible=resp,
            responsible_name=pack.units[resp].name if resp in pack.units else resp,
            responsible_assumed=ind.responsible_assumption is not None, source_obligation=ind.source,
            basis=f"{doc.title if doc else t.document}, mục {t.section}", text=t.text, detail=r.detail,
            since=known_since(r, ind, sched, tz)))
    return out


def build_report(session: Session, pack: RulePack, as_of: date, kpi: KpiPack | None = None,
                 tolerance: float | None = None) -> list[ReportRow]:
    """Every target of the pack's KPI files with its status as of `as_of`."""
    kpi = kpi if kpi is not None else load_kpi_for_pack(pack)
    if not kpi.targets:
        return []
    return _remembered_rows(session, pack, kpi, as_of, tolerance)


# The last classifications and what they were computed from. Asked for by every evaluation pass
# (hourly; the soak: ≈12 times a simulated day), by the delivery pass whenever a KPI notice waits,
# and by the console's KPI page on each visit — and the answer changes only with the day, the
# rules or a value: at 20 years of monthly figures (18,600 values) classifying every target took
# ≈200 ms a request (stop 25's audit). Keyed by the values' version token (engine/kpi/values.py,
# ``values_version``: random, new with every write to kpi_values, by trigger, in the writing
# transaction — not a counter that a rolled-back write could repeat), so an answer with nothing
# new reads one row, not every value; the pack and its KPI definitions by identity (a reload makes
# new ones, and the older pack's answers are dropped then: a reload does not keep old packs alive).
_REMEMBERED = 4
_ROWS_CACHE: OrderedDict[tuple, tuple[RulePack, KpiPack, tuple[ReportRow, ...]]] = OrderedDict()
_ROWS_LOCK = threading.Lock()          # the console's threads and the daemon's jobs share it


# The values themselves, for the same token: a new day classifies again but need not read them
# again (at 20 years of monthly figures, 18,600 values, reading them was ≈120 ms of the day's first
# pass, classifying ≈45). One entry; the lists are shared — read them only. ≈3 MB at that size.
_VALUES_CACHE: list[tuple[tuple, dict[str, list[Obs]]]] = []


def forget_kpi_items() -> None:
    """Drop the remembered answers and values (benchmarks time the first pass of a day, which has none)."""
    with _ROWS_LOCK:
        _ROWS_CACHE.clear()
        _VALUES_CACHE.clear()


def _remembered_values(session: Session, kpi: KpiPack, version: str | None) -> dict[str, list[Obs]]:
    key = (version, tuple(kpi.indicators))
    with _ROWS_LOCK:
        if version is not None and _VALUES_CACHE and _VALUES_CACHE[0][0] == key:
            return _VALUES_CACHE[0][1]
    values = load_values(session, list(kpi.indicators))
    if version is not None:
        with _ROWS_LOCK:
            _VALUES_CACHE[:] = [(key, values)]
    return values


def _remembered_rows(session: Session, pack: RulePack, kpi: KpiPack, as_of: date,
                     tolerance: float | None) -> list[ReportRow]:
    version = values_version(session)          # before the values: a later write gives a new one
    key = (id(pack), id(kpi), as_of, tolerance, version)
    with _ROWS_LOCK:
        hit = _ROWS_CACHE.get(key)
        if version is not None and hit is not None and hit[0] is pack and hit[1] is kpi:
            _ROWS_CACHE.move_to_end(key)
            return list(hit[2])
    rows = _rows(kpi, pack, _remembered_values(session, kpi, version), as_of, tolerance)
    if version is not None:
        with _ROWS_LOCK:
            for k in [k for k, (p, _k, _r) in _ROWS_CACHE.items() if p is not pack]:
                del _ROWS_CACHE[k]
            _ROWS_CACHE[key] = (pack, kpi, tuple(rows))
            while len(_ROWS_CACHE) > _REMEMBERED:
                _ROWS_CACHE.popitem(last=False)
    return rows


def _rows(kpi: KpiPack, pack: RulePack, values: dict[str, list[Obs]], as_of: date,
          tolerance: float | None) -> list[ReportRow]:
    sched = Schedule.of(pack)
    return rows_for(kpi, pack, evaluate(kpi, pack, values, as_of, tolerance, sched), as_of, sched)


# --- for the notification pipeline --------------------------------------------------------------

@dataclass(frozen=True)
class KpiItem:
    """One slipping target for the digest of its responsible unit ("chỉ tiêu chậm tiến độ")."""
    key: str                  # stable: kpi|<target>|<status>|<period or milestone>; same fact → same key
    unit: str                 # responsible unit id on `as_of` (successors followed)
    indicator: str
    indicator_name: str
    target: str
    group: str
    milestone: date
    requirement: str          # "≥ 60 %", "nhóm 20 dẫn đầu (hạng ≤ 20)"
    status: str               # behind | missed | no_data
    status_vi: str            # Chậm tiến độ | Không đạt | Thiếu số liệu
    latest_value: float | None
    latest_value_text: str    # formatted with the unit ("48 %", "hạng 25", "Chưa")
    latest_as_of: date | None
    expected: float | None    # the plan's value at expected_at (path, or the year's requirement)
    expected_text: str
    expected_at: date | None
    period: str | None        # the missing period (no_data) or the judged year (flows)
    source_obligation: str    # the report that should carry the value
    detail: str               # one Vietnamese sentence, ready for the digest
    basis: str = ""           # "Căn cứ": the plan's title and section of the target
    since: date | None = None  # the first day this fact was known (report due day / value entered)

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "unit": self.unit, "indicator": self.indicator, "indicator_name": self.indicator_name,
                "target": self.target, "group": self.group, "milestone": self.milestone.isoformat(),
                "requirement": self.requirement, "status": self.status, "status_vi": self.status_vi,
                "latest_value": self.latest_value, "latest_value_text": self.latest_value_text,
                "latest_as_of": self.latest_as_of.isoformat() if self.latest_as_of else None,
                "expected": None if self.expected is None else round(self.expected, 4), "expected_text": self.expected_text,
                "expected_at": self.expected_at.isoformat() if self.expected_at else None, "period": self.period,
                "source_obligation": self.source_obligation, "detail": self.detail, "basis": self.basis,
                "since": self.since.isoformat() if self.since else None}


def _item(row: ReportRow) -> KpiItem:
    return KpiItem(key=f"kpi|{row.target}|{row.status}|{row.period or row.milestone.isoformat()}", unit=row.responsible,
                   indicator=row.indicator, indicator_name=row.indicator_name, target=row.target, group=row.group,
                   milestone=row.milestone, requirement=row.requirement, status=row.status, status_vi=row.status_vi,
                   latest_value=row.latest_value, latest_value_text=val_text(row.latest_value, row.unit),
                   latest_as_of=row.latest_as_of, expected=row.expected, expected_text=val_text(row.expected, row.unit),
                   expected_at=row.expected_at, period=row.period, source_obligation=row.source_obligation,
                   detail=row.detail, basis=row.basis, since=row.since)


def select_items(rows: list[ReportRow]) -> list[KpiItem]:
    """One item per fact a unit can act on, not one per target:
    no_data → one per (indicator, missing period), the nearest milestone;
    behind  → one per indicator, the nearest milestone (later targets share the same path);
    missed  → one per indicator, the latest milestone or year that was missed."""
    chosen: dict[tuple, ReportRow] = {}
    for r in rows:
        if r.status not in SLIPPING:
            continue
        key = (r.indicator, r.status, r.period if r.status == "no_data" else None)
        prev = chosen.get(key)
        if prev is None:
            chosen[key] = r
        elif r.status == "missed":
            if (r.period or r.milestone.isoformat()) > (prev.period or prev.milestone.isoformat()):
                chosen[key] = r
        elif r.milestone < prev.milestone:
            chosen[key] = r
    items = [_item(r) for r in chosen.values()]
    return sorted(items, key=lambda i: (i.unit, STATUS_ORDER[i.status], i.group, i.indicator, i.milestone))


def kpi_items(session: Session, pack: RulePack, as_of: date, kpi: KpiPack | None = None,
              tolerance: float | None = None) -> list[KpiItem]:
    """Slipping targets (behind / missed / no_data) for the digest, each addressed to its unit."""
    kpi = kpi if kpi is not None else load_kpi_for_pack(pack)
    if not kpi.targets:
        return []
    return select_items(_remembered_rows(session, pack, kpi, as_of, tolerance))


@dataclass
class KpiSummary:
    """The secretariat's view: counts per status and group, and every slipping target."""
    as_of: date
    total: int
    by_status: dict[str, int]
    by_group: dict[str, dict[str, int]]
    slipping: list[KpiItem] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"as_of": self.as_of.isoformat(), "total": self.total, "by_status": self.by_status,
                "by_status_vi": {STATUS_VI[k]: v for k, v in self.by_status.items()},
                "by_group": self.by_group, "slipping": [i.as_dict() for i in self.slipping]}

    def text(self) -> str:
        """Plain Vietnamese lines for an e-mail to the secretariat."""
        head = (f"Chỉ tiêu đến ngày {self.as_of:%d/%m/%Y}: {self.total} mục tiêu; "
                + ", ".join(f"{STATUS_VI[k]} {v}" for k, v in self.by_status.items() if v) + ".")
        lines = [head]
        for i in self.slipping:
            lines.append(f"- [{i.status_vi}] {i.indicator_name} – mốc {i.milestone:%d/%m/%Y} ({i.requirement}); "
                         f"đơn vị: {i.unit}. {i.detail}")
        return "\n".join(lines)


def secretariat_summary(session: Session, pack: RulePack, as_of: date, kpi: KpiPack | None = None,
                        tolerance: float | None = None) -> KpiSummary:
    """All targets counted, and every slipping target listed (not deduplicated), worst first."""
    return summary_of(build_report(session, pack, as_of, kpi, tolerance), as_of)


def kpi_status(session: Session, pack: RulePack, as_of: date, kpi: KpiPack | None = None,
               tolerance: float | None = None) -> tuple[list[ReportRow], list[KpiItem], KpiSummary]:
    """Rows, pipeline items and the secretariat's summary from ONE evaluation (the delivery pass
    needs all three at once)."""
    rows = build_report(session, pack, as_of, kpi, tolerance)
    return rows, select_items(rows), summary_of(rows, as_of)


def summary_of(rows: list[ReportRow], as_of: date) -> KpiSummary:
    by_status = {k: 0 for k in STATUS_VI}
    by_group: dict[str, dict[str, int]] = {}
    for r in rows:
        by_status[r.status] += 1
        by_group.setdefault(r.group, {k: 0 for k in STATUS_VI})[r.status] += 1
    slipping = sorted((_item(r) for r in rows if r.status in SLIPPING),
                      key=lambda i: (STATUS_ORDER[i.status], i.group, i.milestone, i.indicator))
    return KpiSummary(as_of, len(rows), by_status, by_group, slipping)


# --- XLSX ------------------------------------------------------------------------------------

_FILL = {"met": "C6EFCE", "on_track": "DDEBF7", "behind": "FFEB9C", "missed": "FFC7CE", "no_data": "E7E6E6",
         "not_due": "FFFFFF"}
_HEADERS = [("Nhóm", 28), ("Mã chỉ tiêu", 24), ("Chỉ tiêu", 48), ("Mốc", 12), ("Yêu cầu", 18), ("Loại", 16),
            ("Số liệu quyết định tình trạng", 16), ("Ngày số liệu", 13), ("Giá trị theo lộ trình", 18), ("Tình trạng", 18),
            ("Kỳ / năm", 10), ("Đơn vị chịu trách nhiệm", 32), ("Báo cáo cung cấp số liệu", 22),
            ("Căn cứ", 40), ("Nội dung trong văn bản", 60), ("Diễn giải", 60)]


def write_xlsx(rows: list[ReportRow], path: Path, as_of: date, title: str) -> None:
    """One sheet of all targets with a group column (filterable), plus a summary sheet."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "Chỉ tiêu"
    ws.append([h for h, _ in _HEADERS])
    bold = Font(bold=True, color="FFFFFF")
    head_fill = PatternFill("solid", fgColor="1F4E78")
    for c, (_, width) in enumerate(_HEADERS, start=1):
        cell = ws.cell(row=1, column=c)
        cell.font, cell.fill = bold, head_fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        ws.column_dimensions[get_column_letter(c)].width = width
    wrap = Alignment(wrap_text=True, vertical="top")
    for r in rows:
        unit_label = UNITS[r.unit].label
        ws.append([r.group_name, r.indicator, r.indicator_name, r.milestone, r.requirement, kind_label(r),
                   _cell_value(r.judged_value, r.unit), r.judged_as_of,
                   None if r.expected is None else round(r.expected, 2), r.status_vi, r.period,
                   r.responsible_name + (" (giả định)" if r.responsible_assumed else ""), r.source_obligation,
                   r.basis, r.text, r.detail])
        n = ws.max_row
        for c in range(1, len(_HEADERS) + 1):
            ws.cell(row=n, column=c).alignment = wrap
        ws.cell(row=n, column=4).number_format = "DD/MM/YYYY"
        ws.cell(row=n, column=8).number_format = "DD/MM/YYYY"
        for c in (7, 9):
            ws.cell(row=n, column=c).number_format = "0.00" if r.unit == "index" else "General"
            if unit_label and r.unit != "rank":
                ws.cell(row=n, column=c).number_format += f' "{unit_label}"'
        ws.cell(row=n, column=10).fill = PatternFill("solid", fgColor=_FILL[r.status])
    ws.freeze_panes = "D2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(_HEADERS))}{max(ws.max_row, 1)}"

    s = wb.create_sheet("Tổng hợp")
    s.append([title])
    s["A1"].font = Font(bold=True, size=13)
    s.append([f"Tình trạng đến ngày {as_of:%d/%m/%Y}"])
    s.append([])
    statuses = list(STATUS_VI)
    s.append(["Nhóm"] + [STATUS_VI[k] for k in statuses] + ["Tổng"])
    for c in range(1, len(statuses) + 3):
        s.cell(row=4, column=c).font = bold
        s.cell(row=4, column=c).fill = head_fill
    groups: dict[str, Counter] = {}
    for r in rows:
        groups.setdefault(r.group_name, Counter())[r.status] += 1
    total: Counter = Counter()
    for g, cnt in groups.items():
        s.append([g] + [cnt[k] for k in statuses] + [sum(cnt.values())])
        total.update(cnt)
    s.append(["Tổng cộng"] + [total[k] for k in statuses] + [sum(total.values())])
    s.cell(row=s.max_row, column=1).font = Font(bold=True)
    s.column_dimensions["A"].width = 48
    for c in range(2, len(statuses) + 3):
        s.column_dimensions[get_column_letter(c)].width = 16
    s.freeze_panes = "B5"
    wb.move_sheet("Tổng hợp", offset=-1)
    wb.active = 0
    neutralise_formulas(wb)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def _cell_value(v: float | None, unit: str) -> object:
    if v is None:
        return None
    if unit == "boolean":
        return "Có" if v >= 0.5 else "Chưa"
    return v
