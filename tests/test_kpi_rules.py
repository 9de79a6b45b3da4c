"""KPI files: every target of the plans is present (counted by hand from the documents, see
docs/kpi.md), the second province's pack passes, and each kind of breakage names file, line and
field in Vietnamese."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.errors import RuleError
from engine.kpi.loader import kpi_check_errors, load_kpi
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, MINIPACK, RULES, ROOT

runner = CliRunner()
BINH_PHUOC = ROOT / "examples" / "binh-phuoc"

# Counted by reading seeds/001 section III.2 bullet by bullet (docs/kpi.md, "Cách đếm").
EXPECTED_001 = {
    2025: {"a": 3, "b": 7, "c": 9, "d": 9, "e": 15},
    2030: {"a": 2, "b": 7, "c": 13, "d": 11, "e": 23},
    2035: {"a": 1, "b": 4, "c": 9, "d": 10, "e": 12},
    2040: {"a": 1, "b": 5, "c": 13, "d": 11, "e": 11},
    2045: {"a": 1, "b": 5, "c": 9, "d": 11, "e": 14},
}
NOT_TRACKED_001 = {"2025": 3, "2030": 4, "2035": 1, "2040": 4, "2045": 11}


@pytest.fixture(scope="module")
def seed():
    pack = load_pack(RULES, CALENDAR)
    return pack, load_kpi(RULES / "kpi", pack)


def test_every_target_of_001_section_III_2_is_present(seed) -> None:
    _, kpi = seed
    got = Counter((t.milestone.year, kpi.groups[t.group].code) for t in kpi.targets.values() if t.document == "khhd57")
    table = {y: {g: got[(y, g)] for g in "abcde"} for y in EXPECTED_001}
    assert table == EXPECTED_001
    assert sum(got.values()) == 216
    assert all(t.milestone.month == 12 and t.milestone.day == 31 for t in kpi.targets.values())
    # sections agree with milestone and group: "III.2.<n> <letter>)"
    stage = {2025: 1, 2030: 2, 2035: 3, 2040: 4, 2045: 5}
    for t in kpi.targets.values():
        if t.document == "khhd57":
            assert t.section.startswith(f"III.2.{stage[t.milestone.year]} {kpi.groups[t.group].code})"), t.id
    nt = Counter(n.section[6] for n in kpi.not_tracked if n.document == "khhd57")
    assert {str(2020 + 5 * int(k)): v for k, v in nt.items()} == NOT_TRACKED_001


def test_same_indicator_across_milestones_is_one_indicator(seed) -> None:
    _, kpi = seed
    assert [t.milestone.year for t in kpi.by_indicator["dan-so-tiep-can-dvs"]] == [2025, 2030, 2035, 2040, 2045]
    assert [t.op for t in kpi.by_indicator["dan-so-thuong-xuyen-dvs"]] == ["range", "ge"]
    names = Counter(i.name for i in kpi.indicators.values())
    assert max(names.values()) == 1
    # a bullet with two numbers became two targets of two indicators
    assert kpi.targets["vneid-2030"].value == 80 and kpi.targets["chu-ky-so-2030"].value == 50


def test_targets_of_003_and_kinds(seed) -> None:
    _, kpi = seed
    ctr = {t.id: t for t in kpi.targets.values() if t.document == "ctr2021"}
    assert len(ctr) == 5
    assert (ctr["ctr2021-tfp-2025"].lo, ctr["ctr2021-tfp-2025"].hi) == (38, 42)
    assert kpi.indicators["ctr2021-doi-moi-cong-nghe"].kind == "flow"
    assert kpi.indicators["nhiem-vu-nghiem-thu"].kind == "flow"
    assert kpi.indicators["dn-khcn"].baseline.value == 9
    assert {i.unit for i in kpi.indicators.values()} >= {"percent", "percent_grdp", "count", "per_10000_people",
                                                          "per_1000_people", "index", "rank", "boolean"}


def test_responsible_units_and_assumptions(seed) -> None:
    pack, kpi = seed
    for ind in kpi.indicators.values():
        assert ind.responsible in pack.units and ind.source in pack.obligations
        if ind.document == "khhd57":   # the plan names no unit per target: every one is an assumption
            assert ind.responsible_assumption, ind.id
    assert kpi.indicators["ctr2021-tfp"].responsible_assumption is None   # the programme names it (III.2)
    assert pack.owner_on("bcsd-ubnd-tinh", kpi.targets["ctr2021-tfp-2025"].milestone) == "du-ubnd-tinh"


def test_second_province_pack_passes_both_checks() -> None:
    r = runner.invoke(app, ["rules", "check", str(BINH_PHUOC), "--calendar", str(CALENDAR), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["kpi", "check", str(BINH_PHUOC), "--calendar", str(CALENDAR), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["targets_per_milestone"] == {"2030": 15, "2045": 4}
    pack = load_pack(BINH_PHUOC, CALENDAR)
    kpi = load_kpi(BINH_PHUOC / "kpi", pack)
    assert kpi.targets["xh-dti-2030"].op == "top" and kpi.targets["xh-dti-2030"].value == 5
    assert kpi.targets["chi-rd-grdp-2030"].value == 1.5
    assert all(u.contacts[0].endswith("example.org") for u in pack.units.values())


def test_seed_kpi_check_cli_and_rules_check_hook() -> None:
    r = runner.invoke(app, ["kpi", "check", str(RULES), "--calendar", str(CALENDAR)])
    assert r.exit_code == 0, r.output
    assert "221 mục tiêu" in r.output
    assert kpi_check_errors(load_pack(RULES, CALENDAR)) == []
    assert kpi_check_errors(load_pack(MINIPACK, CALENDAR)) == []     # a pack without kpi/ is fine


# --- breakage: one kind at a time ------------------------------------------------------------------

GOOD = """documents: [{id: kh, title: "Kế hoạch"}]
kpi_groups: [{id: g, name: "Nhóm"}]
indicators:
  - id: mot
    name: "Chỉ tiêu một"
    group: g
    unit: percent
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    targets:
      - {milestone: 2030-12-31, ge: 60, section: "1", text: "≥ 60%"}
"""


def errors_for(tmp_path: Path, text: str, extra: str | None = None) -> list[RuleError]:
    d = tmp_path / "kpi"
    d.mkdir(exist_ok=True)
    (d / "a.yaml").write_text(text, encoding="utf-8")
    if extra is not None:
        (d / "b.yaml").write_text(extra, encoding="utf-8")
    return kpi_check_errors(load_pack(MINIPACK, CALENDAR), d)


def one(errors: list[RuleError]) -> RuleError:
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def test_good_file_passes(tmp_path: Path) -> None:
    assert errors_for(tmp_path, GOOD) == []


@pytest.mark.parametrize("old,new,line,field,words", [
    ("responsible: skhcn", "responsible: so-khong-co", 9, "indicators[0].responsible", "không có trong danh bạ"),
    ("responsible: skhcn", "responsible: cac-so", 9, "indicators[0].responsible", "là một nhóm"),
    ("source: nam-skhcn", "source: bao-cao-khong-co", 10, "indicators[0].source", "không có trong gói"),
    ("source: nam-skhcn", "source: thang-tong-hop", 10, "indicators[0].source", "không phải đơn vị báo cáo"),
    ("milestone: 2030-12-31", "milestone: 2030-02-30", 13, "indicators[0].targets[0].milestone", "2030-02-30"),
    ("ge: 60", "ge: 140", 13, "indicators[0].targets[0].ge", "140 lớn hơn 100"),
    ("ge: 60", "range: [70, 60]", 13, "indicators[0].targets[0].range", "cận dưới 70 lớn hơn cận trên 60"),
    ("ge: 60", "ge: 60, le: 90", 13, "indicators[0].targets[0]", "đúng một phép so sánh"),
    ("ge: 60", "top: 5", 13, "indicators[0].targets[0].top", "unit: rank"),
    ("unit: percent", "unit: phan-tram", 7, "indicators[0].unit", "phan-tram"),
    ("kind: stock", "kind: stock\n    baseline: {value: 1, date: 2031-01-01}", 9, "indicators[0].baseline.date",
     "không trước mốc đầu tiên"),
    ("group: g", "group: khong-co", 6, "indicators[0].group", "chưa được khai báo"),
    ("document: kh", "document: kh\n    mau: do", 12, "indicators[0].mau", "không được hỗ trợ"),
])
def test_each_breakage_is_located(tmp_path: Path, old: str, new: str, line: int, field: str, words: str) -> None:
    assert old in GOOD
    e = one(errors_for(tmp_path, GOOD.replace(old, new, 1)))
    assert e.file.endswith("a.yaml") and e.line == line and e.field == field, str(e)
    assert words in e.message, str(e)


def test_index_and_rank_ranges(tmp_path: Path) -> None:
    text = GOOD.replace("unit: percent", "unit: index").replace("ge: 60", "ge: 1.2")
    assert "lớn hơn 1" in one(errors_for(tmp_path, text)).message
    text = GOOD.replace("unit: percent", "unit: rank").replace("ge: 60", "top: 0")
    assert "phải ≥ 1" in one(errors_for(tmp_path, text)).message


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    second = GOOD.split("indicators:")[1]
    e = one(errors_for(tmp_path, GOOD, "indicators:" + second))
    assert e.file.endswith("b.yaml") and e.field == "indicators[0].id" and "bị trùng" in e.message and "a.yaml:" in e.message


def test_two_targets_same_year_need_their_own_id(tmp_path: Path) -> None:
    text = GOOD + '      - {milestone: 2030-12-31, ge: 70, section: "2", text: "≥ 70%"}\n'
    e = one(errors_for(tmp_path, text))
    assert e.line == 14 and "mot-2030" in e.message and "đặt id riêng" in e.message
    assert errors_for(tmp_path, text.replace("{milestone: 2030-12-31, ge: 70", "{id: mot-2030-b, milestone: 2030-12-31, ge: 70")) == []


def test_obligation_ended_before_the_milestone(tmp_path: Path, pack_copy: Path) -> None:
    shutil.copytree(RULES / "kpi", pack_copy / "kpi", dirs_exist_ok=True)
    f = pack_copy / "kpi" / "kpi-003-ctr-2021.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("{milestone: 2025-12-31, ge: 10, section: \"II.1.2\", text: \"Hình",
                                                     "{milestone: 2026-12-31, ge: 10, section: \"II.1.2\", text: \"Hình"),
                 encoding="utf-8")
    r = runner.invoke(app, ["kpi", "check", str(pack_copy), "--calendar", str(CALENDAR), "--json"])
    assert r.exit_code == 1
    errs = json.loads(r.output)["errors"]
    assert len(errs) == 1 and "hết hiệu lực ngày 31/12/2025" in errs[0]["message"]
    assert errs[0]["file"].endswith("kpi-003-ctr-2021.yaml") and errs[0]["line"]
