"""Catch-up without a flood (issue 11.1): the tracking start moved back a year on the seed pack.

Before: on 02/12/2026 with the tracking start at 01/12/2025, the Văn phòng's digest was 355 KB
(1,059 lines, 24 reports and 497 escalation lines), every unit's listed every period since January.
Now every recipient gets ONE reminder (the secretariat also its weekly KPI summary, a message of
its own) that lists at most ``digest_max_items`` entries in full — the most urgent — and counts
the rest per obligation.
"""

from __future__ import annotations

import email
import re
from collections import Counter
from datetime import date, datetime
from email import policy

import pytest

from engine.app.config import load_settings
from engine.clock import TZ
from engine.db import session
from engine.pipeline import evaluate
from engine.rules_loader import load_pack
from engine.sync import sync_instances
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import deliver
from tests.conftest import CALENDAR, RULES

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=TZ)     # a Wednesday, inside the sending window
BACK = date(2025, 12, 1)                          # the tracking start, moved back a year
MAX = 12                                          # a configured size (the default is 25)


def entries(text: str) -> int:
    """Entries listed in full in a plain-text digest: numbered reports / KPI targets / summary
    targets, and escalation rows ("   - unit: quá hạn …"); an escalation's numbered heading
    (followed by its "Căn cứ" line and its rows) is not an entry."""
    lines = text.splitlines()
    n = 0
    for i, line in enumerate(lines):
        if re.match(r"\d+\. ", line):
            heading = i + 2 < len(lines) and lines[i + 1].startswith("   Căn cứ:") and lines[i + 2].startswith("   - ")
            n += not heading
        elif line.startswith("   - "):
            n += 1
    return n


@pytest.fixture(scope="module")
def mails(tmp_path_factory):
    pack = load_pack(RULES, CALENDAR)
    tmp = tmp_path_factory.mktemp("catchup")
    url = f"sqlite:///{tmp / 'state.db'}"
    with session(url) as s:
        sync_instances(s, pack, NOW, tracking_start=BACK)
        s.commit()
        ev = evaluate(s, pack, NOW, tracking_start=BACK)
    rep = deliver(url, pack, NOW, smtp=SmtpConfig(pickup_dir=tmp / "mail-out", from_addr="dondoc@vptu.example.org"),
                  delivery=DeliveryConfig(digest_max_items=MAX))
    out = []
    for f in sorted((tmp / "mail-out").glob("*.eml")):
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        out.append((msg["To"].addresses[0].addr_spec, str(msg["Subject"]), msg.get_body(("plain",)).get_content().replace("\r\n", "\n"),
                    msg.get_body(("html",)).get_content(), f.stat().st_size))
    return pack, ev, rep, out


def test_every_recipient_gets_one_digest_within_the_configured_size(mails) -> None:
    pack, ev, rep, out = mails
    assert ev.created > 1000 and rep.failed == rep.retry == 0
    per = Counter(to for to, *_ in out)
    secretariat = pack.units[pack.info.admin_contact].contacts[0]
    reminders = Counter(to for to, subject, *_ in out if not subject.endswith(": tổng hợp chỉ tiêu"))
    assert set(reminders.values()) == {1}                              # one reminder per recipient
    assert per[secretariat] == 2 and all(n == 1 for to, n in per.items() if to != secretariat)
    sizes = []
    for to, subject, text, html, size in out:
        assert entries(text) <= MAX, (to, entries(text))
        assert len(text.splitlines()) <= 150 and len(text.encode()) <= 30_000 and size <= 80_000, (to, size)
        sizes.append((size, len(text.splitlines()), entries(text), to))
    print("largest .eml (bytes, text lines, entries, to):", sorted(sizes)[-3:], "of", len(sizes), "digests")


def test_the_rest_is_counted_per_obligation(mails) -> None:
    pack, _, _, out = mails
    vp = pack.units[pack.info.admin_contact].contacts[0]
    [(_, subject, text, html, _)] = [m for m in out if m[0] == vp and not m[1].endswith("tổng hợp chỉ tiêu")]
    # the subject still counts everything; the body lists the most urgent and counts the rest
    total = int(re.search(r"(\d+) báo cáo quá hạn", subject).group(1))
    own = text.split("== CÁC ĐƠN VỊ CHƯA NỘP", 1)[0]
    listed = len(re.findall(r"^\d+\. .+ – (Tháng|Quý|6 tháng|Năm) ", own, re.M))
    more = re.search(r"^Và (\d+) kỳ báo cáo khác chưa hoàn thành: (.+)\.$", text, re.M)
    assert more and listed + int(more.group(1)) == total
    counted = re.findall(r"\((\d+)\)", more.group(2))
    assert sum(map(int, counted)) == int(more.group(1))           # per obligation: "Báo cáo tháng … (4), …"
    assert re.search(r"^Và \d+ lượt đơn vị khác chưa nộp: .+ \(\d+\)", text, re.M)
    assert "Và " in html and "kỳ báo cáo khác chưa hoàn thành" in html
    # a unit behind on many periods of one report is one row: "11 kỳ: Tháng 01/2026 … Tháng 11/2026"
    every = "\n".join(t for _, _, t, _, _ in out)
    assert re.search(r"quá hạn \d+ ngày làm việc \(\d+ kỳ: Tháng \d\d/\d{4} … Tháng \d\d/2026\)", every)


def test_most_urgent_first_what_is_due_then_the_latest_overdue(mails) -> None:
    _, _, _, out = mails
    for to, subject, text, *_ in out:
        if "Và " not in text or "kỳ báo cáo khác" not in text:
            continue
        dues = [datetime.strptime(d, "%d/%m/%Y").date()
                for d in re.findall(r"^   Hạn nộp: \w+(?: \w+)?, (\d\d/\d\d/\d{4})", text, re.M)]
        assert dues and max(dues) >= date(2026, 11, 1), (to, dues)    # last month's reports are listed


def test_digest_size_is_configured_in_the_one_configuration(tmp_path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    s = load_settings({"DONDOC_NOTIFY_DIGEST_MAX_ITEMS": "40"}, file=empty)
    assert s.delivery.digest_max_items == 40
    f = tmp_path / "dondoc.toml"
    f.write_text("[delivery]\ndigest_max_items = 7\n", encoding="utf-8")
    assert load_settings({}, file=f).delivery.digest_max_items == 7
    assert DeliveryConfig().digest_max_items == 25
