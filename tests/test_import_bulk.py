"""Bulk imports stay all-or-nothing but hold the write lock only for one short, set-based final
transaction (issue 10 item 3: a 100k-row `kpi import` held it 75 s and the daemon lost its lease)."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlmodel import select

from engine.clock import TZ
from engine.db import get_engine, session
from engine.kpi.loader import load_kpi_for_pack
from engine.kpi.state import KpiValueRow
from engine.kpi.values import import_values
from engine.rules_loader import load_pack
from engine.state import AuditRow, InstanceRow, SubmissionRow
from engine.submissions import SubmissionIn, import_submissions, record_submission
from engine.sync import sync_instances
from tests.conftest import CALENDAR, RULES

NOW = datetime(2026, 12, 20, 9, 0, tzinfo=TZ)


@pytest.fixture(scope="module")
def pack():
    return load_pack(RULES, CALENDAR)


def _submissions_csv(tmp_path: Path, url: str, pack, n: int) -> tuple[Path, int]:
    with session(url) as s:
        sync_instances(s, pack, NOW, tracking_start=date(2026, 1, 1), horizon_days=0)
        inst = s.exec(select(InstanceRow).where(InstanceRow.due <= NOW.date()).order_by(InstanceRow.id)).all()[:n]
    f = tmp_path / "nop.csv"
    f.write_text("obligation,unit,period,date,ref\n" + "".join(
        f"{i.obligation},{i.unit},{i.period},{min(i.period_end, NOW.date()):%d/%m/%Y},{k}/BC\n" for k, i in enumerate(inst)),
        encoding="utf-8")
    return f, len(inst)


def _kpi_csv(tmp_path: Path, days: int) -> Path:
    f = tmp_path / "chi-tieu.csv"
    start = date(2024, 1, 1).toordinal()
    f.write_text("indicator;value;as_of\n" + "".join(
        f"dn-khcn;{1000 + d:,};{date.fromordinal(start + d):%d/%m/%Y}\n".replace(",", ".") for d in range(days)),
        encoding="utf-8")
    return f


class LockWatch:
    """Another writer holds SQLite's write lock from the start; it lets go only when the import
    opens its final transaction. Records the statements run inside that transaction."""

    def __init__(self, url: str):
        self.engine = get_engine(url)
        self.other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        self.other.execute("BEGIN IMMEDIATE")
        self.in_final: list[str] | None = None
        self.finals = 0
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "commit", self._commit)

    def _before(self, conn, cursor, statement, params, context, executemany) -> None:
        if statement == "BEGIN IMMEDIATE":
            self.finals += 1
            self.in_final = []
            if self.other.in_transaction:
                self.other.execute("COMMIT")
        elif self.in_final is not None:
            self.in_final.append(statement.split()[0] + " " + statement.split()[1])

    def _commit(self, conn) -> None:
        if self.in_final is not None:
            self.statements = self.in_final
            self.in_final = None

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "commit", self._commit)
        if self.other.in_transaction:
            self.other.execute("ROLLBACK")
        self.other.close()


def test_submission_import_validates_and_stages_while_another_writer_holds_the_lock(tmp_path: Path, sqlite_url: str, pack) -> None:
    f, n = _submissions_csv(tmp_path, sqlite_url, pack, 400)
    watch = LockWatch(sqlite_url)
    try:
        with session(sqlite_url) as s:
            assert import_submissions(s, pack, f, NOW) == n
    finally:
        watch.close()
    assert watch.finals == 1
    assert len(watch.statements) <= 8, watch.statements     # set-based: independent of the row count
    with session(sqlite_url) as s:
        assert len(s.exec(select(SubmissionRow)).all()) == n
        assert len(s.exec(select(AuditRow).where(AuditRow.action == "submit")).all()) == n
        assert len(s.exec(select(InstanceRow).where(InstanceRow.closed == True)).all()) == n  # noqa: E712


def test_kpi_import_validates_and_stages_while_another_writer_holds_the_lock(tmp_path: Path, sqlite_url: str, pack) -> None:
    f = _kpi_csv(tmp_path, 500)
    kpi = load_kpi_for_pack(pack)
    with session(sqlite_url) as s:      # the database exists (in WAL mode, as every connection sets it)
        assert s.exec(select(KpiValueRow)).all() == []
    watch = LockWatch(sqlite_url)
    try:
        with session(sqlite_url) as s:
            assert import_values(s, kpi, f, NOW) == 500
    finally:
        watch.close()
    assert watch.finals == 1 and len(watch.statements) <= 6, watch.statements
    with session(sqlite_url) as s:
        assert len(s.exec(select(KpiValueRow)).all()) == 500


def test_a_failure_in_the_final_write_leaves_nothing_behind(tmp_path: Path, db_url: str, pack) -> None:
    f, n = _submissions_csv(tmp_path, db_url, pack, 50)
    engine = get_engine(db_url)

    def fail_on_audit(conn, cursor, statement, *args) -> None:
        if statement.startswith("INSERT INTO audit_log"):
            raise RuntimeError("mất điện giữa chừng")

    event.listen(engine, "before_cursor_execute", fail_on_audit)
    try:
        with session(db_url) as s, pytest.raises(Exception, match="mất điện"):
            import_submissions(s, pack, f, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_audit)
    with session(db_url) as s:
        assert s.exec(select(SubmissionRow)).all() == []
        assert s.exec(select(InstanceRow).where(InstanceRow.closed == True)).all() == []  # noqa: E712
        assert s.exec(select(AuditRow).where(AuditRow.entity == "instance", AuditRow.action == "submit")).all() == []
        assert import_submissions(s, pack, f, NOW) == n        # and the same file goes in afterwards


def test_reimport_corrects_with_audit_trail(tmp_path: Path, db_url: str, pack) -> None:
    kpi = load_kpi_for_pack(pack)
    f = _kpi_csv(tmp_path, 3)
    with session(db_url) as s:
        import_values(s, kpi, f, NOW)
        import_values(s, kpi, f, NOW, actor="vp")
    with session(db_url) as s:
        vals = s.exec(select(KpiValueRow).order_by(KpiValueRow.id)).all()
        audit = s.exec(select(AuditRow).where(AuditRow.entity == "kpi_value").order_by(AuditRow.id)).all()
    assert [v.active for v in vals] == [False] * 3 + [True] * 3
    assert [v.replaces_id for v in vals[3:]] == [v.id for v in vals[:3]]
    assert [a.action for a in audit] == ["kpi_record"] * 3 + ["kpi_correct"] * 3
    assert '"replaces": [{"id": ' in audit[3].detail and audit[3].actor == "vp"
    g, n = _submissions_csv(tmp_path, db_url, pack, 5)
    with session(db_url) as s:
        import_submissions(s, pack, g, NOW)
        assert import_submissions(s, pack, g, NOW) == 0      # the same file again changes nothing (issue 11)
        g.write_text(g.read_text(encoding="utf-8").replace("/BC", "/BC-dc"), encoding="utf-8")
        import_submissions(s, pack, g, NOW)                  # new numbers: corrections, audited
        subs = s.exec(select(SubmissionRow).order_by(SubmissionRow.id)).all()
        actions = [a.action for a in s.exec(select(AuditRow).where(AuditRow.entity == "instance").order_by(AuditRow.id))]
    assert [x.active for x in subs] == [False] * n + [True] * n
    assert actions == ["submit"] * n + ["correct"] * n


def test_a_submission_recorded_during_the_import_is_not_lost(tmp_path: Path, sqlite_url: str, pack) -> None:
    """Someone records one of the same reports between validation and the final write: the import
    starts over, so its row is audited as a correction of that submission, not silently doubled."""
    f, n = _submissions_csv(tmp_path, sqlite_url, pack, 5)
    with session(sqlite_url) as s:
        first = s.exec(select(InstanceRow).order_by(InstanceRow.id)).first()
    engine = get_engine(sqlite_url)
    done = []

    def sneak_in(conn, cursor, statement, *args) -> None:
        if statement == "BEGIN IMMEDIATE" and not done:
            done.append(1)
            with session(sqlite_url) as other:
                record_submission(other, pack, SubmissionIn(obligation=first.obligation, unit=first.unit,
                                                            period=first.period, submitted_on=min(first.period_end, NOW.date())), NOW, "khac")

    event.listen(engine, "before_cursor_execute", sneak_in)
    try:
        with session(sqlite_url) as s:
            assert import_submissions(s, pack, f, NOW) == n
    finally:
        event.remove(engine, "before_cursor_execute", sneak_in)
    with session(sqlite_url) as s:
        rows = s.exec(select(SubmissionRow).where(SubmissionRow.instance_id == first.id).order_by(SubmissionRow.id)).all()
        audit = s.exec(select(AuditRow).where(AuditRow.entity_id == f"{first.obligation}|{first.unit}|{first.period}")
                       .order_by(AuditRow.id)).all()
    assert [(r.recorded_by, r.active) for r in rows] == [("khac", False), ("import", True)]
    assert [a.action for a in audit] == ["submit", "correct"]
