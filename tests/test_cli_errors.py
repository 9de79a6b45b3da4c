"""The command line never ends in a traceback and never says English words to a secretary.

Each test is a repro from issue 10 (items 6, 7, 9, 13) or issue 9 (item 6): user text printed as
Rich markup, the database password printed, out-of-range dates, locked or read-only databases,
Click's English usage errors, `--now` after the subcommand, world-readable exports.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from tests.conftest import CALENDAR, ROOT, RULES

NOW = "2026-11-26"


@pytest.fixture
def env(seed_env: Path) -> Path:
    """A fresh state: seed rules and calendar, an empty SQLite file, mail to a folder."""
    return seed_env


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def no_traceback(res) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


# ─── 10.9: Rich markup in user data ─────────────────────────────────────────────────────────────
def test_markup_in_unit_is_printed_as_typed(env: Path) -> None:
    res = run("submit", "--unit", "[/red]x", "--obligation", "khhd57-thang", "--period", "2026-10", "--now", NOW)
    no_traceback(res)
    assert res.exit_code == 1 and "“[/red]x”" in res.output


def test_markup_in_kpi_indicator_is_printed_as_typed(env: Path) -> None:
    res = run("kpi", "record", "--indicator", "[/x]", "--value", "1", "--as-of", "2025-12-31", "--now", NOW)
    no_traceback(res)
    assert res.exit_code == 1 and "“[/x]”" in res.output


def test_markup_in_kpi_source_does_not_break_history(env: Path) -> None:
    rec = run("kpi", "record", "--indicator", "phu-song-5g", "--value", "62", "--as-of", "2025-12-31",
              "--source", "[/]oops", "--now", NOW)
    assert rec.exit_code == 0, rec.output
    hist = run("kpi", "history", "--indicator", "phu-song-5g", "--now", NOW)
    no_traceback(hist)
    assert hist.exit_code == 0 and "[/]oops" in hist.output


def test_import_with_markup_in_file_name_reports_success_once(env: Path) -> None:
    (env / "[").mkdir()                 # the path as an operator typed it: folder "[", file "x]bad.csv"
    f = Path("[/x]bad.csv")
    f.write_text("obligation,unit,period,date\nkhhd57-thang,so-tai-chinh,2026-10,2026-10-16\n", encoding="utf-8")
    res = run("import", "submissions", str(f), "--now", NOW)
    no_traceback(res)
    assert res.exit_code == 0 and "Đã nhập 1" in res.output and "[/x]bad.csv" in res.output
    status = json.loads(run("status", "--unit", "so-tai-chinh", "--json", "--now", NOW).output)
    done = [i for i in status["items"] if i["obligation"] == "khhd57-thang" and i["period"] == "2026-10"]
    assert [i["submitted_on"] for i in done] == ["2026-10-16"]


# ─── 10.6: the database password is never printed ───────────────────────────────────────────────
@pytest.mark.parametrize("args", [["status"], ["sync"], ["outbox"], ["notify", "--as-of", "2026-11-25"]])
def test_database_password_is_masked(env: Path, args: list[str]) -> None:
    url = "postgresql+psycopg://dondoc:s3cr3t-pw@127.0.0.1:1/dondoc"
    res = run(*args, "--db", url, "--now", NOW)
    no_traceback(res)
    assert res.exit_code == 2, res.output
    assert "s3cr3t-pw" not in res.output and "dondoc:***@127.0.0.1" in res.output


# ─── 10.13: out-of-range values and unusable databases ──────────────────────────────────────────
@pytest.mark.parametrize("args", [
    ["submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "9999-01"],
    ["submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "0000-01"],
    ["submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "once"],
    ["waive", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "9999-01", "--reason", "x"],
    ["submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "2026-10", "--date", "9999-12-31"],
    ["deadlines", "--from", "9999-12-01"],
    ["deadlines", "--from", "2026-01-01", "--to", "9999-12-31"],
    ["calendar", "days-off", "--year", "0"],
    ["status", "--as-of", "0001-01-01"],
    ["kpi", "report", "--as-of", "9999-12-31"],
    ["simulate", "--from", "9999-01-01", "--to", "9999-01-02"],
])
def test_out_of_range_values_give_a_vietnamese_message(env: Path, args: list[str]) -> None:
    res = run(*args, "--now", NOW)
    no_traceback(res)
    assert res.exit_code in (1, 2), res.output
    assert "Lỗi:" in res.output and ("2000–2100" in res.output or "không hợp lệ" in res.output), res.output


@pytest.mark.parametrize("where", ["before", "after"])
def test_now_out_of_range(env: Path, where: str) -> None:
    args = ["--now", "9999-12-31", "status"] if where == "before" else ["status", "--now", "9999-12-31"]
    res = run(*args)
    no_traceback(res)
    assert res.exit_code == 2 and "2000–2100" in res.output


def test_read_only_database_says_so(env: Path) -> None:
    db = env / "state.db"
    assert run("sync", "--now", NOW).exit_code == 0
    ro = f"sqlite:///file:{db}?mode=ro&uri=true"
    res = run("submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "2026-10",
              "--db", ro, "--now", NOW)
    no_traceback(res)
    assert res.exit_code == 2 and "chỉ đọc" in res.output, res.output


def test_locked_database_says_so(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.db

    real = engine.db.make_engine      # the 30 s wait for another writer, shortened for the test
    monkeypatch.setattr(engine.db, "make_engine", lambda url, *a, **k: real(url, busy_timeout=0.2))
    url = f"sqlite:///{env / 'locked.db'}"
    assert run("sync", "--db", url, "--now", NOW).exit_code == 0
    holder = sqlite3.connect(env / "locked.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        res = run("submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "2026-10",
                  "--db", url, "--now", NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    no_traceback(res)
    assert res.exit_code == 2 and "đang bị khóa" in res.output, res.output


# ─── issue 9.6: --now after the subcommand ──────────────────────────────────────────────────────
def test_now_after_the_subcommand_equals_before(env: Path) -> None:
    before = run("--now", NOW, "status", "--json")
    after = run("status", "--now", NOW, "--json")
    assert before.exit_code == 0 and after.exit_code == 0, after.output
    assert json.loads(before.output)["as_of"] == json.loads(after.output)["as_of"] == NOW
    nested = run("kpi", "report", "--json", "--now", NOW)
    assert nested.exit_code == 0 and json.loads(nested.output)["as_of"] == NOW


def test_dondoc_now_still_works(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DONDOC_NOW", "2026-03-02")
    assert json.loads(run("status", "--json").output)["as_of"] == "2026-03-02"
    assert json.loads(run("status", "--json", "--now", NOW).output)["as_of"] == NOW   # the option wins


# ─── English leftovers from Click ───────────────────────────────────────────────────────────────
@pytest.mark.parametrize("args, expected", [
    (["submit", "--unit", "so-tai-chinh"], "thiếu tùy chọn bắt buộc --obligation"),
    (["submit", "--unit", "x", "--khong-co"], "không có tùy chọn --khong-co"),
    (["calendar", "days-off", "--year", "abc"], "không phải số nguyên"),
    (["khong-co-lenh"], "không có lệnh"),
    (["status", "--now"], "cần một giá trị"),
])
def test_usage_errors_are_vietnamese(env: Path, args: list[str], expected: str) -> None:
    res = run(*args)
    assert res.exit_code == 2
    assert expected in res.output, res.output
    for english in ("Error", "Usage", "No such", "Missing", "Try ", "for help", "is not a valid"):
        assert english not in res.output, res.output
    if args[0] == "submit":
        assert "Cách dùng: dondoc submit [TÙY CHỌN]" in res.output and "Xem hướng dẫn: dondoc submit --help" in res.output


def test_help_is_vietnamese_and_h_works(env: Path) -> None:
    res = run("submit", "-h")
    assert res.exit_code == 0
    assert "Cách dùng: dondoc submit" in res.output and "Hiện hướng dẫn này" in res.output
    for english in ("Usage", "Options", "Show this message", "[required]"):
        assert english not in res.output


# ─── 10.7: exports are not world-readable; python -m engine.cli notify works ────────────────────
def test_exports_are_not_world_readable(env: Path) -> None:
    os.umask(0o022)   # what a typical login shell has; the program tightens it itself
    subprocess.run([sys.executable, "-m", "engine.cli", "--now", NOW, "calendar", "ics", "--unit", "so-tai-chinh",
                    "-o", str(env / "stc.ics")], check=True, cwd=env, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    mode = stat.S_IMODE((env / "stc.ics").stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)


def test_python_m_engine_cli_notify(env: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "notify", "--now", "2026-11-25T09:00", "--json"],
                          cwd=env, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "pickup"
