"""What the console's overview shows: counts per status, this week's deadlines, who is late, and
each unit's on-time rate with a ranking — computed from plain rows, not ORM objects.

Why its own module: the overview is read by every secretary many times a day, so it counts in the
database, grouped by unit and status (the instance table carries submitted_on, waived and
awaiting_since itself), with the rule of `dondoc status` (engine.status.classify) written as an
SQL expression (status_sql) and classify itself for this week's rows, so the console and the CLI
never disagree (tests/test_web_cache.py compares the two on every instance).
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
DONE_OR_DECIDED = ("done_on_time", "done_late", "awaiting", "waived")


def status_sql(today: date) -> sa.ColumnElement[str]:
    """engine.status.classify's status as of the end of ``today``, as an SQL expression, except
    that "in_progress" and "due_soon" are both "open" (telling them apart counts working days to
    the due day and reads the reminder policy: done in Python for the few rows that need it).

    Why in SQL: the overview counts 25,000 instances; grouped by the database it reads a few
    thousand rows instead (tests/test_web_cache.py checks it against classify row by row)."""
    sent = sa.and_(InstanceRow.submitted_on.is_not(None), InstanceRow.submitted_on <= today)
    return sa.case(
        (InstanceRow.waived == sa.true(), "waived"),
        (sa.and_(sent, InstanceRow.submitted_on <= InstanceRow.due), "done_on_time"),
        (sent, "done_late"),
        (sa.and_(InstanceRow.awaiting_since.is_not(None), InstanceRow.awaiting_since <= today), "awaiting"),
        (InstanceRow.due < today, "overdue"),
        else_="open")


def overview(settings: Settings, pack: RulePack, today: date) -> Overview:
    """As of the end of ``today``: this year's instances due so far (and every earlier one still
    open), what falls due from today to Sunday, and the units with overdue reports."""
    year_start = date(today.year, 1, 1)
    week_end = today + timedelta(days=6 - today.weekday())
    scope = (InstanceRow.active == sa.true(), InstanceRow.due <= week_end,
             sa.or_(InstanceRow.due >= year_start, InstanceRow.closed == sa.false()))
    status = status_sql(today).label("status")
    rated = sa.and_(InstanceRow.due >= year_start, InstanceRow.due <= today).label("rated")
    with open_session(settings) as ses:
        conn = ses.connection()                                          # plain rows: no ORM result processing
        # one pass over the instances, grouped: per unit and status, in the ranking's window or not
        groups = conn.execute(sa.select(InstanceRow.unit, status, rated, sa.func.count(), sa.func.min(InstanceRow.due))
                              .where(*scope).group_by(InstanceRow.unit, status, rated)).all()
        week_rows = conn.execute(sa.select(*COLUMNS).where(*scope, InstanceRow.due >= today)).all()
    names = {u.id: u.name for u in pack.units.values()}
    titles = {o.id: o.title for o in pack.obligations.values()}
    counts: Counter[str] = Counter()
    late: dict[str, list] = {}                                          # unit → [items, oldest due]
    rates: dict[str, list[int]] = {}
    for unit, st, in_window, n, oldest in groups:
        if st != "open":                         # open ones: counted below when due today (they need classify)
            counts[st] += n
        if st == "overdue":
            u = late.setdefault(unit, [0, oldest])
            u[0] += n
            u[1] = min(u[1], oldest)
        if in_window and st not in ("waived", "awaiting"):
            r = rates.setdefault(unit, [0, 0, 0])
            r[0 if st == "done_on_time" else 1 if st == "done_late" else 2] += n
    week: list[Item] = []
    for iid, ob, unit, label, due, sub, waived, awaiting in week_rows:
        st, wd_late, wd_left = classify(pack, due, today, sub, bool(waived), ob, awaiting)
        if due <= today and st not in DONE_OR_DECIDED:                   # due today, still open
            counts[st] += 1
        if due <= week_end and st in ("in_progress", "due_soon", "awaiting", "overdue"):
            week.append(Item(iid, ob, titles.get(ob, ob), unit, names.get(unit, unit), label, due, st, wd_late, wd_left))
    week.sort(key=lambda i: (i.due, i.title, i.unit_name))
    wd_late: dict[date, int] = {}               # by the oldest due day (few distinct ones): the latest in working days
    for _n, oldest in late.values():
        if oldest not in wd_late:
            wd_late[oldest] = pack.calendar.working_days_between(oldest, today)
    # Sorted as plain tuples, the objects made once in order (a national installation: ~8,500 units).
    late_keyed = sorted((-n, -wd_late[oldest], names.get(u, u), u, n, oldest) for u, (n, oldest) in late.items())
    late_units = [LateUnit(u, name, n, oldest, -wd) for _n, wd, name, u, n, oldest in late_keyed]
    rate_keyed = sorted((-(ot / (ot + lt + ms)), ms, lt, names.get(u, u), u, ot) for u, (ot, lt, ms) in rates.items())
    ranking = [UnitRate(u, name, ot, lt, ms) for _r, ms, lt, name, u, ot in rate_keyed]
    return Overview(today, today.year, dict(counts), week, late_units, ranking, counts.get("awaiting", 0),
                    sum(counts.values()))
