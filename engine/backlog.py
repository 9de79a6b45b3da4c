"""The backlog at go-live: what fell due before the tracking start and is not recorded.

Why a report and not mail: at a fresh install nobody has entered what the units already sent, so
every report due before the installation day would look late. dondoc does not chase those (see
engine/sync.py); the secretariat gets this list instead, with the codes `dondoc submit` and the
import need, so it can record what did arrive and, if it wishes, move the tracking start back
(DONDOC_TRACKING_START), after which the remaining items are chased again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select as sa_select
from sqlmodel import Session

from engine.instances import ReportItem, generate_instances
from engine.rules_loader import RulePack
from engine.state import InstanceRow

LOOKBACK_DAYS = 366          # without an earlier pack tracking_start: one year before the tracking start


BacklogItem = ReportItem   # a report due before the tracking start, not recorded


@dataclass
class Backlog:
    tracking_start: date            # nothing due before it is chased
    since: date                     # the first due day looked at
    items: list[BacklogItem] = field(default_factory=list)
    recorded: int = 0               # due in the same range, already recorded as submitted or waived

    def by_unit(self) -> list[tuple[str, str, int]]:
        """(unit, name, count), most items first."""
        c = Counter((i.unit, i.unit_name) for i in self.items)
        return [(u, n, k) for (u, n), k in sorted(c.items(), key=lambda t: (-t[1], t[0][0]))]

    def by_obligation(self) -> list[tuple[str, str, int, list[str]]]:
        """(obligation, title, count, period labels in due order), most items first."""
        c: Counter = Counter()
        periods: dict[str, dict[str, date]] = {}
        titles: dict[str, str] = {}
        for i in self.items:
            c[i.obligation] += 1
            titles[i.obligation] = i.obligation_title
            periods.setdefault(i.obligation, {})[i.period_label] = min(i.due, periods.get(i.obligation, {}).get(i.period_label, i.due))
        return [(o, titles[o], k, sorted(periods[o], key=periods[o].__getitem__))
                for o, k in sorted(c.items(), key=lambda t: (-t[1], t[0]))]

    def as_dict(self) -> dict[str, object]:
        return {"tracking_start": self.tracking_start.isoformat(), "since": self.since.isoformat(),
                "count": len(self.items), "recorded": self.recorded,
                "by_unit": [{"unit": u, "unit_name": n, "count": k} for u, n, k in self.by_unit()],
                "by_obligation": [{"obligation": o, "obligation_title": t, "count": k, "periods": p}
                                  for o, t, k, p in self.by_obligation()],
                "items": [i.as_dict() for i in self.items]}


def default_since(pack: RulePack, tracking_start: date) -> date:
    """The pack's tracking_start when it is earlier (the plans' own start of follow-up), else a year back."""
    pts = pack.info.tracking_start
    if pts is not None and pts < tracking_start:
        return pts
    return tracking_start - timedelta(days=LOOKBACK_DAYS)


def build_backlog(session: Session, pack: RulePack, tracking_start: date, since: date | None = None,
                  unit: str | None = None) -> Backlog:
    """Every instance the rules define with a due day in [since, tracking_start) that the state does
    not record as submitted or waived, by unit then obligation then due day. Units are the ones that
    owed the report on its due day (the codes `submit` takes)."""
    lo = since or default_since(pack, tracking_start)
    out = Backlog(tracking_start, lo)
    hi = tracking_start - timedelta(days=1)
    if hi < lo:
        return out
    planned = generate_instances(pack, lo, hi, unit=unit, tracking_start=tracking_start)
    closed = {(o, u, p) for o, u, p in session.execute(
        sa_select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.period)
        .where(InstanceRow.closed == True, InstanceRow.due >= lo, InstanceRow.due <= hi)).all()}  # noqa: E712

    def name(uid: str) -> str:
        u = pack.units.get(uid)
        return u.name if u is not None else uid

    for i in planned:
        if i.key in closed:
            out.recorded += 1
            continue
        ob = pack.obligations[i.obligation]
        out.items.append(BacklogItem(i.obligation, ob.title, i.unit, name(i.unit), i.period, i.period_label, i.due,
                                     i.recipient, name(i.recipient)))
    out.items.sort(key=lambda i: (i.unit_name, i.unit, i.obligation, i.due, i.period))
    return out


_ITEM_HEADERS = [("Đơn vị", 40), ("Mã đơn vị", 22), ("Báo cáo", 56), ("Mã nghĩa vụ", 22), ("Kỳ", 20),
                 ("Mã kỳ", 10), ("Hạn nộp", 12), ("Nơi nhận", 34), ("Ngày nộp", 12), ("Số ký hiệu", 18)]


def write_backlog_xlsx(b: Backlog, path: Path, title: str) -> None:
    """Sheets: a summary (by unit, by obligation) and every item with the codes `submit` and the
    import need, plus empty "Ngày nộp"/"Số ký hiệu" columns for the secretary to fill. Text that a
    spreadsheet could run as a formula is neutralised (engine.xlsx_safe.neutralise_formulas)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    from engine.xlsx_safe import neutralise_formulas

    bold = Font(bold=True, color="FFFFFF")
    head_fill = PatternFill("solid", fgColor="1F4E78")

    def header(ws, row: int, names: list[tuple[str, int]]) -> None:
        for c, (h, width) in enumerate(names, start=1):
            cell = ws.cell(row=row, column=c, value=h)
            cell.font, cell.fill = bold, head_fill
            cell.alignment = Alignment(wrap_text=True, vertical="center")
            ws.column_dimensions[get_column_letter(c)].width = max(ws.column_dimensions[get_column_letter(c)].width or 0, width)

    wb = Workbook()
    s = wb.active
    s.title = "Tổng hợp"
    s.append([title])
    s["A1"].font = Font(bold=True, size=13)
    s.append([f"Báo cáo có hạn nộp từ {b.since:%d/%m/%Y} đến trước ngày bắt đầu theo dõi {b.tracking_start:%d/%m/%Y}, "
              f"chưa ghi nhận đã nộp hay được miễn: {len(b.items)} (đã ghi nhận: {b.recorded})."])
    s.append(["dondoc không nhắc các báo cáo này. Ghi nhận báo cáo đã nhận (dondoc submit hoặc nhập tệp); "
              "muốn đôn đốc tiếp thì dời ngày bắt đầu theo dõi (DONDOC_TRACKING_START) về trước."])
    s.append([])
    header(s, 5, [("Đơn vị", 44), ("Mã đơn vị", 22), ("Số báo cáo", 12)])
    for u, n, k in b.by_unit():
        s.append([n, u, k])
    s.append([])
    r0 = s.max_row + 1
    header(s, r0, [("Báo cáo", 44), ("Mã nghĩa vụ", 22), ("Số báo cáo", 12), ("Các kỳ", 60)])
    for o, t, k, periods in b.by_obligation():
        s.append([t, o, k, ", ".join(periods)])

    ws = wb.create_sheet("Danh sách")
    header(ws, 1, _ITEM_HEADERS)
    wrap = Alignment(wrap_text=True, vertical="top")
    for i in b.items:
        ws.append([i.unit_name, i.unit, i.obligation_title, i.obligation, i.period_label, i.period, i.due,
                   i.recipient_name, None, None])
        n = ws.max_row
        for c in range(1, len(_ITEM_HEADERS) + 1):
            ws.cell(row=n, column=c).alignment = wrap
        ws.cell(row=n, column=6).number_format = "@"        # "2026" stays the text code, not a number
        ws.cell(row=n, column=7).number_format = "DD/MM/YYYY"
        ws.cell(row=n, column=9).number_format = "DD/MM/YYYY"
    ws.freeze_panes = "C2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(_ITEM_HEADERS))}{max(ws.max_row, 1)}"
    neutralise_formulas(wb)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
