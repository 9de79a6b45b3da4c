"""The parsed rule pack cached on disk (engine/app/packcache.py): what a command gets from the cache
is what parsing the files gives, an edit is seen at once, and a cache file that is damaged, from
other code, or not safely ours is never read."""

from __future__ import annotations

import ast
import os
import pickle
from datetime import date, timedelta
from pathlib import Path

import pytest

from engine.app import packcache
from engine.app.packcache import LazyHolidays, load_pack_cached
from engine.errors import RulePackInvalid
from engine.instances import generate_instances
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each real parse done through the cache (the rule folder it parsed)."""
    seen: list[Path] = []

    def counting(directory: Path, calendar_dir: Path | None = None):
        seen.append(Path(directory))
        return load_pack(directory, calendar_dir)

    monkeypatch.setattr(packcache, "load_pack", counting)
    return seen


def cached_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.pickle"))


def test_the_second_load_comes_from_the_cache_and_equals_a_fresh_parse(pack_copy: Path, cache: Path,
                                                                       parses: list[Path]) -> None:
    first = load_pack_cached(pack_copy, CALENDAR, folder=cache)
    again = load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(parses) == 1 and len(cached_files(cache)) == 1
    assert isinstance(again.calendar._holidays, LazyHolidays)      # it did come from the file
    fresh = load_pack(pack_copy, CALENDAR)
    for name in ("directory", "info", "units", "groups", "obligations", "policies", "sources", "files", "version",
                 "warnings"):
        assert getattr(again, name) == getattr(fresh, name), name
    assert again.warnings == first.warnings
    day = date(2024, 1, 1)
    while day < date(2029, 1, 1):          # the years the checks computed, and the years around them
        assert again.calendar.is_working_day(day) == fresh.calendar.is_working_day(day), day
        assert again.calendar.holiday_name(day) == fresh.calendar.holiday_name(day), day
        day += timedelta(days=1)
    assert generate_instances(again, date(2026, 1, 1), date(2026, 12, 31)) == \
        generate_instances(fresh, date(2026, 1, 1), date(2026, 12, 31))


def test_a_year_the_cached_calendar_never_computed_is_answered_like_a_fresh_one(pack_copy: Path,
                                                                               cache: Path) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    cached = load_pack_cached(pack_copy, CALENDAR, folder=cache)
    fresh = load_pack(pack_copy, CALENDAR)
    for day in (date(2031, 1, 1), date(2031, 4, 30), date(2031, 9, 2), date(2031, 9, 6)):
        assert cached.calendar.holiday_name(day) == fresh.calendar.holiday_name(day)
        assert cached.calendar.is_working_day(day) == fresh.calendar.is_working_day(day)
    assert cached.calendar.working_days_between(date(2030, 12, 20), date(2031, 2, 20)) == \
        fresh.calendar.working_days_between(date(2030, 12, 20), date(2031, 2, 20))


def test_an_edit_of_a_rule_file_is_seen_at_once(pack_copy: Path, cache: Path, parses: list[Path]) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    units = pack_copy / "units.yaml"
    text = units.read_text(encoding="utf-8")
    assert 'name: "Sở Tài chính"' in text
    units.write_text(text.replace('name: "Sở Tài chính"', 'name: "Sở Tài chính (đổi tên)"'), encoding="utf-8")
    pack = load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert pack.units["so-tai-chinh"].name == "Sở Tài chính (đổi tên)"
    assert len(parses) == 2


def test_an_edit_of_the_calendar_is_seen_at_once(pack_copy: Path, tmp_path: Path, cache: Path) -> None:
    cal = tmp_path / "calendar"
    cal.mkdir()
    (cal / "VN.yaml").write_text((CALENDAR / "VN.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = load_pack_cached(pack_copy, cal, folder=cache)
    (cal / "VN.yaml").write_text("years:\n  2026:\n    days_off:\n      - {date: 2026-06-01, reason: \"Nghỉ thử\"}\n",
                                 encoding="utf-8")
    after = load_pack_cached(pack_copy, cal, folder=cache)
    assert before.calendar.is_working_day(date(2026, 6, 1)) and not after.calendar.is_working_day(date(2026, 6, 1))
    assert after.version != before.version


def test_an_invalid_pack_is_never_cached_and_reports_the_same_errors(pack_copy: Path, cache: Path) -> None:
    units = pack_copy / "units.yaml"
    units.write_text(units.read_text(encoding="utf-8").replace("id: so-tai-chinh", "id: So Tai Chinh", 1),
                     encoding="utf-8")
    with pytest.raises(RulePackInvalid) as direct:
        load_pack(pack_copy, CALENDAR)
    for _ in range(2):
        with pytest.raises(RulePackInvalid) as through_cache:
            load_pack_cached(pack_copy, CALENDAR, folder=cache)
        assert through_cache.value.errors == direct.value.errors
    assert cached_files(cache) == []


def test_a_missing_rule_folder_is_reported_as_the_loader_does(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(RulePackInvalid) as exc:
        load_pack_cached(tmp_path / "khong-co", CALENDAR, folder=cache)
    assert "không tìm thấy thư mục quy tắc" in str(exc.value.errors[0])


@pytest.mark.parametrize("damage", [
    lambda b: b"rac",                                   # not a cache file at all
    lambda b: b[: len(b) // 2],                         # cut short
    lambda b: b[:30] + bytes(len(b) - 30),              # the key and the pickle overwritten
    lambda b: packcache.FORMAT + b"0" * 64 + b"\n" + pickle.dumps({"not": "a pack"}),
])
def test_a_damaged_cache_file_is_ignored_and_replaced(pack_copy: Path, cache: Path, parses: list[Path], damage) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    [f] = cached_files(cache)
    f.write_bytes(damage(f.read_bytes()))
    pack = load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert pack.units == load_pack(pack_copy, CALENDAR).units
    assert len(parses) == 2
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(parses) == 2                              # rewritten whole: read again next time


def test_a_pickle_written_for_another_pack_under_this_name_is_not_used(pack_copy: Path, tmp_path: Path,
                                                                       cache: Path) -> None:
    """The file name is only part of the key; the whole key inside the file must match."""
    other = tmp_path / "other"
    other.mkdir()
    for p in pack_copy.glob("*.yaml"):
        (other / p.name).write_text(p.read_text(encoding="utf-8").replace("Sở Tài chính", "Sở khác"), encoding="utf-8")
    load_pack_cached(other, CALENDAR, folder=cache)
    [theirs] = cached_files(cache)
    mine = cache / (packcache.pack_key(pack_copy, CALENDAR)[:40] + ".pickle")
    os.replace(theirs, mine)
    assert load_pack_cached(pack_copy, CALENDAR, folder=cache).units["so-tai-chinh"].name == "Sở Tài chính"


def test_a_cache_from_other_code_is_not_read(pack_copy: Path, cache: Path, parses: list[Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    real = packcache._code_fingerprint
    monkeypatch.setattr(packcache, "_code_fingerprint", lambda: real() + b"another release")
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(parses) == 2 and len(cached_files(cache)) == 2


@pytest.mark.parametrize("module", packcache.PARSER_MODULES)
def test_the_key_follows_the_source_of_every_module_that_parses(module: str, pack_copy: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = packcache.pack_key(pack_copy, CALENDAR)
    core = tmp_path / "engine"
    core.mkdir()
    for p in packcache._CORE.glob("*.py"):
        (core / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(packcache, "_CORE", core)
    assert packcache.pack_key(pack_copy, CALENDAR) == before
    (core / f"{module}.py").write_bytes((core / f"{module}.py").read_bytes() + b"\n# changed\n")
    assert packcache.pack_key(pack_copy, CALENDAR) != before


def _engine_imports(module: str) -> set[str]:
    """Core modules `module` imports (anywhere in it, as tests/test_architecture.py reads them)."""
    tree = ast.parse((packcache._CORE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "engine" and len(parts) > 1 and (packcache._CORE / f"{parts[1]}.py").is_file():
                found.add(parts[1])
    return found


def test_the_parser_modules_are_exactly_what_the_loader_imports() -> None:
    """A new import in the loader (or below it) must join the key, or a cache would outlive its code."""
    seen: set[str] = set()
    todo = ["rules_loader"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_engine_imports(m))
    assert seen == set(packcache.PARSER_MODULES)


def test_a_cache_file_others_can_write_is_not_read(pack_copy: Path, cache: Path, parses: list[Path]) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    [f] = cached_files(cache)
    f.chmod(0o666)
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(parses) == 2
    [f] = cached_files(cache)
    assert f.stat().st_mode & 0o777 == 0o600            # replaced by a private file


def test_a_folder_others_can_write_is_neither_read_nor_written(pack_copy: Path, cache: Path,
                                                              parses: list[Path]) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    cache.chmod(0o777)
    [f] = cached_files(cache)
    mtime = f.stat().st_mtime_ns
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(parses) == 2 and f.stat().st_mtime_ns == mtime


def test_a_symlinked_cache_file_is_not_followed(pack_copy: Path, cache: Path, tmp_path: Path,
                                               parses: list[Path]) -> None:
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    [f] = cached_files(cache)
    elsewhere = tmp_path / "elsewhere.pickle"
    os.replace(f, elsewhere)
    f.symlink_to(elsewhere)
    load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(parses) == 2


def test_only_the_newest_files_are_kept(pack_copy: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packcache, "KEEP", 2)
    units = pack_copy / "units.yaml"
    text = units.read_text(encoding="utf-8")
    for i in range(4):
        units.write_text(text + f"\n# sửa lần {i}\n", encoding="utf-8")
        load_pack_cached(pack_copy, CALENDAR, folder=cache)
    assert len(cached_files(cache)) == 2


def test_without_a_usable_home_the_pack_is_parsed(pack_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packcache, "cache_dir", lambda: None)
    assert load_pack_cached(pack_copy, CALENDAR).units == load_pack(pack_copy, CALENDAR).units


def test_the_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packcache.cache_dir() == tmp_path / "xdg" / "dondoc" / "packs"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/not/allowed")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert packcache.cache_dir() == tmp_path / "home" / ".cache" / "dondoc" / "packs"
