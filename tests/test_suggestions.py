"""“có phải … không?” (issue 11 item 4): an unknown unit or report id is answered with the ids it
most likely meant (compared without accents with ids AND names), and a rule file's missing or wrong
choice lists the allowed values instead of only "thiếu trường bắt buộc"."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.rules_loader import load_pack
from engine.submissions import did_you_mean, unknown_obligation, unknown_unit
from tests.conftest import CALENDAR, RULES

runner = CliRunner()


@pytest.fixture(scope="module")
def pack():
    return load_pack(RULES, CALENDAR)


@pytest.mark.parametrize("typed, meant", [
    ("so tai chinh", "so-tai-chinh"), ("Sở Tài chính", "so-tai-chinh"), ("SỞ TÀI CHÍNH", "so-tai-chinh"),
    ("so-tai-chin", "so-tai-chinh"), ("so_tai_chinh", "so-tai-chinh"), ("tai chinh", "so-tai-chinh"),
])
def test_a_mistyped_unit_is_answered_with_the_unit_meant(pack, typed: str, meant: str) -> None:
    hits = did_you_mean(typed, {u: x.name for u, x in pack.units.items()})
    assert hits[0] == meant
    msg = unknown_unit(pack, typed)
    assert msg.startswith(f"không có đơn vị “{typed}”") and f"có phải “{meant}” (Sở Tài chính)" in msg and msg.endswith("không?")


def test_a_mistyped_report_id_or_title_is_answered(pack) -> None:
    assert did_you_mean("khhd57-thng", {o: x.title for o, x in pack.obligations.items()})[0] == "khhd57-thang"
    assert "có phải “khhd57-quy”" in unknown_obligation(pack, "khhd57 quý")
    far = unknown_unit(pack, "zzzz-qqqq")
    assert "có phải" not in far and "rules/units.yaml" in far


def _cli(tmp_path: Path, *args: str):
    return runner.invoke(app, ["--now", "2026-12-05T09:00", *args, "--rules", str(RULES), "--calendar", str(CALENDAR),
                               "--db", f"sqlite:///{tmp_path / 'state.db'}"])


def test_submit_status_and_import_suggest(tmp_path: Path) -> None:
    r = _cli(tmp_path, "submit", "--unit", "so tai chinh", "--obligation", "khhd57-thang", "--period", "2026-10",
             "--date", "2026-10-16")
    assert r.exit_code == 1 and "có phải “so-tai-chinh” (Sở Tài chính) không?" in r.output, r.output
    r = _cli(tmp_path, "status", "--unit", "Sở Tài chính")
    assert r.exit_code != 0 and "có phải “so-tai-chinh”" in r.output, r.output
    f = tmp_path / "nop.csv"
    f.write_text("obligation,unit,period,date\nkhhd57-thng,so-tai-chinh,2026-10,16/10/2026\n", encoding="utf-8")
    r = _cli(tmp_path, "import", "submissions", str(f))
    assert r.exit_code == 1 and "dòng 2:" in r.output and "có phải “khhd57-thang”" in r.output, r.output


def _rules_check(pack_dir: Path) -> str:
    r = runner.invoke(app, ["rules", "check", str(pack_dir), "--calendar", str(CALENDAR)])
    assert r.exit_code == 1, r.output
    return r.output


def _edit_first(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_missing_roll_lists_the_allowed_values(pack_copy: Path) -> None:
    _edit_first(pack_copy / "obligations-000-hd-skhcn.yaml", "due: {rule: before_date, day: 1, month: 12, roll: forward}",
                "due: {rule: before_date, day: 1, month: 12}")
    out = _rules_check(pack_copy)
    assert "[obligations[0].due.roll]: thiếu trường bắt buộc; chọn một trong: forward, backward, keep" in out, out


def test_a_wrong_choice_lists_the_allowed_values_in_vietnamese(pack_copy: Path) -> None:
    _edit_first(pack_copy / "obligations-000-hd-skhcn.yaml", "roll: forward}", "roll: fwd}")
    out = _rules_check(pack_copy)
    assert "giá trị “fwd” không hợp lệ; chọn một trong: forward, backward, keep" in out, out
    assert " or " not in out and "'forward'" not in out


def test_a_missing_kind_or_rule_lists_the_allowed_values(pack_copy: Path) -> None:
    _edit_first(pack_copy / "obligations-001-khhd-57.yaml", "    kind: dinh_ky\n", "")
    _edit_first(pack_copy / "obligations-000-hd-skhcn.yaml", "due: {rule: before_date, day: 1,", "due: {day: 1,")
    out = _rules_check(pack_copy)
    assert "[obligations[0].kind]: thiếu trường bắt buộc; chọn một trong: dinh_ky, chuyen_de, dot_xuat, mot_lan" in out, out
    assert "thiếu trường “rule”; chọn một trong: day_of_last_month, before_date" in out, out
