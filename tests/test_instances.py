"""Instances honour unit validity, successors, effective dates and the tracking start."""

from datetime import date

import pytest

from engine.instances import generate_instances
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, MINIPACK


@pytest.fixture(scope="module")
def pack():
    return load_pack(MINIPACK, CALENDAR)


def test_ended_unit_reports_until_it_ends_then_successor_owes(pack) -> None:
    feb = [i for i in generate_instances(pack, date(2025, 2, 1), date(2025, 2, 28)) if i.obligation == "thang"]
    assert {i.unit for i in feb} == {"skhcn", "stttt"}       # Sở TT&TT exists until 28/02/2025
    mar = [i for i in generate_instances(pack, date(2025, 3, 1), date(2025, 3, 31)) if i.obligation == "thang"]
    assert {i.unit for i in mar} == {"skhcn"}                # merged into Sở KH&CN: one report, not two
    # A successor that already reports in its own right records no inheritance.
    assert mar[0].inherited_from == ()


def test_successor_inherits_duty_of_a_unit_it_replaced(pack) -> None:
    y2025 = [i for i in generate_instances(pack, date(2025, 1, 1), date(2025, 12, 31)) if i.obligation == "nam-skhcn"]
    by_unit = {i.unit: i for i in y2025}
    assert "bao" not in by_unit                      # Báo Bình Định ended 30/06/2025
    assert by_unit["baogl"].inherited_from == ("bao",)


def test_unit_not_yet_created_owes_nothing(pack) -> None:
    y2024 = generate_instances(pack, date(2024, 1, 1), date(2024, 12, 31), unit="baogl")
    assert y2024 == []
    assert [i.unit for i in generate_instances(pack, date(2024, 1, 1), date(2024, 12, 31)) if i.obligation == "nam-skhcn"].count("bao") == 1


def test_tracking_start(pack) -> None:
    items = generate_instances(pack, date(2025, 11, 1), date(2026, 1, 31))
    assert all(i.tracked == (i.due >= date(2026, 1, 1)) for i in items)
    override = generate_instances(pack, date(2025, 11, 1), date(2026, 1, 31), tracking_start=date(2025, 1, 1))
    assert all(i.tracked for i in override)


def test_range_is_inclusive_and_by_due_day(pack) -> None:
    items = generate_instances(pack, date(2026, 11, 30), date(2026, 11, 30))
    assert {(i.obligation, i.period) for i in items} == {("nam-skhcn", "2026")}
    assert all(i.due == date(2026, 11, 30) for i in items)


def test_effective_dates(tmp_path) -> None:
    import shutil

    target = tmp_path / "p"
    shutil.copytree(MINIPACK, target)
    text = (target / "obligations.yaml").read_text(encoding="utf-8")
    text = text.replace("    due: {rule: day_of_last_month, day: 18, roll: forward}\n",
                        "    due: {rule: day_of_last_month, day: 18, roll: forward}\n"
                        "    effective_from: 2026-03-01\n    effective_until: 2026-06-30\n", 1)
    (target / "obligations.yaml").write_text(text, encoding="utf-8")
    p = load_pack(target, CALENDAR)
    periods = sorted({i.period for i in generate_instances(p, date(2026, 1, 1), date(2026, 12, 31)) if i.obligation == "thang"})
    assert periods == ["2026-03", "2026-04", "2026-05", "2026-06"]


def test_superseding_obligation_ends_the_old_one(tmp_path) -> None:
    import shutil

    target = tmp_path / "p"
    shutil.copytree(MINIPACK, target)
    with (target / "obligations.yaml").open("a", encoding="utf-8") as f:
        f.write("""  - id: nam-skhcn-moi
    title: "Báo cáo năm về Sở KH&CN (theo kế hoạch mới)"
    basis: {document: "Kế hoạch mới", section: "V"}
    kind: dinh_ky
    reporters: [tat-ca]
    recipient: skhcn
    recurrence: {freq: yearly}
    cutoff: {day: 14, month: 11}
    due: {rule: before_date, day: 1, month: 12, roll: forward}
    effective_from: 2026-05-01
    supersedes: [nam-skhcn]
""")
    p = load_pack(target, CALENDAR)
    got = {(i.obligation, i.period) for i in generate_instances(p, date(2025, 1, 1), date(2027, 12, 31), unit="skhcn")
           if i.obligation.startswith("nam-skhcn")}
    assert got == {("nam-skhcn", "2025"), ("nam-skhcn-moi", "2026"), ("nam-skhcn-moi", "2027")}


def test_the_edges_of_the_supported_years_compute(pack) -> None:
    """Deadlines at MIN_YEAR and in the last weeks of MAX_YEAR look past the range (periods end
    before their due day, due days after it) without overflowing; beyond it, clock refuses."""
    from engine.clock import BadDate, parse_date
    from engine.limits import MAX_YEAR, MIN_YEAR

    generate_instances(pack, date(MIN_YEAR, 1, 1), date(MIN_YEAR, 2, 1))   # looks back into 1998: must not raise
    late = generate_instances(pack, date(MAX_YEAR, 11, 1), date(MAX_YEAR, 12, 31))
    assert late and all(i.due.year == MAX_YEAR for i in late)
    for text in (f"{MAX_YEAR + 1}-01-01", f"01/01/{MIN_YEAR - 1}", "9999-12-31", "0001-01-01"):
        with pytest.raises(BadDate, match=f"{MIN_YEAR}–{MAX_YEAR}"):
            parse_date(text)


def test_a_document_due_early_in_its_own_period_is_listed() -> None:
    """The yearly inspection plan for 2027 is due 31/01/2027 (→ 01/02) while its period ends
    31/12/2027: `deadlines --from 2027-01-01 --to 2027-03-01` used to miss it."""
    from tests.conftest import RULES

    pack = load_pack(RULES, CALENDAR)
    found = [i for i in generate_instances(pack, date(2027, 1, 1), date(2027, 3, 1))
             if i.obligation == "khhd57-bcd-ke-hoach-kiem-tra"]
    assert [(i.period, i.due) for i in found] == [("2027", date(2027, 2, 1))]
