"""The overview counted per unit in SQL (engine.app.dashboard.overview: one row per unit, the page's
first late units and first of the ranking picked without ordering the rest) is the overview as it
was computed before (commit HEAD of 05/12: grouped per unit, status and window, added up and
ordered in Python; kept below as the oracle), on a seeded console whose instances are in every
status, on many days, on SQLite and on PostgreSQL; and the page shows the same.

Why: at national scale (8,548 units) the overview's first load after a write took ≈130 ms, half
of it adding up 21,500 groups and ordering every unit in Python to show 25 of them
(benchmarks/README.md, "National scale on PostgreSQL"); the faster path must show exactly what the
slow one showed — the same counts, this week's rows, late units, ranking and how many of each.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.app import dashboard
from engine.app.config import Settings
from engine.app.dashboard import COLUMNS, DONE_OR_DECIDED, Item, LateUnit, Overview, UnitRate, status_sql
from engine.app.services import open_session
from engine.rules_loader import RulePack
from engine.state import InstanceRow
from engine.status import classify
from tests.web_support import Console, status_facts

TODAY = date(2026, 12, 16)           # the day the statuses below are spread around
DAYS = sorted({date(2026, m, d) for m in (1, 2, 4, 6, 9, 11) for d in (5, 20)}
              | {date(2026, 12, 2), date(2026, 12, 5), date(2026, 12, 6), date(2026, 12, 7), TODAY,
                 date(2026, 12, 31), date(2027, 1, 4), date(2027, 2, 15)})
GONE = "don-vi-da-giai-the"           # a unit the rules no longer list, with instances kept
SAT, SUN = date(2026, 11, 7), date(2026, 11, 8)   # the same number of working days late from any later day


# ─── the oracle: dashboard.overview as it was (HEAD, before it was counted per unit in SQL) ──────
def old_overview(settings: Settings, pack: RulePack, today: date) -> Overview:
    year_start = date(today.year, 1, 1)
    week_end = today + timedelta(days=6 - today.weekday())
    scope = (InstanceRow.active == sa.true(), InstanceRow.due <= week_end,
             sa.or_(InstanceRow.due >= year_start, InstanceRow.closed == sa.false()))
    status = status_sql(today).label("status")
    rated = sa.and_(InstanceRow.due >= year_start, InstanceRow.due <= today).label("rated")
    with open_session(settings) as ses:
        conn = ses.connection()
        groups = conn.execute(sa.select(InstanceRow.unit, status, rated, sa.func.count(), sa.func.min(InstanceRow.due))
                              .where(*scope).group_by(InstanceRow.unit, status, rated)).all()
        week_rows = conn.execute(sa.select(*COLUMNS).where(*scope, InstanceRow.due >= today)).all()
    names = {u.id: u.name for u in pack.units.values()}
    titles = {o.id: o.title for o in pack.obligations.values()}
    counts: Counter[str] = Counter()
    late: dict[str, list] = {}
    rates: dict[str, list[int]] = {}
    for unit, st, in_window, n, oldest in groups:
        if st != "open":
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
        if due <= today and st not in DONE_OR_DECIDED:
            counts[st] += 1
        if due <= week_end and st in ("in_progress", "due_soon", "awaiting", "overdue"):
            week.append(Item(iid, ob, titles.get(ob, ob), unit, names.get(unit, unit), label, due, st, wd_late, wd_left))
    week.sort(key=lambda i: (i.due, i.title, i.unit_name))
    wd_late: dict[date, int] = {}
    for _n, oldest in late.values():
        if oldest not in wd_late:
            wd_late[oldest] = pack.calendar.working_days_between(oldest, today)
    late_keyed = sorted((-n, -wd_late[oldest], names.get(u, u), u, n, oldest) for u, (n, oldest) in late.items())
    late_units = [LateUnit(u, name, n, oldest, -wd) for _n, wd, name, u, n, oldest in late_keyed]
    rate_keyed = sorted((-(ot / (ot + lt + ms)), ms, lt, names.get(u, u), u, ot) for u, (ot, lt, ms) in rates.items())
    ranking = [UnitRate(u, name, ot, lt, ms) for _r, ms, lt, name, u, ot in rate_keyed]
    return Overview(today, today.year, dict(counts), week, late_units, ranking, counts.get("awaiting", 0),
                    sum(counts.values()))


# ─── a console with instances in every status ───────────────────────────────────────────────────
def _spread(con: Console) -> tuple[str, str]:
    """Give the seeded instances every status around TODAY (and facts recorded after it, which must
    not count before), retire some, keep a unit the rules no longer list, leave reports of last
    year open, and make two units late by one report each, due on a Saturday and a Sunday (the
    same working days late: their order is their names'). Returns those two units."""
    with open_session(con.settings) as ses:
        conn = ses.connection()
        rows = conn.execute(sa.select(InstanceRow.id, InstanceRow.due, InstanceRow.unit)
                            .order_by(InstanceRow.id)).all()
        sat_unit, sun_unit = sorted({u for _i, _d, u in rows} - {rows[0].unit})[3:5]
        for iid, due, unit in rows:
            k = iid % 13
            values: dict[str, object] = {}
            if unit in (sat_unit, sun_unit):
                values = {"waived": True, "closed": True}
            elif k <= 6:
                values = status_facts(k, iid, due, TODAY)
            elif k == 7:
                values = {"submitted_on": due, "closed": True}                                 # on the day
            elif k == 8 and iid % 2 == 0:                                                      # last year, open
                values = {"due": due.replace(year=2025)}
            elif k == 8:                                                                       # last year, closed
                values = {"due": due.replace(year=2025), "closed": True}
            if values:
                conn.execute(sa.update(InstanceRow).where(InstanceRow.id == iid).values(**values))
        for unit, day in ((sat_unit, SAT), (sun_unit, SUN)):
            first = conn.execute(sa.select(sa.func.min(InstanceRow.id)).where(InstanceRow.unit == unit)).scalar_one()
            conn.execute(sa.update(InstanceRow).where(InstanceRow.id == first)
                         .values(waived=False, closed=False, active=True, due=day))
        keep = [c.name for c in InstanceRow.__table__.columns if c.name != "id"]
        src = sa.select(*[(sa.literal(GONE).label("unit") if n == "unit" else InstanceRow.__table__.c[n])
                          for n in keep]).where(InstanceRow.unit == rows[0].unit)
        conn.execute(sa.insert(InstanceRow.__table__).from_select(keep, src))
        ses.commit()
    return sat_unit, sun_unit


def _console(base: Path, url: str | None) -> Console:
    con = Console(base, env={"DONDOC_DATABASE_URL": url} if url else None)
    con.tied = _spread(con)  # type: ignore[attr-defined]
    return con


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def con(request, tmp_path_factory) -> Console:
    if request.param == "sqlite":
        return _console(tmp_path_factory.mktemp("dashboard-sqlite"), None)
    server = request.getfixturevalue("pg_server")
    return _console(tmp_path_factory.mktemp("dashboard-pg"), server.create_db("dashboard_sql"))


def _shown(full: Overview, late_shown: int, ranked_shown: int) -> Overview:
    """What the overview with the page's limits must be: the full one, its lists cut."""
    return Overview(full.today, full.year, full.counts, full.due_this_week, full.late_units[:late_shown],
                    full.ranking[:ranked_shown], full.awaiting, full.total, late_count=len(full.late_units),
                    ranked_count=len(full.ranking))


def test_the_overview_is_the_one_computed_before(con: Console) -> None:
    seen: set[str] = set()
    tied_ranks = late_shown_cut = 0
    for day in DAYS:
        old = old_overview(con.settings, con.pack, day)
        new = dashboard.overview(con.settings, con.pack, day)
        assert new.counts == old.counts, day
        assert new.due_this_week == old.due_this_week, day
        assert new.late_units == old.late_units, day
        assert new.ranking == old.ranking, day
        assert new == old, day
        for late_n, ranked_n in ((dashboard.LATE_SHOWN, dashboard.RANKED_SHOWN), (1, 1), (3, 7), (0, 0), (10**6, 10**6)):
            cut = dashboard.overview(con.settings, con.pack, day, late_shown=late_n, ranked_shown=ranked_n)
            assert cut == _shown(old, late_n, ranked_n), (day, late_n, ranked_n)
        seen |= set(old.counts) | {i.status for i in old.due_this_week}
        keys = Counter((r.rate, r.missing, r.late) for r in old.ranking)
        tied_ranks += sum(n for n in keys.values() if n > 1)
        late_shown_cut += len(old.late_units) > dashboard.LATE_SHOWN
    # the comparison meant something: every status, ties the names decide, lists longer than shown
    assert seen >= {"done_on_time", "done_late", "overdue", "waived", "awaiting", "due_soon", "in_progress"}
    assert tied_ranks > 0 and late_shown_cut > 0
    sat_unit, sun_unit = con.tied  # type: ignore[attr-defined]
    late = {u.unit: u for u in old_overview(con.settings, con.pack, TODAY).late_units}
    assert (late[sat_unit].items, late[sat_unit].wd_late) == (late[sun_unit].items, late[sun_unit].wd_late)
    assert late[sat_unit].oldest_due == SAT and late[sun_unit].oldest_due == SUN
    assert any(u.unit == GONE for u in late.values())


def test_the_page_shows_what_it_showed(con: Console) -> None:
    """The overview page's content, rendered by the console, is the template rendered from the old
    full lists (15 late units and 10 of the ranking shown, and how many there are)."""
    pages = con.app.state.pages
    today = con.now.date()
    old = old_overview(con.settings, con.pack, today)
    assert len(old.late_units) > 15 and len(old.ranking) > 10
    full = pages.env.get_template("overview.html").render(
        request=None, login=None, user=None, csrf="", nav="overview", title="Tổng quan", flash=None, today=today,
        data=old, secret_missing=False)
    want = re.search(r"<main>.*</main>", full, re.S).group(0)
    got = con.client("thu.ky").get("/").text
    assert want in got
    assert f"Xem cả {len(old.late_units)} đơn vị chậm nộp" in got
    assert f"Xếp hạng đủ {len(old.ranking)} đơn vị" in got
