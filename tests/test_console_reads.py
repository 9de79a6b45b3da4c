"""The console's pages read what they show, not everything the installation ever recorded.

Why: an audit of the reads that grow with an installation's age (benchmarks/README.md, "Stop 25:
an audit …") found the overview, the matrix, the units and reports lists, a report's page and the
inbox's matching reading every instance of every year to show one year (at 20 years of a province
250,000 instances: 185–283 ms a page), and the outbox page sorting every digest ever sent to show
fifty (517 ms). Migration 0016 added the indexes on ``due``; the queries are written so SQLite uses
them. These tests read SQLite's query plan of every statement a page issues, on a console tracked
for four years, and fail on a plan that walks the whole table or a whole index of it; and they
check that the outbox page, whichever way it reads, lists exactly the newest digests.
(PostgreSQL plans by its statistics; its pages are measured in benchmarks/bench_national.py.)
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.app import browse, confirmations, dashboard, records
from engine.app.inbox import store
from engine.app.services import open_session
from engine.clock import TZ
from tests.support import Plans
from tests.web_support import Console

TODAY = date(2026, 12, 2)


@pytest.fixture(scope="module")
def aged(tmp_path_factory) -> Console:
    """The seed rules tracked since 01/01/2023: four years of instances, nine in ten of the
    earlier years' sent on time, the rest still open (the backlog the pages must still show)."""
    con = Console(tmp_path_factory.mktemp("aged"), now="2026-12-02T09:00", tracking_start="2023-01-01")
    with open_session(con.settings) as ses:
        ses.execute(sa.text("UPDATE instances SET closed = 1, submitted_on = due "
                            "WHERE due < '2026-01-01' AND id % 10 != 0"))
        ses.commit()
    return con


def _db(con: Console) -> Path:
    return Path(con.settings.database.url.removeprefix("sqlite:///"))


def test_the_console_pages_read_about_a_year_of_instances_not_every_year(aged) -> None:
    """Overview, units list, reports list, a report's and a unit's page, the matrix (one report
    and all of them), every status list and the inbox's open items: no statement scans the
    instances (each reads through an index: a year, a unit, a report, the open backlog)."""
    s, pack = aged.settings, aged.pack
    ob = browse.default_obligation(pack, TODAY.year)
    unit = sorted(pack.units)[0]
    assert ob is not None
    with Plans(_db(aged)) as p:
        over = dashboard.overview(s, pack, TODAY, late_shown=15, ranked_shown=10)
        units = browse.units_overview(s, pack, TODAY)
        obs = browse.obligations_overview(s, pack, TODAY)
        browse.obligation_detail(s, pack, ob, TODAY.year, TODAY)
        browse.unit_detail(s, pack, unit, TODAY.year, TODAY)
        browse.matrix(s, pack, TODAY, browse.MatrixQuery(TODAY.year, ob))
        browse.matrix(s, pack, TODAY, browse.MatrixQuery(TODAY.year))
        for st in ("overdue", "done_on_time", "done_late", "awaiting", "waived", "in_progress"):
            browse.status_list(s, pack, TODAY, browse.MatrixQuery(TODAY.year, status=st))
        browse.status_list(s, pack, TODAY, browse.MatrixQuery(TODAY.year - 2, status="done_on_time"))
        with open_session(s) as ses:
            store.open_items(ses, [unit])
        confirmations.queue(s, pack)
    plans = p.plans()
    reads = [(sql, plan) for sql, plan in plans if "instances" in sql]
    assert len(reads) >= 15
    scans = [(sql[:160], plan) for sql, plan in reads if re.search(r"\bSCAN instances\b", plan)]
    assert scans == []
    # the earlier years' open reports are still counted (the backlog is read, through its index)
    assert over.late_count > 0 and sum(o.overdue for o in obs) >= over.counts["overdue"] > 0
    assert sum(u.overdue for g in units for u in g.units) == over.counts["overdue"]


def _digests(con: Console, n_sent: int, failed: list[int], dropped: list[int], waiting: list[int]) -> None:
    rows = []
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=TZ)
    units = sorted(con.pack.units)
    for k in range(n_sent):
        status = ("failed" if k in failed else "dropped" if k in dropped else "pending" if k in waiting
                  else "retry" if k == waiting[-1] + 1 else "sent")
        rows.append(dict(key=f"email|{k}", recipient=units[k % len(units)], channel="email", route="email",
                         message_id=f"<{k}@test>", status=status, attempts=1, created_at=t0 + timedelta(minutes=k),
                         updated_at=t0 + timedelta(minutes=k), subject=f"Thư {k}"))
    from engine.state import DeliveryRow
    with open_session(con.settings) as ses:
        ses.execute(sa.insert(DeliveryRow.__table__), rows)
        ses.commit()


def test_the_outbox_page_lists_the_newest_digests_without_sorting_every_one(tmp_path, db_url) -> None:
    """Newest first, a page at a time, with every filter: the same digests as a sort of all of
    them (SQLite and PostgreSQL); on SQLite the first page unfiltered or "sent" walks the ids
    backwards (no sort of every digest ever sent), the few failed ones come through the status
    index; the recipients are everyone with a digest."""
    con = Console(tmp_path, sync=False, env={"DONDOC_DATABASE_URL": db_url})
    sqlite = db_url.startswith("sqlite")
    failed, dropped = [7, 1500, 2990], list(range(100, 400))
    _digests(con, 3000, failed, dropped, waiting=[2995, 2996])
    with open_session(con.settings) as ses:
        every = ses.execute(sa.text("SELECT id, status, recipient FROM deliveries ORDER BY id DESC")).all()
    s, pack = con.settings, con.pack
    for state, statuses in records.OUTBOX_FILTERS.items():
        wanted = [i for i, st, _r in every if st in statuses[1]]
        pages = max(1, -(-len(wanted) // records.OUTBOX_PAGE))
        for page in sorted({1, 2, pages}):
            with Plans(_db(con) if sqlite else None) as p:
                got = records.outbox_page(s, pack, state, None, page)
            assert got.total == len(wanted) and got.pages == pages
            assert got.page == min(page, pages)                   # a page past the last shows the last
            n = got.page
            assert [e.id for e in got.entries] == wanted[(n - 1) * records.OUTBOX_PAGE:n * records.OUTBOX_PAGE]
            if not sqlite:
                continue
            (plan,) = [plan for sql, plan in p.plans() if "ORDER BY deliveries.id DESC" in sql]
            if page == 1 and state in ("", "sent", "all"):       # the last pages: either way reads them all
                assert "TEMP B-TREE" not in plan, (state, plan)
            if state == "failed":
                assert "ix_deliveries_status_next" in plan, plan
    assert {r for r, _n in got.recipients} == {r for _i, _s, r in every}
    unit = every[0][2]
    mine = records.outbox_page(s, pack, "", unit, 1)
    assert [e.id for e in mine.entries] == [i for i, st, r in every if r == unit and st != "dropped"][:records.OUTBOX_PAGE]


def test_migration_0016_matches_the_models_and_downgrades(db_url) -> None:
    """0016 creates the indexes the models declare (Alembic finds nothing to add or drop on the
    four tables); its downgrade restores the indexes it replaced."""
    from engine.state import AttachmentRow, ConfirmationRow, InboundMailRow, InstanceRow
    from tests.support import check_migration

    tables = ("instances", "inbound_mails", "confirmations", "attachments")
    models = {"instances": InstanceRow, "inbound_mails": InboundMailRow, "confirmations": ConfirmationRow,
              "attachments": AttachmentRow}
    for down in check_migration(db_url, tables, models, "0015"):
        names = {t: {i["name"] for i in down.get_indexes(t)} for t in tables}
        assert "ix_instances_unit" in names["instances"] and "ix_inbound_mails_state" in names["inbound_mails"]
        assert not {"ix_instances_due", "ix_instances_obligation_due", "ix_instances_unit_due",
                    "ix_instances_obligation_period"} & names["instances"]
        assert "ix_confirmations_state" not in names["confirmations"]
        assert "ix_attachments_confirmation_id" not in names["attachments"]
