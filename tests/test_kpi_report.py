"""What leaves the KPI module: pipeline items, the secretariat summary, `kpi report` (JSON and
XLSX) and the PNG charts."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.clock import TZ
from engine.db import session
from engine.kpi import kpi_items, secretariat_summary
from engine.kpi.loader import load_kpi_for_pack
from engine.kpi.values import KpiValueIn, record_value
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, ROOT, RULES

runner = CliRunner()
AS_OF = date(2026, 12, 20)
VALUES = [("phu-song-5g", 55, "2025-12-14"), ("phu-song-5g", 62, "2026-11-14"),
          ("nhiem-vu-nghiem-thu", 18, "2025-12-14"), ("nhiem-vu-nghiem-thu", 22, "2026-11-14"),
          ("chi-so-cds", 0.71, "2025-12-31"), ("chi-so-cds", 0.73, "2026-11-14")]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'state.db'}"
    pack = load_pack(RULES, CALENDAR)
    kpi = load_kpi_for_pack(pack)
    now = datetime(2026, 12, 20, 9, 0, tzinfo=TZ)
    with session(url) as s:
        for ind, v, d in VALUES:
            record_value(s, kpi, KpiValueIn(indicator=ind, value=v, as_of=date.fromisoformat(d)), now)
    return url, pack, kpi


def test_kpi_items_for_the_digest(seeded) -> None:
    url, pack, kpi = seeded
    with session(url) as s:
        items = kpi_items(s, pack, AS_OF)
    by = {(i.indicator, i.status): i for i in items}
    # 5G: 55 % at the 2025 milestone (≥ 60 %) → missed; path 60 → 100 (2025 → 2030) at 14/11/2026:
    # 60 + 40 × 318/1826 = 66,97, tolerance 4 → 62 is behind
    missed = by[("phu-song-5g", "missed")]
    assert (missed.target, missed.unit, missed.status_vi) == ("phu-song-5g-2025", "so-khcn", "Không đạt")
    behind = by[("phu-song-5g", "behind")]
    assert behind.target == "phu-song-5g-2030" and behind.latest_value == 62
    assert behind.expected == pytest.approx(60 + 40 * 318 / 1826)
    assert behind.latest_value_text == "62 %" and behind.requirement == "≥ 100 %" and behind.status_vi == "Chậm tiến độ"
    # flows: 2025 missed (18 < 20); 2026 met (22 ≥ 20) → the 2030 target is on track, not an item
    assert by[("nhiem-vu-nghiem-thu", "missed")].period == "2025"
    assert ("nhiem-vu-nghiem-thu", "behind") not in by
    # 6G has three targets and no 2026 value: ONE item, for the nearest milestone
    six = [i for i in items if i.indicator == "phu-song-6g"]
    assert [(i.target, i.status, i.period) for i in six] == [("phu-song-6g-2035", "no_data", "2026")]
    # on track / met are not items
    assert not any(i.indicator == "chi-so-cds" for i in items)
    # the programme's duties moved to the successor unit
    assert by[("ctr2021-tfp", "no_data")].unit == "du-ubnd-tinh"
    assert by[("vneid", "no_data")].unit == "du-cong-an-tinh"
    assert all(i.status in ("behind", "missed", "no_data") for i in items)
    assert len({i.key for i in items}) == len(items)
    d = missed.as_dict()
    assert d["milestone"] == "2025-12-31" and d["status"] == "missed" and "Không đạt" in d["detail"]


def test_secretariat_summary_lists_every_slipping_target(seeded) -> None:
    url, pack, kpi = seeded
    with session(url) as s:
        summary = secretariat_summary(s, pack, AS_OF)
    assert summary.total == len(kpi.targets) == 221
    assert sum(summary.by_status.values()) == 221
    assert summary.by_status["met"] == 1          # chi-so-cds 2025 (0,71 ≥ 0,70)
    assert len(summary.slipping) == sum(summary.by_status[k] for k in ("behind", "missed", "no_data"))
    assert sum(1 for i in summary.slipping if i.indicator == "phu-song-6g") == 3    # not deduplicated
    assert summary.slipping[0].status == "missed"                                  # worst first
    text = summary.text()
    assert text.startswith("Chỉ tiêu đến ngày 20/12/2026: 221 mục tiêu") and "Tỷ lệ phủ sóng 5G" in text


def test_report_json_and_xlsx(seeded, tmp_path: Path) -> None:
    url, _, _ = seeded
    xlsx = tmp_path / "bao-cao-chi-tieu.xlsx"
    r = runner.invoke(app, ["kpi", "report", "--as-of", "20/12/2026", "--json", "--xlsx", str(xlsx),
                            "--rules", str(RULES), "--calendar", str(CALENDAR), "--db", url])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["as_of"] == "2026-12-20" and len(data["items"]) == 221
    row = next(i for i in data["items"] if i["target"] == "phu-song-5g-2030")
    assert (row["status"], row["status_vi"], row["responsible"], row["group"]) == ("behind", "Chậm tiến độ", "so-khcn", "ha-tang")
    assert row["source_obligation"] == "khhd57-nam" and row["basis"].endswith("mục III.2.2 a)")

    from openpyxl import load_workbook

    wb = load_workbook(xlsx)
    assert wb.sheetnames == ["Tổng hợp", "Chỉ tiêu"]
    ws = wb["Chỉ tiêu"]
    header = [c.value for c in ws[1]]
    assert header[:4] == ["Nhóm", "Mã chỉ tiêu", "Chỉ tiêu", "Mốc"] and "Tình trạng" in header
    assert ws.freeze_panes == "D2" and ws.max_row == 222
    assert ws.column_dimensions["C"].width >= 40
    status_col = header.index("Tình trạng") + 1
    assert {ws.cell(row=i, column=status_col).value for i in range(2, 223)} <= {"Đạt", "Đúng tiến độ", "Chậm tiến độ",
                                                                               "Không đạt", "Thiếu số liệu", "Chưa đến kỳ đánh giá"}
    groups = {ws.cell(row=i, column=1).value for i in range(2, 223)}
    assert "a) Phát triển hạ tầng" in groups and len(groups) == 6
    summary = wb["Tổng hợp"]
    assert summary["A1"].value.startswith("Tình hình thực hiện chỉ tiêu")
    assert summary.cell(row=summary.max_row, column=1).value == "Tổng cộng"
    assert summary.cell(row=summary.max_row, column=summary.max_column).value == 221


def test_report_slipping_filter_in_rich_table(seeded) -> None:
    url, _, _ = seeded
    r = runner.invoke(app, ["kpi", "report", "--as-of", "2026-12-20", "--group", "ha-tang", "--slipping",
                            "--rules", str(RULES), "--calendar", str(CALENDAR), "--db", url], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Tỷ lệ phủ sóng 5G trên địa bàn" in r.output and "Chậm tiến độ" in r.output and "Đạt" not in r.output.split("mục tiêu:")[1]


def test_charts_one_png_per_group_with_every_target(tmp_path: Path) -> None:
    bp = ROOT / "examples" / "binh-phuoc"
    url = f"sqlite:///{tmp_path / 'bp.db'}"
    pack = load_pack(bp, CALENDAR)
    kpi = load_kpi_for_pack(pack)
    now = datetime(2027, 1, 10, 9, 0, tzinfo=TZ)
    with session(url) as s:
        for ind, v, d in (("xh-dti", 12, "2025-12-31"), ("xh-dti", 9, "2026-12-14"), ("kinh-te-so-grdp", 18, "2026-12-14"),
                          ("do-thi-thong-minh", 1, "2026-12-14"), ("tt-du-lieu-dam-may", 0, "2026-12-14")):
            record_value(s, kpi, KpiValueIn(indicator=ind, value=v, as_of=date.fromisoformat(d)), now)
    out = tmp_path / "charts"
    r = runner.invoke(app, ["--now", "2027-01-10", "kpi", "charts", "--out", str(out), "--rules", str(bp),
                            "--calendar", str(CALENDAR), "--db", url])
    assert r.exit_code == 0, r.output
    from matplotlib import image as mpimg
    from PIL import Image

    files = sorted(out.glob("*.png"))
    assert [f.stem for f in files] == sorted(kpi.groups)
    for f in files:
        assert f.stat().st_size > 20_000
        arr = mpimg.imread(f)
        assert arr.shape[0] > 400 and arr.shape[1] > 800
        with Image.open(f) as im:
            meta = im.info
        expected = sorted(t.id for t in kpi.targets.values() if t.group == f.stem)
        assert sorted(json.loads(meta["dondoc-targets"])) == expected
        assert meta["dondoc-group"] == f.stem and meta["dondoc-as-of"] == "2027-01-10"
        assert meta["Title"] == kpi.groups[f.stem].name


def test_xlsx_cells_that_look_like_formulas_stay_text(seeded, tmp_path: Path) -> None:
    """Text from rule files or users that starts with = + - @ (or tab/CR) must not run as a formula
    when the export is opened or a cell is edited (CSV/formula injection)."""
    from dataclasses import replace

    from openpyxl import load_workbook

    from engine.kpi.report import build_report, write_xlsx

    url, pack, kpi = seeded
    with session(url) as s:
        rows = build_report(s, pack, AS_OF, kpi)
    evil = {"indicator_name": "=HYPERLINK(\"http://x.invalid\",\"bấm\")", "text": "+cmd|' /C calc'!A0",
            "detail": "-2+3", "basis": "@SUM(1+1)", "group_name": "\t=1+1", "requirement": "=100%"}
    rows[0] = replace(rows[0], **evil)
    xlsx = tmp_path / "x.xlsx"
    write_xlsx(rows, xlsx, AS_OF, "=cmd()")
    wb = load_workbook(xlsx)
    cells = [c for ws in wb for row in ws.iter_rows() for c in row]
    formulas = [c.coordinate for c in cells if c.data_type == "f"]
    assert formulas == []
    risky = [c for c in cells if isinstance(c.value, str) and c.value[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert {c.value for c in risky} >= set(evil.values()) | {"=cmd()"}   # the text itself is kept as written
    assert all(c.data_type == "s" and c.quotePrefix for c in risky)
    numbers = [c.value for c in wb["Chỉ tiêu"]["G"][1:] if isinstance(c.value, (int, float))]
    assert numbers, "numbers stay numbers"
    from openpyxl import Workbook

    from engine.kpi.report import neutralise_formulas

    wb = Workbook()
    wb.active.append(["\r=1+1", "ok", -3])
    neutralise_formulas(wb)
    a, b, c = wb.active[1]
    assert (a.data_type, a.quotePrefix, b.quotePrefix, c.data_type) == ("s", True, False, "n")


# --- the value that decided the status, and what kind of number it is -------------------------------

@pytest.fixture(scope="module")
def entered_in_order(tmp_path_factory):
    """5G: 55,5 % for 14/12/2025 entered on 15/12/2025, then 62 % for 14/11/2026 entered a year later.
    As of 20/12/2026 the 2025 milestone (≥ 60 %) is decided by 55,5 %: not the newest value, not the
    last one entered."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'order.db'}"
    pack = load_pack(RULES, CALENDAR)
    kpi = load_kpi_for_pack(pack)
    with session(url) as s:
        record_value(s, kpi, KpiValueIn(indicator="phu-song-5g", value=55.5, as_of=date(2025, 12, 14)),
                     datetime(2025, 12, 15, 9, 0, tzinfo=TZ))
        record_value(s, kpi, KpiValueIn(indicator="phu-song-5g", value=62, as_of=date(2026, 11, 14)),
                     datetime(2026, 12, 15, 9, 0, tzinfo=TZ))
    return url


def _report(url: str, *extra: str):
    return runner.invoke(app, ["kpi", "report", "--as-of", "20/12/2026", *extra, "--rules", str(RULES),
                               "--calendar", str(CALENDAR), "--db", url], env={"COLUMNS": "250"})


def test_report_shows_the_value_that_decided_the_status(entered_in_order) -> None:
    """A secretary reading "Không đạt" for the 2025 milestone must see the 2025 figure that missed it,
    with its date, not this year's 62 % (which would look like it met ≥ 60 %)."""
    r = _report(entered_in_order, "--group", "ha-tang")
    assert r.exit_code == 0, r.output
    line_2025 = next(ln for ln in r.output.splitlines() if "≥ 60 %" in ln)
    assert "55,5 % (14/12/2025)" in line_2025 and "Không đạt" in line_2025 and "62" not in line_2025
    line_2030 = next(ln for ln in r.output.splitlines() if "≥ 100 %" in ln)
    assert "62 % (14/11/2026)" in line_2030 and "Chậm tiến độ" in line_2030
    assert "Số liệu quyết định" in r.output

    r = _report(entered_in_order, "--json")
    rows = {i["target"]: i for i in json.loads(r.output)["items"]}
    m = rows["phu-song-5g-2025"]
    assert (m["status"], m["judged_value"], m["judged_as_of"], m["judged_value_text"]) == \
        ("missed", 55.5, "2025-12-14", "55,5 %")
    assert (m["latest_value"], m["latest_as_of"]) == (62, "2026-11-14")        # the newest stays available
    assert (rows["phu-song-5g-2030"]["judged_value"], rows["phu-song-5g-2030"]["judged_as_of"]) == (62, "2026-11-14")
    assert rows["phu-song-6g-2035"]["status"] == "no_data" and rows["phu-song-6g-2035"]["judged_value"] is None


def test_xlsx_value_column_is_the_deciding_value(entered_in_order, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    xlsx = tmp_path / "r.xlsx"
    assert _report(entered_in_order, "--xlsx", str(xlsx)).exit_code == 0
    ws = load_workbook(xlsx)["Chỉ tiêu"]
    header = [c.value for c in ws[1]]
    v_col, d_col = header.index("Số liệu quyết định tình trạng") + 1, header.index("Ngày số liệu") + 1
    assert d_col == v_col + 1
    row = next(i for i in range(2, ws.max_row + 1) if ws.cell(row=i, column=2).value == "phu-song-5g"
               and ws.cell(row=i, column=4).value.year == 2025)
    assert ws.cell(row=row, column=v_col).value == 55.5
    assert ws.cell(row=row, column=d_col).value.date() == date(2025, 12, 14)
    assert ws.cell(row=row, column=d_col).number_format == "DD/MM/YYYY"


def test_xlsx_kind_column_says_tich_luy_only_for_count_stocks(seeded, tmp_path: Path) -> None:
    """"Tích lũy" on a percentage tells the reader to add the figures up: wrong. Only a count that is
    a stock (e.g. researchers in the province) is a running total."""
    from openpyxl import load_workbook

    url, _, kpi = seeded
    xlsx = tmp_path / "k.xlsx"
    assert _report(url, "--xlsx", str(xlsx)).exit_code == 0
    ws = load_workbook(xlsx)["Chỉ tiêu"]
    header = [c.value for c in ws[1]]
    kind_col = header.index("Loại") + 1
    kinds = {ws.cell(row=i, column=2).value: ws.cell(row=i, column=kind_col).value for i in range(2, ws.max_row + 1)}
    assert kpi.indicators["phu-song-5g"].unit == "percent"
    assert kinds["phu-song-5g"] == "Giá trị tại thời điểm"
    assert kinds["can-bo-nghien-cuu"].startswith("Tích lũy")
    for iid, label in kinds.items():
        ind = kpi.indicators[iid]
        assert ("tích lũy" in label.lower()) == (ind.kind == "stock" and ind.unit == "count"), (iid, label)
        assert ("Mỗi năm" in label) == (ind.kind == "flow"), (iid, label)
