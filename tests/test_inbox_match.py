"""Matching received mail to units, obligations and periods (issue 14, item 2), on the seed pack."""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest

from engine.app.inbox.classify import kind
from engine.app.inbox.clues import periods_in, so_ky_hieu
from engine.app.inbox.match import DigestRef, MatchContext, OpenItem, match
from engine.app.inbox.parse import parse
from engine.rules_loader import load_pack
from notifications.mime import message_id_for
from tests.conftest import CALENDAR, RULES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "inbox"
DOMAIN = "vp-tinh-uy.example.org"
PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture(scope="module")
def pack():
    return load_pack(RULES, CALENDAR)


OPEN = [
    OpenItem("so-tai-chinh", "khhd57-thang", "2026-11", date(2026, 12, 7), 11),
    OpenItem("so-tai-chinh", "khhd57-nam", "2026", date(2026, 12, 21), 12),
    OpenItem("so-tai-chinh", "khhd57-skhcn-nam", "2026", date(2026, 11, 30), 13),
    OpenItem("so-y-te", "khhd57-thang", "2026-10", date(2026, 11, 6), 21),
    OpenItem("so-y-te", "khhd57-thang", "2026-11", date(2026, 12, 7), 22),
    OpenItem("so-y-te", "khhd57-nam", "2026", date(2026, 12, 21), 23),
    OpenItem("so-gddt", "khhd57-6thang", "2026-H1", date(2026, 7, 6), 31),
]
# The digest's Message-ID as notifications/outbox.py gives it: message_id_for(deliveries.key, domain).
DIGEST_ID = message_id_for("email|so-y-te|5f0c2a", DOMAIN)
FIXTURE_DIGEST_ID = "<0123456789abcdef0123456789abcdef.dondoc@vp-tinh-uy.example.org>"
DIGESTS = {
    DIGEST_ID: DigestRef("so-y-te", (("khhd57-thang", "so-y-te", "2026-10"), ("khhd57-thang", "so-y-te", "2026-11")),
                         date(2026, 11, 9)),
    FIXTURE_DIGEST_ID: DigestRef("so-y-te", (("khhd57-nam", "so-y-te", "2026"),)),
}
CTX = MatchContext(OPEN, DIGESTS)


def mail(subject: str, sender: str, *, in_reply_to: str | None = None, references: str | None = None,
         files: tuple[str, ...] = (), headers: dict[str, str] | None = None, body: str = "Kính gửi Văn phòng."):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, f"dondoc@{DOMAIN}", subject
    m["Message-ID"] = f"<{abs(hash((subject, sender, in_reply_to, references)))}@mail.example.org>"
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    if references:
        m["References"] = references
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body)
    for f in files:
        m.add_attachment(PDF, maintype="application", subtype="pdf", filename=f)
    return parse(m.as_bytes())


def keys(result) -> list[tuple[str, str, str]]:
    return sorted(c.item.key for c in result.candidates)


# ── replies ─────────────────────────────────────────────────────────────────────────────────────
def test_a_reply_is_matched_to_exactly_that_unit_and_those_items(pack) -> None:
    m = match(mail("Re: Nhắc nộp báo cáo", "vanthu.so-y-te@example.org", in_reply_to=DIGEST_ID,
                   references=DIGEST_ID, files=("bao-cao.pdf",)), pack, CTX)
    assert (m.status, m.via, m.units) == ("confident", "reply", ("so-y-te",))
    assert keys(m) == [("khhd57-thang", "so-y-te", "2026-10"), ("khhd57-thang", "so-y-te", "2026-11")]
    assert [c.item.instance_id for c in m.candidates] == [21, 22]
    assert "Sở Y tế" in m.reason and "09/11/2026" in m.reason and "so-y-te" not in m.reason


def test_a_reply_found_by_references_alone_and_narrowed_to_the_period_it_names(pack) -> None:
    """A client that drops In-Reply-To (or points it at another message of the thread), a domain
    spelt in capitals: the digest is still found; "tháng 11/2026" keeps only that item."""
    quoted = DIGEST_ID.replace(DOMAIN, DOMAIN.upper())
    m = match(mail("Re: Nhắc nộp báo cáo - gửi báo cáo tháng 11/2026", "vanthu.so-y-te@example.org",
                   in_reply_to="<other@mail.so-y-te.example.org>", references=f"<first@x.vn> {quoted}"), pack, CTX)
    assert (m.status, m.via) == ("confident", "reply")
    assert keys(m) == [("khhd57-thang", "so-y-te", "2026-11")]


def test_a_reply_from_an_address_not_in_the_contacts_still_names_the_digest_unit(pack) -> None:
    m = match(mail("Re: Nhắc nộp báo cáo", "nguyen.van.a@gmail.com", in_reply_to=DIGEST_ID), pack, CTX)
    assert m.status == "confident" and m.units == ("so-y-te",)
    assert "nguyen.van.a@gmail.com chưa có trong danh bạ" in m.reason


def test_a_reply_whose_items_are_all_closed_waits_for_the_secretariat(pack) -> None:
    ctx = MatchContext([i for i in OPEN if i.unit != "so-y-te"], DIGESTS)
    m = match(mail("Re: Nhắc nộp báo cáo", "vanthu.so-y-te@example.org", in_reply_to=DIGEST_ID), pack, ctx)
    assert (m.status, m.candidates) == ("none", ())
    assert "đã được ghi nhận" in m.reason


# ── sender + subject ────────────────────────────────────────────────────────────────────────────
def test_a_report_without_reply_is_matched_by_sender_and_subject(pack) -> None:
    """The cp1258 fixture: "Báo cáo tháng 11/2026 kết quả thực hiện KHHĐ" from Sở Tài chính's
    contact, attachment "Báo cáo 123-BC-STC.pdf"."""
    inbound = parse((FIXTURES / "report-cp1258.eml").read_bytes())
    m = match(inbound, pack, CTX)
    assert (m.status, m.via, m.units) == ("confident", "sender", ("so-tai-chinh",))
    assert keys(m) == [("khhd57-thang", "so-tai-chinh", "2026-11")]
    assert m.so_ky_hieu == "123/BC-STC" and m.periods == ("2026-11",)
    assert "Sở Tài chính" in m.reason and "Tháng 11/2026" in m.reason


@pytest.mark.parametrize("subject", ["Báo cáo tháng 11 năm 2026 kết quả thực hiện Kế hoạch hành động",
                                     "BC T11/2026 thực hiện NQ 57", "Gửi báo cáo tháng 11/2026"])
def test_other_spellings_of_the_monthly_report(pack, subject: str) -> None:
    m = match(mail(subject, "VanThu.So-Tai-Chinh@Example.ORG"), pack, CTX)
    assert m.status == "confident" and keys(m) == [("khhd57-thang", "so-tai-chinh", "2026-11")], m.reason


def test_the_period_may_be_in_the_attachment_name(pack) -> None:
    m = match(mail("Gửi Văn phòng Tỉnh ủy báo cáo", "vanthu.so-gddt@example.org",
                   files=("BC_6_thang_dau_nam_2026_KHHD57.pdf",)), pack, CTX)
    assert m.status == "confident" and keys(m) == [("khhd57-6thang", "so-gddt", "2026-H1")]


def test_two_plausible_obligations_are_ambiguous_with_both_candidates(pack) -> None:
    m = match(mail("Báo cáo năm 2026", "vanthu.so-tai-chinh@example.org", files=("bao-cao-nam-2026.pdf",)), pack, CTX)
    assert (m.status, m.via) == ("ambiguous", "sender")
    assert keys(m) == [("khhd57-nam", "so-tai-chinh", "2026"), ("khhd57-skhcn-nam", "so-tai-chinh", "2026")]
    assert "cần chọn" in m.reason and "Sở Tài chính" in m.reason
    texts = [c.text(pack) for c in m.candidates]
    assert all("Năm 2026" in t and "Sở Tài chính" in t for t in texts)


def test_the_title_words_decide_between_two_yearly_reports(pack) -> None:
    m = match(mail("Báo cáo kết quả phổ biến, tuyên truyền Nghị quyết 57 năm 2026 gửi Sở KH&CN",
                   "vanthu.so-tai-chinh@example.org"), pack, CTX)
    assert m.status == "confident" and keys(m) == [("khhd57-skhcn-nam", "so-tai-chinh", "2026")]


def test_no_period_and_several_open_periods_is_ambiguous(pack) -> None:
    m = match(mail("Báo cáo tháng kết quả thực hiện Kế hoạch hành động thực hiện Nghị quyết 57-NQ/TW",
                   "vanthu.so-y-te@example.org"), pack, CTX)
    assert m.status == "ambiguous"
    assert ("khhd57-thang", "so-y-te", "2026-10") in keys(m) and ("khhd57-thang", "so-y-te", "2026-11") in keys(m)


def test_a_period_with_nothing_open_is_none(pack) -> None:
    m = match(mail("Báo cáo tháng 9/2026", "vanthu.so-tai-chinh@example.org"), pack, CTX)
    assert (m.status, m.candidates) == ("none", ())
    assert "Tháng 09/2026" in m.reason


def test_an_unknown_sender_is_none(pack) -> None:
    m = match(mail("Báo cáo tháng 11/2026", "someone@unknown.example.com"), pack, CTX)
    assert (m.status, m.via, m.candidates, m.units) == ("none", "none", (), ())
    assert "someone@unknown.example.com" in m.reason and "danh bạ" in m.reason


# ── never a report ──────────────────────────────────────────────────────────────────────────────
def test_an_auto_reply_to_a_digest_is_ignored(pack) -> None:
    inbound = parse((FIXTURES / "auto-reply-outlook.eml").read_bytes())
    assert FIXTURE_DIGEST_ID in inbound.thread_ids            # it does quote the digest …
    assert kind(inbound) == "auto_reply"
    m = match(inbound, pack, CTX)                             # … and is still never a report
    assert (m.status, m.candidates) == ("ignored", ()) and "tự động" in m.reason


def test_a_bounce_is_ignored(pack) -> None:
    inbound = parse((FIXTURES / "dsn-postfix.eml").read_bytes())
    assert kind(inbound) == "bounce"
    m = match(inbound, pack, CTX)
    assert (m.status, m.candidates) == ("ignored", ()) and "trả lại" in m.reason


@pytest.mark.parametrize("subject,sender,headers,expected", [
    ("Automatic reply: Nhắc báo cáo", "vanthu.so-y-te@example.org", {}, "auto_reply"),
    ("Trả lời tự động: Nhắc báo cáo", "vanthu.so-y-te@example.org", {}, "auto_reply"),
    ("Out of Office", "vanthu.so-y-te@example.org", {}, "auto_reply"),
    ("Vắng mặt đến 04/12", "vanthu.so-y-te@example.org", {}, "auto_reply"),
    ("Re: Nhắc báo cáo", "vanthu.so-y-te@example.org", {"Auto-Submitted": "auto-replied"}, "auto_reply"),
    ("Re: Nhắc báo cáo", "vanthu.so-y-te@example.org", {"X-Autoreply": "yes"}, "auto_reply"),
    ("Re: Nhắc báo cáo", "vanthu.so-y-te@example.org", {"X-Autorespond": "1"}, "auto_reply"),
    ("Re: Nhắc báo cáo", "vanthu.so-y-te@example.org", {"Precedence": "bulk"}, "auto_reply"),
    ("Re: Nhắc báo cáo", "vanthu.so-y-te@example.org", {"Precedence": "auto_reply"}, "auto_reply"),
    ("Báo cáo tháng 11/2026", "vanthu.so-y-te@example.org", {"Auto-Submitted": "no"}, "report"),
    ("Báo cáo tình hình vắng mặt tháng 11", "vanthu.so-y-te@example.org", {}, "report"),
    ("Delivery Status Notification (Failure)", "mailer-daemon@googlemail.com", {}, "bounce"),
    ("Undelivered Mail Returned to Sender", "MAILER-DAEMON@mx.example.org", {}, "bounce"),
    ("Thư không gửi được", "postmaster@example.org", {}, "bounce"),
    ("Không gửi được: Nhắc báo cáo", "vanthu@example.org", {}, "bounce"),
    ("Báo cáo (không gửi bản giấy)", "vanthu.so-y-te@example.org", {}, "report"),
])
def test_kind(subject: str, sender: str, headers: dict[str, str], expected: str) -> None:
    assert kind(mail(subject, sender, headers=headers)) == expected


def test_an_auto_reply_matching_every_report_clue_is_still_ignored(pack) -> None:
    m = match(mail("Báo cáo tháng 11/2026", "vanthu.so-tai-chinh@example.org",
                   headers={"Auto-Submitted": "auto-replied"}), pack, CTX)
    assert m.status == "ignored"


# ── the clues on their own ──────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("text,key", [
    ("Báo cáo tháng 11/2026", "2026-11"), ("tháng 11 năm 2026", "2026-11"), ("T11.2026", "2026-11"),
    ("quý IV/2026", "2026-Q4"), ("Quý 4 năm 2026", "2026-Q4"), ("Q3-2026", "2026-Q3"),
    ("6 tháng đầu năm 2026", "2026-H1"), ("sáu tháng cuối năm 2026", "2026-H2"), ("năm 2026", "2026"),
    ("bao_cao_thang_10_2026.pdf", "2026-10"),
])
def test_period_forms(text: str, key: str) -> None:
    assert [m.key for m in periods_in(text)] == [key]


@pytest.mark.parametrize("text", ["ngày 30/11/2026", "ngày 30 tháng 11 năm 2026", "Nghị quyết 57-NQ/TW",
                                  "giai đoạn 2020 - 2025", "tháng 13/2026", "năm 1890"])
def test_what_is_not_a_period(text: str) -> None:
    assert periods_in(text) == []


@pytest.mark.parametrize("text,is_file,expected", [
    ("Báo cáo số 123/BC-STC ngày 30/11/2026", False, "123/BC-STC"),
    ("V/v gửi 45/BC-UBND", False, "45/BC-UBND"),
    ("Kế hoạch 12/KH-SKHCN", False, "12/KH-SKHCN"),
    ("Thực hiện Nghị quyết 57-NQ/TW, báo cáo số 45-BC/ĐU", False, "45-BC/ĐU"),
    ("Nghị quyết 57-NQ/TW", False, None),
    ("Báo cáo 123-BC-STC.pdf", True, "123/BC-STC"),
    ("tháng 11/2026", False, None),
])
def test_so_ky_hieu(text: str, is_file: bool, expected: str | None) -> None:
    assert so_ky_hieu([(text, is_file)]) == expected


def test_a_subject_fitting_two_titles_about_equally_is_ambiguous(pack) -> None:
    """Both titles well covered (≥ PLAUSIBLE), less than MARGIN apart: the secretariat chooses."""
    m = match(mail("Báo cáo năm 2026 kết quả thực hiện Nghị quyết 57-NQ/TW gửi Sở Khoa học và Công nghệ",
                   "vanthu.so-tai-chinh@example.org"), pack, CTX)
    assert m.status == "ambiguous"
    assert keys(m) == [("khhd57-nam", "so-tai-chinh", "2026"), ("khhd57-skhcn-nam", "so-tai-chinh", "2026")]
    assert all(c.score >= 0.2 for c in m.candidates)
