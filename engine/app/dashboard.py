"""What the console's overview shows: counts per status, this week's deadlines, who is late, and
each unit's on-time rate with a ranking — computed from plain rows, not ORM objects.

Why its own module: the overview is read by every secretary many times a day, so it counts in the
database, per unit (the instance table carries submitted_on, waived and awaiting_since itself),
with the rule of `dondoc status` (engine.status.classify) written as an SQL expression
(status_sql) and classify itself for this week's rows, so the console and the CLI never disagree
(tests/test_web_cache.py compares the two on every instance); the page's lists are picked in the
database too (_per_unit), so a national installation's 8,548 units are not ordered in Python to
show 25 (tests/test_dashboard_sql.py compares it with the implementation it replaced).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
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
    late_count: int | None = None       # units with overdue reports; late_units may hold only the first
    ranked_count: int | None = None     # units ranked; ranking may hold only the first

    def __post_init__(self) -> None:
        if self.late_count is None:
            self.late_count = len(self.late_units)
        if self.ranked_count is None:
            self.ranked_count = len(self.ranking)


COLUMNS = (InstanceRow.id, InstanceRow.obligation, InstanceRow.unit, InstanceRow.period_label, InstanceRow.due,
           InstanceRow.submitted_on, InstanceRow.waived, InstanceRow.awaiting_since)
DONE_OR_DECIDED = ("done_on_time", "done_late", "awaiting", "waived")
LATE_SHOWN = 15                   # the overview page lists this many late units (the rest: /don-vi)
RANKED_SHOWN = 10                 # and this many of the ranking (overview.html slices the same)


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


def current_terms(today: date, upto: date) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """The instances the overview counts, due by ``upto``: this year's and every earlier one still
    open — the two terms of an OR (with ``active``), each searchable in one index
    (ix_instances_due; ix_instances_open_due), so the database reads about one year's rows and the
    open backlog, not every year's instances (0016; tests/test_console_reads.py reads the plans)."""
    year_start = date(today.year, 1, 1)
    return (sa.and_(InstanceRow.due >= year_start, InstanceRow.due <= upto),
            sa.and_(InstanceRow.closed == sa.false(), InstanceRow.active == sa.true(), InstanceRow.due < year_start))


def _per_unit(today: date, scope: tuple[sa.ColumnElement[bool], ...], late_shown: int | None,
              ranked_shown: int | None) -> sa.Select:
    """Per unit with instances in ``scope``: its overdue reports and their oldest due day; its
    reports of the ranking's window (this year, due by today) sent on time, sent late and neither
    (missing). With each row the installation's totals (reports overdue, waived, awaiting, sent on
    time, sent late; units late, units ranked). Given ``late_shown`` / ``ranked_shown``, only the
    units that may be among the first that many: ranked by their overdue reports, or by their
    on-time rate, missing and late reports, at most that rank — ties included, so the names that
    break them (the pack's, in Python) find every contender.

    The status is status_sql's, computed once per instance in a subquery the planner may not merge
    into the aggregate (``OFFSET 0``), so each count only compares a short string.

    Why: at national scale the overview grouped 94,000 instances per (unit, status, window), added
    the 21,500 groups up per unit in Python and ordered all 8,548 units twice to show 25 of them —
    as long as the scan itself. Counting with status_sql written into every aggregate, without the
    subquery, was slower (the CASE once per aggregate)."""
    inner = (sa.select(InstanceRow.unit, InstanceRow.due, status_sql(today).label("st"),
                       sa.and_(InstanceRow.due >= date(today.year, 1, 1), InstanceRow.due <= today).label("rated"))
             .where(*scope).offset(0).subquery())
    st, rated = inner.c.st, inner.c.rated

    def n(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.count().filter(cond)

    u = sa.select(inner.c.unit, n(st == "overdue").label("overdue"),
                  sa.func.min(inner.c.due).filter(st == "overdue").label("oldest"),
                  n(sa.and_(rated, st == "done_on_time")).label("ot"), n(sa.and_(rated, st == "done_late")).label("lt"),
                  n(sa.and_(rated, st.in_(("overdue", "open")))).label("ms"),
                  n(st == "waived").label("waived"), n(st == "awaiting").label("awaiting"),
                  n(st == "done_on_time").label("on_time"), n(st == "done_late").label("late")
                  ).group_by(inner.c.unit).subquery("u")
    rated_n = u.c.ot + u.c.lt + u.c.ms

    def everywhere(x: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
        """The sum over every unit, on each row (PostgreSQL adds bigints up as numeric: cast back)."""
        return sa.cast(sa.func.sum(x).over(), sa.BigInteger)

    is_late, is_ranked = sa.case((u.c.overdue > 0, 1), else_=0), sa.case((rated_n > 0, 1), else_=0)
    ranked = sa.select(u.c.unit, u.c.overdue, u.c.oldest, u.c.ot, u.c.lt, u.c.ms,
                       everywhere(u.c.overdue), everywhere(u.c.waived), everywhere(u.c.awaiting),
                       everywhere(u.c.on_time), everywhere(u.c.late), everywhere(is_late), everywhere(is_ranked),
                       sa.func.rank().over(order_by=u.c.overdue.desc()).label("late_rank"),
                       sa.func.rank().over(order_by=(sa.desc(sa.cast(u.c.ot, sa.Float) / sa.func.nullif(rated_n, 0))
                                                     .nulls_last(), u.c.ms, u.c.lt)).label("rate_rank"))
    if late_shown is None or ranked_shown is None:
        return ranked                           # every unit (overview() keeps what each list needs)
    r = ranked.subquery("r")                    # (rank 1 always: a row to carry the totals)
    return sa.select(r).where(sa.or_(r.c.late_rank <= max(late_shown, 1), r.c.rate_rank <= ranked_shown))


def overview(settings: Settings, pack: RulePack, today: date, *, late_shown: int | None = None,
             ranked_shown: int | None = None) -> Overview:
    """As of the end of ``today``: this year's instances due so far (and every earlier one still
    open), what falls due from today to Sunday, the units with overdue reports and the on-time
    ranking — all of them, or only the first ``late_shown`` / ``ranked_shown`` (with late_count and
    ranked_count saying how many there are): the page shows 15 and 10, and ordering and making an
    object for each of 8,500 units to show 25 cost more than the rest (tests/test_dashboard_sql.py
    checks both against the overview as computed before)."""
    week_end = today + timedelta(days=6 - today.weekday())
    scope = (InstanceRow.active == sa.true(), sa.or_(*current_terms(today, week_end)))
    with open_session(settings) as ses:
        conn = ses.connection()                                          # plain rows: no ORM result processing
        units = conn.execute(_per_unit(today, scope, late_shown, ranked_shown)).all()
        week_rows = conn.execute(sa.select(*COLUMNS).where(*scope, InstanceRow.due >= today)).all()
    names = {u.id: u.name for u in pack.units.values()}
    late: list[tuple[int, date, str]] = []                              # (overdue reports, oldest due, unit)
    rates: list[tuple[float, int, int, str, int]] = []                  # (−rate, missing, late, unit, on time)
    late_all = ranked_all = 0
    for unit, overdue, oldest, ot, lt, ms, *_totals, late_all, ranked_all, late_rank, rate_rank in units:
        if overdue and (late_shown is None or late_rank <= late_shown):
            late.append((overdue, oldest, unit))
        if ot + lt + ms and (ranked_shown is None or rate_rank <= ranked_shown):
            rates.append((-(ot / (ot + lt + ms)), ms, lt, unit, ot))
    # the totals are on every row (none: no instance at all); open ones are counted below when due
    # today (they need classify); no zero counts (as before)
    totals = units[0][6:11] if units else (0, 0, 0, 0, 0)
    counts: Counter[str] = Counter({k: v for k, v in zip(("overdue", "waived", "awaiting", "done_on_time", "done_late"),
                                                         totals) if v})
    titles = {o.id: o.title for o in pack.obligations.values()}
    week: list[Item] = []
    for iid, ob, unit, label, due, sub, waived, awaiting in week_rows:
        st, wd_late, wd_left = classify(pack, due, today, sub, bool(waived), ob, awaiting)
        if due <= today and st not in DONE_OR_DECIDED:                   # due today, still open
            counts[st] += 1
        if due <= week_end and st in ("in_progress", "due_soon", "awaiting", "overdue"):
            week.append(Item(iid, ob, titles.get(ob, ob), unit, names.get(unit, unit), label, due, st, wd_late, wd_left))
    week.sort(key=lambda i: (i.due, i.title, i.unit_name))
    wd_late: dict[date, int] = {}               # by the oldest due day (few distinct ones): the latest in working days
    for _n, oldest, _u in late:
        if oldest not in wd_late:
            wd_late[oldest] = pack.calendar.working_days_between(oldest, today)
    late_first = _first(late_shown, ((-n, -wd_late[oldest], names.get(u, u), u, n, oldest) for n, oldest, u in late))
    late_units = [LateUnit(u, name, n, oldest, -wd) for _n, wd, name, u, n, oldest in late_first]
    rate_first = _first(ranked_shown, ((r, ms, lt, names.get(u, u), u, ot) for r, ms, lt, u, ot in rates))
    ranking = [UnitRate(u, name, ot, lt, ms) for _r, ms, lt, name, u, ot in rate_first]
    return Overview(today, today.year, dict(counts), week, late_units, ranking, counts.get("awaiting", 0),
                    sum(counts.values()), late_count=late_all, ranked_count=ranked_all)


def _first(k: int | None, keys: Iterable[tuple]) -> list[tuple]:
    """The ``k`` smallest of ``keys`` in order, or all of them sorted: the same as sorted(keys)[:k]
    since no two keys are equal (each holds a unit id), in O(n log k)."""
    return sorted(keys) if k is None else heapq.nsmallest(k, keys)
