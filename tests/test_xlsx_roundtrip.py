"""The Excel round-trip (issue 11 item 5): `export tracking --xlsx` writes the open reports with
empty "Ngày nộp"/"Số ký hiệu" columns; the secretary fills them in Excel; `import submissions
FILE.xlsx` reads them with the CSV's all-or-nothing validation; the same file twice changes nothing."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlmodel import select
from typer.testing import CliRunner

from engine.app.cli import app
from engine.db import session
from engine.state import AuditRow, SubmissionRow
from tests.conftest import CALENDAR, RULES

NOW = "2026-12-05T09:00"
runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def run(db: str, *args: str):
    return runner.invoke(app, ["--now", NOW, *args, "--rules", str(RULES), "--calendar", str(CALENDAR), "--db", db])


def export(db: str, target: Path) -> list[dict]:
    import json

    r = run(db, "export", "tracking", "--xlsx", str(target), "--from", "2026-10-01", "--to", "2026-12-31",
            "--unit", "so-tai-chinh", "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["items"]


def rows_by_code(ws) -> dict[tuple[str, str], int]:
    head = [c.value for c in ws[1]]
    ob, per = head.index("Mã báo cáo") + 1, head.index("Mã kỳ") + 1
    return {(ws.cell(row=r, column=ob).value, ws.cell(row=r, column=per).value): r for r in range(2, ws.max_row + 1)}


def counts(db: str) -> tuple[int, int]:
    with session(db) as s:
        return len(s.exec(select(SubmissionRow)).all()), len(s.exec(select(AuditRow).where(AuditRow.entity == "instance")).all())


def test_export_writes_a_locked_sheet_with_fill_in_columns_and_dates(tmp_path: Path, db: str) -> None:
    f = tmp_path / "theo-doi.xlsx"
    items = export(db, f)
    assert {(i["obligation"], i["period"]) for i in items} >= {("khhd57-thang", "2026-10"), ("khhd57-thang", "2026-11")}
    ws = load_workbook(f)["Theo dõi"]
    head = [c.value for c in ws[1]]
    assert head == ["Đơn vị", "Mã đơn vị", "Báo cáo", "Mã báo cáo", "Kỳ", "Mã kỳ", "Hạn nộp", "Nơi nhận",
                    "Ngày nộp", "Số ký hiệu", "Ghi chú"]
    assert ws.max_row == len(items) + 1 and ws.auto_filter.ref == f"A1:K{len(items) + 1}"
    # Codes locked, the three fill-in columns open, no password to edit them; filter still allowed.
    assert ws.protection.sheet and not ws.protection.password and ws.protection.autoFilter is False
    for c in range(1, 12):
        assert ws.cell(row=2, column=c).protection.locked == (head[c - 1] not in ("Ngày nộp", "Số ký hiệu", "Ghi chú"))
    assert ws["I2"].value is None and ws["J2"].value is None
    assert ws["G2"].number_format == ws["I2"].number_format == "DD/MM/YYYY" and ws["F2"].number_format == "@"
    assert isinstance(ws["G2"].value, datetime)
    dv = ws.data_validations.dataValidation
    assert len(dv) == 1 and dv[0].type == "date" and dv[0].formula1 == "DATE(2000,1,1)" and dv[0].formula2 == "DATE(2100,12,31)"
    assert str(dv[0].sqref) == f"I2:I{len(items) + 1}"


def test_a_filled_sheet_imports_once_and_the_second_import_changes_nothing(tmp_path: Path, db: str) -> None:
    f = tmp_path / "theo-doi.xlsx"
    export(db, f)
    wb = load_workbook(f)
    ws = wb["Theo dõi"]
    at = rows_by_code(ws)
    ws.cell(row=at[("khhd57-thang", "2026-10")], column=9, value=datetime(2026, 10, 16))   # a date cell
    ws.cell(row=at[("khhd57-thang", "2026-10")], column=10, value="145/BC-STC")
    ws.cell(row=at[("khhd57-thang", "2026-11")], column=9, value="02/12/2026")              # typed, kept as text
    wb.save(f)
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 0, r.output
    assert "Đã nhập 2 báo cáo" in r.output and "chưa ghi ngày nộp" in r.output
    assert counts(db) == (2, 2)
    import json

    status = json.loads(run(db, "status", "--unit", "so-tai-chinh", "--json").stdout)["items"]
    got = {i["period"]: (i["submitted_on"], i["ref"], i["status"]) for i in status if i["obligation"] == "khhd57-thang"}
    assert got["2026-10"] == ("2026-10-16", "145/BC-STC", "done_on_time")
    assert got["2026-11"] == ("2026-12-02", None, "done_late")
    again = run(db, "import", "submissions", str(f))
    assert again.exit_code == 0, again.output
    assert "Không thay đổi: 2 báo cáo đã có" in again.output
    assert counts(db) == (2, 2)                       # no duplicate rows, no new audit entries
    # The next export lists only what is still open.
    g = tmp_path / "lan-2.xlsx"
    left = export(db, g)
    assert ("khhd57-thang", "2026-10") not in {(i["obligation"], i["period"]) for i in left}


def test_one_bad_row_writes_nothing_and_names_its_sheet_and_row(tmp_path: Path, db: str) -> None:
    f = tmp_path / "theo-doi.xlsx"
    export(db, f)
    wb = load_workbook(f)
    ws = wb["Theo dõi"]
    at = rows_by_code(ws)
    good, bad = at[("khhd57-thang", "2026-10")], at[("khhd57-thang", "2026-11")]
    ws.cell(row=good, column=9, value=datetime(2026, 10, 16))
    ws.cell(row=bad, column=9, value="31/11/2026")
    wb.save(f)
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"trang “Theo dõi”, dòng {bad}:" in r.output and "31/11/2026" in r.output
    assert f"dòng {good}:" not in r.output and "chưa ghi dòng nào" in r.output
    assert counts(db) == (0, 0)
    # A number without its date is a slip, not "not received yet".
    ws.cell(row=bad, column=9).value = None
    ws.cell(row=bad, column=10, value="146/BC-STC")
    wb.save(f)
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 1 and f"dòng {bad}:" in r.output and "chưa ghi Ngày nộp" in r.output
    assert counts(db) == (0, 0)


def test_a_corrected_date_in_the_sheet_is_audited_as_a_correction(tmp_path: Path, db: str) -> None:
    f = tmp_path / "theo-doi.xlsx"
    export(db, f)
    wb = load_workbook(f)
    ws = wb["Theo dõi"]
    row = rows_by_code(ws)[("khhd57-thang", "2026-10")]
    ws.cell(row=row, column=9, value=datetime(2026, 10, 16))
    wb.save(f)
    assert run(db, "import", "submissions", str(f)).exit_code == 0
    ws.cell(row=row, column=9, value=datetime(2026, 10, 15))
    wb.save(f)
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 0 and "đính chính 1" in r.output, r.output
    with session(db) as s:
        actions = [a.action for a in s.exec(select(AuditRow).where(AuditRow.entity == "instance").order_by(AuditRow.id))]
    assert actions == ["submit", "correct"]


def test_a_hand_made_sheet_with_excel_period_cells_and_a_backlog_sheet_import(tmp_path: Path, db: str) -> None:
    """Columns found by their Vietnamese names under a title row; a period typed "2026-11" that
    Excel turned into a date, or "T10/2026", is the month; the backlog's "Danh sách" sheet reads too."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sổ theo dõi"
    ws.append(["Sổ theo dõi báo cáo của Văn phòng"])
    ws.append(["Mã nghĩa vụ", "Mã đơn vị", "Mã kỳ", "Ngày nộp", "Số ký hiệu"])
    ws.append(["khhd57-thang", "so-tai-chinh", datetime(2026, 11, 1), date(2026, 11, 17), 145])
    ws.append(["khhd57-thang", "so-tai-chinh", "T10/2026", "16/10/2026", None])
    f = tmp_path / "tu-lam.xlsx"
    wb.save(f)
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 0, r.output
    with session(db) as s:
        refs = sorted((x.submitted_on, x.ref) for x in s.exec(select(SubmissionRow)).all())
    assert refs == [(date(2026, 10, 16), None), (date(2026, 11, 17), "145")]


def test_not_a_spreadsheet_or_no_header_is_one_clear_error(tmp_path: Path, db: str) -> None:
    f = tmp_path / "hong.xlsx"
    f.write_bytes(b"not a zip")
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 1 and "không phải bảng tính Excel" in r.output and "Traceback" not in r.output
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["a", "b"])
    g = tmp_path / "khong-tieu-de.xlsx"
    wb.save(g)
    r = run(db, "import", "submissions", str(g))
    assert r.exit_code == 1 and "dòng tiêu đề" in r.output


def test_text_that_a_spreadsheet_would_run_is_stored_as_text(tmp_path: Path) -> None:
    from engine.tracking_xlsx import TrackingItem, write_tracking_xlsx

    f = tmp_path / "x.xlsx"
    write_tracking_xlsx([TrackingItem("ob", "=HYPERLINK(\"http://x\")", "u", "+Đơn vị", "2026", "Năm 2026",
                                      date(2026, 11, 30), "vp", "@VP")], f, "t", (date(2026, 1, 1), date(2026, 12, 31)))
    ws = load_workbook(f)["Theo dõi"]
    assert ws["C2"].data_type == "s" and ws["C2"].quotePrefix and ws["A2"].quotePrefix and ws["H2"].quotePrefix
    assert ws["F2"].value == "2026" and ws["F2"].data_type == "s"


def test_the_backlog_list_imports_back_too(tmp_path: Path, db: str) -> None:
    """`backlog --xlsx` (go-live) has the same codes and fill-in columns: what did arrive goes in."""
    f = tmp_path / "ton.xlsx"
    r = runner.invoke(app, ["--now", "2026-12-02T09:00", "backlog", "--xlsx", str(f), "--unit", "so-tai-chinh",
                            "--rules", str(RULES), "--calendar", str(CALENDAR), "--db", db])
    assert r.exit_code == 0, r.output
    wb = load_workbook(f)
    ws = wb["Danh sách"]
    ws["I2"] = "20/11/2026"
    wb.save(f)
    r = run(db, "import", "submissions", str(f))
    assert r.exit_code == 0 and "Đã nhập 1 báo cáo" in r.output, r.output
    assert counts(db) == (1, 1)
