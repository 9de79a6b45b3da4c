"""`dondoc simulate` syncs its copy of the state only on the days a sync can change something
(engine/app/simulation.py); these tests hold it to the day-by-day loop it replaced (sync, then
evaluate, every day, as the daemon does), notice for notice and in the same order."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import Session

from engine.app import simulation
from engine.app.simulation import copy_state, simulate
from engine.clock import TZ
from engine.db import make_engine, session
from engine.pipeline import evaluate
from engine.rules_loader import load_pack
from engine.rules_model import ReminderPolicy
from engine.sync import HORIZON_DAYS, record_installation, sync_instances
from tests.conftest import CALENDAR, MINIPACK, RULES


def day_by_day(source_url: str, pack, start: date, end: date, tracking_start: date | None = None):
    """The reference: a full sync before every day's evaluation, on a throw-away copy."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ref.db'}"
        copy_state(source_url, url, cache=False)
        eng = make_engine(url)
        try:
            day = start
            while day <= end:
                now = datetime.combine(day, time(7), tzinfo=TZ)
                with Session(eng, expire_on_commit=False) as ses:
                    sync_instances(ses, pack, now, tracking_start=tracking_start)
                    rep = evaluate(ses, pack, now)
                out.extend((day, n) for n in rep.notices)
                day += timedelta(days=1)
        finally:
            eng.dispose()
    return out


def synced_state(url: str, pack, day: date) -> None:
    with session(url) as s:
        now = datetime.combine(day, time(7), tzinfo=TZ)
        record_installation(s, now)
        sync_instances(s, pack, now)


@pytest.fixture
def unit_ends_in_window(tmp_path: Path):
    """The mini pack where Sở Thông tin và Truyền thông (a member of “Các sở”, with overdue monthly
    reports) ends on 20/11/2026 and Sở Khoa học và Công nghệ answers for it from 21/11."""
    pack_dir = tmp_path / "pack"
    shutil.copytree(MINIPACK, pack_dir)
    units = pack_dir / "units.yaml"
    text = units.read_text(encoding="utf-8")
    assert "valid_until: 2025-02-28" in text
    units.write_text(text.replace("valid_until: 2025-02-28", "valid_until: 2026-11-20"), encoding="utf-8")
    pack = load_pack(pack_dir, CALENDAR)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    synced_state(url, pack, date(2026, 10, 1))
    return url, pack


def test_a_unit_ending_mid_window_gives_the_same_notices_as_a_daily_sync(unit_ends_in_window) -> None:
    url, pack = unit_ends_in_window
    start, end = date(2026, 11, 10), date(2026, 11, 30)
    want = day_by_day(url, pack, start, end)
    assert simulate(url, pack, start, end) == want
    # The case matters: the ended unit is chased until 20/11 and no longer after.
    ended = [d for d, n in want if n.unit == "stttt"]
    assert ended and max(ended) <= date(2026, 11, 20)
    assert any(d > date(2026, 11, 20) and n.unit == "skhcn" for d, n in want)


def test_without_the_resync_on_the_boundary_day_the_comparison_fails(unit_ends_in_window,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The differential test can fail: skipping the sync on 21/11 keeps chasing the ended unit."""
    url, pack = unit_ends_in_window
    start, end = date(2026, 11, 10), date(2026, 11, 30)
    monkeypatch.setattr(simulation, "_unit_boundaries", lambda *a: set())
    got = simulate(url, pack, start, end)
    assert got != day_by_day(url, pack, start, end)
    assert any(d > date(2026, 11, 20) and n.unit == "stttt" for d, n in got)


def test_seed_pack_around_the_year_end_deadlines_matches_the_daily_loop(tmp_path: Path) -> None:
    """Reminders, due-day notices, overdue notices and escalations of the seed pack over nine days
    around 18/12/2026, on a state in use since the start of 2026."""
    pack = load_pack(RULES, CALENDAR)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    synced_state(url, pack, date(2026, 1, 2))
    start, end = date(2026, 12, 14), date(2026, 12, 22)
    want = day_by_day(url, pack, start, end, tracking_start=date(2026, 1, 1))
    got = simulate(url, pack, start, end, tracking_start=date(2026, 1, 1))
    assert len(want) > 100 and {n.kind for _, n in want} >= {"reminder", "due_today", "overdue"}
    assert got == want


def test_the_stretched_horizon_is_safe_because_no_notice_is_owed_that_far_ahead() -> None:
    """Instances due more than HORIZON_DAYS after a day cannot owe a notice on that day: a policy
    reminds at most 60 working days before the due day (the rule model's bound)."""
    ReminderPolicy(id="p", before_due_working_days=[60])
    with pytest.raises(ValidationError):
        ReminderPolicy(id="p", before_due_working_days=[61])
    assert 60 * 7 / 5 + 14 < HORIZON_DAYS     # 60 working days, with two weeks of holidays, are < 400 days


def test_no_state_yet_simulates_from_an_empty_copy(tmp_path: Path) -> None:
    pack = load_pack(MINIPACK, CALENDAR)
    url = f"sqlite:///{tmp_path / 'none.db'}"
    got = simulate(url, pack, date(2026, 11, 12), date(2026, 11, 19))
    assert not (tmp_path / "none.db").exists()          # the real state is not created
    assert got and {n.kind for _, n in got} >= {"reminder", "due_today"}
