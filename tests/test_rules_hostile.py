"""Issue 10, items 11–12: no input ends in a traceback, and every message is one a secretary can act on.

Each test reproduces one defect found by the mutation campaign (see tests/test_rules_mutation.py)."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest

from engine.errors import RuleError, RulePackInvalid
from engine.limits import MAX_YEAR, MIN_YEAR, YEARS_VI
from engine.rules_loader import load_pack
from engine.yamlsource import load_yaml
from tests.conftest import CALENDAR

OBLIGATION = """obligations:
  - id: {oid}
    title: "Báo cáo thử"
    basis: {{document: "Văn bản thử", section: "1"}}
    kind: dinh_ky
    reporters: [so-khcn]
    recipient: vp-tinh-uy
    recurrence: {recurrence}
    due: {due}
"""


def obligation(oid: str = "zz-bao-cao", recurrence: str = "{freq: yearly}",
               due: str = "{rule: day_of_last_month, day: 20, roll: forward}") -> str:
    return OBLIGATION.format(oid=oid, recurrence=recurrence, due=due)


def check(pack: Path, max_peak_mb: float | None = None) -> list[RuleError]:
    """Errors of the pack; fails on anything but RulePackInvalid. ``max_peak_mb``: also fails when
    loading the pack allocates more than that at its peak (traced by tracemalloc: the bombs below
    took seconds and gigabytes; memory, unlike time, does not depend on the machine's load; the
    seed pack alone peaks at ≈13 MB)."""
    if max_peak_mb is not None:
        tracemalloc.start()
    try:
        load_pack(pack, CALENDAR)
        errors: list[RuleError] = []
    except RulePackInvalid as exc:
        errors = exc.errors
    finally:
        if max_peak_mb is not None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if max_peak_mb is not None:
        assert peak < max_peak_mb * 1e6, f"loading the pack peaked at {peak / 1e6:.0f} MB"
    for e in errors:
        assert isinstance(e, RuleError) and e.message
        json.dumps(e.as_dict(), ensure_ascii=False).encode("utf-8")   # printable, JSON-able
    return errors


def write(pack: Path, name: str | bytes, text: str | bytes) -> None:
    p = pack / (os.fsdecode(name) if isinstance(name, bytes) else name)
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


def replace(pack: Path, name: str, old: str, new: str) -> None:
    p = pack / name
    text = p.read_text(encoding="utf-8")
    assert old in text
    p.write_text(text.replace(old, new, 1), encoding="utf-8")


def one(errors: list[RuleError], suffix: str = "zz.yaml") -> RuleError:
    assert len(errors) == 1 and errors[0].file.endswith(suffix), "\n".join(map(str, errors))
    return errors[0]


# ───────────── limits: anchors, recursion, nesting, size ─────────────

def _laughs(levels: int, indent: str = "") -> str:
    out = f'{indent}- &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels):
        out += f"{indent}- &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
    return out


def test_anchor_bomb_is_refused_quickly_with_its_line(pack_copy: Path) -> None:
    """9 levels in ~700 bytes took 29 s and 1.8 GB, then MemoryError."""
    write(pack_copy, "zz.yaml", "assumptions_bomb:\n" + _laughs(9, "  "))
    e = one(check(pack_copy, max_peak_mb=50))
    tracemalloc.start()
    try:
        doc = load_yaml(pack_copy / "zz.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000 and doc.errors == [e]
    assert e.line is not None and 2 <= e.line <= 10 and "mở rộng" in e.message


def test_anchor_bomb_inside_assumptions(pack_copy: Path) -> None:
    """7 levels inside `assumptions` took the running daemon to 877 MB."""
    write(pack_copy, "zz.yaml", obligation() + "    assumptions:\n" + _laughs(7, "      "))
    e = one(check(pack_copy, max_peak_mb=50))
    assert e.line is not None and e.line > 9 and "tham chiếu" in e.message


def test_recursive_alias(pack_copy: Path) -> None:
    write(pack_copy, "zz.yaml", "units: &a\n  - *a\n")
    e = one(check(pack_copy))
    assert e.line == 2 and "“*a”" in e.message


@pytest.mark.parametrize("text", ["units: " + "[" * 5000 + "]" * 5000 + "\n",
                                  "units:\n" + "".join("  " * i + "- \n" for i in range(1, 200)) + "  " * 200 + "- x\n",
                                  "units: " + "{a: " * 60 + "1" + "}" * 60 + "\n"])
def test_deep_nesting(pack_copy: Path, text: str) -> None:
    write(pack_copy, "zz.yaml", text)
    e = one(check(pack_copy))
    assert e.line is not None and "lồng nhau quá sâu" in e.message


def test_mapping_used_as_key(pack_copy: Path) -> None:
    write(pack_copy, "zz.yaml", "units:\n  - id: zz\n    ? {a: 1}\n    : x\n")
    e = one(check(pack_copy))
    assert e.line == 3 and "khóa" in e.message


def test_file_over_the_size_bound_is_refused_at_once(pack_copy: Path) -> None:
    """A 5 MB file took 63 s and 922 MB."""
    unit = "  - id: zz-{i}\n    name: \"Đơn vị thử số {i}\"\n    kind: so\n    contacts: [vt{i}@example.org]\n"
    write(pack_copy, "zz.yaml", "units:\n" + "".join(unit.format(i=i) for i in range(60_000)))
    assert (pack_copy / "zz.yaml").stat().st_size > 5_000_000
    e = one(check(pack_copy, max_peak_mb=50))
    assert e.line == 1 and "quá lớn" in e.message and "MB" in e.message


def test_file_just_under_the_bound_is_read_in_bounded_memory(pack_copy: Path) -> None:
    """The seed pack plus 9,000 units in 0.9 MB peaks at ≈59 MB; the reader that took 63 s and 922 MB
    for 5 MB would need ≈170 MB here."""
    unit = "  - id: zz-{i}\n    name: \"Đơn vị thử số {i}\"\n    kind: so\n    contacts: [vt{i}@example.org]\n"
    write(pack_copy, "zz.yaml", "units:\n" + "".join(unit.format(i=i) for i in range(9_000)))
    assert 700_000 < (pack_copy / "zz.yaml").stat().st_size < 1_000_000
    assert check(pack_copy, max_peak_mb=120) == []


# ───────────── characters and encodings ─────────────

@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_control_characters_in_a_file(pack_copy: Path, char: str) -> None:
    write(pack_copy, "zz.yaml", f"units:\n  - id: zz\n    name: Đơn vị{char}thử\n    kind: so\n")
    e = one(check(pack_copy))
    assert e.line == 3 and f"U+{ord(char):04X}" in e.message


def test_non_utf8_file_name(pack_copy: Path) -> None:
    write(pack_copy, b"zz-\xff\xfe.yaml", "units:\n  - id: zz\n    kind: so\n")
    e = one(check(pack_copy), ".yaml")
    assert e.line == 2 and "\ufffd" in e.file
    str(e).encode("utf-8")


def test_non_utf8_content_gives_a_line(pack_copy: Path) -> None:
    write(pack_copy, "zz.yaml", "units:\n  - id: zz\n    name: Đơn vị\n".encode() + b"    notes: \xe9t\xe9\n    kind: so\n")
    e = one(check(pack_copy))
    assert e.line == 4 and "UTF-8" in e.message and "dòng 4" in e.message


# ───────────── years ─────────────

@pytest.mark.parametrize("old,new,field", [
    ("check_until: 2027-12-31", "check_until: 9999-12-31", "pack.check_until"),
    ("check_from: 2025-01-01", "check_from: 0001-01-01", "pack.check_from"),
])
def test_check_horizon_in_supported_years(pack_copy: Path, old: str, new: str, field: str) -> None:
    replace(pack_copy, "pack.yaml", old, new)
    e = one(check(pack_copy), "pack.yaml")
    assert e.field == field and e.line is not None and YEARS_VI in e.message


def test_supported_years_are_stated() -> None:
    assert (MIN_YEAR, MAX_YEAR) == (2000, 2100) and YEARS_VI == "2000–2100"


@pytest.mark.parametrize("recurrence,due,field", [
    ("{freq: once, start: 0001-01-01, end: 0001-03-31}", "{rule: fixed, date: 2026-03-31, roll: keep}", "recurrence.start"),
    ("{freq: once, start: 2026-01-01, end: 9999-03-31}", "{rule: fixed, date: 2026-03-31, roll: keep}", "recurrence.end"),
    ("{freq: once, start: 2026-01-01, end: 2026-03-31}", "{rule: fixed, date: 9999-03-31, roll: keep}", "due.date"),
    ("{freq: every_n_months, months_interval: 30, anchor: 9999-12-01}", "{rule: working_days_after_period, days: 5, roll: forward}",
     "recurrence.anchor"),
])
def test_dates_that_can_never_fall_due(pack_copy: Path, recurrence: str, due: str, field: str) -> None:
    write(pack_copy, "zz.yaml", obligation(recurrence=recurrence, due=due) + ("    cutoff: none\n" if "once" in recurrence else ""))
    errors = check(pack_copy)
    hit = [e for e in errors if e.field == f"obligations[0].{field}"]
    assert hit and YEARS_VI in hit[0].message and hit[0].line is not None, "\n".join(map(str, errors))


def test_empty_months_never_fall_due(pack_copy: Path) -> None:
    write(pack_copy, "zz.yaml", obligation(recurrence="{freq: monthly, months: []}"))
    e = one(check(pack_copy))
    assert e.line == 8 and e.field == "obligations[0].recurrence.months" and "không bao giờ" in e.message


def test_unknown_default_reminder_policy_is_one_error(pack_copy: Path) -> None:
    replace(pack_copy, "pack.yaml", "  check_until: 2027-12-31\n",
            "  check_until: 2027-12-31\n  default_reminder_policy: khong-co\n")
    e = one(check(pack_copy), "pack.yaml")
    assert e.field == "pack.default_reminder_policy" and "khong-co" in e.message


# ───────────── messages a secretary can act on ─────────────

def test_bad_date_on_an_anchored_value(pack_copy: Path) -> None:
    """Was “found unconstructable recursive node”, and the whole file was dropped."""
    write(pack_copy, "zz.yaml", obligation() + "    effective_from: &ngay_hieu_luc_khhd57 2025-04-31\n"
          + obligation("zz-hai").replace("obligations:\n", "") + "    effective_from: *ngay_hieu_luc_khhd57\n")
    errors = check(pack_copy)
    assert [(e.line, e.field) for e in errors] == [(10, "obligations[0].effective_from"), (19, "obligations[1].effective_from")]
    assert all("2025-04-31" in e.message and "recursive" not in e.message for e in errors)
    assert "dòng 10" in errors[1].message


def test_invalid_pack_block_is_not_missing(pack_copy: Path) -> None:
    replace(pack_copy, "pack.yaml", "timezone: Asia/Ho_Chi_Minh", "timezone: [Asia/Ho_Chi_Minh]")
    e = one(check(pack_copy), "pack.yaml")
    assert e.field == "pack.timezone" and "thiếu khối" not in e.message


def test_one_bad_unit_is_one_error(pack_copy: Path) -> None:
    """One bad unit used to give 32 errors: every reference to it was reported as unknown."""
    replace(pack_copy, "units.yaml", "  - id: vp-tinh-uy\n", "  - id: vp-tinh-uy\n    ten_cu: x\n")
    e = one(check(pack_copy), "units.yaml")
    assert "ten_cu" in e.field and "không được hỗ trợ" in e.message


def test_syntax_error_in_units_comes_first_and_alone(pack_copy: Path) -> None:
    """One syntax error in units.yaml used to give 71 errors, the cause lost among them."""
    replace(pack_copy, "units.yaml", "  - id: vp-tinh-uy\n", "  - id: vp-tinh-uy\n   x: : [\n")
    errors = check(pack_copy)
    assert errors[0].file.endswith("units.yaml") and "cú pháp" in errors[0].message and errors[0].line
    assert len(errors) <= 2, "\n".join(map(str, errors))


def test_cross_check_errors_follow_their_cause(pack_copy: Path) -> None:
    write(pack_copy, "zz.yaml", obligation() + "    recipient: khong-co\n")
    write(pack_copy, "aa.yaml", "groups:\n  - id: zz-nhom\n    name: Nhóm\n    members: [khong-co-2]\n")
    errors = check(pack_copy)
    # the cause first (though aa.yaml sorts before zz.yaml), then the cross-checks
    assert errors[0].file.endswith("zz.yaml") and "lặp lại" in errors[0].message
    assert errors[1].file.endswith("aa.yaml") and "khong-co-2" in errors[1].message


_ENGLISH = re.compile(r"\b(should|Input|valid|characters|provided|constrained|literal\[|Cutoff)\b")


@pytest.mark.parametrize("extra,field,words", [
    ("", "obligations[0].id", "tối đa 80 ký tự"),
    ("    effective_from: 2026-01-01T10:00:00\n", "obligations[0].effective_from", "không kèm giờ"),
    ("    cutoff: {day: 40}\n", "obligations[0].cutoff.day", "≤ 28"),
    ("    cutoff: nne\n", "obligations[0].cutoff", "none"),
])
def test_pydantic_texts_and_paths_in_vietnamese(pack_copy: Path, extra: str, field: str, words: str) -> None:
    text = obligation(oid="z" * 81 if not extra else "zz-bao-cao") + extra
    write(pack_copy, "zz.yaml", text)
    e = one(check(pack_copy))
    assert e.field == field and words in e.message and e.line is not None, str(e)
    assert not _ENGLISH.search(e.message) and not _ENGLISH.search(e.field), str(e)


@pytest.mark.parametrize("day,words", [("40", "≤ 31"), ("lasst", "last")])
def test_due_day_union_is_one_plain_message(pack_copy: Path, day: str, words: str) -> None:
    write(pack_copy, "zz.yaml", obligation(due=f"{{rule: day_of_last_month, day: {day}, roll: forward}}"))
    e = one(check(pack_copy))
    assert e.field == "obligations[0].due.day" and e.line == 9 and words in e.message
    assert not _ENGLISH.search(e.message)


# ───────────── unit names ─────────────

@pytest.mark.parametrize("char", ["<", ">", ";"])
def test_unit_name_that_breaks_a_mail_header(pack_copy: Path, char: str) -> None:
    write(pack_copy, "zz.yaml", f"units:\n  - id: zz\n    name: \"Đơn vị {char} thử\"\n    kind: so\n")
    e = one(check(pack_copy))
    assert e.line == 3 and e.field == "units[0].name" and char in e.message


def test_names_and_titles_are_folded_to_one_line(pack_copy: Path) -> None:
    write(pack_copy, "zz.yaml", 'units:\n  - id: zz\n    name: "A\\vB\\x85C\\u2028D\\r\\nE\\fF\\u2029G"\n    kind: so\n'
          'groups:\n  - id: zz-nhom\n    name: "Nhóm\\nthử"\n    members: [zz]\n'
          + obligation().replace('"Báo cáo thử"', '"Báo cáo\\u2028thử\\r\\n"'))
    pack = load_pack(pack_copy, CALENDAR)
    assert pack.units["zz"].name == "A B C D E F G"
    assert pack.groups["zz-nhom"].name == "Nhóm thử"
    assert pack.obligations["zz-bao-cao"].title == "Báo cáo thử"
