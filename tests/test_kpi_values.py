"""Recording KPI values: units and ranges checked, CSV all-or-nothing with bad rows named by line,
corrections kept (old row inactive, audit entry)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select
from typer.testing import CliRunner

from engine.app.cli import app
from engine.db import session
from engine.kpi.state import KpiValueRow
from engine.state import AuditRow
from tests.conftest import CALENDAR, RULES

runner = CliRunner()
NOW = "2026-11-26T09:00"


def kpi(db_url: str, *args: str):
    return runner.invoke(app, ["--now", NOW, "kpi", *args, "--rules", str(RULES), "--calendar", str(CALENDAR), "--db", db_url])


def rows(db_url: str) -> list[KpiValueRow]:
    with session(db_url) as s:
        return list(s.exec(select(KpiValueRow).order_by(KpiValueRow.id)).all())


def test_csv_with_one_bad_row_writes_nothing_and_names_the_row(tmp_path: Path, db_url: str) -> None:
    f = tmp_path / "chi-tieu.csv"
    f.write_text(
        "indicator,value,as_of,source,note\n"
        "phu-song-5g,62,31/12/2025,215/BC-SKHCN,\n"
        "chi-so-cds,\"0,68\",2025-12-31,,\n"
        "kinh-te-so-grdp,140,2025-12-31,,phần trăm quá 100\n"
        "phu-song-5g,63,31/12/2025,,trùng\n",
        encoding="utf-8")
    r = kpi(db_url, "import", str(f))
    assert r.exit_code == 1
    out = r.output
    assert "dòng 4" in out and "140 lớn hơn 100" in out
    assert "dòng 5" in out and "trùng với dòng 2" in out
    assert "dòng 2:" not in out and "dòng 3:" not in out
    assert "chưa ghi dòng nào" in out
    assert rows(db_url) == []


def test_each_unit_refuses_impossible_values(tmp_path: Path, sqlite_url: str) -> None:
    f = tmp_path / "sai.csv"
    f.write_text(
        "chi_tieu;gia_tri;ngay_so_lieu;nguon\n"        # Vietnamese headers, semicolons
        "chi-so-cds;1,2;31/12/2025;\n"                 # index outside 0–1
        "xh-pii;0;31/12/2025;\n"                       # a rank must be a positive integer
        "xh-pii;12,5;31/12/2025;\n"
        "dn-khcn;1,5;31/12/2025;\n"                    # 1,5 enterprises
        "trung-tam-an-ninh-mang;có lẽ;31/12/2025;\n"
        "khong-co;5;31/12/2025;\n"
        "phu-song-5g;60;31/12/2027;\n",                # in the future
        encoding="utf-8")
    r = kpi(sqlite_url, "import", str(f))
    assert r.exit_code == 1
    out = r.output
    for line, words in ((2, "1,2 lớn hơn 1"), (3, "0 nhỏ hơn 1"), (4, "12,5 không phải số nguyên"),
                        (5, "1,5 không phải số nguyên"), (6, "không phải một số"), (7, "không có chỉ tiêu"),
                        (8, "ở tương lai")):
        assert f"dòng {line}:" in out and words in out, (line, out)
    assert rows(sqlite_url) == []


def test_excel_csv_with_bom_imports(tmp_path: Path, sqlite_url: str) -> None:
    f = tmp_path / "excel.csv"
    f.write_bytes("\ufeffchi_tieu;gia_tri;ngay_so_lieu;nguon;ghi_chu\n"
                  "phu-song-5g;62%;31/12/2025;Báo cáo 215/BC-SKHCN;\n"
                  "chi-so-cds;0,68;31/12/2025;;\n"
                  "trung-tam-an-ninh-mang;có;14/12/2025;;đã thuê dịch vụ giám sát\n"
                  "xh-pii;24;31/12/2025;;\n".encode("utf-8"))
    r = kpi(sqlite_url, "import", str(f))
    assert r.exit_code == 0, r.output
    got = {(x.indicator, x.value) for x in rows(sqlite_url)}
    assert got == {("phu-song-5g", 62.0), ("chi-so-cds", 0.68), ("trung-tam-an-ninh-mang", 1.0), ("xh-pii", 24.0)}
    assert rows(sqlite_url)[0].source == "Báo cáo 215/BC-SKHCN"


def test_record_and_correction_are_audited(db_url: str) -> None:
    r = kpi(db_url, "record", "--indicator", "phu-song-5g", "--value", "55", "--as-of", "31/12/2025", "--source", "BC 1")
    assert r.exit_code == 0, r.output
    assert "Đã ghi nhận" in r.output and "55 %" in r.output
    r = kpi(db_url, "record", "--indicator", "phu-song-5g", "--value", "57,5", "--as-of", "2025-12-31",
            "--source", "BC 1 (đính chính)", "--by", "vp-tinh-uy")
    assert r.exit_code == 0 and "Đã đính chính" in r.output
    old, new = rows(db_url)
    assert (old.active, new.active, new.replaces_id, new.value, new.recorded_by) == (False, True, old.id, 57.5, "vp-tinh-uy")
    with session(db_url) as s:
        audit = s.exec(select(AuditRow).where(AuditRow.entity == "kpi_value").order_by(AuditRow.id)).all()
    assert [a.action for a in audit] == ["kpi_record", "kpi_correct"]
    assert '"value": 55.0' in audit[1].detail
    r = kpi(db_url, "history", "--indicator", "phu-song-5g", "--json")
    assert r.exit_code == 0 and '"active": false' in r.output


def test_record_refuses_out_of_range(sqlite_url: str) -> None:
    r = kpi(sqlite_url, "record", "--indicator", "phu-song-5g", "--value", "140", "--as-of", "2025-12-31")
    assert r.exit_code == 1 and "140 lớn hơn 100" in r.output
    r = kpi(sqlite_url, "record", "--indicator", "xh-pii", "--value", "2.5", "--as-of", "2025-12-31")
    assert r.exit_code == 1 and "không phải số nguyên" in r.output
    assert rows(sqlite_url) == []


def test_vietnamese_thousands_are_thousands(tmp_path: Path, sqlite_url: str) -> None:
    """“1.200” doanh nghiệp is one thousand two hundred (it used to be stored as 1,2)."""
    r = kpi(sqlite_url, "record", "--indicator", "dn-khcn", "--value", "1.200", "--as-of", "31/12/2025")
    assert r.exit_code == 0, r.output
    assert [x.value for x in rows(sqlite_url)] == [1200.0]
    f = tmp_path / "so-lieu.csv"
    f.write_text("chi_tieu;gia_tri;ngay_so_lieu\n"
                 "dn-khcn;1.350;30/06/2026\n"
                 "chi-so-cds;0,685;31/12/2025\n"
                 "phu-song-5g;62,5 %;31/12/2025\n", encoding="utf-8")
    r = kpi(sqlite_url, "import", str(f))
    assert r.exit_code == 0, r.output
    assert {(x.indicator, x.value) for x in rows(sqlite_url)} >= {("dn-khcn", 1350.0), ("chi-so-cds", 0.685),
                                                                  ("phu-song-5g", 62.5)}


def test_ambiguous_and_garbage_numbers_are_refused_with_a_reason(tmp_path: Path, sqlite_url: str) -> None:
    r = kpi(sqlite_url, "record", "--indicator", "dn-khcn", "--value", "1,200", "--as-of", "31/12/2025")
    assert r.exit_code == 1 and "không rõ nghĩa" in r.output and "1200" in r.output
    f = tmp_path / "sai.csv"
    f.write_text("indicator,value,as_of\n"
                 "dn-khcn,\"1,200\",31/12/2025\n"
                 "dn-khcn,12 chiếc,30/06/2026\n", encoding="utf-8")
    r = kpi(sqlite_url, "import", str(f))
    assert r.exit_code == 1
    assert "dòng 2:" in r.output and "không rõ nghĩa" in r.output
    assert "dòng 3:" in r.output and "không phải một số" in r.output
    assert rows(sqlite_url) == []


def test_value_dated_outside_supported_years_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    f = tmp_path / "nam.csv"
    f.write_text("indicator,value,as_of\n"
                 "dn-khcn,12,0001-01-01\n"
                 "dn-khcn,12,31/12/9999\n", encoding="utf-8")
    r = kpi(sqlite_url, "import", str(f))
    assert r.exit_code == 1
    assert "dòng 2:" in r.output and "dòng 3:" in r.output and "2000–2100" in r.output
    assert rows(sqlite_url) == []


def _token(db_url: str) -> str:
    from engine.kpi.values import values_version

    with session(db_url) as s:
        token = values_version(s)
    assert token is not None and len(token) == 32
    return token


def test_every_write_to_kpi_values_gives_a_new_version_token(tmp_path: Path, db_url: str) -> None:
    """The token that tells a pass whether the values changed (migration 0015) is new after every
    kind of write — recorded, corrected, imported, and SQL that is not dondoc's —, within the
    writing transaction (seen uncommitted by that session; gone with a rollback), and only then."""
    from sqlalchemy import text

    from engine.kpi.values import values_version

    seen = [_token(db_url)]            # a fresh database (migrated on first use): no value yet

    def changed() -> None:
        token = _token(db_url)
        assert token not in seen
        seen.append(token)

    assert kpi(db_url, "record", "--indicator", "phu-song-5g", "--value", "55", "--as-of", "31/12/2025").exit_code == 0
    changed()
    assert kpi(db_url, "record", "--indicator", "phu-song-5g", "--value", "56", "--as-of", "31/12/2025").exit_code == 0
    changed()                                                           # a correction
    f = tmp_path / "chi-tieu.csv"
    f.write_text("indicator,value,as_of\nchi-so-cds,\"0,68\",2025-12-31\n", encoding="utf-8")
    r = kpi(db_url, "import", str(f))
    assert r.exit_code == 0, r.output
    changed()
    with session(db_url) as s:
        s.execute(text("UPDATE kpi_values SET value = 57 WHERE indicator = 'phu-song-5g' AND active = :t"), {"t": True})
        s.commit()
    changed()
    with session(db_url) as s:
        s.execute(text("DELETE FROM kpi_values WHERE indicator = 'chi-so-cds'"))
        s.commit()
    changed()
    with session(db_url) as s:                                         # other tables: no change
        s.execute(text("DELETE FROM audit_log"))
        s.commit()
    assert _token(db_url) == seen[-1]
    with session(db_url) as s:                                         # uncommitted, then rolled back
        s.execute(text("UPDATE kpi_values SET value = 58 WHERE indicator = 'phu-song-5g'"))
        inside = values_version(s)
        assert inside not in seen
        s.rollback()
    assert _token(db_url) == seen[-1]


def test_the_migration_of_the_version_token_matches_the_model(db_url: str) -> None:
    """0015 creates the token's table as KpiValuesVersionRow declares it and the triggers that
    renew it; downgrading removes both (and writing values then still works)."""
    from sqlalchemy import text

    from engine.db import make_engine
    from engine.kpi.state import KpiValuesVersionRow
    from tests.support import check_migration

    eng = make_engine(db_url)           # not get_engine: it would migrate back to the head

    def triggers() -> set[str]:
        sql = ("SELECT name FROM sqlite_master WHERE type = 'trigger'" if db_url.startswith("sqlite")
               else "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        with eng.connect() as c:
            return {r[0] for r in c.execute(text(sql))}

    for down in check_migration(db_url, ("kpi_values_version",), {"kpi_values_version": KpiValuesVersionRow}, "0014"):
        assert not down.has_table("kpi_values_version") and triggers() == set()
        with eng.begin() as c:
            c.execute(text("INSERT INTO kpi_values (indicator, value, as_of, active, recorded_at, recorded_by) "
                           "VALUES ('x', 1, '2025-12-31', :t, '2026-01-01 00:00:00', 't')"), {"t": True})
    expected = ({"kpi_values_insert", "kpi_values_update", "kpi_values_delete"} if db_url.startswith("sqlite")
                else {"kpi_values_touched"})
    assert triggers() == expected
    eng.dispose()
    _token(db_url)
