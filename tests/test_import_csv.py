"""CSV import: every row validated before any is written; bad rows named by their line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlmodel import select
from typer.testing import CliRunner

from engine.app.cli import app
from engine.clock import TZ
from engine.db import session
from engine.state import AuditRow, SubmissionRow
from engine.sync import sync_instances
from tests.conftest import CALENDAR, MINIPACK

runner = CliRunner()
NOW = "2026-03-20T09:00"


def _run(db_url: str, *args: str):
    return runner.invoke(app, ["--now", NOW, *args, "--rules", str(MINIPACK), "--calendar", str(CALENDAR), "--db", db_url])


def _prepare(db_url: str, minipack) -> None:
    with session(db_url) as s:
        sync_instances(s, minipack, datetime.fromisoformat(NOW).replace(tzinfo=TZ))


def _count(db_url: str) -> int:
    with session(db_url) as s:
        return len(s.exec(select(SubmissionRow)).all())


def test_one_bad_row_writes_nothing_and_names_the_row(tmp_path: Path, db_url: str, minipack) -> None:
    _prepare(db_url, minipack)
    f = tmp_path / "nop.csv"
    f.write_text(
        "obligation,unit,period,date,ref,note\n"
        "thang,skhcn,2026-01,19/01/2026,01/BC-SKHCN,\n"
        "thang,skhcn,2026-02,2026-02-23,02/BC-SKHCN,đúng hạn sau Tết\n"
        "thang,so-khong-co,2026-02,2026-02-23,,\n"
        "thang-tong-hop,vp,2026-02,31/02/2026,,\n"
        "thang,skhcn,2026-01,20/01/2026,,\n",
        encoding="utf-8")
    result = _run(db_url, "import", "submissions", str(f))
    assert result.exit_code == 1
    out = result.output
    assert "dòng 4" in out and "so-khong-co" in out
    assert "dòng 5" in out and "31/02/2026" in out
    assert "dòng 6" in out and "trùng với dòng 2" in out
    assert "dòng 2:" not in out and "dòng 3:" not in out
    assert _count(db_url) == 0
    with session(db_url) as s:
        assert s.exec(select(AuditRow).where(AuditRow.action == "submit")).all() == []


def test_excel_csv_with_bom_and_semicolons_imports(tmp_path: Path, db_url: str, minipack) -> None:
    _prepare(db_url, minipack)
    f = tmp_path / "nop.csv"
    text = "nghia_vu;don_vi;ky;ngay_nop;so_ky_hieu;ghi_chu\r\nthang;skhcn;2026-01;19/01/2026;01/BC-SKHCN;Báo cáo tháng 1\r\n" \
           "thang;skhcn;2026-02;24/02/2026;02/BC-SKHCN;\r\n"
    f.write_bytes("\ufeff".encode("utf-8") + text.encode("utf-8"))
    result = _run(db_url, "import", "submissions", str(f))
    assert result.exit_code == 0, result.output
    assert _count(db_url) == 2
    status = _run(db_url, "status", "--json", "--unit", "skhcn")
    import json

    items = {i["period"]: i for i in json.loads(status.stdout)["items"] if i["obligation"] == "thang"}
    assert items["2026-01"]["status"] == "done_on_time"
    assert items["2026-02"]["status"] == "done_late" and items["2026-02"]["status_vi"] == "Hoàn thành quá hạn"


def test_missing_columns_and_non_utf8(tmp_path: Path, db_url: str, minipack) -> None:
    _prepare(db_url, minipack)
    f = tmp_path / "a.csv"
    f.write_text("unit,period\nskhcn,2026-01\n", encoding="utf-8")
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 1 and "thiếu cột obligation" in r.output
    g = tmp_path / "b.csv"
    g.write_bytes("obligation,unit,period,date\nthang,skhcn,2026-01,19/01/2026,Sở Khoa học\n".encode("cp1258", errors="replace").replace(b"2026-01", b"2026-01\xff"))
    r = _run(db_url, "import", "submissions", str(g))
    assert r.exit_code == 1 and "UTF-8" in r.output
    assert _count(db_url) == 0


def test_bad_command_arguments_are_explained(db_url: str) -> None:
    r = _run(db_url, "submit", "--unit", "skhcn", "--obligation", "thang", "--period", "2026-01", "--date", "32/01/2026")
    assert r.exit_code != 0 and "32/01/2026" in r.output and "--date" in r.output
    r = runner.invoke(app, ["--now", "hôm qua", "deadlines"])
    assert r.exit_code != 0 and "--now" in r.output


def test_a_cell_over_the_csv_field_limit_is_a_row_error(tmp_path: Path, db_url: str, minipack) -> None:
    """A field over 131,072 characters used to crash the reader (csv.Error) with a traceback."""
    _prepare(db_url, minipack)
    f = tmp_path / "dai.csv"
    f.write_text("obligation,unit,period,date,ref,note\n"
                 "thang,skhcn,2026-01,19/01/2026,01/BC,\n"
                 f"thang,skhcn,2026-02,23/02/2026,02/BC,{'x' * 140_000}\n", encoding="utf-8")
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "dòng 3:" in r.output and "131.072 ký tự" in r.output
    assert _count(db_url) == 0


def test_csv_dates_before_the_period_or_outside_the_years_are_refused(tmp_path: Path, db_url: str, minipack) -> None:
    _prepare(db_url, minipack)
    f = tmp_path / "ngay.csv"
    f.write_text("obligation,unit,period,date\n"
                 "thang,skhcn,2026-03,27/02/2026\n"
                 "thang,skhcn,2026-02,0001-01-01\n"
                 "thang,skhcn,9999-01,19/01/2026\n"
                 "thang,skhcn,once,19/01/2026\n", encoding="utf-8")
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 1
    out = r.output
    assert "dòng 2:" in out and "trước khi kỳ" in out
    assert "dòng 3:" in out and "dòng 4:" in out and "2000–2100" in out
    assert "dòng 5:" in out and "báo cáo tháng" in out
    assert _count(db_url) == 0


def test_out_of_range_periods_and_dates_on_the_command_line_are_messages(db_url: str) -> None:
    for args in (("submit", "--unit", "skhcn", "--obligation", "thang", "--period", "9999-01", "--date", "2026-01-19"),
                 ("submit", "--unit", "skhcn", "--obligation", "thang", "--period", "0000-01", "--date", "2026-01-19"),
                 ("submit", "--unit", "skhcn", "--obligation", "thang", "--period", "once", "--date", "2026-01-19"),
                 ("waive", "--unit", "skhcn", "--obligation", "thang", "--period", "9999-01", "--reason", "x")):
        r = _run(db_url, *args)
        assert r.exit_code != 0 and isinstance(r.exception, (SystemExit, type(None))), (args, r.output)
        assert "2000–2100" in r.output or "“once”" in r.output, (args, r.output)
    for args in (("--now", "9999-12-31", "deadlines"), ("deadlines", "--from", "9999-12-01"),
                 ("calendar", "ics", "--unit", "skhcn", "--from", "0001-01-01", "--output", "/dev/null")):
        r = runner.invoke(app, [*args, "--rules", str(MINIPACK), "--calendar", str(CALENDAR)])
        assert r.exit_code != 0 and isinstance(r.exception, (SystemExit, type(None))), (args, r.output)
        assert "2000–2100" in r.output, (args, r.output)
    r = _run(db_url, "submit", "--unit", "skhcn", "--obligation", "thang", "--period", "2026-02", "--date", "2026-02-23")
    assert r.exit_code == 0, r.output


def _audit(db_url: str) -> list[str]:
    with session(db_url) as s:
        return [a.action for a in s.exec(select(AuditRow).where(AuditRow.entity == "instance").order_by(AuditRow.id))]


def test_the_same_csv_twice_changes_nothing_and_says_so(tmp_path: Path, db_url: str, minipack) -> None:
    """It used to write the rows again and audit each as a correction (duplicate rows, six audit entries)."""
    _prepare(db_url, minipack)
    f = tmp_path / "nop.csv"
    f.write_text("obligation,unit,period,date,ref,note\n"
                 "thang,skhcn,2026-01,19/01/2026,01/BC-SKHCN,Báo cáo tháng 1\n"
                 "thang,skhcn,2026-02,24/02/2026,02/BC-SKHCN,\n", encoding="utf-8")
    assert _run(db_url, "import", "submissions", str(f)).exit_code == 0
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 0 and "Không thay đổi: 2 báo cáo đã có" in r.output, r.output
    assert _count(db_url) == 2 and _audit(db_url) == ["submit", "submit"]
    # A different number for one of them is a correction, audited; the other row stays as it was.
    f.write_text(f.read_text(encoding="utf-8").replace("02/BC-SKHCN", "02a/BC-SKHCN"), encoding="utf-8")
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 0 and "đính chính 1" in r.output and "1 báo cáo đã có, không thay đổi" in r.output, r.output
    assert _count(db_url) == 3 and _audit(db_url) == ["submit", "submit", "correct"]


def test_csv_period_cells_in_the_forms_people_and_excel_write(tmp_path: Path, db_url: str, minipack) -> None:
    """"Jan-26" is what Excel shows (and saves to CSV) for a typed "2026-01"; "T02/2026" as people write it."""
    _prepare(db_url, minipack)
    f = tmp_path / "nop.csv"
    f.write_text("nghia_vu;don_vi;ky;ngay_nop\nthang;skhcn;Jan-26;19/01/2026\nthang;skhcn;T02/2026;24/02/2026\n"
                 "thang;skhcn;Tháng 01/2026;19/01/2026\n", encoding="utf-8")
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 1 and "dòng 4:" in r.output and "trùng với dòng 2" in r.output, r.output
    f.write_text("\n".join(f.read_text(encoding="utf-8").splitlines()[:3]) + "\n", encoding="utf-8")
    r = _run(db_url, "import", "submissions", str(f))
    assert r.exit_code == 0, r.output
    with session(db_url) as s:
        from engine.state import InstanceRow

        periods = sorted(s.get(InstanceRow, x.instance_id).period for x in s.exec(select(SubmissionRow)).all())
    assert periods == ["2026-01", "2026-02"]
