"""A secretary never reads the command line's framework English (issue 11, item 3).

The command tree is walked from the root ``app``, so a command added later is covered without
editing this file: its ``--help``/``-h``, and the usual mistakes (unknown option, missing required
option or argument, a value that is not a number, an option without its value, a value given to a
switch, extra arguments, an unknown subcommand) must print Vietnamese only. ``calendar days-off``
must name holidays in Vietnamese with dd/mm/yyyy dates.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import holidays
import pytest
import typer
from typer.testing import CliRunner

from engine.app.cli import app
from tests.conftest import CALENDAR, RULES

# Framework words, matched as whole words. Option names (--help, --value …) are removed first:
# they are what the user types, not English prose.
ENGLISH_ANY_CASE = re.compile(
    r"\b(usage|options?|commands?|arguments?|errors?|try|help|show this message|required|default|no such|"
    r"invalid value|missing|unexpected|extra arguments?|aborted|env var|deprecated|dynamic|choose from|"
    r"does not|requires|is not a valid|input should|not one of|range|integer|number|string|boolean|datetime|"
    r"got|exit|for help|parameter|value|is not|file|directory)\b", re.IGNORECASE)
ENGLISH_TYPE_NAMES = re.compile(r"\b(TEXT|INTEGER|INT|PATH|FLOAT|BOOLEAN|BOOL|DATETIME|FILENAME|FILE|DIRECTORY|DIR|"
                                r"STR|UUID|CHOICE)\b|<[A-Za-z][A-Za-z ]*>")
OPTION_NAME = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
VIETNAMESE = re.compile(r"[ăâđêôơưĂÂĐÊÔƠƯáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ]", re.I)


def english_words(text: str) -> list[str]:
    text = OPTION_NAME.sub(" ", text)
    return [m.group(0) for m in ENGLISH_ANY_CASE.finditer(text)] + \
        [m.group(0) for m in ENGLISH_TYPE_NAMES.finditer(text)]


def test_the_scanner_flags_what_typer_prints_in_english() -> None:
    """The scan itself: Typer's own texts are caught; Vietnamese and option names are not."""
    for english in ("Usage: dondoc status [OPTIONS]", "Error: No such option: --x", "Try 'dondoc -h' for help.",
                    "Show this message and exit.", "[required]", "[default: 500]", "--limit <int>", "--as-of TEXT",
                    "Invalid value for '--year': 'x' is not a valid integer.", "Missing option '--unit'.",
                    "Got unexpected extra argument (x)", "│ --tolerance  <float range> [0<=x<=1] │", "╭─ Options ─╮",
                    "Input should be a valid number"):
        assert english_words(english), english
    for vietnamese in ("Cách dùng: dondoc status [TÙY CHỌN]", "Xem hướng dẫn: dondoc status --help",
                       "--value GIÁ_TRỊ  Giá trị (12.5 hoặc 12,5)", "Lỗi: không có tùy chọn --khong-co",
                       "-h  Hiện hướng dẫn này rồi thoát.", "Sở Tài chính – Tháng 11/2026"):
        assert not english_words(vietnamese), vietnamese


@pytest.fixture
def env(seed_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state with the seed rules; a wide terminal so no word is folded across lines."""
    monkeypatch.setenv("COLUMNS", "200")
    return seed_env


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        if not sub.hidden:
            yield from walk(sub, path + (name,))


COMMANDS = list(walk(typer.main.get_command(app)))


def test_the_walk_finds_every_command() -> None:
    """The walk reaches the nested commands (a broken walk would make every other test vacuous)."""
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "status", "calendar", "calendar days-off", "kpi report", "outbox retry", "import submissions",
            "rules check", "run", "doctor"} <= paths
    assert len(paths) >= 20


def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "commands")


def _params(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.expose_value]


def _label(param: Any) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0]) if param.param_type_name == "option" \
        else param.metavar or param.name


def _dummy(param: Any) -> str:
    """A value that parses for the parameter's type (the command body never runs: parsing fails first)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_choice and desc.choices:
        return str(getattr(desc.choices[0], "value", desc.choices[0]))
    return "1" if desc is not None and desc.annotation in (int, float) else "x"


def _with(param: Any, value: str) -> list[str]:
    return [_label(param), value] if param.param_type_name == "option" else [value]


def _required_except(cmd: Any, skip: Any = None) -> list[str]:
    args: list[str] = []
    for p in _params(cmd):
        if p.required and p is not skip:
            args += _with(p, _dummy(p))
    return args


def _typed_for_numbers(param: Any) -> bool:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "is_flag", False):
        return False
    base = desc.annotation
    if desc.is_list:
        base = base.__args__[0]
    return base in (int, float) or desc.is_choice


def mistakes(path: tuple[str, ...], cmd: Any) -> Iterator[tuple[str, list[str], int]]:
    """(what, argv, expected exit code) for the typical mistakes on one command."""
    p = list(path)
    yield "help", p + ["--help"], 0
    yield "-h", p + ["-h"], 0
    yield "unknown option", p + ["--khong-co"], 2
    if _is_group(cmd):
        yield "unknown subcommand", p + ["khong-co-lenh"], 2
        if cmd.no_args_is_help:
            yield "no subcommand", p, -2        # the help, exit 2, no "Lỗi:" line
        return
    for param in _params(cmd):
        if param.required:
            yield f"missing {_label(param)}", p + _required_except(cmd, param), 2
        if param.param_type_name != "option":
            continue
        if getattr(param, "is_flag", False):
            yield f"value given to switch {_label(param)}", p + _required_except(cmd) + [f"{_label(param)}=sai"], 2
            continue
        if _typed_for_numbers(param):
            yield f"bad value for {_label(param)}", p + _required_except(cmd, param) + [_label(param), "sai"], 2
        yield f"no value after {_label(param)}", p + _required_except(cmd, param) + [_label(param)], 2
    if not any(a.param_type_name == "argument" and a.nargs == -1 for a in _params(cmd)):
        yield "extra arguments", p + _required_except(cmd) + ["thừa1", "thừa2", "thừa3"], 2


CASES = [(" ".join(path) or "dondoc", what, argv, code)
         for path, cmd in COMMANDS for what, argv, code in mistakes(path, cmd)]


def run(argv: list[str]):
    return CliRunner().invoke(app, argv)


@pytest.mark.parametrize("command", sorted({c[0] for c in CASES}))
def test_help_and_mistakes_are_vietnamese(env: Path, command: str) -> None:
    problems = []
    for _, what, argv, code in (c for c in CASES if c[0] == command):
        res = run(argv)
        text = res.output
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            problems.append(f"{what}: {argv}: exception {res.exception!r}")
            continue
        if res.exit_code != abs(code):
            problems.append(f"{what}: {argv}: exit {res.exit_code}, expected {abs(code)}\n{text}")
        if abs(code) != code and text.count("Cách dùng:") != 1:
            problems.append(f"{what}: {argv}: the help should be printed once\n{text}")
        if code > 0 and "Lỗi:" not in text:
            problems.append(f"{what}: {argv}: no “Lỗi:” line\n{text}")
        if not VIETNAMESE.search(text):
            problems.append(f"{what}: {argv}: no Vietnamese at all\n{text}")
        found = english_words(text)
        if found:
            problems.append(f"{what}: {argv}: English {found}\n{text}")
    assert not problems, "\n\n".join(problems)


def test_every_command_option_and_argument_has_vietnamese_help() -> None:
    """Help rows and command lists without text (or with English text) leave a secretary guessing."""
    missing = []
    for path, cmd in COMMANDS:
        name = " ".join(path) or "dondoc"
        if not (cmd.help and VIETNAMESE.search(cmd.help)):
            missing.append(f"{name}: command help")
        for p in _params(cmd):
            if not (getattr(p, "help", None) and VIETNAMESE.search(p.help)):
                missing.append(f"{name} {_label(p)}: help")
            elif english_words(p.help):
                missing.append(f"{name} {_label(p)}: English {english_words(p.help)}")
            if p.param_type_name == "argument" and not (p.metavar and p.metavar == p.metavar.upper()):
                missing.append(f"{name} {p.name}: an argument needs a Vietnamese metavar (else its Python name shows)")
    assert not missing, "\n".join(missing)


def test_help_shows_vietnamese_type_labels(env: Path) -> None:
    """Typer's <str>, <int>, <float range> [0<=x<=1], <bool> become names a secretary reads."""
    res = run(["kpi", "report", "--help"])
    assert res.exit_code == 0
    line = next(l for l in res.output.splitlines() if "--tolerance" in l)
    assert "[0–1]" in line and "<float" not in line
    assert "--unit" in res.output and "MÃ_ĐƠN_VỊ" in res.output
    json_line = next(l for l in res.output.splitlines() if "--json" in l)
    assert "<bool>" not in json_line and "CÓ/KHÔNG" not in json_line     # a switch takes no value
    assert "Tùy chọn" in res.output and "Cách dùng: dondoc kpi report [TÙY CHỌN]" in res.output


def test_typical_mistake_messages_read_right(env: Path) -> None:
    """The exact sentences for the commonest mistakes (what the scan cannot judge: that they are right)."""
    cases = [
        (["status", "thừa"], "thừa đối số: thừa"),
        (["calendar", "days-off"], "thiếu tùy chọn bắt buộc --year"),
        (["calendar", "days-off", "--year", "hai"], "giá trị không hợp lệ cho --year: không phải số nguyên hợp lệ"),
        (["kpi", "report", "--tolerance", "x"], "giá trị không hợp lệ cho --tolerance: không phải số hợp lệ"),
        (["kpi", "report", "--tolerance", "2"], "giá trị không hợp lệ cho --tolerance: phải nhỏ hơn hoặc bằng 1"),
        (["import", "submissions"], "thiếu đối số bắt buộc TỆP_CSV"),
        (["calendar", "khong-co"], "không có lệnh “khong-co”"),
        (["status", "--unit"], "tùy chọn --unit cần một giá trị"),
        (["status", "--json=1"], "tùy chọn --json không nhận giá trị"),
    ]
    for argv, message in cases:
        res = run(argv)
        assert res.exit_code == 2 and f"Lỗi: {message}" in res.output, (argv, res.output)


# ─── holiday names ──────────────────────────────────────────────────────────────────────────────
def _english_holiday_words(year: int) -> set[str]:
    names = holidays.country_holidays("VN", language="en_US", years=year).values()
    return {w for n in names for w in re.findall(r"[A-Za-z']{3,}", n)}


def test_days_off_has_no_english_and_dates_are_dd_mm_yyyy(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`calendar days-off --year 2026` named "Lunar New Year's Eve", "Day off (substituted from 08/22/2026)"."""
    monkeypatch.setenv("LANG", "en_US.UTF-8")     # the server's locale must not decide the language
    monkeypatch.setenv("LANGUAGE", "en_US")
    res = run(["calendar", "days-off", "--year", "2026"])
    assert res.exit_code == 0, res.output
    english = _english_holiday_words(2026)
    assert {"Lunar", "substituted", "National"} <= english           # the oracle is not empty
    found = sorted(w for w in english if re.search(rf"(?<![\w']){re.escape(w)}(?![\w'])", res.output))
    assert not found, found
    assert not english_words(res.output), english_words(res.output)
    rows = {line.split("│")[1].strip(): line for line in res.output.splitlines() if line.count("│") >= 3}
    assert "Giao thừa Tết Nguyên Đán" in rows["Thứ Hai, 16/02/2026"]
    assert "Quốc khánh" in rows["Thứ Tư, 02/09/2026"]
    assert "22/08/2026" in rows["Thứ Hai, 31/08/2026"]            # the swapped day, written dd/mm/yyyy
    for d, m, y in re.findall(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", res.output):
        date(int(y), int(m), int(d))                                 # every date reads as day/month/year


def test_days_off_json_reasons_are_vietnamese(env: Path) -> None:
    import json

    res = run(["calendar", "days-off", "--year", "2026", "--json"])
    assert res.exit_code == 0, res.output
    reasons = " ".join(str(r.get("reason", "")) for r in json.loads(res.output))
    found = sorted(w for w in _english_holiday_words(2026) if re.search(rf"(?<![\w']){re.escape(w)}(?![\w'])", reasons))
    assert not found and "Tết Nguyên Đán" in reasons, found
