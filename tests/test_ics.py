"""The .ics export parses back and holds exactly the unit's deadlines."""

from datetime import date, timedelta

from icalendar import Calendar
from typer.testing import CliRunner

from engine.app.cli import app
from engine.instances import generate_instances
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, MINIPACK, RULES

runner = CliRunner()


def _export(tmp_path, rules, unit, start, end):
    target = tmp_path / f"{unit}.ics"
    result = runner.invoke(app, ["--now", "2026-11-26T08:00", "calendar", "ics", "--unit", unit, "--from", start,
                                 "--to", end, "--rules", str(rules), "--calendar", str(CALENDAR), "-o", str(target)])
    assert result.exit_code == 0, result.output
    return Calendar.from_ical(target.read_bytes())


def test_ics_round_trip_matches_instances(tmp_path) -> None:
    cal = _export(tmp_path, MINIPACK, "skhcn", "2026-01-01", "2026-12-31")
    events = cal.walk("VEVENT")
    pack = load_pack(MINIPACK, CALENDAR)
    expected = generate_instances(pack, date(2026, 1, 1), date(2026, 12, 31), unit="skhcn")
    assert len(events) == len(expected) == 12 + 1     # 12 monthly reports + the yearly one
    got = {(str(e["uid"]), e.decoded("dtstart")) for e in events}
    want = {(f"{i.obligation}.{i.unit}.{i.period}@mini.dondoc", i.due) for i in expected}
    assert got == want
    feb = next(e for e in events if "2026-02" in str(e["uid"]))
    assert feb.decoded("dtstart") == date(2026, 2, 23)
    assert "Ngày 18/02/2026 là ngày nghỉ nên hạn chuyển sang 23/02/2026" in str(feb["description"])
    assert "Tháng 02/2026" in str(feb["summary"])
    (alarm,) = feb.walk("VALARM")
    assert alarm.decoded("trigger") == -timedelta(days=2, hours=16)


def test_ics_uids_are_stable_between_exports(tmp_path) -> None:
    a = _export(tmp_path, MINIPACK, "skhcn", "2026-01-01", "2026-06-30")
    (tmp_path / "skhcn.ics").unlink()
    b = _export(tmp_path, MINIPACK, "skhcn", "2026-01-01", "2026-06-30")
    assert [str(e["uid"]) for e in a.walk("VEVENT")] == [str(e["uid"]) for e in b.walk("VEVENT")]


def test_ics_for_seed_pack_holds_only_that_unit(tmp_path) -> None:
    cal = _export(tmp_path, RULES, "so-tai-chinh", "2026-01-01", "2026-12-31")
    uids = [str(e["uid"]) for e in cal.walk("VEVENT")]
    assert uids and all(".so-tai-chinh." in u for u in uids)
    pack = load_pack(RULES, CALENDAR)
    expected = generate_instances(pack, date(2026, 1, 1), date(2026, 12, 31), unit="so-tai-chinh")
    assert sorted(uids) == sorted(f"{i.obligation}.{i.unit}.{i.period}@{pack.info.id}.dondoc" for i in expected)
    annual = [e for e in cal.walk("VEVENT") if e.decoded("dtstart") == date(2026, 11, 30)]
    assert annual, "the annual report to Sở KH&CN is due 30/11/2026"
