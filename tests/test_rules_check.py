"""`dondoc rules check`: the seed packs pass; each kind of breakage names file, line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.errors import RulePackInvalid, RuleError
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, MINIPACK, RULES

runner = CliRunner()


def check(directory: Path) -> list[RuleError]:
    try:
        load_pack(directory, CALENDAR)
    except RulePackInvalid as exc:
        return exc.errors
    return []


def add_file(pack: Path, name: str, text: str) -> str:
    (pack / name).write_text(text, encoding="utf-8")
    return name


def only_error(errors: list[RuleError], file_suffix: str) -> RuleError:
    hits = [e for e in errors if e.file.endswith(file_suffix)]
    assert len(hits) == 1, "\n".join(map(str, errors))
    return hits[0]


def test_seed_packs_pass() -> None:
    result = runner.invoke(app, ["rules", "check", str(RULES), "--calendar", str(CALENDAR), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["valid"] and summary["obligations"] >= 10 and summary["units"] >= 30


def test_test_pack_passes() -> None:
    assert check(MINIPACK) == []


OBLIGATION = """obligations:
  - id: zz-bao-cao
    title: "Báo cáo thử"
    basis: {{document: "Văn bản thử", section: "1"}}
    kind: dinh_ky
    reporters: [{reporter}]
    recipient: {recipient}
    recurrence: {{freq: yearly}}
    due: {due}
"""


def obligation(reporter: str = "so-khcn", recipient: str = "vp-tinh-uy",
               due: str = "{rule: day_of_last_month, day: 20, roll: forward}") -> str:
    return OBLIGATION.format(reporter=reporter, recipient=recipient, due=due)


def test_unknown_unit_reference(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(reporter="so-khong-co"))
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 6 and e.field == "obligations[0].reporters[0]"
    assert "“so-khong-co” chưa được khai báo" in e.message


def test_unknown_recipient_and_group_member(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(recipient="van-phong-x") +
             "groups:\n  - id: zz-nhom\n    name: Nhóm\n    members: [so-khcn, nhom-khong-co]\n")
    errors = [e for e in check(pack_copy) if e.file.endswith("zz.yaml")]
    assert {(e.line, e.field) for e in errors} == {(7, "obligations[0].recipient"), (13, "groups[0].members[1]")}


def test_unknown_obligation_reference(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(due="{rule: working_days_after_obligation, obligation: khong-co, days: 3, roll: keep}")
             + "    compiles: [cung-khong-co]\n")
    errors = [e for e in check(pack_copy) if e.file.endswith("zz.yaml")]
    assert {e.field for e in errors} == {"obligations[0].due.obligation", "obligations[0].compiles[0]"}
    assert all(e.line in (9, 10) for e in errors)


def test_duplicate_id_across_files(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", "units:\n  - id: so-khcn\n    name: Sở trùng\n    kind: so\n")
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 2 and "“so-khcn” bị trùng" in e.message and "units.yaml" in e.message


def test_duplicate_key_in_one_mapping(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation() + "    kind: chuyen_de\n")
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 10 and "bị lặp lại" in e.message


@pytest.mark.parametrize("due,line,needle", [
    ("{rule: before_date, day: 31, month: 11, roll: forward}", 9, "31/11 không tồn tại"),
    ("{rule: on_date, day: 29, month: 2, roll: forward}", 9, "29/02 không tồn tại"),
    ("{rule: day_of_last_month, day: 31, roll: forward}", 9, "không có trong mọi tháng"),
])
def test_impossible_dates(pack_copy: Path, due: str, line: int, needle: str) -> None:
    add_file(pack_copy, "zz.yaml", obligation(due=due))
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == line and needle in e.message


def test_impossible_calendar_date_literal(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation() + "    effective_from: 2026-02-30\n")
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 10 and e.field == "obligations[0].effective_from" and "2026-02-30" in e.message


def test_effective_until_before_from(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation() + "    effective_from: 2026-05-01\n    effective_until: 2026-01-01\n")
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 2 and "trước effective_from" in e.message


def test_compiled_report_due_before_its_sources(pack_copy: Path) -> None:
    text = obligation(due="{rule: day_of_last_month, day: 20, roll: forward}") + """  - id: zz-tong-hop
    title: "Tổng hợp thử"
    basis: {document: "Văn bản thử", section: "2"}
    kind: dinh_ky
    reporters: [vp-tinh-uy]
    recipient: ubnd-tinh
    recurrence: {freq: yearly}
    due: {rule: day_of_last_month, day: 18, roll: forward}
    compiles: [zz-bao-cao]
"""
    add_file(pack_copy, "zz.yaml", text)
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 18 and e.field == "obligations[1].compiles[0]"
    assert "không sau hạn" in e.message and "zz-bao-cao" in e.message


def test_deadline_inside_cutoff_gap(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(due="{rule: day_of_last_month, day: 14, roll: keep}"))
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 9 and "Nghị định 09/2019" in e.message


def test_unit_ends_without_successor(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", """units:
  - id: zz-so-cu
    name: Sở cũ
    kind: so
    valid_until: 2026-06-30
""" + obligation(reporter="zz-so-cu"))
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 5 and e.field == "units[0].valid_until" and "không có đơn vị kế thừa" in e.message


def test_yaml_syntax_error(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", "obligations:\n  - id: a\n    title: \"không đóng ngoặc\n  - id: b\n")
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line is not None and "lỗi cú pháp YAML" in e.message


def test_misspelt_field_and_bad_choice(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(due="{rule: day_of_last_month, day: 20, roll: sideways}")
             + "    recipent: vp-tinh-uy\n")
    errors = [e for e in check(pack_copy) if e.file.endswith("zz.yaml")]
    by_field = {e.field: e for e in errors}
    assert by_field["obligations[0].recipent"].line == 10
    assert "không được hỗ trợ" in by_field["obligations[0].recipent"].message
    assert by_field["obligations[0].due.roll"].line == 9 and "forward" in by_field["obligations[0].due.roll"].message


def test_invalid_email_and_header_injection(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", "units:\n  - id: zz-don-vi\n    name: Đơn vị\n    kind: so\n"
             "    contacts: [\"a@b.org\\r\\nBcc: x@evil.example\", khong-phai-email]\n")
    errors = [e for e in check(pack_copy) if e.file.endswith("zz.yaml")]
    assert errors and all(e.line == 5 for e in errors)
    assert any("không hợp lệ" in e.message for e in errors)


def test_cli_exit_codes_and_messages(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(reporter="so-khong-co"))
    result = runner.invoke(app, ["rules", "check", str(pack_copy), "--calendar", str(CALENDAR)])
    assert result.exit_code == 1
    assert "zz.yaml:6" in result.output and "so-khong-co" in result.output
    as_json = runner.invoke(app, ["rules", "check", str(pack_copy), "--calendar", str(CALENDAR), "--json"])
    data = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and data["valid"] is False
    assert {"file", "line", "field", "message"} <= set(data["errors"][0])


def test_broken_calendar_data(tmp_path: Path) -> None:
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "VN.yaml").write_text("country: VN\nyears:\n  2026:\n    days_of: []\n", encoding="utf-8")
    with pytest.raises(RulePackInvalid) as exc:
        load_pack(MINIPACK, cal)
    (e,) = exc.value.errors
    assert e.line == 4 and e.file.endswith("VN.yaml")


def test_recipient_that_no_longer_exists(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", """units:
  - id: zz-noi-nhan-cu
    name: Nơi nhận cũ
    kind: so
    valid_until: 2025-06-30
    successor: so-khcn
""" + obligation(recipient="zz-noi-nhan-cu"))
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 13 and e.field == "obligations[0].recipient" and "không còn tồn tại" in e.message


def test_compiled_report_must_share_the_period(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", obligation(due="{rule: working_days_after_obligation, obligation: khhd57-thang, days: 3, roll: keep}"))
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 9 and "cùng kỳ" in e.message


def test_broken_template_is_caught_by_rules_check(tmp_path: Path) -> None:
    """A template the secretariat broke fails `rules check`, not the 07:00 delivery."""
    tpl = tmp_path / "templates"
    tpl.mkdir()
    (tpl / "digest.subject.j2").write_text("Nhắc hạn {{ digest.recipient.name }\n", encoding="utf-8")
    result = runner.invoke(app, ["rules", "check", str(RULES), "--calendar", str(CALENDAR), "--templates", str(tpl)])
    assert result.exit_code == 1
    assert "digest.subject.j2:1" in result.output and "mẫu thư" in result.output


def test_invalid_webhook_url(pack_copy: Path) -> None:
    add_file(pack_copy, "zz.yaml", "units:\n  - id: zz-don-vi\n    name: Đơn vị\n    kind: so\n"
             "    webhooks: [\"json://127.0.0.1:8080/hook\", \"khong-phai-url\"]\n")
    e = only_error(check(pack_copy), "zz.yaml")
    assert e.line == 5 and e.field == "units[0].webhooks[1]" and "webhook" in e.message
