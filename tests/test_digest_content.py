"""Digests people read (issue 11.2), rendered from the seed pack as the sender renders them.

A secretary used to find internal codes in mails ("kpi:dvc-toan-trinh-2025", "no_data:2025",
"khhd57-nam"), a line per unit per period in a leader's escalation, the weekly KPI summary inside the
Văn phòng's own reminder, and the Văn phòng asked to chase itself. Here: the seed pack on
12/01/2026 (tracking from 01/11/2025) — overdue reports, escalations to leaders, KPI items, the
secretariat's summary and a due day moved by a Sunday — every digest rendered in all four forms
(subject, text, HTML, chat/webhook body) and searched for every kind of internal id.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from sqlmodel import select

from engine.clock import TZ
from engine.db import session
from engine.kpi.loader import load_kpi_for_pack
from engine.pipeline import evaluate
from engine.rules_loader import load_pack
from engine.state import NoticeRow
from engine.sync import sync_instances
from notifications import outbox
from notifications.config import DeliveryConfig, SmtpConfig
from notifications.delivery import _context, build_digest
from notifications.render import Renderer
from tests.conftest import CALENDAR, RULES
from tests.support import add_notice, instance

NOW = datetime(2026, 1, 12, 9, 30, tzinfo=TZ)       # a Monday, inside the sending window
TRACKING_START = date(2025, 11, 1)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """[(recipient, digest, Rendered)] for every digest the next pass would send."""
    pack = load_pack(RULES, CALENDAR)
    url = f"sqlite:///{tmp_path_factory.mktemp('digests') / 'state.db'}"
    with session(url) as s:
        sync_instances(s, pack, NOW, tracking_start=TRACKING_START)
        s.commit()
        evaluate(s, pack, NOW, tracking_start=TRACKING_START)
        # A unit asked to chase itself (Văn phòng Tỉnh ủy received its own escalation): written as
        # an evaluation with such a policy would write it.
        own = instance(s, "khhd57-vptu-thang", "vp-tinh-uy", "2025-11")
        add_notice(s, own, "escalation", recipient="vp-tinh-uy", now=NOW)
        s.commit()
        ctx = _context(pack, NOW, SmtpConfig(), DeliveryConfig(), None)
        outbox.drop_moot(s, NOW, ctx.kpi)
        outbox.assign(s, pack, NOW, ctx.domain)
        s.commit()
        due = outbox.due_deliveries(s, NOW)
        live, _ = outbox.load_chunk(s, due, NOW, ctx.kpi)
        out = []
        renderer = Renderer()       # one environment: its templates are compiled once, not per digest
        for d in due:
            digest = build_digest(ctx, d.recipient, live[d.id])
            out.append((d.recipient, digest, renderer.render(digest)))
        self_esc = s.exec(select(NoticeRow).where(NoticeRow.kind == "escalation",
                                                  NoticeRow.unit == NoticeRow.recipient)).all()
    return pack, out, self_esc


def _id_patterns(pack) -> list[tuple[str, re.Pattern[str]]]:
    """(literal, pattern) pairs: a pattern can only match where its literal occurs ("" = always try),
    so the cheap substring test decides for most of the hundreds of ids."""
    kpi = load_kpi_for_pack(pack)
    ids = set(pack.obligations) | set(pack.units) | set(kpi.targets) | set(kpi.indicators)
    words = [(i, re.compile(rf"(?<![\w.-]){re.escape(i)}(?![\w@.-])")) for i in sorted(ids, key=len, reverse=True)]
    return words + [("", re.compile(p)) for p in (r"kpi:", r"kpi-summary", r"no_data", r"behind:", r"missed:",
                                                  r"\b\d{4}-(?:Q[1-4]|H[12]|W\d{2}|\d{2})\b", r"\bkỳ \d{4}\b")]


def test_no_internal_id_in_any_form_of_any_digest(rendered) -> None:
    pack, out, _ = rendered
    assert len(out) > 20
    patterns = _id_patterns(pack)
    found = []
    for recipient, _, r in out:
        for form, text in (("subject", r.subject), ("text", r.text), ("html", r.html), ("chat", r.chat)):
            text = re.sub(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "", text)     # the secretariat's address in the footer
            found += [(recipient, form, m.group(0)) for lit, p in patterns if lit in text for m in [p.search(text)] if m]
    assert found == []
    every = "\n".join(r.text for _, _, r in out)
    # obligation titles and Vietnamese period labels instead
    assert "Tháng 11/2025" in every and "Năm 2025" in every
    assert "Báo cáo tháng kết quả thực hiện Kế hoạch hành động thực hiện Nghị quyết 57-NQ/TW" in every


def test_the_scenario_has_what_the_check_is_about(rendered) -> None:
    """Overdue reports, escalations, KPI items, the summary: otherwise the id check proves little."""
    _, out, _ = rendered
    assert any(d.counts["overdue"] for _, d, _ in out)
    assert any(d.escalations for _, d, _ in out)
    assert any(d.kpi for _, d, _ in out)
    assert any(d.kpi_overview is not None for _, d, _ in out)


def test_a_due_day_moved_by_a_sunday_says_so(rendered) -> None:
    _, out, _ = rendered
    every = "\n".join(r.text + r.html + r.chat for _, _, r in out)
    assert "Hạn nộp: Thứ Hai, 01/12/2025 – hạn dời từ Chủ nhật 30/11/2025 sang Thứ Hai 01/12/2025" in every
    assert "hạn dời từ Chủ nhật 30/11/2025 sang Thứ Hai 01/12/2025" in every.split("<html", 1)[-1]   # HTML too


def test_escalation_is_a_short_table_per_report(rendered) -> None:
    """One block per report, one row per late unit (its periods, working days late), not a line
    per unit per period."""
    _, out, _ = rendered
    for recipient, d, r in out:
        for e in d.escalations:
            assert len({u.unit.id for u in e.units}) == len(e.units)       # a unit appears once per report
            assert len({x.obligation for x in d.escalations}) == len(d.escalations)
        if d.escalations:
            assert "<th align=\"left\">Đơn vị</th><th align=\"left\">Kỳ chưa nộp</th>" in r.html
            assert re.search(r"^   - .+: quá hạn \d+ ngày làm việc \(.+\)$", r.text, re.M)


def test_a_unit_is_never_asked_to_chase_itself(rendered) -> None:
    _, out, self_esc = rendered
    assert self_esc and all(n.status == "dropped" and "không tự đôn đốc" in (n.last_error or "") for n in self_esc)
    for recipient, d, _ in out:
        assert all(u.unit.id != recipient for e in d.escalations for u in e.units)


def test_weekly_kpi_summary_goes_alone_to_the_secretariat(rendered) -> None:
    pack, out, _ = rendered
    summaries = [(rcp, d, r) for rcp, d, r in out if d.kpi_overview is not None]
    assert [rcp for rcp, _, _ in summaries] == [pack.info.admin_contact]
    [(_, d, r)] = summaries
    assert not d.items and not d.escalations and not d.kpi                 # never inside a reminder
    assert r.subject == "[Đôn đốc báo cáo] Văn phòng Tỉnh ủy: tổng hợp chỉ tiêu"
    # milestones decades away are counted, not listed, unless they really slip
    listed = [k for g in d.context()["kpi_overview"].groups for k in g.items]
    assert listed and all(k.status != "no_data" or k.milestone.year <= NOW.year + 5 for k in listed)
    assert d.kpi_overview.distant > 0 and "mốc sau năm 2031" in r.text
    assert "31/12/2045" not in r.text
    # the secretariat still gets its own reminder, as a reporting unit, in another message
    assert any(rcp == pack.info.admin_contact and (d.items or d.escalations) for rcp, d, _ in out)
