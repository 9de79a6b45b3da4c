"""The forms people write for a period (issue 11 item 4): one parser in the core
(engine.periods.normalise_period_text) for `--period`, CSV and xlsx cells, including what Excel
makes of a typed "2026-11"; and a wrong period says which report it probably belongs to."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.periods import BadPeriod, normalise_period_text, period_for_key
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, RULES

FORMS = [
    # months
    ("2026-11", "2026-11"), ("11/2026", "2026-11"), ("T11/2026", "2026-11"), ("t11/2026", "2026-11"),
    ("Tháng 11/2026", "2026-11"), ("tháng 11 năm 2026", "2026-11"), ("Thang 11/2026", "2026-11"),
    ("T9/2026", "2026-09"), ("9/2026", "2026-09"), ("2026-9", "2026-09"), (" 2026-11 ", "2026-11"),
    # what Excel makes of a typed "2026-11": a date cell (01/11/2026), or the text it shows, "Nov-26"
    (datetime(2026, 11, 1), "2026-11"), (date(2026, 11, 1), "2026-11"), ("Nov-26", "2026-11"),
    ("nov-2026", "2026-11"), ("Sep 26", "2026-09"),
    # quarters
    ("2026-Q4", "2026-Q4"), ("2026-q4", "2026-Q4"), ("Q4/2026", "2026-Q4"), ("Quý IV/2026", "2026-Q4"),
    ("quý iv/2026", "2026-Q4"), ("Quy IV/2026", "2026-Q4"), ("Quý 4/2026", "2026-Q4"), ("Quý III năm 2026", "2026-Q3"),
    ("Quý I/2026", "2026-Q1"), ("Quý II/2026", "2026-Q2"),
    # halves
    ("2026-H1", "2026-H1"), ("H2/2026", "2026-H2"), ("6 tháng đầu năm 2026", "2026-H1"),
    ("6 tháng cuối năm 2026", "2026-H2"), ("6 thang dau nam 2026", "2026-H1"), ("Sáu tháng cuối năm 2026", "2026-H2"),
    # years (also a number cell)
    ("2026", "2026"), ("Năm 2026", "2026"), ("nam 2026", "2026"), (2026, "2026"), (2026.0, "2026"),
    # keys of other kinds pass through; unknown text is left for period_for_key to explain
    ("once", "once"), ("2026-01..2026-06", "2026-01..2026-06"), ("9999-01", "9999-01"), ("2026-13", "2026-13"),
    ("tháng mười", "tháng mười"), (datetime(2026, 11, 15), "15/11/2026"),
]


@pytest.mark.parametrize("written, key", FORMS, ids=[repr(w) for w, _ in FORMS])
def test_every_written_form_gives_the_period_key(written: object, key: str) -> None:
    assert normalise_period_text(written) == key


@pytest.fixture(scope="module")
def pack():
    return load_pack(RULES, CALENDAR)


@pytest.mark.parametrize("obligation, written, key", [
    ("khhd57-thang", "T10/2026", "2026-10"), ("khhd57-thang", datetime(2026, 11, 1), "2026-11"),
    ("khhd57-thang", "Nov-26", "2026-11"), ("khhd57-quy", "Quý III/2026", "2026-Q3"),
    ("khhd57-6thang", "6 tháng đầu năm 2026", "2026-H1"), ("khhd57-nam", "Năm 2026", "2026"),
])
def test_the_seed_reports_take_the_written_forms(pack, obligation: str, written: object, key: str) -> None:
    assert period_for_key(pack.obligations[obligation], written, pack.obligations.values()).key == key


@pytest.mark.parametrize("written, expected", [
    # September has no monthly report: the quarterly report covers it
    ("2026-09", ["không có kỳ “2026-09”", "Tháng 09/2026 thuộc báo cáo quý", "“2026-Q3” của “khhd57-quy”"]),
    ("T9/2026", ["Tháng 09/2026 thuộc báo cáo quý", "“2026-Q3” của “khhd57-quy”"]),
    ("Quý III/2026", ["báo cáo tháng", "Kỳ “2026-Q3” là kỳ của báo cáo quý", "khhd57-quy"]),
    ("6 tháng đầu năm 2026", ["báo cáo tháng", "báo cáo 6 tháng", "khhd57-6thang"]),
    ("tháng mười", ["không đúng dạng", "năm-tháng"]),
    ("9999-01", ["2000–2100"]),
])
def test_a_wrong_period_says_what_was_probably_meant(pack, written: str, expected: list[str]) -> None:
    with pytest.raises(BadPeriod) as exc:
        period_for_key(pack.obligations["khhd57-thang"], written, pack.obligations.values())
    for text in expected:
        assert text in str(exc.value), (written, str(exc.value))


def _cli(tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["--now", "2026-12-05T09:00", *args, "--rules", str(RULES),
                                    "--calendar", str(CALENDAR), "--db", f"sqlite:///{tmp_path / 'state.db'}"])


def test_the_command_line_shows_the_cores_message_and_takes_the_forms(tmp_path: Path) -> None:
    """services.check_period used to answer first with "(viết dạng yyyy-mm)" for "T9/2026" or "once"."""
    for written in ("T9/2026", "Tháng 09/2026", "2026-09"):
        r = _cli(tmp_path, "submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", written,
                 "--date", "2026-10-16")
        assert r.exit_code == 1 and "Tháng 09/2026 thuộc báo cáo quý: kỳ “2026-Q3” của “khhd57-quy”" in r.output, r.output
    r = _cli(tmp_path, "waive", "--unit", "so-tai-chinh", "--obligation", "khhd57-thang", "--period", "once", "--reason", "x")
    assert r.exit_code == 1 and "báo cáo tháng" in r.output and "năm-tháng" in r.output, r.output
    r = _cli(tmp_path, "submit", "--unit", "so-tai-chinh", "--obligation", "khhd57-quy", "--period", "Quý III/2026",
             "--date", "2026-10-16")
    assert r.exit_code == 0 and "Quý III/2026" in r.output, r.output
    r = _cli(tmp_path, "status", "--unit", "so-tai-chinh", "--json")
    import json

    assert [i["period"] for i in json.loads(r.stdout)["items"]
            if i["obligation"] == "khhd57-quy" and i["submitted_on"]] == ["2026-Q3"]


def test_deadlines_and_status_tables_show_the_codes_submit_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.app.cli.common import out

    monkeypatch.setattr(out, "width", 250)       # a wide terminal: codes unbroken
    r = CliRunner().invoke(app, ["--now", "2026-12-05T09:00", "deadlines", "--from", "2026-11-01", "--to", "2026-11-30",
                                 "--unit", "so-tai-chinh", "--rules", str(RULES), "--calendar", str(CALENDAR)])
    assert r.exit_code == 0 and "Mã báo cáo / kỳ" in r.output and "khhd57-thang / 2026-11" in r.output, r.output
    assert "Sở Tài chính (so-tai-chinh)" in r.output
    r = _cli(tmp_path, "status", "--all", "--unit", "so-tai-chinh")
    assert r.exit_code == 0 and "khhd57-nam / 2026" in r.output and "Sở Tài chính (so-tai-chinh)" in r.output, r.output
