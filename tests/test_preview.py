"""`dondoc preview`: "what will my edit change?" answered exactly, before the files go into rules/.

Issue 11 item 6. A staged copy of rules/ is compared with the live rules on throw-away copies of a
state database; the secretary reads a summary (deadlines added, moved, removed; notices added and
removed per day and per recipient), details on request, JSON for scripts. `rules check` warns
(exit 0) about a unit that reports to itself and a reminder policy that never reminds.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from engine.app import services
from engine.app.cli import app
from engine.app.config import Settings
from engine.app.preview import DEFAULT_DAYS, PreviewResult, StagedRulesInvalid, default_window
from engine.instances import generate_instances
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, RULES

NEW_ID = "skhcn-quy-thu"
NEW_TITLE = "Báo cáo quý về ứng dụng khoa học, công nghệ gửi Sở Khoa học và Công nghệ"
QUARTERLY = f"""obligations:
  - id: {NEW_ID}
    title: "{NEW_TITLE}"
    basis: {{document: "Văn bản thử của Sở Khoa học và Công nghệ", section: "2"}}
    kind: dinh_ky
    reporters: [so-ban-nganh]
    recipient: so-khcn
    recurrence: {{freq: quarterly}}
    due: {{rule: day_of_last_month, day: 18, roll: forward}}
    reminder_policy: hang-quy
"""
# Day 18 of each quarter's last month in 2026: all working days (Wed, Thu, Fri, Fri).
QUARTER_DUES = {"2026-Q1": date(2026, 3, 18), "2026-Q2": date(2026, 6, 18), "2026-Q3": date(2026, 9, 18),
                "2026-Q4": date(2026, 12, 18)}


def departments() -> set[str]:
    """The members of the group so-ban-nganh, read from units.yaml (not through the loader)."""
    groups = {g["id"]: g["members"] for g in yaml.safe_load((RULES / "units.yaml").read_text(encoding="utf-8"))["groups"]}

    def expand(ref: str) -> set[str]:
        return set().union(*(expand(m) for m in groups[ref])) if ref in groups else {ref}

    return expand("so-ban-nganh")


def stage(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(RULES, target)
    return target


def settings_for(tmp_path: Path) -> Settings:
    s = services.with_database(Settings(), f"sqlite:///{tmp_path / 'state.db'}")
    return services.with_paths(s, RULES, CALENDAR)


def in_use_since(s: Settings, day: date) -> None:
    """A state the daemon has kept since `day` (synced with the live rules, as on go-live)."""
    from datetime import datetime

    from engine.clock import TZ

    services.sync(s, services.load_rules(s), datetime.combine(day, datetime.min.time().replace(hour=7), tzinfo=TZ))


@pytest.fixture
def env(seed_env: Path) -> Path:
    """The CLI on a fresh state with the seed rules live."""
    return seed_env


def run(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output and (res.exception is None or isinstance(res.exception, SystemExit)), \
        repr(res.exception)
    return res


# ─── the quarterly report added for every department ────────────────────────────────────────────
@pytest.fixture(scope="module")
def quarterly(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    tmp = tmp_path_factory.mktemp("quarterly")
    staged = stage(tmp, "rules-thu")
    (staged / "obligations-900-skhcn-quy.yaml").write_text(QUARTERLY, encoding="utf-8")
    s = settings_for(tmp)
    in_use_since(s, date(2026, 1, 5))
    start, end = default_window(date(2026, 11, 20), None, None)
    return services.preview(s, staged, start, end)


def test_default_window_is_five_weeks_from_today() -> None:
    assert default_window(date(2026, 11, 20), None, None) == (date(2026, 11, 20), date(2026, 12, 25))
    assert DEFAULT_DAYS == 35


def test_new_quarterly_report_adds_exactly_its_deadlines(quarterly: PreviewResult) -> None:
    """Every department (Sở KH&CN included, which is why rules check warns) gets the new report for
    each quarter due since the tracking start (past quarters are chased at once) up to the window's end."""
    got = {(d.obligation, d.unit, d.period, d.due) for d in quarterly.deadlines_added}
    want = {(NEW_ID, u, p, due) for u in departments() for p, due in QUARTER_DUES.items()}
    assert len(departments()) == 15
    assert got == want
    assert quarterly.deadlines_moved == [] and quarterly.deadlines_removed == []
    assert all(d.obligation_title == NEW_TITLE and d.recipient == "so-khcn" for d in quarterly.deadlines_added)
    assert {d.period_label for d in quarterly.deadlines_added} == {"Quý I/2026", "Quý II/2026", "Quý III/2026",
                                                                  "Quý IV/2026"}


def test_new_quarterly_report_adds_only_its_own_notices(quarterly: PreviewResult) -> None:
    """No other notice appears or disappears: every live notice is still there, every new one is
    about a new deadline, and the Q4 ladder (hang-quy: 5 and 2 working days before, due day, late)
    reaches each department on the right days."""
    assert quarterly.notices_removed == []
    assert quarterly.notices_added, "the new report must produce notices"
    new_items = {(d.unit, d.period) for d in quarterly.deadlines_added}
    assert all(n.obligation == NEW_ID and (n.unit, n.period) in new_items for n in quarterly.notices_added)
    assert quarterly.staged_notices == quarterly.live_notices + len(quarterly.notices_added)
    to_unit = {(n.day, n.unit, n.kind) for n in quarterly.notices_added if n.period == "2026-Q4" and n.recipient == n.unit}
    for unit in departments():
        for day, kind in ((date(2026, 12, 11), "reminder"), (date(2026, 12, 16), "reminder"),
                          (date(2026, 12, 18), "due_today"), (date(2026, 12, 21), "overdue")):
            assert (day, unit, kind) in to_unit, (day, unit, kind)
    by_day = {c.key: (c.added, c.removed) for c in quarterly.notices_by_day()}
    assert sum(a for a, _ in by_day.values()) == len(quarterly.notices_added)
    assert all(r == 0 for _, r in by_day.values())
    assert {c.key for c in quarterly.notices_by_recipient()} >= departments()


def test_self_report_warning_travels_with_the_preview(quarterly: PreviewResult) -> None:
    (w,) = quarterly.warnings
    assert w.file.endswith("obligations-900-skhcn-quy.yaml") and w.line == 6
    assert "Sở Khoa học và Công nghệ" in w.message and "chính mình" in w.message


def test_result_json_is_stable(quarterly: PreviewResult) -> None:
    data = quarterly.as_dict()
    assert list(data) == ["from", "to", "live_rules", "staged_rules", "unit", "obligation", "unchanged", "summary",
                          "deadlines", "notices", "warnings"]
    assert list(data["summary"]) == ["deadlines_added", "deadlines_moved", "deadlines_removed", "notices_added",
                                     "notices_removed", "live_notices", "staged_notices"]
    assert data["summary"]["deadlines_added"] == 60 and data["summary"]["notices_removed"] == 0
    assert list(data["deadlines"]) == ["by_obligation", "added", "moved", "removed"]
    assert list(data["notices"]) == ["by_day", "by_recipient", "added", "removed"]
    assert [g["period_label"] for g in data["deadlines"]["by_obligation"]] == ["Quý I/2026", "Quý II/2026",
                                                                               "Quý III/2026", "Quý IV/2026"]
    assert all(g["units"] == 15 and g["change"] == "added" for g in data["deadlines"]["by_obligation"])
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


# ─── a moved due day ────────────────────────────────────────────────────────────────────────────
def test_moved_due_day_shows_moved_deadlines(tmp_path: Path) -> None:
    """The monthly report due on the 18th moved to the 22nd: January 2027's deadlines move from
    Monday 18/01 to Friday 22/01 for every reporting unit, the reports compiled from them follow,
    nothing is added or removed."""
    staged = stage(tmp_path, "rules-thu")
    f = staged / "obligations-001-khhd-57.yaml"
    text = f.read_text(encoding="utf-8")
    block = text.index("  - id: khhd57-thang\n")
    line = "due: {rule: day_of_last_month, day: 18, roll: forward}"
    at = text.index(line, block)
    f.write_text(text[:at] + line.replace("day: 18", "day: 22") + text[at + len(line):], encoding="utf-8")

    live = load_pack(RULES, CALENDAR)
    owed = {i.unit for i in generate_instances(live, date(2027, 1, 1), date(2027, 1, 31)) if i.obligation == "khhd57-thang"}
    r = services.preview(settings_for(tmp_path), staged, date(2027, 1, 11), date(2027, 1, 29))
    assert r.deadlines_added == [] and r.deadlines_removed == []
    monthly = [m for m in r.deadlines_moved if m.after.obligation == "khhd57-thang"]
    assert {m.after.unit for m in monthly} == owed and len(owed) > 20
    assert all((m.before.due, m.after.due) == (date(2027, 1, 18), date(2027, 1, 22)) for m in monthly)
    assert all(m.after.period_label == "Tháng 01/2027" for m in monthly)
    compiled = {m.after.obligation for m in r.deadlines_moved} - {"khhd57-thang"}
    assert compiled and all(live.obligations[o].due.rule == "working_days_after_obligation" for o in compiled)
    assert all(m.after.due > m.before.due for m in r.deadlines_moved)
    groups = [g for g in r.deadline_groups() if g.obligation == "khhd57-thang"]
    assert [(g.change, g.count, g.old_due, g.new_due) for g in groups] == [("moved", len(owed), date(2027, 1, 18),
                                                                           date(2027, 1, 22))]
    # The reminders move with the due day: removed on the old days, added on the new ones.
    assert any(n.day == date(2027, 1, 18) and n.kind == "due_today" and n.obligation == "khhd57-thang"
               for n in r.notices_removed)
    assert any(n.day == date(2027, 1, 22) and n.kind == "due_today" and n.obligation == "khhd57-thang"
               for n in r.notices_added)


def test_identical_copy_changes_nothing(tmp_path: Path) -> None:
    r = services.preview(settings_for(tmp_path), stage(tmp_path, "rules-thu"), date(2026, 12, 14), date(2026, 12, 20))
    assert r.unchanged and r.live_notices == r.staged_notices > 0


# ─── the command line ───────────────────────────────────────────────────────────────────────────
def test_cli_prints_summary_first_and_details_on_request(env: Path) -> None:
    assert run("sync", "--now", "2026-01-05").exit_code == 0
    staged = stage(env, "rules-thu")
    (staged / "obligations-900-skhcn-quy.yaml").write_text(QUARTERLY, encoding="utf-8")
    args = ["preview", "--rules", str(staged), "--from", "2026-12-14", "--to", "2026-12-19", "--now", "2026-12-14"]
    res = run(*args)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "HẠN NỘP: thêm 60, dời 0, bỏ 0" in out
    assert f"Thêm: {NEW_TITLE} – Quý IV/2026: 15 đơn vị, hạn 18/12/2026" in out
    assert f"Thêm: {NEW_TITLE} – Quý I/2026: 15 đơn vị, hạn 18/03/2026 (đã qua" in out
    assert "THÔNG BÁO: thêm" in out and "bớt 0" in out and "Theo ngày" in out and "Theo nơi nhận" in out
    assert "chính mình" in out                                   # the rules check warning
    assert out.index("HẠN NỘP") < out.index("THÔNG BÁO") < out.index("Theo nơi nhận")
    assert "Hạn nộp thay đổi" not in out and len(out.splitlines()) < 80
    detailed = run(*args, "--details").output
    assert "Hạn nộp thay đổi" in detailed and "Thông báo thêm" in detailed and "Thông báo bớt" not in detailed
    assert detailed.index("THÔNG BÁO") < detailed.index("Hạn nộp thay đổi")


def test_cli_json_is_parseable_and_stable(env: Path) -> None:
    assert run("sync", "--now", "2026-01-05").exit_code == 0
    staged = stage(env, "rules-thu")
    (staged / "obligations-900-skhcn-quy.yaml").write_text(QUARTERLY, encoding="utf-8")
    args = ["preview", "--rules", str(staged), "--from", "2026-12-16", "--to", "2026-12-18", "--json",
            "--unit", "so-y-te", "--now", "2026-12-16"]
    first, second = run(*args), run(*args)
    assert first.exit_code == 0 and first.output == second.output
    data = json.loads(first.output)
    assert data["unit"] == "so-y-te" and data["from"] == "2026-12-16" and data["to"] == "2026-12-18"
    assert {(d["unit"], d["period"]) for d in data["deadlines"]["added"]} == {("so-y-te", p) for p in QUARTER_DUES}
    added = data["notices"]["added"]
    assert added and all("so-y-te" in (n["unit"], n["recipient"]) for n in added)
    q4 = [n for n in added if n["period"] == "2026-Q4"]
    assert [(n["day"], n["kind"], n["recipient_name"]) for n in q4] == [("2026-12-16", "reminder", "Sở Y tế"),
                                                                        ("2026-12-18", "due_today", "Sở Y tế")]
    assert data["warnings"][0]["line"] == 6


def test_cli_preview_does_not_create_the_state(env: Path) -> None:
    res = run("preview", "--rules", str(RULES), "--from", "2026-12-14", "--to", "2026-12-14", "--now", "2026-12-14")
    assert res.exit_code == 0 and "Không có thay đổi" in res.output
    assert not (env / "state.db").exists()                       # the real state is only read, never created


def test_cli_invalid_staged_rules_give_errors_and_exit_1(env: Path) -> None:
    staged = stage(env, "rules-thu")
    (staged / "obligations-900-skhcn-quy.yaml").write_text(QUARTERLY.replace("recipient: so-khcn", "recipient: so-khcnn"),
                                                            encoding="utf-8")
    res = run("preview", "--rules", str(staged), "--now", "2026-11-20")
    assert res.exit_code == 1
    assert "obligations-900-skhcn-quy.yaml:7" in res.output and "so-khcnn" in res.output
    assert "không hợp lệ" in res.output and "HẠN NỘP" not in res.output
    data = json.loads(run("preview", "--rules", str(staged), "--json", "--now", "2026-11-20").stdout)
    assert data["valid"] is False and data["errors"][0]["line"] == 7


def test_service_refuses_invalid_staged_rules(tmp_path: Path) -> None:
    with pytest.raises(StagedRulesInvalid) as exc:
        services.preview(settings_for(tmp_path), tmp_path / "khong-co", date(2026, 11, 20), date(2026, 11, 21))
    assert exc.value.errors and exc.value.exit_code == 1


def test_cli_unknown_unit_is_named(env: Path) -> None:
    res = run("preview", "--rules", str(RULES), "--unit", "so-khong-co", "--now", "2026-11-20")
    assert res.exit_code == 2 and "“so-khong-co”" in res.output


# ─── rules check warnings ───────────────────────────────────────────────────────────────────────
SILENT = """reminder_policies:
  - id: im-lang
    before_due_working_days: []
    on_due_day: false

obligations:
  - id: zz-im-lang
    title: "Báo cáo không được nhắc"
    basis: {document: "Văn bản thử", section: "1"}
    kind: dinh_ky
    reporters: [so-y-te]
    recipient: vp-tinh-uy
    recurrence: {freq: yearly}
    due: {rule: day_of_last_month, day: 18, roll: forward}
    reminder_policy: im-lang
"""


def test_rules_check_warns_but_passes(env: Path) -> None:
    staged = stage(env, "rules-thu")
    (staged / "obligations-900-skhcn-quy.yaml").write_text(QUARTERLY, encoding="utf-8")
    (staged / "obligations-901-im-lang.yaml").write_text(SILENT, encoding="utf-8")
    res = run("rules", "check", str(staged), "--calendar", str(CALENDAR))
    assert res.exit_code == 0, res.output
    assert "Bộ quy tắc hợp lệ" in res.output and "Cảnh báo: 2" in res.output
    assert "obligations-900-skhcn-quy.yaml:6 [obligations[0].reporters[0]]" in res.output
    assert "obligations-901-im-lang.yaml:15 [obligations[0].reminder_policy]" in res.output
    assert "chỉ được báo khi đã quá hạn" in res.output
    data = json.loads(run("rules", "check", str(staged), "--calendar", str(CALENDAR), "--json").output)
    assert data["valid"] is True
    assert sorted((Path(w["file"]).name, w["line"]) for w in data["warnings"]) == [
        ("obligations-900-skhcn-quy.yaml", 6), ("obligations-901-im-lang.yaml", 15)]


def test_seed_pack_has_no_warnings(env: Path) -> None:
    data = json.loads(run("rules", "check", str(RULES), "--calendar", str(CALENDAR), "--json").output)
    assert data["valid"] is True and data["warnings"] == []


def test_successor_merged_into_recipient_warns(pack_copy: Path) -> None:
    """A unit merged into the recipient (Sở TT&TT into Sở KH&CN) would make it report to itself."""
    units = yaml.safe_load((pack_copy / "units.yaml").read_text(encoding="utf-8"))["units"]
    merged = next(u["id"] for u in units if u.get("successor") == "so-khcn")
    (pack_copy / "obligations-900-x.yaml").write_text(
        QUARTERLY.replace("reporters: [so-ban-nganh]", f"reporters: [so-y-te, {merged}]"), encoding="utf-8")
    pack = load_pack(pack_copy, CALENDAR)
    (w,) = pack.warnings
    assert w.field == "obligations[0].reporters[1]" and "kế thừa" in w.message


def test_real_state_is_not_written(tmp_path: Path) -> None:
    """The preview reads the state the daemon keeps and writes only its own copies."""
    import sqlite3
    from datetime import datetime

    from engine.clock import TZ

    s = settings_for(tmp_path)
    pack = services.load_rules(s)
    services.evaluate(s.database.url, pack, datetime(2026, 12, 14, 7, 0, tzinfo=TZ), s)
    db = tmp_path / "state.db"

    def counts() -> tuple[int, ...]:
        with sqlite3.connect(db) as c:
            return tuple(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("instances", "notices", "audit_log"))

    before = counts()
    staged = stage(tmp_path, "rules-thu")
    (staged / "obligations-900-skhcn-quy.yaml").write_text(QUARTERLY, encoding="utf-8")
    r = services.preview(s, staged, date(2026, 12, 15), date(2026, 12, 17))
    assert r.notices_added and before == counts() and before[1] > 0
