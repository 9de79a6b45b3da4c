"""The page cache (engine.app.pagecache) never shows stale data: what is recorded — from the
console's forms, by a unit's confirmation, by another process on the same database — shows on the
next load of the overview, the matrix and the unit pages; the frame (account name, CSRF token) is
each session's own; a page from the cache is the page a full render gives; and RulePack.expand
keeps its order now that it is set-based.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import replace
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa

from tests.web_support import Console, csrf_of, seed_pack, text_of

OB = "khhd57-thang"
UNIT = "so-noi-vu"
PERIOD = "2026-10"                 # due in November: overdue on 02/12/2026 unless recorded


def _count(html: str, status: str) -> int:
    m = re.search(rf'href="/ma-tran\?tinh-trang={status}">\s*<span class="n">([\d.]+)</span>', html)
    assert m, status
    return int(m.group(1).replace(".", ""))


def _badge(html: str, iid: int) -> str:
    m = re.search(rf'<a class="(?:badge|cell) ([^"]+)" href="/ky/{iid}"', html)
    assert m, f"no status for instance {iid}"
    return m.group(1)


def _instance(con: Console, obligation: str, unit: str, period: str) -> int:
    from engine.app.services import open_session
    from engine.state import InstanceRow

    with open_session(con.settings) as ses:
        return ses.execute(sa.select(InstanceRow.id).where(
            InstanceRow.obligation == obligation, InstanceRow.unit == unit, InstanceRow.period == period)).scalar_one()


def _cache(con: Console):
    from engine.app import pagecache

    return pagecache.cache_for(con.settings.database.url)


@pytest.fixture()
def con(tmp_path) -> Console:
    return Console(tmp_path)


def test_a_submission_recorded_from_the_form_shows_on_the_next_load(con: Console) -> None:
    secretary = con.client("thu.ky")
    iid = _instance(con, OB, UNIT, PERIOD)
    matrix = f"/ma-tran?bao-cao={OB}"
    before = {p: secretary.get(p).text for p in ("/", matrix, f"/don-vi/{UNIT}")}
    hits = _cache(con).hits
    again = {p: secretary.get(p).text for p in before}              # served from the cache …
    assert _cache(con).hits >= hits + 3
    assert {p: text_of(t) for p, t in again.items()} == {p: text_of(t) for p, t in before.items()}
    assert _badge(before[matrix], iid) == "s-overdue" and _badge(before[f"/don-vi/{UNIT}"], iid) == "s-overdue"

    r = secretary.form(f"/ky/{iid}/ghi-nhan", {"date": "20/11/2026", "ref": "77/BC-SNV"})
    assert r.status_code == 303

    home = secretary.get("/").text                                 # … until something is recorded
    assert _count(home, "overdue") == _count(before["/"], "overdue") - 1
    assert _count(home, "done_late") == _count(before["/"], "done_late") + 1
    assert _badge(secretary.get(matrix).text, iid) == "s-late-done"
    unit_page = secretary.get(f"/don-vi/{UNIT}").text
    assert _badge(unit_page, iid) == "s-late-done" and "77/BC-SNV" in unit_page
    units = secretary.get("/don-vi").text
    assert units != before.get("/don-vi")                          # not asked before; now computed once


def test_a_write_by_another_process_and_a_confirmation_show_on_the_next_load(con: Console) -> None:
    """The CLI, or a daemon in its own process, writes through its own connection: the version of
    the database file changes all the same."""
    from engine.app.services import open_session
    from engine.state import ConfirmationRow

    secretary = con.client("thu.ky")
    iid = _instance(con, OB, UNIT, PERIOD)
    home = secretary.get("/").text
    secretary.get("/")
    awaiting = _count(home, "awaiting")

    # a unit says "đã gửi" from its reminder (a plain sqlite3 connection stands for another process)
    db = con.settings.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE instances SET awaiting_since = '2026-11-25' WHERE id = ?", (iid,))
    with open_session(con.settings) as ses:
        ses.add(ConfirmationRow(instance_id=iid, unit=UNIT, submitted_on=date(2026, 11, 25), ref="8/BC-SNV",
                                state="pending", created_at=datetime(2026, 11, 25, 3, tzinfo=timezone.utc)))
        ses.commit()
        cid = ses.execute(sa.select(ConfirmationRow.id)).scalar_one()
    home = secretary.get("/").text
    assert _count(home, "awaiting") == awaiting + 1
    assert _badge(secretary.get(f"/don-vi/{UNIT}").text, iid) == "s-awaiting"

    r = secretary.form(f"/xac-nhan/{cid}/chap-nhan")               # the secretariat accepts it
    assert r.status_code == 303
    after = secretary.get("/").text
    assert _count(after, "awaiting") == awaiting
    assert _badge(secretary.get(f"/don-vi/{UNIT}").text, iid) == "s-late-done"


def test_the_frame_is_each_sessions_own_and_the_content_is_a_full_render(con: Console) -> None:
    from engine.app import dashboard

    secretary, leader = con.client("thu.ky"), con.client("lanh.dao")
    a, b = secretary.get("/").text, leader.get("/").text
    assert csrf_of(a) == secretary.csrf and csrf_of(b) == leader.csrf and secretary.csrf != leader.csrf
    assert "Thu Ky · Thư ký" in text_of(a) and "Lanh Dao · Lãnh đạo" in text_of(b)
    assert a.replace(secretary.csrf, "T").replace("Thu Ky · Thư ký", "W") == \
        b.replace(leader.csrf, "T").replace("Lanh Dao · Lãnh đạo", "W")

    # what the cache serves is what rendering the whole template gives
    pages = con.app.state.pages
    today = con.now.date()
    full = pages.env.get_template("overview.html").render(
        request=None, login=None, user=None, csrf="", nav="overview", title="Tổng quan", flash=None, today=today,
        data=dashboard.overview(con.settings, con.pack, today), secret_missing=False)
    main = re.search(r"<main>.*</main>", full, re.S).group(0)
    assert main in a


def test_a_new_day_or_new_rules_are_new_pages(con: Console) -> None:
    from engine import clock

    secretary = con.client("thu.ky")
    assert "hết Thứ Tư, 02/12/2026" in text_of(secretary.get("/").text)
    con.ctx.clock = type(con.ctx.clock)(clock.parse_moment("2026-12-03T09:00"))
    secretary = con.client("thu.ky")                                # (yesterday's session has ended)
    assert "hết Thứ Năm, 03/12/2026" in text_of(secretary.get("/").text)
    renamed = replace(con.pack, units={**con.pack.units, UNIT: con.pack.units[UNIT].model_copy(
        update={"name": "Sở Nội vụ (đổi tên)"})}, version=con.pack.version + "-doi")
    con.pack = renamed                                              # the holder follows con.pack
    assert "Sở Nội vụ (đổi tên)" in text_of(secretary.get(f"/don-vi/{UNIT}").text)


def test_one_computation_for_concurrent_misses_and_none_without_a_version() -> None:
    from engine.app.pagecache import PageCache

    version = [1]
    cache = PageCache(lambda: version[0])
    calls: list[int] = []
    release = threading.Event()

    def slow() -> str:
        calls.append(1)
        release.wait(10)
        return f"page {version[0]}"

    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(cache.get("k", slow))) for _ in range(12)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert out == ["page 1"] * 12 and len(calls) == 1

    version[0] = 2                                                  # the data moved on: computed again
    assert cache.get("k", slow) == "page 2" and len(calls) == 2
    assert cache.get("k", slow) == "page 2" and len(calls) == 2

    failing = PageCache(lambda: 1)
    with pytest.raises(RuntimeError):
        failing.get("k", lambda: (_ for _ in ()).throw(RuntimeError("lỗi")))
    assert failing.get("k", lambda: "ok") == "ok"                   # an error is not kept

    off = PageCache(lambda: None)                                   # e.g. PostgreSQL: no cheap exact version
    n: list[int] = []
    for _ in range(3):
        off.get("k", lambda: str(n.append(1)))
    assert len(n) == 3

    small = PageCache(lambda: 1, max_entries=2)
    for k in "abc":
        small.get(k, lambda k=k: k * 10)
    assert small.get("a", lambda: "again") == "again"               # the oldest was dropped


def _expand_reference(pack, ref: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """The former list-based RulePack.expand (quadratic): the order the set-based one must keep."""
    if ref in pack.units:
        return [ref]
    out: list[str] = []
    for m in pack.groups[ref].members:
        if m in seen:
            continue
        for u in _expand_reference(pack, m, seen | {ref}):
            if u not in out:
                out.append(u)
    return out


def test_expand_keeps_the_order_of_first_mention_through_nested_and_cyclic_groups() -> None:
    from engine.rules_model import Group

    pack = seed_pack()
    units = list(pack.units)[:6]
    groups = dict(pack.groups)
    groups["g-a"] = Group(id="g-a", name="A", members=[units[3], "g-b", units[0], units[3]])
    groups["g-b"] = Group(id="g-b", name="B", members=[units[1], "g-a", units[4], units[0]])   # a cycle
    groups["g-c"] = Group(id="g-c", name="C", members=["g-b", units[5], "g-a", units[2]])
    p = replace(pack, groups=groups)
    for gid in p.groups:
        assert p.expand(gid) == _expand_reference(p, gid), gid
    assert p.expand("g-c") == [units[1], units[3], units[0], units[4], units[5], units[2]]
    for ob in p.obligations.values():
        ref: list[str] = []
        for r in ob.reporters:
            ref += [u for u in _expand_reference(p, r) if u not in ref]
        assert p.reporters(ob) == ref


def _overview_by_rows(con: Console, today: date):
    """The overview as it was computed before it counted in SQL: classify on every row."""
    from collections import Counter
    from datetime import timedelta

    from engine.app import dashboard
    from engine.app.services import open_session
    from engine.state import InstanceRow
    from engine.status import classify

    pack = con.pack
    year_start, week_end = date(today.year, 1, 1), today + timedelta(days=6 - today.weekday())
    with open_session(con.settings) as ses:
        rows = ses.execute(sa.select(*dashboard.COLUMNS).where(
            InstanceRow.active == sa.true(), InstanceRow.due <= week_end,
            sa.or_(InstanceRow.due >= year_start, InstanceRow.closed == sa.false()))).all()
    names = {u.id: u.name for u in pack.units.values()}
    titles = {o.id: o.title for o in pack.obligations.values()}
    counts: Counter[str] = Counter()
    week, late, rates = [], {}, {}
    for iid, ob, unit, label, due, sub, waived, awaiting in rows:
        status, wd_late, wd_left = classify(pack, due, today, sub, waived, ob, awaiting)
        item = dashboard.Item(iid, ob, titles.get(ob, ob), unit, names.get(unit, unit), label, due, status, wd_late,
                              wd_left)
        if due <= today or status in dashboard.DONE_OR_DECIDED:
            counts[status] += 1
        if today <= due <= week_end and status in ("in_progress", "due_soon", "awaiting", "overdue"):
            week.append(item)
        if status == "overdue":
            late.setdefault(unit, []).append(item)
        if year_start <= due <= today and status not in ("waived", "awaiting"):
            r = rates.setdefault(unit, [0, 0, 0])
            r[0 if status == "done_on_time" else 1 if status == "done_late" else 2] += 1
    week.sort(key=lambda i: (i.due, i.title, i.unit_name))
    late_units = sorted((dashboard.LateUnit(u, names.get(u, u), len(xs), min(i.due for i in xs),
                                            max(i.wd_late for i in xs)) for u, xs in late.items()),
                        key=lambda x: (-x.items, -x.wd_late, x.name))
    ranking = sorted((dashboard.UnitRate(u, names.get(u, u), *r) for u, r in rates.items()),
                     key=lambda x: (-(x.rate or 0.0), x.missing, x.late, x.name))
    return dashboard.Overview(today, today.year, dict(counts), week, late_units, ranking, counts.get("awaiting", 0),
                              sum(counts.values()))


def _units_by_rows(con: Console, today: date) -> dict[str, tuple[int, int, int, int, int]]:
    """The unit list's counts as they were computed before they were counted in SQL."""
    from engine.app.services import open_session
    from engine.state import InstanceRow
    from engine.status import classify

    year_start = date(today.year, 1, 1)
    with open_session(con.settings) as ses:
        rows = ses.execute(sa.select(InstanceRow.obligation, InstanceRow.unit, InstanceRow.due,
                                     InstanceRow.submitted_on, InstanceRow.waived, InstanceRow.awaiting_since).where(
            InstanceRow.active == sa.true(),
            sa.or_(sa.and_(InstanceRow.due <= today,
                           sa.or_(InstanceRow.due >= year_start, InstanceRow.closed == sa.false())),
                   InstanceRow.awaiting_since.is_not(None)))).all()
    acc: dict[str, list[int]] = {}
    for ob, unit, due, sub, waived, awaiting in rows:
        status = classify(con.pack, due, today, sub, waived, ob, awaiting)[0]
        a = acc.setdefault(unit, [0, 0, 0, 0, 0])
        if status == "overdue":
            a[0] += 1
        elif status == "awaiting":
            a[1] += 1
        if year_start <= due <= today and status not in ("waived", "awaiting"):
            a[2 if status == "done_on_time" else 3 if status == "done_late" else 4] += 1
    return {u: tuple(acc.get(u, [0] * 5)) for u in con.pack.units}


def test_the_overview_counted_in_sql_is_classify_row_by_row(con: Console) -> None:
    """Every status of engine.status.classify, on many days of the year: submitted on time, late,
    after the day looked at, waived, awaiting, due today, due soon, overdue for months."""
    from engine.app import browse, dashboard, services

    pack = con.pack
    ob = pack.obligations[OB]
    units = sorted(pack.reporters(ob))[:6]
    services.submit(con.settings, pack, OB, units[0], "2026-04", date(2026, 4, 20), con.now, actor="cli")
    services.submit(con.settings, pack, OB, units[1], "2026-02", date(2026, 4, 28), con.now, actor="cli")
    services.submit(con.settings, pack, OB, units[2], "2026-10", date(2026, 11, 30), con.now, actor="cli")
    services.waive(con.settings, pack, OB, units[3], "2026-05", "đơn vị sáp nhập", con.now, actor="cli")
    db = con.settings.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE instances SET awaiting_since = '2026-09-10' WHERE unit = ? AND obligation = ? "
                    "AND period = '2026-08'", (units[4], OB))
    days = sorted({date(2026, m, d) for m in range(1, 13) for d in (1, 10, 15, 20, 28)}
                  | {i.due for i in _overview_by_rows(con, date(2026, 12, 2)).due_this_week}
                  | {date(2027, 1, 5)})
    checked = set()
    for day in days:
        got, want = dashboard.overview(con.settings, pack, day), _overview_by_rows(con, day)
        assert got == want, day
        listed = {s.unit: (s.overdue, s.awaiting, s.on_time, s.late, s.missing)
                  for g in browse.units_overview(con.settings, pack, day) for s in g.units}
        assert listed == _units_by_rows(con, day), day
        checked |= set(want.counts) | {i.status for i in want.due_this_week}
    assert checked >= {"done_on_time", "done_late", "overdue", "waived", "awaiting", "due_soon", "in_progress"}


@pytest.mark.slow
def test_the_postgresql_version_moves_on_every_commit_and_only_then(pg_server) -> None:
    """The cache's version on PostgreSQL: the same while nothing commits (reads, an open write not
    yet committed), new after a commit by any other connection."""
    from sqlalchemy import create_engine, text

    from engine.app.pagecache import _PgVersion

    url = pg_server.create_db("pagecache_version")
    other = create_engine(url)
    with other.begin() as c:
        c.execute(text("CREATE TABLE t (x int)"))
    version = _PgVersion(url)
    try:
        first = version()
        assert first is not None and version() == first
        with other.connect() as c:
            c.execute(text("SELECT count(*) FROM t")).scalar()
            c.commit()
        assert version() == first                     # a read commits nothing
        with other.connect() as c:
            c.execute(text("INSERT INTO t VALUES (1)"))
            pending = version()                        # a write in progress, not yet visible
            c.commit()
        after = version()
        assert after not in (first, pending)          # the commit is a new version
        assert version() == after
    finally:
        version.close()
        other.dispose()
