"""The matrix computed for the page shown (engine.app.browse.matrix: counts and columns grouped in
SQL, only the page's units' instances read) is the matrix computed from every instance of the
report (the previous implementation, kept below as the oracle), on a seeded console whose
instances are in every status, for every report, recipient, unit kind, year and page; and so
are the status lists (``?tinh-trang=``, narrowed in SQL) and the years offered.

Why: the national installation's first matrix load after a write read 100,000 instances to show
200 rows (benchmarks/README.md, "National scale on PostgreSQL"); the faster path must show
exactly what the slow one showed — the same counts, columns, rows, cells and pages.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.app import browse
from engine.app.browse import (_INST, Cell, Column, ListItem, Matrix, MatrixQuery, MatrixRow, StatusList, _heading,
                               _Judge, _selected, _unit_order, obligation_title, unit_name, year_span)
from engine.app.config import Settings
from engine.app.services import open_session
from engine.rules_loader import RulePack
from engine.state import InstanceRow
from tests.web_support import Console, status_facts

TODAY = date(2026, 12, 16)         # 18/12 is 2 working days away: some reports are "due soon"
DAYS = (date(2026, 12, 2), TODAY, date(2027, 1, 18))   # the console's day, the statuses' day, a due day
GONE = "don-vi-da-giai-the"          # a unit the rules no longer list, with instances kept


# ─── the oracles: browse.matrix and status_list before they were narrowed in SQL (commit 8be5d7d) ─
def old_matrix(settings: Settings, pack: RulePack, today: date, q: MatrixQuery) -> Matrix:
    lo, hi = year_span(q.year)
    obs = _selected(pack, q)
    stmt = sa.select(*_INST).where(InstanceRow.active == sa.true(), InstanceRow.due >= lo, InstanceRow.due <= hi)
    if obs is not None:
        stmt = stmt.where(InstanceRow.obligation.in_(obs) if len(obs) != 1 else InstanceRow.obligation == obs[0])
    with open_session(settings) as ses:
        rows = ses.connection().execute(stmt).all()
    judge = _Judge(pack, today)
    by_month = q.obligation is None
    kind_units = {u.id for u in pack.units.values() if u.kind == q.kind} if q.kind else None
    titles = {o.id: o.title for o in pack.obligations.values()}
    cols: dict[str, Column] = {}
    col_sort: dict[str, tuple[date, str]] = {}
    grid: dict[str, dict[str, list[tuple[int, str, str, date, str]]]] = {}
    counts: Counter[str] = Counter()
    seen_obs: set[str] = set()
    for iid, ob, unit, period, label, due, sub, waived, awaiting in rows:
        if kind_units is not None and unit not in kind_units:
            continue
        status = judge(ob, due, sub, waived, awaiting)
        counts[status] += 1
        seen_obs.add(ob)
        if by_month:
            key = f"{due.month:02d}"
            if key not in cols:
                cols[key] = Column(key, f"Tháng {due.month:02d}")
                col_sort[key] = (date(q.year, due.month, 1), key)
        else:
            key = period
            if key not in cols or due < (cols[key].due or due):
                cols[key] = Column(key, label, due)
                col_sort[key] = (due, key)
        grid.setdefault(unit, {}).setdefault(key, []).append((iid, ob, label, due, status))
    keys = sorted(cols, key=lambda k: col_sort[k])
    order = _unit_order(pack)
    units = sorted(grid, key=lambda u: (order.get(u, len(order)), u))
    per_page = browse.PAGE_UNITS
    pages = max(1, -(-len(units) // per_page))
    page = min(max(q.page, 1), pages)
    out_rows = []
    for unit in units[(page - 1) * per_page:page * per_page]:
        cells = grid[unit]
        out_rows.append(MatrixRow(unit, unit_name(pack, unit), [
            [Cell(iid, ob, titles.get(ob, ob), label, due, status)
             for iid, ob, label, due, status in sorted(cells.get(k, ()), key=lambda c: (c[3], titles.get(c[1], "")))]
            for k in keys]))
    listed = [(o.id, o.title) for o in pack.obligations.values() if o.id in seen_obs]
    return Matrix(q, _heading(pack, q), by_month, [cols[k] for k in keys], out_rows, dict(counts), listed,
                  len(units), page, pages)


def old_status_list(settings: Settings, pack: RulePack, today: date, q: MatrixQuery) -> StatusList:
    current = q.year == today.year
    obs = _selected(pack, q)
    if current:
        week_end = today + timedelta(days=6 - today.weekday())
        stmt = sa.select(*_INST).where(
            InstanceRow.active == sa.true(), InstanceRow.due <= week_end,
            sa.or_(InstanceRow.due >= date(today.year, 1, 1), InstanceRow.closed == sa.false()))
    else:
        lo, hi = year_span(q.year)
        stmt = sa.select(*_INST).where(InstanceRow.active == sa.true(), InstanceRow.due >= lo, InstanceRow.due <= hi)
    if obs is not None:
        stmt = stmt.where(InstanceRow.obligation.in_(obs))
    with open_session(settings) as ses:
        rows = ses.connection().execute(stmt).all()
    judge = _Judge(pack, today)
    kind_units = {u.id for u in pack.units.values() if u.kind == q.kind} if q.kind else None
    items: list[ListItem] = []
    for iid, ob, unit, period, label, due, sub, waived, awaiting in rows:
        if kind_units is not None and unit not in kind_units:
            continue
        status = judge(ob, due, sub, waived, awaiting)
        if status != q.status:
            continue
        if not current or due <= today or status in ("done_on_time", "done_late", "awaiting", "waived"):
            items.append(ListItem(iid, unit, unit_name(pack, unit), ob, obligation_title(pack, ob), label, due, status,
                                  sub if sub is not None and sub <= today else None))
    items.sort(key=lambda i: (i.due, i.title, i.unit_name))
    return StatusList(q, today, items[:browse.LIST_LIMIT], len(items))


def old_years_available(settings: Settings, today: date, selected: int | None = None) -> list[int]:
    with open_session(settings) as ses:
        lo, hi = ses.execute(sa.select(sa.func.min(InstanceRow.due), sa.func.max(InstanceRow.due))).one()
    years = {today.year} | ({selected} if selected else set())
    if lo is not None and hi is not None:
        years |= set(range(lo.year, hi.year + 1))
    return sorted(years, reverse=True)


# ─── a console with instances in every status ───────────────────────────────────────────────────
def _spread(con: Console) -> Counter[str]:
    """Give the seeded instances every status as of TODAY (and a few facts recorded after it, which
    must not count yet), retire some, and keep a unit the rules no longer list; returns the
    statuses as classify sees them."""
    with open_session(con.settings) as ses:
        conn = ses.connection()
        rows = conn.execute(sa.select(InstanceRow.id, InstanceRow.due).order_by(InstanceRow.id)).all()
        for iid, due in rows:
            values = status_facts(iid % 11, iid, due, TODAY)
            if values:
                conn.execute(sa.update(InstanceRow).where(InstanceRow.id == iid).values(**values))
        # history the years offered must include: a retired instance of 2024, a waived one of 2029
        first = rows[0][0]
        conn.execute(sa.update(InstanceRow).where(InstanceRow.id == first).values(active=False, due=date(2024, 6, 28)))
        conn.execute(sa.update(InstanceRow).where(InstanceRow.id == rows[1][0])
                     .values(waived=True, closed=True, due=date(2029, 3, 2)))
        # a period whose due day differs between units (the due rule changed after one was made):
        # its column is named by the earliest
        oct_ = (InstanceRow.obligation == "khhd57-thang", InstanceRow.period == "2026-10")
        was = conn.execute(sa.select(sa.func.min(InstanceRow.due)).where(*oct_)).scalar_one()
        conn.execute(sa.update(InstanceRow).where(*oct_, InstanceRow.unit == "so-noi-vu")
                     .values(due=was + timedelta(days=1), period_label="Tháng 10/2026 (hạn cũ)"))
        conn.execute(sa.update(InstanceRow).where(*oct_, InstanceRow.unit == "so-tai-chinh")
                     .values(due=was - timedelta(days=2), period_label="Tháng 10/2026 (hạn mới)"))
        # a unit no longer in the rules (its instances stay; it sorts after the rules' units)
        keep = [c.name for c in InstanceRow.__table__.columns if c.name != "id"]
        src = sa.select(*[(sa.literal(GONE).label("unit") if n == "unit" else InstanceRow.__table__.c[n])
                          for n in keep]).where(InstanceRow.unit == "so-noi-vu")
        conn.execute(sa.insert(InstanceRow.__table__).from_select(keep, src))
        ses.commit()
        rows = ses.connection().execute(sa.select(*_INST).where(InstanceRow.active == sa.true())).all()
    judge = _Judge(con.pack, TODAY)
    return Counter(judge(ob, due, sub, w, aw) for _i, ob, _u, _p, _l, due, sub, w, aw in rows)


def _console(base: Path, url: str | None) -> Console:
    con = Console(base, env={"DONDOC_DATABASE_URL": url} if url else None)
    statuses = _spread(con)
    assert set(statuses) == set(browse.STATUS_ORDER), statuses     # every status is there to compare
    return con


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def con(request, tmp_path_factory) -> Console:
    if request.param == "sqlite":
        return _console(tmp_path_factory.mktemp("matrix-sqlite"), None)
    server = request.getfixturevalue("pg_server")
    return _console(tmp_path_factory.mktemp("matrix-pg"), server.create_db("browse_matrix_sql"))


def _queries(pack: RulePack) -> list[MatrixQuery]:
    kinds = sorted({u.kind for u in pack.units.values()}) + ["khac"]
    recipients = sorted({o.recipient for o in pack.obligations.values()})
    qs = [MatrixQuery(2026), MatrixQuery(2027), MatrixQuery(2025), MatrixQuery(2024), MatrixQuery(2029)]
    qs += [MatrixQuery(2026, obligation=o) for o in pack.obligations]
    qs += [MatrixQuery(2027, obligation=o) for o in list(pack.obligations)[:5]]
    qs += [MatrixQuery(2026, recipient=r) for r in recipients] + [MatrixQuery(2026, recipient="so-noi-vu")]
    qs += [MatrixQuery(2026, kind=k) for k in kinds]
    qs += [MatrixQuery(2026, obligation=o, kind=k) for o in list(pack.obligations)[:4] for k in kinds[:4]]
    qs += [MatrixQuery(2026, recipient=r, kind=k) for r in recipients[:3] for k in kinds]
    return qs


def _same(con: Console, q: MatrixQuery, today: date = TODAY) -> None:
    new, old = browse.matrix(con.settings, con.pack, today, q), old_matrix(con.settings, con.pack, today, q)
    assert new.counts == old.counts, q
    assert new.columns == old.columns, q
    assert (new.unit_count, new.page, new.pages) == (old.unit_count, old.page, old.pages), q
    assert [r.unit for r in new.rows] == [r.unit for r in old.rows], q
    assert new == old, q


def test_the_matrix_is_the_one_computed_from_every_instance(con: Console) -> None:
    queries = _queries(con.pack)
    for today in DAYS:
        for q in queries:
            _same(con, q, today)
    # and the page holds what it should: the unit no longer in the rules comes last, with its cells
    m = browse.matrix(con.settings, con.pack, TODAY, MatrixQuery(2026))
    assert m.rows[-1].unit == GONE and any(m.rows[-1].cells)
    assert set(m.counts) == set(browse.STATUS_ORDER)
    one = browse.matrix(con.settings, con.pack, TODAY, MatrixQuery(2026, obligation="khhd57-thang"))
    oct_ = next(c for c in one.columns if c.key == "2026-10")
    assert oct_.label == "Tháng 10/2026 (hạn mới)" and oct_.due < one.columns[-1].due


def test_every_page_is_the_one_computed_from_every_instance(con: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browse, "PAGE_UNITS", 7)
    for base in (MatrixQuery(2026), MatrixQuery(2026, obligation="khhd57-thang"), MatrixQuery(2026, kind="so"),
                 MatrixQuery(2026, recipient="bcd-tinh", kind="cap_uy")):
        pages = browse.matrix(con.settings, con.pack, TODAY, base).pages
        assert pages >= 2 or base.kind == "cap_uy"
        for n in [0, 1, 2, pages - 1, pages, pages + 1, 10**6]:
            _same(con, MatrixQuery(base.year, base.obligation, base.recipient, base.kind, None, n))


def test_the_years_offered_are_the_years_of_the_instances(con: Console) -> None:
    for selected in (None, 2026, 2030, 2019):
        assert (browse.years_available(con.settings, TODAY, selected)
                == old_years_available(con.settings, TODAY, selected))
    assert browse.years_available(con.settings, TODAY) == old_years_available(con.settings, TODAY)
    assert browse.years_available(con.settings, TODAY) == list(range(2029, 2023, -1))


def test_the_matrix_page_reads_only_its_units_instances(con: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes it fast: the instances' cells are fetched for the page's units only (7 of them
    here), whatever the number of units; everything else comes grouped."""
    from engine.db import get_engine

    asked: list[set[str]] = []

    def watch(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("SELECT instances.id, "):                  # the cells
            values = parameters.values() if isinstance(parameters, dict) else parameters
            asked.append({v for v in values if isinstance(v, str) and (v in con.pack.units or v == GONE)})

    monkeypatch.setattr(browse, "PAGE_UNITS", 7)
    eng = get_engine(con.settings.database.url)
    sa.event.listen(eng, "after_cursor_execute", watch)
    try:
        m = browse.matrix(con.settings, con.pack, TODAY, MatrixQuery(2026, obligation="khhd57-thang", page=2))
    finally:
        sa.event.remove(eng, "after_cursor_execute", watch)
    assert len(m.rows) == 7 and m.unit_count > 14
    assert asked == [{r.unit for r in m.rows}]


def test_the_status_lists_are_the_ones_computed_from_every_instance(con: Console,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``?tinh-trang=``: the same instances, in the same order, the same total."""
    recipients = sorted({o.recipient for o in con.pack.obligations.values()})
    seen = cut = 0
    for limit in (browse.LIST_LIMIT, 7):
        monkeypatch.setattr(browse, "LIST_LIMIT", limit)
        for today in DAYS:
            for status in browse.STATUS_ORDER:
                for q in [MatrixQuery(2026, status=status), MatrixQuery(2027, status=status),
                          MatrixQuery(2026, obligation="khhd57-thang", status=status),
                          MatrixQuery(2026, recipient=recipients[0], status=status),
                          MatrixQuery(2026, kind="so", status=status), MatrixQuery(2026, kind="khac", status=status)]:
                    new = browse.status_list(con.settings, con.pack, today, q)
                    old = old_status_list(con.settings, con.pack, today, q)
                    assert (new.total, new.items) == (old.total, old.items), (q, today)
                    seen, cut = seen + new.total, cut + new.truncated
    assert seen > 0 and cut > 0
