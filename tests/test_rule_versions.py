"""Issue 13, command line and storage: editing rule files without reformatting them, drafts with a
check and a diff, applying with a version (author, reason), history with hand edits, restore, and
two secretaries who cannot overwrite each other's change unseen. Every test works on a copy of
rules/ (``pack_copy``); the repository's rules/ is only read."""

from __future__ import annotations

import difflib
import io
import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from engine.app import ruleversions as rv
from engine.app.config import load_settings
from engine.app.ruleedit import RuleDoc, RuleFolder, locate, merge3
from engine.rules_loader import load_pack
from tests.conftest import CALENDAR, RULES

SEED_FILES = sorted(p.relative_to(RULES).as_posix() for p in RULES.rglob("*.yaml"))
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=7)))
NEW_OBLIGATION = {
    "id": "skhcn-bao-cao-quy",
    "title": "Báo cáo quý gửi Sở Khoa học và Công nghệ",
    "basis": {"document": "Kế hoạch số 12/KH-UBND (thử nghiệm)", "section": "IV.2"},
    "kind": "dinh_ky",
    "reporters": ["so-ban-nganh-tru-khcn"],
    "recipient": "so-khcn",
    "recurrence": {"freq": "quarterly"},
    "due": {"rule": "day_of_last_month", "day": 20, "roll": "forward"},
    "effective_from": date(2026, 1, 1),
    "reminder_policy": "hang-quy",
    "assumptions": ["Hạn ngày 20 tháng cuối quý theo Kế hoạch; ngày nghỉ thì chuyển sang ngày làm việc tiếp theo."],
}


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def settings_for(rules: Path, tmp_path: Path):
    return load_settings(environ={"DONDOC_RULES_DIR": str(rules), "DONDOC_CALENDAR_DIR": str(CALENDAR),
                                  "DONDOC_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}"}, file=None)


# ─── the editor ─────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("name", SEED_FILES)
def test_an_untouched_seed_file_is_saved_byte_identical(name: str, pack_copy: Path) -> None:
    path = pack_copy / name
    before = path.read_bytes()
    doc = RuleDoc(path)
    assert doc.render().encode("utf-8") == before
    assert doc.save() is False and path.read_bytes() == before


def test_the_byte_identity_is_earned_not_trivial() -> None:
    """Plain ruamel.yaml rewrites units.yaml (flow lists over several lines joined) and
    obligations-001 (date anchors renamed &id001): the editor keeps an untouched file as written,
    and an edited one changes only where edited (the merge, tested below with one-line diffs)."""
    y = YAML(typ="rt")
    y.preserve_quotes, y.width = True, 4096
    y.indent(mapping=2, sequence=4, offset=2)
    for name in ("units.yaml", "obligations-001-khhd-57.yaml"):
        src = (RULES / name).read_text("utf-8")
        buf = io.StringIO()
        y.dump(y.load(src), buf)
        assert buf.getvalue() != src, name


def test_changing_one_due_day_changes_one_line(pack_copy: Path) -> None:
    path = pack_copy / "obligations-001-khhd-57.yaml"
    before = path.read_text("utf-8")
    folder = RuleFolder(pack_copy)
    folder.set_obligation_field("khhd57-quy", "due.day", 20)
    assert folder.save() == [path]
    lines = changed_lines(before, path.read_text("utf-8"))
    assert lines == ["-    due: {rule: day_of_last_month, day: 18, roll: forward}",
                     "+    due: {rule: day_of_last_month, day: 20, roll: forward}"]
    pack = load_pack(pack_copy, CALENDAR)
    assert pack.obligations["khhd57-quy"].due.day == 20
    assert pack.obligations["khhd57-thang"].due.day == 18        # the same line elsewhere is untouched


def test_the_console_edits_keep_the_pack_valid_and_readable(pack_copy: Path) -> None:
    """Add an obligation and a unit, end an obligation and a unit (with successor), change a
    reminder policy: the pack loads with each change, and each file changes only where edited."""
    before = {n: (pack_copy / n).read_text("utf-8") for n in ("obligations-001-khhd-57.yaml", "units.yaml", "pack.yaml")}
    folder = RuleFolder(pack_copy)
    folder.add_obligation(NEW_OBLIGATION, "obligations-001-khhd-57.yaml", after="khhd57-thang")
    folder.end_obligation("khhd57-thang", date(2026, 12, 31))
    folder.add_unit({"id": "so-moi", "name": "Sở Mới (thử nghiệm)", "kind": "so",
                     "contacts": ["vanthu.so-moi@example.org"], "valid_from": date(2026, 7, 1)})
    folder.end_unit("so-y-te", date(2026, 6, 30), successor="so-moi")
    folder.set_policy_field("hang-quy", "before_due_working_days", [7, 3, 1])
    assert len(folder.save()) == 3
    pack = load_pack(pack_copy, CALENDAR)
    ob = pack.obligations["skhcn-bao-cao-quy"]
    assert (ob.title, ob.recipient, ob.due.day) == (NEW_OBLIGATION["title"], "so-khcn", 20)
    assert pack.obligations["khhd57-thang"].effective_until == date(2026, 12, 31)
    assert (pack.units["so-y-te"].valid_until, pack.units["so-y-te"].successor) == (date(2026, 6, 30), "so-moi")
    assert pack.policies["hang-quy"].before_due_working_days == [7, 3, 1]
    assert changed_lines(before["pack.yaml"], (pack_copy / "pack.yaml").read_text("utf-8")) == [
        "-    before_due_working_days: [5, 2]", "+    before_due_working_days: [7, 3, 1]"]
    units = changed_lines(before["units.yaml"], (pack_copy / "units.yaml").read_text("utf-8"))
    assert units == ["+    valid_until: 2026-06-30", "+    successor: so-moi", "+", "+  - id: so-moi",
                     '+    name: "Sở Mới (thử nghiệm)"', "+    kind: so", "+    contacts: [vanthu.so-moi@example.org]",
                     "+    valid_from: 2026-07-01"]
    obl = changed_lines(before["obligations-001-khhd-57.yaml"], (pack_copy / "obligations-001-khhd-57.yaml").read_text("utf-8"))
    assert all(line.startswith("+") for line in obl)              # only additions: nothing rewritten
    assert "+    effective_until: 2026-12-31" in obl and '+    title: "Báo cáo quý gửi Sở Khoa học và Công nghệ"' in obl


def test_editing_an_anchored_value_changes_only_that_item(pack_copy: Path) -> None:
    """effective_from of khhd57-thang carries &ngay_hieu_luc_khhd57, used by the other rules of the
    file: changing it must not move the others' dates."""
    folder = RuleFolder(pack_copy)
    folder.set_obligation_field("khhd57-thang", "effective_from", date(2025, 6, 1))
    folder.save()
    pack = load_pack(pack_copy, CALENDAR)
    assert pack.obligations["khhd57-thang"].effective_from == date(2025, 6, 1)
    assert pack.obligations["khhd57-quy"].effective_from == date(2025, 5, 1)
    assert "&ngay_hieu_luc_khhd57" in (pack_copy / "obligations-001-khhd-57.yaml").read_text("utf-8")


def test_merge3_reports_overlapping_changes() -> None:
    base = ["a\n", "b\n", "c\n", "d\n", "e\n"]
    mine = ["a\n", "B\n", "c\n", "d\n", "e\n"]
    assert merge3(base, mine, ["a\n", "b\n", "c\n", "d\n", "E\n"]) == ["a\n", "B\n", "c\n", "d\n", "E\n"]
    found: list[int] = []
    merge3(base, mine, ["a\n", "X\n", "c\n", "d\n", "e\n"], conflicts=found)
    assert found == [2]


# ─── drafts, apply, history, restore ────────────────────────────────────────────────────────────
@pytest.fixture
def live(pack_copy: Path, tmp_path: Path):
    return settings_for(pack_copy, tmp_path)


def test_stage_edit_diff_apply_history_restore(live, pack_copy: Path) -> None:
    original = rv.snapshot(pack_copy)
    st = rv.stage(live, None, "Nguyễn Thị Thư", NOW)
    assert st.path.parent.name == rv.STAGING and st.path.parent.parent == pack_copy.parent   # outside rules/
    assert st.base_number == 1 and rv.snapshot(st.path) == original
    folder = RuleFolder(st.path)
    folder.set_obligation_field("khhd57-quy", "due.day", 20)
    folder.save()
    assert rv.snapshot(pack_copy) == original                         # the live folder is untouched
    text = rv.diff(st)
    assert "-    due: {rule: day_of_last_month, day: 18, roll: forward}" in text
    assert "+    due: {rule: day_of_last_month, day: 20, roll: forward}" in text
    assert rv.changed_files(text) == ["obligations-001-khhd-57.yaml"]
    assert rv.check(live, st).valid

    with pytest.raises(rv.InvalidInput, match="lý do"):
        rv.apply(live, st, "Nguyễn Thị Thư", "  ", NOW)
    v = rv.apply(live, st, "Nguyễn Thị Thư", "Theo Kế hoạch số 12/KH-UBND", NOW + timedelta(minutes=5))
    assert (v.number, v.kind, v.author, v.reason) == (2, "apply", "Nguyễn Thị Thư", "Theo Kế hoạch số 12/KH-UBND")
    assert load_pack(pack_copy, CALENDAR).obligations["khhd57-quy"].due.day == 20
    assert not st.path.exists() and rv.drafts(live) == []

    hist = rv.history(live, NOW + timedelta(minutes=6))
    assert [(h.number, h.kind, h.author) for h in hist] == [(2, "apply", "Nguyễn Thị Thư"), (1, "initial", rv.UNKNOWN_AUTHOR)]
    assert hist[0].reason == "Theo Kế hoạch số 12/KH-UBND" and (hist[0].lines_added, hist[0].lines_removed) == (1, 1)

    r = rv.restore(live, 1, "Trần Văn Bình", "Khôi phục: nhập nhầm hạn", NOW + timedelta(minutes=10))
    assert (r.number, r.kind, r.restored_from, r.author) == (3, "restore", 1, "Trần Văn Bình")
    assert rv.snapshot(pack_copy) == original
    assert [h.number for h in rv.history(live, NOW + timedelta(minutes=11))] == [3, 2, 1]   # nothing more recorded


def test_an_invalid_draft_is_refused_with_file_and_line(live, pack_copy: Path) -> None:
    original = rv.snapshot(pack_copy)
    st = rv.stage(live, "loi", "thu.ky", NOW)
    folder = RuleFolder(st.path)
    folder.set_obligation_field("khhd57-quy", "recipient", "khong-co-don-vi-nay")
    folder.save()
    line = next(i for i, text in enumerate((st.path / "obligations-001-khhd-57.yaml").read_text("utf-8").splitlines(), 1)
                if "khong-co-don-vi-nay" in text)
    with pytest.raises(rv.DraftInvalid) as exc:
        rv.apply(live, st, "thu.ky", "Theo Kế hoạch số 12", NOW)
    assert any(e.file == "obligations-001-khhd-57.yaml" and e.line == line and "khong-co-don-vi-nay" in e.message
               for e in exc.value.errors), [str(e) for e in exc.value.errors]
    err = next(e for e in exc.value.errors if e.line == line)
    assert locate(st.path, err.file, err.line) == ("obligations", "khhd57-quy") and err.field.endswith("recipient")
    assert rv.snapshot(pack_copy) == original and st.path.is_dir()     # nothing applied, the draft kept
    assert [h.number for h in rv.history(live, NOW)] == [1]


def test_two_drafts_from_one_base_the_second_must_rebase(live, pack_copy: Path) -> None:
    a = rv.stage(live, "thu-ky-a", "Thư ký A", NOW)
    b = rv.stage(live, "thu-ky-b", "Thư ký B", NOW)
    fa = RuleFolder(a.path)
    fa.set_obligation_field("khhd57-quy", "due.day", 20)
    fa.save()
    fb = RuleFolder(b.path)
    fb.set_policy_field("hang-quy", "before_due_working_days", [7, 3, 1])
    fb.save()
    rv.apply(live, a, "Thư ký A", "Theo Kế hoạch số 12", NOW)
    with pytest.raises(rv.StaleDraft) as exc:
        rv.apply(live, b, "Thư ký B", "Theo Kế hoạch số 13", NOW)
    assert "đã có phiên bản mới hơn số 2" in exc.value.message and "rebase" in exc.value.message
    assert "dondoc rules rebase thu-ky-b" in exc.value.message
    assert load_pack(pack_copy, CALENDAR).policies["hang-quy"].before_due_working_days == [5, 2]

    b2 = rv.rebase(live, b, NOW)
    assert b2.base_number == 2
    v = rv.apply(live, b2, "Thư ký B", "Theo Kế hoạch số 13", NOW)
    pack = load_pack(pack_copy, CALENDAR)
    assert v.number == 3 and pack.obligations["khhd57-quy"].due.day == 20          # A's change kept
    assert pack.policies["hang-quy"].before_due_working_days == [7, 3, 1]          # and B's


def test_a_rebase_over_the_same_line_is_refused(live, pack_copy: Path) -> None:
    a = rv.stage(live, "a", "A", NOW)
    b = rv.stage(live, "b", "B", NOW)
    for st, day in ((a, 20), (b, 25)):
        f = RuleFolder(st.path)
        f.set_obligation_field("khhd57-quy", "due.day", day)
        f.save()
    rv.apply(live, a, "A", "Theo Kế hoạch số 12", NOW)
    draft = rv.snapshot(b.path)
    with pytest.raises(rv.RebaseConflict) as exc:
        rv.rebase(live, b, NOW)
    assert exc.value.conflicts and exc.value.conflicts[0][0] == "obligations-001-khhd-57.yaml"
    assert rv.snapshot(b.path) == draft                                # nothing written


def test_a_hand_edit_shows_up_in_history_author_unknown(live, pack_copy: Path) -> None:
    assert [h.number for h in rv.history(live, NOW)] == [1]
    path = pack_copy / "units.yaml"
    os.utime(path, (1, 1))                                              # touching is not a version
    assert [h.number for h in rv.history(live, NOW)] == [1]
    path.write_text(path.read_text("utf-8").replace('name: "Sở Y tế"', 'name: "Sở Y tế tỉnh Gia Lai"'), "utf-8")
    hist = rv.history(live, NOW + timedelta(hours=1))
    assert (hist[0].number, hist[0].kind, hist[0].author) == (2, "hand_edit", rv.UNKNOWN_AUTHOR)
    assert hist[0].files_changed == ["units.yaml"] and "Sở Y tế tỉnh Gia Lai" in rv.version(live, 2).diff
    # the hand edit is the base of the next draft, and a hand edit after staging makes the draft stale
    st = rv.stage(live, None, "thu.ky", NOW)
    assert st.base_number == 2
    (pack_copy / "README.md").write_text("sửa tay\n", "utf-8")
    f = RuleFolder(st.path)
    f.set_obligation_field("khhd57-quy", "due.day", 20)
    f.save()
    with pytest.raises(rv.StaleDraft):
        rv.apply(live, st, "thu.ky", "Theo Kế hoạch số 12", NOW)
    assert rv.history(live, NOW)[0].kind == "hand_edit"


def test_the_daemon_records_a_hand_edit_when_it_reloads_it(live, pack_copy: Path) -> None:
    """The running daemon records a hand edit when it goes live (its time, author unknown), not only
    whenever someone next opens the history; a broken edit is not recorded (it never went live)."""
    from engine.app.daemon import Daemon, DaemonConfig
    from engine.simclock import Clock

    clk = Clock(NOW, 1.0)
    seen: list[datetime] = []

    def record(now: datetime) -> None:
        seen.append(now)
        rv.record_hand_edits(live, now)

    d = Daemon(DaemonConfig(rules_dir=pack_copy, calendar_dir=CALENDAR, db_url=live.database.url, clock=clk,
                            watch_interval=0.01, on_rules_loaded=record))
    assert d.load_rules(initial=True) and len(seen) == 1
    path = pack_copy / "units.yaml"
    text = path.read_text("utf-8")
    edited = text.replace('name: "Sở Y tế"', 'name: "Sở Y tế tỉnh Gia Lai"')
    path.write_text(edited, "utf-8")
    assert d.load_rules() and len(seen) == 2
    path.write_text(text.replace('name: "Sở Y tế"', 'name: [Sở Y tế'), "utf-8")          # broken YAML
    assert d.load_rules() is False and len(seen) == 2
    path.write_text(edited, "utf-8")                                                  # mended: same as version 2
    later = NOW + timedelta(days=3)
    hist = rv.history(live, later)
    assert [(h.number, h.kind) for h in hist] == [(2, "hand_edit"), (1, "initial")]
    two = next(h for h in hist if h.number == 2)
    assert two.author == rv.UNKNOWN_AUTHOR and rv.local_time(two.created_at) < rv.local_time(later) - timedelta(days=2)
    assert "Sở Y tế tỉnh Gia Lai" in rv.version(live, 2).diff


def test_apply_swaps_the_folder_whole_and_keeps_hidden_entries(live, pack_copy: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "x", tmp_path / "y"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("x")
    (b / "f").write_text("y")
    assert rv.exchange(a, b) is True                                     # Linux: one atomic step
    assert ((a / "f").read_text(), (b / "f").read_text()) == ("y", "x")
    (pack_copy / ".git").mkdir()
    (pack_copy / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    st = rv.stage(live, None, "thu.ky", NOW)
    assert not (st.path / ".git").exists()
    f = RuleFolder(st.path)
    f.set_obligation_field("khhd57-quy", "due.day", 20)
    f.save()
    inode_before = pack_copy.stat().st_ino
    rv.apply(live, st, "thu.ky", "Theo Kế hoạch số 12", NOW)
    assert pack_copy.stat().st_ino != inode_before                      # a new folder, not files rewritten in place
    assert (pack_copy / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert not [p for p in pack_copy.parent.iterdir() if p.name.startswith(f".{pack_copy.name}.")]   # no leftovers


def test_preview_of_a_draft_lists_the_new_deadlines(live, pack_copy: Path) -> None:
    st = rv.stage(live, None, "thu.ky", NOW)
    f = RuleFolder(st.path)
    f.add_obligation(NEW_OBLIGATION, "obligations-001-khhd-57.yaml")
    f.save()
    result = rv.preview(live, st, date(2026, 3, 2), date(2026, 4, 5))
    assert {d.obligation for d in result.deadlines_added} == {"skhcn-bao-cao-quy"}
    assert {d.due for d in result.deadlines_added} == {date(2026, 3, 20)}
    assert not result.deadlines_removed and not result.deadlines_moved


# ─── the command line ───────────────────────────────────────────────────────────────────────────
def test_the_commands(seed_env: Path, pack_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.app.cli import app

    monkeypatch.setenv("DONDOC_RULES_DIR", str(pack_copy))
    monkeypatch.setenv("DONDOC_NOW", "2026-03-02T09:00")
    monkeypatch.setenv("USER", "thu.ky")
    run = CliRunner().invoke
    r = run(app, ["rules", "stage", "ke-hoach-12"])
    assert r.exit_code == 0 and "Đã tạo bản nháp ke-hoach-12" in r.output, r.output
    staged = pack_copy.parent / rv.STAGING / "ke-hoach-12"
    path = staged / "obligations-001-khhd-57.yaml"
    path.write_text(path.read_text("utf-8").replace("recipient: vp-tinh-uy", "recipient: khong-co", 1), "utf-8")
    r = run(app, ["rules", "apply", "ke-hoach-12", "--reason", "Theo Kế hoạch số 12"])
    assert r.exit_code == 1 and "obligations-001-khhd-57.yaml:" in r.output and "khong-co" in r.output, r.output
    path.write_text(path.read_text("utf-8").replace("recipient: khong-co", "recipient: vp-tinh-uy", 1)
                    .replace("day: 18, roll: forward}", "day: 19, roll: forward}", 1), "utf-8")
    r = run(app, ["rules", "diff", "ke-hoach-12"])
    assert r.exit_code == 0 and "+    due: {rule: day_of_last_month, day: 19, roll: forward}" in r.output, r.output
    r = run(app, ["rules", "apply", "ke-hoach-12"])
    assert r.exit_code == 2 and "--reason" in r.output
    r = run(app, ["rules", "apply", "ke-hoach-12", "--reason", "Theo Kế hoạch số 12", "--author", "Nguyễn Thị Thư"])
    assert r.exit_code == 0 and "phiên bản số 2" in r.output, r.output
    r = run(app, ["rules", "history", "--json"])
    hist = json.loads(r.output)
    assert [(h["number"], h["author"], h["reason"]) for h in hist][0] == (2, "Nguyễn Thị Thư", "Theo Kế hoạch số 12")
    r = run(app, ["rules", "history"])
    assert r.exit_code == 0 and "Nguyễn Thị Thư" in r.output and "không rõ (sửa trực tiếp tệp)" in r.output
    r = run(app, ["rules", "restore", "1", "--reason", "Khôi phục thử"])
    assert r.exit_code == 0 and "phiên bản số 3" in r.output, r.output
    assert rv.snapshot(pack_copy) == rv.snapshot(RULES)
    r = run(app, ["rules", "restore", "9", "--reason", "x"])
    assert r.exit_code == 1 and "không có phiên bản số 9" in r.output


# ─── the table ──────────────────────────────────────────────────────────────────────────────────
def test_the_migration_matches_the_model(db_url: str) -> None:
    """0008 creates exactly what RuleVersionRow declares (Alembic's autogenerate comparison finds
    nothing for rule_versions), on SQLite and PostgreSQL, and downgrades cleanly."""
    from engine.state import RuleVersionRow
    from tests.support import check_migration

    for down in check_migration(db_url, ("rule_versions",), {"rule_versions": RuleVersionRow}, "0007"):
        assert not down.has_table("rule_versions")


def test_a_naive_moment_from_sqlite_is_utc_whatever_the_servers_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as _time

    monkeypatch.setenv("TZ", "America/New_York")
    _time.tzset()
    try:
        assert rv.local_time(datetime(2026, 3, 2, 2, 0)).strftime("%d/%m/%Y %H:%M") == "02/03/2026 09:00"
    finally:
        monkeypatch.undo()
        _time.tzset()


def test_the_help_names_the_default_draft() -> None:
    """The CLI's help writes the default draft's name without importing the rule versions module
    (so that `dondoc --help` stays fast): it must stay the one ruleversions uses."""
    from typer.testing import CliRunner

    from engine.cli import app

    r = CliRunner().invoke(app, ["rules", "stage", "--help"])
    assert r.exit_code == 0 and f"mặc định: {rv.DEFAULT_DRAFT}" in r.output
