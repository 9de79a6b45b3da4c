"""Properties of the seed packs in rules/ that the secretariat relies on."""

from __future__ import annotations

from datetime import date

import pytest

from engine.instances import generate_instances
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, RULES


@pytest.fixture(scope="module")
def pack():
    return load_pack(RULES, CALENDAR)


@pytest.fixture(scope="module")
def instances(pack):
    return generate_instances(pack, date(2025, 1, 1), date(2027, 12, 31))


def test_every_due_date_is_a_working_day_unless_rule_keeps_it(pack, instances) -> None:
    bad = [i for i in instances if not pack.calendar.is_working_day(i.due) and pack.obligations[i.obligation].due.roll != "keep"]
    assert bad == []
    assert len(instances) > 1000


def test_annual_report_to_so_khcn_2026_is_due_30_november(pack) -> None:
    reporters = {u for u in pack.reporters(pack.obligations["khhd57-skhcn-nam"])}
    got = [i for i in generate_instances(pack, date(2026, 1, 1), date(2026, 12, 31)) if i.recipient == "so-khcn"
           and i.obligation.endswith("skhcn-nam")]
    assert got and {i.due for i in got} == {date(2026, 11, 30)}
    # every reporter that exists on 30/11/2026 (or its successor) has exactly one such report
    owners = {pack.owner_on(u, date(2026, 11, 30)) for u in reporters} - {None}
    assert sorted(i.unit for i in got) == sorted(owners)


def test_annual_report_2025_rolls_to_monday_1_december(pack) -> None:
    got = [i for i in generate_instances(pack, date(2025, 11, 1), date(2025, 12, 31)) if i.obligation.endswith("skhcn-nam")]
    assert got and {(i.due_unrolled, i.due) for i in got} == {(date(2025, 11, 30), date(2025, 12, 1))}


def test_32_ctr_tu_duties_end_when_the_plan_replaces_them(pack, instances) -> None:
    old = [i for i in instances if i.obligation.startswith("ctr32-")]
    new = [i for i in instances if i.obligation == "khhd57-skhcn-nam"]
    assert old == []                       # the 32-CTr/TU yearly report never fell due before replacement
    assert {i.period for i in new} == {"2025", "2026", "2027"}
    assert "ctr32-skhcn-nam" in pack.obligations["khhd57-skhcn-nam"].supersedes


def test_nothing_due_inside_tet_2026(instances) -> None:
    assert not [i for i in instances if date(2026, 2, 14) <= i.due <= date(2026, 2, 22)]


def test_every_obligation_cites_its_source(pack) -> None:
    for ob in pack.obligations.values():
        assert ob.basis.document and ob.basis.section, ob.id


def test_compiled_levels_are_ordered(pack, instances) -> None:
    by_key = {}
    for i in instances:
        by_key.setdefault((i.obligation, i.period), i.due)
    from engine.rules_model import WorkingDaysAfterObligation

    checked = 0
    for ob in pack.obligations.values():
        if isinstance(ob.due, WorkingDaysAfterObligation):
            for (oid, period), due in by_key.items():
                if oid == ob.id and (ob.due.obligation, period) in by_key:
                    assert due > by_key[(ob.due.obligation, period)]
                    checked += 1
    assert checked > 50
