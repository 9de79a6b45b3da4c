"""KPI status by hand-computed examples: each comparator and kind, against the minipack's yearly
report `nam-skhcn` (due 30/11, rolled to Monday 01/12/2025 in 2025; 30/11/2026 in 2026).

Tolerance is 0.1 of the segment's planned change everywhere below.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.kpi.classify import Obs, Schedule, evaluate
from engine.kpi.loader import KpiPack, load_kpi

KPI = """
kpi_settings: {tolerance: 0.1}
documents: [{id: kh, title: "Kế hoạch thử"}]
kpi_groups: [{id: g, code: a, name: "Nhóm thử"}]
indicators:
  - id: ty-le                       # stock, ≥, baseline 20 (31/12/2024) → 40 (31/12/2026) → 80 (31/12/2030)
    name: "Tỷ lệ thử"
    group: g
    unit: percent
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    baseline: {value: 20, date: 2024-12-31}
    targets:
      - {milestone: 2026-12-31, ge: 40, section: "1", text: "≥ 40%"}
      - {milestone: 2030-12-31, ge: 80, section: "1", text: "≥ 80%"}
  - id: ty-le-giam                  # stock, ≤ (a share that must fall): 50 → 30 over 2025–2028
    name: "Tỷ lệ phải giảm"
    group: g
    unit: percent
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    baseline: {value: 50, date: 2024-12-31}
    targets:
      - {milestone: 2028-12-31, le: 30, section: "2", text: "≤ 30%"}
  - id: so-nhiem-vu                 # flow: 2025 ≥ 20; "mỗi năm" ≥ 40 by 2030, ramp 24, 28, 32, 36, 40
    name: "Số nhiệm vụ trong năm"
    group: g
    unit: count
    kind: flow
    responsible: skhcn
    source: nam-skhcn
    document: kh
    targets:
      - {milestone: 2025-12-31, ge: 20, section: "3", text: "≥ 20"}
      - {milestone: 2030-12-31, ge: 40, section: "3", text: "Mỗi năm ≥ 40"}
  - id: sau-nay                     # flow judged only 2029–2030
    name: "Chỉ tiêu mỗi năm về sau"
    group: g
    unit: count
    kind: flow
    responsible: skhcn
    source: nam-skhcn
    document: kh
    targets:
      - {milestone: 2030-12-31, ge: 5, since: 2029-01-01, section: "4", text: "Mỗi năm ≥ 5"}
  - id: khoang                      # range 15–20 by 31/12/2026, baseline 10
    name: "Tỷ lệ trong khoảng"
    group: g
    unit: percent
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    baseline: {value: 10, date: 2024-12-31}
    targets:
      - {milestone: 2026-12-31, range: [15, 20], section: "5", text: "15 - 20%"}
  - id: xep-hang                    # rank, top 20 by 31/12/2028, baseline rank 40
    name: "Thứ hạng thử"
    group: g
    unit: rank
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    baseline: {value: 40, date: 2024-12-31}
    targets:
      - {milestone: 2028-12-31, top: 20, section: "6", text: "nhóm 20"}
  - id: co-khong                    # yes/no deliverable by 31/12/2026
    name: "Công trình thử"
    group: g
    unit: boolean
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    targets:
      - {milestone: 2026-12-31, eq: 1, section: "7", text: "Xây dựng công trình"}
  - id: chi-so                      # "=": index exactly 0,8 by 31/12/2026
    name: "Chỉ số thử"
    group: g
    unit: index
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    baseline: {value: 0.5, date: 2024-12-31}
    targets:
      - {milestone: 2026-12-31, eq: 0.8, section: "8", text: "= 0,8"}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[KpiPack, object, Schedule]:
    from engine.rules_loader import load_pack
    from tests.conftest import CALENDAR, MINIPACK

    pack = load_pack(MINIPACK, CALENDAR)
    d: Path = tmp_path_factory.mktemp("kpi")
    (d / "kpi.yaml").write_text(KPI, encoding="utf-8")
    return load_kpi(d, pack), pack, Schedule(pack)


def status(setup, target: str, as_of: date, **values: list[tuple[str, float]]):
    kpi, pack, sched = setup
    vals = {ind.replace("_", "-"): [Obs(v, date.fromisoformat(d)) for d, v in obs] for ind, obs in values.items()}
    res = {r.target.id: r for r in evaluate(kpi, pack, vals, as_of, sched=sched)}
    return res[target]


def test_schedule_is_the_reports_due_days(setup) -> None:
    _, _, sched = setup
    assert sched.year_due("nam-skhcn", 2025) == date(2025, 12, 1)     # 30/11/2025 is a Sunday
    assert sched.year_due("nam-skhcn", 2026) == date(2026, 11, 30)


# --- stock, ≥ ----------------------------------------------------------------------------------
# Path 20 (31/12/2024) → 40 (31/12/2026): at 31/12/2025 (365 of 730 days) 30.0; tolerance 0.1 × 20 = 2.

def test_stock_on_its_path(setup) -> None:
    r = status(setup, "ty-le-2026", date(2026, 6, 30), ty_le=[("2025-12-31", 29)])
    assert r.status == "on_track"
    assert r.expected == pytest.approx(30.0)
    assert r.status_vi == "Đúng tiến độ"


def test_stock_behind_its_path(setup) -> None:
    r = status(setup, "ty-le-2026", date(2026, 6, 30), ty_le=[("2025-12-31", 27.5)])   # 27,5 < 30 − 2
    assert r.status == "behind" and r.status_vi == "Chậm tiến độ"
    assert "cần khoảng 30 %" in r.detail


def test_later_milestone_follows_the_same_path(setup) -> None:
    # before 31/12/2026 the 2030 target's path is the 2026 segment: same expected value
    assert status(setup, "ty-le-2030", date(2026, 6, 30), ty_le=[("2025-12-31", 27.5)]).status == "behind"
    r = status(setup, "ty-le-2030", date(2026, 6, 30), ty_le=[("2025-12-31", 30)])
    assert r.status == "on_track" and r.expected == pytest.approx(30.0)


def test_stock_met_early_and_at_milestone_missed(setup) -> None:
    assert status(setup, "ty-le-2026", date(2026, 6, 30), ty_le=[("2025-12-31", 45)]).status == "met"
    # judged once the 2026 report is due (30/11/2026): the 2026 value decides
    r = status(setup, "ty-le-2026", date(2027, 1, 5), ty_le=[("2025-12-31", 30), ("2026-11-14", 38)])
    assert r.status == "missed" and r.status_vi == "Không đạt"
    assert status(setup, "ty-le-2026", date(2027, 1, 5), ty_le=[("2026-11-14", 41)]).status == "met"


def test_no_value_for_the_latest_period(setup) -> None:
    # the 2026 report was due 30/11/2026; the newest value is of 2025
    r = status(setup, "ty-le-2030", date(2026, 12, 5), ty_le=[("2025-12-31", 30)])
    assert r.status == "no_data" and r.period == "2026" and r.status_vi == "Thiếu số liệu"
    # milestone passed without a value of its period
    r = status(setup, "ty-le-2026", date(2027, 1, 5), ty_le=[("2025-12-31", 30)])
    assert r.status == "no_data" and r.period == "2026"


def test_baseline_counts_as_data_of_its_period(setup) -> None:
    # the 2024 report was due 02/12/2024; the baseline (31/12/2024) is a value of that period
    r = status(setup, "ty-le-2026", date(2025, 11, 20))
    assert r.status == "on_track" and r.latest.value == 20
    # a deliverable without baseline or value: the 2024 period is missing
    assert status(setup, "co-khong-2026", date(2025, 11, 20)).status == "no_data"


# --- stock, ≤ (mirrored) ---------------------------------------------------------------------
# 50 → 30 over 1461 days: at 31/12/2025 50 − 20 × 365/1461 = 45,00; behind above 47,00.

def test_le_target_mirrored(setup) -> None:
    r = status(setup, "ty-le-giam-2028", date(2026, 6, 30), ty_le_giam=[("2025-12-31", 46.5)])
    assert r.status == "on_track" and r.expected == pytest.approx(50 - 20 * 365 / 1461)
    assert status(setup, "ty-le-giam-2028", date(2026, 6, 30), ty_le_giam=[("2025-12-31", 47.5)]).status == "behind"
    assert status(setup, "ty-le-giam-2028", date(2026, 6, 30), ty_le_giam=[("2025-12-31", 29)]).status == "met"


# --- flow ("mỗi năm") ----------------------------------------------------------------------------
# 2030 target: anchor 2025 (20) → 2030 (40): requirement 2026: 24, 2027: 28, …

def test_flow_missed_last_year(setup) -> None:
    r = status(setup, "so-nhiem-vu-2030", date(2027, 3, 1), so_nhiem_vu=[("2025-12-10", 22), ("2026-11-20", 15)])
    assert r.status == "missed" and r.period == "2026"
    assert r.expected == pytest.approx(24)
    assert "Không đạt năm 2026" in r.detail and "≥ 24" in r.detail


def test_flow_year_met_then_on_track(setup) -> None:
    r = status(setup, "so-nhiem-vu-2030", date(2027, 3, 1), so_nhiem_vu=[("2026-11-20", 25)])
    assert r.status == "on_track" and r.period == "2026"


def test_flow_year_without_value(setup) -> None:
    r = status(setup, "so-nhiem-vu-2030", date(2027, 3, 1), so_nhiem_vu=[("2025-12-10", 22)])
    assert r.status == "no_data" and r.period == "2026"


def test_flow_first_milestone_judged_on_its_year(setup) -> None:
    assert status(setup, "so-nhiem-vu-2025", date(2027, 3, 1), so_nhiem_vu=[("2025-12-10", 22)]).status == "met"
    assert status(setup, "so-nhiem-vu-2025", date(2027, 3, 1), so_nhiem_vu=[("2025-12-10", 19)]).status == "missed"


def test_flow_year_in_progress_pro_rata(setup) -> None:
    # 2027 not due yet; year-to-date 30/06/2027 (day 181 of 365): 28 × 181/365 = 13,88; tolerance 2,8
    on = status(setup, "so-nhiem-vu-2030", date(2027, 7, 1), so_nhiem_vu=[("2026-11-20", 25), ("2027-06-30", 12)])
    assert on.status == "on_track" and on.expected == pytest.approx(28 * 181 / 365)
    behind = status(setup, "so-nhiem-vu-2030", date(2027, 7, 1), so_nhiem_vu=[("2026-11-20", 25), ("2027-06-30", 10)])
    assert behind.status == "behind"


def test_flow_window_in_the_future_is_not_due(setup) -> None:
    assert status(setup, "sau-nay-2030", date(2026, 6, 30)).status == "not_due"
    assert status(setup, "sau-nay-2030", date(2029, 12, 5)).status == "no_data"


# --- range -----------------------------------------------------------------------------------------
# 10 → 15 (lower bound) over 730 days: at 31/12/2025 12,5; tolerance 0,5.

def test_range_path_and_bounds(setup) -> None:
    assert status(setup, "khoang-2026", date(2026, 1, 10), khoang=[("2025-12-31", 12.2)]).status == "on_track"
    assert status(setup, "khoang-2026", date(2026, 1, 10), khoang=[("2025-12-31", 11.9)]).status == "behind"
    assert status(setup, "khoang-2026", date(2027, 1, 5), khoang=[("2026-12-01", 18)]).status == "met"
    assert status(setup, "khoang-2026", date(2027, 1, 5), khoang=[("2026-12-01", 22)]).status == "missed"
    assert status(setup, "khoang-2026", date(2027, 1, 5), khoang=[("2026-12-01", 14)]).status == "missed"


# --- rank ("top N": lower is better) -------------------------------------------------------------
# 40 → 20 over 1461 days: at 31/12/2025 35,00; behind above 37,00.

def test_rank_top_n(setup) -> None:
    assert status(setup, "xep-hang-2028", date(2026, 6, 30), xep_hang=[("2025-12-31", 33)]).status == "on_track"
    assert status(setup, "xep-hang-2028", date(2026, 6, 30), xep_hang=[("2025-12-31", 38)]).status == "behind"
    assert status(setup, "xep-hang-2028", date(2026, 6, 30), xep_hang=[("2025-12-31", 18)]).status == "met"
    assert status(setup, "xep-hang-2028", date(2029, 1, 5), xep_hang=[("2028-11-14", 21)]).status == "missed"
    assert status(setup, "xep-hang-2028", date(2029, 1, 5), xep_hang=[("2028-11-14", 20)]).status == "met"


# --- yes/no and "=" ---------------------------------------------------------------------------------

def test_boolean_deliverable(setup) -> None:
    assert status(setup, "co-khong-2026", date(2026, 6, 30), co_khong=[("2025-12-31", 0)]).status == "on_track"
    assert status(setup, "co-khong-2026", date(2026, 6, 30)).status == "no_data"
    assert status(setup, "co-khong-2026", date(2027, 1, 5), co_khong=[("2026-11-14", 0)]).status == "missed"
    assert status(setup, "co-khong-2026", date(2027, 1, 5), co_khong=[("2026-11-14", 1)]).status == "met"


def test_equal_target(setup) -> None:
    assert status(setup, "chi-so-2026", date(2027, 1, 5), chi_so=[("2026-11-14", 0.8)]).status == "met"
    assert status(setup, "chi-so-2026", date(2027, 1, 5), chi_so=[("2026-11-14", 0.81)]).status == "missed"
    # path 0,5 → 0,8: at 31/12/2025 0,65; tolerance 0,03
    assert status(setup, "chi-so-2026", date(2026, 6, 30), chi_so=[("2025-12-31", 0.63)]).status == "on_track"
    assert status(setup, "chi-so-2026", date(2026, 6, 30), chi_so=[("2025-12-31", 0.6)]).status == "behind"


def test_tolerance_override(setup) -> None:
    kpi, pack, sched = setup
    vals = {"ty-le": [Obs(27.5, date(2025, 12, 31))]}
    res = {r.target.id: r for r in evaluate(kpi, pack, vals, date(2026, 6, 30), tolerance=0.3, sched=sched)}
    assert res["ty-le-2026"].status == "on_track"     # 27,5 ≥ 30 − 0,3 × 20


@pytest.mark.parametrize("brk", ["\\n", "\\r\\n", "\\v", "\\f", "\\N", "\\L", "\\P"])   # YAML escapes: NEL, U+2028, U+2029
def test_line_breaks_in_an_indicator_name_fold_to_one_space(tmp_path: Path, brk: str) -> None:
    """A name pasted from a Word document with a line break still loads, and reads on one line in
    tables, mail subjects and charts (before: the file was refused)."""
    from engine.rules_loader import load_pack
    from tests.conftest import CALENDAR, MINIPACK

    text = KPI.replace('name: "Tỷ lệ thử"', f'name: "  Tỷ lệ{brk}{brk}thử {brk}"', 1)
    assert text != KPI
    (tmp_path / "kpi.yaml").write_text(text, encoding="utf-8")
    kpi = load_kpi(tmp_path, load_pack(MINIPACK, CALENDAR))
    assert kpi.indicators["ty-le"].name == "Tỷ lệ thử"


def test_kind_label_never_calls_a_rate_cumulative(setup) -> None:
    from engine.kpi.charts import axis_label
    from engine.kpi.model import kind_label

    kpi = setup[0]
    assert kind_label(kpi.indicators["ty-le"]) == "Giá trị tại thời điểm"              # percent stock
    assert kind_label(kpi.indicators["chi-so"]) == "Giá trị tại thời điểm"             # index stock
    assert kind_label(kpi.indicators["so-nhiem-vu"]).startswith("Mỗi năm")             # count flow
    assert "tích lũy" not in axis_label(kpi.indicators["so-nhiem-vu"]).lower()
    count_stock = SimpleNamespace(unit="count", kind="stock")                            # e.g. researchers
    assert kind_label(count_stock).startswith("Tích lũy") and "(tích lũy)" in axis_label(count_stock)
    for ind in [*kpi.indicators.values(), count_stock]:   # the report's "Loại" and the chart's axis: one rule
        assert ("tích lũy" in kind_label(ind).lower()) == ("tích lũy" in axis_label(ind).lower())


def test_a_name_of_only_line_breaks_is_refused_in_vietnamese(tmp_path: Path) -> None:
    from engine.errors import RulePackInvalid
    from engine.rules_loader import load_pack
    from tests.conftest import CALENDAR, MINIPACK

    (tmp_path / "kpi.yaml").write_text(KPI.replace('name: "Tỷ lệ thử"', 'name: " \\n\\L "', 1), encoding="utf-8")
    with pytest.raises(RulePackInvalid) as exc:
        load_kpi(tmp_path, load_pack(MINIPACK, CALENDAR))
    (e,) = exc.value.errors
    assert e.field == "indicators[0].name" and e.line == 7 and e.message == "không được để trống", str(e)
