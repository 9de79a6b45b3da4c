"""Hand-checked working days of 2025–2026 (Bộ luật Lao động Điều 112 + Bộ Nội vụ swap days)."""

from datetime import date

import pytest

from engine.workcalendar import WorkingCalendar, load_overrides
from tests.conftest import CALENDAR


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar(load_overrides(CALENDAR))


@pytest.mark.parametrize("day,working", [
    # Tết Bính Ngọ 2026: Mon 16/02 – Fri 20/02 off, weekend 21–22, back on Mon 23/02.
    (date(2026, 2, 13), True), (date(2026, 2, 16), False), (date(2026, 2, 17), False),
    (date(2026, 2, 20), False), (date(2026, 2, 23), True),
    # New Year 2026: 01/01 holiday, 02/01 swapped off, made up on Saturday 10/01.
    (date(2026, 1, 1), False), (date(2026, 1, 2), False), (date(2026, 1, 10), True), (date(2026, 1, 9), True),
    # Giỗ Tổ 2026 (Sunday 26/04) observed Monday 27/04; 30/04 Thu and 01/05 Fri off.
    (date(2026, 4, 27), False), (date(2026, 4, 28), True), (date(2026, 4, 30), False), (date(2026, 5, 1), False),
    (date(2026, 5, 4), True),
    # National Day 2026: 01–02/09 off, 31/08 swapped off, made up on Saturday 22/08.
    (date(2026, 8, 31), False), (date(2026, 9, 1), False), (date(2026, 9, 2), False), (date(2026, 9, 3), True),
    (date(2026, 8, 22), True), (date(2026, 8, 29), False),
    # Ngày Văn hóa Việt Nam 24/11 (new day off, known to the pinned holidays 0.109).
    (date(2026, 11, 24), False), (date(2026, 11, 25), True),
    # 2025: 30/04 Wed, 01/05 Thu, 02/05 Fri swapped off, made up Saturday 26/04.
    (date(2025, 4, 30), False), (date(2025, 5, 2), False), (date(2025, 4, 26), True),
    (date(2025, 9, 1), False), (date(2025, 9, 2), False),
    # Weekends stay weekends.
    (date(2025, 11, 30), False), (date(2026, 11, 28), False),
])
def test_working_days(cal: WorkingCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_roll_rules(cal: WorkingCalendar) -> None:
    # Điều 148 BLDS: a limit ending on a rest day ends on the next working day.
    assert cal.roll(date(2025, 11, 30), "forward") == date(2025, 12, 1)
    assert cal.roll(date(2026, 2, 18), "forward") == date(2026, 2, 23)
    assert cal.roll(date(2026, 2, 18), "backward") == date(2026, 2, 13)
    assert cal.roll(date(2026, 4, 30), "forward") == date(2026, 5, 4)
    assert cal.roll(date(2026, 2, 18), "keep") == date(2026, 2, 18)
    assert cal.roll(date(2026, 1, 10), "forward") == date(2026, 1, 10)  # a make-up Saturday is a working day


def test_working_day_arithmetic(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 23)
    assert cal.add_working_days(date(2026, 2, 23), -1) == date(2026, 2, 13)
    assert cal.add_working_days(date(2025, 12, 31), 2) == date(2026, 1, 6)  # 1–2/01 off, 3–4 weekend
    assert cal.add_working_days(date(2026, 1, 9), 1) == date(2026, 1, 10)
    assert cal.add_working_days(date(2026, 8, 28), 1) == date(2026, 9, 3)
    assert cal.working_days_between(date(2026, 2, 13), date(2026, 2, 23)) == 1
    assert cal.working_days_between(date(2026, 2, 23), date(2026, 2, 13)) == -1
    assert cal.working_days_between(date(2026, 3, 2), date(2026, 3, 9)) == 5


def test_every_swapped_day_off_has_its_make_up_day(cal: WorkingCalendar) -> None:
    """A swap moves a working day: the day off and its make-up Saturday must both be known."""
    import re

    import holidays

    for year in (2025, 2026, 2027):
        for day, name in holidays.country_holidays("VN", years=year).items():
            m = re.search(r"substituted from (\d\d)/(\d\d)/(\d{4})", name)
            if m:
                make_up = date(int(m[3]), int(m[1]), int(m[2]))
                assert not cal.is_working_day(day)
                assert cal.is_working_day(make_up), f"{make_up} should be a make-up working day for {day}"
    for year, block in cal.overrides.years.items():
        for d in block.days_off:
            assert not cal.is_working_day(d.date)
        for d in block.working_days:
            assert d.date.weekday() >= 5 and cal.is_working_day(d.date)


def test_overrides_reject_bad_data(tmp_path) -> None:
    from engine.errors import RulePackInvalid

    (tmp_path / "VN.yaml").write_text(
        "country: VN\nyears:\n  2026:\n    days_off:\n      - date: 2025-01-02\n        reason: sai năm\n",
        encoding="utf-8")
    with pytest.raises(RulePackInvalid) as exc:
        load_overrides(tmp_path)
    assert "không thuộc năm 2026" in str(exc.value)


def test_calendar_years_outside_the_supported_range(tmp_path) -> None:
    """A calendar file for year 9999 (or 0) is a typo; `calendar days-off --year 0` is a message."""
    from typer.testing import CliRunner

    from engine.app.cli import app
    from engine.errors import RulePackInvalid

    (tmp_path / "VN.yaml").write_text(
        "country: VN\nyears:\n  9999:\n    days_off:\n      - date: 9999-01-02\n        reason: gõ nhầm\n",
        encoding="utf-8")
    with pytest.raises(RulePackInvalid) as exc:
        load_overrides(tmp_path)
    assert "năm 9999 ngoài phạm vi hỗ trợ (2000–2100)" in str(exc.value) and "VN.yaml" in str(exc.value)
    for year in ("0", "9999", "-1"):
        r = CliRunner().invoke(app, ["calendar", "days-off", "--year", year, "--calendar", str(CALENDAR)])
        assert r.exit_code != 0 and isinstance(r.exception, (SystemExit, type(None))), r.output
        assert "2000–2100" in r.output


# ─── holiday names (issue 11, item 3) ───────────────────────────────────────────────────────────
@pytest.mark.parametrize("locale", ["C.UTF-8", "en_US.UTF-8", "vi_VN.UTF-8"])
def test_holiday_names_are_vietnamese_whatever_the_locale(monkeypatch: pytest.MonkeyPatch, locale: str) -> None:
    """The package picks its language from LANG/LANGUAGE: on a server in C or en_US it said
    "Lunar New Year's Eve" and "Day off (substituted from 08/22/2026)" (month first)."""
    monkeypatch.setenv("LANG", locale)
    monkeypatch.setenv("LANGUAGE", locale.split(".")[0])
    monkeypatch.delenv("LC_ALL", raising=False)
    c = WorkingCalendar(load_overrides(CALENDAR))
    assert c.holiday_name(date(2026, 2, 16)) == "Giao thừa Tết Nguyên Đán"
    assert c.holiday_name(date(2026, 2, 17)) == "Tết Nguyên Đán"
    assert c.holiday_name(date(2026, 4, 27)) == "Ngày Giỗ Tổ Hùng Vương (nghỉ bù)"
    assert c.holiday_name(date(2026, 9, 2)) == "Quốc khánh"
    assert c.holiday_name(date(2026, 8, 31)) == "Ngày nghỉ (thay cho ngày 22/08/2026)"   # dd/mm/yyyy
    assert c.holiday_name(date(2025, 5, 2)) == "Ngày nghỉ (thay cho ngày 26/04/2025)"


def test_every_swapped_day_names_its_make_up_saturday_day_first(cal: WorkingCalendar) -> None:
    """Each "thay cho ngày dd/mm/yyyy" names a Saturday that is worked: the date reads day first."""
    import re

    seen = 0
    for year in range(2025, 2031):
        d = date(year, 1, 1)
        while d.year == year:
            m = re.search(r"thay cho ngày (\d\d)/(\d\d)/(\d{4})", cal.holiday_name(d) or "")
            if m:
                make_up = date(int(m[3]), int(m[2]), int(m[1]))
                assert make_up.weekday() >= 5 and not cal.is_working_day(d), (d, make_up)
                assert cal.is_working_day(make_up), f"{make_up:%d/%m/%Y} should be the make-up day for {d:%d/%m/%Y}"
                seen += 1
            d = date.fromordinal(d.toordinal() + 1)
    assert seen >= 2


def test_working_days_between_counts_like_walking_day_by_day() -> None:
    """The per-year running counts give the same answer as walking the days one by one, across
    year ends, holidays and make-up days, both directions (3,000 random spans, seeded)."""
    import random
    from datetime import timedelta

    cal = WorkingCalendar(load_overrides(CALENDAR))

    def walk(a: date, b: date) -> int:
        sign, (lo, hi) = (1, (a, b)) if b >= a else (-1, (b, a))
        n, d = 0, lo
        while d < hi:
            d += timedelta(days=1)
            n += cal.is_working_day(d)
        return sign * n

    rng = random.Random(20261205)
    for _ in range(3000):
        a = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 1500))
        b = a + timedelta(days=rng.randrange(-800, 800))
        assert cal.working_days_between(a, b) == walk(a, b), (a, b)
