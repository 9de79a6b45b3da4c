"""KPI targets in the notification pipeline: slipping items (Chậm tiến độ, Không đạt, Thiếu số liệu)
become notices through the same durable-rules evaluation and outbox, reach the responsible unit's
digest at a real aiosmtpd server once, are dropped when a recorded value puts them back on track, and
the secretariat gets a weekly summary of every slipping target.

The pack is the minipack (tests/fixtures/minipack) with a kpi/ folder: one stock indicator `ty-le`
of Sở KH&CN (skhcn), carried by the yearly report `nam-skhcn` (due 01/12/2025, 30/11/2026):
baseline 20 % on 31/12/2024, ≥ 40 % by 31/12/2026, ≥ 80 % by 31/12/2030, tolerance 0.1 of the
segment's change (2 points). Path at 14/11/2025: 20 + 20 × 318/730 = 28,71 %: 22 % is behind.
"""

from __future__ import annotations

import email
import random
import shutil
from collections import Counter
from datetime import date, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlmodel import select

from engine.clock import TZ
from engine.db import session
from engine.evaluation import DurableEvaluator, NoticeIntent, OpenItem, PythonEvaluator
from engine.kpi.loader import load_kpi_for_pack
from engine.kpi.report import kpi_items
from engine.kpi.values import KpiValueIn, _record, record_value
from engine.pipeline import KPI_POLICY, KPI_POLICY_ID, effective_policies, evaluate, policies_version
from engine.rules_loader import load_pack
from engine.rules_model import ReminderPolicy
from engine.state import NoticeRow
from engine.sync import sync_instances
from notifications.delivery import deliver
from notifications.render import Renderer, check_templates
from notifications.config import DeliveryConfig, SmtpConfig
from tests.support import EphemeralController, RecordingHandler
from tests.conftest import CALENDAR, MINIPACK
from tests.test_evaluation import CAL, DIFF_POLICIES, MODES, UNITS, SUPERVISORS, generate_cases

NAME = "Tỷ lệ thử nghiệm số hóa hồ sơ <Đề án 06>"      # "<" must survive HTML escaping
FAST = DeliveryConfig(backoff_first_s=120, backoff_max_s=3600, max_attempts=5)

KPI_YAML = f"""
kpi_settings: {{tolerance: 0.1}}
documents: [{{id: kh, title: "Kế hoạch thử nghiệm thực hiện Nghị quyết 57-NQ/TW"}}]
kpi_groups: [{{id: g, code: a, name: "Nhóm thử"}}]
indicators:
  - id: ty-le
    name: "{NAME}"
    group: g
    unit: percent
    kind: stock
    responsible: skhcn
    source: nam-skhcn
    document: kh
    baseline: {{value: 20, date: 2024-12-31}}
    targets:
      - {{milestone: 2026-12-31, ge: 40, section: "III.2.1 a)", text: "≥ 40%"}}
      - {{milestone: 2030-12-31, ge: 80, section: "III.2.2 a)", text: "≥ 80%"}}
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


@pytest.fixture
def kpipack(tmp_path: Path):
    target = tmp_path / "rules"
    shutil.copytree(MINIPACK, target)
    (target / "kpi").mkdir()
    (target / "kpi" / "chi-tieu.yaml").write_text(KPI_YAML, encoding="utf-8")
    return load_pack(target, CALENDAR)


def smtp_cfg(port: int) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security="none", concurrency=2, timeout=5,
                        from_addr="dondoc@vptu.example.org", helo="test.local")


def record(url: str, pack, value: float, as_of: str, when: str) -> None:
    with session(url) as s:
        record_value(s, load_kpi_for_pack(pack), KpiValueIn(indicator="ty-le", value=value,
                                                           as_of=date.fromisoformat(as_of)), at(when))


def run_evaluate(url: str, pack, when: str):
    with session(url) as s:
        sync_instances(s, pack, at(when))
        return evaluate(s, pack, at(when))


def kpi_notices(url: str) -> list[NoticeRow]:
    with session(url) as s:
        return [n for n in s.exec(select(NoticeRow).order_by(NoticeRow.key)).all()
                if n.kind in ("kpi", "kpi_summary")]


def texts_to(handler: RecordingHandler, addr: str) -> list[tuple[str, str, str]]:
    """(Message-ID, text part, html part) of every message the server accepted for ``addr``."""
    out = []
    for m in handler.messages:
        if addr in m.rcpt_tos:
            msg = m.message
            out.append((m.message_id, msg.get_body(("plain",)).get_content().replace("\r\n", "\n"),
                        msg.get_body(("html",)).get_content().replace("\r\n", "\n")))
    return out


# ---------------------------------------------------------------------------------------------
# end to end at a real SMTP server


def test_behind_target_reaches_the_units_digest_once(smtp, db_url, kpipack) -> None:
    handler, port = smtp
    url = db_url
    # Monday 08/06/2026 10:00: Sở KH&CN's figure for 14/11/2025 is entered: 22 %, behind the path.
    record(url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    with session(url) as s:
        [item] = kpi_items(s, kpipack, date(2026, 6, 8))
    assert (item.status, item.unit, item.target, item.since) == ("behind", "skhcn", "ty-le-2026", date(2026, 6, 8))
    # the day the figure was entered is a grace day for the unit; the secretariat's weekly summary
    # (ISO week 24) is written as soon as a target slips
    rep = run_evaluate(url, kpipack, "2026-06-08T11:00")
    assert rep.kpi_items == 1 and rep.kpi_error is None
    assert [n.key for n in rep.notices if n.kind in ("kpi", "kpi_summary")] == ["kpi-summary|vp|2026-W24|summary|vp"]

    # Tuesday 09/06: evaluation at 07:00 writes the unit's KPI notice (the summary exists already)
    rep = run_evaluate(url, kpipack, "2026-06-09T07:00")
    kpi = [n for n in rep.notices if n.kind in ("kpi", "kpi_summary")]
    assert [(n.key, n.kind) for n in kpi] == [("kpi:ty-le-2026|skhcn|behind:2026-12-31|overdue|skhcn", "kpi")]
    first = deliver(url, kpipack, at("2026-06-09T09:00"), smtp=smtp_cfg(port), delivery=FAST)
    assert first.failed == 0 and first.retry == 0 and first.sent >= 2

    # a second evaluate + deliver pass the same day adds nothing and sends nothing
    again = run_evaluate(url, kpipack, "2026-06-09T10:00")
    assert again.created == 0 and not [n for n in again.notices if n.kind in ("kpi", "kpi_summary")]
    second = deliver(url, kpipack, at("2026-06-09T10:05"), smtp=smtp_cfg(port), delivery=FAST)
    assert (second.sent, second.new_deliveries) == (0, 0)
    # … nor the next day (the overdue stage is sent; the first repeat is 20 working days later)
    run_evaluate(url, kpipack, "2026-06-10T07:00")
    third = deliver(url, kpipack, at("2026-06-10T09:00"), smtp=smtp_cfg(port), delivery=FAST)
    assert third.sent == 0

    ids = handler.message_ids()
    assert len(ids) == len(set(ids)) == first.sent
    mine = texts_to(handler, "skhcn@example.org")
    assert len(mine) == 1                                    # ONE digest: reports and the KPI item together
    mid, text, html = mine[0]
    assert text.count(NAME) == 1 and html.count(NAME.replace("<", "&lt;").replace(">", "&gt;")) == 1
    assert "<Đề án 06>" not in html
    assert "CHỈ TIÊU CHẬM TIẾN ĐỘ, KHÔNG ĐẠT HOẶC THIẾU SỐ LIỆU (1)" in text
    assert "Báo cáo tháng" in text                           # the unit's overdue monthly reports, same message
    for line in ("Yêu cầu: ≥ 40 % – mốc 31/12/2026", "Số liệu mới nhất: 22 % (ngày 14/11/2025)",
                 "Theo lộ trình: 28,71 % (ngày 14/11/2025)", "Tình trạng: Chậm tiến độ",
                 "Căn cứ: Kế hoạch thử nghiệm thực hiện Nghị quyết 57-NQ/TW, mục III.2.1 a)"):
        assert line in text, line
    subject = [m for m in handler.messages if m.message_id == mid][0].message["Subject"]
    assert subject.endswith("1 chỉ tiêu chậm tiến độ")
    # the secretariat's summary, in its own digest (issue 11.2: a message of its own, never inside
    # the Văn phòng's own reminder)
    [vp_text] = [t for _, t, _ in texts_to(handler, "vp@example.org") if "TỔNG HỢP CHỈ TIÊU" in t]
    assert "TỔNG HỢP CHỈ TIÊU CHẬM TIẾN ĐỘ, KHÔNG ĐẠT HOẶC THIẾU SỐ LIỆU" in vp_text
    # every slipping target, not deduplicated: the 2030 target shares the path and is behind too
    assert "Tính đến Thứ Ba, 09/06/2026: 2 mục tiêu; Chậm tiến độ 2." in vp_text
    assert f"-- Chậm tiến độ (2) --\n1. {NAME} – mốc 31/12/2026 (≥ 40 %); số liệu mới nhất: 22 % (ngày 14/11/2025); " \
           "đơn vị: Sở Khoa học và Công nghệ\n   Căn cứ: Kế hoạch thử nghiệm thực hiện Nghị quyết 57-NQ/TW, mục III.2.1 a)\n" \
           f"2. {NAME} – mốc 31/12/2030 (≥ 80 %)" in vp_text
    vp_subject = [m.message["Subject"] for m in handler.messages if "vp@example.org" in m.rcpt_tos]
    assert sorted(vp_subject) == ["[Đôn đốc báo cáo] Văn phòng Tỉnh ủy: 5 báo cáo quá hạn",
                                  "[Đôn đốc báo cáo] Văn phòng Tỉnh ủy: tổng hợp chỉ tiêu"]
    assert not [t for _, t, _ in texts_to(handler, "baogl@example.org") if NAME in t]
    with session(url) as s:
        kn = {n.key: n for n in s.exec(select(NoticeRow)).all() if n.kind in ("kpi", "kpi_summary")}
    assert {n.status for n in kn.values()} == {"sent"}
    assert kn["kpi:ty-le-2026|skhcn|behind:2026-12-31|overdue|skhcn"].message_id == mid
    assert kn["kpi:ty-le-2026|skhcn|behind:2026-12-31|overdue|skhcn"].instance_id is None


def test_value_recorded_before_sending_makes_the_notice_moot(smtp, db_url, kpipack) -> None:
    handler, port = smtp
    url = db_url
    record(url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    rep = run_evaluate(url, kpipack, "2026-06-09T07:00")
    assert len([n for n in rep.notices if n.kind == "kpi"]) == 1
    # 08:00: the unit's May figure arrives: 35 % on 31/05/2026, path 20 + 20 × 516/730 = 34,14 % → on track
    record(url, kpipack, 35, "2026-05-31", "2026-06-09T08:00")
    rep = deliver(url, kpipack, at("2026-06-09T09:00"), smtp=smtp_cfg(port), delivery=FAST)
    assert rep.dropped_notices == 2                          # the item and the summary (nothing slips)
    assert all(NAME not in t and "CHỈ TIÊU" not in t for m in handler.messages
               for t in [m.message.get_body(("plain",)).get_content()])
    by_kind = {n.kind: n for n in kpi_notices(url)}
    assert by_kind["kpi"].status == "dropped" and "Đúng tiến độ" in by_kind["kpi"].last_error
    assert by_kind["kpi_summary"].status == "dropped" and "Không còn chỉ tiêu" in by_kind["kpi_summary"].last_error
    # on track: the next evaluation has no KPI item, hence no notice and no summary either
    rep = run_evaluate(url, kpipack, "2026-06-10T07:00")
    assert rep.kpi_items == 0 and not [n for n in rep.notices if n.kind in ("kpi", "kpi_summary")]
    assert not [n for n in kpi_notices(url) if n.status == "pending"]


def test_moot_after_the_digest_was_assigned(smtp, sqlite_url, kpipack) -> None:
    """A digest waiting for a retry (server down) loses its KPI item when the value arrives."""
    from tests.support import free_port

    handler, port = smtp
    url = sqlite_url
    record(url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    run_evaluate(url, kpipack, "2026-06-09T07:00")
    down = deliver(url, kpipack, at("2026-06-09T09:00"), smtp=smtp_cfg(free_port()), delivery=FAST)
    assert down.sent == 0 and down.retry >= 1
    record(url, kpipack, 41, "2026-05-31", "2026-06-09T09:30")      # target met early → Đạt
    up = deliver(url, kpipack, at("2026-06-09T11:00"), smtp=smtp_cfg(port), delivery=FAST)
    assert up.failed == 0
    assert not any(NAME in m.message.get_body(("plain",)).get_content() for m in handler.messages)
    [item] = [n for n in kpi_notices(url) if n.kind == "kpi"]
    assert item.status == "dropped" and "Đạt" in item.last_error


def test_missing_data_is_chased_after_the_due_day_and_repeated_twice(db_url, kpipack) -> None:
    """No 2026 figure: Thiếu số liệu from the report's due day (Mon 30/11/2026), chased from the next
    day, then every 20 working days, twice."""
    url = db_url
    record(url, kpipack, 30, "2025-11-14", "2026-01-05T09:00")     # on track in 2025/26: no item

    def kpi_stages(day: str) -> list[str]:
        rep = run_evaluate(url, kpipack, f"{day}T07:00")
        assert rep.kpi_error is None
        return [f"{n.period}/{n.stage}" for n in rep.notices if n.kind == "kpi"]

    assert kpi_stages("2026-11-27") == []
    assert kpi_stages("2026-11-30") == []                   # the due day itself
    assert kpi_stages("2026-12-01") == ["no_data:2026/overdue"]
    assert kpi_stages("2026-12-02") == []
    d = kpipack.calendar.add_working_days(date(2026, 11, 30), 20)
    assert kpi_stages(d.isoformat()) == ["no_data:2026/overdue-repeat-1"]
    d2 = kpipack.calendar.add_working_days(date(2026, 11, 30), 40)
    assert kpi_stages(d2.isoformat()) == ["no_data:2026/overdue-repeat-2"]
    assert kpi_stages(kpipack.calendar.add_working_days(d2, 25).isoformat()) == []
    keys = sorted(n.key for n in kpi_notices(url) if n.kind == "kpi")
    assert keys == sorted(f"kpi:ty-le-2026|skhcn|no_data:2026|{s}|skhcn" for s in
                          ("overdue", "overdue-repeat-1", "overdue-repeat-2"))
    summaries = [n.period for n in kpi_notices(url) if n.kind == "kpi_summary"]
    assert summaries == sorted(set(summaries)) and "2026-W49" in summaries   # one per ISO week at most


def test_a_kpi_typo_does_not_stop_reminders_or_digests(tmp_path, sqlite_url, kpipack) -> None:
    url = sqlite_url
    record(url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    run_evaluate(url, kpipack, "2026-06-09T07:00")
    kfile = Path(kpipack.directory) / "kpi" / "chi-tieu.yaml"
    kfile.write_text(KPI_YAML.replace("ge: 40", "ge: 400"), encoding="utf-8")   # a percentage over 100
    rep = run_evaluate(url, kpipack, "2026-06-10T07:00")
    assert rep.kpi_error and "không hợp lệ" in rep.kpi_error and rep.kpi_items == 0
    assert rep.considered > 0                                # reports were evaluated all the same
    out = tmp_path / "out"
    sent = deliver(url, kpipack, at("2026-06-10T09:00"), smtp=SmtpConfig(host=None, pickup_dir=out), delivery=FAST)
    assert sent.failed == sent.retry == 0 and sent.sent >= 2
    bodies = [email.message_from_bytes(p.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
              for p in out.glob("*.eml")]
    unit = [b for b in bodies if "Kính gửi: Sở Khoa học và Công nghệ" in b]
    assert len(unit) == 1 and "ty-le-2026" in unit[0] and "Không đọc được tệp chỉ tiêu" in unit[0]
    vp = [b for b in bodies if "Kính gửi: Văn phòng Tỉnh ủy" in b and "TỔNG HỢP CHỈ TIÊU" in b]   # its own message
    assert len(vp) == 1 and "Không lập được bảng tổng hợp chỉ tiêu" in vp[0]


# ---------------------------------------------------------------------------------------------
# the policy, the templates


def test_kpi_policy_is_built_in_and_a_pack_may_override_it(tmp_path, kpipack) -> None:
    assert effective_policies(kpipack)[KPI_POLICY_ID] == KPI_POLICY
    assert KPI_POLICY_ID not in kpipack.policies
    target = Path(kpipack.directory)
    pack_yaml = target / "pack.yaml"
    pack_yaml.write_text(pack_yaml.read_text(encoding="utf-8") +
                         "  - id: chi-tieu\n    before_due_working_days: []\n    on_due_day: false\n"
                         "    overdue_after_working_days: 0\n    repeat_every_working_days: 5\n    max_repeats: 1\n"
                         "    escalate_after_working_days: 3\n    escalate_to: [supervisor]\n", encoding="utf-8")
    own = load_pack(target, CALENDAR)
    assert effective_policies(own)[KPI_POLICY_ID].escalate_to == ["supervisor"]
    assert policies_version(own) != policies_version(kpipack)


def test_escalated_kpi_item_goes_to_the_supervisor_as_a_kpi_item(tmp_path, sqlite_url, kpipack) -> None:
    """With a pack policy that escalates, the supervisor (ubnd) gets the unit's item, kind kpi."""
    pack_yaml = Path(kpipack.directory) / "pack.yaml"
    pack_yaml.write_text(pack_yaml.read_text(encoding="utf-8") +
                         "  - id: chi-tieu\n    before_due_working_days: []\n    on_due_day: false\n"
                         "    overdue_after_working_days: 0\n    repeat_every_working_days: 0\n    max_repeats: 0\n"
                         "    escalate_after_working_days: 2\n    escalate_to: [supervisor]\n", encoding="utf-8")
    pack = load_pack(Path(kpipack.directory), CALENDAR)
    record(sqlite_url, pack, 22, "2025-11-14", "2026-06-08T10:00")
    run_evaluate(sqlite_url, pack, "2026-06-09T07:00")
    run_evaluate(sqlite_url, pack, "2026-06-10T07:00")
    keys = sorted(n.key for n in kpi_notices(sqlite_url) if n.kind == "kpi")
    assert keys == ["kpi:ty-le-2026|skhcn|behind:2026-12-31|escalation|ubnd",
                    "kpi:ty-le-2026|skhcn|behind:2026-12-31|overdue|skhcn"]
    out = Path(kpipack.directory).parent / "out"
    deliver(sqlite_url, pack, at("2026-06-10T09:00"), smtp=SmtpConfig(host=None, pickup_dir=out), delivery=FAST)
    bodies = [email.message_from_bytes(p.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
              for p in out.glob("*.eml")]
    [ubnd] = [b for b in bodies if "Kính gửi: Ủy ban nhân dân tỉnh" in b]
    assert NAME in ubnd and "Đơn vị chịu trách nhiệm: Sở Khoa học và Công nghệ" in ubnd


def test_check_templates_catches_a_broken_kpi_block(tmp_path) -> None:
    from notifications.render import SHIPPED_DIR

    src = (SHIPPED_DIR / "digest.txt.j2").read_text(encoding="utf-8")
    assert "k.indicator_name" in src
    (tmp_path / "digest.txt.j2").write_text(src.replace("k.indicator_name", "k.indicator_nam", 1), encoding="utf-8")
    errs = check_templates(tmp_path)
    assert len(errs) == 1 and errs[0].file.endswith("digest.txt.j2") and "indicator_nam" in errs[0].message
    assert errs[0].line == src[:src.index("k.indicator_name")].count("\n") + 1


def test_kpi_digest_renders_in_every_channel() -> None:
    from html import escape

    from notifications.render import KPI_SECTION_TITLE, KPI_SUMMARY_TITLE, _check_samples

    for d in _check_samples():
        r = Renderer().render(d)
        for k in d.kpi:
            assert k.indicator_name in r.text and k.indicator_name in r.chat and escape(k.indicator_name) in r.html
        if d.kpi:
            assert KPI_SECTION_TITLE.upper() in r.text and KPI_SECTION_TITLE in r.chat and KPI_SECTION_TITLE in r.html
        if d.kpi_overview is not None:
            assert KPI_SUMMARY_TITLE.upper() in r.text and KPI_SUMMARY_TITLE in r.chat and KPI_SUMMARY_TITLE in r.html
            assert "tổng hợp chỉ tiêu" in r.subject


# ---------------------------------------------------------------------------------------------
# differential: KPI-shaped items through durable-rules equal the oracle

KPI_ESCALATING = ReminderPolicy(id=KPI_POLICY_ID, before_due_working_days=[], on_due_day=True,
                                overdue_after_working_days=1, repeat_every_working_days=3, max_repeats=4,
                                escalate_after_working_days=5, escalate_to=["supervisor", "vp-tinh-uy"])
KPI_STAGES = ["due-today", "overdue"] + [f"overdue-repeat-{k}" for k in range(1, 5)] + ["escalation"]


def kpi_cases(seed: int) -> list:
    """The report population of tests/test_evaluation.py with KPI-shaped items mixed in: obligation
    kpi:<target>, period <status>:<period>, due = the day the item became known (today, up to 30 or
    up to 120 days back), random already-sent stages."""
    rng = random.Random(seed)
    cases = generate_cases(3_000, seed=seed)
    for case in cases:
        extra = []
        for k in range(rng.randint(20, 80)):
            r = rng.random()
            due = case.as_of - timedelta(days=0 if r < 0.1 else rng.randint(1, 30) if r < 0.5 else rng.randint(1, 120))
            status = rng.choice(["behind", "missed", "no_data"])
            sent = frozenset(s for s in KPI_STAGES if rng.random() < 0.2)
            extra.append(OpenItem(f"kpi:t-{k % 9}-2030", rng.choice(UNITS), f"{status}:{2024 + k % 3}", due,
                                  KPI_POLICY_ID, "open", sent, rng.choice(SUPERVISORS)))
        case.items[:0] = extra[: len(extra) // 2]
        case.items.extend(extra[len(extra) // 2:])
    return cases


@pytest.mark.parametrize("kpi_policy", [KPI_POLICY, KPI_ESCALATING], ids=["built-in", "escalating"])
@pytest.mark.parametrize("mode", list(MODES))
def test_durable_equals_oracle_with_kpi_items(mode: str, kpi_policy: ReminderPolicy) -> None:
    policies = {**DIFF_POLICIES, KPI_POLICY_ID: kpi_policy}
    oracle = PythonEvaluator(policies)
    kinds: Counter = Counter()
    with DurableEvaluator(policies, **MODES[mode]) as ev:
        for case in kpi_cases(seed=57):
            want = oracle.evaluate(case.items, case.as_of, CAL)
            got = ev.evaluate(case.items, case.as_of, CAL)
            assert Counter(got) == Counter(want), case.as_of
            for n in got:
                assert (n.kind == "kpi") == n.obligation.startswith("kpi:"), n
                kinds[(n.kind, n.stage.rsplit("-", 1)[0] if n.stage[-1].isdigit() else n.stage)] += 1
    assert kinds[("kpi", "overdue")] > 20 and kinds[("kpi", "overdue-repeat")] > 100
    if kpi_policy is KPI_ESCALATING:
        assert kinds[("kpi", "escalation")] > 100 and kinds[("kpi", "due-today")] > 10
    assert kinds[("overdue", "overdue")] > 100 and kinds[("escalation", "escalation")] > 100


def test_notice_intent_of_a_kpi_item() -> None:
    item = OpenItem("kpi:ty-le-2026", "skhcn", "behind:2026-12-31", date(2026, 6, 8), KPI_POLICY_ID,
                    supervisor="ubnd")
    with DurableEvaluator({KPI_POLICY_ID: KPI_POLICY}) as ev:
        assert ev.evaluate([item], date(2026, 6, 8), CAL) == []
        assert ev.evaluate([item], date(2026, 6, 9), CAL) == [
            NoticeIntent("kpi:ty-le-2026", "skhcn", "behind:2026-12-31", "overdue", "skhcn", "kpi", 0, 1)]


def test_kpi_facts_are_resolved_once_per_pass(smtp, sqlite_url, kpipack, monkeypatch) -> None:
    """Issue 9.3: the KPI status is computed once per delivery pass, not for every chunk of digests
    (here one digest per chunk, so the unit's KPI digest and the secretariat's summary are read apart)."""
    import engine.kpi.report as report
    import notifications.delivery as delivery

    handler, port = smtp
    record(sqlite_url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    run_evaluate(sqlite_url, kpipack, "2026-06-08T11:00")
    run_evaluate(sqlite_url, kpipack, "2026-06-09T07:00")
    calls = []
    real = report.kpi_status
    monkeypatch.setattr(report, "kpi_status", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(delivery, "CHUNK", 1)
    rep = deliver(sqlite_url, kpipack, at("2026-06-09T09:00"), smtp=smtp_cfg(port), delivery=FAST)
    assert rep.sent >= 2 and len(kpi_notices(sqlite_url)) == 2
    assert len(calls) == 1


def test_kpi_subject_codec_round_trips() -> None:
    from engine.kpi.subject import KpiSubject, decode, encode

    for subj in (KpiSubject("ty-le-2026", "behind", "2026-12-31"), KpiSubject("vneid-2030", "no_data", "2026")):
        assert decode(*encode(subj)) == subj
    assert encode(KpiSubject.of("t", "missed", None, date(2025, 12, 31))) == ("kpi:t", "missed:2025-12-31")
    assert decode("nam-skhcn", "2026") is None and decode("kpi:t", "garbled") is None


def test_the_passes_kpi_items_are_reused_until_a_value_the_day_or_the_rules_change(
        tmp_path, sqlite_url, kpipack, monkeypatch) -> None:
    """The daemon's pass asks for the KPI items every hour; they are classified again only when their
    inputs change: a value recorded or corrected (even one not committed yet, in the same session),
    another day, reloaded rules. Each answer is the one a fresh classification gives."""
    import engine.kpi.report as report

    calls: list[date] = []
    real = report.evaluate
    monkeypatch.setattr(report, "evaluate", lambda kpi, pack, values, as_of, *a: calls.append(as_of)
                        or real(kpi, pack, values, as_of, *a))

    def items(pack, day: date, extra: float | None = None) -> list[tuple[str, str]]:
        with session(sqlite_url) as s:
            if extra is not None:      # uncommitted in this session: seen, then rolled back
                _record(s, KpiValueIn(indicator="ty-le", value=extra, as_of=date(2026, 5, 31)), at("2026-06-08T12:00"), "t")
                s.flush()
            got = [(i.status, i.key) for i in kpi_items(s, pack, day)]
            s.rollback()
        return got

    def fresh(pack, day: date) -> list[tuple[str, str]]:
        report.forget_kpi_items()
        n = len(calls)
        got = items(pack, day)
        del calls[n:]
        return got

    day = date(2026, 6, 8)
    record(sqlite_url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    first = items(kpipack, day)
    assert [s for s, _ in first] == ["behind"] and len(calls) == 1
    assert items(kpipack, day) == first and len(calls) == 1                 # the next hour: reused

    # a value put back on track, not committed: seen; rolled back: the earlier answer again (still
    # remembered under the earlier token: the uncommitted one is gone with its write)
    assert items(kpipack, day, extra=39) == [] and len(calls) == 2
    assert items(kpipack, day) == first and len(calls) == 2

    # a correction of the same date (the old row made inactive, a new one added)
    record(sqlite_url, kpipack, 28, "2025-11-14", "2026-06-08T13:00")
    corrected = items(kpipack, day)
    assert len(calls) == 3 and corrected == fresh(kpipack, day)

    # another day
    later = items(kpipack, date(2026, 12, 1))
    assert len(calls) == 4
    assert items(kpipack, day) == corrected and len(calls) == 4           # the other day: still remembered
    assert later == fresh(kpipack, date(2026, 12, 1))

    # reloaded rules: a stricter target (≥ 60 %) is classified anew though nothing else changed
    rules = tmp_path / "rules2"
    shutil.copytree(kpipack.directory, rules)
    (rules / "kpi" / "chi-tieu.yaml").write_text(KPI_YAML.replace("ge: 40", "ge: 60"), encoding="utf-8")
    reloaded = load_pack(rules, CALENDAR)
    n = len(calls)
    assert items(reloaded, date(2026, 12, 1)) == fresh(reloaded, date(2026, 12, 1))
    assert len(calls) == n + 1


def test_the_kpi_page_reuses_the_classification_until_a_value_changes_and_keeps_no_old_pack(
        tmp_path, db_url, kpipack, monkeypatch) -> None:
    """The console's KPI page, the CLI's report and the delivery pass (build_report) share the
    pass's remembered classification: a second visit classifies nothing, a new value is seen at
    once, and after a reload only the new pack's answers are kept (a daemon reloading its rules
    200 times does not keep 200 packs alive)."""
    import engine.kpi.report as report
    from engine.kpi.report import build_report

    calls: list[date] = []
    real = report.evaluate
    monkeypatch.setattr(report, "evaluate", lambda kpi, pack, values, as_of, *a: calls.append(as_of)
                        or real(kpi, pack, values, as_of, *a))
    report.forget_kpi_items()
    kpi = load_kpi_for_pack(kpipack)
    day = date(2026, 6, 8)
    record(db_url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")

    def statuses(pack, k) -> list[str]:
        with session(db_url) as s:
            return [r.status for r in build_report(s, pack, day, k) if r.indicator == "ty-le"]

    first = statuses(kpipack, kpi)
    assert statuses(kpipack, kpi) == first and len(calls) == 1
    with session(db_url) as s:
        assert [i.status for i in kpi_items(s, kpipack, day, kpi)] == ["behind"] and len(calls) == 1
    record(db_url, kpipack, 39, "2026-05-31", "2026-06-08T11:00")
    assert statuses(kpipack, kpi) != first and len(calls) == 2

    rules = tmp_path / "rules2"
    shutil.copytree(kpipack.directory, rules)
    reloaded = load_pack(rules, CALENDAR)
    statuses(reloaded, load_kpi_for_pack(reloaded))
    assert len(calls) == 3
    assert {id(p) for p, _k, _r in report._ROWS_CACHE.values()} == {id(reloaded)}


def test_a_pass_with_nothing_new_reads_the_values_version_not_the_values(db_url, kpipack, monkeypatch) -> None:
    """The hourly pass with no new value reads one row (the values' version token, migration 0015),
    not every value ever recorded (they only accumulate), nor does the next day's first pass; a
    value changed by any SQL at all is seen by the next pass."""
    from sqlalchemy import text

    import engine.kpi.report as report

    loads: list[int] = []
    real = report.load_values
    monkeypatch.setattr(report, "load_values", lambda s, indicators=None: loads.append(1) or real(s, indicators))
    record(db_url, kpipack, 22, "2025-11-14", "2026-06-08T10:00")
    report.forget_kpi_items()
    day = date(2026, 6, 8)
    with session(db_url) as s:
        first = [i.status for i in kpi_items(s, kpipack, day)]
    with session(db_url) as s:
        assert [i.status for i in kpi_items(s, kpipack, day)] == first == ["behind"]
    assert len(loads) == 1
    with session(db_url) as s:           # the next day: classified again, from the values already read
        assert [i.status for i in kpi_items(s, kpipack, day + timedelta(days=1))] == ["behind"]
    assert len(loads) == 1
    with session(db_url) as s:           # not through dondoc's code: the trigger still renews the token
        s.execute(text("UPDATE kpi_values SET value = 39 WHERE indicator = 'ty-le'"))
        s.commit()
    with session(db_url) as s:
        assert kpi_items(s, kpipack, day) == []
    assert len(loads) == 2


def _kpi_notice(key: str, obligation: str, unit: str, period: str, stage: str, instance_id: int | None = None) -> dict:
    return dict(key=key, instance_id=instance_id, obligation=obligation, unit=unit, period=period, stage=stage,
                kind="overdue", recipient=unit, as_of=date(2026, 1, 5), created_at=at("2026-01-05T08:00:00"),
                status="sent", attempts=1)


def test_a_pass_reads_the_sent_stages_of_todays_kpi_subjects_only(db_url) -> None:
    """The stages already in the outbox are looked up for the subjects asked about, exactly: other
    subjects of the same target, unit or period, however many (they pile up month after month),
    are not read, and neither are the reports' notices. On SQLite the lookup goes through the KPI
    notices' index (0014), one search per subject, whatever SQLite estimates."""
    from sqlalchemy import insert, text
    from engine.db import get_engine, migrate
    from engine.pipeline import _kpi_sent_stages

    migrate(db_url)
    asked = [("kpi:ty-le-2026", "skhcn", "behind:2026-12-31"), ("kpi:ty-le-2026", "skhcn", "no_data:2026"),
             ("kpi:khac", "so-tc", "missed:2025")]
    rows = [_kpi_notice("a1", *asked[0], "overdue-1"), _kpi_notice("a2", *asked[0], "overdue-2"),
            _kpi_notice("b1", *asked[1], "overdue-1"), _kpi_notice("c1", *asked[2], "overdue-1")]
    # neighbours of every asked subject: another period, another unit, another target
    rows += [_kpi_notice(f"old{k}", "kpi:ty-le-2026", "skhcn", f"no_data:{1600 + k}", "overdue-1") for k in range(300)]
    rows += [_kpi_notice("u", "kpi:ty-le-2026", "so-tc", "behind:2026-12-31", "overdue-3"),
             _kpi_notice("t", "kpi:ty-le-2030", "skhcn", "behind:2026-12-31", "overdue-3")]
    eng = get_engine(db_url)
    with eng.begin() as c:
        c.execute(insert(NoticeRow.__table__), rows)
    with session(db_url) as s:
        assert _kpi_sent_stages(s, asked) == {asked[0]: {"overdue-1", "overdue-2"}, asked[1]: {"overdue-1"},
                                              asked[2]: {"overdue-1"}}
        assert _kpi_sent_stages(s, [("kpi:none", "skhcn", "behind:2026-12-31")]) == {}
        assert _kpi_sent_stages(s, []) == {}
        many = [("kpi:ty-le-2026", "skhcn", f"no_data:{1600 + k}") for k in range(300)] + asked   # > one query
        found = _kpi_sent_stages(s, many)
        assert len(found) == 303 and found[asked[0]] == {"overdue-1", "overdue-2"}
    if db_url.startswith("sqlite"):
        statements: list[str] = []
        from sqlalchemy import event

        def seen(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(eng, "before_cursor_execute", seen)
        with session(db_url) as s:
            _kpi_sent_stages(s, asked)
        event.remove(eng, "before_cursor_execute", seen)
        (query,) = [q for q in statements if "WITH v" in q]
        with eng.begin() as c:   # statistics as ANALYZE leaves them on a large outbox: an instance has a
            c.exec_driver_sql("ANALYZE sqlite_master")     # few notices, so instance_id looks selective
            c.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'notices'")
            c.exec_driver_sql("INSERT INTO sqlite_stat1 VALUES ('notices', 'ix_notices_instance_id', '500000 2'), "
                              "('notices', 'ix_notices_kpi_subject', '5000 40 30 8 2')")
            c.exec_driver_sql("ANALYZE sqlite_master")
        with eng.connect() as c:
            plan = " ".join(r[-1] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + query,
                                                             tuple(x for a in asked for x in a)).fetchall())
        assert "SEARCH n USING INDEX ix_notices_kpi_subject (obligation=? AND unit=? AND period=?)" in plan
        with eng.connect() as c:
            sql = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_notices_kpi_subject'")).scalar()
    else:
        with eng.connect() as c:
            sql = c.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_notices_kpi_subject'")).scalar()
    assert "instance_id IS NULL" in sql          # partial: the reports' notices are not in it


def test_the_kpi_notices_index_migration_matches_the_model(db_url) -> None:
    """0014 adds the KPI notices' index exactly as NoticeRow declares it; downgrading removes it."""
    from tests.support import check_migration

    for down in check_migration(db_url, ("notices",), {"notices": NoticeRow}, "0013"):
        assert "ix_notices_kpi_subject" not in {i["name"] for i in down.get_indexes("notices")}
