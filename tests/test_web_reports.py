"""Web console, issue 12 item 3: the Rules page (live version, last check, preview of a staged
folder), KPI (report table, filters, charts), Lịch (days off and make-up days) and Exports
(tracking workbook, status CSV, a unit's .ics).

One seeded installation for the module (tests/web_support.py); its rules folder is a copy in the
module's temp folder, so staged copies beside it lie under an allowed root of the preview form.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from engine.app import services
from tests.conftest import RULES
from tests.web_support import Console, text_of

ANNUAL = "khhd57-nam"          # due day 18 of December (Friday 18/12/2026 in the seed rules)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Console:
    root = tmp_path_factory.mktemp("reports")
    shutil.copytree(RULES, root / "rules")
    return Console(root, env={"DONDOC_RULES_DIR": str(root / "rules")})


def stage_copy(console: Console, name: str) -> Path:
    target = console.tmp / name
    shutil.copytree(RULES, target)
    return target


def set_annual_due_day(folder: Path, day: int) -> None:
    """Change the due day of the annual report to Văn phòng Tỉnh ủy (one line of one file)."""
    f = folder / "obligations-001-khhd-57.yaml"
    lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- id: {ANNUAL}")
    at = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("due:"))
    assert "day: 18" in lines[at]
    lines[at] = lines[at].replace("day: 18", f"day: {day}")
    f.write_text("".join(lines), encoding="utf-8")


# ─── login ──────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("url", ["/quy-tac", "/chi-tieu", "/chi-tieu/bieu-do/khcn.png", "/lich", "/xuat",
                                 "/xuat/theo-doi.xlsx", "/xuat/tinh-trang.csv", "/xuat/lich.ics?don-vi=so-khcn"])
def test_every_page_needs_a_login(console: Console, url: str) -> None:
    r = console.client().get(url)
    assert r.status_code == 303 and r.headers["location"].startswith("/dang-nhap?next=")


# ─── Quy tắc ────────────────────────────────────────────────────────────────────────────────────
def test_rules_page_shows_the_live_pack_and_that_it_is_valid(console: Console) -> None:
    r = console.client("lanh.dao").get("/quy-tac")
    assert r.status_code == 200
    body = text_of(r.text)
    p = console.pack
    assert "Bộ quy tắc đang dùng" in body and p.info.name in body
    assert f"{len(p.obligations)} báo cáo phải nộp, {len(p.units)} đơn vị" in body
    assert f"{len(p.policies)} chính sách nhắc" in body
    assert "Hợp lệ: không có lỗi." in body and "Không hợp lệ" not in body
    assert "Thư mục quy tắc thử" in body       # the preview form, for the read-only role too


def test_preview_of_a_staged_folder_lists_the_moved_deadlines(console: Console) -> None:
    staged = stage_copy(console, "rules-thu")
    set_annual_due_day(staged, 21)             # Monday 21/12/2026
    title = console.pack.obligations[ANNUAL].title
    reporters = {i.unit for i in services.deadlines(console.settings, console.pack, date(2026, 12, 18),
                                                     date(2026, 12, 18)) if i.obligation == ANNUAL}
    # a relative path is read from the folder beside the live rules
    r = console.client("lanh.dao").get("/quy-tac", params={"thu-muc": "rules-thu", "tu": "02/12/2026", "den": "31/12/2026"})
    assert r.status_code == 200
    body = text_of(r.text)
    assert "Không có thay đổi" not in body
    m = re.search(re.escape(f"Dời {title} Năm 2026 ") + r"(\d+) 18/12/2026 21/12/2026", body)
    assert m, body[:3000]
    assert int(m.group(1)) == len(reporters) > 0
    assert re.search(r"Hạn nộp: thêm 0 , dời [1-9]\d* , bỏ 0", body)
    # notices move with the deadline: shown per day and per recipient
    assert "Theo ngày gửi" in body and "Theo nơi nhận" in body
    assert "vp-tinh-uy" not in body and "khhd57-nam" not in body     # names and titles, not ids
    # the live rules are untouched (a GET changes nothing)
    assert "day: 18" in (console.settings.rules.path / "obligations-001-khhd-57.yaml").read_text(encoding="utf-8")


def test_invalid_staged_rules_show_file_and_line(console: Console) -> None:
    staged = stage_copy(console, "rules-loi")
    set_annual_due_day(staged, 40)
    r = console.client("thu.ky").get("/quy-tac", params={"thu-muc": str(staged)})
    body = text_of(r.text)
    assert r.status_code == 200 and "Quy tắc thử không hợp lệ" in body
    line = next(i for i, t in enumerate((staged / "obligations-001-khhd-57.yaml").read_text(encoding="utf-8")
                                        .splitlines(), 1) if "day: 40" in t)
    assert re.search(rf"obligations-001-khhd-57\.yaml:{line} — \S", body), body[-2000:]
    assert "Traceback" not in r.text


def test_broken_live_rules_are_reported_with_file_and_line(tmp_path: Path) -> None:
    """The holder keeps no good pack (first version broken): the page still opens and says where."""
    from engine.app.rulesholder import RulesHolder

    shutil.copytree(RULES, tmp_path / "rules")
    set_annual_due_day(tmp_path / "rules", 40)
    con = Console(tmp_path, sync=False, env={"DONDOC_RULES_DIR": str(tmp_path / "rules")})
    con.ctx.rules = RulesHolder(con.settings)
    r = con.client("lanh.dao").get("/quy-tac")
    body = text_of(r.text)
    assert r.status_code == 200 and "Chưa nạp được bộ quy tắc hợp lệ" in body and "Không hợp lệ" in body
    line = next(i for i, t in enumerate((tmp_path / "rules" / "obligations-001-khhd-57.yaml").read_text(encoding="utf-8")
                                        .splitlines(), 1) if "day: 40" in t)
    assert len(re.findall(rf"obligations-001-khhd-57\.yaml:{line} — \S", body)) == 2    # newest version, last check
    assert "Traceback" not in r.text


@pytest.mark.parametrize("where", ["/etc", "../..", "outside", "link", "rules"])
def test_a_folder_outside_the_installation_is_refused(console: Console, tmp_path_factory, where: str) -> None:
    if where == "outside":                     # a sibling temp folder: under neither root
        outside = tmp_path_factory.mktemp("elsewhere") / "rules"
        shutil.copytree(RULES, outside)
        where = str(outside)
    elif where == "link":                      # inside the root by name, outside by target
        target = tmp_path_factory.mktemp("target") / "rules"
        shutil.copytree(RULES, target)
        link = console.tmp / "rules-link"
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
        where = str(link)
    r = console.client("thu.ky").get("/quy-tac", params={"thu-muc": where})
    body = text_of(r.text)
    assert r.status_code == 200
    if where == "rules":
        assert "thư mục quy tắc đang dùng" in body
    else:
        assert "Không được xem trước thư mục" in body and "chỉ nhận thư mục con của thư mục cài đặt" in body
    assert "Hạn nộp: thêm" not in body


# ─── Chỉ tiêu ───────────────────────────────────────────────────────────────────────────────────
def test_kpi_page_status_words_numbers_filters_and_a_chart(console: Console) -> None:
    from engine.app.web.routes import kpi as kpi_route

    kpi = services.load_kpi_pack(console.pack)
    before = kpi_route.chart_key(console.settings, console.pack, kpi, date(2026, 12, 2))
    services.kpi_record(console.settings, kpi, "chi-ns-khcn-dmst-cds", "3,25", date(2025, 12, 31), console.now, "test")
    assert kpi_route.chart_key(console.settings, console.pack, kpi, date(2026, 12, 2)) != before   # a new value: new charts

    c = console.client("lanh.dao")
    r = c.get("/chi-tieu")
    body = text_of(r.text)
    assert r.status_code == 200
    for word in ("Tình hình thực hiện chỉ tiêu", "Thiếu số liệu", "Chưa đến kỳ đánh giá", "Đạt", "Không đạt"):
        assert word in body
    assert "3,25 %" in body and "3.25" not in body            # Vietnamese decimal comma
    r = c.get("/chi-tieu", params={"tinh-trang": "met", "nhom": "nguon-luc", "ngay": "02/12/2026"})
    rows = re.findall(r'<span class="badge (k-[a-z-]+)">', r.text)
    assert rows and set(rows) == {"k-met"}
    assert "Phát triển hạ tầng" not in text_of(r.text).split("mục tiêu “Đạt”", 1)[1]
    assert c.get("/chi-tieu", params={"tinh-trang": "khong-co"}).status_code == 400

    srcs = re.findall(r'<img src="([^"]+)"', r.text)
    assert srcs == ["/chi-tieu/bieu-do/nguon-luc.png?ngay=2026-12-02"]
    img = c.get(srcs[0])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png" and img.content[:8] == b"\x89PNG\r\n\x1a\n"
    sets = [p for p in kpi_route.cache_root(console.settings).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(sets) == 1
    drawn = (sets[0] / "nguon-luc.png").stat().st_mtime_ns
    assert c.get("/chi-tieu/bieu-do/khcn.png?ngay=2026-12-02").headers["content-type"] == "image/png"
    assert (sets[0] / "nguon-luc.png").stat().st_mtime_ns == drawn          # reused, not drawn again
    assert c.get("/chi-tieu/bieu-do/..%2F..%2Fetc%2Fpasswd.png").status_code == 404
    assert c.get("/chi-tieu/bieu-do/khong-co.png").status_code == 404


# ─── Lịch ───────────────────────────────────────────────────────────────────────────────────────
def test_calendar_2026_lists_days_off_and_make_up_days(console: Console) -> None:
    r = console.client("lanh.dao").get("/lich", params={"nam": "2026"})
    body = text_of(r.text)
    assert r.status_code == 200 and "Ngày nghỉ và ngày làm bù năm 2026" in body
    assert "24/11/2026 Thứ Ba Nghỉ Ngày Văn hóa Việt Nam" in body
    assert "17/02/2026 Thứ Ba Nghỉ Tết Nguyên Đán" in body and "Mùng ba Tết Nguyên Đán" in body
    assert "10/01/2026 Thứ Bảy Làm bù Làm bù cho ngày nghỉ 02/01/2026" in body
    assert "2026-11-24" not in body
    bad = console.client("lanh.dao").get("/lich", params={"nam": "hai-nghin"})
    assert bad.status_code == 400 and "Năm không hợp lệ" in text_of(bad.text)


# ─── Xuất dữ liệu ───────────────────────────────────────────────────────────────────────────────
def test_tracking_workbook_downloads_and_opens(console: Console) -> None:
    from openpyxl import load_workbook

    r = console.client("lanh.dao").get("/xuat/theo-doi.xlsx")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="dondoc-theo-doi-02-12-2026.xlsx"'
    wb = load_workbook(io.BytesIO(r.content))
    cells = [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v is not None]
    assert any("Văn phòng Tỉnh ủy" in v for v in cells)


def test_status_csv_has_a_bom_and_no_live_formula(console: Console) -> None:
    lines = services.status(console.settings, console.pack, console.now).lines
    late = next(line for line in lines if line.status == "overdue")
    services.submit(console.settings, console.pack, late.obligation, late.unit, late.period, date(2026, 12, 1),
                    console.now, "test", ref='=HYPERLINK("http://evil.example","x")')
    r = console.client("thu.ky").get("/xuat/tinh-trang.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Báo cáo", "Kỳ", "Đơn vị"]
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)
    assert any(cell == "'" + '=HYPERLINK("http://evil.example","x")' for row in rows for cell in row)
    words = {row[5] for row in rows[1:]}
    assert "Chưa hoàn thành – quá hạn" in words and "Hoàn thành quá hạn" in words
    assert any(re.fullmatch(r"\d\d/\d\d/\d{4}", row[4]) for row in rows[1:])
    bad = console.client("thu.ky").get("/xuat/tinh-trang.csv", params={"ngay": "31/02/2026"})
    assert bad.status_code == 400 and "không phải ngày hợp lệ" in text_of(bad.text)


def test_unit_calendar_ics_parses(console: Console) -> None:
    import icalendar

    c = console.client("lanh.dao")
    page = text_of(c.get("/xuat").text)
    assert "Sở Khoa học và Công nghệ" in page and "Chọn đơn vị" in page
    r = c.get("/xuat/lich.ics", params={"don-vi": "so-khcn", "tu": "02/12/2026", "den": "31/12/2027"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    assert r.headers["content-disposition"] == 'attachment; filename="dondoc-lich-so-khcn.ics"'
    cal = icalendar.Calendar.from_ical(r.content)
    events = [e for e in cal.walk("VEVENT")]
    assert events and all(date(2026, 12, 2) <= e.decoded("dtstart") <= date(2027, 12, 31) for e in events)
    missing = c.get("/xuat/lich.ics")
    assert missing.status_code == 400 and "Chọn một đơn vị" in text_of(missing.text)
    unknown = c.get("/xuat/lich.ics", params={"don-vi": "khong-co"})
    assert unknown.status_code == 400 and "Không có đơn vị này" in text_of(unknown.text)
