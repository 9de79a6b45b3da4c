"""The secretariat's read-only pages: the matrix (/ma-tran), units (/don-vi) and reports (/bao-cao).

What a secretary depends on: a submission recorded through the service shows as on time in the
matrix cell and on the unit's page, an unsubmitted one past its due day as overdue, the overview's
count links list exactly the instances counted, text from users is escaped, a read-only account
can read every page, and no internal id is shown as text.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa

from tests.web_support import Console, text_of

NOTE = "<script>alert(1)</script>"
OB = "khhd57-thang"
ON_TIME, LATE, OVERDUE = "so-tai-chinh", "so-y-te", "so-noi-vu"


def _instance_id(con: Console, obligation: str, unit: str, period: str) -> int:
    from engine.app.services import open_session
    from engine.state import InstanceRow

    with open_session(con.settings) as ses:
        return ses.execute(sa.select(InstanceRow.id).where(
            InstanceRow.obligation == obligation, InstanceRow.unit == unit, InstanceRow.period == period)).scalar_one()


@pytest.fixture(scope="module")
def con(tmp_path_factory) -> Console:
    """One installation for the module (the tests only read): three units' October report — on
    time (recorded from the console, with a note carrying markup), late, and not at all — and a
    unit's confirmation, file and failed mail."""
    from engine.app import services
    from engine.app.services import open_session
    from engine.state import AttachmentRow, ConfirmationRow, DeliveryRow

    c = Console(tmp_path_factory.mktemp("pages"))
    services.submit(c.settings, c.pack, OB, ON_TIME, "2026-10", date(2026, 10, 15), c.now, actor="web:thu.ky",
                    ref="123/BC-STC", note=NOTE)
    services.submit(c.settings, c.pack, OB, LATE, "2026-10", date(2026, 10, 27), c.now, actor="cli", ref="45/BC-SYT")
    c.ids = {u: _instance_id(c, OB, u, "2026-10") for u in (ON_TIME, LATE, OVERDUE)}
    at = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
    nov = _instance_id(c, OB, OVERDUE, "2026-11")
    with open_session(c.settings) as ses:
        ses.add(ConfirmationRow(instance_id=nov, unit=OVERDUE, submitted_on=date(2026, 11, 19), ref="9/BC-SNV",
                                note="<b>gửi qua hệ thống</b>", state="returned", created_at=at, decided_at=at,
                                decided_by="web:thu.ky", reason="Thiếu phụ lục <i>số liệu</i>"))
        ses.add(AttachmentRow(instance_id=nov, unit=OVERDUE, filename="bao-cao <thang 11>.pdf", stored_name="a" * 40,
                              content_type="application/pdf", size=2_500_000, sha256="0" * 64, created_at=at,
                              created_by="unit"))
        ses.add(DeliveryRow(key="k1", recipient=OVERDUE, channel="email", route="email", message_id="<m1@dondoc>",
                            status="failed", attempts=4, last_error="550 hộp thư <đầy>", created_at=at, updated_at=at,
                            subject="Nhắc hạn: 1 báo cáo quá hạn <test>"))
        ses.commit()
        c.attachment = ses.execute(sa.select(AttachmentRow.id)).scalar_one()
    return c


@pytest.fixture(scope="module")
def secretary(con: Console):
    return con.client("thu.ky")


def _cell(html: str, iid: int) -> tuple[str, str, str]:
    """(class, title, text) of the matrix cell linking to instance ``iid``."""
    m = re.search(rf'<a class="cell ([^"]+)" href="/ky/{iid}" title="([^"]*)">([^<]*)</a>', html)
    assert m, f"no cell for instance {iid}"
    return m.group(1), m.group(2), m.group(3)


def _badge(html: str, iid: int) -> tuple[str, str]:
    m = re.search(rf'<a class="badge ([^"]+)" href="/ky/{iid}">([^<]*)</a>', html)
    assert m, f"no status for instance {iid}"
    return m.group(1), m.group(2)


def test_matrix_cells_show_the_status_of_what_was_recorded(con: Console, secretary) -> None:
    r = secretary.get("/ma-tran")                     # default: the report most units owe, this year
    assert r.status_code == 200
    page = text_of(r.text)
    assert con.pack.obligations[OB].title in page and "năm 2026" in page
    assert _cell(r.text, con.ids[ON_TIME]) == ("s-ok", "Hoàn thành đúng hạn", "Đúng hạn")
    assert _cell(r.text, con.ids[LATE]) == ("s-late-done", "Hoàn thành quá hạn", "Nộp muộn")
    assert _cell(r.text, con.ids[OVERDUE]) == ("s-overdue", "Chưa hoàn thành – quá hạn", "Quá hạn")
    # the December report is not due yet on 02/12/2026
    dec = _instance_id(con, "khhd57-nam", ON_TIME, "2026")
    assert _cell(secretary.get("/ma-tran?bao-cao=khhd57-nam").text, dec)[0] in ("s-open", "s-soon")
    # legend: every status word, with this matrix's counts
    for word in ("Hoàn thành đúng hạn: 1", "Hoàn thành quá hạn: 1", "Chưa hoàn thành – quá hạn", "Không phải nộp"):
        assert word in page
    # columns are the report's periods with their due day; rows link to the unit's page
    assert "Tháng 10/2026 hạn 19/10/2026" in page and "Tháng 03/2026" not in page
    assert f'href="/don-vi/{ON_TIME}">Sở Tài chính</a>' in r.text


def test_matrix_is_usable_on_a_phone(secretary) -> None:
    r = secretary.get("/ma-tran")
    assert '<div class="table-wrap matrix-wrap"><table class="matrix">' in r.text
    assert 'class="unit-col"' in r.text
    css = secretary.get("/static/dondoc.css").text
    section = css[css.index("/* Ma trận"):]
    assert re.search(r"table\.matrix \.unit-col \{ position:sticky; left:0;", section)
    assert "style=" not in r.text and "<script>" not in r.text


def test_matrix_filters_by_recipient_kind_and_year(con: Console, secretary) -> None:
    group = secretary.get("/ma-tran?bao-cao=&noi-nhan=vp-tinh-uy")
    page = text_of(group.text)
    assert "Các báo cáo gửi Văn phòng Tỉnh ủy" in page
    assert "Tháng 03" in page and "Tháng 12" in page            # quarterly and yearly reports by due month
    quarter = _instance_id(con, "khhd57-quy", OVERDUE, "2026-Q1")
    cls, title, _ = _cell(group.text, quarter)
    assert (cls, title) == ("s-overdue", "Chưa hoàn thành – quá hạn – Quý I/2026")
    assert "Báo cáo năm của Văn phòng" not in page              # nothing sent to another recipient
    kind = text_of(secretary.get(f"/ma-tran?bao-cao={OB}&loai=doan_the").text)
    assert "Tỉnh Đoàn" in kind and "Sở Tài chính" not in kind
    next_year = secretary.get(f"/ma-tran?bao-cao={OB}&nam=2027")
    assert "Tháng 01/2027" in text_of(next_year.text) and "Tháng 10/2026" not in text_of(next_year.text)
    assert secretary.get("/ma-tran?obligation=khhd57-quy").status_code == 200      # the benchmark's spelling


def test_matrix_pages_of_units(con: Console, secretary, monkeypatch) -> None:
    from engine.app import browse

    monkeypatch.setattr(browse, "PAGE_UNITS", 15)
    from engine.app.services import open_session
    from engine.state import InstanceRow

    with open_session(con.settings) as ses:           # units owing the report in 2026 (ended ones handed it on)
        units = ses.execute(sa.select(InstanceRow.unit).distinct().where(
            InstanceRow.obligation == OB, InstanceRow.due >= date(2026, 1, 1), InstanceRow.due <= date(2026, 12, 31))).all()
    assert 30 < len(units) <= 45
    first = secretary.get(f"/ma-tran?bao-cao={OB}")
    assert f"{len(units)} đơn vị, 3 trang" in text_of(first.text)
    assert len(re.findall(r'<th scope="row" class="unit-col">', first.text)) == 15
    last = secretary.get(f"/ma-tran?bao-cao={OB}&trang=3")
    assert len(re.findall(r'<th scope="row" class="unit-col">', last.text)) == len(units) - 30
    assert f'href="/ma-tran?bao-cao={OB}&amp;trang=2"' in last.text
    # the legend counts the whole matrix, not one page
    assert "Hoàn thành đúng hạn: 1" in text_of(first.text) and "Hoàn thành đúng hạn: 1" in text_of(last.text)
    assert secretary.get(f"/ma-tran?bao-cao={OB}&trang=99").status_code == 200      # past the end: the last page


def test_overview_count_links_list_exactly_the_counted_instances(con: Console, secretary, monkeypatch) -> None:
    from engine.app import browse

    monkeypatch.setattr(browse, "LIST_LIMIT", 10_000)
    home = secretary.get("/").text
    for key in ("overdue", "done_on_time", "done_late"):
        m = re.search(rf'href="/ma-tran\?tinh-trang={key}">\s*<span class="n">([\d.]+)</span>', home)
        assert m, key
        counted = int(m.group(1).replace(".", ""))
        r = secretary.get(f"/ma-tran?tinh-trang={key}")
        assert r.status_code == 200
        assert len(re.findall(r'<a class="badge [^"]+" href="/ky/\d+">', r.text)) == counted, key
        assert f"{m.group(1)} kỳ báo cáo" in text_of(r.text)
    done = secretary.get("/ma-tran?tinh-trang=done_on_time").text
    assert _badge(done, con.ids[ON_TIME]) == ("s-ok", "Hoàn thành đúng hạn")
    assert f'href="/ky/{con.ids[OVERDUE]}"' not in done
    narrowed = secretary.get(f"/ma-tran?tinh-trang=overdue&bao-cao={OB}&loai=so").text
    assert f'href="/ky/{con.ids[OVERDUE]}"' in narrowed and "Tỉnh Đoàn" not in text_of(narrowed)
    other_year = secretary.get("/ma-tran?tinh-trang=overdue&nam=2027")           # nothing of 2027 is overdue yet
    assert other_year.status_code == 200 and "0 kỳ báo cáo" in text_of(other_year.text)
    monkeypatch.setattr(browse, "LIST_LIMIT", 10)                  # a long list is cut, and says so
    cut = secretary.get("/ma-tran?tinh-trang=overdue")
    assert len(re.findall(r'<a class="badge [^"]+" href="/ky/\d+">', cut.text)) == 10
    assert "Chỉ hiện 10 kỳ đầu tiên" in text_of(cut.text)


def test_unit_page_shows_periods_submissions_confirmations_files_and_mails(con: Console, secretary) -> None:
    r = secretary.get(f"/don-vi/{ON_TIME}")
    assert r.status_code == 200
    assert _badge(r.text, con.ids[ON_TIME]) == ("s-ok", "Hoàn thành đúng hạn")
    page = text_of(r.text)
    assert "Sở Tài chính" in page and "Sở, ban, ngành" in page
    assert "15/10/2026 123/BC-STC" in page                       # the period row: submitted on, số ký hiệu
    assert "Thu Ky, 02/12/2026" in page                           # who recorded it (the account's name), when
    assert NOTE not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "Ủy ban nhân dân tỉnh" in page                         # supervisor
    late = secretary.get(f"/don-vi/{LATE}")
    assert _badge(late.text, con.ids[LATE]) == ("s-late-done", "Hoàn thành quá hạn")
    assert "Dòng lệnh" in text_of(late.text)

    r = secretary.get(f"/don-vi/{OVERDUE}")
    assert _badge(r.text, con.ids[OVERDUE]) == ("s-overdue", "Chưa hoàn thành – quá hạn")
    page = text_of(r.text)
    assert "Đã trả lại" in page and "9/BC-SNV" in page and "19/11/2026" in page
    assert "&lt;b&gt;gửi qua hệ thống&lt;/b&gt;" in r.text and "Thiếu phụ lục &lt;i&gt;số liệu&lt;/i&gt;" in r.text
    assert f'<a href="/tep/{con.attachment}">bao-cao &lt;thang 11&gt;.pdf</a>' in r.text and "2,4 MB" in page
    assert "Nhắc hạn: 1 báo cáo quá hạn &lt;test&gt;" in r.text and "Gửi không thành công" in page
    assert "550 hộp thư &lt;đầy&gt;" in r.text
    assert con.pack.units[OVERDUE].contacts and all(a in page for a in con.pack.units[OVERDUE].contacts)
    other = secretary.get(f"/don-vi/{ON_TIME}").text
    assert "Nhắc hạn: 1 báo cáo" not in other and "/tep/" not in other   # another unit's mail and files stay there


def test_unit_list_groups_by_kind_with_counts(con: Console, secretary) -> None:
    r = secretary.get("/don-vi")
    page = text_of(r.text)
    for heading in ("Sở, ban, ngành", "Cấp ủy", "Đoàn thể", "Báo, Đài"):
        assert heading in page
    row = re.search(rf'<tr><td><a href="/don-vi/{ON_TIME}">Sở Tài chính</a></td>(.*?)</tr>', r.text, re.S)
    assert row, "Sở Tài chính is listed"
    cells = [text_of(c) for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    # the same figures as `dondoc status` computes them (engine.status, whole rows, another path)
    from engine.app.services import open_session
    from engine.status import on_time_rates, status_lines
    from engine.vi import fmt_percent

    with open_session(con.settings) as ses:
        lines = [l for l in status_lines(ses, con.pack, con.now.date()) if l.unit == ON_TIME]
    rate = on_time_rates(lines)[ON_TIME]
    overdue = sum(l.status == "overdue" for l in lines)
    assert cells == [str(overdue), "0", f"{rate['on_time']} / {rate['due']}", fmt_percent(rate["on_time_rate"])]
    assert cells == ["11", "0", "1 / 12", "8,3 %"]       # 2026 so far: 12 reports due, the October one on time


def test_obligation_page_states_the_rule_in_words(con: Console, secretary) -> None:
    r = secretary.get(f"/bao-cao/{OB}")
    assert r.status_code == 200
    page = text_of(r.text)
    for words in ("Kế hoạch hành động của Ban Thường vụ Tỉnh ủy thực hiện Nghị quyết 57-NQ/TW, mục V.7",
                  "Hằng tháng, chỉ các tháng 1, 2, 4, 5, 7, 8, 10 và 11",
                  "Chốt số liệu ngày 14 của tháng cuối kỳ",
                  "Ngày 18 của tháng cuối kỳ báo cáo",
                  "chuyển sang ngày làm việc tiếp theo (Bộ luật Dân sự 2015, Điều 148)",
                  "Nhắc trước hạn 2 ngày làm việc", "Nhắc vào ngày đến hạn",
                  "nhắc lại mỗi 2 ngày làm việc, tối đa 3 lần",
                  "Quá hạn 5 ngày làm việc thì báo cáo cấp trên: cơ quan cấp trên trực tiếp của đơn vị và Văn phòng Tỉnh ủy",
                  "Từ 01/05/2025", "Kế hoạch không nêu ngày nộp; chọn ngày 18 hằng tháng",
                  "Nơi nhận Văn phòng Tỉnh ủy", "Sở Tài chính"):
        assert words in page, words
    # this year's due days, with the roll over Tết said in words
    assert "Tháng 02/2026 15/01/2026 – 14/02/2026 Thứ Hai, 23/02/2026 (dời từ 18/02/2026 vì ngày nghỉ)" in page
    # who submitted, per period: October has one on time, one late, the rest overdue
    row = re.search(r"<tr><td><a href=\"/ma-tran\?bao-cao=khhd57-thang&amp;nam=2026\">Tháng 10/2026</a></td>(.*?)</tr>",
                    r.text, re.S)
    assert row
    counts = [text_of(c) for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    total = int(counts[-1])
    assert counts[:3] == ["19/10/2026", "1", "1"] and counts[5] == str(total - 2) and total > 30

    before = text_of(secretary.get("/bao-cao/khhd57-skhcn-nam").text)
    assert "Trước ngày 01/12, tức là chậm nhất hết ngày 30/11" in before and "Chốt số liệu ngày 14/11 hằng năm" in before
    compiled = text_of(secretary.get("/bao-cao/khhd57-vptu-thang").text)
    assert f"2 ngày làm việc sau hạn nộp của “{con.pack.obligations[OB].title}”" in compiled


def test_obligation_list(con: Console, secretary) -> None:
    r = secretary.get("/bao-cao")
    page = text_of(r.text)
    assert len(re.findall(r'<a href="/bao-cao/[a-z0-9-]+">', r.text)) == len(con.pack.obligations)
    assert "Hằng quý, chỉ quý I và quý III" in page and "Một lần, cho khoảng thời gian từ 01/01/2025 đến 31/03/2025" in page
    assert "không còn hiệu lực" in page                          # 32-CTr/TU was replaced


def test_a_read_only_account_reads_every_page(con: Console) -> None:
    leader = con.client("lanh.dao")
    for url in ("/ma-tran", "/ma-tran?tinh-trang=overdue", "/ma-tran?bao-cao=&noi-nhan=vp-tinh-uy", "/don-vi",
                f"/don-vi/{OVERDUE}", "/bao-cao", f"/bao-cao/{OB}"):
        r = leader.get(url)
        assert r.status_code == 200, url
        assert "Lãnh đạo" in text_of(r.text)
    assert con.client().get("/don-vi").status_code == 303       # but not without a login


def test_no_internal_id_is_shown_as_text(con: Console, secretary) -> None:
    ids = [ON_TIME, OVERDUE, "vp-tinh-uy", "so-khcn", OB, "khhd57-quy", "bao-cao-khhd57", "so-ban-nganh", "hang-thang",
           "mac-dinh", "ubnd-tinh", "cap_uy", "doan_the", "done_on_time", "overdue"]
    for url in ("/ma-tran", "/ma-tran?bao-cao=&noi-nhan=vp-tinh-uy", "/ma-tran?tinh-trang=overdue", "/don-vi",
                f"/don-vi/{ON_TIME}", f"/don-vi/{OVERDUE}", "/don-vi/so-khcn", "/bao-cao", f"/bao-cao/{OB}",
                "/bao-cao/khhd57-vptu-thang"):
        page = text_of(secretary.get(url).text)
        for ident in ids:
            assert not re.search(rf"(?<![\w.@-]){re.escape(ident)}(?![\w@-])", page), (url, ident)


def test_unknown_things_are_vietnamese_pages(secretary) -> None:
    r = secretary.get("/don-vi/khong-co-don-vi-nay")
    assert r.status_code == 404 and "Không có đơn vị này" in text_of(r.text)
    r = secretary.get("/bao-cao/khong-co")
    assert r.status_code == 404 and "Không có báo cáo này" in text_of(r.text)
    assert secretary.get("/ma-tran?bao-cao=khong-co").status_code == 404
    for bad in ("nam=abc", "nam=1999", "tinh-trang=xyz", "loai=xyz"):
        r = secretary.get(f"/ma-tran?{bad}")
        assert r.status_code == 400 and "Traceback" not in r.text, bad
    assert "Năm phải là một số từ 2000 đến 2100" in text_of(secretary.get("/don-vi/so-khcn?nam=20x6").text)


def test_group_expansion_matches_the_rules() -> None:
    """browse.expand (sets, for 1,000-unit groups) gives RulePack.expand's units in its order."""
    from engine.app import browse
    from tests.web_support import seed_pack

    pack = seed_pack()
    for gid in pack.groups:
        assert browse.expand(pack, [gid]) == pack.expand(gid)
    for ob in pack.obligations.values():
        assert browse.expand(pack, ob.reporters) == pack.reporters(ob)
        assert browse.reporter_sets(pack)[ob.id] == frozenset(pack.reporters(ob))


def test_wording_of_every_rule_shape() -> None:
    """Each due rule, recurrence and ladder of the language has its words (no id, no English)."""
    from engine.app import browse
    from engine.rules_model import Obligation, ReminderPolicy
    from tests.web_support import seed_pack

    pack = seed_pack()
    base = {"id": "x", "title": "X", "basis": {"document": "D"}, "kind": "dinh_ky", "reporters": ["so-khcn"],
            "recipient": "vp-tinh-uy"}
    cases = [
        ({"recurrence": {"freq": "half_yearly"}, "due": {"rule": "day_of_last_month", "day": "last", "roll": "backward"}},
         "6 tháng một lần (6 tháng đầu năm và 6 tháng cuối năm)", "Ngày cuối cùng của tháng cuối kỳ báo cáo"),
        ({"recurrence": {"freq": "yearly"}, "due": {"rule": "on_date", "day": 15, "month": 1, "year_offset": 1, "roll": "keep"}},
         "Hằng năm", "Ngày 15/01 của năm sau năm kết thúc kỳ"),
        ({"recurrence": {"freq": "yearly"}, "due": {"rule": "before_date", "day": 1, "month": 3, "roll": "forward"}},
         "Hằng năm", "Trước ngày 01/03, tức là chậm nhất hết ngày cuối tháng 02"),
        ({"recurrence": {"freq": "quarterly"}, "due": {"rule": "working_days_after_period", "days": 5, "from": "cutoff_end",
                                                       "roll": "keep"}},
         "Hằng quý", "5 ngày làm việc sau ngày chốt số liệu"),
        ({"recurrence": {"freq": "every_n_months", "months_interval": 30, "anchor": "2025-07-01"},
          "due": {"rule": "working_days_after_period", "days": 3, "roll": "keep"}},
         "30 tháng một lần, chu kỳ đầu tiên bắt đầu ngày 01/07/2025", "3 ngày làm việc sau ngày kết thúc kỳ báo cáo"),
        ({"recurrence": {"freq": "once", "start": "2026-01-01", "end": "2026-03-31"}, "cutoff": "none",
          "due": {"rule": "fixed", "date": "2026-03-31", "roll": "keep"}},
         "Một lần, cho khoảng thời gian từ 01/01/2026 đến 31/03/2026", "Ngày 31/03/2026"),
    ]
    for extra, recurrence, due in cases:
        ob = Obligation.model_validate({**base, **extra})
        assert browse.recurrence_vi(ob) == recurrence
        assert browse.due_rule_vi(ob, pack) == due
    assert browse.roll_vi(Obligation.model_validate({**base, **cases[0][0]})).endswith("ngày làm việc liền trước")
    quiet = ReminderPolicy(id="q", before_due_working_days=[], on_due_day=False, overdue_after_working_days=0,
                           repeat_every_working_days=0, escalate_after_working_days=None)
    assert browse.ladder_vi(quiet, pack) == ["Không nhắc trước hạn", "Không nhắc vào ngày đến hạn",
                                             "Báo quá hạn ngay sau ngày đến hạn; không nhắc lại",
                                             "Không báo cáo cấp trên"]
