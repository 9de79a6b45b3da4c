"""State: sync is idempotent, rule changes move only open future instances, history is kept."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from engine.clock import TZ
from engine.db import session
from engine.rules_loader import load_pack
from engine.state import AuditRow, InstanceRow, SubmissionRow
from engine.status import on_time_rates, status_lines
from engine.submissions import InputError, SubmissionIn, record_submission, record_waiver
from engine.sync import sync_instances
from tests.conftest import CALENDAR, MINIPACK


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def rows(url: str) -> dict[tuple[str, str, str], InstanceRow]:
    with session(url) as s:
        return {(r.obligation, r.unit, r.period): r for r in s.exec(select(InstanceRow)).all()}


def test_sync_is_idempotent(db_url: str, minipack) -> None:
    with session(db_url) as s:
        first = sync_instances(s, minipack, at("2026-03-01T07:00"))
    with session(db_url) as s:
        second = sync_instances(s, minipack, at("2026-03-01T07:00"))
    assert first.inserted > 0
    assert (second.inserted, second.moved, second.retired) == (0, 0, 0)
    assert len(rows(db_url)) == first.inserted


def test_tracking_start_keeps_history_out(db_url: str, minipack) -> None:
    with session(db_url) as s:
        sync_instances(s, minipack, at("2026-03-01T07:00"))
    assert min(r.due for r in rows(db_url).values()) >= date(2026, 1, 1)


def test_rule_change_moves_open_future_instances_only(db_url: str, tmp_path: Path) -> None:
    pack_dir = tmp_path / "p"
    shutil.copytree(MINIPACK, pack_dir)
    now = at("2026-03-01T07:00")
    with session(db_url) as s:
        sync_instances(s, load_pack(pack_dir, CALENDAR), now)
        record_submission(s, load_pack(pack_dir, CALENDAR),
                          SubmissionIn(obligation="thang", unit="skhcn", period="2026-02", submitted_on=date(2026, 2, 20)), now)
    before = rows(db_url)
    assert before[("thang", "skhcn", "2026-02")].due == date(2026, 2, 23)
    # The secretariat moves the monthly deadline from the 18th to the 20th.
    f = pack_dir / "obligations.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("day: 18, roll: forward", "day: 20, roll: forward"), encoding="utf-8")
    with session(db_url) as s:
        rep = sync_instances(s, load_pack(pack_dir, CALENDAR), now)
    after = rows(db_url)
    assert after[("thang", "skhcn", "2026-02")].due == date(2026, 2, 23)      # submitted: history untouched
    assert after[("thang", "skhcn", "2026-01")].due == date(2026, 1, 19)      # past and open: untouched
    assert after[("thang", "skhcn", "2026-03")].due == date(2026, 3, 20)      # future and open: moved
    assert after[("thang-tong-hop", "vp", "2026-03")].due == date(2026, 3, 25)  # compiled follows (+3 wd)
    assert rep.moved >= 10
    with session(db_url) as s:
        moves = s.exec(select(AuditRow).where(AuditRow.action == "move")).all()
    assert any("2026-03-18" in m.detail and "2026-03-20" in m.detail for m in moves)


def test_removed_obligation_retires_future_open_instances(db_url: str, tmp_path: Path) -> None:
    pack_dir = tmp_path / "p"
    shutil.copytree(MINIPACK, pack_dir)
    now = at("2026-03-01T07:00")
    with session(db_url) as s:
        sync_instances(s, load_pack(pack_dir, CALENDAR), now)
    f = pack_dir / "obligations.yaml"
    text = f.read_text(encoding="utf-8")
    start = text.index("  - id: quy-cuoi-thang")
    end = text.index("  - id: hoi-nghi")
    f.write_text(text[:start] + text[end:], encoding="utf-8")
    with session(db_url) as s:
        rep = sync_instances(s, load_pack(pack_dir, CALENDAR), now)
    r = rows(db_url)
    assert rep.retired == 5        # Q1–Q4 2026 and Q1 2027 (inside the 400-day horizon)
    assert not r[("quy-cuoi-thang", "ubnd", "2026-Q2")].active


def test_overdue_duty_passes_to_successor_when_unit_ends(db_url: str, tmp_path: Path) -> None:
    pack_dir = tmp_path / "p"
    shutil.copytree(MINIPACK, pack_dir)
    units = pack_dir / "units.yaml"
    # Variant: Báo Bình Định still exists on 30/11/2026 and owes the 2026 yearly report; it then
    # ends on 31/12/2026 without having sent it, and its successor must answer for it.
    units.write_text(units.read_text(encoding="utf-8").replace("valid_until: 2025-06-30", "valid_until: 2027-06-30")
                     .replace("valid_from: 2025-07-01", "valid_from: 2027-07-01"), encoding="utf-8")
    with session(db_url) as s:
        sync_instances(s, load_pack(pack_dir, CALENDAR), at("2026-12-10T07:00"))
    assert ("nam-skhcn", "bao", "2026") in rows(db_url)
    units.write_text(units.read_text(encoding="utf-8").replace("valid_until: 2027-06-30", "valid_until: 2026-12-31")
                     .replace("valid_from: 2027-07-01", "valid_from: 2027-01-01"), encoding="utf-8")
    with session(db_url) as s:
        rep = sync_instances(s, load_pack(pack_dir, CALENDAR), at("2027-01-05T07:00"))
    r = rows(db_url)
    assert rep.reassigned == 1
    moved = r[("nam-skhcn", "baogl", "2026")]
    assert moved.inherited_from == "bao" and not moved.closed


def test_submission_correction_keeps_audit_trail(db_url: str, minipack) -> None:
    now = at("2026-03-01T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-02",
                                                    submitted_on=date(2026, 2, 25), ref="12/BC"), now)
        record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-02",
                                                    submitted_on=date(2026, 2, 20), ref="12/BC", note="đính chính ngày"), now)
        subs = s.exec(select(SubmissionRow)).all()
        audit = s.exec(select(AuditRow).where(AuditRow.entity_id == "thang|skhcn|2026-02")).all()
    assert [x.active for x in subs] == [False, True]
    assert [a.action for a in audit] == ["submit", "correct"]
    assert "2026-02-25" in audit[1].detail


def test_bad_submission_is_refused_with_reason(db_url: str, minipack) -> None:
    now = at("2026-03-01T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        with pytest.raises(InputError, match="không phải nộp"):
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="ubnd", period="2026-02",
                                                        submitted_on=date(2026, 2, 20)), now)
        with pytest.raises(InputError, match="kỳ “2026-13” không hợp lệ"):
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-13",
                                                        submitted_on=date(2026, 2, 20)), now)
        with pytest.raises(InputError, match="tương lai"):
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-02",
                                                        submitted_on=date(2026, 3, 2)), now)


def test_status_categories_and_on_time_rate(db_url: str, minipack) -> None:
    now = at("2026-03-17T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        sub = lambda p, d: record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period=p, submitted_on=d), now)  # noqa: E731
        sub("2026-01", date(2026, 1, 19))     # on the (rolled) due day: on time
        sub("2026-02", date(2026, 2, 24))     # one day after 23/02: late
        record_waiver(s, minipack, "thang-tong-hop", "vp", "2026-02", "Gộp vào báo cáo quý", now)
        lines = {(l.obligation, l.unit, l.period): l for l in status_lines(s, minipack, date(2026, 3, 17), include_future=True)}
    assert lines[("thang", "skhcn", "2026-01")].status == "done_on_time"
    assert lines[("thang", "skhcn", "2026-02")].status_vi == "Hoàn thành quá hạn"
    assert lines[("thang-tong-hop", "vp", "2026-01")].status == "overdue"
    # by hand: 23/01 (1) + 26/01–13/02 (15) + Tết week (0) + 23/02–13/03 (15) + 16–17/03 (2) = 33
    assert lines[("thang-tong-hop", "vp", "2026-01")].wd_late == 33
    assert lines[("thang-tong-hop", "vp", "2026-02")].status == "waived"
    assert lines[("thang", "skhcn", "2026-03")].status == "due_soon"          # 18/03: 1 working day left
    assert lines[("thang", "skhcn", "2026-04")].status == "in_progress"
    rates = on_time_rates(list(lines.values()))
    assert rates["skhcn"]["on_time"] == 1 and rates["skhcn"]["late"] == 1 and rates["skhcn"]["on_time_rate"] == 0.5


def test_period_keys_outside_the_supported_years_or_of_another_form_are_explained(db_url: str, minipack) -> None:
    """`--period 9999-01`, `0000-01` and `once` for a monthly report used to end in ValueError."""
    now = at("2026-03-01T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        for period in ("9999-01", "0000-01", "9999"):
            with pytest.raises(InputError, match="ngoài phạm vi hỗ trợ.*2000–2100"):
                record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period=period,
                                                            submitted_on=date(2026, 2, 20)), now)
        with pytest.raises(InputError) as exc:
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="once",
                                                        submitted_on=date(2026, 2, 20)), now)
        assert "báo cáo tháng" in str(exc.value) and "2026-09" in str(exc.value) and "hoi-nghi" in str(exc.value)
        with pytest.raises(InputError) as exc:
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-Q1",
                                                        submitted_on=date(2026, 2, 20)), now)
        assert "năm-tháng" in str(exc.value) and "báo cáo quý" in str(exc.value) and "quy-cuoi-thang" in str(exc.value)
        with pytest.raises(InputError, match="chỉ số năm"):
            record_submission(s, minipack, SubmissionIn(obligation="nam-skhcn", unit="skhcn", period="2025-12",
                                                        submitted_on=date(2026, 2, 20)), now)


def test_submission_before_its_period_or_in_year_one_is_refused(db_url: str, minipack) -> None:
    now = at("2026-03-20T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        with pytest.raises(InputError, match="trước khi kỳ Tháng 03/2026 bắt đầu"):
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-03",
                                                        submitted_on=date(2026, 2, 27)), now)
        with pytest.raises(InputError, match="năm 1 ngoài phạm vi"):
            record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-02",
                                                        submitted_on=date(1, 1, 1)), now)
        assert s.exec(select(SubmissionRow)).all() == []
        row = record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="2026-03",
                                                          submitted_on=date(2026, 3, 1)), now)
        assert row.closed


def test_every_seed_period_key_round_trips_and_the_monthly_report_takes_2026_09() -> None:
    from engine.periods import BadPeriod, period_for_key, periods_between
    from tests.conftest import RULES

    pack = load_pack(RULES, CALENDAR)
    for ob in pack.obligations.values():
        for p in periods_between(ob, date(2026, 1, 1), date(2027, 12, 31)):
            assert period_for_key(ob, p.key, pack.obligations.values()) == p, (ob.id, p.key)
    monthly = pack.obligations["khhd57-thang"]
    assert period_for_key(monthly, "2026-10").key == "2026-10"
    # September has no monthly report (months: […]): say which report covers it.
    with pytest.raises(BadPeriod) as exc:
        period_for_key(monthly, "2026-09", pack.obligations.values())
    assert "Tháng 09/2026 thuộc báo cáo quý" in str(exc.value) and "“2026-Q3” của “khhd57-quy”" in str(exc.value)
    with pytest.raises(BadPeriod) as exc:
        period_for_key(monthly, "2026-Q3", pack.obligations.values())
    assert "báo cáo tháng" in str(exc.value) and "khhd57-quy" in str(exc.value)


def test_a_plan_due_inside_its_own_period_may_be_signed_before_the_period(db_url: str) -> None:
    """The yearly inspection plan for 2027 is due 31/01/2027: one signed on 15/12/2026 is accepted,
    one dated a year and a half earlier is not."""
    from tests.conftest import RULES

    pack = load_pack(RULES, CALENDAR)
    plan = SubmissionIn(obligation="khhd57-bcd-ke-hoach-kiem-tra", unit="bcd-tinh", period="2027",
                        submitted_on=date(2026, 12, 15))
    now = at("2027-01-10T09:00")
    with session(db_url) as s:
        with pytest.raises(InputError, match="trước khi kỳ Năm 2027 bắt đầu"):
            record_submission(s, pack, SubmissionIn(obligation=plan.obligation, unit=plan.unit, period="2027",
                                                    submitted_on=date(2025, 6, 1)), now)
        row = record_submission(s, pack, SubmissionIn(obligation=plan.obligation, unit=plan.unit, period="2027",
                                                      submitted_on=date(2026, 12, 15)), now)
    assert row.closed and row.submitted_on == date(2026, 12, 15)


def test_a_period_written_as_people_write_it_is_recorded_under_its_key(db_url: str, minipack) -> None:
    now = at("2026-03-20T07:00")
    with session(db_url) as s:
        sync_instances(s, minipack, now)
        row = record_submission(s, minipack, SubmissionIn(obligation="thang", unit="skhcn", period="Tháng 02/2026",
                                                          submitted_on=date(2026, 2, 20)), now)
        assert row.period == "2026-02" and row.closed
        assert len(s.exec(select(InstanceRow).where(InstanceRow.obligation == "thang", InstanceRow.unit == "skhcn",
                                                    InstanceRow.period == "2026-02")).all()) == 1


def test_schema_head_is_alembics_head_and_an_older_database_is_upgraded(tmp_path) -> None:
    """engine.db skips Alembic for a database at SCHEMA_HEAD (one query instead of ~0.15 s): the
    constant must name the newest migration, and a database one revision behind must still be
    brought up by migrate()."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    from engine.db import SCHEMA_HEAD, _current_revision, alembic_config, make_engine, migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert SCHEMA_HEAD == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    command.upgrade(alembic_config(url), "0008")
    assert _current_revision(url) == "0008"
    migrate(url)
    assert _current_revision(url) == SCHEMA_HEAD
    eng = make_engine(url)
    try:
        assert inspect(eng).has_table("inbound_mails")
    finally:
        eng.dispose()
