"""Due dates computed by hand for the test pack (tests/fixtures/minipack)."""

from datetime import date, datetime

import pytest

from engine.instances import generate_instances
from engine.rules_loader import RulePack, load_pack
from tests.conftest import CALENDAR, MINIPACK


@pytest.fixture(scope="module")
def pack() -> RulePack:
    return load_pack(MINIPACK, CALENDAR)


def _due(pack: RulePack, obligation: str, unit: str, period: str) -> date:
    year = int(period[:4]) if period[:4].isdigit() else 2025
    for inst in generate_instances(pack, date(year - 1, 1, 1), date(year + 1, 12, 31)):
        if (inst.obligation, inst.unit, inst.period) == (obligation, unit, period):
            return inst.due
    raise AssertionError(f"no instance {obligation}/{unit}/{period}")


@pytest.mark.parametrize("obligation,unit,period,expected", [
    # "trước ngày 01/12": last day 30/11; 2026 is a Monday, 2025 a Sunday -> Monday 01/12 (Điều 148).
    ("nam-skhcn", "skhcn", "2026", date(2026, 11, 30)),
    ("nam-skhcn", "skhcn", "2025", date(2025, 12, 1)),
    # Day 18 of the month, roll forward: 18/02/2026 is in Tết (16–20/02) -> Monday 23/02.
    ("thang", "skhcn", "2026-02", date(2026, 2, 23)),
    ("thang", "skhcn", "2026-04", date(2026, 4, 20)),   # Saturday 18/04 -> Monday 20/04
    ("thang", "skhcn", "2026-03", date(2026, 3, 18)),   # a plain Wednesday
    # Compiled report: 3 working days after the units' deadline: 23/02 -> 26/02.
    ("thang-tong-hop", "vp", "2026-02", date(2026, 2, 26)),
    # Units' Aug 2026 due Tue 18/08; +3 working days = Fri 21/08 (22/08 make-up Saturday not needed).
    ("thang-tong-hop", "vp", "2026-08", date(2026, 8, 21)),
    # Units' Aug 2025 due Mon 18/08/2025 ; +3 = Thu 21/08.
    ("thang-tong-hop", "vp", "2025-08", date(2025, 8, 21)),
    # Last day of the quarter, roll backward: 31/12/2026 Thursday stays; 30/06/2026 Tuesday.
    ("quy-cuoi-thang", "ubnd", "2026-Q2", date(2026, 6, 30)),
    ("quy-cuoi-thang", "ubnd", "2026-Q4", date(2026, 12, 31)),
    # One-off in Q1 2025, fixed 31/03/2025 (Monday).
    ("hoi-nghi", "skhcn", "once", date(2025, 3, 31)),
])
def test_due_dates(pack: RulePack, obligation: str, unit: str, period: str, expected: date) -> None:
    assert _due(pack, obligation, unit, period) == expected


def test_month_end_rolls_backward_over_30_april(pack: RulePack) -> None:
    """Quarter ending in a holiday run: roll backward lands on the last working day before it."""
    from engine.periods import periods_between

    ob = pack.obligations["quy-cuoi-thang"]
    calc = pack.due_calculator()
    # Q3 2025 ends Tue 30/09/2025 (working): unchanged.
    q = {p.key: p for p in periods_between(ob, date(2025, 1, 1), date(2025, 12, 31))}
    assert calc.due(ob, q["2025-Q3"]).day == date(2025, 9, 30)


def test_cutoff_windows_follow_nd09(pack: RulePack) -> None:
    insts = {(i.obligation, i.period): i for i in generate_instances(pack, date(2026, 1, 1), date(2026, 12, 31), unit="skhcn")}
    jan = insts[("thang", "2026-01")]
    assert (jan.cutoff_start, jan.cutoff_end) == (date(2025, 12, 15), date(2026, 1, 14))
    year = insts[("nam-skhcn", "2026")]
    assert (year.cutoff_start, year.cutoff_end) == (date(2025, 11, 15), date(2026, 11, 14))


def test_due_moment_is_end_of_day_in_vietnam(pack: RulePack) -> None:
    inst = next(i for i in generate_instances(pack, date(2026, 11, 30), date(2026, 11, 30)) if i.unit == "skhcn")
    assert inst.due_at.isoformat() == "2026-11-30T23:59:59+07:00"
    assert inst.due_at > datetime.fromisoformat("2026-11-30T16:59:58+00:00")
