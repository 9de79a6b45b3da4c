"""What the console's overview shows: counts per status, this week's deadlines, who is late, and
each unit's on-time rate with a ranking — computed from plain rows, not ORM objects.

Why its own module: the overview is read by every secretary many times a day, so it reads only
the columns it needs in one query (the instance table carries submitted_on, waived and
awaiting_since itself) and classifies them with the same rule as `dondoc status`
(engine.status.classify), so the console and the CLI never disagree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from engine.app.config import Settings
from engine.app.services import open_session
from engine.rules_loader import RulePack
from engine.state import InstanceRow
from engine.status import classify
from engine.vi import REPORT_STATUS


@dataclass(frozen=True)
class Item:
    id: int
    obligation: str
    title: str
    unit: str
    unit_name: str
    period_label: str
    due: date
    status: str
    wd_late: int = 0
    wd_left: int = 0


@dataclass(frozen=True)
class UnitRate:
    unit: str
    name: str
    on_time: int
    late: int
    missing: int

    @property
    def due(self) -> int:
        return self.on_time + self.late + self.missing

    @property
    def rate(self) -> float | None:
        return self.on_time / self.due if self.due else None


@dataclass(frozen=True)
class LateUnit:
    unit: str
    name: str
    items: int
    oldest_due: date
    wd_late: int


@dataclass
class Overview:
    today: date
    year: int
    counts: dict[str, int]
    due_this_week: list[Item]
    late_units: list[LateUnit]
    ranking: list[UnitRate]
    awaiting: int = 0
    total: int = 0
    counts_order: list[str] = field(default_factory=lambda: list(REPORT_STATUS))


COLUMNS = (InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period_label, InstanceRow.due,
           InstanceRow.submitted_on, InstanceRow.waived, InstanceRow.awaiting_since)


def overview(settings: Settings, pack: RulePack, today: date) -> Overview:
    """As of the end of ``today``: this year's instances due so far (and every earlier one still
    open), what falls due from today to Sunday, and the units with overdue reports."""
    year_start = date(today.year, 1, 1)
    week_end = today + timedelta(days=6 - today.weekday())
    with open_session(settings) as ses:
        rows = ses.execute(sa.select(*COLUMNS).where(
            InstanceRow.active == sa.true(),
            InstanceRow.due <= week_end,
            sa.or_(InstanceRow.due >= year_start, InstanceRow.closed == sa.false()))).all()
    counts: Counter[str] = Counter()
    week: list[Item] = []
    late: dict[str, list[Item]] = {}
    rates: dict[str, list[int]] = {}
    names = {u.id: u.name for u in pack.units.values()}
    titles = {o.id: o.title for o in pack.obligations.values()}
    for iid, ob, unit, label, due, sub, waived, awaiting in rows:
        status, wd_late, wd_left = classify(pack, due, today, sub, waived, ob, awaiting)
        item = Item(iid, ob, titles.get(ob, ob), unit, names.get(unit, unit), label, due, status, wd_late, wd_left)
        if due <= today or status in ("done_on_time", "done_late", "awaiting", "waived"):
            counts[status] += 1
        if today <= due <= week_end and status in ("in_progress", "due_soon", "awaiting", "overdue"):
            week.append(item)
        if status == "overdue":
            late.setdefault(unit, []).append(item)
        if due <= today and due >= year_start and status not in ("waived", "awaiting"):
            r = rates.setdefault(unit, [0, 0, 0])
            r[0 if status == "done_on_time" else 1 if status == "done_late" else 2] += 1
    week.sort(key=lambda i: (i.due, i.title, i.unit_name))
    late_units = sorted((LateUnit(u, names.get(u, u), len(items), min(i.due for i in items),
                                  max(i.wd_late for i in items)) for u, items in late.items()),
                        key=lambda x: (-x.items, -x.wd_late, x.name))
    ranking = sorted((UnitRate(u, names.get(u, u), *r) for u, r in rates.items()),
                     key=lambda x: (-(x.rate or 0.0), x.missing, x.late, x.name))
    return Overview(today, today.year, dict(counts), week, late_units, ranking, counts.get("awaiting", 0),
                    sum(counts.values()))
